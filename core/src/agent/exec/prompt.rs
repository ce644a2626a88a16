//! A chat turned into the one prompt a CLI agent takes.
//!
//! A lone user message (with or without a system message) is passed as its
//! text, so a CLI sees exactly what the editor's user typed. A longer
//! conversation is written out as a transcript the CLI can read: the system
//! text first, then each turn under its speaker, tool calls and results
//! included.

use serde_json::Value;

use crate::agent::echo::text_of;

/// The prompt for an invocation's payload.
pub fn render(payload: &Value) -> String {
    if payload["kind"] == "completion" {
        return text_of(&payload["prompt"]);
    }
    let messages = payload["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let (system, turns): (Vec<&Value>, Vec<&Value>) = messages
        .iter()
        .partition(|m| m["role"] == "system" || m["role"] == "developer");
    let system = system
        .iter()
        .map(|m| text_of(&m["content"]))
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    let mut parts = Vec::new();
    if !system.is_empty() {
        parts.push(system);
    }
    match turns.as_slice() {
        [only] if only["role"] == "user" => parts.push(text_of(&only["content"])),
        turns => parts.extend(turns.iter().map(|m| turn(m))),
    }
    parts.join("\n\n")
}

/// One message of a transcript, under its speaker.
fn turn(message: &Value) -> String {
    let text = text_of(&message["content"]);
    match message["role"].as_str() {
        Some("assistant") => {
            let mut out = format!("Assistant: {text}");
            for call in message["tool_calls"].as_array().into_iter().flatten() {
                let function = &call["function"];
                out.push_str(&format!(
                    "\n[called tool {} with {}]",
                    function["name"].as_str().unwrap_or("?"),
                    function["arguments"].as_str().unwrap_or("{}")
                ));
            }
            out
        }
        Some("tool") => format!(
            "Tool result ({}): {text}",
            message["tool_call_id"].as_str().unwrap_or("?")
        ),
        _ => format!("User: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_lone_user_message_is_passed_as_typed() {
        let payload =
            json!({"kind": "chat", "messages": [{"role": "user", "content": "Fix the bug"}]});
        assert_eq!(render(&payload), "Fix the bug");
        let payload = json!({"kind": "chat", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Fix it"}]}]});
        assert_eq!(render(&payload), "Be brief.\n\nFix it");
        let payload = json!({"kind": "completion", "prompt": "def f("});
        assert_eq!(render(&payload), "def f(");
    }

    #[test]
    fn a_conversation_becomes_a_transcript() {
        let payload = json!({"kind": "chat", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "rain"},
            {"role": "user", "content": "So?"}]});
        assert_eq!(
            render(&payload),
            "Be brief.\n\nUser: Weather?\n\nAssistant: \n[called tool weather with {\"city\":\"Oslo\"}]\n\nTool result (c1): rain\n\nUser: So?"
        );
    }
}
