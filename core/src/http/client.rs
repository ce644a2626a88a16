//! The client side of HTTP/1.1: a request to bytes, a response from bytes
//! as they arrive. What dials a remote MCP server or an OAuth endpoint
//! writes [`Outgoing::encode`] to its connection and feeds what it reads
//! to a [`ResponseReader`], which yields the head, then the body in pieces
//! (a streamed SSE answer is read as it comes), then its end.
//!
//! The reader is bounded: a head over [`MAX_HEAD`], or a body over the
//! limit it was given, is an error rather than memory spent.

use std::borrow::Cow;

use bytes::{Buf, Bytes, BytesMut};

use super::{ChunkedDecoder, ChunkedError, Headers, Url};
use crate::swar;

/// The longest response head read.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields a response may have.
const MAX_FIELDS: usize = 100;
/// The most interim (1xx) heads one response may bring before its own: a
/// server sends one or two, never dozens.
const MAX_INTERIM: usize = 8;

/// A request to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub method: &'static str,
    pub url: Url,
    /// Fields besides `Host`, `Content-Length` and `Connection`, which
    /// [`Outgoing::encode`] writes itself. Names and many values are the
    /// product's own, borrowed: a request is built for every message posted.
    pub headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    pub body: Bytes,
}

impl Outgoing {
    pub fn new(method: &'static str, url: Url) -> Self {
        Outgoing {
            method,
            url,
            // A post to an MCP server has about this many; grown one by
            // one they were moved four times.
            headers: Vec::with_capacity(8),
            body: Bytes::new(),
        }
    }

    /// Adds a field, unless its name or value has a line break in it (it
    /// would start a field of its own). Only text made at run time is
    /// looked at: the product's own literals are known to be clean.
    pub fn header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.push(name.into(), value.into());
        self
    }

    /// The work of [`Outgoing::header`], kept apart so that `header` is
    /// small enough to be inlined: a request built a field at a time is
    /// then not moved out and back in for each field.
    fn push(&mut self, name: Cow<'static, str>, value: Cow<'static, str>) {
        let clean = |part: &Cow<'static, str>| {
            matches!(part, Cow::Borrowed(_)) || swar::line_break(part.as_bytes()) == part.len()
        };
        if clean(&name) && clean(&value) {
            self.headers.push((name, value));
        }
    }

    pub fn body(mut self, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self.header("content-type", content_type)
    }

    /// The request's bytes, asking to keep the connection.
    pub fn encode(&self) -> Vec<u8> {
        let fields: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len() + 4)
            .sum();
        let mut out = Vec::with_capacity(128 + self.url.target().len() + fields + self.body.len());
        for part in [
            self.method,
            " ",
            self.url.target(),
            " HTTP/1.1\r\nhost: ",
            self.url.authority(),
            "\r\n",
        ] {
            out.extend_from_slice(part.as_bytes());
        }
        for (name, value) in &self.headers {
            for part in [name, ": ", value, "\r\n"] {
                out.extend_from_slice(part.as_bytes());
            }
        }
        if !self.body.is_empty() || matches!(self.method, "POST" | "PUT" | "PATCH") {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(self.body.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A response's status line and fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Headers,
}

impl ResponseHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The media type of `Content-Type`, lower-cased, without parameters.
    pub fn media_type(&self) -> String {
        self.media().to_ascii_lowercase()
    }

    /// Whether the media type of `Content-Type` is `wanted` (lower-case),
    /// read without a copy: asked of every answer a remote server sends.
    pub fn is_media_type(&self, wanted: &str) -> bool {
        self.media().eq_ignore_ascii_case(wanted)
    }

    /// The media type of `Content-Type` as written, without parameters.
    fn media(&self) -> &str {
        let value = self.header("content-type").unwrap_or_default();
        let end = value.bytes().position(|b| b == b';').unwrap_or(value.len());
        value.get(..end).unwrap_or_default().trim_ascii()
    }
}

/// What reading a response came to, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseEvent {
    Head(ResponseHead),
    /// Some of the body.
    Data(Bytes),
    /// The body is over; the connection may carry another request unless
    /// [`ResponseReader::reusable`] says otherwise.
    End,
}

/// Why a response cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the response is not HTTP/1.1: {0}")]
    Malformed(&'static str),
    #[error("the response's head is longer than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("the response is longer than {0} bytes")]
    BodyTooLarge(usize),
    #[error("the connection ended before the response did")]
    Truncated,
}

impl From<ChunkedError> for ResponseError {
    fn from(e: ChunkedError) -> Self {
        match e {
            ChunkedError::BodyTooLarge | ChunkedError::TrailersTooLarge => {
                ResponseError::BodyTooLarge(0)
            }
            ChunkedError::Malformed(why) => ResponseError::Malformed(why),
        }
    }
}

/// Reads one response: bytes in, [`ResponseEvent`]s out.
#[derive(Debug)]
pub struct ResponseReader {
    state: Reading,
    input: BytesMut,
    /// Body bytes allowed in all.
    max_body: usize,
    /// Body bytes handed out so far.
    read: usize,
    /// Whether the request was a `HEAD` (its answer has no body).
    head_only: bool,
    /// Whether the connection can carry another request once this
    /// response ends.
    reusable: bool,
    /// Interim (1xx) heads read so far.
    interim: usize,
}

#[derive(Debug)]
enum Reading {
    Head,
    Length(usize),
    Chunked(ChunkedDecoder),
    /// Until the connection ends.
    Close,
    Done,
}

impl ResponseReader {
    /// A reader for the answer to a request made with `method`, whose body
    /// may be at most `max_body` bytes.
    pub fn new(method: &str, max_body: usize) -> Self {
        ResponseReader {
            state: Reading::Head,
            input: BytesMut::new(),
            max_body,
            read: 0,
            head_only: method == "HEAD",
            reusable: true,
            interim: 0,
        }
    }

    /// Whether the connection may be used again once [`ResponseEvent::End`]
    /// came.
    pub fn reusable(&self) -> bool {
        self.reusable && matches!(self.state, Reading::Done) && self.input.is_empty()
    }

    /// Takes bytes read from the connection; the events they make are
    /// added to `events` (the caller's, kept from read to read: no list
    /// is made for each).
    pub fn push(
        &mut self,
        bytes: &[u8],
        events: &mut Vec<ResponseEvent>,
    ) -> Result<(), ResponseError> {
        self.input.extend_from_slice(bytes);
        loop {
            let before = events.len();
            self.step(events)?;
            if events.len() == before || matches!(self.state, Reading::Done) {
                return Ok(());
            }
        }
    }

    /// The connection ended: the events that makes (the end of a body
    /// read until close) are added to `events`, or an error if the
    /// response was cut short.
    pub fn eof(&mut self, events: &mut Vec<ResponseEvent>) -> Result<(), ResponseError> {
        match self.state {
            Reading::Close => {
                self.state = Reading::Done;
                self.reusable = false;
                events.push(ResponseEvent::End);
                Ok(())
            }
            Reading::Done => Ok(()),
            _ => Err(ResponseError::Truncated),
        }
    }

    fn step(&mut self, events: &mut Vec<ResponseEvent>) -> Result<(), ResponseError> {
        match &mut self.state {
            Reading::Head => {
                if let Some(head) = self.head()? {
                    events.push(ResponseEvent::Head(head));
                    if matches!(self.state, Reading::Done) {
                        events.push(ResponseEvent::End);
                    }
                }
            }
            Reading::Length(left) => {
                let take = (*left).min(self.input.len());
                if take > 0 {
                    *left -= take;
                    let data = self.input.split_to(take).freeze();
                    self.count(data.len())?;
                    events.push(ResponseEvent::Data(data));
                }
                if matches!(self.state, Reading::Length(0)) {
                    self.state = Reading::Done;
                    events.push(ResponseEvent::End);
                }
            }
            Reading::Chunked(decoder) => {
                let mut body = BytesMut::new();
                let room = self.max_body.saturating_sub(self.read);
                let done = decoder
                    .decode(&mut self.input, &mut body, room, MAX_HEAD)
                    .map_err(|e| match e {
                        ChunkedError::BodyTooLarge => ResponseError::BodyTooLarge(self.max_body),
                        e => e.into(),
                    })?;
                if !body.is_empty() {
                    self.count(body.len())?;
                    events.push(ResponseEvent::Data(body.freeze()));
                }
                if done {
                    self.state = Reading::Done;
                    events.push(ResponseEvent::End);
                }
            }
            Reading::Close => {
                if !self.input.is_empty() {
                    let data = self.input.split().freeze();
                    self.count(data.len())?;
                    events.push(ResponseEvent::Data(data));
                }
            }
            Reading::Done => {}
        }
        Ok(())
    }

    fn count(&mut self, bytes: usize) -> Result<(), ResponseError> {
        self.read += bytes;
        if self.read > self.max_body {
            return Err(ResponseError::BodyTooLarge(self.max_body));
        }
        Ok(())
    }

    /// The head, once all of it is in; it sets how the body is framed.
    /// Interim heads (`100 Continue` and the like) before it are read and
    /// passed over, up to [`MAX_INTERIM`].
    fn head(&mut self) -> Result<Option<ResponseHead>, ResponseError> {
        loop {
            let Some(head) = self.one_head()? else {
                return Ok(None);
            };
            if !(100..200).contains(&head.status) {
                return Ok(Some(head));
            }
            self.interim += 1;
            if self.interim > MAX_INTERIM {
                return Err(ResponseError::Malformed("interim responses without end"));
            }
        }
    }

    /// The next head, interim or final, once all of it is in.
    fn one_head(&mut self) -> Result<Option<ResponseHead>, ResponseError> {
        // Left uninitialised, as a request's are (`RequestReader`).
        let mut fields = [std::mem::MaybeUninit::uninit(); MAX_FIELDS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            &self.input,
            &mut fields,
        );
        let used = match parsed {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) if self.input.len() > MAX_HEAD => {
                return Err(ResponseError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::HeadTooLarge),
            Err(_) => return Err(ResponseError::Malformed("its status line or fields")),
        };
        let status = response.code.unwrap_or(0);
        let headers = Headers::parsed(&self.input, response.headers)
            .map_err(|_| ResponseError::Malformed("a field that is not text"))?;
        let old = response.version == Some(0);
        // Moved past rather than split off: the buffer stays its own, with
        // no shared handle made for bytes that are dropped at once.
        self.input.advance(used);
        if (100..200).contains(&status) {
            return Ok(Some(ResponseHead { status, headers }));
        }
        let closes = old
            || headers
                .get("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        self.reusable = !closes;
        let chunked = headers.get("transfer-encoding").is_some_and(|te| {
            te.as_bytes()
                .windows(7)
                .any(|w| w.eq_ignore_ascii_case(b"chunked"))
        });
        self.state = if self.head_only || status == 204 || status == 304 {
            Reading::Done
        } else if chunked {
            Reading::Chunked(ChunkedDecoder::default())
        } else if let Some(length) = headers.get("content-length") {
            let length: usize = length
                .parse()
                .map_err(|_| ResponseError::Malformed("its Content-Length"))?;
            if length > self.max_body {
                return Err(ResponseError::BodyTooLarge(self.max_body));
            }
            if length == 0 {
                Reading::Done
            } else {
                Reading::Length(length)
            }
        } else {
            self.reusable = false;
            Reading::Close
        };
        Ok(Some(ResponseHead { status, headers }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One push's or end's events as a list.
    trait Pushed {
        fn pushed(&mut self, bytes: &[u8]) -> Result<Vec<ResponseEvent>, ResponseError>;
        fn ended(&mut self) -> Result<Vec<ResponseEvent>, ResponseError>;
    }

    impl Pushed for ResponseReader {
        fn pushed(&mut self, bytes: &[u8]) -> Result<Vec<ResponseEvent>, ResponseError> {
            let mut events = Vec::new();
            self.push(bytes, &mut events).map(|()| events)
        }

        fn ended(&mut self) -> Result<Vec<ResponseEvent>, ResponseError> {
            let mut events = Vec::new();
            self.eof(&mut events).map(|()| events)
        }
    }

    fn read_all(method: &str, bytes: &[u8], max: usize, split: usize) -> Vec<ResponseEvent> {
        let mut reader = ResponseReader::new(method, max);
        let mut events = Vec::new();
        for piece in bytes.chunks(split.max(1)) {
            events.extend(reader.pushed(piece).unwrap());
        }
        events
    }

    fn body(events: &[ResponseEvent]) -> Vec<u8> {
        events
            .iter()
            .filter_map(|e| match e {
                ResponseEvent::Data(d) => Some(d.to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn a_request_is_written_with_its_host() {
        let url = Url::parse("http://127.0.0.1:7000/mcp").unwrap();
        let bytes = Outgoing::new("POST", url)
            .header("accept", "application/json, text/event-stream")
            // Values made at run time (a server's session id, a tool's
            // name) are the ones looked at.
            .header("x-bad", "a\r\nb".to_owned())
            .header("x-long-bad", "0123456789abcdef0123\nrest".to_owned())
            .header("x-long", "0123456789abcdef0123 kept".to_owned())
            .body("application/json", "{}")
            .encode();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:7000\r\n"));
        assert!(text.contains("content-length: 2\r\n"));
        assert!(!text.contains("x-bad"));
        assert!(!text.contains("x-long-bad"));
        assert!(text.contains("x-long: 0123456789abcdef0123 kept\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn every_framing_reads_the_same_whatever_the_split() {
        let length = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n";
        for split in [1, 2, 7, 1000] {
            for bytes in [&length[..], &chunked[..]] {
                let events = read_all("POST", bytes, 1024, split);
                assert!(matches!(&events[0], ResponseEvent::Head(h) if h.status == 200));
                assert_eq!(body(&events), b"hello");
                assert_eq!(events.last(), Some(&ResponseEvent::End));
            }
        }
        let mut reader = ResponseReader::new("GET", 1024);
        let events = reader
            .pushed(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: 1\n\n")
            .unwrap();
        assert_eq!(body(&events), b"data: 1\n\n");
        assert_eq!(reader.ended().unwrap(), vec![ResponseEvent::End]);
        assert!(!reader.reusable());
    }

    #[test]
    fn a_keep_alive_response_leaves_the_connection_reusable() {
        let mut reader = ResponseReader::new("POST", 1024);
        reader
            .pushed(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
            )
            .unwrap();
        assert!(reader.reusable());
        let mut closing = ResponseReader::new("POST", 1024);
        closing
            .pushed(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert!(!closing.reusable());
    }

    #[test]
    fn interim_heads_are_passed_over_a_few_times_not_without_end() {
        let few = [&b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"[..]; MAX_INTERIM].concat();
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        for split in [1, 7, 4096] {
            let events = read_all("GET", &[&few[..], answer].concat(), 1024, split);
            assert_eq!(body(&events), b"ok", "split {split}");
        }
        // A server sending nothing but interim heads is refused, however
        // many come at once (they were once read by recursion).
        let endless = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(20_000);
        let mut reader = ResponseReader::new("POST", 1024);
        assert_eq!(
            reader.pushed(&endless),
            Err(ResponseError::Malformed("interim responses without end"))
        );
    }

    #[test]
    fn too_much_is_an_error_not_memory() {
        let mut big = ResponseReader::new("GET", 10);
        assert_eq!(
            big.pushed(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"),
            Err(ResponseError::BodyTooLarge(10))
        );
        let mut endless = ResponseReader::new("GET", 10);
        endless.pushed(b"HTTP/1.1 200 OK\r\n\r\n12345").unwrap();
        assert_eq!(
            endless.pushed(b"678901"),
            Err(ResponseError::BodyTooLarge(10))
        );
        let mut chunks = ResponseReader::new("GET", 4);
        assert!(chunks
            .pushed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .is_err());
        let mut head = ResponseReader::new("GET", 10);
        let mut long = b"HTTP/1.1 200 OK\r\nx-long: ".to_vec();
        long.resize(MAX_HEAD + 10, b'x');
        assert_eq!(head.pushed(&long), Err(ResponseError::HeadTooLarge));
        let mut html = ResponseReader::new("GET", 10);
        assert!(html.pushed(b"<html>oops</html>\r\n\r\n").is_err());
        let mut cut = ResponseReader::new("GET", 10);
        cut.pushed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
            .unwrap();
        assert_eq!(cut.ended(), Err(ResponseError::Truncated));
    }
}
