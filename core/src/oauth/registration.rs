//! Dynamic client registration (RFC 7591): this program registered as a
//! native application whose redirect is its loopback listener.

use serde::Deserialize;
use serde_json::json;

use super::token::{AuthMethod, ClientAuth};
use super::{reply, OAuthError};
use crate::http::{Outgoing, ResponseHead, Url};

/// What the registration request says of the client.
#[derive(Debug, Clone, Copy)]
pub struct Registering<'a> {
    pub client_name: &'a str,
    pub redirect_uri: &'a str,
    /// The scopes it will ask for, if any.
    pub scope: Option<&'a str>,
    pub method: AuthMethod,
}

/// The registration request.
pub fn request(endpoint: &Url, client: &Registering<'_>) -> Outgoing {
    let mut metadata = json!({
        "client_name": client.client_name,
        "redirect_uris": [client.redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": client.method.name(),
        "application_type": "native",
    });
    if let Some(scope) = client.scope {
        metadata["scope"] = json!(scope);
    }
    Outgoing::new("POST", endpoint.clone())
        .header("accept", "application/json")
        .body("application/json", metadata.to_string())
}

#[derive(Deserialize)]
struct Registered {
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
}

/// The client the registration answer made, authenticating the way the
/// server said (else as asked; with a secret and nothing said, RFC 7591's
/// default `client_secret_basic`).
pub fn registered(
    head: &ResponseHead,
    body: &[u8],
    asked: AuthMethod,
) -> Result<ClientAuth, OAuthError> {
    let answer: Registered = reply::json(head, body, "the registration endpoint")?;
    if answer.client_id.is_empty() {
        return Err(OAuthError::Refused(
            "the registration endpoint gave an empty client_id".to_owned(),
        ));
    }
    let secret = answer.client_secret.filter(|s| !s.is_empty());
    let method = match (
        answer.token_endpoint_auth_method.as_deref(),
        AuthMethod::named(answer.token_endpoint_auth_method.as_deref()),
    ) {
        (_, Some(method)) => method,
        (Some(other), None) => {
            return Err(OAuthError::Refused(format!(
                "the registration endpoint wants the token endpoint authentication `{}`, which this client does not do",
                crate::text::bounded(other, 60)
            )))
        }
        (None, None) if asked == AuthMethod::None || secret.is_none() => AuthMethod::None,
        (None, None) => asked,
    };
    if method != AuthMethod::None && secret.is_none() {
        return Err(OAuthError::Refused(format!(
            "the registration endpoint asks for `{}` but gave no client_secret",
            method.name()
        )));
    }
    Ok(ClientAuth {
        id: answer.client_id,
        secret,
        method,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Headers;

    fn head(status: u16) -> ResponseHead {
        ResponseHead {
            status,
            headers: Headers::default(),
        }
    }

    #[test]
    fn the_request_names_a_native_client_and_its_redirect() {
        let url = Url::parse("https://as.example.com/register").unwrap();
        let outgoing = request(
            &url,
            &Registering {
                client_name: "MCP Local Provider",
                redirect_uri: "http://127.0.0.1:5000/callback",
                scope: Some("mcp:read"),
                method: AuthMethod::None,
            },
        );
        let body: serde_json::Value = serde_json::from_slice(&outgoing.body).unwrap();
        assert_eq!(body["application_type"], "native");
        assert_eq!(body["redirect_uris"][0], "http://127.0.0.1:5000/callback");
        assert_eq!(body["token_endpoint_auth_method"], "none");
        assert_eq!(body["scope"], "mcp:read");
    }

    #[test]
    fn the_answer_says_how_to_authenticate() {
        let basic = registered(
            &head(201),
            br#"{"client_id":"c","client_secret":"s","token_endpoint_auth_method":"client_secret_basic"}"#,
            AuthMethod::None,
        )
        .unwrap();
        assert_eq!(basic.method, AuthMethod::ClientSecretBasic);
        let silent = registered(
            &head(201),
            br#"{"client_id":"c","client_secret":"s"}"#,
            AuthMethod::ClientSecretPost,
        )
        .unwrap();
        assert_eq!(silent.method, AuthMethod::ClientSecretPost);
        let public = registered(
            &head(200),
            br#"{"client_id":"c","client_secret":"s"}"#,
            AuthMethod::None,
        )
        .unwrap();
        assert_eq!(public.method, AuthMethod::None);
        for (body, says) in [
            (
                &br#"{"client_id":"c","token_endpoint_auth_method":"private_key_jwt"}"#[..],
                "does not do",
            ),
            (
                br#"{"client_id":"c","token_endpoint_auth_method":"client_secret_post"}"#,
                "no client_secret",
            ),
            (br#"{"client_id":""}"#, "empty client_id"),
        ] {
            let error = registered(&head(201), body, AuthMethod::None)
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{error}");
        }
    }
}
