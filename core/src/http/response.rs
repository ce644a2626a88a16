//! Responses as values, and their HTTP/1.1 encoding.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

use crate::digits::put_decimal;

/// A response's header fields besides its framing. Values are mostly the
/// product's own, borrowed: a response is made for every request.
pub type Fields = Vec<(&'static str, Cow<'static, str>)>;

/// What the provider answers to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Fields,
    pub body: Body,
}

/// A whole body, or a stream of [`crate::Output::Data`] ended by
/// [`crate::Output::End`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Full(Bytes),
    Stream,
}

impl Response {
    pub fn full(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Response {
            status,
            headers: vec![("content-type", content_type.into())],
            body: Body::Full(body.into()),
        }
    }

    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Self::full(status, "application/json", body)
    }

    /// A streamed body; `X-Accel-Buffering: no` keeps reverse proxies from
    /// holding chunks back.
    pub fn stream(content_type: &'static str) -> Self {
        Response {
            status: 200,
            headers: vec![
                ("content-type", content_type.into()),
                ("cache-control", "no-cache".into()),
                ("x-accel-buffering", "no".into()),
            ],
            body: Body::Stream,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

/// The reason phrase for the statuses the provider uses.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Length,
    Chunked,
    /// HTTP/1.0 stream: the body ends when the connection closes.
    Close,
}

/// Whether a response with this status may carry a body (RFC 9110 §6.4.1:
/// 1xx, 204 and 304 never do, nor announce a length).
pub(crate) fn status_has_body(status: u16) -> bool {
    !(100..200).contains(&status) && status != 204 && status != 304
}

/// The status line and headers, with the framing header the body needs
/// (`content-length` of a whole body even when it is not sent, as for
/// HEAD); the body is the caller's to write.
pub(crate) fn encode_head(
    response: &Response,
    framing: Framing,
    keep_alive: bool,
    out: &mut BytesMut,
) {
    out.put_slice(b"HTTP/1.1 ");
    put_decimal(out, u64::from(response.status));
    out.put_u8(b' ');
    out.put_slice(reason(response.status).as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in &response.headers {
        put_header(out, name, value);
    }
    match (&response.body, framing) {
        _ if !status_has_body(response.status) => {}
        (Body::Full(body), _) => {
            out.put_slice(b"content-length: ");
            put_decimal(out, body.len() as u64);
            out.put_slice(b"\r\n");
        }
        (Body::Stream, Framing::Chunked) => put_header(out, "transfer-encoding", "chunked"),
        (Body::Stream, _) => {}
    }
    if !keep_alive {
        put_header(out, "connection", "close");
    }
    out.put_slice(b"\r\n");
}

/// A whole body after its head, unless the status forbids one.
pub(crate) fn encode_full_body(response: &Response, out: &mut BytesMut) {
    if let Body::Full(body) = &response.body {
        if status_has_body(response.status) {
            out.put_slice(body);
        }
    }
}

fn put_header(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_slice(b"\r\n");
}

/// A whole response to send on a connection that closes right after it:
/// for connections a driver refuses before reading their request.
pub fn encode_closing(response: &Response) -> Bytes {
    let mut out = BytesMut::new();
    encode_head(response, Framing::Length, false, &mut out);
    encode_full_body(response, &mut out);
    out.freeze()
}

/// The `101 Switching Protocols` head accepting a WebSocket upgrade;
/// `accept` is the `Sec-WebSocket-Accept` value derived from the client
/// key, and `fields` are further header fields (name, value).
pub fn websocket_accept(accept: &str, fields: &[(&str, &str)]) -> Bytes {
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n"
    );
    for (name, value) in fields {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_content_has_neither_length_nor_body() {
        let text = encode_closing(&Response::json(204, "ignored"));
        assert_eq!(
            &text[..],
            b"HTTP/1.1 204 No Content\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn a_closing_response_carries_its_body() {
        let text = encode_closing(&Response::json(400, "{}"));
        assert!(text.ends_with(b"content-length: 2\r\nconnection: close\r\n\r\n{}"));
    }
}
