use std::borrow::Cow;

use serde_json::{json, Value};

use super::*;

fn parsed(text: Option<String>) -> Value {
    serde_json::from_str(&text.expect("an attribute")).expect("JSON")
}

#[test]
fn chat_messages_become_the_conventions_parts_the_system_apart() {
    let payload = json!({"kind": "chat", "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]});
    let (system, messages) = input(&payload);
    assert_eq!(
        parsed(system),
        json!([{"type": "text", "content": "Be terse."}])
    );
    assert_eq!(
        parsed(messages),
        json!([
            {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
            {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1",
                "name": "weather", "arguments": {"city": "Paris"}}]},
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1",
                "response": "sunny"}]},
        ])
    );
}

#[test]
fn a_completion_is_one_user_message_and_an_embedding_nothing() {
    let (system, messages) =
        input(&json!({"kind": "completion", "prompt": "def add(a, b):", "system": "Python"}));
    assert_eq!(
        parsed(system),
        json!([{"type": "text", "content": "Python"}])
    );
    assert_eq!(
        parsed(messages),
        json!([{"role": "user", "parts": [{"type": "text", "content": "def add(a, b):"}]}])
    );
    assert_eq!(
        input(&json!({"kind": "embedding", "input": ["a", "b"]})),
        (None, None)
    );
}

#[test]
fn a_huge_conversation_is_held_to_the_bound_while_it_is_read() {
    let long = "x".repeat(10 * MAX_VALUE);
    let turns: Vec<Value> = (0..1000)
        .map(|_| json!({"role": "user", "content": long}))
        .collect();
    let (_, messages) = input(&json!({"kind": "chat", "messages": turns}));
    let messages = messages.expect("messages");
    assert!(messages.len() <= MAX_VALUE, "{}", messages.len());
    // Cut inside the text, so still JSON: the first message, its text cut.
    let parsed: Value = serde_json::from_str(&messages).expect("JSON");
    let list = parsed.as_array().expect("an array");
    assert_eq!(list.len(), 1);
    let content = list[0]["parts"][0]["content"].as_str().unwrap();
    assert!(content.len() > MAX_VALUE / 2 && content.len() < MAX_VALUE);
}

fn delta(content: Option<&str>, calls: Option<Value>) -> Delta<'static> {
    Delta {
        content: content.map(|c| Cow::Owned(c.to_owned())),
        reasoning: None,
        tool_calls: calls.map(|c| serde_json::from_value(c).unwrap()),
    }
}

#[test]
fn an_answer_gathers_its_text_and_tool_calls_as_they_stream() {
    let mut answer = Answer::default();
    answer.add(&delta(Some("Let me "), None));
    answer.add(&delta(Some("look."), None));
    answer.add(&delta(
        None,
        Some(json!([{"index": 0, "id": "call_2", "function": {"name": "lookup", "arguments": "{\"q\":"}}])),
    ));
    answer.add(&delta(
        None,
        Some(json!([{"index": 0, "function": {"arguments": "\"rust\"}"}}])),
    ));
    let messages: Value = serde_json::from_str(&answer.messages(Some("tool_calls"))).unwrap();
    assert_eq!(
        messages,
        json!([{"role": "assistant", "finish_reason": "tool_calls", "parts": [
            {"type": "text", "content": "Let me look."},
            {"type": "tool_call", "id": "call_2", "name": "lookup", "arguments": {"q": "rust"}},
        ]}])
    );
}

#[test]
fn an_answer_stops_gathering_past_the_bound() {
    let mut answer = Answer::default();
    let piece = "y".repeat(1000);
    for _ in 0..100 {
        answer.add(&delta(Some(&piece), None));
    }
    assert!(answer.text.len() <= MAX_VALUE && answer.text.len() > MAX_VALUE - 1000);
    assert!(answer.text.capacity() <= 2 * MAX_VALUE);
    let messages = answer.messages(Some("stop"));
    assert!(messages.len() <= MAX_VALUE, "{}", messages.len());
    let parsed: Value = serde_json::from_str(&messages).expect("JSON");
    assert_eq!(parsed[0]["finish_reason"], "stop");
}
