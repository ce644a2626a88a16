//! What both runtimes do the same way on agent links: the WebSocket
//! request that dials one with the bridge token, the `101` head that
//! accepts one, and the backoff between attempts to reach an agent hub.

use std::time::Duration;

use mcp_provider_core::http::websocket_accept;
use mcp_provider_core::Upgrade;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Request;
use tungstenite::handshake::derive_accept_key;

/// The handshake request for `url` with `token` as its Bearer credential,
/// and the host and port to open a TCP connection to.
pub fn link_request(url: &str, token: &str) -> Result<(Request, String, u16), String> {
    let mut request = url
        .into_client_request()
        .map_err(|e| format!("bad URL {url}: {e}"))?;
    let auth = format!("Bearer {token}")
        .parse()
        .map_err(|_| "the token contains characters not allowed in a header".to_owned())?;
    request.headers_mut().insert("authorization", auth);
    let host = request.uri().host().unwrap_or("127.0.0.1").to_owned();
    let port = request.uri().port_u16().unwrap_or(80);
    Ok((request, host, port))
}

/// The `101 Switching Protocols` head accepting `upgrade`.
pub fn accept_head(upgrade: &Upgrade) -> bytes::Bytes {
    websocket_accept(
        &derive_accept_key(upgrade.key().as_bytes()),
        upgrade.protocol(),
    )
}

/// Waits between attempts to reach an agent hub: 0.1 s, doubling up to
/// 30 s, back to 0.1 s once a connection succeeds.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MOST: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// A connection succeeded: the next wait is short again.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// How long to wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MOST);
        wait
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..12).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(&waits[..4], [100, 200, 400, 800]);
        assert_eq!(*waits.last().unwrap(), 30_000);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(100));
    }

    #[test]
    fn the_accept_head_carries_the_rfc_6455_example_key() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==".to_owned();
        let head = String::from_utf8(accept_head(&Upgrade::Agent(key.clone())).to_vec()).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"));
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert!(!head.contains("sec-websocket-protocol"));
        let head = accept_head(&Upgrade::Bridge(key, Some("mcp-bridge"))).to_vec();
        let head = String::from_utf8(head).unwrap();
        assert!(
            head.ends_with("sec-websocket-protocol: mcp-bridge\r\n\r\n"),
            "{head}"
        );
    }
}
