//! Checks shared by every API: message lists, sampling numbers, sizes.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Caps on what one request may contain. Generous by default: coding
/// agents send long histories and whole files.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_messages: usize,
    pub max_message_bytes: usize,
    pub max_tokens: u64,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_messages: 2000,
            max_message_bytes: 1024 * 1024,
            max_tokens: 1_000_000,
        }
    }
}

const ROLES: [&str; 6] = [
    "system",
    "user",
    "assistant",
    "tool",
    "developer",
    "function",
];

/// The `model` field: a non-empty string.
pub(super) fn model(body: &Map<String, Value>) -> Result<String, ApiError> {
    match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Ok(m.clone()),
        Some(Value::String(_)) | None => Err(ApiError::invalid_param(
            "model",
            "you must provide a model parameter",
        )),
        Some(_) => Err(ApiError::invalid_param("model", "'model' must be a string")),
    }
}

/// An optional boolean field.
pub(super) fn flag(body: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::invalid_param(
            name,
            format!("'{name}' must be a boolean"),
        )),
    }
}

/// An optional number within `[min, max]`.
pub(super) fn number_in(
    body: &Map<String, Value>,
    name: &str,
    min: f64,
    max: f64,
) -> Result<Option<f64>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if (min..=max).contains(&x) {
                Ok(Some(x))
            } else {
                Err(ApiError::invalid_param(
                    name,
                    format!("'{name}' must be between {min} and {max}, got {x}"),
                ))
            }
        }
        Some(_) => Err(ApiError::invalid_param(
            name,
            format!("'{name}' must be a number"),
        )),
    }
}

/// An optional positive integer no larger than the configured cap.
pub(super) fn max_tokens(
    body: &Map<String, Value>,
    name: &str,
    limits: &RequestLimits,
) -> Result<Option<u64>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v >= 1 && v <= limits.max_tokens => Ok(Some(v)),
            _ => Err(ApiError::invalid_param(
                name,
                format!(
                    "'{name}' must be an integer from 1 to {}, got {n}",
                    limits.max_tokens
                ),
            )),
        },
        Some(_) => Err(ApiError::invalid_param(
            name,
            format!("'{name}' must be an integer"),
        )),
    }
}

/// `stop`: a string or an array of strings.
pub(super) fn stop(body: &Map<String, Value>, name: &str) -> Result<Option<Value>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::String(_)) => Ok(Some(v.clone())),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            Ok(Some(Value::Array(items.clone())))
        }
        Some(_) => Err(ApiError::invalid_param(
            name,
            format!("'{name}' must be a string or an array of strings"),
        )),
    }
}

/// `tools`: an array of `{type: "function", function: {name, …}}`.
pub(super) fn tools(body: &Map<String, Value>) -> Result<Option<Value>, ApiError> {
    let Some(tools) = body.get("tools").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(items) = tools.as_array() else {
        return Err(ApiError::invalid_param("tools", "'tools' must be an array"));
    };
    for (i, tool) in items.iter().enumerate() {
        if !tool["function"]["name"].is_string() {
            return Err(ApiError::invalid_param(
                &format!("tools[{i}].function.name"),
                format!("tools[{i}] must have a function with a string name"),
            ));
        }
        schema(
            &tool["function"]["parameters"],
            &format!("tools[{i}].function.parameters"),
        )?;
    }
    Ok(Some(tools.clone()))
}

/// A tool's input schema, where `param` names it: absent, or a JSON Schema
/// object for an object (what a model's call of the tool sends, and what
/// MCP requires of a tool's `inputSchema`).
pub(super) fn schema(schema: &Value, param: &str) -> Result<(), ApiError> {
    let fine = match schema {
        Value::Null => true,
        Value::Object(o) => {
            o.get("type").is_none_or(|t| t == "object")
                && o.get("properties").is_none_or(Value::is_object)
        }
        _ => false,
    };
    if fine {
        return Ok(());
    }
    Err(ApiError::invalid_param(
        param,
        format!("{param} must be a JSON Schema object describing an object (\"type\": \"object\")"),
    ))
}

/// The tool results of a chat (in chat shape, whatever the API): each
/// answers a call an earlier assistant message made, and no call is
/// answered twice. Results without a call id (Ollama's) answer by their
/// order and are not checked.
pub fn tool_results(payload: &Value) -> Result<(), ApiError> {
    let messages = payload["messages"].as_array().map(Vec::as_slice);
    let mut called: HashSet<&str> = HashSet::new();
    let mut answered: HashSet<&str> = HashSet::new();
    for message in messages.unwrap_or_default() {
        let calls = message["tool_calls"].as_array().into_iter().flatten();
        called.extend(calls.filter_map(|c| c["id"].as_str()));
        let Some(id) = message["tool_call_id"]
            .as_str()
            .filter(|_| message["role"] == "tool")
        else {
            continue;
        };
        if !called.contains(&id) {
            return Err(ApiError::invalid_param(
                "messages",
                format!("a tool result answers the call `{id}`, which no earlier assistant message made"),
            ));
        }
        if !answered.insert(id) {
            return Err(ApiError::invalid_param(
                "messages",
                format!("the call `{id}` has more than one tool result"),
            ));
        }
    }
    Ok(())
}

/// The `messages` array: present, not empty, within the caps, each with a
/// known role and a string, array or null content. Returns the total size
/// of the text for token estimates.
pub(super) fn messages(
    body: &Map<String, Value>,
    limits: &RequestLimits,
) -> Result<usize, ApiError> {
    let messages = match body.get("messages") {
        Some(Value::Array(m)) => m,
        None => {
            return Err(ApiError::invalid_param(
                "messages",
                "'messages' is a required property",
            ))
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                "messages",
                "'messages' must be an array",
            ))
        }
    };
    if messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "'messages' must not be empty",
        ));
    }
    if messages.len() > limits.max_messages {
        return Err(ApiError::invalid_param(
            "messages",
            format!(
                "too many messages: {} (at most {})",
                messages.len(),
                limits.max_messages
            ),
        ));
    }
    let mut total = 0;
    for (i, m) in messages.iter().enumerate() {
        let param = |field: &str| format!("messages[{i}].{field}");
        let Some(m) = m.as_object() else {
            return Err(ApiError::invalid_param(
                &format!("messages[{i}]"),
                "each message must be an object",
            ));
        };
        match m.get("role").and_then(Value::as_str) {
            Some(role) if ROLES.contains(&role) => {}
            Some(role) => {
                return Err(ApiError::invalid_param(
                    &param("role"),
                    format!(
                        "invalid role '{role}': expected one of {}",
                        ROLES.join(", ")
                    ),
                ))
            }
            None => {
                return Err(ApiError::invalid_param(
                    &param("role"),
                    "each message needs a string 'role'",
                ))
            }
        }
        let size = match m.get("content") {
            None | Some(Value::Null) => 0,
            Some(Value::String(s)) => s.len(),
            Some(Value::Array(parts)) => parts
                .iter()
                .map(|p| {
                    p.as_str()
                        .or_else(|| p["text"].as_str())
                        .map_or(0, str::len)
                })
                .sum(),
            Some(_) => {
                return Err(ApiError::invalid_param(
                    &param("content"),
                    "content must be a string, an array of parts, or null",
                ))
            }
        };
        if size > limits.max_message_bytes {
            return Err(ApiError::invalid_param(
                &param("content"),
                format!(
                    "message content is {size} bytes, more than the {} allowed",
                    limits.max_message_bytes
                ),
            ));
        }
        total += size;
    }
    Ok(total)
}

/// A prompt: a string or an array of strings (the first is used).
pub(super) fn prompt(
    body: &Map<String, Value>,
    name: &str,
    limits: &RequestLimits,
) -> Result<String, ApiError> {
    let text = match body.get(name) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        Some(_) => {
            return Err(ApiError::invalid_param(
                name,
                format!("'{name}' must be a string"),
            ))
        }
    };
    if text.len() > limits.max_message_bytes {
        return Err(ApiError::invalid_param(
            name,
            format!(
                "'{name}' is {} bytes, more than the {} allowed",
                text.len(),
                limits.max_message_bytes
            ),
        ));
    }
    Ok(text)
}

/// Embedding input: a string or an array of strings.
pub(super) fn embedding_input(
    body: &Map<String, Value>,
    name: &str,
) -> Result<(Value, usize), ApiError> {
    match body.get(name) {
        Some(Value::String(s)) => Ok((Value::String(s.clone()), s.len())),
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => {
            let size = items.iter().filter_map(Value::as_str).map(str::len).sum();
            Ok((Value::Array(items.clone()), size))
        }
        None => Err(ApiError::invalid_param(
            name,
            format!("'{name}' is a required property"),
        )),
        Some(_) => Err(ApiError::invalid_param(
            name,
            format!("'{name}' must be a string or a non-empty array of strings"),
        )),
    }
}

/// The longest reasoning effort passed on (`low`, `medium`, `high`… are
/// short; anything longer is not one).
const MAX_EFFORT: usize = 32;

/// A reasoning effort an editor asked for, passed on to the agent as the
/// request's `reasoning_effort` when it is a short string.
pub fn effort(value: Option<&Value>) -> Option<Value> {
    let effort = value?.as_str()?;
    (!effort.is_empty() && effort.len() <= MAX_EFFORT).then(|| Value::from(effort))
}

/// The effort a thinking budget of `tokens` comes to (Anthropic's
/// `thinking.budget_tokens`; its minimum is 1,024).
pub fn effort_of_budget(tokens: u64) -> &'static str {
    match tokens {
        0..4096 => "low",
        4096..16384 => "medium",
        _ => "high",
    }
}

/// Tokens for a text of `bytes` bytes, at about four per token.
pub fn tokens_for(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tool_schema_describes_an_object_or_is_absent() {
        for fine in [
            json!(null),
            json!({}),
            json!({"type": "object", "properties": {"a": {"type": "string"}}}),
        ] {
            assert!(schema(&fine, "p").is_ok(), "{fine}");
        }
        for bad in [
            json!("x"),
            json!([]),
            json!({"type": "string"}),
            json!({"type": "object", "properties": []}),
        ] {
            let e = schema(&bad, "tools[0].input_schema").unwrap_err();
            assert_eq!(e.param.as_deref(), Some("tools[0].input_schema"));
            assert!(e.message.contains("tools[0].input_schema"));
        }
    }

    #[test]
    fn each_tool_result_answers_one_earlier_call_once() {
        let call =
            json!({"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}});
        let chat = |results: Value| {
            let mut messages = vec![
                json!({"role": "user", "content": "x"}),
                json!({"role": "assistant", "content": null, "tool_calls": [call.clone()]}),
            ];
            messages.extend(results.as_array().unwrap().iter().cloned());
            json!({"kind": "chat", "messages": messages})
        };
        let result = |id: &str| json!({"role": "tool", "tool_call_id": id, "content": "r"});
        assert!(tool_results(&chat(json!([result("c1")]))).is_ok());
        assert!(tool_results(&chat(json!([{"role": "tool", "content": "r"}]))).is_ok());
        let unknown = tool_results(&chat(json!([result("c2")]))).unwrap_err();
        assert!(unknown.message.contains("`c2`"), "{}", unknown.message);
        let twice = tool_results(&chat(json!([result("c1"), result("c1")]))).unwrap_err();
        assert!(twice.message.contains("more than one"), "{}", twice.message);
        let before = json!({"kind": "chat", "messages": [result("c1"), {"role": "assistant", "tool_calls": [call]}]});
        assert!(tool_results(&before).is_err());
    }
}
