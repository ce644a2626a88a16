//! Where a login may send requests. The server's metadata names the
//! authorization server, and that server's metadata names its endpoints:
//! a hostile server could point them at this machine's or its network's
//! private services (a cloud metadata address, a router) and use the
//! provider to reach them. So when the configured server is public, every
//! URL a login fetches, is redirected to or opens must be public too; and
//! credentials never travel in clear to a public host.

use super::OAuthError;
use crate::http::Url;

/// The rule for one login, set by the configured server's URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    /// Whether the configured server is itself on a private address (a
    /// server on this machine or the network may use private endpoints).
    server_private: bool,
}

impl Guard {
    pub fn for_server(server: &Url) -> Guard {
        Guard {
            server_private: server.is_private(),
        }
    }

    /// `url` (`what` it is, for the error) if the rule allows it.
    pub fn check(&self, url: &Url, what: &str) -> Result<(), OAuthError> {
        if url.is_private() && !self.server_private {
            return Err(OAuthError::Refused(format!(
                "{what} {url} is on a private address while the MCP server is public: refused"
            )));
        }
        if !url.is_secure() && !url.is_private() {
            return Err(OAuthError::Refused(format!(
                "{what} {url} is not https: refused (credentials would travel in clear)"
            )));
        }
        Ok(())
    }

    /// `text` parsed as a URL that the rule allows.
    pub fn parse(&self, text: &str, what: &str) -> Result<Url, OAuthError> {
        let url = Url::parse(text)
            .map_err(|e| OAuthError::Refused(format!("{what} is not a URL to use: {e}")))?;
        self.check(&url, what)?;
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn a_public_server_keeps_its_login_public_and_encrypted() {
        let guard = Guard::for_server(&url("https://mcp.example.com/mcp"));
        assert!(guard
            .check(&url("https://as.example.org/token"), "x")
            .is_ok());
        for bad in [
            "http://169.254.169.254/latest/meta-data",
            "https://127.0.0.1/token",
            "http://as.example.org/token",
        ] {
            let error = guard.check(&url(bad), "the token endpoint").unwrap_err();
            assert!(error.to_string().contains("refused"), "{error}");
        }
        assert!(guard.parse("not a url", "the issuer").is_err());
    }

    #[test]
    fn a_local_server_may_use_local_endpoints() {
        let guard = Guard::for_server(&url("http://localhost:3000/mcp"));
        assert!(guard
            .check(&url("http://127.0.0.1:4000/token"), "x")
            .is_ok());
        assert!(guard.check(&url("https://as.example.org/"), "x").is_ok());
        assert!(guard.check(&url("http://as.example.org/"), "x").is_err());
    }
}
