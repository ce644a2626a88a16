//! The JSON-RPC messages of a run and the checks of their answers: an
//! `echo` call must come back with its own id and its own message.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};

/// The protocol revision asked for in `initialize`.
pub const PROTOCOL_VERSION: &str = "2025-06-18";

/// The `initialize` request, as a client sends it.
pub fn initialize(id: u64) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "bridgegen", "version": "1"},
        },
    })
    .to_string()
}

/// The notification that ends the handshake.
pub const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// A `tools/call` request.
pub fn tool_call(id: u64, tool: &str, arguments: Value) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    })
    .to_string()
}

/// A `tools/call` of the echo tool (`echo`, or its name on the aggregate
/// endpoint) with `message`, written into `out`.
pub fn echo_call(out: &mut String, tool: &str, id: u64, message: &str) {
    use std::fmt::Write;
    out.clear();
    let message = Value::from(message);
    let _ = write!(
        out,
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"message":{message}}}}}}}"#
    );
}

/// The message each echo call of a run carries: whose it is and which,
/// padded with text to `bytes` when it is shorter.
pub fn echo_message(out: &mut String, client: usize, call: u64, bytes: usize) {
    use std::fmt::Write;
    out.clear();
    let _ = write!(out, "client {client} call {call}");
    // Text as a file holds it: words, a quote and a line break to escape.
    let filler = " lorem \"ipsum\" dolor\n";
    while out.len() < bytes {
        let room = bytes - out.len();
        out.push_str(filler.get(..room.min(filler.len())).unwrap_or_default());
    }
}

/// What routes a line from the child: the id of a response (a line with
/// no `method`), or `None` for a notification, a request of the child's
/// own, or a line that is not JSON-RPC.
pub fn response_id(line: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct Routing {
        #[serde(default)]
        id: Option<Value>,
        #[serde(default)]
        method: Option<IgnoredAny>,
    }
    let r: Routing = serde_json::from_str(line).ok()?;
    if r.method.is_some() {
        return None;
    }
    r.id?.as_u64()
}

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default, borrow)]
    result: Option<CallResult<'a>>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct CallResult<'a> {
    #[serde(default, borrow)]
    content: Vec<Content<'a>>,
    #[serde(default, rename = "isError")]
    is_error: bool,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

/// Checks the answer to echo call `id` of `message`: it must be that id's
/// result, not an error, and carry `Echo: {message}` as its first text.
pub fn check_echo(answer: &str, id: u64, message: &str) -> Result<(), String> {
    let a: Answer = serde_json::from_str(answer).map_err(|e| bad(e, answer))?;
    if a.id.as_ref().and_then(Value::as_u64) != Some(id) {
        return Err(format!(
            "answer to another call (wanted id {id}): {}",
            cut(answer)
        ));
    }
    if let Some(error) = a.error {
        return Err(format!("JSON-RPC error: {error}"));
    }
    let Some(result) = a.result else {
        return Err(format!("no result: {}", cut(answer)));
    };
    if result.is_error {
        return Err(format!("tool error: {}", cut(answer)));
    }
    let text = result.content.first().and_then(|c| c.text.as_deref());
    match text.and_then(|t| t.strip_prefix("Echo: ")) {
        Some(echoed) if echoed == message => Ok(()),
        _ => Err(format!("wrong echo for {message:?}: {}", cut(answer))),
    }
}

/// The result of request `id` from its answer, or the error it got.
pub fn result_of(answer: &str, id: u64) -> Result<Value, String> {
    let v: Value = serde_json::from_str(answer).map_err(|e| bad(e, answer))?;
    if v["id"].as_u64() != Some(id) {
        return Err(format!(
            "answer to another call (wanted id {id}): {}",
            cut(answer)
        ));
    }
    if !v["error"].is_null() {
        return Err(format!("JSON-RPC error: {}", v["error"]));
    }
    match v.get("result") {
        Some(result) => Ok(result.clone()),
        None => Err(format!("no result: {}", cut(answer))),
    }
}

/// The JSON-RPC answer in an HTTP answer's body: the body itself when it
/// is JSON, or, for an event stream, the `data` of the first event that
/// is a response (has an `id` and no `method`).
pub fn answer_in_body<'a>(body: &'a str, content_type: &str) -> Result<&'a str, String> {
    if !content_type.starts_with("text/event-stream") {
        return Ok(body);
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .find(|data| response_id(data).is_some())
        .ok_or_else(|| format!("no answer in the event stream: {}", cut(body)))
}

fn bad(e: serde_json::Error, text: &str) -> String {
    format!("unparsable answer ({e}): {}", cut(text))
}

fn cut(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_calls_are_json_rpc_with_the_message_escaped() {
        let mut out = String::new();
        echo_call(&mut out, "echo", 7, "say \"hi\"\n");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["method"], "tools/call");
        assert_eq!(v["params"]["name"], "echo");
        assert_eq!(v["params"]["arguments"]["message"], "say \"hi\"\n");
        let v: Value = serde_json::from_str(&tool_call(3, "t", json!({"a": 1}))).unwrap();
        assert_eq!(
            (v["id"].clone(), v["params"]["arguments"]["a"].clone()),
            (json!(3), json!(1))
        );
        let v: Value = serde_json::from_str(&initialize(1)).unwrap();
        assert_eq!(v["params"]["protocolVersion"], PROTOCOL_VERSION);
        echo_message(&mut out, 3, 41, 0);
        assert_eq!(out, "client 3 call 41");
        echo_message(&mut out, 3, 41, 100);
        assert_eq!(out.len(), 100);
        assert!(
            out.starts_with("client 3 call 41 lorem \"ipsum\" dolor\n"),
            "{out}"
        );
    }

    #[test]
    fn an_echo_must_be_this_calls_own() {
        let ok = r#"{"id":5,"jsonrpc":"2.0","result":{"content":[{"text":"Echo: client 1 call 2","type":"text"}]}}"#;
        assert_eq!(check_echo(ok, 5, "client 1 call 2"), Ok(()));
        // Another client's message, another call's id.
        assert!(check_echo(ok, 5, "client 2 call 2")
            .unwrap_err()
            .contains("wrong echo"));
        assert!(check_echo(ok, 6, "client 1 call 2")
            .unwrap_err()
            .contains("another call"));
        let escaped = r#"{"id":1,"result":{"content":[{"type":"text","text":"Echo: a\"b"}]}}"#;
        assert_eq!(check_echo(escaped, 1, "a\"b"), Ok(()));
        let error =
            r#"{"id":5,"jsonrpc":"2.0","error":{"code":-32000,"message":"the server exited"}}"#;
        assert!(check_echo(error, 5, "x").unwrap_err().contains("-32000"));
        let tool_error =
            r#"{"id":5,"result":{"content":[{"type":"text","text":"Echo: x"}],"isError":true}}"#;
        assert!(check_echo(tool_error, 5, "x").is_err());
        assert!(check_echo(r#"{"id":5,"result":{}}"#, 5, "x").is_err());
        assert!(check_echo("<html>", 5, "x")
            .unwrap_err()
            .contains("unparsable"));
    }

    #[test]
    fn only_responses_are_routed_by_id() {
        assert_eq!(
            response_id(r#"{"jsonrpc":"2.0","id":12,"result":{}}"#),
            Some(12)
        );
        assert_eq!(
            response_id(r#"{"jsonrpc":"2.0","id":3,"error":{"code":1}}"#),
            Some(3)
        );
        // The child's own request, a notification, a string id, noise.
        assert_eq!(
            response_id(r#"{"jsonrpc":"2.0","id":4,"method":"roots/list"}"#),
            None
        );
        assert_eq!(
            response_id(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#),
            None
        );
        assert_eq!(response_id(r#"{"id":"a","result":{}}"#), None);
        assert_eq!(response_id("debug: starting"), None);
    }

    #[test]
    fn results_and_answers_in_event_streams() {
        assert_eq!(
            result_of(r#"{"id":2,"result":{"a":1}}"#, 2),
            Ok(json!({"a": 1}))
        );
        assert!(result_of(r#"{"id":2,"error":{"code":-32000}}"#, 2).is_err());
        assert!(result_of(r#"{"id":3,"result":{}}"#, 2).is_err());
        let json_body = r#"{"id":1,"result":{}}"#;
        assert_eq!(answer_in_body(json_body, "application/json"), Ok(json_body));
        let sse =
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                   id: 2\nevent: message\ndata: {\"id\":1,\"result\":{}}\n\n";
        assert_eq!(
            answer_in_body(sse, "text/event-stream"),
            Ok(r#"{"id":1,"result":{}}"#)
        );
        assert!(answer_in_body(": keep-alive\n\n", "text/event-stream").is_err());
    }
}
