//! Reading HTTP/1.1 requests from bytes: heads with `httparse`, bodies framed
//! by `Content-Length` or `chunked`.
//!
//! Incomplete input is never an error: [`RequestReader::next_request`] returns
//! `Ok(None)` until a whole request is buffered. What may be buffered is
//! capped, and overflow maps to the status the peer should get (431, 413).
//!
//! Framing follows RFC 9112 strictly, because a request whose length two
//! parsers read differently is how requests are smuggled: at most one
//! `Transfer-Encoding`, and only `chunked`, never with `Content-Length` nor
//! in HTTP/1.0; `Content-Length` only digits; exactly one `Host` in
//! HTTP/1.1. Anything else is [`HttpError::Malformed`] (400), after which
//! the reader hands out nothing more.

use std::borrow::Cow;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use super::chunked::{ChunkedDecoder, ChunkedError};
use super::headers::Headers;

/// Caps on what one request may make the reader buffer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line plus headers.
    pub max_head: usize,
    /// Decoded body.
    pub max_body: usize,
    /// Bytes a peer may pipeline behind a request still being answered
    /// before [`super::ServerConn::wants_read`] tells the driver to stop
    /// reading: the peer then waits on TCP, not in our memory.
    pub max_pipeline: usize,
    /// How long an idle connection (no request being answered) may take to
    /// send a whole request: [`super::ServerConn::poll_timeout`].
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_body: 4 * 1024 * 1024,
            max_pipeline: 64 * 1024,
            idle_timeout: Duration::from_secs(60),
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
    /// The method, borrowed when it is one HTTP names (see `METHODS`).
    pub method: Cow<'static, str>,
    /// The canonical target (see [`Request::target`]); private, so
    /// nothing can route on another spelling after it was checked.
    target: String,
    /// How much of `target` is its path: set with the target, as the
    /// path is asked for several times a request (a head is far shorter
    /// than 4 GiB).
    path_len: u32,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    headers: Headers,
    pub body: Bytes,
    /// Its number on its connection: see [`Request::seq`].
    pub(super) seq: u64,
}

/// The methods a request is kept under without a copy.
const METHODS: [&str; 7] = ["GET", "POST", "DELETE", "OPTIONS", "HEAD", "PUT", "PATCH"];

/// `method`, borrowed when it is one of [`METHODS`]: a request's method is
/// read for every request, and nearly always one of them.
fn method_of(method: &str) -> Cow<'static, str> {
    crate::text::known_or_owned(&METHODS, method)
}

impl Request {
    /// A request built from parts (drivers whose HTTP library parses
    /// heads). Its target is made canonical as a parsed one's is; one that
    /// cannot be is the error to answer (400), as
    /// [`RequestReader::next_request`] would return it.
    pub fn new(
        method: &str,
        target: &str,
        headers: Vec<(String, String)>,
        body: Bytes,
    ) -> Result<Self, HttpError> {
        let mut request = Request {
            method: method_of(method),
            target: target.to_owned(),
            path_len: 0,
            minor_version: 1,
            headers: headers.into_iter().collect(),
            body,
            seq: 0,
        };
        normalise_target(&mut request)?;
        Ok(request)
    }

    /// Its number on its connection, counting from 0 (0 for a request
    /// built with [`Request::new`]). [`super::ServerConn`] numbers the
    /// requests it hands out, and writes only what is addressed to the
    /// request it is answering: an output meant for a request already
    /// answered cannot land in a later one's answer.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// First value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The header fields, names lower-cased, in the order received.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The request target in canonical origin-form (`super::target`):
    /// path plus optional `?query` (an absolute-form target is rewritten,
    /// its authority moved to the `host` header), or `*` for `OPTIONS *`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The target without its query string.
    pub fn path(&self) -> &str {
        let end = usize::try_from(self.path_len).unwrap_or(usize::MAX);
        self.target.get(..end).unwrap_or_default()
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

    /// Bytes received and not yet part of a request handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The request whose head was read while its body is still coming.
    pub fn awaiting_body(&self) -> Option<&Request> {
        match &self.state {
            State::Body { request, .. } => Some(request),
            _ => None,
        }
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
        // Asked after every request it served, before more is read.
        if self.buf.is_empty() {
            return Ok(None);
        }
        // Left uninitialised: filling 100 fields for every request costs
        // more than reading the few it has.
        let mut headers = [std::mem::MaybeUninit::uninit(); MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut []);
        let len = match parsed.parse_with_uninit_headers(&self.buf, &mut headers) {
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
        let mut request = Request {
            method: method_of(parsed.method.unwrap_or_default()),
            target: parsed.path.unwrap_or_default().to_owned(),
            path_len: 0,
            minor_version: parsed.version.unwrap_or(1),
            // A field that is not text is read as text with its bad
            // bytes replaced: rare, and then each field is copied alone.
            headers: Headers::parsed(&self.buf, parsed.headers).unwrap_or_else(|_| {
                let mut headers = Headers::with_capacity(parsed.headers.len(), len);
                for h in parsed.headers.iter() {
                    headers.push(h.name, &crate::text::lossy(h.value));
                }
                headers
            }),
            body: Bytes::new(),
            seq: 0,
        };
        self.buf.advance(len);
        check_host(&request)?;
        normalise_target(&mut request)?;
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

/// Requires exactly one `Host` in HTTP/1.1 (RFC 9112 §3.2) and at most
/// one in HTTP/1.0: two could name different hosts to two parsers.
fn check_host(request: &Request) -> Result<(), HttpError> {
    let hosts = request.headers.all("host").count();
    match (hosts, request.minor_version) {
        (0, 0) | (1, _) => Ok(()),
        (0, _) => Err(HttpError::Malformed("HTTP/1.1 request without Host")),
        _ => Err(HttpError::Malformed("more than one Host header")),
    }
}

/// Puts the target in its canonical spelling ([`super::target`]); an
/// absolute-form target's authority replaces the `host` header's value
/// (RFC 9112 §3.2.2), so the local-host check judges the host actually
/// named.
fn normalise_target(request: &mut Request) -> Result<(), HttpError> {
    let mut path_len = super::target::path_len(&request.target);
    let path = request.target.get(..path_len).unwrap_or_default();
    if !super::target::is_canonical_path(path) {
        let (target, authority) = super::target::canonical(&request.method, &request.target)
            .map_err(HttpError::Malformed)?;
        request.target = target;
        if let Some(authority) = authority {
            request.headers.set("host", &authority);
        }
        path_len = super::target::path_len(&request.target);
    }
    request.path_len = u32::try_from(path_len).unwrap_or(u32::MAX);
    Ok(())
}

/// How the body is delimited (RFC 9112 §6.3). Every ambiguity is an error
/// rather than a guess: a second `Transfer-Encoding`, a coding other than
/// exactly `chunked` (we decode no other), `Transfer-Encoding` with
/// `Content-Length`, or in HTTP/1.0 (which has no chunked coding).
fn framing_of(request: &Request) -> Result<Framing, HttpError> {
    let mut codings = request.headers.all("transfer-encoding");
    let coding = match (codings.next(), codings.next()) {
        (None, _) => return content_length(request).map(Framing::Length),
        (Some(coding), None) => coding,
        (Some(_), Some(_)) => return Err(HttpError::Malformed("more than one transfer-encoding")),
    };
    if request.minor_version == 0 {
        return Err(HttpError::Malformed(
            "transfer-encoding in an HTTP/1.0 request",
        ));
    }
    if request.header("content-length").is_some() {
        return Err(HttpError::Malformed(
            "both content-length and transfer-encoding",
        ));
    }
    match trim_ows(coding).eq_ignore_ascii_case("chunked") {
        true => Ok(Framing::Chunked(ChunkedDecoder::default())),
        false => Err(HttpError::Malformed("unsupported transfer-encoding")),
    }
}

/// The declared body length: every `Content-Length` header, and every
/// member of a comma list in one, must be `1*DIGIT` (optional whitespace
/// around it) and all must be equal (RFC 9110 §8.6). No sign, no hex, no
/// junk: what `str::parse` would also accept (`+5`) another parser reads
/// differently. 0 without the header.
fn content_length(request: &Request) -> Result<usize, HttpError> {
    let values = request
        .headers
        .all("content-length")
        .flat_map(|v| v.split(','));
    let mut length = None;
    for value in values {
        let n =
            parse_length(trim_ows(value)).ok_or(HttpError::Malformed("invalid content-length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(HttpError::Malformed("conflicting content-length values"));
        }
        length = Some(n);
    }
    Ok(length.unwrap_or(0))
}

/// `1*DIGIT` as a length; a number too big for `usize` is past any body
/// cap, so it saturates and gets its 413.
fn parse_length(digits: &str) -> Option<usize> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(usize::MAX))
}

/// A field value without the optional whitespace (space, tab) around it.
fn trim_ows(value: &str) -> &str {
    value.trim_matches([' ', '\t'])
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

    /// What the reader makes of `input` fed `step` bytes at a time: the
    /// requests, then the status of the first error if any.
    fn outcome(input: &[u8], step: usize) -> (Vec<Request>, Option<u16>) {
        let mut reader = RequestReader::new(Limits::default());
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            reader.handle_data(piece);
            loop {
                match reader.next_request() {
                    Ok(Some(r)) => out.push(r),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e.status())),
                }
            }
        }
        (out, None)
    }

    /// The status `input` is rejected with, the same whole, byte by byte
    /// and with a valid request behind it (the error comes first and
    /// nothing after it is read).
    fn rejected(input: &[u8]) -> u16 {
        let (requests, status) = outcome(input, input.len());
        let status =
            status.unwrap_or_else(|| panic!("accepted {:?}", String::from_utf8_lossy(input)));
        assert!(requests.is_empty());
        assert_eq!(outcome(input, 1), (vec![], Some(status)));
        let mut trailing = input.to_vec();
        trailing.extend_from_slice(POST);
        assert_eq!(outcome(&trailing, trailing.len()), (vec![], Some(status)));
        status
    }

    /// The single request in `input`, the same whole, byte by byte and
    /// with trailing bytes of a next request left buffered.
    fn accepted(input: &[u8]) -> Request {
        let (whole, status) = outcome(input, input.len());
        assert_eq!(status, None, "{:?}", String::from_utf8_lossy(input));
        assert_eq!(whole.len(), 1);
        assert_eq!(outcome(input, 1), (whole.clone(), None));
        let mut trailing = input.to_vec();
        trailing.extend_from_slice(&POST[..20]);
        assert_eq!(outcome(&trailing, 3), (whole.clone(), None));
        whole.into_iter().next().unwrap()
    }

    fn head(lines: &str) -> Vec<u8> {
        format!("POST /v1/chat/completions HTTP/1.1\r\n{lines}\r\n").into_bytes()
    }

    /// A method HTTP names is kept borrowed; any other, and any other
    /// spelling (methods are case-sensitive), as it came.
    #[test]
    fn a_known_method_is_borrowed() {
        for method in METHODS {
            assert!(matches!(method_of(method), Cow::Borrowed(m) if m == method));
        }
        for other in ["PROPFIND", "get", "POSTX"] {
            let kept = method_of(other);
            assert!(matches!(kept, Cow::Owned(_)), "{other}");
            assert_eq!(kept, other);
        }
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
        reader.handle_data(b"els HTTP/1.1\r\nHost: a\r\n\r\n");
        let next = read_all(&mut reader);
        assert_eq!(next[0].target(), "/v1/models");
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
            ..Limits::default()
        });
        reader.handle_data(b"POST /api/chat HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n");
        let err = reader.next_request().unwrap_err();
        assert_eq!(err.status(), 413);
        assert_eq!(err.path(), Some("/api/chat"));
    }

    #[test]
    fn chunked_body_over_the_cap_is_413() {
        let mut reader = RequestReader::new(Limits {
            max_head: 1024,
            max_body: 4,
            ..Limits::default()
        });
        reader.handle_data(CHUNKED);
        assert_eq!(reader.next_request().unwrap_err().status(), 413);
    }

    #[test]
    fn garbage_is_400_and_keep_alive_follows_the_version() {
        assert_eq!(rejected(b"\x00\x01 nonsense\r\n\r\n"), 400);
        let r = &feed(b"GET / HTTP/1.0\r\n\r\n", 3)[0];
        assert!(!r.keep_alive());
        let r = &feed(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 3)[0];
        assert!(!r.keep_alive());
        assert!(feed(POST, 100)[0].keep_alive());
    }

    #[test]
    fn conflicting_lengths_are_rejected() {
        assert_eq!(
            rejected(
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
            ),
            400
        );
        assert_eq!(rejected(&head("Host: a\r\nContent-Length: 1, 2\r\n")), 400);
    }

    #[test]
    fn equal_lengths_in_a_list_or_repeated_are_one_length() {
        let mut input = head("Host: a\r\nContent-Length: 2 , 2\r\nContent-Length:\t2\t\r\n");
        input.extend_from_slice(b"ok");
        assert_eq!(&accepted(&input).body[..], b"ok");
    }

    #[test]
    fn content_length_is_only_digits() {
        for value in ["+5", "-5", "5 5", "0x5", "5a", "", "5,", " ,5", "٥", "1e3"] {
            let input = head(&format!("Host: a\r\nContent-Length: {value}\r\n"));
            assert_eq!(rejected(&input), 400, "{value:?}");
        }
    }

    #[test]
    fn a_length_past_usize_is_413() {
        let input = head("Host: a\r\nContent-Length: 99999999999999999999999999\r\n");
        assert_eq!(rejected(&input), 413);
    }

    #[test]
    fn transfer_encoding_must_be_exactly_one_chunked() {
        for lines in [
            "Host: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "Host: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "Host: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "Host: a\r\nTransfer-Encoding: gzip, chunked\r\n",
            "Host: a\r\nTransfer-Encoding: identity\r\n",
            "Host: a\r\nTransfer-Encoding: chunked, chunked\r\n",
        ] {
            assert_eq!(rejected(&head(lines)), 400, "{lines:?}");
        }
        let http10 = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(rejected(http10), 400);
        let mut spaced = head("Host: a\r\nTransfer-Encoding:  Chunked \r\n");
        spaced.extend_from_slice(b"0\r\n\r\n");
        assert!(accepted(&spaced).body.is_empty());
    }

    #[test]
    fn host_is_required_once_in_http11() {
        assert_eq!(rejected(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            rejected(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
            400
        );
        assert_eq!(
            rejected(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
            400
        );
        assert_eq!(accepted(b"GET / HTTP/1.0\r\n\r\n").header("host"), None);
        assert_eq!(
            accepted(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").header("host"),
            Some("")
        );
    }

    #[test]
    fn bad_chunked_bodies_are_400_at_once() {
        for body in [
            &b"5\nhello\n0\n\n"[..],
            b"+5\r\nhello\r\n",
            b" 5\r\n",
            b"5 \r\n",
            b"0x5\r\n",
            b"fffffffffffffffffffff",
            b"5\r\nhello\r\n0\r\nX:1\n",
        ] {
            let mut input = head("Host: a\r\nTransfer-Encoding: chunked\r\n");
            input.extend_from_slice(body);
            // Not waiting for more: the error is known from these bytes.
            assert_eq!(rejected(&input), 400, "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn absolute_form_targets_route_by_path_and_name_the_host() {
        let r = accepted(b"GET http://127.0.0.1:8788/v1/models?x=1 HTTP/1.1\r\nHost: evil\r\n\r\n");
        assert_eq!((r.target(), r.path()), ("/v1/models?x=1", "/v1/models"));
        assert_eq!(r.header("host"), Some("127.0.0.1:8788"));
        let r = accepted(b"GET HTTP://localhost HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(r.target(), "/");
        let r = accepted(b"GET https://localhost?q HTTP/1.0\r\n\r\n");
        assert_eq!((r.target(), r.header("host")), ("/?q", Some("localhost")));
    }

    #[test]
    fn other_target_forms_are_400_but_options_star_is_kept() {
        for target in [
            "v1/models",
            "ftp://a/b",
            "http:///x",
            "http://u@a/x",
            "127.0.0.1:80",
            "*",
        ] {
            let input = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(rejected(input.as_bytes()), 400, "{target}");
        }
        let r = accepted(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!((r.target(), r.path()), ("*", "*"));
    }

    #[test]
    fn nothing_is_read_after_an_error() {
        let mut reader = RequestReader::new(Limits::default());
        reader.handle_data(b"GET / HTTP/1.1\r\n\r\n");
        assert!(reader.next_request().is_err());
        reader.handle_data(POST);
        assert!(reader.next_request().is_err());
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

            /// Any bytes at all, split anywhere: the same requests and the
            /// same error, never a panic.
            #[test]
            fn any_bytes_split_anywhere_read_the_same(
                input in prop::collection::vec(any::<u8>(), 0..300),
                step in 1..20usize,
            ) {
                prop_assert_eq!(outcome(&input, step), outcome(&input, input.len()));
            }
        }
    }
}
