//! OpenAI's chat completions, legacy completions and embeddings: request
//! parsing and the response shapes, streamed and whole.

use std::time::SystemTime;

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::validate::{self, RequestLimits};
use super::{
    parse_object, payload, put_json, put_json_str, put_json_str_inner, AnswerIds, EditorApi,
    Encoder, End, ModelRequest, SSE, SSE_KEEPALIVE,
};
use crate::agent::message::{Delta, ToolCallDelta};
use crate::answer::Answer;
use crate::error::{ApiError, Dialect};

/// `POST /v1/chat/completions`.
pub struct Chat;
/// `POST /v1/completions` (legacy, with `suffix` for fill-in-the-middle).
pub struct Completion;
/// `POST /v1/embeddings`.
pub struct Embeddings;

pub static CHAT: Chat = Chat;
pub static COMPLETION: Completion = Completion;
pub static EMBEDDINGS: Embeddings = Embeddings;
/// `POST /completions/stream` (the seed's route): a legacy completion,
/// always streamed.
pub static COMPLETION_STREAM: StreamedCompletion = StreamedCompletion;

pub struct StreamedCompletion;

impl EditorApi for StreamedCompletion {
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    fn parse(&self, body: &[u8], limits: &RequestLimits) -> Result<ModelRequest, ApiError> {
        let mut request = parse_completion(body, limits)?;
        request.stream = true;
        request.payload["parameters"]["stream"] = Value::Bool(true);
        Ok(request)
    }

    fn encoder(&self, request: &ModelRequest, ids: AnswerIds) -> Box<dyn Encoder> {
        COMPLETION.encoder(request, ids)
    }

    fn answer_id(&self, token: &str) -> String {
        COMPLETION.answer_id(token)
    }
}

impl EditorApi for Chat {
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    fn parse(&self, body: &[u8], limits: &RequestLimits) -> Result<ModelRequest, ApiError> {
        parse_chat(body, limits)
    }

    fn encoder(&self, request: &ModelRequest, ids: AnswerIds) -> Box<dyn Encoder> {
        Box::new(ChatEncoder::new(request, ids, true))
    }

    fn answer_id(&self, token: &str) -> String {
        format!("chatcmpl-{token}")
    }
}

impl EditorApi for Completion {
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    fn parse(&self, body: &[u8], limits: &RequestLimits) -> Result<ModelRequest, ApiError> {
        parse_completion(body, limits)
    }

    fn encoder(&self, request: &ModelRequest, ids: AnswerIds) -> Box<dyn Encoder> {
        Box::new(ChatEncoder::new(request, ids, false))
    }

    fn answer_id(&self, token: &str) -> String {
        format!("cmpl-{token}")
    }
}

impl EditorApi for Embeddings {
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    fn parse(&self, body: &[u8], _limits: &RequestLimits) -> Result<ModelRequest, ApiError> {
        parse_embeddings(body)
    }

    fn encoder(&self, request: &ModelRequest, _ids: AnswerIds) -> Box<dyn Encoder> {
        Box::new(EmbeddingsEncoder {
            model: request.model.clone(),
            base64: request.echo.get("encoding_format").and_then(Value::as_str) == Some("base64"),
        })
    }

    fn answer_id(&self, token: &str) -> String {
        format!("embd-{token}")
    }
}

pub fn parse_chat(body: &[u8], limits: &RequestLimits) -> Result<ModelRequest, ApiError> {
    let mut body = parse_object(body)?;
    let model = validate::model(&body)?;
    let text_bytes = validate::messages(&body, limits)?;
    tool_call_ids(&body)?;
    let mut parameters = sampling(&body, limits)?;
    if let Some(tools) = validate::tools(&body)? {
        parameters.insert("tools".into(), tools);
    }
    for name in [
        "tool_choice",
        "response_format",
        "parallel_tool_calls",
        "seed",
    ] {
        if let Some(v) = body.get(name).filter(|v| !v.is_null()) {
            parameters.insert(name.into(), v.clone());
        }
    }
    if let Some(effort) = validate::effort(body.get("reasoning_effort")) {
        parameters.insert("reasoning_effort".into(), effort);
    }
    let (stream, echo) = stream_flags(&body)?;
    parameters.insert("stream".into(), Value::Bool(stream));
    let messages = body.remove("messages").unwrap_or_default();
    Ok(ModelRequest {
        echo,
        ..ModelRequest::chat(&CHAT, model, stream, messages, parameters, text_bytes)
    })
}

/// Each `tool` message names the call it answers, as OpenAI requires: a
/// result without its call's id could answer any conversation's call of
/// the same tool.
fn tool_call_ids(body: &Map<String, Value>) -> Result<(), ApiError> {
    let messages = body.get("messages").and_then(Value::as_array);
    let messages = messages.map_or(&[][..], Vec::as_slice);
    let missing = messages
        .iter()
        .position(|m| m["role"] == "tool" && !m["tool_call_id"].is_string());
    match missing {
        Some(i) => Err(ApiError::invalid_param(
            &format!("messages[{i}].tool_call_id"),
            "Missing parameter 'tool_call_id': messages with role 'tool' must have a 'tool_call_id'.",
        )),
        None => Ok(()),
    }
}

pub fn parse_completion(body: &[u8], limits: &RequestLimits) -> Result<ModelRequest, ApiError> {
    let body = parse_object(body)?;
    let model = validate::model(&body)?;
    let prompt = validate::prompt(&body, "prompt", limits)?;
    let suffix = validate::prompt(&body, "suffix", limits)?;
    let mut parameters = sampling(&body, limits)?;
    let (stream, echo) = stream_flags(&body)?;
    parameters.insert("stream".into(), Value::Bool(stream));
    let prompt_tokens = validate::tokens_for(prompt.len() + suffix.len());
    let mut payload = payload(
        "completion",
        [("prompt", prompt.into()), ("parameters", parameters.into())],
    );
    if !suffix.is_empty() {
        payload["suffix"] = Value::String(suffix);
    }
    Ok(ModelRequest {
        echo,
        ..ModelRequest::new(&COMPLETION, model, stream, payload, prompt_tokens)
    })
}

pub fn parse_embeddings(body: &[u8]) -> Result<ModelRequest, ApiError> {
    let body = parse_object(body)?;
    let model = validate::model(&body)?;
    let (input, bytes) = validate::embedding_input(&body, "input")?;
    let mut echo = Map::new();
    match body.get("encoding_format") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) if f == "float" || f == "base64" => {
            echo.insert("encoding_format".into(), Value::String(f.clone()));
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                "encoding_format",
                "'encoding_format' must be \"float\" or \"base64\"",
            ))
        }
    }
    Ok(ModelRequest {
        echo,
        ..ModelRequest::embedding(&EMBEDDINGS, model, input, bytes)
    })
}

/// Sampling parameters common to chat and completions.
fn sampling(
    body: &Map<String, Value>,
    limits: &RequestLimits,
) -> Result<Map<String, Value>, ApiError> {
    let mut p = Map::new();
    let max = match validate::max_tokens(body, "max_completion_tokens", limits)? {
        Some(v) => Some(v),
        None => validate::max_tokens(body, "max_tokens", limits)?,
    };
    if let Some(v) = max {
        p.insert("max_tokens".into(), v.into());
    }
    for (name, min, max) in [
        ("temperature", 0.0, 2.0),
        ("top_p", 0.0, 1.0),
        ("presence_penalty", -2.0, 2.0),
        ("frequency_penalty", -2.0, 2.0),
    ] {
        if let Some(v) = validate::number_in(body, name, min, max)? {
            p.insert(name.into(), v.into());
        }
    }
    if let Some(stop) = validate::stop(body, "stop")? {
        p.insert("stop".into(), stop);
    }
    match body.get("n") {
        None | Some(Value::Null) => {}
        Some(n) if n.as_u64() == Some(1) => {}
        Some(_) => return Err(ApiError::invalid_param("n", "only n=1 is supported")),
    }
    Ok(p)
}

/// `stream`, and `stream_options.include_usage` as the encoder reads it.
fn stream_flags(body: &Map<String, Value>) -> Result<(bool, Map<String, Value>), ApiError> {
    let stream = validate::flag(body, "stream")?.unwrap_or(false);
    let include_usage = match body.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => validate::flag(o, "include_usage")?.unwrap_or(false),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "stream_options",
                "'stream_options' must be an object",
            ))
        }
    };
    let mut echo = Map::new();
    echo.insert("include_usage".into(), Value::Bool(include_usage));
    Ok((stream, echo))
}

/// The JSON that every chunk of one stream starts with, up to the choice.
pub(crate) fn chunk_prefix(chat: bool, id: &str, created: u64, model: &str) -> Vec<u8> {
    let object: &[u8] = if chat {
        b"chat.completion.chunk"
    } else {
        b"text_completion"
    };
    // The fields in the order they have always been written (by name).
    let mut head = BytesMut::with_capacity(96 + id.len() + model.len());
    head.extend_from_slice(br#"{"created":"#);
    crate::digits::put_decimal(&mut head, created);
    head.extend_from_slice(br#","id":"#);
    put_json_str(&mut head, id);
    head.extend_from_slice(br#","model":"#);
    put_json_str(&mut head, model);
    head.extend_from_slice(br#","object":""#);
    head.extend_from_slice(object);
    head.extend_from_slice(br#"","choices":["#);
    head.into()
}

/// A chat chunk with `delta` written by `write_delta`, as one SSE event.
pub(crate) fn put_chat_chunk(
    out: &mut BytesMut,
    prefix: &[u8],
    write_delta: impl FnOnce(&mut BytesMut),
    finish_reason: Option<&str>,
) {
    out.put_slice(b"data: ");
    out.put_slice(prefix);
    out.put_slice(br#"{"index":0,"delta":"#);
    write_delta(out);
    put_finish(out, finish_reason);
    out.put_slice(b"}]}\n\n");
}

/// A legacy completion chunk carrying `text`, as one SSE event.
pub(crate) fn put_completion_chunk(
    out: &mut BytesMut,
    prefix: &[u8],
    text: &str,
    finish_reason: Option<&str>,
) {
    out.put_slice(b"data: ");
    out.put_slice(prefix);
    out.put_slice(br#"{"index":0,"text":"#);
    put_json(out, &text);
    out.put_slice(br#","logprobs":null"#);
    put_finish(out, finish_reason);
    out.put_slice(b"}]}\n\n");
}

fn put_finish(out: &mut BytesMut, finish_reason: Option<&str>) {
    out.put_slice(br#","finish_reason":"#);
    match finish_reason {
        Some(r) => put_json(out, &r),
        None => out.put_slice(b"null"),
    }
}

/// The usage chunk sent before `[DONE]` when `include_usage` was asked:
/// no choices, every count present.
pub(crate) fn put_usage_chunk(out: &mut BytesMut, prefix: &[u8], answer: &Answer) {
    out.put_slice(b"data: ");
    out.put_slice(prefix);
    out.put_slice(br#"],"usage":"#);
    put_json(out, &usage(answer));
    out.put_slice(b"}\n\n");
}

pub(crate) fn put_done(out: &mut BytesMut) {
    out.put_slice(b"data: [DONE]\n\n");
}

/// An error event ending a stream (the `openai` clients raise it), then
/// `[DONE]`, so a client that reads on past errors still sees the end.
pub(crate) fn put_stream_error(out: &mut BytesMut, error: &ApiError) {
    out.put_slice(b"data: ");
    out.put_slice(&error.body(crate::error::Dialect::OpenAi));
    out.put_slice(b"\n\n");
    put_done(out);
}

fn usage(answer: &Answer) -> Value {
    let (prompt, completion) = answer.usage();
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt.saturating_add(completion)})
}

/// The whole answer of a non-streamed chat or completion.
pub(crate) fn full_body(chat: bool, id: &str, created: u64, model: &str, answer: &Answer) -> Value {
    let finish = answer.api_finish_reason().unwrap_or("stop");
    let choice = if chat {
        let mut message = json!({"role": "assistant", "content": answer.content});
        if !answer.reasoning.is_empty() {
            message["reasoning_content"] = json!(answer.reasoning);
        }
        if !answer.tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(answer.tool_calls_openai());
            if answer.content.is_empty() {
                message["content"] = Value::Null;
            }
        }
        json!({"index": 0, "message": message, "logprobs": null, "finish_reason": finish})
    } else {
        json!({"index": 0, "text": answer.content, "logprobs": null, "finish_reason": finish})
    };
    let object = if chat {
        "chat.completion"
    } else {
        "text_completion"
    };
    json!({"id": id, "object": object, "created": created, "model": model,
           "choices": [choice], "usage": usage(answer)})
}

/// `/v1/embeddings` answer from the agent's vectors; `base64` sends each
/// as little-endian `f32`s in base64, as OpenAI does.
pub(crate) fn embeddings_body(
    model: &str,
    vectors: &[Value],
    prompt_tokens: u64,
    base64: bool,
) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                Value::String(f32_base64(v))
            } else {
                v.clone()
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json!({"object": "list", "data": data, "model": model,
           "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}})
}

/// One entry of `/v1/models`.
pub fn model_entry(id: &str, created: u64, owner: &str) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": owner})
}

/// A vector's numbers as little-endian `f32`s, base64-encoded.
fn f32_base64(vector: &Value) -> String {
    let bytes: Vec<u8> = vector
        .as_array()
        .map(|v| {
            v.iter()
                .flat_map(|x| (x.as_f64().unwrap_or(0.0) as f32).to_le_bytes())
                .collect()
        })
        .unwrap_or_default();
    crate::base64::encode(&bytes)
}

/// Chat and legacy completion answers: SSE chunks with a prefix computed
/// once per request, or one whole body.
struct ChatEncoder {
    chat: bool,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    /// Every chunk's JSON up to its choice.
    prefix: Vec<u8>,
    /// A text-only chunk's whole event up to the text's first byte: the
    /// common chunk is this, the text escaped, and [`TEXT_TAIL`] or
    /// [`COMPLETION_TEXT_TAIL`].
    text_head: Vec<u8>,
    role_sent: bool,
}

/// What follows a text-only chat chunk's text.
const TEXT_TAIL: &[u8] = b"\"},\"finish_reason\":null}]}\n\n";
/// What follows a legacy completion chunk's text.
const COMPLETION_TEXT_TAIL: &[u8] = b"\",\"logprobs\":null,\"finish_reason\":null}]}\n\n";

impl ChatEncoder {
    fn new(request: &ModelRequest, ids: AnswerIds, chat: bool) -> Self {
        let id = ids.id;
        let prefix = chunk_prefix(chat, &id, ids.created, &request.model);
        let choice: &[u8] = if chat {
            br#"{"index":0,"delta":{"content":""#
        } else {
            br#"{"index":0,"text":""#
        };
        ChatEncoder {
            chat,
            text_head: [b"data: ", prefix.as_slice(), choice].concat(),
            prefix,
            id,
            created: ids.created,
            model: request.model.clone(),
            include_usage: request.echo.get("include_usage") == Some(&Value::Bool(true)),
            role_sent: false,
        }
    }

    /// A text-only chunk as one SSE event.
    fn put_text_chunk(&self, out: &mut BytesMut, text: &str, tail: &[u8]) {
        out.reserve(self.text_head.len() + text.len() + tail.len());
        out.extend_from_slice(&self.text_head);
        put_json_str_inner(out, text);
        out.extend_from_slice(tail);
    }

    fn tail(&self, answer: &Answer, out: &mut BytesMut) {
        if self.include_usage {
            put_usage_chunk(out, &self.prefix, answer);
        }
        put_done(out);
    }
}

/// An OpenAI delta as written to the editor.
#[derive(Serialize)]
struct OutDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    /// Reasoning text, in the field DeepSeek, vLLM and OpenRouter stream
    /// it in and their clients read.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

impl Encoder for ChatEncoder {
    fn stream_type(&self) -> &'static str {
        SSE
    }

    fn delta(&mut self, delta: &Delta, _: &Answer, _: SystemTime, out: &mut BytesMut) {
        let content = delta.content.as_deref();
        if !self.chat {
            if let Some(text) = content.filter(|t| !t.is_empty()) {
                self.put_text_chunk(out, text, COMPLETION_TEXT_TAIL);
            }
            return;
        }
        let role = (!self.role_sent).then_some("assistant");
        let reasoning = delta.reasoning.as_deref().filter(|t| !t.is_empty());
        if let (None, None, None, Some(text)) = (role, reasoning, &delta.tool_calls, content) {
            // The common chunk, text only: written without building a delta.
            if !text.is_empty() {
                self.put_text_chunk(out, text, TEXT_TAIL);
            }
            return;
        }
        let tool_calls = delta.tool_calls.as_ref().map(|calls| with_indexes(calls));
        if role.is_none()
            && content.is_none_or(str::is_empty)
            && reasoning.is_none()
            && tool_calls.is_none()
        {
            return;
        }
        self.role_sent = true;
        let d = OutDelta {
            role,
            content: content.or(role.map(|_| "")),
            reasoning_content: reasoning,
            tool_calls,
        };
        put_chat_chunk(out, &self.prefix, |o| put_json(o, &d), None);
    }

    fn close(&mut self, end: &End, out: &mut BytesMut) {
        let finish = end.answer.api_finish_reason();
        if self.chat {
            let d = OutDelta {
                role: (!self.role_sent).then_some("assistant"),
                content: None,
                reasoning_content: None,
                tool_calls: None,
            };
            put_chat_chunk(out, &self.prefix, |o| put_json(o, &d), finish);
        } else {
            put_completion_chunk(out, &self.prefix, "", finish);
        }
        self.tail(end.answer, out);
    }

    fn whole(&self, end: &End) -> Value {
        full_body(self.chat, &self.id, self.created, &self.model, end.answer)
    }

    fn fail(&mut self, error: &ApiError, out: &mut BytesMut) {
        put_stream_error(out, error);
    }

    fn keepalive(&self) -> Option<&'static [u8]> {
        Some(SSE_KEEPALIVE)
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

struct EmbeddingsEncoder {
    model: String,
    base64: bool,
}

impl Encoder for EmbeddingsEncoder {
    fn stream_type(&self) -> &'static str {
        SSE
    }

    fn delta(&mut self, _: &Delta, _: &Answer, _: SystemTime, _: &mut BytesMut) {}

    fn close(&mut self, _: &End, _: &mut BytesMut) {}

    fn whole(&self, end: &End) -> Value {
        let (prompt, _) = end.answer.usage();
        embeddings_body(&self.model, end.vectors, prompt, self.base64)
    }

    fn fail(&mut self, error: &ApiError, out: &mut BytesMut) {
        put_stream_error(out, error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> Result<ModelRequest, ApiError> {
        parse_chat(body.to_string().as_bytes(), &RequestLimits::default())
    }

    #[test]
    fn chat_passes_parameters_in_openai_shape() {
        let r = chat(
            json!({"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,
            "stream_options":{"include_usage":true},"max_completion_tokens":5,"temperature":0.5,
            "tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"auto"}),
        )
        .unwrap();
        assert!(r.stream && r.echo["include_usage"] == true);
        assert_eq!(r.payload["parameters"]["max_tokens"], 5);
        assert_eq!(r.payload["parameters"]["temperature"], 0.5);
        assert_eq!(r.payload["parameters"]["tool_choice"], "auto");
        assert_eq!(r.payload["messages"][0]["content"], "hi");
    }

    #[test]
    fn chat_rejects_bad_fields_naming_them() {
        let base = |extra: Value| {
            let mut b = json!({"model":"m","messages":[{"role":"user","content":"hi"}]});
            b.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            chat(b).unwrap_err()
        };
        assert_eq!(
            base(json!({"temperature": 3})).param.as_deref(),
            Some("temperature")
        );
        assert_eq!(base(json!({"top_p": -0.1})).param.as_deref(), Some("top_p"));
        assert_eq!(
            base(json!({"max_tokens": 0})).param.as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            base(json!({"max_tokens": "5"})).param.as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            base(json!({"messages": [{"role":"wizard","content":"x"}]}))
                .param
                .as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            base(json!({"messages": []})).param.as_deref(),
            Some("messages")
        );
        let unanswerable = base(json!({"messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "content": "rain"}]}));
        assert_eq!(unanswerable.status, 400);
        assert_eq!(
            unanswerable.param.as_deref(),
            Some("messages[2].tool_call_id")
        );
        assert!(unanswerable.message.contains("'tool_call_id'"));
        assert_eq!(base(json!({"model": 5})).param.as_deref(), Some("model"));
        assert_eq!(
            base(json!({"stream": "yes"})).param.as_deref(),
            Some("stream")
        );
        assert_eq!(
            chat(json!({"model":"m"})).unwrap_err().param.as_deref(),
            Some("messages")
        );
        assert_eq!(
            parse_chat(b"{nope", &RequestLimits::default())
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            parse_chat(b"[1]", &RequestLimits::default())
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn oversized_message_and_too_many_messages_are_rejected() {
        let limits = RequestLimits {
            max_messages: 2,
            max_message_bytes: 4,
            max_tokens: 10,
        };
        let long = json!({"model":"m","messages":[{"role":"user","content":"12345"}]});
        assert!(parse_chat(long.to_string().as_bytes(), &limits).is_err());
        let many = json!({"model":"m","messages":[{"role":"user","content":"1"},{"role":"user","content":"1"},{"role":"user","content":"1"}]});
        assert!(parse_chat(many.to_string().as_bytes(), &limits).is_err());
    }

    #[test]
    fn completion_carries_suffix() {
        let r = parse_completion(
            br#"{"model":"m","prompt":"def f(","suffix":"\n  return x","max_tokens":16}"#,
            &RequestLimits::default(),
        )
        .unwrap();
        assert_eq!(r.payload["kind"], "completion");
        assert_eq!(r.payload["suffix"], "\n  return x");
        assert!(!r.stream);
    }

    #[test]
    fn a_text_chunk_is_written_as_the_general_delta_would_write_it() {
        use crate::api::testing::{answer, said};
        let text = "say \"hi\"\n\t\u{1}\\ é";
        let prefix = |chat| chunk_prefix(chat, if chat { "chatcmpl-t" } else { "cmpl-t" }, 1, "m");
        let mut chat = BytesMut::new();
        put_chat_chunk(
            &mut chat,
            &prefix(true),
            |o| put_json(o, &json!({"content": text})),
            None,
        );
        let mut completion = BytesMut::new();
        put_completion_chunk(&mut completion, &prefix(false), text, None);
        let deltas = [said("Hi"), said(text)];
        let (stream, _) = answer(
            &CHAT,
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true}),
            &deltas,
        );
        assert!(
            stream.contains(std::str::from_utf8(&chat).unwrap()),
            "{stream}"
        );
        let (stream, _) = answer(
            &COMPLETION,
            &json!({"model": "m", "prompt": "p", "stream": true}),
            &deltas,
        );
        assert!(
            stream.contains(std::str::from_utf8(&completion).unwrap()),
            "{stream}"
        );
    }

    #[test]
    fn chunk_prefix_is_valid_json_once_closed() {
        let prefix = chunk_prefix(true, "chatcmpl-1", 7, "m\"x");
        let mut out = BytesMut::new();
        put_chat_chunk(
            &mut out,
            &prefix,
            |o| put_json(o, &json!({"content": "a\nb"})),
            None,
        );
        let text = std::str::from_utf8(&out).unwrap();
        let v: Value =
            serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(v["choices"][0]["delta"]["content"], "a\nb");
        assert_eq!(v["model"], "m\"x");
        assert!(v["choices"][0]["finish_reason"].is_null());
    }

    #[test]
    fn reasoning_goes_in_reasoning_content_streamed_and_whole() {
        use crate::api::testing::{answer, said, sse, thought};
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                          "stream": true});
        let deltas = [thought("Let me "), thought("think."), said("Hi"), said("!")];
        let (stream, whole) = answer(&CHAT, &body, &deltas);
        let chunks: Vec<Value> = sse(&stream)
            .into_iter()
            .map(|(_, data)| data["choices"][0]["delta"].clone())
            .collect();
        assert_eq!(
            chunks,
            [
                json!({"role": "assistant", "content": "", "reasoning_content": "Let me "}),
                json!({"reasoning_content": "think."}),
                json!({"content": "Hi"}),
                json!({"content": "!"}),
                json!({}),
            ]
        );
        let message = &whole["choices"][0]["message"];
        assert_eq!(message["reasoning_content"], "Let me think.");
        assert_eq!(message["content"], "Hi!");
        // Without reasoning the field is left out; a legacy completion,
        // which has no such field, leaves the reasoning out.
        let (_, plain) = answer(&CHAT, &body, &[said("x")]);
        assert!(plain["choices"][0]["message"]
            .get("reasoning_content")
            .is_none());
        let legacy = json!({"model": "m", "prompt": "p", "stream": true});
        let (stream, whole) = answer(&COMPLETION, &legacy, &deltas);
        assert!(!stream.contains("think"));
        assert_eq!(whole["choices"][0]["text"], "Hi!");
    }

    #[test]
    fn base64_embeddings_are_little_endian_f32() {
        // 1.0f32 = 00 00 80 3f
        assert_eq!(f32_base64(&json!([1.0])), "AACAPw==");
        let r = parse_embeddings(br#"{"model":"m","input":"x","encoding_format":"hex"}"#);
        assert_eq!(r.unwrap_err().param.as_deref(), Some("encoding_format"));
    }
}
