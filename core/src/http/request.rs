//! Reading HTTP/1.1 requests from bytes: heads with `httparse`, bodies framed
//! by `Content-Length` or `chunked`.
//!
//! Incomplete input is never an error: [`RequestReader::next_request`] returns
//! `Ok(None)` until a whole request is buffered. What may be buffered is
//! capped, and overflow maps to the status the peer should get (431, 413).

use bytes::{Buf, Bytes, BytesMut};

use super::chunked::{ChunkedDecoder, ChunkedError};

/// Caps on what one request may make the reader buffer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line plus headers.
    pub max_head: usize,
    /// Decoded body.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_body: 4 * 1024 * 1024,
        }
    }
}

const MAX_HEADERS: usize = 100;

/// A request the peer sent that cannot be served; the connection must be
/// closed after the error response because framing is lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    #[error("request header block larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: usize, path: String },
    #[error("malformed request: {0}")]
    Malformed(&'static str),
}

impl HttpError {
    /// The status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge(_) => 431,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::Malformed(_) => 400,
        }
    }

    /// The request path, when the head was read before the error.
    pub fn path(&self) -> Option<&str> {
        match self {
            HttpError::BodyTooLarge { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// One complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path plus optional `?query`.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Request {
    /// A request built from parts (drivers whose HTTP library parses heads).
    pub fn new(method: &str, target: &str, headers: Vec<(String, String)>, body: Bytes) -> Self {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            minor_version: 1,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            body,
        }
    }

    /// First value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// Whether the connection may carry another request after this one.
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("connection").map(str::to_ascii_lowercase);
        match self.minor_version {
            0 => conn.is_some_and(|c| c.contains("keep-alive")),
            _ => !conn.is_some_and(|c| c.contains("close")),
        }
    }

    /// Whether this is a WebSocket upgrade request.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
    }
}

#[derive(Debug)]
enum State {
    Head,
    Body {
        request: Request,
        framing: Framing,
        body: BytesMut,
    },
    /// A framing error was returned; nothing more is read.
    Failed,
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(usize),
    Chunked(ChunkedDecoder),
}

/// Turns the bytes of one connection into requests.
#[derive(Debug)]
pub struct RequestReader {
    limits: Limits,
    buf: BytesMut,
    state: State,
}

impl RequestReader {
    pub fn new(limits: Limits) -> Self {
        RequestReader {
            limits,
            buf: BytesMut::new(),
            state: State::Head,
        }
    }

    /// Bytes received from the peer.
    pub fn handle_data(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered past the last complete request (for a protocol upgrade).
    pub fn take_buffered(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    /// The next complete request, `Ok(None)` if more bytes are needed.
    pub fn next_request(&mut self) -> Result<Option<Request>, HttpError> {
        loop {
            match std::mem::replace(&mut self.state, State::Failed) {
                State::Failed => return Err(HttpError::Malformed("connection already failed")),
                State::Head => match self.parse_head() {
                    Ok(Some(next)) => self.state = next,
                    Ok(None) => {
                        self.state = State::Head;
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                },
                State::Body {
                    request,
                    framing,
                    body,
                } => match self.read_body(request, framing, body)? {
                    Ok(request) => {
                        self.state = State::Head;
                        return Ok(Some(request));
                    }
                    Err(pending) => {
                        self.state = pending;
                        return Ok(None);
                    }
                },
            }
        }
    }

    fn parse_head(&mut self) -> Result<Option<State>, HttpError> {
        // Tolerate blank lines between requests (RFC 9112 §2.2).
        while self.buf.starts_with(b"\r\n") {
            self.buf.advance(2);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let len = match parsed.parse(&self.buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                if self.buf.len() > self.limits.max_head {
                    return Err(HttpError::HeadTooLarge(self.limits.max_head));
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HttpError::HeadTooLarge(self.limits.max_head))
            }
            Err(_) => return Err(HttpError::Malformed("invalid request head")),
        };
        if len > self.limits.max_head {
            return Err(HttpError::HeadTooLarge(self.limits.max_head));
        }
        let request = Request {
            method: parsed.method.unwrap_or_default().to_owned(),
            target: parsed.path.unwrap_or_default().to_owned(),
            minor_version: parsed.version.unwrap_or(1),
            headers: parsed
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            body: Bytes::new(),
        };
        self.buf.advance(len);
        let framing = framing_of(&request)?;
        if let Framing::Length(n) = framing {
            if n > self.limits.max_body {
                return Err(HttpError::BodyTooLarge {
                    limit: self.limits.max_body,
                    path: request.path().to_owned(),
                });
            }
        }
        Ok(Some(State::Body {
            request,
            framing,
            body: BytesMut::new(),
        }))
    }

    /// `Ok(Ok(request))` when the body is complete, `Ok(Err(state))` to wait.
    fn read_body(
        &mut self,
        mut request: Request,
        framing: Framing,
        mut body: BytesMut,
    ) -> Result<Result<Request, State>, HttpError> {
        let mut chunked = match framing {
            Framing::Length(n) => {
                if self.buf.len() < n {
                    return Ok(Err(State::Body {
                        request,
                        framing,
                        body,
                    }));
                }
                request.body = self.buf.split_to(n).freeze();
                return Ok(Ok(request));
            }
            Framing::Chunked(decoder) => decoder,
        };
        let limits = self.limits;
        match chunked.decode(&mut self.buf, &mut body, limits.max_body, limits.max_head) {
            Ok(true) => {
                request.body = body.freeze();
                Ok(Ok(request))
            }
            Ok(false) => Ok(Err(State::Body {
                request,
                framing: Framing::Chunked(chunked),
                body,
            })),
            Err(ChunkedError::Malformed(why)) => Err(HttpError::Malformed(why)),
            Err(ChunkedError::BodyTooLarge) => Err(HttpError::BodyTooLarge {
                limit: limits.max_body,
                path: request.path().to_owned(),
            }),
            Err(ChunkedError::TrailersTooLarge) => Err(HttpError::HeadTooLarge(limits.max_head)),
        }
    }
}

fn framing_of(request: &Request) -> Result<Framing, HttpError> {
    if let Some(te) = request.header("transfer-encoding") {
        if te.trim().eq_ignore_ascii_case("chunked") {
            return Ok(Framing::Chunked(ChunkedDecoder::default()));
        }
        return Err(HttpError::Malformed("unsupported transfer-encoding"));
    }
    let mut lengths = request
        .headers
        .iter()
        .filter(|(k, _)| k == "content-length");
    match (lengths.next(), lengths.next()) {
        (None, _) => Ok(Framing::Length(0)),
        (Some((_, v)), None) => v
            .trim()
            .parse()
            .map(Framing::Length)
            .map_err(|_| HttpError::Malformed("invalid content-length")),
        (Some(_), Some(_)) => Err(HttpError::Malformed("more than one content-length")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POST: &[u8] =
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello";
    const CHUNKED: &[u8] = b"POST /api/chat HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nX-Trailer: 1\r\n\r\n";

    fn read_all(reader: &mut RequestReader) -> Vec<Request> {
        let mut out = Vec::new();
        while let Some(r) = reader.next_request().unwrap() {
            out.push(r);
        }
        out
    }

    /// Feeds `input` in pieces of `step` bytes and collects the requests.
    fn feed(input: &[u8], step: usize) -> Vec<Request> {
        let mut reader = RequestReader::new(Limits::default());
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            reader.handle_data(piece);
            out.extend(read_all(&mut reader));
        }
        out
    }

    #[test]
    fn whole_byte_by_byte_and_trailing_give_the_same_requests() {
        for input in [POST, CHUNKED] {
            let whole = feed(input, input.len());
            assert_eq!(whole.len(), 1);
            assert_eq!(&whole[0].body[..], b"hello");
            assert_eq!(feed(input, 1), whole);
            let mut two = input.to_vec();
            two.extend_from_slice(input);
            assert_eq!(feed(&two, 7), [whole.clone(), whole.clone()].concat());
        }
    }

    #[test]
    fn trailing_partial_request_stays_buffered() {
        let mut reader = RequestReader::new(Limits::default());
        reader.handle_data(POST);
        reader.handle_data(b"GET /v1/mod");
        assert_eq!(read_all(&mut reader).len(), 1);
        reader.handle_data(b"els HTTP/1.1\r\n\r\n");
        let next = read_all(&mut reader);
        assert_eq!(next[0].target, "/v1/models");
        assert!(next[0].body.is_empty());
    }

    #[test]
    fn head_over_the_cap_is_431() {
        let mut reader = RequestReader::new(Limits::default());
        reader.handle_data(b"GET / HTTP/1.1\r\nX-Big: ");
        reader.handle_data(&vec![b'a'; 17 * 1024]);
        assert_eq!(reader.next_request().unwrap_err().status(), 431);
    }

    #[test]
    fn declared_body_over_the_cap_is_413_before_reading_it() {
        let mut reader = RequestReader::new(Limits {
            max_head: 1024,
            max_body: 10,
        });
        reader.handle_data(b"POST /api/chat HTTP/1.1\r\nContent-Length: 11\r\n\r\n");
        let err = reader.next_request().unwrap_err();
        assert_eq!(err.status(), 413);
        assert_eq!(err.path(), Some("/api/chat"));
    }

    #[test]
    fn chunked_body_over_the_cap_is_413() {
        let mut reader = RequestReader::new(Limits {
            max_head: 1024,
            max_body: 4,
        });
        reader.handle_data(CHUNKED);
        assert_eq!(reader.next_request().unwrap_err().status(), 413);
    }

    #[test]
    fn garbage_is_400_and_keep_alive_follows_the_version() {
        let mut reader = RequestReader::new(Limits::default());
        reader.handle_data(b"\x00\x01 nonsense\r\n\r\n");
        assert_eq!(reader.next_request().unwrap_err().status(), 400);
        let r = &feed(b"GET / HTTP/1.0\r\n\r\n", 3)[0];
        assert!(!r.keep_alive());
        let r = &feed(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 3)[0];
        assert!(!r.keep_alive());
        assert!(feed(POST, 100)[0].keep_alive());
    }

    #[test]
    fn conflicting_lengths_are_rejected() {
        let mut reader = RequestReader::new(Limits::default());
        reader.handle_data(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab");
        assert_eq!(reader.next_request().unwrap_err().status(), 400);
    }

    mod laws {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// Pipelined requests split anywhere (any number of cuts, any
            /// piece sizes) read as the same requests as the bytes whole.
            #[test]
            fn any_split_reads_the_same_requests(
                picks in prop::collection::vec(0..2usize, 1..5),
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
            ) {
                let input: Vec<u8> = picks.iter().flat_map(|&k| [POST, CHUNKED][k].to_vec()).collect();
                let whole = feed(&input, input.len());
                prop_assert_eq!(whole.len(), picks.len());
                let mut at: Vec<usize> = cuts.iter().map(|c| c.index(input.len())).collect();
                at.sort_unstable();
                let mut reader = RequestReader::new(Limits::default());
                let mut split = Vec::new();
                let mut start = 0;
                for end in at.into_iter().chain([input.len()]) {
                    reader.handle_data(&input[start..end]);
                    split.extend(read_all(&mut reader));
                    start = end;
                }
                prop_assert_eq!(split, whole);
            }
        }
    }
}
