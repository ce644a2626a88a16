//! The answer to one editor request, written as it arrives in the shape of
//! the request's API (its encoder): a stream event by event, or one
//! whole body at the end.
//!
//! This is the editor connection's half of an answer, split from the
//! provider the way quinn splits a connection from its endpoint: the
//! provider routes (which agent, in what order the pieces go, when the
//! answer ends, fails or times out) and posts that as [`AnswerEvent`]s to
//! the editor's connection; the connection's task or thread writes them in
//! its API's shape with [`Answering`], outside the provider's lock, so
//! encoding, the last and largest step of the hot path, runs on as many
//! cores as there are editors.

use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use crate::agent::message::{Delta, ToolCalls, Usage};
use crate::answer::Answer;
use crate::api::{AnswerIds, Encoder, End, ModelRequest, Timings};
use crate::error::{ApiError, Dialect};
use crate::http::{Fields, Response};
use crate::{ConnId, Output, RequestId};

pub struct EditorStream {
    stream: bool,
    dialect: Dialect,
    encoder: Box<dyn Encoder>,
    answer: Answer,
    /// Headers decided when the request was admitted (CORS, rate limits):
    /// on the stream's head, or on the whole answer.
    headers: Fields,
    started: Instant,
    first_at: Option<Instant>,
}

impl std::fmt::Debug for EditorStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EditorStream")
            .field("stream", &self.stream)
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

impl EditorStream {
    /// `headers` go on its response.
    pub fn new(request: &ModelRequest, ids: AnswerIds, now: Instant, headers: Fields) -> Self {
        let encoder = request.api.encoder(request, ids);
        let keep_text = !request.stream || encoder.keeps_text();
        EditorStream {
            stream: request.stream,
            dialect: request.api.dialect(),
            answer: Answer::new(keep_text),
            encoder,
            headers,
            started: now,
            first_at: None,
        }
    }

    /// Whether the answer keeps its text (a whole answer, or an API whose
    /// last events repeat it): what the router's count caps.
    pub fn keeps_text(&self) -> bool {
        self.answer.keeps_text()
    }

    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// The head of a streamed response and the events that open it.
    fn open(&mut self, out: &mut BytesMut) -> Response {
        self.encoder.open(out);
        let mut head = Response::stream(self.encoder.stream_type());
        head.headers.append(&mut self.headers);
        head
    }

    /// What keeps an idle stream open, if its API has anything.
    pub fn keepalive(&self) -> Option<&'static [u8]> {
        self.encoder.keepalive().filter(|_| self.stream)
    }

    /// One in-order piece of the answer, already counted against its caps
    /// by the router.
    fn delta(&mut self, delta: &Delta, now: Instant, wall: SystemTime, out: &mut BytesMut) {
        self.first_at.get_or_insert(now);
        self.answer.add_delta(delta);
        if self.stream {
            self.encoder.delta(delta, &self.answer, wall, out);
        }
    }

    /// The last piece. A stream gets its closing bytes in `out`; a whole
    /// answer is returned as the response.
    fn finish(
        &mut self,
        reason: Option<&str>,
        usage: Usage,
        now: Instant,
        wall: SystemTime,
        out: &mut BytesMut,
    ) -> Option<Response> {
        self.answer.finish(reason, usage);
        if !self.stream {
            return Some(self.whole(&[], now, wall));
        }
        let end = End {
            answer: &self.answer,
            vectors: &[],
            wall,
            timings: self.timings(now),
        };
        self.encoder.close(&end, out);
        None
    }

    /// The whole answer (the vectors of an embedding request, if any),
    /// which ends it: the headers go on it.
    fn whole(&mut self, vectors: &[Value], now: Instant, wall: SystemTime) -> Response {
        let end = End {
            answer: &self.answer,
            vectors,
            wall,
            timings: self.timings(now),
        };
        let mut response = Response::json(200, self.encoder.whole(&end).to_string());
        response.headers.append(&mut self.headers);
        response
    }

    /// The error the editor sees: the last bytes of a stream, or the whole
    /// answer in its API's error shape.
    fn fail(&mut self, error: &ApiError, out: &mut BytesMut) -> Option<Response> {
        if self.stream {
            self.encoder.fail(error, out);
            return None;
        }
        let mut response = error.response(self.dialect);
        response.headers.append(&mut self.headers);
        Some(response)
    }

    fn timings(&self, now: Instant) -> Timings {
        let first = self.first_at.unwrap_or(now);
        Timings {
            total: now.saturating_duration_since(self.started),
            load: Duration::ZERO,
            prompt_eval: first.saturating_duration_since(self.started),
            eval: now.saturating_duration_since(first),
        }
    }
}

/// What the provider posts to an editor connection about its answer, in
/// order; [`Answering`] writes it.
#[derive(Debug)]
pub enum AnswerEvent {
    /// The answer begins: a stream's head goes out now; a whole answer
    /// waits for its end.
    Open(Box<EditorStream>),
    /// The next piece, in order, stamped with when it arrived.
    Piece(Piece),
    /// Nothing arrived for a while: the API's keep-alive, if it has one.
    Keepalive,
    /// The agent finished; `usage` is the router's count.
    Finish {
        reason: Option<String>,
        usage: Usage,
        at: Instant,
        wall: SystemTime,
    },
    /// The vectors answering an embedding request.
    Vectors {
        vectors: Vec<Value>,
        at: Instant,
        wall: SystemTime,
    },
    /// The answer ends with this error.
    Fail(ApiError),
}

/// One piece of an answer on its way to the editor's connection. Its text
/// is copied into a buffer the provider reuses ([`Piece::new`]), so a
/// piece costs no allocation of its own: the agent's frame it was read
/// from is gone by the time the connection writes it.
#[derive(Debug)]
pub struct Piece {
    text: Option<Bytes>,
    reasoning: Option<Bytes>,
    tool_calls: Option<ToolCalls>,
    at: Instant,
    wall: SystemTime,
}

/// The least the text buffer grows by: small pieces share a block.
const TEXT_BLOCK: usize = 4096;

impl Piece {
    /// `delta`, arrived at `at` (`wall`), its text copied into `texts`.
    pub fn new(texts: &mut BytesMut, delta: Delta, at: Instant, wall: SystemTime) -> Piece {
        Piece {
            text: delta.content.map(|text| copy_text(texts, &text)),
            reasoning: delta.reasoning.map(|text| copy_text(texts, &text)),
            tool_calls: delta.tool_calls,
            at,
            wall,
        }
    }

    /// The delta again, its text borrowed from the piece.
    fn delta(&mut self) -> Delta<'_> {
        Delta {
            // The texts were `str`s: valid UTF-8, so these borrow.
            content: self.text.as_deref().map(crate::text::lossy),
            reasoning: self.reasoning.as_deref().map(crate::text::lossy),
            tool_calls: self.tool_calls.take(),
        }
    }
}

/// `text` copied into the shared buffer `texts`, split off as its own
/// bytes.
fn copy_text(texts: &mut BytesMut, text: &str) -> Bytes {
    if texts.capacity() < text.len() {
        texts.reserve(text.len().max(TEXT_BLOCK));
    }
    texts.extend_from_slice(text.as_bytes());
    texts.split().freeze()
}

/// What an event's encoding adds besides its text, as the backlog counts
/// it before it is written: an event's framing and ids, roughly.
const EVENT_BYTES: usize = 96;

impl AnswerEvent {
    /// The bytes of answer text (content, reasoning and tool-call
    /// arguments) a piece carries.
    pub fn text_bytes(&self) -> usize {
        let AnswerEvent::Piece(piece) = self else {
            return 0;
        };
        let calls = piece.tool_calls.iter().flatten();
        piece.text.as_ref().map_or(0, Bytes::len)
            + piece.reasoning.as_ref().map_or(0, Bytes::len)
            + calls
                .filter_map(crate::answer::delta_arguments)
                .map(|a| a.len())
                .sum::<usize>()
    }

    /// What the event adds to its connection's backlog until written: its
    /// text and an event's framing (embedding vectors by their numbers).
    pub fn backlog_bytes(&self) -> usize {
        let numbers = match self {
            AnswerEvent::Vectors { vectors, .. } => vectors
                .iter()
                .map(|v| v.as_array().map_or(1, Vec::len))
                .sum::<usize>(),
            _ => 0,
        };
        self.text_bytes() + numbers.saturating_mul(20) + EVENT_BYTES
    }
}

/// An editor connection's answer in progress: turns the provider's
/// [`AnswerEvent`]s into the plain outputs (`Respond`, `Data`, `End`) the
/// connection writes. Events for an answer that already ended, or for
/// another request's, are dropped.
#[derive(Debug, Default)]
pub struct Answering {
    /// The answer in progress, and the request it answers.
    stream: Option<(RequestId, Box<EditorStream>)>,
    scratch: BytesMut,
}

impl Answering {
    /// Writes one event of the answer to `to`: what it makes goes to
    /// `emit`, in order (the bytes of a stream as [`Output::Data`], unless
    /// the sink takes them as they are: [`AnswerSink::data`]).
    pub fn handle(&mut self, to: RequestId, event: AnswerEvent, mut emit: impl AnswerSink) {
        if let AnswerEvent::Open(mut stream) = event {
            if stream.is_stream() {
                let response = stream.open(&mut self.scratch);
                emit.output(Output::Respond { to, response });
                self.flush(to, &mut emit);
            }
            self.stream = Some((to, stream));
            return;
        }
        let Some(stream) = self
            .stream
            .as_mut()
            .filter(|(answers, _)| *answers == to)
            .map(|(_, stream)| stream)
        else {
            return;
        };
        let whole = match event {
            AnswerEvent::Open(_) => return,
            AnswerEvent::Piece(mut piece) => {
                let (at, wall) = (piece.at, piece.wall);
                stream.delta(&piece.delta(), at, wall, &mut self.scratch);
                return self.flush(to, &mut emit);
            }
            AnswerEvent::Keepalive => {
                if let Some(bytes) = stream.keepalive() {
                    self.scratch.extend_from_slice(bytes);
                }
                return self.flush(to, &mut emit);
            }
            AnswerEvent::Finish {
                reason,
                usage,
                at,
                wall,
            } => stream.finish(reason.as_deref(), usage, at, wall, &mut self.scratch),
            AnswerEvent::Vectors { vectors, at, wall } => Some(stream.whole(&vectors, at, wall)),
            AnswerEvent::Fail(error) => stream.fail(&error, &mut self.scratch),
        };
        self.stream = None;
        match whole {
            Some(response) => emit.output(Output::Respond { to, response }),
            None => {
                self.flush(to, &mut emit);
                emit.output(Output::End { to });
            }
        }
    }

    fn flush(&mut self, to: RequestId, emit: &mut impl AnswerSink) {
        if !self.scratch.is_empty() {
            emit.data(to, &mut self.scratch);
        }
    }
}

/// Where [`Answering::handle`] puts what it makes. Any `FnMut(Output)` is
/// one; a sink that writes the connection itself (an HTTP connection's
/// chunks) takes a stream's bytes in place, saving their hand-over as an
/// output of their own.
pub trait AnswerSink {
    /// A plain output ([`Output::Respond`], [`Output::End`]).
    fn output(&mut self, output: Output);

    /// The stream's next bytes, in `scratch`: taken from it, which is
    /// left empty (its room is kept for the next event).
    fn data(&mut self, to: RequestId, scratch: &mut BytesMut) {
        let data = scratch.split().freeze();
        self.output(Output::Data { to, data });
    }
}

impl<F: FnMut(Output)> AnswerSink for F {
    fn output(&mut self, output: Output) {
        self(output)
    }
}

/// The [`Answering`] of every editor connection, for a driver (or a test)
/// that carries out every connection's outputs in one place.
#[derive(Debug, Default)]
pub struct EditorSides(std::collections::HashMap<ConnId, Answering>);

impl EditorSides {
    /// Hands `output` to `emit` as its connection writes it: an answer's
    /// events as the plain outputs they make, anything else as it is.
    pub fn carry(&mut self, output: Output, mut emit: impl FnMut(Output)) {
        match output {
            Output::Answer { to, event } => {
                let answering = self.0.entry(to.conn).or_default();
                answering.handle(to, event, emit);
            }
            plain => emit(plain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ollama, openai, RequestLimits};
    use serde_json::json;

    /// The answer to `body`, parsed by `parse`, made at `t0` with ids of
    /// `token`.
    fn answer(
        parse: fn(&[u8], &RequestLimits) -> Result<ModelRequest, ApiError>,
        body: &[u8],
        token: &str,
        headers: Fields,
    ) -> (EditorStream, Instant, SystemTime) {
        let req = parse(body, &RequestLimits::default()).unwrap();
        let t0 = Instant::now();
        let ids = AnswerIds::new(req.api, token.into(), 5);
        let stream = EditorStream::new(&req, ids, t0, headers);
        (stream, t0, SystemTime::UNIX_EPOCH)
    }

    fn events(bytes: &[u8]) -> Vec<String> {
        std::str::from_utf8(bytes)
            .unwrap()
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_piece_carries_its_reasoning_apart_from_its_text() {
        let mut texts = BytesMut::new();
        let delta = Delta {
            content: Some("ab".into()),
            reasoning: Some("xyz".into()),
            ..Delta::default()
        };
        let mut piece = Piece::new(&mut texts, delta, Instant::now(), SystemTime::UNIX_EPOCH);
        let again = piece.delta();
        assert_eq!(again.content.as_deref(), Some("ab"));
        assert_eq!(again.reasoning.as_deref(), Some("xyz"));
        assert_eq!(AnswerEvent::Piece(piece).text_bytes(), 5);
    }

    #[test]
    fn openai_stream_has_role_content_finish_usage_done() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;
        let (mut s, t0, wall) = answer(openai::parse_chat, body, "1", Vec::new());
        let mut out = BytesMut::new();
        s.delta(
            &Delta {
                content: Some("Hel".into()),
                ..Delta::default()
            },
            t0,
            wall,
            &mut out,
        );
        s.delta(
            &Delta {
                content: Some("lo".into()),
                ..Delta::default()
            },
            t0,
            wall,
            &mut out,
        );
        let usage = Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
        };
        assert!(s.finish(None, usage, t0, wall, &mut out).is_none());
        let ev = events(&out);
        assert_eq!(ev.len(), 5);
        let v: Vec<Value> = ev[..4]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert_eq!(
            v[0]["choices"][0]["delta"],
            json!({"role":"assistant","content":"Hel"})
        );
        assert_eq!(v[1]["choices"][0]["delta"], json!({"content":"lo"}));
        assert_eq!(v[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(v[3]["choices"], json!([]));
        assert_eq!(v[3]["usage"]["total_tokens"], 3);
        assert!(v.iter().all(|c| c["id"] == "chatcmpl-1"));
        assert_eq!(ev[4], "[DONE]");
    }

    #[test]
    fn ollama_non_stream_collects_text_and_tool_calls() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false}"#;
        let (mut s, t0, wall) = answer(ollama::parse_chat, body, "x", Vec::new());
        let mut out = BytesMut::new();
        s.delta(
            &Delta {
                content: Some("ok".into()),
                ..Delta::default()
            },
            t0,
            wall,
            &mut out,
        );
        let Value::Object(call) =
            json!({"index":0,"id":"c","function":{"name":"f","arguments":"{\"a\":2}"}})
        else {
            unreachable!()
        };
        let calls = vec![call];
        s.delta(
            &Delta {
                tool_calls: Some(calls.into()),
                ..Delta::default()
            },
            t0,
            wall,
            &mut out,
        );
        let later = t0 + Duration::from_millis(3);
        let resp = s
            .finish(Some("tool_calls"), Usage::default(), later, wall, &mut out)
            .unwrap();
        assert!(out.is_empty());
        let crate::http::Body::Full(body) = resp.body else {
            panic!("whole body expected")
        };
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["message"]["content"], "ok");
        assert_eq!(
            v["message"]["tool_calls"][0]["function"]["arguments"]["a"],
            2
        );
        assert_eq!(v["done"], true);
        assert_eq!(v["total_duration"], 3_000_000);
    }

    #[test]
    fn answering_writes_the_head_then_pieces_and_drops_what_comes_after_the_end() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let headers = vec![("access-control-allow-origin", "http://localhost".into())];
        let (stream, t0, wall) = answer(openai::parse_chat, body, "1", headers);
        let to = RequestId {
            conn: ConnId(3),
            seq: 0,
        };
        let mut answering = Answering::default();
        let mut texts = BytesMut::new();
        let mut seen = Vec::new();
        let piece = |texts: &mut BytesMut, text: &'static str| {
            let delta = Delta {
                content: Some(text.into()),
                ..Delta::default()
            };
            AnswerEvent::Piece(Piece::new(texts, delta, t0, wall))
        };
        for event in [
            AnswerEvent::Open(Box::new(stream)),
            piece(&mut texts, "Hel"),
            AnswerEvent::Fail(ApiError::timeout("too slow")),
            piece(&mut texts, "lo"),
            AnswerEvent::Keepalive,
        ] {
            answering.handle(to, event, |o| seen.push(o));
        }
        let Some(Output::Respond { response, .. }) = seen.first() else {
            panic!("the head goes first: {seen:?}")
        };
        assert!(response
            .headers
            .iter()
            .any(|(k, v)| *k == "access-control-allow-origin" && v == "http://localhost"));
        let body: Vec<u8> = seen
            .iter()
            .filter_map(|o| match o {
                Output::Data { data, .. } => Some(data.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains("Hel") && body.contains("too slow"), "{body}");
        assert!(!body.contains("lo\""), "nothing after the end: {body}");
        assert!(matches!(seen.last(), Some(Output::End { to: t }) if *t == to));
    }

    /// A connection's next request opened its answer: a piece still on its
    /// way for the request before is dropped, not written into the new
    /// answer.
    #[test]
    fn answering_drops_a_late_piece_of_an_earlier_request() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let (first_stream, t0, wall) = answer(openai::parse_chat, body, "1", Vec::new());
        let (second_stream, ..) = answer(openai::parse_chat, body, "2", Vec::new());
        let first = RequestId {
            conn: ConnId(3),
            seq: 0,
        };
        let second = RequestId { seq: 1, ..first };
        let mut texts = BytesMut::new();
        let mut piece = |text: &'static str| {
            let delta = Delta {
                content: Some(text.into()),
                ..Delta::default()
            };
            AnswerEvent::Piece(Piece::new(&mut texts, delta, t0, wall))
        };
        let events = [
            (first, AnswerEvent::Open(Box::new(first_stream))),
            (first, AnswerEvent::Fail(ApiError::timeout("too slow"))),
            (second, AnswerEvent::Open(Box::new(second_stream))),
            (first, piece("late")),
            (second, piece("mine")),
        ];
        let mut answering = Answering::default();
        let mut seen = Vec::new();
        for (to, event) in events {
            answering.handle(to, event, |o| seen.push(o));
        }
        let body = |of: RequestId| -> String {
            let bytes: Vec<u8> = seen
                .iter()
                .filter_map(|o| match o {
                    Output::Data { to, data } if *to == of => Some(data.to_vec()),
                    _ => None,
                })
                .flatten()
                .collect();
            String::from_utf8(bytes).unwrap()
        };
        assert!(body(second).contains("mine"), "{}", body(second));
        assert!(!body(first).contains("late"), "{}", body(first));
        assert!(!body(second).contains("late"), "{}", body(second));
        assert!(
            seen.iter().all(|o| o.conn() == ConnId(3)),
            "everything stays on the connection"
        );
    }
}
