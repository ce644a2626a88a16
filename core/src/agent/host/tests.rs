use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

fn agent(sampling: bool) -> HostAgent {
    let mut agent = HostAgent::new(HostPlan {
        model: "host".into(),
        sampling,
    });
    let register: Value = serde_json::from_str(&agent.poll_provider().unwrap()).unwrap();
    assert_eq!(register["models"], json!(["host"]));
    agent
}

fn send(agent: &mut HostAgent, message: Value, now: Instant) {
    agent.handle_host_bytes(format!("{message}\n").as_bytes(), now);
}

fn host_out(agent: &mut HostAgent) -> Vec<Value> {
    std::iter::from_fn(|| agent.poll_host())
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect()
}

fn provider_out(agent: &mut HostAgent) -> Vec<Value> {
    std::iter::from_fn(|| agent.poll_provider())
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect()
}

fn invoke(id: &str, text: &str) -> String {
    json!({"type": "model_invoke", "id": id, "session_id": "s",
           "payload": {"kind": "chat", "messages": [{"role": "user", "content": text}],
                       "parameters": {"stream": true, "max_tokens": 50}}})
    .to_string()
}

fn call(id: u64, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": name, "arguments": arguments}})
}

#[test]
fn both_generations_are_answered() {
    let now = Instant::now();
    let mut a = agent(false);
    send(
        &mut a,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}}}),
        now,
    );
    send(
        &mut a,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        now,
    );
    let meta = json!({"_meta": {mcp::PROTOCOL_VERSION_META: "2026-07-28"}});
    send(
        &mut a,
        json!({"jsonrpc": "2.0", "id": 2, "method": "server/discover", "params": meta}),
        now,
    );
    send(
        &mut a,
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": meta}),
        now,
    );
    let old = json!({"_meta": {mcp::PROTOCOL_VERSION_META: "2099-01-01"}});
    send(
        &mut a,
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": old}),
        now,
    );
    send(
        &mut a,
        json!({"jsonrpc": "2.0", "id": 5, "method": "resources/list"}),
        now,
    );
    a.handle_host_bytes(b"not json\n", now);
    let out = host_out(&mut a);
    assert_eq!(out[0]["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(out[1]["result"]["supportedVersions"][4], "2026-07-28");
    let names: Vec<_> = out[2]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, [json!("next_request"), json!("respond")]);
    assert_eq!(out[3]["error"]["code"], mcp::UNSUPPORTED_PROTOCOL_VERSION);
    assert_eq!(out[4]["error"]["code"], mcp::METHOD_NOT_FOUND);
    assert_eq!(out[5]["error"]["code"], mcp::PARSE_ERROR);
    assert_eq!(out.len(), 6);
}

#[test]
fn a_held_next_request_takes_the_next_invoke_and_respond_streams_it() {
    let now = Instant::now();
    let mut a = agent(false);
    send(&mut a, call(7, "next_request", json!({})), now);
    assert!(host_out(&mut a).is_empty(), "held until a request comes");
    a.handle_provider_message(&invoke("inv-1", "Hello host"));
    let taken = host_out(&mut a);
    assert_eq!(taken[0]["id"], 7);
    let request = &taken[0]["result"]["structuredContent"];
    assert_eq!(request["request_id"], "inv-1");
    assert_eq!(request["messages"][0]["content"], "Hello host");
    assert!(taken[0]["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("inv-1"));

    send(
        &mut a,
        call(
            8,
            "respond",
            json!({"request_id": "inv-1", "text": "Hi ", "final": false}),
        ),
        now,
    );
    send(
        &mut a,
        call(
            9,
            "respond",
            json!({"request_id": "inv-1", "text": "there"}),
        ),
        now,
    );
    send(
        &mut a,
        call(
            10,
            "respond",
            json!({"request_id": "inv-1", "text": "late"}),
        ),
        now,
    );
    let chunks = provider_out(&mut a);
    assert_eq!(chunks.len(), 2);
    assert_eq!(
        chunks[0]["delta"],
        json!({"role": "assistant", "content": "Hi "})
    );
    assert_eq!(chunks[0]["finish_reason"], Value::Null);
    assert_eq!(
        (
            chunks[1]["chunk_index"].clone(),
            chunks[1]["finish_reason"].clone()
        ),
        (json!(1), json!("stop"))
    );
    let replies = host_out(&mut a);
    assert_eq!(replies[2]["result"]["isError"], true);
}

#[test]
fn requests_wait_for_the_host_and_a_poll_times_out_empty() {
    let now = Instant::now();
    let mut a = agent(false);
    a.handle_provider_message(&invoke("inv-1", "first"));
    a.handle_provider_message(&invoke("inv-2", "second"));
    a.handle_provider_message(r#"{"type":"cancel","id":"inv-1"}"#);
    send(&mut a, call(1, "next_request", json!({})), now);
    assert_eq!(
        host_out(&mut a)[0]["result"]["structuredContent"]["request_id"],
        "inv-2"
    );

    send(
        &mut a,
        call(2, "next_request", json!({"wait_seconds": 2})),
        now,
    );
    assert_eq!(a.poll_timeout(), Some(now + Duration::from_secs(2)));
    a.handle_timeout(now + Duration::from_secs(2));
    let empty = host_out(&mut a);
    assert_eq!(empty[0]["id"], 2);
    assert!(empty[0]["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("No editor request"));
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn a_wait_of_any_size_is_capped_and_each_ends_in_its_own_time() {
    let now = Instant::now();
    let mut a = agent(false);
    for (id, wait) in [
        (1, json!(1e300)),
        (2, json!(f64::MAX)),
        (3, json!(-1)),
        (4, json!("5")),
    ] {
        send(
            &mut a,
            call(id, "next_request", json!({"wait_seconds": wait})),
            now,
        );
    }
    // The two it could not read wait the default, the huge ones the most;
    // those ending first are answered though they came last.
    assert_eq!(a.poll_timeout(), Some(now + DEFAULT_WAIT));
    a.handle_timeout(now + DEFAULT_WAIT);
    assert_eq!(host_out(&mut a).len(), 2);
    assert_eq!(a.poll_timeout(), Some(now + MAX_WAIT));
}

#[test]
fn tool_calls_finish_with_tool_calls() {
    let now = Instant::now();
    let mut a = agent(false);
    a.handle_provider_message(&invoke("inv-1", "weather?"));
    send(&mut a, call(1, "next_request", json!({})), now);
    send(
        &mut a,
        call(
            2,
            "respond",
            json!({"request_id": "inv-1",
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}),
        ),
        now,
    );
    let chunk = provider_out(&mut a).pop().unwrap();
    assert_eq!(chunk["finish_reason"], "tool_calls");
    assert_eq!(
        chunk["delta"]["tool_calls"][0]["function"],
        json!({"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"})
    );
}

#[test]
fn sampling_mode_forwards_requests_to_a_host_that_samples() {
    let now = Instant::now();
    let mut a = agent(true);
    send(
        &mut a,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                        "params": {"protocolVersion": "2025-11-25", "capabilities": {"sampling": {}}}}),
        now,
    );
    host_out(&mut a);
    a.handle_provider_message(
        &json!({"type": "model_invoke", "id": "inv-1", "session_id": "s",
        "payload": {"kind": "chat", "messages": [{"role": "system", "content": "Be brief."},
                                                  {"role": "user", "content": "Hi"}],
                    "parameters": {"max_tokens": 20}}})
        .to_string(),
    );
    let request = host_out(&mut a).pop().unwrap();
    assert_eq!(request["method"], "sampling/createMessage");
    assert_eq!(request["params"]["systemPrompt"], "Be brief.");
    assert_eq!(request["params"]["maxTokens"], 20);
    let id = request["id"].clone();
    send(
        &mut a,
        json!({"jsonrpc": "2.0", "id": id, "result": {"role": "assistant",
        "content": {"type": "text", "text": "Hello!"}, "model": "m", "stopReason": "endTurn"}}),
        now,
    );
    let chunk = provider_out(&mut a).pop().unwrap();
    assert_eq!(chunk["delta"]["content"], "Hello!");
    assert_eq!(chunk["finish_reason"], "stop");
}
