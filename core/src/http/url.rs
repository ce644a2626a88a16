//! The `http` and `https` URLs the product dials: a remote MCP server from
//! the configuration, the endpoint a legacy SSE server names, the OAuth
//! metadata and token endpoints. Only what a client needs: scheme, host,
//! port, and the request target; no user info (credentials in a URL end
//! up in logs), no fragments sent.

use std::fmt;
use std::sync::Arc;

/// A parsed absolute `http`/`https` URL. Its text is shared: every request
/// to a remote server carries a copy, made without allocating.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Url {
    secure: bool,
    /// What the `Host` header says (see [`Url::authority`]): written once
    /// here, since every request to a remote server carries it.
    authority: Arc<str>,
    /// Where the host stands in `authority` (lower-cased; an IPv6 literal
    /// without its brackets).
    host: (usize, usize),
    port: u16,
    /// Path and query, starting with `/`.
    target: Arc<str>,
}

/// Why a text is not a URL this client dials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{url}` is not an http(s) URL: {why}")]
pub struct BadUrl {
    url: String,
    why: &'static str,
}

impl Url {
    /// Parses an absolute `http://` or `https://` URL. A fragment is
    /// dropped; user info is refused.
    pub fn parse(text: &str) -> Result<Url, BadUrl> {
        let bad = |why| BadUrl {
            url: crate::text::bounded(text, 200),
            why,
        };
        let (secure, rest) = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (true, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (false, rest),
            _ => return Err(bad("it must start with http:// or https://")),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(bad("credentials in a URL are not accepted; use headers"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("its host or port"))?;
        if host.is_empty() || !host.chars().all(host_char) {
            return Err(bad("its host"));
        }
        if target.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err(bad("it has spaces or control characters"));
        }
        let target = match target {
            "" => "/".to_owned(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_owned(),
        };
        let port = port.unwrap_or(if secure { 443 } else { 80 });
        Ok(Url::new(
            secure,
            &host.to_ascii_lowercase(),
            port,
            target.into(),
        ))
    }

    /// The URL of `host` (lower-case), `port` and `target`, its authority
    /// written out.
    fn new(secure: bool, host: &str, port: u16, target: Arc<str>) -> Url {
        let bracketed = host.contains(':');
        let mut authority = String::with_capacity(host.len() + 8);
        if bracketed {
            authority.push('[');
        }
        let start = authority.len();
        authority.push_str(host);
        let end = authority.len();
        if bracketed {
            authority.push(']');
        }
        if port != if secure { 443 } else { 80 } {
            authority.push(':');
            authority.push_str(itoa::Buffer::new().format(port));
        }
        Url {
            secure,
            authority: authority.into(),
            host: (start, end),
            port,
            target,
        }
    }

    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The host as written, without brackets.
    pub fn host(&self) -> &str {
        self.authority
            .get(self.host.0..self.host.1)
            .unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Path and query: what goes on the request line.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The path alone, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("/")
    }

    /// The URL without its query, which may hold a key: what is shown of
    /// it (`/stats`, the dashboard).
    pub fn shown(&self) -> String {
        format!("{}{}", self.origin(), self.path())
    }

    /// What the `Host` header says: the host, and the port unless it is
    /// the scheme's own.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Scheme, host and port: two URLs with the same origin are one
    /// server as far as credentials go.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme(), self.authority())
    }

    /// Whether `other` has this URL's [`origin`](Url::origin).
    pub fn same_origin(&self, other: &Url) -> bool {
        // With the scheme the same, the authorities name the same host
        // and port exactly when they are equal.
        self.secure == other.secure && self.authority == other.authority
    }

    /// Whether this URL is written `text` (its `Display`), checked as it
    /// is written out, with no copy made: a per-call check.
    pub fn is_spelled(&self, text: &str) -> bool {
        /// Takes what is written off the front of `rest`, failing at the
        /// first difference.
        struct Prefix<'a> {
            rest: &'a str,
        }
        impl fmt::Write for Prefix<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.rest = self.rest.strip_prefix(s).ok_or(fmt::Error)?;
                Ok(())
            }
        }
        let mut prefix = Prefix { rest: text };
        fmt::write(&mut prefix, format_args!("{self}")).is_ok() && prefix.rest.is_empty()
    }

    pub fn scheme(&self) -> &'static str {
        if self.secure {
            "https"
        } else {
            "http"
        }
    }

    /// `reference` resolved against this URL: absolute, origin-relative
    /// (`/path`) or relative to this URL's directory (RFC 3986 §5.2, without
    /// dot-segment games: a `..` is refused rather than resolved).
    pub fn join(&self, reference: &str) -> Result<Url, BadUrl> {
        if reference.contains("://") {
            return Url::parse(reference);
        }
        if reference.starts_with("//") {
            return Url::parse(&format!("{}:{reference}", self.scheme()));
        }
        if reference.split(['/', '?']).any(|segment| segment == "..") {
            return Err(BadUrl {
                url: crate::text::bounded(reference, 200),
                why: "a `..` segment",
            });
        }
        let target = if reference.starts_with('/') {
            reference.to_owned()
        } else if reference.starts_with('?') {
            format!("{}{reference}", self.path())
        } else {
            let path = self.path();
            let dir = path.rfind('/').map_or("/", |at| &path[..=at]);
            format!("{dir}{reference}")
        };
        Url::parse(&format!("{}{target}", self.origin()))
    }

    /// The same server with another target (`/…`).
    pub fn with_target(&self, target: &str) -> Url {
        Url {
            target: if target.starts_with('/') {
                target.into()
            } else {
                format!("/{target}").into()
            },
            ..self.clone()
        }
    }

    /// Whether the host is this machine or a private network's: where a
    /// redirect or a discovered endpoint must not lead unless the
    /// configured URL is there already.
    pub fn is_private(&self) -> bool {
        let host = self.host();
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) => {
                ip.is_loopback()
                    || ip.is_private()
                    || ip.is_link_local()
                    || ip.is_unspecified()
                    || ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64
            }
            Ok(std::net::IpAddr::V6(ip)) => {
                ip.is_loopback()
                    || ip.is_unspecified()
                    || (ip.segments()[0] & 0xfe00) == 0xfc00
                    || (ip.segments()[0] & 0xffc0) == 0xfe80
                    || ip
                        .to_ipv4_mapped()
                        .is_some_and(|v4| v4.is_loopback() || v4.is_private() || v4.is_link_local())
            }
            Err(_) => false,
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme(), self.authority, self.target)
    }
}

/// `host[:port]` or `[v6][:port]`; `None` when the port is not a number.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            port => Some((host, Some(port.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

fn host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_configurations_hold() {
        let url = Url::parse("https://mcp.example.com/v1/mcp?x=1#frag").unwrap();
        assert!(url.is_secure());
        assert_eq!(url.host(), "mcp.example.com");
        assert_eq!(url.port(), 443);
        assert_eq!(url.target(), "/v1/mcp?x=1");
        assert_eq!(url.path(), "/v1/mcp");
        assert_eq!(url.authority(), "mcp.example.com");
        let local = Url::parse("http://127.0.0.1:8931").unwrap();
        assert_eq!(local.target(), "/");
        assert_eq!(local.authority(), "127.0.0.1:8931");
        assert_eq!(local.to_string(), "http://127.0.0.1:8931/");
        let v6 = Url::parse("http://[::1]:9/mcp").unwrap();
        assert_eq!(v6.host(), "::1");
        assert_eq!(v6.authority(), "[::1]:9");
    }

    #[test]
    fn a_spelling_matches_only_the_whole_url() {
        let url = Url::parse("http://[::1]:7000/mcp?x=1").unwrap();
        assert!(url.is_spelled(&url.to_string()));
        for other in [
            "",
            "http://",
            "http://[::1]:7000/mcp",
            "http://[::1]:7000/mcp?x=12",
        ] {
            assert!(!url.is_spelled(other), "{other}");
        }
    }

    #[test]
    fn refuses_what_it_does_not_dial() {
        for bad in [
            "ftp://x/",
            "mcp.example.com",
            "http://user:pw@host/",
            "http://host:99999/",
            "http://:80/",
            "http://ho st/",
            "http://host/a b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn joins_references_the_way_servers_send_them() {
        let base = Url::parse("http://127.0.0.1:7000/mcp/sse").unwrap();
        let join = |r| base.join(r).unwrap().to_string();
        assert_eq!(
            join("/messages/?session_id=ab"),
            "http://127.0.0.1:7000/messages/?session_id=ab"
        );
        assert_eq!(
            join("messages?session_id=ab"),
            "http://127.0.0.1:7000/mcp/messages?session_id=ab"
        );
        assert_eq!(join("https://other/x"), "https://other/x");
        assert!(base.join("../etc").is_err());
    }

    #[test]
    fn knows_private_hosts() {
        for private in [
            "http://localhost/",
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/",
            "http://[::1]/",
            "http://[fd00::1]/",
        ] {
            assert!(Url::parse(private).unwrap().is_private(), "{private}");
        }
        assert!(!Url::parse("https://mcp.example.com/").unwrap().is_private());
        assert!(!Url::parse("https://8.8.8.8/").unwrap().is_private());
    }
}
