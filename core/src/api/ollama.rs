//! Ollama's API: request parsing (translated to the OpenAI-shaped payload
//! agents receive) and Ollama's response shapes.

use std::time::SystemTime;

use bytes::{BufMut, BytesMut};
use serde_json::{json, Map, Value};

use super::validate::{self, RequestLimits};
use super::Timings;
use super::{
    parse_object, payload, put_json, put_json_str, AnswerIds, EditorApi, Encoder, End,
    ModelRequest, NDJSON,
};
use crate::agent::message::Delta;
use crate::answer::Answer;
use crate::error::{ApiError, Dialect};
use crate::time::{rfc3339, write_rfc3339};

/// The Ollama API version the provider answers as: the first release that
/// serves both `/v1/responses` and `/v1/messages`, as this provider does
/// (codex's `--oss` mode refuses anything before 0.13.4).
pub const COMPAT_VERSION: &str = "0.14.0";

/// The tag Ollama puts on a model name that has none.
const DEFAULT_TAG: &str = ":latest";

/// `POST /api/chat`.
pub struct Chat;
/// `POST /api/generate`.
pub struct Generate;
/// `POST /api/embed`.
pub struct Embed;
/// `POST /api/embeddings`, the older single-prompt form.
pub struct Embeddings;

pub static CHAT: Chat = Chat;
pub static GENERATE: Generate = Generate;
pub static EMBED: Embed = Embed;
pub static EMBEDDINGS: Embeddings = Embeddings;

impl EditorApi for Chat {
    fn dialect(&self) -> Dialect {
        Dialect::Ollama
    }

    fn parse(&self, body: &[u8], limits: &RequestLimits) -> Result<ModelRequest, ApiError> {
        parse_chat(body, limits)
    }

    fn encoder(&self, request: &ModelRequest, _: AnswerIds) -> Box<dyn Encoder> {
        Box::new(LineEncoder::new(request, Shape::Chat))
    }

    fn answer_id(&self, token: &str) -> String {
        ollama_id(token)
    }
}

impl EditorApi for Generate {
    fn dialect(&self) -> Dialect {
        Dialect::Ollama
    }

    fn parse(&self, body: &[u8], limits: &RequestLimits) -> Result<ModelRequest, ApiError> {
        parse_generate(body, limits)
    }

    fn encoder(&self, request: &ModelRequest, _: AnswerIds) -> Box<dyn Encoder> {
        Box::new(LineEncoder::new(request, Shape::Generate))
    }

    fn answer_id(&self, token: &str) -> String {
        ollama_id(token)
    }
}

impl EditorApi for Embed {
    fn dialect(&self) -> Dialect {
        Dialect::Ollama
    }

    fn parse(&self, body: &[u8], _: &RequestLimits) -> Result<ModelRequest, ApiError> {
        parse_embed(body, "input", &EMBED)
    }

    fn encoder(&self, request: &ModelRequest, _: AnswerIds) -> Box<dyn Encoder> {
        Box::new(LineEncoder::new(request, Shape::Embed))
    }

    fn answer_id(&self, token: &str) -> String {
        ollama_id(token)
    }
}

impl EditorApi for Embeddings {
    fn dialect(&self) -> Dialect {
        Dialect::Ollama
    }

    fn parse(&self, body: &[u8], _: &RequestLimits) -> Result<ModelRequest, ApiError> {
        parse_embed(body, "prompt", &EMBEDDINGS)
    }

    fn encoder(&self, request: &ModelRequest, _: AnswerIds) -> Box<dyn Encoder> {
        Box::new(LineEncoder::new(request, Shape::Embedding))
    }

    fn answer_id(&self, token: &str) -> String {
        ollama_id(token)
    }
}

/// An Ollama answer's id: its bodies carry none, so only its
/// `x-completion-id` header shows it.
fn ollama_id(token: &str) -> String {
    format!("ollama-{token}")
}

/// Context length advertised in `/api/show`.
pub const CONTEXT_LENGTH: u64 = 131_072;

pub fn parse_chat(body: &[u8], limits: &RequestLimits) -> Result<ModelRequest, ApiError> {
    let body = parse_object(body)?;
    let model = validate::model(&body)?;
    let text_bytes = validate::messages(&body, limits)?;
    let messages: Vec<Value> = body["messages"]
        .as_array()
        .map(|m| m.iter().map(message_to_openai).collect())
        .unwrap_or_default();
    let mut parameters = options(&body, limits)?;
    if let Some(tools) = validate::tools(&body)? {
        parameters.insert("tools".into(), tools);
    }
    let stream = validate::flag(&body, "stream")?.unwrap_or(true);
    parameters.insert("stream".into(), Value::Bool(stream));
    Ok(ModelRequest::chat(
        &CHAT,
        model,
        stream,
        Value::Array(messages),
        parameters,
        text_bytes,
    ))
}

/// An empty prompt only loads the model in Ollama: it is answered at once.
pub fn parse_generate(body: &[u8], limits: &RequestLimits) -> Result<ModelRequest, ApiError> {
    let body = parse_object(body)?;
    let model = validate::model(&body)?;
    let prompt = validate::prompt(&body, "prompt", limits)?;
    let suffix = validate::prompt(&body, "suffix", limits)?;
    let system = validate::prompt(&body, "system", limits)?;
    let mut parameters = options(&body, limits)?;
    let stream = validate::flag(&body, "stream")?.unwrap_or(true);
    parameters.insert("stream".into(), Value::Bool(stream));
    let prompt_tokens = validate::tokens_for(prompt.len() + suffix.len() + system.len());
    let answer_now = prompt.is_empty();
    let mut payload = payload(
        "completion",
        [("prompt", prompt.into()), ("parameters", parameters.into())],
    );
    if !suffix.is_empty() {
        payload["suffix"] = Value::String(suffix);
    }
    if !system.is_empty() {
        payload["system"] = Value::String(system);
    }
    Ok(ModelRequest {
        answer_now,
        ..ModelRequest::new(&GENERATE, model, stream, payload, prompt_tokens)
    })
}

/// An embedding request whose text is in `field`.
pub fn parse_embed(
    body: &[u8],
    field: &str,
    api: &'static dyn EditorApi,
) -> Result<ModelRequest, ApiError> {
    let body = parse_object(body)?;
    let model = validate::model(&body)?;
    let (input, bytes) = validate::embedding_input(&body, field)?;
    Ok(ModelRequest::embedding(api, model, input, bytes))
}

/// `POST /api/pull`: the model to pull and whether to stream progress.
pub fn parse_pull(body: &[u8]) -> Result<(String, bool), ApiError> {
    let model = parse_show(body)?;
    let body = parse_object(body)?;
    Ok((model, validate::flag(&body, "stream")?.unwrap_or(true)))
}

/// A model's name as Ollama lists it: with a tag.
pub fn tagged(model: &str) -> String {
    if model.contains(':') {
        model.to_owned()
    } else {
        format!("{model}{DEFAULT_TAG}")
    }
}

/// `POST /api/show`: the model name, from `model` or the older `name`.
pub fn parse_show(body: &[u8]) -> Result<String, ApiError> {
    let body = parse_object(body)?;
    for key in ["model", "name"] {
        if let Some(Value::String(m)) = body.get(key) {
            if !m.is_empty() {
                return Ok(m.clone());
            }
        }
    }
    Err(ApiError::invalid_param(
        "model",
        "you must provide a model name",
    ))
}

/// An Ollama message in OpenAI shape: tool-call arguments become a string.
fn message_to_openai(m: &Value) -> Value {
    let mut out = m.clone();
    if let Some(calls) = m["tool_calls"].as_array() {
        let calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let args = match &c["function"]["arguments"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                json!({"id": c["id"].as_str().map_or_else(|| format!("call_{i}"), str::to_owned),
                       "type": "function",
                       "function": {"name": c["function"]["name"], "arguments": args}})
            })
            .collect();
        out["tool_calls"] = Value::Array(calls);
    }
    out
}

/// `options` (and `format`) as OpenAI-named parameters.
fn options(
    body: &Map<String, Value>,
    limits: &RequestLimits,
) -> Result<Map<String, Value>, ApiError> {
    let mut p = Map::new();
    let empty = Map::new();
    let opts = match body.get("options") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "options",
                "'options' must be an object",
            ))
        }
    };
    for (name, min, max) in [("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)] {
        if let Some(v) = validate::number_in(opts, name, min, max)? {
            p.insert(name.into(), v.into());
        }
    }
    // Ollama uses -1 (no limit) and -2 (fill the context) for num_predict.
    match opts.get("num_predict").and_then(Value::as_i64) {
        Some(-1 | -2) | None => {}
        Some(_) => {
            if let Some(n) = validate::max_tokens(opts, "num_predict", limits)? {
                p.insert("max_tokens".into(), n.into());
            }
        }
    }
    if let Some(stop) = validate::stop(opts, "stop")? {
        p.insert("stop".into(), stop);
    }
    if let Some(seed) = opts.get("seed").filter(|v| v.is_number()) {
        p.insert("seed".into(), seed.clone());
    }
    // `think`: true, or a level (`low`, `medium`, `high`).
    let effort = match body.get("think") {
        Some(Value::Bool(true)) => Some(Value::from("medium")),
        think => validate::effort(think),
    };
    if let Some(effort) = effort {
        p.insert("reasoning_effort".into(), effort);
    }
    match body.get("format") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) if f == "json" => {
            p.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some(schema @ Value::Object(_)) => {
            p.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}),
            );
        }
        Some(Value::String(f)) if f.is_empty() => {}
        Some(_) => {
            return Err(ApiError::invalid_param(
                "format",
                "'format' must be \"json\" or a JSON schema",
            ))
        }
    }
    Ok(p)
}

/// The start of every streamed line for `model`, up to its timestamp.
pub(crate) fn line_prefix(model: &str) -> Vec<u8> {
    let mut prefix = br#"{"model":"#.to_vec();
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut prefix, model);
    prefix.extend_from_slice(br#","created_at":""#);
    prefix
}

/// One streamed piece, a chat message or a generate response, as an NDJSON
/// line written straight into `out` after the stream's `prefix`.
pub(crate) fn put_piece(out: &mut BytesMut, chat: bool, prefix: &[u8], at: SystemTime, text: &str) {
    let head: &[u8] = if chat {
        br#"","message":{"role":"assistant","content":"#
    } else {
        br#"","response":"#
    };
    put_line(out, chat, prefix, at, head, text);
}

/// One streamed piece of reasoning, as Ollama streams a thinking model's:
/// the text empty, the reasoning in `thinking` (the message's, or the
/// generate response's own).
pub(crate) fn put_thought(
    out: &mut BytesMut,
    chat: bool,
    prefix: &[u8],
    at: SystemTime,
    thinking: &str,
) {
    let head: &[u8] = if chat {
        br#"","message":{"role":"assistant","content":"","thinking":"#
    } else {
        br#"","response":"","thinking":"#
    };
    put_line(out, chat, prefix, at, head, thinking);
}

/// A streamed line: `prefix`, the time `at`, `head` up to the text, the
/// text, and the line's end.
fn put_line(
    out: &mut BytesMut,
    chat: bool,
    prefix: &[u8],
    at: SystemTime,
    head: &[u8],
    text: &str,
) {
    out.put_slice(prefix);
    write_rfc3339(out, at);
    out.put_slice(head);
    put_json_str(out, text);
    out.put_slice(if chat {
        b"},\"done\":false}\n"
    } else {
        b",\"done\":false}\n"
    });
}

/// A piece as a JSON object, the base of the last line.
fn piece(chat: bool, model: &str, created_at: &str, text: &str) -> Value {
    if chat {
        json!({"model": model, "created_at": created_at,
               "message": {"role": "assistant", "content": text}, "done": false})
    } else {
        json!({"model": model, "created_at": created_at, "response": text, "done": false})
    }
}

/// The final object: `done: true` with the reason, durations and counts.
/// For a non-streamed request it also carries the whole text and
/// reasoning (`thinking`, when there is any).
pub(crate) fn last(
    chat: bool,
    model: &str,
    created_at: &str,
    answer: &Answer,
    (text, thinking): (&str, &str),
    t: Timings,
) -> Value {
    let (prompt, completion) = answer.usage();
    let mut v = piece(chat, model, created_at, text);
    if !thinking.is_empty() {
        let at = if chat { &mut v["message"] } else { &mut v };
        at["thinking"] = json!(thinking);
    }
    if chat && !answer.tool_calls.is_empty() {
        v["message"]["tool_calls"] = Value::Array(answer.tool_calls_ollama());
    }
    let reason = match answer.finish_reason.as_deref() {
        Some("length") => "length",
        _ => "stop",
    };
    let fields = json!({
        "done": true,
        "done_reason": reason,
        "total_duration": t.total.as_nanos() as u64,
        "load_duration": t.load.as_nanos() as u64,
        "prompt_eval_count": prompt,
        "prompt_eval_duration": t.prompt_eval.as_nanos() as u64,
        "eval_count": completion,
        "eval_duration": t.eval.as_nanos() as u64,
    });
    if let (Some(v), Some(f)) = (v.as_object_mut(), fields.as_object()) {
        v.extend(f.clone());
    }
    v
}

/// The answer to a generate that only loads the model.
fn load_only(model: &str, created_at: &str) -> Value {
    json!({"model": model, "created_at": created_at, "response": "", "done": true, "done_reason": "load"})
}

pub(crate) fn embed_body(model: &str, vectors: &[Value], prompt_tokens: u64, t: Timings) -> Value {
    json!({"model": model, "embeddings": vectors,
           "total_duration": t.total.as_nanos() as u64, "load_duration": t.load.as_nanos() as u64,
           "prompt_eval_count": prompt_tokens})
}

/// Which Ollama answer a [`LineEncoder`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Chat,
    Generate,
    Embed,
    Embedding,
}

/// Ollama answers: NDJSON lines with a prefix computed once per request,
/// a final line with durations and counts, or one whole object.
struct LineEncoder {
    shape: Shape,
    model: String,
    prefix: Vec<u8>,
    load_only: bool,
}

impl LineEncoder {
    fn new(request: &ModelRequest, shape: Shape) -> Self {
        LineEncoder {
            shape,
            model: request.model.clone(),
            prefix: line_prefix(&request.model),
            load_only: request.answer_now,
        }
    }

    fn chat(&self) -> bool {
        self.shape == Shape::Chat
    }
}

impl Encoder for LineEncoder {
    fn stream_type(&self) -> &'static str {
        NDJSON
    }

    fn delta(&mut self, delta: &Delta, _: &Answer, wall: SystemTime, out: &mut BytesMut) {
        if let Some(thinking) = delta.reasoning.as_deref().filter(|t| !t.is_empty()) {
            put_thought(out, self.chat(), &self.prefix, wall, thinking);
        }
        if let Some(text) = delta.content.as_deref().filter(|t| !t.is_empty()) {
            put_piece(out, self.chat(), &self.prefix, wall, text);
        }
    }

    fn close(&mut self, end: &End, out: &mut BytesMut) {
        let created = rfc3339(end.wall);
        let line = last(
            self.chat(),
            &self.model,
            &created,
            end.answer,
            ("", ""),
            end.timings,
        );
        put_json(out, &line);
        out.put_u8(b'\n');
    }

    fn whole(&self, end: &End) -> Value {
        let created = rfc3339(end.wall);
        let (prompt, _) = end.answer.usage();
        match self.shape {
            Shape::Generate if self.load_only => load_only(&self.model, &created),
            Shape::Chat | Shape::Generate => {
                let answer = end.answer;
                last(
                    self.chat(),
                    &self.model,
                    &created,
                    answer,
                    (&answer.content, &answer.reasoning),
                    end.timings,
                )
            }
            Shape::Embed => embed_body(&self.model, end.vectors, prompt, end.timings),
            Shape::Embedding => {
                json!({"embedding": end.vectors.first().cloned().unwrap_or(Value::Array(Vec::new()))})
            }
        }
    }

    fn fail(&mut self, error: &ApiError, out: &mut BytesMut) {
        out.put_slice(&error.body(Dialect::Ollama));
        out.put_u8(b'\n');
    }
}

fn details() -> Value {
    json!({"parent_model": "", "format": "agent", "family": "agent", "families": ["agent"],
           "parameter_size": "", "quantization_level": ""})
}

fn digest(model: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(model.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One entry of `/api/tags`: named with its tag, as Ollama clients expect.
pub fn tags_entry(model: &str, modified_at: &str) -> Value {
    let model = tagged(model);
    json!({"name": model, "model": model, "modified_at": modified_at, "size": 0,
           "digest": digest(&model), "details": details()})
}

/// One entry of `/api/ps`.
pub fn ps_entry(model: &str, expires_at: &str) -> Value {
    let model = tagged(model);
    json!({"name": model, "model": model, "size": 0, "digest": digest(&model),
           "details": details(), "expires_at": expires_at, "size_vram": 0})
}

/// `/api/show`: capabilities as editors read them (Roo needs `tools`,
/// Continue enables autocomplete when the template mentions `.Suffix`).
pub fn show_body(model: &str, embedding: bool, modified_at: &str) -> Value {
    let mut capabilities = vec!["completion", "tools", "insert"];
    if embedding {
        capabilities.push("embedding");
    }
    json!({
        "license": "",
        "modelfile": format!("# Served by an agent through MCP Local Provider\nFROM {model}\n"),
        "parameters": "",
        "template": "{{ if .Suffix }}<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}<|fim_middle|>{{ else }}{{ .Prompt }}{{ end }}",
        "details": details(),
        "model_info": {
            "general.architecture": "agent",
            "general.basename": model,
            "agent.context_length": CONTEXT_LENGTH,
        },
        "capabilities": capabilities,
        "modified_at": modified_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_pieces_are_ollama_lines() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_500_000);
        let mut out = BytesMut::new();
        put_piece(&mut out, true, &line_prefix("m\"1"), at, "a\n\u{1}é");
        put_piece(&mut out, false, &line_prefix("m"), at, "");
        let text = std::str::from_utf8(&out).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(text.ends_with('\n'));
        assert_eq!(
            lines[0],
            json!({"model": "m\"1", "created_at": "1970-01-01T00:00:01.500000Z",
                   "message": {"role": "assistant", "content": "a\n\u{1}é"}, "done": false})
        );
        assert_eq!(
            lines[1],
            json!({"model": "m", "created_at": "1970-01-01T00:00:01.500000Z", "response": "", "done": false})
        );
    }

    #[test]
    fn chat_translates_options_and_tool_calls() {
        let r = parse_chat(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"},
                {"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]}],
                "options":{"temperature":0.2,"num_predict":9,"stop":["x"]},"format":"json"}"#,
            &RequestLimits::default(),
        )
        .unwrap();
        assert!(r.stream, "Ollama streams by default");
        let p = &r.payload["parameters"];
        assert_eq!(p["max_tokens"], 9);
        assert_eq!(p["response_format"]["type"], "json_object");
        assert_eq!(
            r.payload["messages"][1]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
    }

    #[test]
    fn num_predict_minus_one_means_no_limit_and_bad_options_are_named() {
        let r = parse_generate(
            br#"{"model":"m","prompt":"p","options":{"num_predict":-1}}"#,
            &RequestLimits::default(),
        )
        .unwrap();
        assert!(r.payload["parameters"].get("max_tokens").is_none());
        let e = parse_generate(
            br#"{"model":"m","prompt":"p","options":{"temperature":9}}"#,
            &RequestLimits::default(),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
    }

    #[test]
    fn show_accepts_model_or_name() {
        assert_eq!(parse_show(br#"{"model":"a"}"#).unwrap(), "a");
        assert_eq!(parse_show(br#"{"name":"b"}"#).unwrap(), "b");
        assert_eq!(parse_show(br#"{}"#).unwrap_err().status, 400);
        let body = show_body("a", false, "x");
        assert!(body["template"].as_str().unwrap().contains(".Suffix"));
        assert_eq!(body["model_info"]["agent.context_length"], CONTEXT_LENGTH);
    }

    #[test]
    fn reasoning_is_thinking_in_each_line_and_in_the_whole_answer() {
        use crate::api::testing::{answer, said, thought};
        let deltas = [thought("Let me "), thought("think."), said("Hi"), said("!")];
        let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let (stream, whole) = answer(&CHAT, &chat, &deltas);
        let lines: Vec<Value> = stream
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let message = |n: usize| &lines[n]["message"];
        assert_eq!(
            (
                message(0)["thinking"].clone(),
                message(0)["content"].clone()
            ),
            (json!("Let me "), json!(""))
        );
        assert_eq!(message(1)["thinking"], "think.");
        assert_eq!(
            (message(2)["content"].clone(), message(2).get("thinking")),
            (json!("Hi"), None)
        );
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[4]["done"], true);
        assert_eq!(whole["message"]["thinking"], "Let me think.");
        assert_eq!(whole["message"]["content"], "Hi!");
        let generate = json!({"model": "m", "prompt": "hi"});
        let (stream, whole) = answer(&GENERATE, &generate, &deltas);
        let first: Value = serde_json::from_str(stream.lines().next().unwrap()).unwrap();
        assert_eq!(
            (first["thinking"].clone(), first["response"].clone()),
            (json!("Let me "), json!(""))
        );
        assert_eq!(
            (whole["thinking"].clone(), whole["response"].clone()),
            (json!("Let me think."), json!("Hi!"))
        );
        let (_, plain) = answer(&CHAT, &chat, &[said("x")]);
        assert!(plain["message"].get("thinking").is_none());
    }
}
