//! The answer to one editor request, written as it arrives in the shape of
//! the request's API (its [`Encoder`]): a stream event by event, or one
//! whole body at the end.
//!
//! The provider feeds it the agent's deltas in order; this is the last step
//! of the hot path, so stream output is written straight into the caller's
//! buffer.

use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use serde_json::Value;

use crate::agent::message::{Delta, Usage};
use crate::answer::{Answer, Overflow};
use crate::api::{AnswerIds, Encoder, End, ModelRequest, Timings};
use crate::error::{ApiError, Dialect};
use crate::http::Response;

pub(crate) struct EditorStream {
    stream: bool,
    embedding: bool,
    dialect: Dialect,
    encoder: Box<dyn Encoder>,
    answer: Answer,
    started: Instant,
    first_at: Option<Instant>,
}

impl EditorStream {
    /// `max_kept` bounds what an answer gathers in memory.
    pub fn new(request: &ModelRequest, ids: AnswerIds, now: Instant, max_kept: usize) -> Self {
        let encoder = request.api.encoder(request, ids);
        let keep_text = !request.stream || encoder.keeps_text();
        EditorStream {
            stream: request.stream,
            embedding: request.embedding,
            dialect: request.api.dialect(),
            answer: Answer::new(keep_text, request.prompt_tokens, max_kept),
            encoder,
            started: now,
            first_at: None,
        }
    }

    pub fn is_stream(&self) -> bool {
        self.stream
    }

    pub fn is_embedding(&self) -> bool {
        self.embedding
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The head of a streamed response and the events that open it.
    pub fn open(&mut self, out: &mut BytesMut) -> Response {
        self.encoder.open(out);
        Response::stream(self.encoder.stream_type())
    }

    /// What keeps an idle stream open, if its API has anything.
    pub fn keepalive(&self) -> Option<&'static [u8]> {
        self.encoder.keepalive().filter(|_| self.stream)
    }

    /// Tokens used so far (reported or estimated).
    pub fn usage(&self) -> (u64, u64) {
        self.answer.usage()
    }

    /// One in-order piece of the answer; an error when the answer would
    /// grow past its caps (nothing is written then).
    pub fn delta(
        &mut self,
        delta: &Delta,
        now: Instant,
        wall: SystemTime,
        out: &mut BytesMut,
    ) -> Result<(), Overflow> {
        self.first_at.get_or_insert(now);
        self.answer.add_delta(delta)?;
        if self.stream {
            self.encoder.delta(delta, &self.answer, wall, out);
        }
        Ok(())
    }

    /// The last piece. A stream gets its closing bytes in `out`; a whole
    /// answer is returned as the response.
    pub fn finish(
        &mut self,
        reason: Option<&str>,
        usage: Option<Usage>,
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

    /// The answer to an embedding request.
    pub fn embeddings(&self, vectors: &[Value], now: Instant, wall: SystemTime) -> Response {
        self.whole(vectors, now, wall)
    }

    fn whole(&self, vectors: &[Value], now: Instant, wall: SystemTime) -> Response {
        let end = End {
            answer: &self.answer,
            vectors,
            wall,
            timings: self.timings(now),
        };
        Response::json(200, self.encoder.whole(&end).to_string())
    }

    /// The bytes that end a stream with an error the editor sees.
    pub fn fail(&mut self, error: &ApiError, out: &mut BytesMut) {
        self.encoder.fail(error, out);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ollama, openai, RequestLimits};
    use serde_json::json;

    fn events(bytes: &[u8]) -> Vec<String> {
        std::str::from_utf8(bytes)
            .unwrap()
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").unwrap().to_owned())
            .collect()
    }

    #[test]
    fn openai_stream_has_role_content_finish_usage_done() {
        let req = openai::parse_chat(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#,
            &RequestLimits::default(),
        )
        .unwrap();
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH;
        let ids = AnswerIds {
            token: "1".into(),
            created: 5,
        };
        let mut s = EditorStream::new(&req, ids, t0, 1 << 20);
        let mut out = BytesMut::new();
        s.delta(
            &Delta {
                content: Some("Hel".into()),
                ..Delta::default()
            },
            t0,
            wall,
            &mut out,
        )
        .unwrap();
        s.delta(
            &Delta {
                content: Some("lo".into()),
                ..Delta::default()
            },
            t0,
            wall,
            &mut out,
        )
        .unwrap();
        assert!(s.finish(None, None, t0, wall, &mut out).is_none());
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
        let req = ollama::parse_chat(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false}"#,
            &RequestLimits::default(),
        )
        .unwrap();
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH;
        let ids = AnswerIds {
            token: "x".into(),
            created: 5,
        };
        let mut s = EditorStream::new(&req, ids, t0, 1 << 20);
        let mut out = BytesMut::new();
        s.delta(
            &Delta {
                content: Some("ok".into()),
                ..Delta::default()
            },
            t0,
            wall,
            &mut out,
        )
        .unwrap();
        let Value::Object(call) =
            json!({"index":0,"id":"c","function":{"name":"f","arguments":"{\"a\":2}"}})
        else {
            unreachable!()
        };
        let calls = vec![call];
        s.delta(
            &Delta {
                tool_calls: Some(calls),
                ..Delta::default()
            },
            t0,
            wall,
            &mut out,
        )
        .unwrap();
        let later = t0 + Duration::from_millis(3);
        let resp = s
            .finish(Some("tool_calls"), None, later, wall, &mut out)
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
}
