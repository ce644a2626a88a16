//! The editor-facing APIs. Each one is a module implementing
//! [`EditorApi`]: it turns a request body into the agent invocation
//! ([`ModelRequest`], always OpenAI chat-shaped), and builds the
//! [`Encoder`] that writes the agent's answer back in the API's own shape.
//! [`routes`] is the table that maps method and path to them.
//!
//! Adding an API is one module here and one row in `routes::ROUTES`; the
//! provider and both runtimes need no change.

pub mod anthropic;
pub mod ollama;
pub mod openai;
pub mod responses;
pub mod routes;
mod validate;

use std::time::{Duration, SystemTime};

use bytes::{BufMut, BytesMut};
use serde_json::{Map, Value};

use crate::agent::message::Delta;
use crate::answer::Answer;
use crate::error::{ApiError, Dialect};
pub use routes::{route, Guard, Handler, Info};
pub use validate::{tokens_for, tool_results, RequestLimits};

/// One editor API: how its requests become an agent invocation and how the
/// agent's answer goes back to the editor.
pub trait EditorApi: Sync {
    /// The shape of this API's errors.
    fn dialect(&self) -> Dialect;

    /// Validates a request body and translates it into the invocation.
    fn parse(&self, body: &[u8], limits: &RequestLimits) -> Result<ModelRequest, ApiError>;

    /// The writer for one answer to `request`.
    fn encoder(&self, request: &ModelRequest, ids: AnswerIds) -> Box<dyn Encoder>;

    /// The id an answer drawn with `token` is known by: the one its body
    /// carries (`chatcmpl-…`, `resp_…`, `msg_…`), or, for an API whose
    /// bodies carry none, one of the same form; every answer's response
    /// carries it in an `x-completion-id` header, and
    /// `GET|DELETE /completions/{id}` find it.
    fn answer_id(&self, token: &str) -> String;
}

/// Identity of one answer, drawn by the provider.
#[derive(Debug, Clone)]
pub struct AnswerIds {
    /// Random, URL-safe: parts of the answer (a Responses item) are named
    /// after it.
    pub token: String,
    /// The answer's id ([`EditorApi::answer_id`] of the token).
    pub id: String,
    /// Unix seconds.
    pub created: u64,
}

impl AnswerIds {
    pub fn new(api: &dyn EditorApi, token: String, created: u64) -> Self {
        AnswerIds {
            id: api.answer_id(&token),
            token,
            created,
        }
    }
}

/// What a finished answer is written from.
pub struct End<'a> {
    pub answer: &'a Answer,
    /// Embedding vectors, for embedding APIs.
    pub vectors: &'a [Value],
    pub wall: SystemTime,
    pub timings: Timings,
}

/// Measured times of one request, for APIs that report durations.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub total: Duration,
    pub load: Duration,
    pub prompt_eval: Duration,
    pub eval: Duration,
}

/// Writes one answer in an API's shape: a stream event by event, or a
/// whole body at the end. The hot path: [`Encoder::delta`] writes straight
/// into the caller's buffer.
pub trait Encoder: Send {
    /// The content type of a streamed answer.
    fn stream_type(&self) -> &'static str;

    /// What a stream starts with, before any delta (the Responses and
    /// Messages APIs announce the answer first).
    fn open(&mut self, _out: &mut BytesMut) {}

    /// One in-order piece of a stream; `answer` already includes it.
    fn delta(&mut self, delta: &Delta, answer: &Answer, wall: SystemTime, out: &mut BytesMut);

    /// The end of a stream.
    fn close(&mut self, end: &End, out: &mut BytesMut);

    /// The body of a whole (non-streamed) answer.
    fn whole(&self, end: &End) -> Value;

    /// The error that ends a stream, in the API's shape.
    fn fail(&mut self, error: &ApiError, out: &mut BytesMut);

    /// What to send on an idle stream so proxies and clients keep it open.
    fn keepalive(&self) -> Option<&'static [u8]> {
        None
    }

    /// Whether a stream needs the whole text kept (its last events repeat
    /// it).
    fn keeps_text(&self) -> bool {
        false
    }
}

/// A validated request for a model, ready to send to an agent.
pub struct ModelRequest {
    pub api: &'static dyn EditorApi,
    pub model: String,
    pub stream: bool,
    /// An embedding request: routed only to sessions allowed embeddings,
    /// answered only with `model_result`.
    pub embedding: bool,
    /// The API answers this request itself with an empty answer (an Ollama
    /// generate with no prompt only loads the model).
    pub answer_now: bool,
    /// The `payload` of `model_invoke`: kind, messages / prompt / input and
    /// parameters, always in OpenAI shape.
    pub payload: Value,
    /// Prompt tokens, estimated from its text.
    pub prompt_tokens: u64,
    /// Request fields the answer depends on or repeats (OpenAI's
    /// `include_usage`, the Responses request's `instructions`), for the
    /// API's own encoder.
    pub echo: Map<String, Value>,
    /// What the Responses API asks to be kept of the answer, if anything.
    pub keep: Option<Keep>,
}

impl ModelRequest {
    /// A request of `api` for `model`, carrying the agent's `payload`:
    /// answered by the agent, not an embedding, nothing echoed or kept.
    pub(crate) fn new(
        api: &'static dyn EditorApi,
        model: String,
        stream: bool,
        payload: Value,
        prompt_tokens: u64,
    ) -> Self {
        ModelRequest {
            api,
            model,
            stream,
            embedding: false,
            answer_now: false,
            payload,
            prompt_tokens,
            echo: Map::new(),
            keep: None,
        }
    }

    /// A chat: its `messages` (in OpenAI's shape) and `parameters`, its
    /// prompt tokens estimated from the `text_bytes` of its messages.
    pub(crate) fn chat(
        api: &'static dyn EditorApi,
        model: String,
        stream: bool,
        messages: Value,
        parameters: Map<String, Value>,
        text_bytes: usize,
    ) -> Self {
        let parts = [("messages", messages), ("parameters", parameters.into())];
        let tokens = validate::tokens_for(text_bytes);
        Self::new(api, model, stream, payload("chat", parts), tokens)
    }

    /// An embedding of `input`, `bytes` of text: never streamed.
    pub(crate) fn embedding(
        api: &'static dyn EditorApi,
        model: String,
        input: Value,
        bytes: usize,
    ) -> Self {
        let parts = [("input", input), ("parameters", Map::new().into())];
        let tokens = validate::tokens_for(bytes);
        ModelRequest {
            embedding: true,
            ..Self::new(api, model, false, payload("embedding", parts), tokens)
        }
    }
}

/// A Responses request's `store`, `background` and
/// `previous_response_id`: the answer is kept in the provider's
/// [`crate::store::Store`], may run on without its connection, and may
/// continue a stored one.
#[derive(Debug, Clone, PartialEq)]
pub struct Keep {
    pub store: bool,
    pub background: bool,
    /// The stored response this request continues.
    pub previous: Option<String>,
    /// The input items as given (a string input as one user message
    /// item), for `GET /v1/responses/{id}/input_items`.
    pub items: Vec<Value>,
}

impl std::fmt::Debug for ModelRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRequest")
            .field("model", &self.model)
            .field("stream", &self.stream)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

/// Writes `value` as JSON at the end of `out`.
pub(crate) fn put_json(out: &mut BytesMut, value: &impl serde::Serialize) {
    // Writing into a BytesMut cannot fail.
    let _ = serde_json::to_writer(out.writer(), value);
}

/// Writes `text` as the inside of a JSON string (without its quotes) at the
/// end of `out`, escaped byte for byte as `serde_json` escapes it. A
/// streamed chunk's text is written this way between a head and a tail
/// computed once per answer: one copy for text with nothing to escape,
/// where a serializer makes several small writes per string.
pub(crate) fn put_json_str_inner(out: &mut BytesMut, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rest = text.as_bytes();
    loop {
        let run = crate::swar::json_plain_run(rest);
        let (plain, tail) = rest.split_at_checked(run).unwrap_or((rest, &[]));
        out.extend_from_slice(plain);
        let Some((&b, after)) = tail.split_first() else {
            return;
        };
        rest = after;
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
        };
        out.extend_from_slice(short);
    }
}

/// Writes `text` as a JSON string at the end of `out`, as `serde_json`
/// would (see [`put_json_str_inner`]).
pub(crate) fn put_json_str(out: &mut BytesMut, text: &str) {
    out.reserve(text.len() + 2);
    out.extend_from_slice(b"\"");
    put_json_str_inner(out, text);
    out.extend_from_slice(b"\"");
}

/// One named server-sent event whose data is `value`.
pub(crate) fn put_event(out: &mut BytesMut, name: &str, value: &Value) {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    put_json(out, value);
    out.put_slice(b"\n\n");
}

pub(crate) const SSE: &str = "text/event-stream";
pub(crate) const NDJSON: &str = "application/x-ndjson";
/// An SSE comment: clients ignore it, proxies see traffic.
pub(crate) const SSE_KEEPALIVE: &[u8] = b": keep-alive\n\n";

/// The agent's payload: its `kind` and `parts`, moved in (`json!` would
/// copy each, and a conversation's messages run to megabytes).
pub(crate) fn payload<const N: usize>(kind: &str, parts: [(&str, Value); N]) -> Value {
    let mut payload = Map::new();
    payload.insert("kind".into(), kind.into());
    for (name, part) in parts {
        payload.insert(name.into(), part);
    }
    Value::Object(payload)
}

/// Parses a JSON body, insisting on an object.
fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid("The request body must be a JSON object.")),
        Err(e) => Err(ApiError::invalid(format!(
            "We could not parse the JSON body of your request: {e}"
        ))),
    }
}

/// A tool call's arguments as an object (APIs that send them parsed); text
/// that is not a JSON object becomes an empty object.
pub(crate) fn arguments_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

/// What the APIs' tests share: an answer run through an encoder.
#[cfg(test)]
pub(crate) mod testing {
    use std::time::{SystemTime, UNIX_EPOCH};

    use bytes::BytesMut;
    use serde_json::Value;

    use super::{AnswerIds, EditorApi, End, RequestLimits, Timings};
    use crate::agent::message::{Delta, Usage};
    use crate::answer::Answer;

    /// A delta of reasoning text.
    pub fn thought(text: &str) -> Delta<'_> {
        Delta {
            reasoning: Some(text.into()),
            ..Delta::default()
        }
    }

    /// A delta of answer text.
    pub fn said(text: &str) -> Delta<'_> {
        Delta {
            content: Some(text.into()),
            ..Delta::default()
        }
    }

    /// `deltas` answering `body` through `api`'s encoder: the stream it
    /// writes (opened, every delta, closed), and the whole body it makes
    /// of the same answer.
    pub fn answer(api: &dyn EditorApi, body: &Value, deltas: &[Delta]) -> (String, Value) {
        let request = api
            .parse(body.to_string().as_bytes(), &RequestLimits::default())
            .expect("a valid request");
        let mut encoder = api.encoder(&request, AnswerIds::new(api, "t".into(), 1));
        let mut answer = Answer::new(true);
        let mut out = BytesMut::new();
        encoder.open(&mut out);
        for delta in deltas {
            answer.add_delta(delta);
            encoder.delta(delta, &answer, SystemTime::UNIX_EPOCH, &mut out);
        }
        answer.finish(None, Usage::default());
        let end = End {
            answer: &answer,
            vectors: &[],
            wall: UNIX_EPOCH,
            timings: Timings::default(),
        };
        encoder.close(&end, &mut out);
        let whole = encoder.whole(&end);
        let stream = String::from_utf8(out.to_vec()).expect("UTF-8");
        (stream, whole)
    }

    /// A server-sent event stream's events: (name, data as JSON); events
    /// without a name are named after nothing, those whose data is not
    /// JSON (`[DONE]`) are left out.
    pub fn sse(stream: &str) -> Vec<(String, Value)> {
        stream
            .split("\n\n")
            .filter_map(|event| {
                let mut name = String::new();
                let mut data = None;
                for line in event.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(d).ok();
                    }
                }
                Some((name, data?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any text, quoted, reads exactly as serde_json writes it: the
        /// chunks written this way are byte for byte what they were.
        #[test]
        fn a_json_string_inside_matches_serde_json(text in "(?s).{0,40}|[\\x00-\\x20\"\\\\a\u{e9}\u{1f600}]{0,20}") {
            let mut out = BytesMut::new();
            put_json_str(&mut out, &text);
            let expected = serde_json::to_string(&text).unwrap_or_default();
            proptest::prop_assert_eq!(&out[..], expected.as_bytes());
        }
    }
}
