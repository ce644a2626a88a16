//! The bridge's spans, driven through a whole bridge with a tracer on: what
//! each span is named and holds, whose child it is, and what the server is
//! sent.

use std::time::SystemTime;

use bytes::Bytes;
use serde_json::{json, Value};

use super::super::registry::Routed;
use super::super::rig::Rig;
use super::super::{BridgeOutput, ChildId, Limits, ServerSpec};
use crate::provider::Output;
use crate::telemetry::{Kind, Sampler, Span, SpanContext, Tracer, Value as Attr};

const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn traced(rig: Rig) -> Rig {
    let mut rig = rig;
    *rig.bridge.tracer_mut() = Tracer::new(Some(Sampler::default()), 9, rig.now, SystemTime::now());
    rig
}

fn spans(rig: &mut Rig) -> Vec<Span> {
    std::iter::from_fn(|| rig.bridge.poll_span()).collect()
}

fn text(span: &Span, key: &str) -> String {
    match span.get(key) {
        Some(Attr::Str(s)) => s.clone(),
        other => panic!("{key}: {other:?} in {span:?}"),
    }
}

fn one(spans: &[Span], kind: Kind) -> &Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.kind == kind).collect();
    match found[..] {
        [span] => span,
        _ => panic!("one {kind:?} span, not {spans:?}"),
    }
}

/// A POST of `body` to `path` with `headers`, on a new connection.
fn post(rig: &mut Rig, path: &str, headers: &[(&str, &str)], body: Value) -> Vec<Output> {
    let headers = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    rig.request("POST", path, headers, Bytes::from(body.to_string()))
        .1
}

fn call(id: Value, meta: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "echo", "arguments": {"text": "hi"}, "_meta": meta}})
}

#[test]
fn a_call_is_a_server_span_and_what_the_server_is_sent_its_client_span() {
    let mut rig = traced(Rig::new());
    let session = rig.session();
    spans(&mut rig);
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("traceparent", PARENT),
    ];
    let meta = json!({"progressToken": "p1", "vendor/x": 1});
    post(&mut rig, "/mcp/echo", &headers, call(json!("c1"), meta));
    let sent = rig.child.last().unwrap().clone();
    // The client's other `_meta` stays; the trace context is the CLIENT span's.
    assert_eq!(sent["params"]["_meta"]["vendor/x"], 1);
    assert!(sent["params"]["_meta"]["progressToken"].is_number());
    let carried = SpanContext::from_meta(&sent["params"]["_meta"]).unwrap();
    assert!(spans(&mut rig).is_empty(), "nothing ends before the answer");
    rig.child_says(json!({"jsonrpc": "2.0", "id": sent["id"], "result": {"content": []}}));
    let done = spans(&mut rig);
    assert_eq!(done.len(), 2);
    let server = one(&done, Kind::Server);
    let client = one(&done, Kind::Client);
    let asked = SpanContext::parse(PARENT, None).unwrap();
    assert_eq!(server.context.trace_id, asked.trace_id);
    assert_eq!(server.parent, Some(asked.span_id));
    assert_eq!(client.parent, Some(server.context.span_id));
    assert_eq!(client.context, carried);
    for span in [server, client] {
        assert_eq!(span.name, "tools/call echo");
        assert_eq!(text(span, "mcp.method.name"), "tools/call");
        assert_eq!(text(span, "gen_ai.tool.name"), "echo");
        assert_eq!(text(span, "gen_ai.operation.name"), "execute_tool");
        assert_eq!(span.error, None);
    }
    assert_eq!(text(server, "jsonrpc.request.id"), "c1");
    assert_eq!(text(server, "mcp.session.id"), session);
    assert_eq!(text(server, "network.transport"), "tcp");
    assert_eq!(text(client, "jsonrpc.request.id"), sent["id"].to_string());
    assert_eq!(text(client, "network.transport"), "pipe");
    assert_eq!(text(client, "mcp.protocol.version"), "2025-06-18");
}

#[test]
fn without_a_header_the_requests_own_meta_traceparent_is_the_parent() {
    let mut rig = traced(Rig::new());
    let session = rig.session();
    let headers = [("mcp-session-id", session.as_str())];
    let meta = json!({"traceparent": PARENT, "tracestate": "k=v"});
    post(&mut rig, "/mcp/echo", &headers, call(json!(5), meta));
    let sent = rig.child.last().unwrap().clone();
    let carried = SpanContext::from_meta(&sent["params"]["_meta"]).unwrap();
    assert_ne!(sent["params"]["_meta"]["traceparent"], PARENT, "replaced");
    assert_eq!(carried.state.as_deref(), Some("k=v"), "the state passes on");
    rig.child_says(json!({"jsonrpc": "2.0", "id": sent["id"], "result": {}}));
    let done = spans(&mut rig);
    let server = done
        .iter()
        .find(|s| s.name == "tools/call echo" && s.kind == Kind::Server);
    let asked = SpanContext::parse(PARENT, None).unwrap();
    assert_eq!(server.and_then(|s| s.parent), Some(asked.span_id));
    assert_eq!(carried.trace_id, asked.trace_id);
}

#[test]
fn with_tracing_off_the_server_is_sent_the_bytes_it_always_was() {
    let mut rig = Rig::new();
    let session = rig.session();
    let params =
        json!({"name": "echo", "arguments": {"b": 2, "a": [1]}, "_meta": {"traceparent": PARENT}});
    let body = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": params});
    let headers = vec![
        ("mcp-session-id".to_owned(), session),
        ("traceparent".to_owned(), PARENT.to_owned()),
    ];
    let request =
        crate::http::Request::new("POST", "/mcp/echo", headers, Bytes::from(body.to_string()))
            .unwrap();
    rig.bridge
        .handle_request(crate::provider::ConnId(99), request, rig.now);
    let mut lines = Vec::new();
    while let Some(routed) = rig.bridge.poll_output() {
        if let Routed::Child {
            action: BridgeOutput::ToChild { line, .. },
            ..
        } = routed
        {
            lines.push(line);
        }
    }
    let id: Value = serde_json::from_str::<Value>(&lines[0]).unwrap()["id"].clone();
    assert_eq!(lines, [crate::mcp::request(&id, "tools/call", params)]);
    assert!(rig.bridge.poll_span().is_none());
}

#[test]
fn an_error_or_a_tool_error_fails_both_spans() {
    let mut rig = traced(Rig::new());
    let session = rig.session();
    let headers = [("mcp-session-id", session.as_str())];
    post(&mut rig, "/mcp/echo", &headers, call(json!(1), json!({})));
    let sent = rig.child.last().unwrap()["id"].clone();
    rig.child_says(
        json!({"jsonrpc": "2.0", "id": sent, "error": {"code": -32602, "message": "no such tool"}}),
    );
    post(&mut rig, "/mcp/echo", &headers, call(json!(2), json!({})));
    let sent = rig.child.last().unwrap()["id"].clone();
    rig.child_says(
        json!({"jsonrpc": "2.0", "id": sent, "result": {"content": [], "isError": true}}),
    );
    let done: Vec<Span> = spans(&mut rig)
        .into_iter()
        .filter(|s| s.name == "tools/call echo")
        .collect();
    assert_eq!(done.len(), 4);
    let kinds: Vec<String> = done.iter().map(|s| text(s, "error.type")).collect();
    assert_eq!(kinds, ["-32602", "-32602", "tool_error", "tool_error"]);
    assert_eq!(done[0].error.as_deref(), Some("no such tool"));
    assert!(done.iter().all(|s| s.error.is_some()));
}

#[test]
fn a_call_whose_client_left_ends_failed() {
    let mut rig = traced(Rig::new());
    let session = rig.session();
    spans(&mut rig);
    let headers = vec![("mcp-session-id".to_owned(), session)];
    let body = Bytes::from(call(json!(3), json!({})).to_string());
    let (conn, _) = rig.request("POST", "/mcp/echo", headers, body);
    rig.bridge.handle_conn_closed(conn, rig.now);
    rig.drain();
    let done = spans(&mut rig);
    assert_eq!(text(one(&done, Kind::Server), "error.type"), "-32000");
    assert_eq!(text(one(&done, Kind::Client), "error.type"), "cancelled");
}

#[test]
fn a_request_over_http_and_sse_ends_when_its_answer_goes_down_the_stream() {
    let mut rig = traced(Rig::new());
    let (_, out) = rig.request("GET", "/mcp/echo/sse", vec![], Bytes::new());
    let greeting = out
        .iter()
        .find_map(|o| match o {
            Output::Data { data, .. } => Some(String::from_utf8_lossy(data).into_owned()),
            _ => None,
        })
        .unwrap();
    let endpoint = greeting
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap()
        .to_owned();
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    post(&mut rig, &endpoint, &[("traceparent", PARENT)], ping);
    rig.child_initializes();
    let sent = rig.last_to(ChildId(1));
    assert_eq!(sent["method"], "ping");
    assert!(SpanContext::from_meta(&sent["params"]["_meta"]).is_some());
    assert!(spans(&mut rig).iter().all(|s| s.kind != Kind::Server));
    rig.answers(ChildId(1), json!({}));
    let done = spans(&mut rig);
    let server = one(&done, Kind::Server);
    assert_eq!(server.name, "ping");
    assert_eq!(
        one(&done, Kind::Client).parent,
        Some(server.context.span_id)
    );
    let session = endpoint.split("session_id=").nth(1).unwrap();
    assert_eq!(text(server, "mcp.session.id"), session);
}

#[test]
fn a_listing_of_every_server_at_mcp_has_a_client_span_per_server_asked() {
    let specs = ["files", "git"]
        .map(|name| ServerSpec::new(name, vec![format!("{name}-mcp")]))
        .to_vec();
    let mut rig = traced(Rig::of(specs, Limits::default()));
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let out = post(&mut rig, "/mcp", &[], init);
    let session = match &out[..] {
        [Output::Respond { response, .. }] => response.header("mcp-session-id").unwrap().to_owned(),
        other => panic!("{other:?}"),
    };
    spans(&mut rig);
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("traceparent", PARENT),
    ];
    post(&mut rig, "/mcp", &headers, list);
    let children: Vec<ChildId> = rig.bridge.children().map(|(id, _)| id).collect();
    assert_eq!(children.len(), 2);
    for child in &children {
        rig.initializes(*child);
    }
    for child in &children {
        assert_eq!(rig.last_to(*child)["method"], "tools/list");
        rig.answers(*child, json!({"tools": []}));
    }
    let done = spans(&mut rig);
    let server = one(&done, Kind::Server);
    assert_eq!(server.name, "tools/list");
    let clients: Vec<&Span> = done.iter().filter(|s| s.kind == Kind::Client).collect();
    assert_eq!(clients.len(), 2);
    assert!(clients
        .iter()
        .all(|c| c.parent == Some(server.context.span_id)));
    assert_eq!(
        server.context.trace_id,
        SpanContext::parse(PARENT, None).unwrap().trace_id
    );
}

#[test]
fn an_openapi_operation_is_a_server_span_over_its_listing_and_its_call() {
    let spec = ServerSpec::new("echo", vec!["echo-mcp".into()]);
    let mut rig = traced(Rig::of(vec![spec], Limits::default()));
    let headers = [("traceparent", PARENT)];
    post(&mut rig, "/tools/echo/say", &headers, json!({"text": "hi"}));
    let child = ChildId(1);
    rig.initializes(child);
    let listed = rig.last_to(child);
    assert_eq!(listed["method"], "tools/list");
    rig.answers(child, json!({"tools": [{"name": "say"}]}));
    let called = rig.last_to(child);
    assert_eq!(called["method"], "tools/call");
    assert_eq!(called["params"]["arguments"], json!({"text": "hi"}));
    rig.answers(child, json!({"content": [{"type": "text", "text": "hi"}]}));
    let done = spans(&mut rig);
    let server = one(&done, Kind::Server);
    assert_eq!(server.name, "tools/call say");
    assert_eq!(text(server, "gen_ai.tool.name"), "say");
    let asked = SpanContext::parse(PARENT, None).unwrap();
    assert_eq!(server.context.trace_id, asked.trace_id);
    assert_eq!(server.parent, Some(asked.span_id));
    // The listing read first and the call: each a CLIENT span under it,
    // each the context its server was sent.
    let clients: Vec<&Span> = done.iter().filter(|s| s.kind == Kind::Client).collect();
    let names: Vec<&str> = clients.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["tools/list", "tools/call say"]);
    assert!(clients
        .iter()
        .all(|c| c.parent == Some(server.context.span_id)));
    for (sent, span) in [(&listed, clients[0]), (&called, clients[1])] {
        let carried = SpanContext::from_meta(&sent["params"]["_meta"]).unwrap();
        assert_eq!(carried.span_id, span.context.span_id);
    }
}

#[test]
fn an_openapi_document_is_a_server_span_over_every_listing() {
    let spec = ServerSpec::new("echo", vec!["echo-mcp".into()]);
    let mut rig = traced(Rig::of(vec![spec], Limits::default()));
    let headers = vec![("traceparent".to_owned(), PARENT.to_owned())];
    rig.request("GET", "/openapi.json", headers, Bytes::new());
    rig.initializes(ChildId(1));
    rig.answers(ChildId(1), json!({"tools": [{"name": "say"}]}));
    let done = spans(&mut rig);
    let server = one(&done, Kind::Server);
    assert_eq!(server.name, "tools/list");
    assert_eq!(
        one(&done, Kind::Client).parent,
        Some(server.context.span_id)
    );
}

/// A traced rig whose spans carry content.
fn capturing(rig: Rig) -> Rig {
    let mut rig = traced(rig);
    let tracer = rig.bridge.tracer_mut();
    *tracer = std::mem::replace(tracer, Tracer::off()).capturing_content(true);
    rig
}

#[test]
fn with_content_captured_a_calls_span_carries_its_arguments_and_result() {
    let mut rig = capturing(Rig::new());
    let session = rig.session();
    spans(&mut rig);
    let headers = [("mcp-session-id", session.as_str())];
    post(&mut rig, "/mcp/echo", &headers, call(json!(4), json!({})));
    let sent = rig.child.last().unwrap()["id"].clone();
    let result = json!({"content": [{"type": "text", "text": "hi back"}]});
    rig.child_says(json!({"jsonrpc": "2.0", "id": sent, "result": result}));
    let done = spans(&mut rig);
    let server = one(&done, Kind::Server);
    let json = |key| serde_json::from_str::<Value>(&text(server, key)).unwrap();
    assert_eq!(json("gen_ai.tool.call.arguments"), json!({"text": "hi"}));
    assert_eq!(json("gen_ai.tool.call.result"), result);
    // The CLIENT span holds no content, and a listing none either.
    let client = one(&done, Kind::Client);
    assert_eq!(client.get("gen_ai.tool.call.arguments"), None);
    assert_eq!(client.get("gen_ai.tool.call.result"), None);
}

#[test]
fn captured_arguments_and_results_are_cut_to_the_bound() {
    let mut rig = capturing(Rig::new());
    let session = rig.session();
    spans(&mut rig);
    let headers = [("mcp-session-id", session.as_str())];
    let long = "q".repeat(64 * 1024);
    let body = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": long}}});
    post(&mut rig, "/mcp/echo", &headers, body);
    let sent = rig.child.last().unwrap()["id"].clone();
    let result = json!({"content": [{"type": "text", "text": long}]});
    rig.child_says(json!({"jsonrpc": "2.0", "id": sent, "result": result}));
    let done = spans(&mut rig);
    let server = one(&done, Kind::Server);
    for key in ["gen_ai.tool.call.arguments", "gen_ai.tool.call.result"] {
        let value = text(server, key);
        assert!(
            value.len() <= crate::telemetry::MAX_VALUE && value.len() > 1024,
            "{key}: {}",
            value.len()
        );
    }
}

#[test]
fn an_error_answer_has_no_result_and_without_capture_nothing_is_captured() {
    let mut rig = capturing(Rig::new());
    let session = rig.session();
    spans(&mut rig);
    let headers = [("mcp-session-id", session.as_str())];
    post(&mut rig, "/mcp/echo", &headers, call(json!(7), json!({})));
    let sent = rig.child.last().unwrap()["id"].clone();
    rig.child_says(
        json!({"jsonrpc": "2.0", "id": sent, "error": {"code": -32602, "message": "bad"}}),
    );
    let done = spans(&mut rig);
    let server = one(&done, Kind::Server);
    assert!(server.get("gen_ai.tool.call.arguments").is_some());
    assert_eq!(server.get("gen_ai.tool.call.result"), None);

    let mut rig = traced(Rig::new());
    let session = rig.session();
    spans(&mut rig);
    let headers = [("mcp-session-id", session.as_str())];
    post(&mut rig, "/mcp/echo", &headers, call(json!(8), json!({})));
    let sent = rig.child.last().unwrap()["id"].clone();
    rig.child_says(json!({"jsonrpc": "2.0", "id": sent, "result": {"content": []}}));
    let done = spans(&mut rig);
    let server = one(&done, Kind::Server);
    assert_eq!(server.get("gen_ai.tool.call.arguments"), None);
    assert_eq!(server.get("gen_ai.tool.call.result"), None);
}

#[test]
fn an_openapi_operation_captures_its_arguments_and_result_too() {
    let spec = ServerSpec::new("echo", vec!["echo-mcp".into()]);
    let mut rig = capturing(Rig::of(vec![spec], Limits::default()));
    post(&mut rig, "/tools/echo/say", &[], json!({"text": "hi"}));
    let child = ChildId(1);
    rig.initializes(child);
    rig.answers(child, json!({"tools": [{"name": "say"}]}));
    let result = json!({"content": [{"type": "text", "text": "said"}]});
    rig.answers(child, result.clone());
    let done = spans(&mut rig);
    let server = one(&done, Kind::Server);
    let json = |key| serde_json::from_str::<Value>(&text(server, key)).unwrap();
    assert_eq!(json("gen_ai.tool.call.arguments"), json!({"text": "hi"}));
    assert!(text(server, "gen_ai.tool.call.result").contains("said"));
}
