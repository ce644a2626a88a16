//! The spans of model requests: the editor's SERVER span, the agent's
//! `invoke_agent` span and the `execute_tool` spans of an agent's calls of
//! the editor's tools, their names, attributes and parents.

use super::*;
use crate::telemetry::{Kind, Sampler, Span, SpanContext, Value as Attr, MAX_VALUE};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn traced() -> Pair {
    let mut t = Pair::new(|c| c.trace = Some(Sampler::default()));
    let mut register = register(3600);
    register["allowed_scopes"] = json!(["inference", "embedding"]);
    t.connect_agent(AGENT, register);
    t.agent_frames(AGENT);
    t
}

fn traceparent() -> String {
    format!("00-{TRACE}-{PARENT}-01")
}

fn finished(t: &mut Pair) -> Vec<Span> {
    std::iter::from_fn(|| t.p.poll_span()).collect()
}

fn named<'a>(spans: &'a [Span], prefix: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name.starts_with(prefix))
        .unwrap_or_else(|| panic!("a span named {prefix}…: {spans:#?}"))
}

fn text(span: &Span, key: &str) -> String {
    match span.get(key) {
        Some(Attr::Str(s)) => s.clone(),
        other => panic!("{key} is {other:?} on {}", span.name),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match span.get(key) {
        Some(Attr::Int(n)) => *n,
        other => panic!("{key} is {other:?} on {}", span.name),
    }
}

fn chat_traced(t: &mut Pair, conn: ConnId, stream: bool) {
    let body = json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "secret prompt"}]});
    let parent = traceparent();
    let headers = [("traceparent", parent.as_str()), ("tracestate", "k=v")];
    t.request(conn, "POST", "/v1/chat/completions", &headers, body);
}

#[test]
fn a_chat_is_a_server_span_in_the_editors_trace_with_the_agents_span_under_it() {
    let mut t = traced();
    chat_traced(&mut t, EDITOR, true);
    let invoke = t.agent_frames(AGENT).pop().expect("an invoke");
    let id = invoke["id"].as_str().unwrap().to_owned();
    // The agent is handed its span's context, in the editor's trace.
    let handed = SpanContext::parse(invoke["traceparent"].as_str().unwrap(), Some("k=v"))
        .expect("a traceparent");
    assert_eq!(handed.trace_id.to_string(), TRACE);
    assert_eq!(invoke["tracestate"], "k=v");

    t.advance_to(t.now + Duration::from_millis(5));
    t.agent(AGENT, chunk(&id, 0, "Hel", None));
    t.agent(
        AGENT,
        json!({"type": "model_stream_chunk", "id": id, "chunk_index": 1,
               "delta": {"content": "lo"}, "finish_reason": "stop",
               "usage": {"prompt_tokens": 7, "completion_tokens": 2}}),
    );
    let (status, body, ended) = t.editor(EDITOR);
    assert_eq!((status, ended), (Some(200), true));

    let spans = finished(&mut t);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let server = named(&spans, "chat m");
    assert_eq!(server.kind, Kind::Server);
    assert_eq!(server.context.trace_id.to_string(), TRACE);
    assert_eq!(
        server.parent.map(|p| p.to_string()).as_deref(),
        Some(PARENT)
    );
    assert_eq!(text(server, "gen_ai.operation.name"), "chat");
    assert_eq!(text(server, "gen_ai.request.model"), "m");
    let response_id = text(server, "gen_ai.response.id");
    assert!(response_id.starts_with("chatcmpl-"));
    assert!(String::from_utf8_lossy(&body).contains(&response_id));
    assert_eq!(
        server.get("gen_ai.response.finish_reasons"),
        Some(&Attr::Strs(vec!["stop".into()]))
    );
    assert_eq!(int(server, "gen_ai.usage.input_tokens"), 7);
    assert_eq!(int(server, "gen_ai.usage.output_tokens"), 2);
    assert_eq!(text(server, "http.request.method"), "POST");
    assert_eq!(text(server, "http.route"), "/v1/chat/completions");
    assert_eq!(int(server, "http.response.status_code"), 200);
    assert_eq!(server.error, None);
    let events: Vec<_> = server.events.iter().map(|e| e.name).collect();
    assert_eq!(events, ["gen_ai.first_chunk"]);
    assert!(server.events[0].time > server.start);

    let agent = named(&spans, "invoke_agent a");
    assert_eq!(agent.context, handed);
    assert_eq!(agent.parent, Some(server.context.span_id));
    assert_eq!(text(agent, "gen_ai.operation.name"), "invoke_agent");
    assert_eq!(text(agent, "gen_ai.agent.name"), "a");
    assert_eq!(agent.error, None);

    // Nothing of the prompt or the key in any attribute.
    for span in &spans {
        for (_, value) in &span.attributes {
            let shown = format!("{value:?}");
            assert!(
                !shown.contains("secret") && !shown.contains("key"),
                "{shown}"
            );
        }
    }
}

#[test]
fn each_api_names_its_operation_and_other_routes_get_no_span() {
    let mut t = traced();
    let cases = [
        (
            "/v1/completions",
            json!({"model": "m", "prompt": "p"}),
            "text_completion m",
        ),
        (
            "/api/generate",
            json!({"model": "m", "prompt": "p", "stream": false}),
            "text_completion m",
        ),
        (
            "/v1/embeddings",
            json!({"model": "m", "input": "p"}),
            "embeddings m",
        ),
        (
            "/v1/messages",
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "p"}]}),
            "chat m",
        ),
        (
            "/api/chat",
            json!({"model": "m", "stream": false, "messages": [{"role": "user", "content": "p"}]}),
            "chat m",
        ),
        (
            "/v1/responses",
            json!({"model": "m", "input": "p", "store": false}),
            "chat m",
        ),
    ];
    for (i, (path, body, name)) in cases.into_iter().enumerate() {
        let conn = ConnId(10 + i as u64);
        t.request(conn, "POST", path, &[], body);
        let id = t.last_invoke_id(AGENT);
        if name.starts_with("embeddings") {
            t.agent(
                AGENT,
                json!({"type": "model_result", "id": id, "status": "ok",
                       "result": {"data": [{"embedding": [0.5]}]}}),
            );
        } else {
            t.agent(AGENT, chunk(&id, 0, "x", Some("stop")));
        }
        assert_eq!(t.editor(conn).0, Some(200), "{path}");
        let spans = finished(&mut t);
        assert_eq!(spans.len(), 2, "{path}: {spans:#?}");
        let server = named(&spans, name);
        assert_eq!(text(server, "http.route"), path);
        assert!(server.parent.is_none(), "a trace of its own");
        assert!(!text(server, "gen_ai.response.id").is_empty());
    }
    t.request(ConnId(30), "GET", "/health", &[], Value::Null);
    t.request(ConnId(31), "GET", "/v1/models", &[], Value::Null);
    assert!(finished(&mut t).is_empty());
}

#[test]
fn an_error_answer_marks_the_span_failed_with_its_type() {
    let mut t = traced();
    let body = json!({"model": "nope", "messages": [{"role": "user", "content": "p"}]});
    t.request(EDITOR, "POST", "/v1/chat/completions", &[], body);
    assert_eq!(t.editor(EDITOR).0, Some(404));
    let spans = finished(&mut t);
    assert_eq!(spans.len(), 1);
    let server = named(&spans, "chat nope");
    assert_eq!(int(server, "http.response.status_code"), 404);
    assert_eq!(text(server, "error.type"), "model_not_found");
    assert!(server.error.is_some());

    // A body that cannot be read never names its operation.
    t.request(
        ConnId(2),
        "POST",
        "/v1/chat/completions",
        &[],
        json!({"model": 1}),
    );
    let spans = finished(&mut t);
    let server = named(&spans, "POST /v1/chat/completions");
    assert_eq!(int(server, "http.response.status_code"), 400);
    assert!(server.error.is_some());

    // The agent failing fails both spans.
    chat_traced(&mut t, ConnId(3), false);
    let id = t.last_invoke_id(AGENT);
    t.agent(
        AGENT,
        json!({"type": "error", "id": id, "error": {"message": "boom", "code": "timeout"}}),
    );
    assert_eq!(t.editor(ConnId(3)).0, Some(504));
    let spans = finished(&mut t);
    let agent = named(&spans, "invoke_agent");
    assert_eq!(text(agent, "error.type"), "agent_timeout");
    let server = named(&spans, "chat m");
    assert_eq!(text(server, "error.type"), "agent_timeout");
    assert_eq!(int(server, "http.response.status_code"), 504);
}

#[test]
fn an_editor_that_leaves_ends_its_span_cancelled() {
    let mut t = traced();
    chat_traced(&mut t, EDITOR, false);
    t.last_invoke_id(AGENT);
    t.advance_to(t.now + Duration::from_secs(1));
    t.p.handle_conn_closed(EDITOR, t.now);
    t.drain();
    let spans = finished(&mut t);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let server = named(&spans, "chat m");
    assert_eq!(text(server, "error.type"), "cancelled");
    assert_eq!(int(server, "http.response.status_code"), 499);
    assert_eq!(
        server.end.duration_since(server.start).unwrap(),
        Duration::from_secs(1)
    );
    assert_eq!(
        text(named(&spans, "invoke_agent"), "error.type"),
        "cancelled"
    );
}

#[test]
fn a_background_response_span_ends_with_its_answer() {
    let mut t = traced();
    let body = json!({"model": "m", "input": "go", "background": true});
    let parent = traceparent();
    t.request(
        EDITOR,
        "POST",
        "/v1/responses",
        &[("traceparent", &parent)],
        body,
    );
    assert_eq!(t.editor(EDITOR).0, Some(200));
    let id = t.last_invoke_id(AGENT);
    assert!(finished(&mut t).is_empty(), "the answer runs on");
    t.advance_to(t.now + Duration::from_secs(2));
    t.agent(AGENT, chunk(&id, 0, "done", Some("stop")));
    let spans = finished(&mut t);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let server = named(&spans, "chat m");
    assert_eq!(server.context.trace_id.to_string(), TRACE);
    assert!(text(server, "gen_ai.response.id").starts_with("resp_"));
    assert_eq!(
        server.end.duration_since(server.start).unwrap(),
        Duration::from_secs(2)
    );
    assert_eq!(server.error, None);
}

/// The answer on `conn` makes a call of the editor's tool `lookup`.
fn call_tool(t: &mut Pair, conn: ConnId, call: &str) {
    chat_traced(t, conn, false);
    let id = t.last_invoke_id(AGENT);
    t.agent(
        AGENT,
        json!({"type": "model_stream_chunk", "id": id, "chunk_index": 0,
               "delta": {"tool_calls": [{"index": 0, "id": call, "type": "function",
                         "function": {"name": "lookup", "arguments": "{\"q\":\"secret\"}"}}]},
               "finish_reason": "tool_calls"}),
    );
    assert_eq!(t.editor(conn).0, Some(200));
}

#[test]
fn a_tool_call_handed_to_the_editor_is_a_span_until_its_result_comes() {
    let mut t = traced();
    call_tool(&mut t, EDITOR, "call_7");
    let first = finished(&mut t);
    let agent = named(&first, "invoke_agent").context.clone();
    assert_eq!(
        named(&first, "chat m").get("gen_ai.response.finish_reasons"),
        Some(&Attr::Strs(vec!["tool_calls".into()]))
    );
    assert!(!first.iter().any(|s| s.name.starts_with("execute_tool")));

    t.advance_to(t.now + Duration::from_secs(3));
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": "p"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_7", "type": "function",
            "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_7", "content": "found"}]});
    t.request(ConnId(2), "POST", "/v1/chat/completions", &[], body);
    let spans = finished(&mut t);
    let tool = named(&spans, "execute_tool lookup");
    assert_eq!(tool.kind, Kind::Internal);
    assert_eq!(tool.parent, Some(agent.span_id));
    assert_eq!(tool.context.trace_id, agent.trace_id);
    assert_eq!(text(tool, "gen_ai.operation.name"), "execute_tool");
    assert_eq!(text(tool, "gen_ai.tool.name"), "lookup");
    assert_eq!(text(tool, "gen_ai.tool.call.id"), "call_7");
    assert_eq!(tool.error, None);
    assert_eq!(
        tool.end.duration_since(tool.start).unwrap(),
        Duration::from_secs(3)
    );
}

#[test]
fn a_tool_call_whose_result_never_comes_ends_as_timeout() {
    let mut t = traced();
    call_tool(&mut t, EDITOR, "call_9");
    finished(&mut t);
    let due = t.p.poll_timeout().expect("a wake-up");
    assert!(due <= t.now + tool_spans::TOOL_WAIT);
    t.advance_to(t.now + tool_spans::TOOL_WAIT);
    let spans = finished(&mut t);
    let tool = named(&spans, "execute_tool lookup");
    assert_eq!(text(tool, "error.type"), "timeout");
}

#[test]
fn open_tool_spans_are_bounded_the_oldest_abandoned() {
    let mut t = traced();
    let mut tools = Vec::new();
    for i in 0..=tool_spans::MAX_OPEN {
        call_tool(&mut t, ConnId(1000 + i as u64), &format!("call_{i}"));
        let spans = finished(&mut t);
        tools.extend(
            spans
                .into_iter()
                .filter(|s| s.name.starts_with("execute_tool")),
        );
    }
    assert_eq!(tools.len(), 1);
    assert_eq!(text(&tools[0], "gen_ai.tool.call.id"), "call_0");
    assert_eq!(text(&tools[0], "error.type"), "abandoned");
}

#[test]
fn tracing_off_starts_nothing_and_hands_the_agent_no_context() {
    let mut t = Pair::new(|_| {});
    t.connect_agent(AGENT, register(3600));
    t.agent_frames(AGENT);
    chat_traced(&mut t, EDITOR, false);
    let invoke = t.agent_frames(AGENT).pop().expect("an invoke");
    assert!(invoke.get("traceparent").is_none());
    let id = invoke["id"].as_str().unwrap().to_owned();
    t.agent(AGENT, chunk(&id, 0, "x", Some("stop")));
    assert!(t.p.poll_span().is_none());
}

/// A traced provider whose spans carry content.
fn capturing() -> Pair {
    let mut t = Pair::new(|c| {
        c.trace = Some(Sampler::default());
        c.trace_content = true;
    });
    t.connect_agent(AGENT, register(3600));
    t.agent_frames(AGENT);
    t
}

#[test]
fn with_content_captured_the_span_carries_the_prompt_and_the_answer_but_no_key() {
    let mut t = capturing();
    let body = json!({"model": "m", "stream": true, "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "secret prompt"}]});
    let parent = traceparent();
    t.request(
        EDITOR,
        "POST",
        "/v1/chat/completions",
        &[("traceparent", parent.as_str())],
        body,
    );
    let id = t.last_invoke_id(AGENT);
    t.agent(AGENT, chunk(&id, 0, "Hel", None));
    t.agent(
        AGENT,
        json!({"type": "model_stream_chunk", "id": id, "chunk_index": 1,
               "delta": {"content": "lo", "tool_calls": [{"index": 0, "id": "call_3",
                   "function": {"name": "lookup", "arguments": "{\"q\":1}"}}]},
               "finish_reason": "tool_calls"}),
    );
    assert_eq!(t.editor(EDITOR).0, Some(200));
    let spans = finished(&mut t);
    let server = named(&spans, "chat m");
    let json = |key| serde_json::from_str::<Value>(&text(server, key)).expect(key);
    assert_eq!(
        json("gen_ai.input.messages"),
        json!([{"role": "user", "parts": [{"type": "text", "content": "secret prompt"}]}])
    );
    assert_eq!(
        json("gen_ai.system_instructions"),
        json!([{"type": "text", "content": "Be terse."}])
    );
    assert_eq!(
        json("gen_ai.output.messages"),
        json!([{"role": "assistant", "finish_reason": "tool_calls", "parts": [
            {"type": "text", "content": "Hello"},
            {"type": "tool_call", "id": "call_3", "name": "lookup", "arguments": {"q": 1}}]}])
    );
    // The editor's key (`Bearer key`) is in no attribute.
    for span in &spans {
        for (_, value) in &span.attributes {
            assert!(!format!("{value:?}").contains("Bearer"), "{value:?}");
        }
    }
}

#[test]
fn captured_content_is_held_to_the_attribute_bound() {
    let mut t = capturing();
    let long = "z".repeat(64 * 1024);
    let body = json!({"model": "m", "stream": false, "messages": [
        {"role": "user", "content": long}, {"role": "user", "content": long}]});
    t.request(EDITOR, "POST", "/v1/chat/completions", &[], body);
    let id = t.last_invoke_id(AGENT);
    for i in 0..40 {
        t.agent(AGENT, chunk(&id, i, &"w".repeat(1000), None));
    }
    t.agent(AGENT, chunk(&id, 40, "", Some("length")));
    assert_eq!(t.editor(EDITOR).0, Some(200));
    let spans = finished(&mut t);
    let server = named(&spans, "chat m");
    for key in ["gen_ai.input.messages", "gen_ai.output.messages"] {
        let value = text(server, key);
        assert!(value.len() <= MAX_VALUE, "{key}: {}", value.len());
        serde_json::from_str::<Value>(&value).expect(key);
    }
}

#[test]
fn without_content_capture_no_content_attribute_is_set() {
    let mut t = traced();
    chat_traced(&mut t, EDITOR, false);
    let id = t.last_invoke_id(AGENT);
    t.agent(AGENT, chunk(&id, 0, "answer", Some("stop")));
    assert_eq!(t.editor(EDITOR).0, Some(200));
    let spans = finished(&mut t);
    let server = named(&spans, "chat m");
    for key in [
        "gen_ai.input.messages",
        "gen_ai.system_instructions",
        "gen_ai.output.messages",
    ] {
        assert_eq!(server.get(key), None, "{key}");
    }
}
