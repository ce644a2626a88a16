//! One server-side HTTP/1.1 connection: requests in, response bytes out.
//!
//! Requests are handed out one at a time: the next is read only after the
//! current response ended, so pipelined requests are answered in order.
//!
//! # Driver contract
//!
//! A driver owns the socket and does this, in a loop:
//!
//! 1. Read the socket only while [`ServerConn::wants_read`]. It is false
//!    while a response is in progress and the peer has pipelined
//!    [`Limits::max_pipeline`] bytes behind it (the peer then waits on TCP,
//!    not in our memory), and after the peer shut its side. It turns true
//!    again when the response ends ([`ServerConn::encode_response`] with a
//!    whole body, or [`ServerConn::encode_end`]).
//! 2. Bytes read go to [`ServerConn::handle_data`]; a read of 0 bytes (the
//!    peer shut its write side) to [`ServerConn::handle_eof`].
//! 3. Then, and after every response ends, call
//!    [`ServerConn::poll_request`] until it returns `Ok(None)`; answer each
//!    request (and each error, whose answer closes the connection). When it
//!    returns `Ok(None)`, write what [`ServerConn::poll_interim`] returns
//!    (`100 Continue`), if anything.
//! 4. Write the bytes the `encode_*` calls produce, then call
//!    [`ServerConn::handle_written`]. Once everything is written and
//!    [`ServerConn::wants_close`] holds, close the socket.
//! 5. Close the connection at [`ServerConn::poll_timeout`]: an idle
//!    connection has [`Limits::idle_timeout`] to send a whole request.
//!
//! After [`ServerConn::handle_eof`], requests received in full are still
//! handed out and answered in order; a partial one is dropped unanswered,
//! and the `poll_request` that finds nothing more makes `wants_close` true.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::request::{HttpError, Limits, Request, RequestReader};
use super::response::{encode_full_body, encode_head, status_has_body, Body, Framing, Response};
use crate::time::later;

/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[derive(Debug)]
pub struct ServerConn {
    reader: RequestReader,
    /// Set from the moment a request (or an error) is handed out until its
    /// response ends.
    current: Option<Answer>,
    /// Requests (and errors) handed out so far: the next request is
    /// numbered this ([`Request::seq`]). An error takes a number too, so
    /// nothing meant for the request before it is written into its answer.
    handed_out: u64,
    /// No request is read after the current one; close once it is answered.
    close: bool,
    /// HTTP version of the request being answered.
    minor_version: u8,
    /// The request being answered is a HEAD: its response has no body.
    head: bool,
    /// The peer shut its side: nothing more will arrive.
    eof: bool,
    /// `100 Continue` was produced for the request being read.
    continued: bool,
    /// See [`Limits::max_pipeline`].
    max_pipeline: usize,
    idle_timeout: Duration,
    /// When the connection last became idle (opened, or a response ended
    /// and was written).
    idle_since: Instant,
}

/// The response in progress.
#[derive(Debug, Clone, Copy)]
struct Answer {
    framing: Framing,
    /// A HEAD request, or a status without content: the head says what the
    /// body would be, no body bytes follow.
    bodiless: bool,
}

impl ServerConn {
    /// A connection opened at `now`.
    pub fn new(limits: Limits, now: Instant) -> Self {
        ServerConn {
            reader: RequestReader::new(limits),
            current: None,
            handed_out: 0,
            close: false,
            minor_version: 1,
            head: false,
            eof: false,
            continued: false,
            max_pipeline: limits.max_pipeline,
            idle_timeout: limits.idle_timeout,
            idle_since: now,
        }
    }

    // ---- getters ----

    /// Whether the driver should read the socket: not once the peer shut
    /// its side, nor while a response is in progress and the peer has
    /// already pipelined [`Limits::max_pipeline`] bytes behind it. When
    /// idle, the reader's own caps (431, 413) bound what it buffers.
    pub fn wants_read(&self) -> bool {
        !self.eof && (self.current.is_none() || self.reader.buffered() < self.max_pipeline)
    }

    /// Bytes received and not yet handed out as part of a request.
    pub fn buffered(&self) -> usize {
        self.reader.buffered()
    }

    /// Whether no request is being answered: the connection waits for the
    /// client, so a driver may time it out.
    pub fn is_idle(&self) -> bool {
        self.current.is_none()
    }

    /// Whether the answer in progress is to the request numbered `seq`
    /// ([`Request::seq`]). Anything else was meant for a request already
    /// answered, and is not written.
    pub fn is_answering(&self, seq: u64) -> bool {
        self.current.is_some() && self.handed_out.checked_sub(1) == Some(seq)
    }

    /// When an idle connection that has not sent a whole request must be
    /// closed; `None` while a request is being answered (however long the
    /// answer takes, the peer is waiting for us, not the other way round).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.is_idle()
            .then(|| later(self.idle_since, self.idle_timeout))
    }

    /// Whether the connection must be closed once everything is written:
    /// the last response ended and no other request will be read (the
    /// request or an error asked to close, or the peer shut its side and
    /// [`ServerConn::poll_request`] found nothing more).
    pub fn wants_close(&self) -> bool {
        self.close && self.current.is_none()
    }

    // ---- input ----

    /// Bytes read from the socket.
    pub fn handle_data(&mut self, data: &[u8]) {
        self.reader.handle_data(data);
    }

    /// Everything encoded so far was written, at `now`: an answer that
    /// ended starts the idle deadline from here.
    pub fn handle_written(&mut self, now: Instant) {
        if self.is_idle() {
            self.idle_since = now;
        }
    }

    /// The peer shut its side of the connection (a read returned 0). What
    /// it sent in full is still handed out by [`ServerConn::poll_request`]
    /// and answered; once that returns `Ok(None)`, a partial request left
    /// is dropped and [`ServerConn::wants_close`] says to close.
    pub fn handle_eof(&mut self) {
        self.eof = true;
    }

    // ---- output ----

    /// The next request to answer, once the previous response ended.
    ///
    /// After an error, answer it (see [`HttpError::status`]) and close: the
    /// framing is lost, so nothing more is handed out.
    pub fn poll_request(&mut self) -> Result<Option<Request>, HttpError> {
        if self.current.is_some() || self.close {
            return Ok(None);
        }
        match self.reader.next_request() {
            Ok(Some(mut request)) => {
                request.seq = self.handed_out;
                self.handed_out += 1;
                self.start_answer(&request);
                Ok(Some(request))
            }
            Ok(None) => {
                if self.eof {
                    // Nothing more can complete what is buffered.
                    self.close = true;
                }
                Ok(None)
            }
            Err(e) => {
                self.handed_out += 1;
                self.close = true;
                self.head = false;
                self.current = Some(Answer {
                    framing: Framing::Length,
                    bodiless: false,
                });
                Err(e)
            }
        }
    }

    /// The interim `100 Continue` to write, once, when the request being
    /// read asked for it (`Expect: 100-continue`, HTTP/1.1) and its body
    /// has not all arrived: a client that waits for it before sending the
    /// body would otherwise stall. Call after [`ServerConn::poll_request`]
    /// returned `Ok(None)`. A body declared too large is answered with 413
    /// by `poll_request` instead, and a body already here needs no 100.
    pub fn poll_interim(&mut self) -> Option<Bytes> {
        if self.current.is_some() || self.continued || self.close || self.eof {
            return None;
        }
        let request = self.reader.awaiting_body()?;
        let expects = request.header("expect").is_some_and(|e| {
            e.trim_matches([' ', '\t'])
                .eq_ignore_ascii_case("100-continue")
        });
        if !expects || request.minor_version == 0 {
            return None;
        }
        self.continued = true;
        Some(Bytes::from_static(CONTINUE))
    }

    /// Bytes read past the request that switched protocols.
    pub fn take_upgrade_bytes(&mut self) -> Bytes {
        self.reader.take_buffered()
    }

    // ---- commands ----

    /// Encodes the response to the current request. A HEAD request gets the
    /// same head (its `content-length` or `transfer-encoding` included) and
    /// no body, so a kept-alive client reads the next response right.
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
        let bodiless = self.head || !status_has_body(response.status);
        match response.body {
            Body::Full(_) => {
                if !bodiless {
                    encode_full_body(response, out);
                }
                self.current = None;
            }
            Body::Stream => self.current = Some(Answer { framing, bodiless }),
        }
    }

    /// Encodes a piece of a streamed body (nothing for a body-less answer).
    pub fn encode_data(&mut self, data: &[u8], out: &mut BytesMut) {
        match self.current {
            Some(Answer { bodiless: true, .. }) => {}
            Some(Answer {
                framing: Framing::Chunked,
                ..
            }) if !data.is_empty() => {
                // Room for the whole chunk first: the three writes that
                // follow then only copy.
                out.reserve(data.len() + 2 * std::mem::size_of::<usize>() + 4);
                put_chunk_size(out, data.len());
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
            Some(Answer {
                framing: Framing::Close,
                ..
            }) => out.put_slice(data),
            _ => {}
        }
    }

    /// Ends a streamed body.
    pub fn encode_end(&mut self, out: &mut BytesMut) {
        if let Some(Answer {
            framing: Framing::Chunked,
            bodiless: false,
        }) = self.current
        {
            out.put_slice(b"0\r\n\r\n");
        }
        self.current = None;
    }

    // ---- internals ----

    /// Notes what answering `request` needs: its version, HEAD, and
    /// whether the connection closes after it.
    fn start_answer(&mut self, request: &Request) {
        self.continued = false;
        self.minor_version = request.minor_version;
        self.head = request.method == "HEAD";
        if !request.keep_alive() {
            self.close = true;
        }
        self.current = Some(Answer {
            framing: Framing::Length,
            bodiless: self.head,
        });
    }
}

/// A chunk's size line (`{len:x}\r\n`), written in one piece without
/// allocating.
fn put_chunk_size(out: &mut BytesMut, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const DIGITS: usize = (usize::BITS / 4) as usize;
    let mut line = [0u8; DIGITS + 2];
    let (digits, end) = line.split_at_mut(DIGITS);
    end.copy_from_slice(b"\r\n");
    let mut start = DIGITS;
    let mut left = len;
    for slot in digits.iter_mut().rev() {
        *slot = HEX[left & 0xf];
        start -= 1;
        left >>= 4;
        if left == 0 {
            break;
        }
    }
    out.extend_from_slice(line.get(start..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn_with(input: &[u8]) -> ServerConn {
        let mut c = ServerConn::new(Limits::default(), Instant::now());
        c.handle_data(input);
        c
    }

    fn text(out: &BytesMut) -> String {
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn pipelined_requests_wait_for_the_previous_response() {
        let mut c =
            conn_with(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(c.poll_request().unwrap().unwrap().target(), "/a");
        assert!(c.poll_request().unwrap().is_none());
        let mut out = BytesMut::new();
        c.encode_response(&Response::stream("text/event-stream"), &mut out);
        c.encode_data(b"data: x\n\n", &mut out);
        c.encode_end(&mut out);
        let text = text(&out);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("transfer-encoding: chunked\r\n"));
        assert!(text.ends_with("\r\n\r\n9\r\ndata: x\n\n\r\n0\r\n\r\n"));
        assert_eq!(c.poll_request().unwrap().unwrap().target(), "/b");
    }

    #[test]
    fn chunk_sizes_are_hex() {
        for (len, line) in [
            (1, "1\r\n"),
            (0x1a2b, "1a2b\r\n"),
            (usize::MAX, "ffffffffffffffff\r\n"),
        ] {
            let mut out = BytesMut::new();
            put_chunk_size(&mut out, len);
            if usize::BITS == 64 || len != usize::MAX {
                assert_eq!(text(&out), line);
            }
        }
    }

    #[test]
    fn after_eof_whole_requests_are_answered_then_the_connection_closes() {
        let mut c = conn_with(
            b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\nGET /c HT",
        );
        c.handle_eof();
        assert!(!c.wants_read());
        let mut out = BytesMut::new();
        for target in ["/a", "/b"] {
            assert_eq!(c.poll_request().unwrap().unwrap().target(), target);
            assert!(!c.wants_close());
            c.encode_response(&Response::json(200, "{}"), &mut out);
        }
        assert!(
            c.poll_request().unwrap().is_none(),
            "a partial request is dropped"
        );
        assert!(c.wants_close());
        assert_eq!(text(&out).matches("HTTP/1.1 200 OK").count(), 2);
    }

    #[test]
    fn eof_during_a_stream_closes_after_it_ends() {
        let mut c = conn_with(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
        c.poll_request().unwrap().unwrap();
        let mut out = BytesMut::new();
        c.encode_response(&Response::stream("text/event-stream"), &mut out);
        c.handle_eof();
        assert!(c.poll_request().unwrap().is_none());
        assert!(!c.wants_close(), "the stream is still being answered");
        c.encode_data(b"x", &mut out);
        c.encode_end(&mut out);
        assert!(c.poll_request().unwrap().is_none());
        assert!(c.wants_close());
    }

    #[test]
    fn eof_with_nothing_buffered_closes() {
        let mut c = conn_with(b"");
        c.handle_eof();
        assert!(c.poll_request().unwrap().is_none());
        assert!(c.wants_close());
    }

    #[test]
    fn a_full_pipeline_stops_reading_until_the_response_ends() {
        let mut c = conn_with(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
        c.poll_request().unwrap().unwrap();
        assert!(c.wants_read());
        c.handle_data(&vec![b'x'; Limits::default().max_pipeline]);
        assert!(!c.wants_read());
        c.encode_response(&Response::json(200, "{}"), &mut BytesMut::new());
        assert!(
            c.wants_read(),
            "read again once idle (the head cap applies)"
        );
        assert_eq!(c.poll_request().unwrap_err().status(), 431);
    }

    #[test]
    fn only_an_idle_connection_has_a_deadline_counted_from_its_last_answer() {
        let t0 = Instant::now();
        let limits = Limits {
            idle_timeout: Duration::from_secs(5),
            ..Limits::default()
        };
        let mut c = ServerConn::new(limits, t0);
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        c.handle_data(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
        c.poll_request().unwrap().unwrap();
        assert_eq!(c.poll_timeout(), None, "a request is being answered");
        let mut out = BytesMut::new();
        c.encode_response(&Response::stream("text/event-stream"), &mut out);
        c.handle_written(t0 + Duration::from_secs(60));
        assert_eq!(c.poll_timeout(), None, "a long stream is no idle time");
        c.encode_end(&mut out);
        let t1 = t0 + Duration::from_secs(61);
        c.handle_written(t1);
        assert_eq!(c.poll_timeout(), Some(t1 + Duration::from_secs(5)));
    }

    #[test]
    fn the_pipeline_cap_comes_from_the_limits() {
        let mut c = ServerConn::new(
            Limits {
                max_pipeline: 10,
                ..Limits::default()
            },
            Instant::now(),
        );
        c.handle_data(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b");
        c.poll_request().unwrap().unwrap();
        assert!(c.wants_read());
        c.handle_data(b" HTTP/1.1");
        assert!(!c.wants_read());
        assert_eq!(c.buffered(), 15);
    }

    #[test]
    fn expect_continue_is_answered_once_before_the_body() {
        let mut c = conn_with(
            b"POST /a HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
        );
        assert!(c.poll_request().unwrap().is_none());
        assert_eq!(c.poll_interim().as_deref(), Some(CONTINUE));
        assert_eq!(c.poll_interim(), None);
        c.handle_data(b"o");
        assert!(c.poll_request().unwrap().is_none());
        assert_eq!(c.poll_interim(), None, "once per request");
        c.handle_data(b"k");
        assert_eq!(&c.poll_request().unwrap().unwrap().body[..], b"ok");
        assert_eq!(c.poll_interim(), None);
    }

    #[test]
    fn expect_continue_is_not_sent_when_not_needed() {
        let cases: [&[u8]; 4] = [
            // The body is already here: just answer.
            b"POST /a HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
            // HTTP/1.0 has no 100.
            b"POST /a HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
            // Too large: 413 instead.
            b"POST /a HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n",
            // Nothing expected.
            b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n",
        ];
        for input in cases {
            let mut c = conn_with(input);
            let _ = c.poll_request();
            assert_eq!(c.poll_interim(), None, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn expect_continue_waits_for_the_response_in_progress() {
        let mut c = conn_with(
            b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        c.poll_request().unwrap().unwrap();
        assert_eq!(c.poll_interim(), None);
        c.encode_response(&Response::json(200, "{}"), &mut BytesMut::new());
        assert!(c.poll_request().unwrap().is_none());
        assert_eq!(c.poll_interim().as_deref(), Some(CONTINUE));
    }

    #[test]
    fn head_answers_have_no_body() {
        let mut c =
            conn_with(b"HEAD /a HTTP/1.1\r\nHost: a\r\n\r\nHEAD /b HTTP/1.1\r\nHost: a\r\n\r\n");
        c.poll_request().unwrap().unwrap();
        let mut out = BytesMut::new();
        c.encode_response(&Response::json(200, "{\"a\":1}"), &mut out);
        assert!(text(&out).ends_with("content-length: 7\r\n\r\n"));
        c.poll_request().unwrap().unwrap();
        let mut out = BytesMut::new();
        c.encode_response(&Response::stream("text/event-stream"), &mut out);
        c.encode_data(b"data: x\n\n", &mut out);
        c.encode_end(&mut out);
        assert!(text(&out).ends_with("transfer-encoding: chunked\r\n\r\n"));
        assert!(c.is_idle() && !c.wants_close());
    }

    #[test]
    fn a_get_after_a_head_gets_its_body() {
        let mut c =
            conn_with(b"HEAD /a HTTP/1.1\r\nHost: a\r\n\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut out = BytesMut::new();
        c.poll_request().unwrap().unwrap();
        c.encode_response(&Response::json(200, "{}"), &mut out);
        c.poll_request().unwrap().unwrap();
        c.encode_response(&Response::json(200, "{}"), &mut out);
        assert!(text(&out).ends_with("\r\n\r\n{}"));
        assert_eq!(text(&out).matches("{}").count(), 1);
    }

    #[test]
    fn requests_are_numbered_and_only_the_one_being_answered_is_answering() {
        let mut c = conn_with(
            b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\nBAD\r\n\r\n",
        );
        assert!(!c.is_answering(0), "nothing handed out yet");
        assert_eq!(c.poll_request().unwrap().unwrap().seq(), 0);
        assert!(c.is_answering(0));
        c.encode_response(&Response::json(200, "{}"), &mut BytesMut::new());
        assert!(!c.is_answering(0), "its answer ended");
        assert_eq!(c.poll_request().unwrap().unwrap().seq(), 1);
        assert!(c.is_answering(1) && !c.is_answering(0));
        c.encode_response(&Response::json(200, "{}"), &mut BytesMut::new());
        assert!(c.poll_request().is_err());
        assert!(
            !c.is_answering(1),
            "an error takes a number: nothing for the request before goes into its answer"
        );
    }

    #[test]
    fn an_error_is_answered_then_nothing_more_is_read() {
        let mut c = conn_with(
            b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
        );
        assert_eq!(c.poll_request().unwrap_err().status(), 400);
        assert!(!c.wants_close(), "the error is answered first");
        c.encode_response(&Response::json(400, "{}"), &mut BytesMut::new());
        assert!(c.wants_close());
        assert!(c.poll_request().unwrap().is_none());
    }

    #[test]
    fn http10_stream_is_close_delimited() {
        let mut c = conn_with(b"GET /a HTTP/1.0\r\n\r\n");
        c.poll_request().unwrap().unwrap();
        let mut out = BytesMut::new();
        c.encode_response(&Response::stream("application/x-ndjson"), &mut out);
        c.encode_data(b"{}\n", &mut out);
        c.encode_end(&mut out);
        let text = text(&out);
        assert!(text.contains("connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{}\n"));
        assert!(c.wants_close());
    }

    #[test]
    fn full_response_carries_its_length() {
        let mut c = conn_with(b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        c.poll_request().unwrap().unwrap();
        let mut out = BytesMut::new();
        c.encode_response(&Response::json(404, "{}"), &mut out);
        let text = text(&out);
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("content-length: 2\r\nconnection: close\r\n\r\n{}"));
        assert!(c.wants_close());
    }
}
