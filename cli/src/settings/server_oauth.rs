//! A remote server's OAuth settings (`client_id`, `client_secret`,
//! `scopes`, `client_metadata_url`, `redirect_port`, `open_browser`): their
//! checks, and what the kit's logins take from them. They are keys of the
//! server's own `[[bridge.servers]]` entry.

use mcp_provider_core::http::Url;
use mcp_provider_kit::outbound::oauth::OAuthServer;

use super::bridge_server::{expand, BadRemote, BridgeServer};

impl BridgeServer {
    /// Whether any OAuth setting is given.
    fn has_oauth_settings(&self) -> bool {
        self.client_id.is_some()
            || self.client_secret.is_some()
            || !self.scopes.is_empty()
            || self.client_metadata_url.is_some()
            || self.redirect_port.is_some()
            || self.open_browser
    }

    pub(super) fn check_oauth(&self) -> Result<(), BadRemote> {
        if self.url.is_none() && self.has_oauth_settings() {
            return Err(BadRemote::OAuthWithoutUrl);
        }
        let client_id = self.client_id.as_deref().map(expand).transpose()?;
        if client_id.as_deref() == Some("") {
            return Err(BadRemote::EmptyClientId);
        }
        if let Some(secret) = &self.client_secret {
            expand(secret).map_err(BadRemote::ClientSecret)?;
            if client_id.is_none() {
                return Err(BadRemote::SecretWithoutClientId);
            }
        }
        if let Some(scope) = self
            .scopes
            .iter()
            .find(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return Err(BadRemote::Scope(scope.clone()));
        }
        if let Some(url) = &self.client_metadata_url {
            let parsed = Url::parse(url).map_err(BadRemote::MetadataUrl)?;
            if !parsed.is_secure() || parsed.path() == "/" {
                return Err(BadRemote::MetadataNotHttps(url.clone()));
            }
        }
        Ok(())
    }

    /// The OAuth settings of a remote server (`None` for a command), its
    /// `${VAR}`s expanded; `browser`: whether a browser may be opened
    /// anyway (`$BROWSER` is set).
    pub fn oauth(&self, browser: bool) -> Option<OAuthServer> {
        let remote = self.remote().ok()??;
        let mut server = OAuthServer::new(&self.name, remote.url);
        server.ca_file = remote.ca_file;
        server.client.client_id = self.client_id.as_deref().and_then(|v| expand(v).ok());
        server.client.client_secret = self.client_secret.as_deref().and_then(|v| expand(v).ok());
        server.client.metadata_url = self.client_metadata_url.clone();
        server.client.scopes = self.scopes.clone();
        server.redirect_port = self.redirect_port.unwrap_or(0);
        server.open_browser = self.open_browser || browser;
        Some(server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_settings_are_checked_and_taken() {
        std::env::set_var("MCP_TEST_OAUTH_SECRET", "shh");
        let mut server = BridgeServer::from_url("r", "https://mcp.example.com/mcp".into());
        server.client_id = Some("pre-registered".into());
        server.client_secret = Some("${MCP_TEST_OAUTH_SECRET}".into());
        server.scopes = vec!["mcp:read".into()];
        server.client_metadata_url = Some("https://example.com/client.json".into());
        server.redirect_port = Some(33418);
        server.validate().unwrap();
        let oauth = server.oauth(false).unwrap();
        assert_eq!(oauth.client.client_secret.as_deref(), Some("shh"));
        assert_eq!(oauth.redirect_port, 33418);
        assert!(!oauth.open_browser && server.oauth(true).unwrap().open_browser);
        for (change, says) in [
            (
                (|s: &mut BridgeServer| s.client_id = None) as fn(&mut BridgeServer),
                "needs the `client_id`",
            ),
            (|s| s.scopes = vec!["a b".into()], "single words"),
            (
                |s| s.client_metadata_url = Some("http://example.com/c.json".into()),
                "an https URL with a path",
            ),
            (
                |s| s.client_metadata_url = Some("https://example.com".into()),
                "with a path",
            ),
            (
                |s| s.client_secret = Some("${MCP_TEST_UNSET_SECRET}".into()),
                "MCP_TEST_UNSET_SECRET",
            ),
        ] {
            let mut bad = server.clone();
            change(&mut bad);
            let error = bad.validate().unwrap_err().0;
            assert!(error.contains(says), "{error}");
        }
        let mut command = BridgeServer::from_command("c", "cat".into(), Vec::new());
        command.client_id = Some("x".into());
        assert!(command
            .validate()
            .unwrap_err()
            .0
            .contains("for a server with a `url`"));
        assert!(command.oauth(true).is_none());
    }
}
