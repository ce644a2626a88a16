//! Authorization-server metadata (RFC 8414, and OpenID Connect Discovery):
//! where it is looked for, what must hold before its endpoints are used,
//! and the endpoints a 2025-03-26 server without metadata has at its
//! origin.

use serde::Deserialize;

use super::{Guard, OAuthError};
use crate::http::Url;

/// The parts of an authorization server's metadata a client uses, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// An authorization server the login may use: its metadata checked, its
/// endpoints parsed and allowed by the guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthServer {
    /// Its issuer identifier, exactly as its metadata says (what `iss`
    /// on the redirect must equal).
    pub issuer: String,
    pub authorize: Url,
    pub token: Url,
    pub register: Option<Url>,
    pub scopes_supported: Vec<String>,
    /// `None`: not said (RFC 8414's default is `client_secret_basic`).
    pub auth_methods: Option<Vec<String>>,
    pub metadata_documents: bool,
    /// Whether the redirect must carry `iss` (RFC 9207).
    pub iss_required: bool,
}

/// Where the metadata of the issuer `issuer` is looked for, in the order
/// the MCP authorization spec gives: RFC 8414 then OpenID Connect, each
/// with the well-known part inserted before the issuer's path, then
/// OpenID Connect's own form (appended) for an issuer with a path.
pub fn metadata_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    if path.is_empty() {
        return vec![
            issuer.with_target("/.well-known/oauth-authorization-server"),
            issuer.with_target("/.well-known/openid-configuration"),
        ];
    }
    vec![
        issuer.with_target(&format!("/.well-known/oauth-authorization-server{path}")),
        issuer.with_target(&format!("/.well-known/openid-configuration{path}")),
        issuer.with_target(&format!("{path}/.well-known/openid-configuration")),
    ]
}

impl ServerMetadata {
    /// The server this metadata describes, if it may be used: it was
    /// fetched for `issuer` and says so, its endpoints are allowed, and
    /// it supports PKCE with S256.
    pub fn check(self, issuer: &str, guard: &Guard) -> Result<AuthServer, OAuthError> {
        if !same_issuer(&self.issuer, issuer) {
            return Err(OAuthError::Refused(format!(
                "the authorization server's metadata, found for the issuer `{}`, says its issuer is `{}`: refused",
                crate::text::bounded(issuer, 200),
                crate::text::bounded(&self.issuer, 200)
            )));
        }
        let pkce = self
            .code_challenge_methods_supported
            .as_ref()
            .is_some_and(|methods| methods.iter().any(|m| m == "S256"));
        if !pkce {
            return Err(OAuthError::Refused(format!(
                "the authorization server `{}` does not say it supports PKCE with S256 (`code_challenge_methods_supported`): refused",
                crate::text::bounded(issuer, 200)
            )));
        }
        let register = match &self.registration_endpoint {
            Some(url) => Some(guard.parse(url, "the registration endpoint")?),
            None => None,
        };
        Ok(AuthServer {
            authorize: guard.parse(&self.authorization_endpoint, "the authorization endpoint")?,
            token: guard.parse(&self.token_endpoint, "the token endpoint")?,
            register,
            issuer: self.issuer,
            scopes_supported: self.scopes_supported.unwrap_or_default(),
            auth_methods: self.token_endpoint_auth_methods_supported,
            metadata_documents: self.client_id_metadata_document_supported,
            iss_required: self.authorization_response_iss_parameter_supported,
        })
    }
}

impl AuthServer {
    /// A server that publishes no metadata (the 2025-03-26 revision's
    /// fallback): `/authorize`, `/token` and `/register` at the origin of
    /// `url`, the issuer `issuer`.
    pub fn fallback(issuer: &str, url: &Url) -> AuthServer {
        AuthServer {
            issuer: issuer.to_owned(),
            authorize: url.with_target("/authorize"),
            token: url.with_target("/token"),
            register: Some(url.with_target("/register")),
            scopes_supported: Vec::new(),
            auth_methods: None,
            metadata_documents: false,
            iss_required: false,
        }
    }
}

/// Whether metadata saying `said` was found for `wanted`: the same
/// string (RFC 8414 §3.3), allowing only the one slash a bare origin may
/// be written with or without.
fn same_issuer(said: &str, wanted: &str) -> bool {
    if said == wanted {
        return true;
    }
    let bare = |text: &str| {
        text.split_once("://")
            .is_some_and(|(_, rest)| !rest.trim_end_matches('/').contains('/'))
    };
    bare(said) && bare(wanted) && said.trim_end_matches('/') == wanted.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(issuer: &str) -> ServerMetadata {
        serde_json::from_value(serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": "https://as.example.com/authorize",
            "token_endpoint": "https://as.example.com/token",
            "code_challenge_methods_supported": ["S256"],
        }))
        .unwrap()
    }

    fn guard() -> Guard {
        Guard::for_server(&Url::parse("https://mcp.example.com/mcp").unwrap())
    }

    #[test]
    fn metadata_is_looked_for_in_the_specs_order() {
        let tenant = Url::parse("https://as.example.com/tenant1").unwrap();
        let urls: Vec<String> = metadata_urls(&tenant).iter().map(Url::to_string).collect();
        assert_eq!(
            urls,
            [
                "https://as.example.com/.well-known/oauth-authorization-server/tenant1",
                "https://as.example.com/.well-known/openid-configuration/tenant1",
                "https://as.example.com/tenant1/.well-known/openid-configuration",
            ]
        );
        let root = Url::parse("https://as.example.com/").unwrap();
        assert_eq!(
            metadata_urls(&root)[1].to_string(),
            "https://as.example.com/.well-known/openid-configuration"
        );
    }

    #[test]
    fn the_issuer_must_be_the_one_it_was_found_for() {
        let server = metadata("https://as.example.com").check("https://as.example.com/", &guard());
        assert_eq!(server.unwrap().issuer, "https://as.example.com");
        for (said, wanted) in [
            ("https://attacker.example.com", "https://as.example.com"),
            (
                "https://as.example.com/tenant1/",
                "https://as.example.com/tenant1",
            ),
            ("https://as.example.com/a", "https://as.example.com/b"),
        ] {
            let error = metadata(said).check(wanted, &guard()).unwrap_err();
            assert!(error.to_string().contains("refused"), "{error}");
        }
    }

    #[test]
    fn without_pkce_or_with_private_endpoints_it_is_refused() {
        let mut no_pkce = metadata("https://as.example.com");
        no_pkce.code_challenge_methods_supported = Some(vec!["plain".into()]);
        assert!(no_pkce
            .check("https://as.example.com", &guard())
            .unwrap_err()
            .to_string()
            .contains("PKCE"));
        let mut private = metadata("https://as.example.com");
        private.token_endpoint = "http://10.0.0.1/token".into();
        assert!(private
            .check("https://as.example.com", &guard())
            .unwrap_err()
            .to_string()
            .contains("private address"));
    }

    #[test]
    fn a_server_without_metadata_has_its_endpoints_at_its_origin() {
        let server = AuthServer::fallback(
            "http://localhost:9",
            &Url::parse("http://localhost:9/mcp").unwrap(),
        );
        assert_eq!(server.issuer, "http://localhost:9");
        assert_eq!(server.token.to_string(), "http://localhost:9/token");
        assert_eq!(
            server.register.map(|u| u.to_string()).as_deref(),
            Some("http://localhost:9/register")
        );
    }
}
