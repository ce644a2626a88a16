//! The answer to one editor request, written as it arrives: OpenAI SSE
//! chunks, Ollama NDJSON lines, or one whole JSON body at the end.
//!
//! The provider feeds it the agent's deltas in order; this is the last step
//! of the hot path, so stream output is written straight into the caller's
//! buffer with a prefix computed once per request.

use std::time::{Duration, Instant, SystemTime};

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde_json::Value;

use crate::agent::message::{Delta, ToolCallDelta, Usage};
use crate::answer::{Answer, Overflow};
use crate::api::{ollama, openai, put_json, Api, ModelRequest};
use crate::error::{ApiError, Dialect};
use crate::http::Response;
use crate::time::rfc3339;

pub(crate) const SSE: &str = "text/event-stream";
pub(crate) const NDJSON: &str = "application/x-ndjson";

pub(crate) struct EditorStream {
    api: Api,
    stream: bool,
    include_usage: bool,
    model: String,
    id: String,
    created: u64,
    /// What every streamed chunk starts with: OpenAI chunk JSON up to the
    /// choice, or an Ollama line up to its timestamp.
    prefix: Vec<u8>,
    answer: Answer,
    role_sent: bool,
    started: Instant,
    first_at: Option<Instant>,
}

/// An OpenAI delta as written to the editor.
#[derive(Serialize)]
struct OutDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

impl EditorStream {
    /// `max_kept` bounds what a whole (non-streamed) answer gathers.
    pub fn new(
        request: &ModelRequest,
        id: String,
        created: u64,
        now: Instant,
        max_kept: usize,
    ) -> Self {
        let prefix = match request.api {
            Api::OpenAiChat | Api::OpenAiCompletion => {
                openai::chunk_prefix(request.api, &id, created, &request.model)
            }
            Api::OllamaChat | Api::OllamaGenerate => ollama::line_prefix(&request.model),
            Api::OpenAiEmbeddings | Api::OllamaEmbed => Vec::new(),
        };
        EditorStream {
            api: request.api,
            stream: request.stream,
            include_usage: request.include_usage,
            model: request.model.clone(),
            id,
            created,
            prefix,
            answer: Answer::new(!request.stream, request.prompt_tokens, max_kept),
            role_sent: false,
            started: now,
            first_at: None,
        }
    }

    pub fn is_stream(&self) -> bool {
        self.stream
    }

    pub fn is_embedding(&self) -> bool {
        self.api.is_embedding()
    }

    pub fn dialect(&self) -> Dialect {
        match self.api {
            Api::OllamaChat | Api::OllamaGenerate | Api::OllamaEmbed => Dialect::Ollama,
            _ => Dialect::OpenAi,
        }
    }

    /// The head of a streamed response, sent before the first chunk.
    pub fn stream_head(&self) -> Response {
        match self.dialect() {
            Dialect::OpenAi => Response::stream(SSE),
            Dialect::Ollama => Response::stream(NDJSON),
        }
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
        if !self.stream {
            return Ok(());
        }
        let content = delta.content.as_deref();
        match self.api {
            Api::OpenAiChat => {
                let role = (!self.role_sent).then_some("assistant");
                let tool_calls = delta.tool_calls.as_ref().map(|calls| with_indexes(calls));
                if role.is_none() && content.is_none_or(str::is_empty) && tool_calls.is_none() {
                    return Ok(());
                }
                self.role_sent = true;
                let d = OutDelta {
                    role,
                    content: content.or(role.map(|_| "")),
                    tool_calls,
                };
                openai::put_chat_chunk(out, &self.prefix, |o| put_json(o, &d), None);
            }
            Api::OpenAiCompletion => {
                if let Some(text) = content.filter(|t| !t.is_empty()) {
                    openai::put_completion_chunk(out, &self.prefix, text, None);
                }
            }
            Api::OllamaChat | Api::OllamaGenerate => {
                if let Some(text) = content.filter(|t| !t.is_empty()) {
                    ollama::put_piece(out, self.api, &self.prefix, wall, text);
                }
            }
            Api::OpenAiEmbeddings | Api::OllamaEmbed => {}
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
        let finish = self.answer.finish_reason.clone();
        let finish = finish.as_deref();
        match (self.api, self.stream) {
            (Api::OpenAiChat, true) => {
                let d = OutDelta {
                    role: (!self.role_sent).then_some("assistant"),
                    content: None,
                    tool_calls: None,
                };
                openai::put_chat_chunk(out, &self.prefix, |o| put_json(o, &d), finish);
                self.openai_tail(out);
                None
            }
            (Api::OpenAiCompletion, true) => {
                openai::put_completion_chunk(out, &self.prefix, "", finish);
                self.openai_tail(out);
                None
            }
            (Api::OllamaChat | Api::OllamaGenerate, true) => {
                let line = ollama::last(
                    self.api,
                    &self.model,
                    &rfc3339(wall),
                    &self.answer,
                    "",
                    self.timings(now),
                );
                put_line(out, &line);
                None
            }
            (Api::OpenAiChat | Api::OpenAiCompletion, false) => {
                let body =
                    openai::full_body(self.api, &self.id, self.created, &self.model, &self.answer);
                Some(Response::json(200, body.to_string()))
            }
            (Api::OllamaChat | Api::OllamaGenerate, false) => {
                let text = self.answer.content.clone();
                let body = ollama::last(
                    self.api,
                    &self.model,
                    &rfc3339(wall),
                    &self.answer,
                    &text,
                    self.timings(now),
                );
                Some(Response::json(200, body.to_string()))
            }
            (Api::OpenAiEmbeddings | Api::OllamaEmbed, _) => Some(self.embeddings(&[], now)),
        }
    }

    fn openai_tail(&self, out: &mut BytesMut) {
        if self.include_usage {
            openai::put_usage_chunk(out, &self.prefix, &self.answer);
        }
        openai::put_done(out);
    }

    /// The answer to an embedding request.
    pub fn embeddings(&self, vectors: &[Value], now: Instant) -> Response {
        let (prompt, _) = self.answer.usage();
        let body = match self.api {
            Api::OllamaEmbed => ollama::embed_body(&self.model, vectors, prompt, self.timings(now)),
            _ => openai::embeddings_body(&self.model, vectors, prompt),
        };
        Response::json(200, body.to_string())
    }

    /// The bytes that end a stream with an error the editor sees.
    pub fn fail(&self, error: &ApiError, out: &mut BytesMut) {
        match self.dialect() {
            Dialect::OpenAi => openai::put_stream_error(out, error),
            Dialect::Ollama => {
                out.put_slice(&error.body(Dialect::Ollama));
                out.put_u8(b'\n');
            }
        }
    }

    fn timings(&self, now: Instant) -> ollama::Timings {
        let first = self.first_at.unwrap_or(now);
        ollama::Timings {
            total: now.saturating_duration_since(self.started),
            load: Duration::ZERO,
            prompt_eval: first.saturating_duration_since(self.started),
            eval: now.saturating_duration_since(first),
        }
    }
}

/// Tool-call deltas always carry `index` (editors key on it).
fn with_indexes(calls: &[ToolCallDelta]) -> Vec<ToolCallDelta> {
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut c = c.clone();
            if c.get("index").is_none_or(|v| !v.is_u64()) {
                c.insert("index".to_owned(), Value::from(i));
            }
            c
        })
        .collect()
}

fn put_line(out: &mut BytesMut, value: &Value) {
    put_json(out, value);
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RequestLimits;
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
        let mut s = EditorStream::new(&req, "chatcmpl-1".into(), 5, t0, 1 << 20);
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
        let mut s = EditorStream::new(&req, "x".into(), 5, t0, 1 << 20);
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
