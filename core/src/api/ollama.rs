//! Ollama's API: request parsing (translated to the OpenAI-shaped payload
//! agents receive) and Ollama's response shapes.

use std::time::{Duration, SystemTime};

use bytes::{BufMut, BytesMut};
use serde_json::{json, Map, Value};

use super::validate::{self, RequestLimits};
use super::{parse_object, put_json, Api, ModelRequest};
use crate::answer::Answer;
use crate::error::ApiError;
use crate::time::write_rfc3339;

/// The Ollama API version the provider answers as.
pub const COMPAT_VERSION: &str = "0.12.0";

/// Context length advertised in `/api/show`.
pub const CONTEXT_LENGTH: u64 = 131_072;

/// `POST /api/chat`.
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
    Ok(ModelRequest {
        api: Api::OllamaChat,
        model,
        stream,
        include_usage: false,
        payload: json!({"kind": "chat", "messages": messages, "parameters": parameters}),
        prompt_tokens: validate::tokens_for(text_bytes),
    })
}

/// `POST /api/generate`. An empty prompt only loads the model in Ollama; the
/// caller answers it at once (see [`is_load_only`]).
pub fn parse_generate(body: &[u8], limits: &RequestLimits) -> Result<ModelRequest, ApiError> {
    let body = parse_object(body)?;
    let model = validate::model(&body)?;
    let prompt = validate::prompt(&body, "prompt", limits)?;
    let suffix = validate::prompt(&body, "suffix", limits)?;
    let system = validate::prompt(&body, "system", limits)?;
    let mut parameters = options(&body, limits)?;
    let stream = validate::flag(&body, "stream")?.unwrap_or(true);
    parameters.insert("stream".into(), Value::Bool(stream));
    let mut payload = json!({"kind": "completion", "prompt": prompt, "parameters": parameters});
    if !suffix.is_empty() {
        payload["suffix"] = Value::String(suffix.clone());
    }
    if !system.is_empty() {
        payload["system"] = Value::String(system.clone());
    }
    Ok(ModelRequest {
        api: Api::OllamaGenerate,
        model,
        stream,
        include_usage: false,
        payload,
        prompt_tokens: validate::tokens_for(prompt.len() + suffix.len() + system.len()),
    })
}

/// Whether a generate request only asks to load the model (empty prompt).
pub fn is_load_only(request: &ModelRequest) -> bool {
    request.api == Api::OllamaGenerate
        && request.payload["prompt"]
            .as_str()
            .is_some_and(str::is_empty)
}

/// `POST /api/embed`.
pub fn parse_embed(body: &[u8]) -> Result<ModelRequest, ApiError> {
    let body = parse_object(body)?;
    let model = validate::model(&body)?;
    let (input, bytes) = validate::embedding_input(&body, "input")?;
    Ok(ModelRequest {
        api: Api::OllamaEmbed,
        model,
        stream: false,
        include_usage: false,
        payload: json!({"kind": "embedding", "input": input, "parameters": {}}),
        prompt_tokens: validate::tokens_for(bytes),
    })
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

/// Measured times of one request, for the final object's durations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timings {
    pub total: Duration,
    pub load: Duration,
    pub prompt_eval: Duration,
    pub eval: Duration,
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
pub(crate) fn put_piece(out: &mut BytesMut, api: Api, prefix: &[u8], at: SystemTime, text: &str) {
    out.put_slice(prefix);
    write_rfc3339(out, at);
    let chat = api == Api::OllamaChat;
    out.put_slice(if chat {
        br#"","message":{"role":"assistant","content":"#
    } else {
        br#"","response":"#
    });
    put_json(out, &text);
    out.put_slice(if chat {
        b"},\"done\":false}\n"
    } else {
        b",\"done\":false}\n"
    });
}

/// A piece as a JSON object, the base of the last line.
fn piece(api: Api, model: &str, created_at: &str, text: &str) -> Value {
    if api == Api::OllamaChat {
        json!({"model": model, "created_at": created_at,
               "message": {"role": "assistant", "content": text}, "done": false})
    } else {
        json!({"model": model, "created_at": created_at, "response": text, "done": false})
    }
}

/// The final object: `done: true` with the reason, durations and counts.
/// For a non-streamed request it also carries the whole text.
pub(crate) fn last(
    api: Api,
    model: &str,
    created_at: &str,
    answer: &Answer,
    text: &str,
    t: Timings,
) -> Value {
    let (prompt, completion) = answer.usage();
    let mut v = piece(api, model, created_at, text);
    if api == Api::OllamaChat && !answer.tool_calls.is_empty() {
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
pub fn load_only(model: &str, created_at: &str) -> Value {
    json!({"model": model, "created_at": created_at, "response": "", "done": true, "done_reason": "load"})
}

pub(crate) fn embed_body(model: &str, vectors: &[Value], prompt_tokens: u64, t: Timings) -> Value {
    json!({"model": model, "embeddings": vectors,
           "total_duration": t.total.as_nanos() as u64, "load_duration": t.load.as_nanos() as u64,
           "prompt_eval_count": prompt_tokens})
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

/// One entry of `/api/tags`.
pub fn tags_entry(model: &str, modified_at: &str) -> Value {
    json!({"name": model, "model": model, "modified_at": modified_at, "size": 0,
           "digest": digest(model), "details": details()})
}

/// One entry of `/api/ps`.
pub fn ps_entry(model: &str, expires_at: &str) -> Value {
    json!({"name": model, "model": model, "size": 0, "digest": digest(model),
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
        let at = std::time::UNIX_EPOCH + Duration::from_micros(1_500_000);
        let mut out = BytesMut::new();
        put_piece(
            &mut out,
            Api::OllamaChat,
            &line_prefix("m\"1"),
            at,
            "a\n\u{1}é",
        );
        put_piece(&mut out, Api::OllamaGenerate, &line_prefix("m"), at, "");
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
}
