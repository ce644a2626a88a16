//! Many editor tools in an ACP session: its relay lists `search_tools` and
//! `call_tool`, a call through `call_tool` is the editor's call of the tool
//! it names, and what one turn found is still listed in the next.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::super::*;
use super::{frames, reply, request_of, update, with_tools, written};
use crate::agent::exec::tool_search::chat_tools;

fn invoke_many(agent: &mut AcpAgent, id: &str, messages: &Value, now: Instant) {
    let frame = json!({"type": "model_invoke", "id": id,
                       "payload": {"kind": "chat", "messages": messages,
                                   "parameters": {"tools": chat_tools(40)}}});
    agent.handle_message(&frame.to_string(), now);
}

/// Lines to the relay on `link`, and what it answered.
fn relay(agent: &mut AcpAgent, link: LinkId, lines: &[Value], now: Instant) -> Vec<Value> {
    let bytes: String = lines.iter().map(|l| format!("{l}\n")).collect();
    agent.handle_link(link, bytes.as_bytes(), now);
    std::iter::from_fn(|| agent.poll_link())
        .filter_map(|out| match out {
            LinkOutput::Send(_, line) => serde_json::from_str(&line).ok(),
            LinkOutput::Close(_) => None,
        })
        .collect()
}

fn list(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})
}

fn names(listed: &Value) -> Vec<&str> {
    let tools = listed["result"]["tools"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    tools.iter().filter_map(|t| t["name"].as_str()).collect()
}

#[test]
fn a_session_given_many_tools_searches_them_and_calls_one_through_call_tool() {
    let now = Instant::now();
    let plan = AcpPlan {
        editor_tools: EditorTools::Mcp,
        ..with_tools()
    };
    let mut agent = AcpAgent::new(plan, "acp", now);
    written(&mut agent);
    reply(&mut agent, 0, &json!(0), json!({"protocolVersion": 1}), now);
    reply(&mut agent, 0, &json!(1), json!({"sessionId": "s0"}), now);
    let question = json!([{"role": "user", "content": "Open an issue"}]);
    invoke_many(&mut agent, "inv-1", &question, now);
    let new = request_of(&written(&mut agent), "session/new");
    reply(&mut agent, 0, &new["id"], json!({"sessionId": "s1"}), now);
    let secret = json!({"secret": new["params"]["mcpServers"][0]["args"][0]});
    let link = LinkId(1);
    let listed = relay(&mut agent, link, &[secret, list(1)], now);
    assert_eq!(names(&listed[0]), ["search_tools", "call_tool"]);
    agent.handle_timeout(now + LIST_SETTLE);
    let prompt = request_of(&written(&mut agent), "session/prompt");
    frames(&mut agent);

    let search = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                        "params": {"name": "search_tools", "arguments": {"query": "create an issue", "limit": 1}}});
    let answered = relay(&mut agent, link, &[search], now);
    assert_eq!(
        answered[0]["result"]["structuredContent"]["tools"][0]["name"],
        "create_issue"
    );
    assert_eq!(answered[1]["method"], "notifications/tools/list_changed");
    assert!(
        frames(&mut agent).is_empty(),
        "the editor hears nothing of a search"
    );
    update(
        &mut agent,
        0,
        "s1",
        "agent_message_chunk",
        "Which title?",
        now,
    );
    reply(
        &mut agent,
        0,
        &prompt["id"],
        json!({"stopReason": "end_turn"}),
        now,
    );
    frames(&mut agent);
    // Between turns, and in the conversation's next turn, what the
    // session found is listed.
    assert_eq!(
        names(&relay(&mut agent, link, &[list(3)], now)[0])[2..],
        ["create_issue"]
    );
    let mut messages = question.as_array().cloned().unwrap_or_default();
    messages.push(json!({"role": "assistant", "content": "Which title?"}));
    messages.push(json!({"role": "user", "content": "Crash"}));
    let next = now + LIST_SETTLE;
    invoke_many(&mut agent, "inv-2", &json!(messages), next);
    let prompt = request_of(&written(&mut agent), "session/prompt");
    assert_eq!(prompt["params"]["sessionId"], "s1");
    assert_eq!(
        names(&relay(&mut agent, link, &[list(4)], next)[0])[2..],
        ["create_issue"]
    );

    // A call through call_tool is the editor's call of the tool it names.
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                      "params": {"name": "call_tool",
                                 "arguments": {"name": "create_issue", "arguments": {"title": "Crash"}}}});
    assert!(relay(&mut agent, link, &[call], next).is_empty());
    agent.handle_timeout(next + Duration::from_secs(1));
    let out = frames(&mut agent);
    let calls = out
        .iter()
        .find_map(|f| f["delta"]["tool_calls"].as_array().cloned())
        .unwrap_or_default();
    assert_eq!(calls.len(), 1, "{out:?}");
    assert_eq!(calls[0]["function"]["name"], "create_issue");
    assert_eq!(calls[0]["function"]["arguments"], r#"{"title":"Crash"}"#);
    // The editor's result answers the call_tool call, unchanged.
    messages.push(json!({"role": "assistant", "content": "", "tool_calls": calls}));
    messages.push(json!({"role": "tool", "tool_call_id": calls[0]["id"], "content": "Issue #1"}));
    let later = next + Duration::from_secs(2);
    invoke_many(&mut agent, "inv-3", &json!(messages), later);
    let answered = relay(&mut agent, link, &[], later);
    assert_eq!(answered[0]["id"], 5);
    assert_eq!(answered[0]["result"]["content"][0]["text"], "Issue #1");
}
