//! One HTTP request, whole: for the few requests that are not a remote MCP
//! server's messages (OAuth metadata, registration, tokens). Bounded in
//! size and time; redirects are not followed (the caller decides).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mcp_provider_core::http::{Outgoing, ResponseEvent, ResponseHead};

use crate::upstream::conn::Conn;

/// A response read whole.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub head: ResponseHead,
    pub body: Bytes,
}

/// Sends `request` on a new connection and reads its whole response, at
/// most `max_body` bytes of it, within `timeout` per read.
pub fn fetch(
    request: &Outgoing,
    max_body: usize,
    timeout: Duration,
    ca_file: Option<&str>,
) -> Result<Fetched, String> {
    let mut conn = Conn::dial(&request.url, ca_file).map_err(|e| e.to_string())?;
    let socket = conn.cutter();
    let _ = socket.set_read_timeout(Some(timeout));
    let _ = socket.set_write_timeout(Some(timeout));
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
    .map_err(|(e, _)| format!("{}: {e}", request.url))?;
    let head = head.ok_or_else(|| format!("{}: no response", request.url))?;
    Ok(Fetched {
        head,
        body: body.freeze(),
    })
}
