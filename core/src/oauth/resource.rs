//! Protected-resource metadata (RFC 9728): where it is looked for, what
//! it must say. Its `resource` must be the configured server (or a path
//! above it on the same origin): a server naming another resource would
//! have the user obtain a token for it.

use serde::Deserialize;

use super::OAuthError;
use crate::http::Url;

/// Where protected-resource metadata is published, below the origin.
const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The parts of an RFC 9728 document a client uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ResourceMetadata {
    pub resource: String,
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
}

/// Where to look for the server's metadata, in the order the MCP
/// authorization spec gives: the URL its challenge named, then the
/// well-known URL with the server's path, then at the root.
pub fn metadata_urls(server: &Url, named: Option<&str>) -> Vec<Result<Url, String>> {
    let mut urls = Vec::new();
    if let Some(named) = named {
        urls.push(server.join(named).map_err(|e| e.to_string()));
    }
    let path = server.path().trim_end_matches('/');
    let well_known = [format!("{WELL_KNOWN}{path}"), WELL_KNOWN.to_owned()];
    for target in well_known {
        let url = server.with_target(&target);
        if !urls.iter().any(|u| u.as_ref() == Ok(&url)) {
            urls.push(Ok(url));
        }
    }
    urls
}

impl ResourceMetadata {
    /// Whether this document may speak for `server`: its `resource` is
    /// the server's URL, or a path above it, on the same origin.
    pub fn check(&self, server: &Url) -> Result<(), OAuthError> {
        let mismatch = || {
            OAuthError::Refused(format!(
                "the server's protected-resource metadata names the resource `{}`, not {server}: refused",
                crate::text::bounded(&self.resource, 200)
            ))
        };
        if self.resource.contains('#') {
            return Err(mismatch());
        }
        let resource = Url::parse(&self.resource).map_err(|_| mismatch())?;
        if !resource.same_origin(server) {
            return Err(mismatch());
        }
        let above = resource.path().trim_end_matches('/');
        let below = server.path().trim_end_matches('/');
        let within = below
            .strip_prefix(above)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if !within {
            return Err(mismatch());
        }
        Ok(())
    }

    /// The authorization server to use: the first one named.
    pub fn issuer(&self) -> Result<&str, OAuthError> {
        self.authorization_servers
            .first()
            .map(String::as_str)
            .ok_or_else(|| {
                OAuthError::Refused(
                    "the server's protected-resource metadata names no authorization server"
                        .to_owned(),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(resource: &str) -> ResourceMetadata {
        ResourceMetadata {
            resource: resource.to_owned(),
            authorization_servers: Vec::new(),
            scopes_supported: None,
        }
    }

    #[test]
    fn metadata_is_looked_for_in_the_specs_order() {
        let server = Url::parse("https://mcp.example.com/v1/mcp/").unwrap();
        let urls: Vec<String> = metadata_urls(&server, Some("/custom/prm.json"))
            .into_iter()
            .map(|u| u.unwrap().to_string())
            .collect();
        assert_eq!(
            urls,
            [
                "https://mcp.example.com/custom/prm.json",
                "https://mcp.example.com/.well-known/oauth-protected-resource/v1/mcp",
                "https://mcp.example.com/.well-known/oauth-protected-resource",
            ]
        );
        let root = Url::parse("https://mcp.example.com").unwrap();
        assert_eq!(metadata_urls(&root, None).len(), 1);
        let named = "/.well-known/oauth-protected-resource";
        assert_eq!(metadata_urls(&root, Some(named)).len(), 1);
        assert!(metadata_urls(&root, Some("../x"))[0].is_err());
    }

    #[test]
    fn the_resource_must_be_the_server_or_above_it() {
        let server = Url::parse("http://localhost:3000/mcp").unwrap();
        for good in [
            "http://localhost:3000/mcp",
            "http://localhost:3000/mcp/",
            "http://localhost:3000",
            "http://LOCALHOST:3000/",
        ] {
            assert!(metadata(good).check(&server).is_ok(), "{good}");
        }
        for bad in [
            "https://evil.example.com/mcp",
            "https://localhost:3000/mcp",
            "http://localhost:3001/mcp",
            "http://localhost:3000/mcp2",
            "http://localhost:3000/other",
            "http://localhost:3000/mcp#x",
            "not a url",
        ] {
            let error = metadata(bad).check(&server).unwrap_err();
            assert!(error.to_string().contains("refused"), "{bad}: {error}");
        }
        assert!(metadata("x").issuer().is_err());
    }
}
