//! One server-side HTTP/1.1 connection: requests in, response bytes out.
//!
//! Requests are handed out one at a time: the next is read only after the
//! current response ended, so pipelined requests are answered in order.

use bytes::{BufMut, BytesMut};

use super::request::{HttpError, Limits, Request, RequestReader};
use super::response::{encode_head, Body, Framing, Response};

#[derive(Debug)]
pub struct ServerConn {
    reader: RequestReader,
    /// Set while a response is being written: (framing, keep-alive).
    current: Option<(Framing, bool)>,
    close: bool,
    /// HTTP version of the request being answered.
    minor_version: u8,
}

impl ServerConn {
    pub fn new(limits: Limits) -> Self {
        ServerConn {
            reader: RequestReader::new(limits),
            current: None,
            close: false,
            minor_version: 1,
        }
    }

    /// Bytes read from the socket.
    pub fn handle_data(&mut self, data: &[u8]) {
        self.reader.handle_data(data);
    }

    /// The next request to answer, once the previous response ended.
    ///
    /// After an error, answer it (see [`HttpError::status`]) and close.
    pub fn poll_request(&mut self) -> Result<Option<Request>, HttpError> {
        if self.current.is_some() || self.close {
            return Ok(None);
        }
        match self.reader.next_request() {
            Ok(Some(request)) => {
                self.minor_version = request.minor_version;
                if !request.keep_alive() {
                    self.close = true;
                }
                self.current = Some((Framing::Length, !self.close));
                Ok(Some(request))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.close = true;
                self.current = Some((Framing::Length, false));
                Err(e)
            }
        }
    }

    /// Bytes read past the request that switched protocols.
    pub fn take_upgrade_bytes(&mut self) -> bytes::Bytes {
        self.reader.take_buffered()
    }

    /// Encodes the response to the current request.
    pub fn encode_response(&mut self, response: &Response, out: &mut BytesMut) {
        let keep_alive = !self.close;
        let framing = match response.body {
            Body::Full(_) => Framing::Length,
            Body::Stream if self.minor_version == 0 => Framing::Close,
            Body::Stream => Framing::Chunked,
        };
        if framing == Framing::Close {
            self.close = true;
        }
        encode_head(
            response,
            framing,
            keep_alive && framing != Framing::Close,
            out,
        );
        match response.body {
            Body::Full(_) => self.current = None,
            Body::Stream => self.current = Some((framing, keep_alive)),
        }
    }

    /// Encodes a piece of a streamed body.
    pub fn encode_data(&mut self, data: &[u8], out: &mut BytesMut) {
        match self.current {
            Some((Framing::Chunked, _)) if !data.is_empty() => {
                out.put_slice(format!("{:x}\r\n", data.len()).as_bytes());
                out.put_slice(data);
                out.put_slice(b"\r\n");
            }
            Some((Framing::Close, _)) => out.put_slice(data),
            _ => {}
        }
    }

    /// Ends a streamed body.
    pub fn encode_end(&mut self, out: &mut BytesMut) {
        if let Some((Framing::Chunked, _)) = self.current {
            out.put_slice(b"0\r\n\r\n");
        }
        self.current = None;
    }

    /// Whether no request is being answered: the connection waits for the
    /// client, so a driver may time it out.
    pub fn is_idle(&self) -> bool {
        self.current.is_none()
    }

    /// Whether the connection must be closed once everything is written.
    pub fn wants_close(&self) -> bool {
        self.close && self.current.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn_with(input: &[u8]) -> ServerConn {
        let mut c = ServerConn::new(Limits::default());
        c.handle_data(input);
        c
    }

    #[test]
    fn pipelined_requests_wait_for_the_previous_response() {
        let mut c = conn_with(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
        assert_eq!(c.poll_request().unwrap().unwrap().target, "/a");
        assert!(c.poll_request().unwrap().is_none());
        let mut out = BytesMut::new();
        c.encode_response(&Response::stream("text/event-stream"), &mut out);
        c.encode_data(b"data: x\n\n", &mut out);
        c.encode_end(&mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("transfer-encoding: chunked\r\n"));
        assert!(text.ends_with("\r\n\r\n9\r\ndata: x\n\n\r\n0\r\n\r\n"));
        assert_eq!(c.poll_request().unwrap().unwrap().target, "/b");
    }

    #[test]
    fn http10_stream_is_close_delimited() {
        let mut c = conn_with(b"GET /a HTTP/1.0\r\n\r\n");
        c.poll_request().unwrap().unwrap();
        let mut out = BytesMut::new();
        c.encode_response(&Response::stream("application/x-ndjson"), &mut out);
        c.encode_data(b"{}\n", &mut out);
        c.encode_end(&mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.contains("connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{}\n"));
        assert!(c.wants_close());
    }

    #[test]
    fn full_response_carries_its_length() {
        let mut c = conn_with(b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n");
        c.poll_request().unwrap().unwrap();
        let mut out = BytesMut::new();
        c.encode_response(&Response::json(404, "{}"), &mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("content-length: 2\r\nconnection: close\r\n\r\n{}"));
        assert!(c.wants_close());
    }
}
