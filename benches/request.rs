//! A request as the baseline relays (`relay`, `stdio_relay`, `http_relay`)
//! read it: its head parsed with httparse, its body taken by its length,
//! and nothing else, as the least any server does.

use std::io;

use smol::io::{AsyncRead, AsyncReadExt};

/// What the relays need of a request's head.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Its length in bytes, the blank line included: the body starts there.
    pub len: usize,
    /// `Content-Length` (0 when absent or unreadable).
    pub content_length: usize,
    /// `Sec-WebSocket-Key`, for an upgrade.
    pub websocket_key: Option<String>,
}

/// The value of the field `name` (any case) among `headers`, trimmed; none
/// when absent or not UTF-8.
pub fn header<'h>(headers: &[httparse::Header<'h>], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
}

/// Parses a request head from the start of `buf`: `Ok(None)` when more
/// bytes are needed, `Err` when it is not HTTP.
pub fn request_head(buf: &[u8]) -> Result<Option<RequestHead>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = request.parse(buf)? else {
        return Ok(None);
    };
    let header = |name| header(request.headers, name);
    Ok(Some(RequestHead {
        len,
        content_length: header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        websocket_key: header("sec-websocket-key").map(str::to_owned),
    }))
}

/// What was read from a socket and not yet taken, and the room each read
/// lands in, zeroed once for the socket's life (zeroing a fresh 16 KiB for
/// every read cost more instructions than the rest of a relay's work).
pub struct Received {
    pub bytes: Vec<u8>,
    chunk: Vec<u8>,
}

impl Default for Received {
    fn default() -> Self {
        Received {
            bytes: Vec::with_capacity(16 * 1024),
            chunk: vec![0; 16 * 1024],
        }
    }
}

impl Received {
    /// Reads once more from `socket`: an error at its end.
    pub async fn fill(&mut self, socket: &mut (impl AsyncRead + Unpin)) -> io::Result<()> {
        let n = socket.read(&mut self.chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.bytes
            .extend_from_slice(self.chunk.get(..n).unwrap_or_default());
        Ok(())
    }
}

/// A connection's requests as they arrive, what was read past the last one
/// (a pipelined request) kept for the next.
#[derive(Default)]
pub struct Requests {
    received: Received,
}

impl Requests {
    /// The next request on `socket`: its head and body, or `None` at the
    /// connection's end or on bytes that are not HTTP. An upgrade's body
    /// is empty: what follows its head is the new protocol's.
    pub async fn next(
        &mut self,
        socket: &mut (impl AsyncRead + Unpin),
    ) -> Option<(RequestHead, Vec<u8>)> {
        let head = loop {
            if let Some(head) = request_head(&self.received.bytes).ok()? {
                break head;
            }
            self.received.fill(socket).await.ok()?;
        };
        let length = match head.websocket_key {
            Some(_) => 0,
            None => head.content_length,
        };
        let end = head.len + length;
        while self.received.bytes.len() < end {
            self.received.fill(socket).await.ok()?;
        }
        let body = self.received.bytes.get(head.len..end)?.to_vec();
        self.received.bytes.drain(..end);
        Some((head, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_give_their_length_body_length_and_upgrade_key() {
        let head = request_head(b"POST /mcp HTTP/1.1\r\nContent-Length: 12\r\n\r\n{}")
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.len, head.content_length, head.websocket_key),
            (42, 12, None)
        );
        let head = request_head(b"GET /v1/agent HTTP/1.1\r\nSec-WebSocket-Key: abc\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.websocket_key.as_deref(), Some("abc"));
        assert_eq!(request_head(b"POST /mcp HTTP/1.1\r\n").unwrap(), None);
        assert!(request_head(b"\x00\x01 nope\r\n\r\n").is_err());
    }

    #[test]
    fn requests_are_read_whole_one_after_another() {
        let wire = b"POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\n[1]";
        let mut socket = &wire[..];
        let mut requests = Requests::default();
        smol::block_on(async {
            let (_, body) = requests.next(&mut socket).await.unwrap();
            assert_eq!(body, b"{}");
            let (_, body) = requests.next(&mut socket).await.unwrap();
            assert_eq!(body, b"[1]");
            assert!(requests.next(&mut socket).await.is_none());
        });
    }
}
