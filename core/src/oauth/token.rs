//! The token endpoint: how the client authenticates to it (RFC 6749
//! §2.3, RFC 7591's method names), a grant posted to it, and the tokens
//! its answer carries.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{form, reply, OAuthError};
use crate::http::{Outgoing, ResponseHead, Url};

/// The longest access or refresh token taken: it goes in a header line.
const MAX_TOKEN: usize = 16 * 1024;

/// How the client proves itself at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// Id and secret in a `Basic` header.
    ClientSecretBasic,
    /// Id and secret in the form.
    ClientSecretPost,
    /// A public client: its id in the form, no secret.
    None,
}

impl AuthMethod {
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::None => "none",
        }
    }

    fn from_name(name: &str) -> Option<AuthMethod> {
        [
            AuthMethod::ClientSecretBasic,
            AuthMethod::ClientSecretPost,
            AuthMethod::None,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }

    /// The method a client uses with an authorization server that
    /// supports `supported` (`None`: not said, RFC 8414's default being
    /// `client_secret_basic`): with a secret, the first of basic and post
    /// it supports; without, none.
    pub fn choose(supported: Option<&[String]>, has_secret: bool) -> AuthMethod {
        let allows = |m: AuthMethod| supported.is_none_or(|s| s.iter().any(|n| n == m.name()));
        if !has_secret {
            return AuthMethod::None;
        }
        [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost]
            .into_iter()
            .find(|m| allows(*m))
            .unwrap_or(if allows(AuthMethod::None) {
                AuthMethod::None
            } else {
                AuthMethod::ClientSecretBasic
            })
    }

    /// The method a registration answer names, if one this client has.
    pub fn named(name: Option<&str>) -> Option<AuthMethod> {
        name.and_then(AuthMethod::from_name)
    }
}

/// A client as the token endpoint knows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientAuth {
    pub id: String,
    pub secret: Option<String>,
    pub method: AuthMethod,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "(hidden)"))
            .field("method", &self.method)
            .finish()
    }
}

/// A grant (`grant` holds `grant_type` and its own fields) posted to the
/// token endpoint, the client authenticated as its method says.
pub fn request(endpoint: &Url, client: &ClientAuth, grant: &[(&str, &str)]) -> Outgoing {
    let mut fields: Vec<(&str, &str)> = grant.to_vec();
    let secret = client.secret.as_deref().unwrap_or_default();
    let mut outgoing = Outgoing::new("POST", endpoint.clone()).header("accept", "application/json");
    match client.method {
        AuthMethod::ClientSecretBasic => {
            // RFC 6749 §2.3.1: each part form-encoded before base64.
            let pair = format!("{}:{}", form::escape(&client.id), form::escape(secret));
            outgoing = outgoing.header(
                "authorization",
                format!("Basic {}", crate::base64::encode(pair.as_bytes())),
            );
        }
        AuthMethod::ClientSecretPost => {
            fields.push(("client_id", &client.id));
            fields.push(("client_secret", secret));
        }
        AuthMethod::None => fields.push(("client_id", &client.id)),
    }
    outgoing.body("application/x-www-form-urlencoded", form::encode(&fields))
}

/// What a token answer grants.
#[derive(Clone, PartialEq, Eq)]
pub struct Granted {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
    /// The scopes granted, when the server says (else those asked for).
    pub scope: Option<String>,
}

impl std::fmt::Debug for Granted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Granted")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A token endpoint's answer as it is sent.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    /// A number, though some servers send it as a string.
    #[serde(default)]
    expires_in: Option<Value>,
    #[serde(default)]
    scope: Option<String>,
}

/// The tokens a token endpoint's answer grants, or why it grants none.
pub fn granted(head: &ResponseHead, body: &[u8]) -> Result<Granted, OAuthError> {
    let answer: TokenAnswer = reply::json(head, body, "the token endpoint")?;
    let bad = |why: &str| OAuthError::Refused(format!("the token endpoint's answer: {why}"));
    if let Some(kind) = answer
        .token_type
        .as_deref()
        .filter(|t| !t.eq_ignore_ascii_case("bearer"))
    {
        return Err(bad(&format!(
            "a `{}` token, where a bearer token is needed",
            crate::text::bounded(kind, 40)
        )));
    }
    let usable = |token: &str| {
        !token.is_empty() && token.len() <= MAX_TOKEN && token.bytes().all(|b| b.is_ascii_graphic())
    };
    if !usable(&answer.access_token) {
        return Err(bad("an access token that cannot be sent in a header"));
    }
    if answer.refresh_token.as_deref().is_some_and(|t| !usable(t)) {
        return Err(bad("a refresh token that cannot be used"));
    }
    let expires_in = match answer.expires_in {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    Ok(Granted {
        access_token: answer.access_token,
        refresh_token: answer.refresh_token,
        expires_in,
        scope: answer.scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Headers;

    fn head(status: u16) -> ResponseHead {
        let mut headers = Headers::default();
        headers.push("content-type", "application/json");
        ResponseHead { status, headers }
    }

    fn client(method: AuthMethod) -> ClientAuth {
        ClientAuth {
            id: "id:1".into(),
            secret: Some("s&cret".into()),
            method,
        }
    }

    #[test]
    fn each_method_authenticates_its_way() {
        let url = Url::parse("https://as.example.com/token").unwrap();
        let grant = [("grant_type", "authorization_code"), ("code", "c")];
        let basic = request(&url, &client(AuthMethod::ClientSecretBasic), &grant);
        let header = basic
            .headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap();
        let decoded = crate::base64::decode(header.strip_prefix("Basic ").unwrap()).unwrap();
        assert_eq!(decoded, b"id%3A1:s%26cret");
        assert_eq!(basic.body, "grant_type=authorization_code&code=c");
        let post = request(&url, &client(AuthMethod::ClientSecretPost), &grant);
        assert!(post.headers.iter().all(|(n, _)| n != "authorization"));
        assert!(post
            .body
            .ends_with(b"&client_id=id%3A1&client_secret=s%26cret"));
        let none = request(&url, &client(AuthMethod::None), &grant);
        assert!(none.body.ends_with(b"&client_id=id%3A1"));
        assert!(!format!("{:?}", client(AuthMethod::None)).contains("s&cret"));
    }

    #[test]
    fn the_method_follows_what_the_server_supports() {
        let only = |m: &str| Some(vec![m.to_owned()]);
        assert_eq!(
            AuthMethod::choose(None, true),
            AuthMethod::ClientSecretBasic
        );
        assert_eq!(
            AuthMethod::choose(only("client_secret_post").as_deref(), true),
            AuthMethod::ClientSecretPost
        );
        assert_eq!(
            AuthMethod::choose(only("none").as_deref(), true),
            AuthMethod::None
        );
        assert_eq!(AuthMethod::choose(None, false), AuthMethod::None);
        assert_eq!(
            AuthMethod::named(Some("client_secret_post")),
            Some(AuthMethod::ClientSecretPost)
        );
        assert_eq!(AuthMethod::named(Some("private_key_jwt")), None);
    }

    #[test]
    fn a_token_answer_is_read_or_refused() {
        let good = granted(
            &head(200),
            br#"{"access_token":"at","token_type":"Bearer","expires_in":"3600","refresh_token":"rt","scope":"a b"}"#,
        )
        .unwrap();
        assert_eq!(good.expires_in, Some(3600));
        assert_eq!(good.refresh_token.as_deref(), Some("rt"));
        assert!(!format!("{good:?}").contains("at\""));
        for (body, says) in [
            (
                &br#"{"access_token":"at","token_type":"DPoP"}"#[..],
                "`DPoP` token",
            ),
            (br#"{"access_token":"a t"}"#, "cannot be sent"),
            (br#"{"access_token":""}"#, "cannot be sent"),
            (br#"{"token_type":"bearer"}"#, "without what it must hold"),
            (b"<!doctype html><p>sign in</p>", "HTML page"),
        ] {
            let error = granted(&head(200), body).unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
        }
    }
}
