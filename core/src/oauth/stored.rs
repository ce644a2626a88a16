//! What a login leaves behind, kept between runs: per authorization
//! server (by issuer), the client it registered and the tokens it got;
//! and the refresh of those tokens. Secrets in it are never shown by its
//! `Debug`, so a stray log line cannot leak them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::token::{self, AuthMethod, ClientAuth};
use super::OAuthError;
use crate::http::{Outgoing, ResponseHead, Url};

/// A token is refreshed when it expires within this many seconds…
const REFRESH_AHEAD: u64 = 60;
/// …or, for one granted for less than three minutes, within this share
/// of its life: a token good for a few seconds would otherwise be due at
/// once, and refreshed for every message sent with it.
const REFRESH_SHARE: u64 = 3;

/// One authorization server's client and tokens for a server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub issuer: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub token_endpoint: String,
    pub auth_method: AuthMethod,
    /// The RFC 8707 resource the tokens are for, as the server published
    /// it.
    pub resource: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires, in Unix seconds (`None`: not said).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// How long the access token was granted for, in seconds (its
    /// `expires_in`): how early a refresh is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<u64>,
    /// The redirect URI the client was registered with, when this program
    /// registered it: a later login with the same redirect may reuse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_for: Option<String>,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("auth_method", &self.auth_method)
            .field("resource", &self.resource)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Stored {
    /// The client, as the token endpoint knows it.
    pub fn client(&self) -> ClientAuth {
        ClientAuth {
            id: self.client_id.clone(),
            secret: self.client_secret.clone(),
            method: self.auth_method,
        }
    }

    /// Whether the access token expires within `margin` seconds of `now`
    /// (Unix seconds).
    pub fn expires_within(&self, now: u64, margin: u64) -> bool {
        self.expires_at
            .is_some_and(|at| at <= now.saturating_add(margin))
    }

    /// Whether the access token should be refreshed now (`now`: Unix
    /// seconds): it expires within `REFRESH_AHEAD`, or within a third of
    /// the life it was granted, whichever is sooner. Never for a token
    /// that cannot be refreshed.
    pub fn refresh_due(&self, now: u64) -> bool {
        let margin = self.lifetime.map_or(REFRESH_AHEAD, |life| {
            life.div_ceil(REFRESH_SHARE).min(REFRESH_AHEAD)
        });
        self.refresh_token.is_some() && self.expires_within(now, margin)
    }

    /// The refresh grant for these tokens, when there is a refresh token.
    pub fn refresh_request(&self) -> Result<Option<Outgoing>, OAuthError> {
        let Some(refresh) = &self.refresh_token else {
            return Ok(None);
        };
        let endpoint = Url::parse(&self.token_endpoint).map_err(|e| {
            OAuthError::Config(format!("the kept token endpoint is not a URL: {e}"))
        })?;
        Ok(Some(token::request(
            &endpoint,
            &self.client(),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("resource", &self.resource),
            ],
        )))
    }

    /// These credentials with the tokens a refresh answer grants (`now`:
    /// Unix seconds). A refresh token not sent again is kept (RFC 6749
    /// §6), and so are the scopes when the answer does not name them.
    pub fn refreshed(
        &self,
        head: &ResponseHead,
        body: &[u8],
        now: u64,
    ) -> Result<Stored, OAuthError> {
        let granted = token::granted(head, body)?;
        Ok(Stored {
            access_token: granted.access_token,
            refresh_token: granted.refresh_token.or_else(|| self.refresh_token.clone()),
            expires_at: granted.expires_in.map(|s| now.saturating_add(s)),
            lifetime: granted.expires_in,
            scopes: granted
                .scope
                .map(|s| super::challenge::split_scopes(&s))
                .unwrap_or_else(|| self.scopes.clone()),
            ..self.clone()
        })
    }
}

/// Every login kept for one server, by issuer, and which one is in use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logins {
    /// The server's URL the logins are for: a file kept for another URL
    /// (the configuration changed) is not used.
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    #[serde(default)]
    pub issuers: BTreeMap<String, Stored>,
    /// Scopes the server asked for that the login lacks (a step-up no
    /// browser was at hand for): the next login asks for them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wanted_scopes: Vec<String>,
}

impl Logins {
    pub fn new(server: &Url) -> Logins {
        Logins {
            server: server.to_string(),
            ..Logins::default()
        }
    }

    /// Whether these logins are for `server`.
    pub fn is_for(&self, server: &Url) -> bool {
        server.is_spelled(&self.server)
    }

    /// The credentials in use.
    pub fn current(&self) -> Option<&Stored> {
        self.active.as_ref().and_then(|i| self.issuers.get(i))
    }

    /// Keeps `stored` as its issuer's, and uses it from now on.
    pub fn record(&mut self, stored: Stored) {
        self.wanted_scopes.clear();
        self.active = Some(stored.issuer.clone());
        self.issuers.insert(stored.issuer.clone(), stored);
    }

    /// Notes scopes the server asked for, for the next login.
    pub fn want(&mut self, scopes: &[String]) {
        for scope in scopes {
            if !self.wanted_scopes.contains(scope) {
                self.wanted_scopes.push(scope.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Headers;

    pub(crate) fn stored() -> Stored {
        Stored {
            issuer: "https://as.example.com".into(),
            client_id: "client".into(),
            client_secret: Some("secret".into()),
            token_endpoint: "https://as.example.com/token".into(),
            auth_method: AuthMethod::ClientSecretPost,
            resource: "https://mcp.example.com/mcp".into(),
            scopes: vec!["mcp:read".into()],
            access_token: "at-1".into(),
            refresh_token: Some("rt-1".into()),
            expires_at: Some(1000),
            lifetime: Some(3600),
            registered_for: None,
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let text = format!("{:?}", stored());
        for secret in ["secret", "at-1", "rt-1"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn a_refresh_keeps_what_the_answer_leaves_out() {
        let old = stored();
        assert!(old.expires_within(950, 60));
        assert!(!old.expires_within(900, 60));
        let request = old.refresh_request().unwrap().unwrap();
        let body = String::from_utf8(request.body.to_vec()).unwrap();
        assert!(body.starts_with("grant_type=refresh_token&refresh_token=rt-1&resource=https%3A%2F%2Fmcp.example.com%2Fmcp"));
        let head = ResponseHead {
            status: 200,
            headers: Headers::default(),
        };
        let new = old
            .refreshed(&head, br#"{"access_token":"at-2","expires_in":100}"#, 2000)
            .unwrap();
        assert_eq!(new.access_token, "at-2");
        assert_eq!(new.refresh_token.as_deref(), Some("rt-1"));
        assert_eq!(new.expires_at, Some(2100));
        assert_eq!(new.lifetime, Some(100));
        assert_eq!(new.scopes, old.scopes);
        let mut no_refresh = old;
        no_refresh.refresh_token = None;
        assert!(no_refresh.refresh_request().unwrap().is_none());
    }

    #[test]
    fn a_refresh_is_due_a_minute_ahead_or_a_third_of_a_short_life_ahead() {
        let mut long = stored();
        assert!(!long.refresh_due(939));
        assert!(long.refresh_due(940));
        // Granted for 4 s: due in its last 2 (a third, rounded up), not
        // from the start.
        let mut short = stored();
        short.lifetime = Some(4);
        assert!(!short.refresh_due(997));
        assert!(short.refresh_due(998));
        // Kept by an older version, with no lifetime: a minute ahead.
        short.lifetime = None;
        assert!(short.refresh_due(940));
        // Nothing to refresh with: never due, however close the expiry.
        long.refresh_token = None;
        assert!(!long.refresh_due(1000));
    }

    #[test]
    fn logins_are_kept_by_issuer() {
        let server = Url::parse("https://mcp.example.com/mcp").unwrap();
        let mut logins = Logins::new(&server);
        assert!(logins.is_for(&server));
        assert!(logins.current().is_none());
        logins.want(&["mcp:write".into()]);
        logins.want(&["mcp:write".into()]);
        assert_eq!(logins.wanted_scopes, ["mcp:write"]);
        logins.record(stored());
        assert!(logins.wanted_scopes.is_empty());
        let mut other = stored();
        other.issuer = "https://as2.example.com".into();
        logins.record(other);
        assert_eq!(logins.issuers.len(), 2);
        assert_eq!(
            logins.current().map(|s| s.issuer.as_str()),
            Some("https://as2.example.com")
        );
        let text = serde_json::to_string(&logins).unwrap();
        let back: Logins = serde_json::from_str(&text).unwrap();
        assert_eq!(back, logins);
    }
}
