//! One HTTP request, whole: for the few requests that are not a remote MCP
//! server's messages (OAuth metadata, registration, tokens). Bounded in
//! size and time — the whole exchange, not each read, so a server that
//! trickles a byte at a time cannot hold it; redirects are not followed
//! (the caller decides).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mcp_provider_core::http::{Outgoing, ResponseEvent, ResponseHead};

use crate::outbound::upstream::conn::{Conn, Deadline};

/// Why a fetch got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No connection was made (refused, no such host, no TLS handshake
    /// within the dial's limit): nothing else on that origin answers either.
    Unreachable(String),
    /// Connected, and then no whole response came.
    Failed(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Unreachable(why) | FetchError::Failed(why) => f.write_str(why),
        }
    }
}

/// A response read whole.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub head: ResponseHead,
    pub body: Bytes,
}

/// Sends `request` on a new connection and reads its whole response, at
/// most `max_body` bytes of it, within `timeout` once connected.
pub fn fetch(
    request: &Outgoing,
    max_body: usize,
    timeout: Duration,
    ca_file: Option<&str>,
) -> Result<Fetched, FetchError> {
    let mut conn =
        Conn::dial(&request.url, ca_file).map_err(|e| FetchError::Unreachable(e.to_string()))?;
    let socket = conn.cutter();
    let _ = socket.set_read_timeout(Some(timeout));
    let _ = socket.set_write_timeout(Some(timeout));
    let deadline = Deadline::arm(socket, timeout);
    let late = || {
        format!(
            "{}: no whole answer within {:.1} s",
            request.url,
            timeout.as_secs_f64()
        )
    };
    let mut head = None;
    let mut body = BytesMut::new();
    conn.exchange(request, max_body, |events| {
        for event in events {
            match event {
                ResponseEvent::Head(h) => head = Some(h),
                ResponseEvent::Data(data) => body.extend_from_slice(&data),
                ResponseEvent::End => {}
            }
        }
        true
    })
    .map_err(|(e, _)| match deadline.passed() {
        true => FetchError::Failed(late()),
        false => FetchError::Failed(format!("{}: {e}", request.url)),
    })?;
    let head = head.ok_or_else(|| FetchError::Failed(format!("{}: no response", request.url)))?;
    Ok(Fetched {
        head,
        body: body.freeze(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_provider_core::http::Url;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A server that answers each connection with `answer`, a byte every
    /// `pause`.
    fn trickling(answer: &'static [u8], pause: Duration) -> Url {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/token", listener.local_addr().unwrap())).unwrap();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request);
                for byte in answer {
                    if stream.write_all(&[*byte]).is_err() {
                        break;
                    }
                    std::thread::sleep(pause);
                }
            }
        });
        url
    }

    #[test]
    fn a_whole_answer_is_read_and_a_trickle_is_cut_in_time() {
        let quick = trickling(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
            Duration::ZERO,
        );
        let fetched = fetch(
            &Outgoing::new("GET", quick),
            1024,
            Duration::from_secs(5),
            None,
        )
        .unwrap();
        assert_eq!((fetched.head.status, &fetched.body[..]), (200, &b"{}"[..]));
        let slow = trickling(
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{\"a\":\"b\"}",
            Duration::from_millis(100),
        );
        let started = std::time::Instant::now();
        let error = fetch(
            &Outgoing::new("GET", slow),
            1024,
            Duration::from_millis(500),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&error, FetchError::Failed(why) if why.contains("no whole answer within 0.5 s")),
            "{error:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        // Nothing listening: unreachable, which tells a login to stop.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/", closed.local_addr().unwrap())).unwrap();
        drop(closed);
        let error = fetch(
            &Outgoing::new("GET", url),
            1024,
            Duration::from_secs(5),
            None,
        );
        assert!(
            matches!(error, Err(FetchError::Unreachable(_))),
            "{error:?}"
        );
    }
}
