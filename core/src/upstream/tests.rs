//! The client of a remote MCP server against scripted HTTP answers.

use super::*;
use crate::http::Headers;
use serde_json::json;

fn remote(transport: Transport) -> Remote {
    Remote {
        url: Url::parse("http://127.0.0.1:7000/mcp").unwrap(),
        headers: vec![("x-api-key".into(), "k1".into())],
        transport,
        ca_file: None,
    }
}

struct Sent {
    id: ExchangeId,
    request: Outgoing,
    streaming: bool,
}

impl Sent {
    fn header(&self, name: &str) -> Option<&str> {
        self.request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    fn body(&self) -> Value {
        serde_json::from_slice(&self.request.body).unwrap()
    }
}

#[derive(Default)]
struct Drained {
    sent: Vec<Sent>,
    lines: Vec<Value>,
    aborted: Vec<ExchangeId>,
    gone: Vec<String>,
    unauthorized: Vec<Option<String>>,
    sessionless: bool,
    status: Vec<Status>,
    wake: Vec<Instant>,
}

fn drain(up: &mut Upstream) -> Drained {
    let mut d = Drained::default();
    while let Some(output) = up.poll_output() {
        match output {
            UpstreamOutput::Send {
                id,
                request,
                streaming,
            } => d.sent.push(Sent {
                id,
                request,
                streaming,
            }),
            UpstreamOutput::Line(line) | UpstreamOutput::Answer(line, _) => {
                d.lines.push(serde_json::from_str(&line).unwrap())
            }
            UpstreamOutput::Abort(id) => d.aborted.push(id),
            UpstreamOutput::Sessionless => d.sessionless = true,
            UpstreamOutput::Status(status) => d.status.push(status),
            UpstreamOutput::Gone(why) => d.gone.push(why),
            UpstreamOutput::Unauthorized { challenge, .. } => d.unauthorized.push(challenge),
            UpstreamOutput::WakeAt(at) => d.wake.push(at),
        }
    }
    d
}

fn head(status: u16, fields: &[(&str, &str)]) -> ResponseHead {
    let mut headers = Headers::default();
    for (name, value) in fields {
        headers.push(name, value);
    }
    ResponseHead { status, headers }
}

/// Answers exchange `id` with a whole response.
fn answer(up: &mut Upstream, id: ExchangeId, head: ResponseHead, body: &str, now: Instant) {
    up.handle_head(id, &head, now);
    up.handle_data(id, &Bytes::copy_from_slice(body.as_bytes()));
    up.handle_end(id, now);
}

fn json(status: u16) -> ResponseHead {
    head(status, &[("content-type", "application/json")])
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bridge","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// An upstream that was just handed the bridge's `initialize`, and the
/// exchange that carries it.
fn initializing(transport: Transport, now: Instant) -> (Upstream, Sent) {
    let mut up = Upstream::new("r", remote(transport));
    up.send(INIT.into(), now);
    let sent = drain(&mut up).sent.remove(0);
    (up, sent)
}

/// A session made: initialize answered with a session id, initialized
/// sent. Returns the listening stream's exchange.
fn session(up: &mut Upstream, now: Instant) -> ExchangeId {
    up.send(INIT.into(), now);
    let d = drain(up);
    assert_eq!(d.sent.len(), 1);
    let init = &d.sent[0];
    assert_eq!(init.request.method, "POST");
    assert_eq!(init.header("mcp-session-id"), None);
    assert_eq!(init.header("x-api-key"), Some("k1"));
    assert_eq!(
        init.header("accept"),
        Some("application/json, text/event-stream")
    );
    answer(
        up,
        init.id,
        head(
            200,
            &[
                ("content-type", "application/json"),
                ("mcp-session-id", "S1"),
            ],
        ),
        r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"r","version":"1"}}}"#,
        now,
    );
    let d = drain(up);
    assert!(!d.sessionless);
    assert_eq!(d.status, [Status::Connected]);
    assert_eq!(d.lines.len(), 1);
    assert_eq!(d.lines[0]["result"]["protocolVersion"], "2025-06-18");
    up.send(INITIALIZED.into(), now);
    let d = drain(up);
    assert_eq!(d.sent.len(), 2, "the notification and the listening stream");
    assert_eq!(d.sent[0].header("mcp-session-id"), Some("S1"));
    assert_eq!(d.sent[0].header("mcp-protocol-version"), Some("2025-06-18"));
    answer(up, d.sent[0].id, json(202), "", now);
    let listen = &d.sent[1];
    assert_eq!(listen.request.method, "GET");
    assert!(listen.streaming);
    assert_eq!(listen.header("mcp-session-id"), Some("S1"));
    assert!(drain(up).lines.is_empty());
    listen.id
}

#[test]
fn a_session_is_made_and_calls_go_in_it() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    let listen = session(&mut up, now);
    up.handle_head(
        listen,
        &head(200, &[("content-type", "text/event-stream")]),
        now,
    );
    up.send(
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"count"}}"#.into(),
        now,
    );
    let d = drain(&mut up);
    let call = &d.sent[0];
    assert_eq!(call.header("mcp-session-id"), Some("S1"));
    assert_eq!(call.body()["params"]["name"], "count");
    // The answer streams: a progress notification, then the result, split
    // anywhere.
    up.handle_head(
        call.id,
        &head(200, &[("content-type", "text/event-stream")]),
        now,
    );
    let stream = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[]}}\n\n";
    for piece in stream.as_bytes().chunks(7) {
        up.handle_data(call.id, &Bytes::copy_from_slice(piece));
    }
    up.handle_end(call.id, now);
    let d = drain(&mut up);
    assert_eq!(d.lines.len(), 2);
    assert_eq!(d.lines[0]["method"], "notifications/progress");
    assert_eq!(d.lines[1]["id"], 2);
    // The server's own request on the listening stream reaches the bridge.
    up.handle_data(
        listen,
        &Bytes::from_static(b"data: {\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"sampling/createMessage\",\"params\":{}}\n\n"),
    );
    assert_eq!(drain(&mut up).lines[0]["method"], "sampling/createMessage");
}

#[test]
fn a_server_that_loses_every_new_session_gets_an_error_not_a_loop() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    session(&mut up, now);
    up.send(
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#.into(),
        now,
    );
    // Each `initialize` gets a session, every message in it a 404.
    let mut pending: VecDeque<Sent> = drain(&mut up).sent.into();
    let (mut exchanges, mut lines, mut sessions) = (0, Vec::new(), 1);
    while let Some(sent) = pending.pop_front() {
        exchanges += 1;
        assert!(exchanges < 100, "still going after {exchanges} exchanges");
        if sent.request.method != "POST" {
            continue;
        }
        if sent.body()["method"] == "initialize" {
            sessions += 1;
            let session = format!("S{sessions}");
            let fields = [
                ("content-type", "application/json"),
                ("mcp-session-id", session.as_str()),
            ];
            let body = r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{}}}"#;
            answer(&mut up, sent.id, head(200, &fields), body, now);
        } else {
            answer(&mut up, sent.id, head(404, &[]), "", now);
        }
        let d = drain(&mut up);
        pending.extend(d.sent);
        lines.extend(d.lines);
    }
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["id"], 5);
    assert!(lines[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("lost 3 new sessions in a row"));
    // The first session, then the three made again.
    assert_eq!(sessions - 1, MAX_LOST_SESSIONS as usize);
}

#[test]
fn a_lost_session_is_made_again_unseen() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    let listen = session(&mut up, now);
    let call = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;
    up.send(call.into(), now);
    let sent = drain(&mut up).sent.remove(0);
    answer(&mut up, sent.id, head(404, &[]), "", now);
    let d = drain(&mut up);
    assert!(d.lines.is_empty(), "the client sees nothing of it");
    assert!(d.aborted.contains(&listen));
    assert_eq!(d.sent.len(), 1);
    let replay = &d.sent[0];
    assert_eq!(replay.body()["method"], "initialize");
    assert_eq!(replay.header("mcp-session-id"), None);
    // Another call meanwhile waits too.
    up.send(r#"{"jsonrpc":"2.0","id":6,"method":"ping"}"#.into(), now);
    assert!(drain(&mut up).sent.is_empty());
    answer(
        &mut up,
        replay.id,
        head(
            200,
            &[
                ("content-type", "application/json"),
                ("mcp-session-id", "S2"),
            ],
        ),
        r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{}}}"#,
        now,
    );
    let d = drain(&mut up);
    assert!(d.lines.is_empty(), "the replayed answer is swallowed");
    let posted: Vec<Value> = d
        .sent
        .iter()
        .filter(|s| s.request.method == "POST")
        .map(|s| s.body()["method"].clone())
        .collect();
    assert_eq!(posted, ["notifications/initialized", "tools/list", "ping"]);
    assert_eq!(
        d.sent.iter().filter(|s| s.request.method == "GET").count(),
        1
    );
    assert!(d
        .sent
        .iter()
        .filter(|s| s.request.method == "POST")
        .all(|s| s.header("mcp-session-id") == Some("S2")));
}

#[test]
fn http_errors_answer_the_request_in_json_rpc() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    session(&mut up, now);
    up.send(
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#.into(),
        now,
    );
    let sent = drain(&mut up).sent.remove(0);
    answer(
        &mut up,
        sent.id,
        head(500, &[("content-type", "text/html")]),
        "<html>boom</html>",
        now,
    );
    let error = &drain(&mut up).lines[0];
    assert_eq!(error["id"], 7);
    assert_eq!(error["error"]["code"], SERVER_ERROR);
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("HTTP 500") && message.contains("boom"),
        "{message}"
    );
    // The server's own JSON-RPC error is passed on under the call's id.
    up.send(
        r#"{"jsonrpc":"2.0","id":8,"method":"tools/list"}"#.into(),
        now,
    );
    let sent = drain(&mut up).sent.remove(0);
    answer(
        &mut up,
        sent.id,
        json(400),
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Unsupported protocol version"}}"#,
        now,
    );
    let error = &drain(&mut up).lines[0];
    assert_eq!(error["id"], 8);
    assert_eq!(error["error"]["code"], -32600);
    // A connection cut mid-answer answers the call at once.
    up.send(
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"slow"}}"#.into(),
        now,
    );
    let sent = drain(&mut up).sent.remove(0);
    up.handle_head(
        sent.id,
        &head(200, &[("content-type", "text/event-stream")]),
        now,
    );
    up.handle_failed(sent.id, "the connection was reset", true, now);
    let error = &drain(&mut up).lines[0];
    assert_eq!(error["id"], 9);
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("reset"));
}

#[test]
fn an_unreachable_server_is_not_dialed_again_until_its_backoff() {
    let now = Instant::now();
    let (mut up, sent) = initializing(Transport::Auto, now);
    up.handle_failed(sent.id, "connection refused", false, now);
    let d = drain(&mut up);
    assert_eq!(d.lines[0]["id"], 1);
    assert_eq!(d.status, [Status::Failing("connection refused".into())]);
    up.send(INIT.into(), now + Duration::from_millis(50));
    let d = drain(&mut up);
    assert!(d.sent.is_empty(), "within the backoff nothing is dialed");
    assert!(d.lines[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("connection refused"));
    up.send(INIT.into(), now + Duration::from_millis(150));
    assert_eq!(drain(&mut up).sent.len(), 1);
}

#[test]
fn a_stateless_message_goes_with_its_revision_and_names() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    up.send(
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#.into(),
        now,
    );
    let sent = drain(&mut up).sent.remove(0);
    assert_eq!(sent.header("mcp-protocol-version"), Some("2026-07-28"));
    assert_eq!(sent.header("mcp-method"), Some("tools/call"));
    assert_eq!(sent.header("mcp-name"), Some("echo"));
    assert_eq!(sent.header("mcp-session-id"), None);
}

#[test]
fn a_listed_tools_marked_parameters_go_as_headers_and_a_tool_marked_wrongly_is_not_listed() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    session(&mut up, now);
    up.send(
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#.into(),
        now,
    );
    let list = drain(&mut up).sent.remove(0);
    // The listing comes as an event stream: read there as well.
    up.handle_head(
        list.id,
        &head(200, &[("content-type", "text/event-stream")]),
        now,
    );
    let listing = json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": [
        {"name": "query", "inputSchema": {"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "sql": {"type": "string"}}}},
        {"name": "broken", "inputSchema": {"type": "object", "properties": {
            "score": {"type": "number", "x-mcp-header": "Score"}}}},
    ]}});
    up.handle_data(list.id, &Bytes::from(format!("data: {listing}\n\n")));
    up.handle_end(list.id, now);
    let d = drain(&mut up);
    assert_eq!(d.lines.len(), 1);
    assert_eq!(d.lines[0]["id"], 2);
    let tools = d.lines[0]["result"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0]["name"], "query");
    up.send(
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"query","arguments":{"region":" eu ","sql":"SELECT 1"}}}"#.into(),
        now,
    );
    let call = drain(&mut up).sent.remove(0);
    assert_eq!(call.header("Mcp-Param-Region"), Some("=?base64?IGV1IA==?="));
    assert!(call.request.headers.iter().all(|(name, _)| !name
        .to_ascii_lowercase()
        .starts_with("mcp-param-")
        || name == "Mcp-Param-Region"));
}

#[test]
fn a_legacy_server_is_found_when_streamable_http_is_refused() {
    let now = Instant::now();
    let (mut up, sent) = initializing(Transport::Auto, now);
    answer(&mut up, sent.id, head(405, &[]), "", now);
    let d = drain(&mut up);
    assert!(d.lines.is_empty());
    let stream = &d.sent[0];
    assert_eq!(stream.request.method, "GET");
    assert!(stream.streaming);
    legacy_session(&mut up, stream.id, now);
}

/// A legacy stream names its endpoint; `initialize` (held) is posted
/// there and answered on the stream; the stream's end is the session's.
fn legacy_session(up: &mut Upstream, stream: ExchangeId, now: Instant) {
    up.handle_head(
        stream,
        &head(200, &[("content-type", "text/event-stream")]),
        now,
    );
    up.handle_data(
        stream,
        &Bytes::from_static(b"event: endpoint\ndata: /messages/?session_id=abc\n\n"),
    );
    let d = drain(up);
    assert_eq!(d.sent.len(), 1);
    let post = &d.sent[0];
    assert_eq!(
        post.request.url.to_string(),
        "http://127.0.0.1:7000/messages/?session_id=abc"
    );
    assert_eq!(post.body()["method"], "initialize");
    answer(up, post.id, head(202, &[]), "Accepted", now);
    up.handle_data(
        stream,
        &Bytes::from_static(b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2024-11-05\"}}\n\n"),
    );
    assert_eq!(
        drain(up).lines[0]["result"]["protocolVersion"],
        "2024-11-05"
    );
    up.handle_end(stream, now);
    assert_eq!(drain(up).gone.len(), 1);
}

#[test]
fn a_configured_sse_server_opens_its_stream_first() {
    let now = Instant::now();
    let (mut up, stream) = initializing(Transport::Sse, now);
    assert_eq!(stream.request.method, "GET");
    legacy_session(&mut up, stream.id, now);
}

#[test]
fn an_endpoint_on_another_server_is_refused() {
    let now = Instant::now();
    let (mut up, stream) = initializing(Transport::Sse, now);
    up.handle_head(
        stream.id,
        &head(200, &[("content-type", "text/event-stream")]),
        now,
    );
    up.handle_data(
        stream.id,
        &Bytes::from_static(b"event: endpoint\ndata: http://169.254.169.254/steal\n\n"),
    );
    let d = drain(&mut up);
    assert!(d.sent.is_empty(), "nothing is posted there");
    assert!(d.aborted.contains(&stream.id));
    assert_eq!(d.lines[0]["id"], 1);
    assert!(d.lines[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("another server"));
}

#[test]
fn a_401_holds_calls_for_a_token() {
    let now = Instant::now();
    let (mut up, sent) = initializing(Transport::Auto, now);
    answer(
        &mut up,
        sent.id,
        head(
            401,
            &[("www-authenticate", "Bearer resource_metadata=\"x\"")],
        ),
        "",
        now,
    );
    let d = drain(&mut up);
    assert_eq!(
        d.unauthorized,
        [Some("Bearer resource_metadata=\"x\"".into())]
    );
    assert!(d.lines.is_empty());
    up.send(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#.into(), now);
    assert!(drain(&mut up).sent.is_empty(), "held behind the login");
    up.handle_token(Ok("T1".into()), now);
    let d = drain(&mut up);
    assert_eq!(d.sent.len(), 2);
    assert!(d
        .sent
        .iter()
        .all(|s| s.header("authorization") == Some("Bearer T1")));
    assert_eq!(d.sent[0].body()["method"], "initialize");
    // Without a token, what waits is answered with why.
    answer(&mut up, d.sent[1].id, head(401, &[]), "", now);
    drain(&mut up);
    up.handle_token(Err("run `mcp-provider login r`".into()), now);
    let d = drain(&mut up);
    assert_eq!(
        d.status,
        [Status::NeedsLogin("run `mcp-provider login r`".into())]
    );
    assert_eq!(d.lines[0]["id"], 2);
    assert!(d.lines[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("login r"));
}

#[test]
fn closing_ends_the_session_with_the_server() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    let listen = session(&mut up, now);
    up.close();
    let d = drain(&mut up);
    assert!(d.aborted.contains(&listen));
    assert_eq!(d.sent[0].request.method, "DELETE");
    assert_eq!(d.sent[0].header("mcp-session-id"), Some("S1"));
}

#[test]
fn a_server_refusing_every_token_is_not_asked_forever() {
    let now = Instant::now();
    let (mut up, mut sent) = initializing(Transport::Auto, now);
    let step_up = head(
        403,
        &[(
            "www-authenticate",
            "Bearer error=\"insufficient_scope\", scope=\"mcp:write\"",
        )],
    );
    for token in 1..=MAX_AUTH_TRIES {
        answer(&mut up, sent.id, step_up.clone(), "", now);
        let d = drain(&mut up);
        assert_eq!(d.unauthorized.len(), 1, "asked once for try {token}");
        up.handle_token(Ok(format!("T{token}")), now);
        sent = drain(&mut up).sent.remove(0);
    }
    answer(&mut up, sent.id, step_up, "", now);
    let d = drain(&mut up);
    assert!(d.unauthorized.is_empty());
    assert_eq!(d.lines[0]["id"], 1);
    assert!(d.lines[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("refused 3 tokens"));
}

#[test]
fn a_server_keeping_no_session_says_so_before_its_answer() {
    let now = Instant::now();
    let (mut up, sent) = initializing(Transport::Auto, now);
    up.handle_head(sent.id, &json(200), now);
    assert!(drain(&mut up).sessionless);
    let mut kept = Upstream::new("r", remote(Transport::Auto));
    session(&mut kept, now);
}

#[test]
fn a_huge_answer_or_a_redirect_is_refused_and_cut() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    session(&mut up, now);
    up.send(
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#.into(),
        now,
    );
    let sent = drain(&mut up).sent.remove(0);
    up.handle_head(sent.id, &json(200), now);
    let piece = Bytes::from(vec![b' '; 1 << 20]);
    for _ in 0..5 {
        up.handle_data(sent.id, &piece);
    }
    let d = drain(&mut up);
    assert_eq!(d.aborted, [sent.id]);
    assert_eq!(d.lines.len(), 1);
    assert!(d.lines[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("longer than"));
    up.send(
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#.into(),
        now,
    );
    let sent = drain(&mut up).sent.remove(0);
    up.handle_head(
        sent.id,
        &head(307, &[("location", "http://169.254.169.254/latest")]),
        now,
    );
    let d = drain(&mut up);
    assert_eq!(d.aborted, [sent.id]);
    assert!(d.sent.is_empty(), "nothing is sent where it points");
    let message = d.lines[0]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("169.254.169.254") && message.contains("not followed"),
        "{message}"
    );
}

#[test]
fn a_server_refusing_initialize_and_an_event_stream_is_asked_on() {
    let now = Instant::now();
    let (mut up, sent) = initializing(Transport::Auto, now);
    answer(&mut up, sent.id, head(405, &[]), "", now);
    let stream = drain(&mut up).sent.remove(0);
    answer(&mut up, stream.id, head(405, &[]), "", now);
    let d = drain(&mut up);
    assert!(d.gone.is_empty(), "no session was lost: nothing restarts");
    assert_eq!(d.lines[0]["id"], 1, "initialize is refused");
    // The bridge then asks `server/discover`, over Streamable HTTP.
    up.send(
        r#"{"jsonrpc":"2.0","id":2,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#.into(),
        now,
    );
    let discover = drain(&mut up).sent.remove(0);
    assert_eq!(discover.request.method, "POST");
    assert_eq!(discover.header("mcp-protocol-version"), Some("2026-07-28"));
    // A refusal that is the server's own (400) is passed on, not taken for
    // a legacy server.
    let (mut modern, sent) = initializing(Transport::Auto, now);
    answer(
        &mut modern,
        sent.id,
        json(400),
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"unsupported protocol version"}}"#,
        now,
    );
    let d = drain(&mut modern);
    assert!(d.sent.is_empty());
    assert_eq!(d.lines[0]["error"]["code"], -32022);
}

#[test]
fn a_listening_stream_cut_after_it_lasted_is_opened_again_where_it_stopped() {
    let t0 = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    let listen = session(&mut up, t0);
    let events = head(200, &[("content-type", "text/event-stream")]);
    up.handle_head(listen, &events, t0);
    up.handle_data(
        listen,
        &Bytes::from_static(b"id: 41\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n: keep-alive\n\n"),
    );
    assert_eq!(drain(&mut up).lines.len(), 1);
    // A proxy's idle timeout ends it a minute later: asked again, in the
    // same session, after the last event it carried.
    up.handle_end(listen, t0 + Duration::from_secs(60));
    let d = drain(&mut up);
    assert_eq!(d.sent.len(), 1);
    let again = &d.sent[0];
    assert_eq!(again.request.method, "GET");
    assert!(again.streaming);
    assert_eq!(again.header("mcp-session-id"), Some("S1"));
    assert_eq!(again.header("last-event-id"), Some("41"));
    // Broken, again after it lasted: asked once more.
    up.handle_head(again.id, &events, t0 + Duration::from_secs(61));
    up.handle_failed(
        again.id,
        "connection reset",
        true,
        t0 + Duration::from_secs(90),
    );
    let d = drain(&mut up);
    assert_eq!(d.sent.len(), 1);
    let third = &d.sent[0];
    assert_eq!(third.header("last-event-id"), Some("41"));
    // A server that does not want it (405, or a stream closed at once)
    // is not asked again in this session.
    let at = t0 + Duration::from_secs(91);
    answer(&mut up, third.id, json(405), "", at);
    assert!(drain(&mut up).sent.is_empty());
}

#[test]
fn a_listening_stream_ended_at_once_is_not_asked_for_again() {
    let t0 = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    let listen = session(&mut up, t0);
    let events = head(200, &[("content-type", "text/event-stream")]);
    up.handle_head(listen, &events, t0);
    up.handle_end(listen, t0 + Duration::from_millis(10));
    assert!(drain(&mut up).sent.is_empty());
    // Nor is it opened twice: a call in the session sends just the call.
    up.send(
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#.into(),
        t0 + Duration::from_secs(5),
    );
    let d = drain(&mut up);
    assert_eq!(d.sent.len(), 1);
    assert_eq!(d.sent[0].request.method, "POST");
}

/// A session with its listening stream open, and `n` calls posted in it
/// (ids 100, 101, …), each answer an event stream begun: the listening
/// stream's exchange, and each call's.
fn calls_in_flight(up: &mut Upstream, n: u64, now: Instant) -> (ExchangeId, Vec<ExchangeId>) {
    let listen = session(up, now);
    let events = head(200, &[("content-type", "text/event-stream")]);
    up.handle_head(listen, &events, now);
    let mut posts = Vec::new();
    for id in 100..100 + n {
        let call =
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "t"}});
        up.send(call.to_string(), now);
        let sent = drain(up).sent.remove(0);
        assert_eq!(sent.body()["id"], id);
        up.handle_head(sent.id, &events, now);
        posts.push(sent.id);
    }
    (listen, posts)
}

/// An event carrying an answer under `id`, saying it came `via` where.
fn answer_event(id: u64, via: usize) -> Bytes {
    let answer = json!({"jsonrpc": "2.0", "id": id, "result": {"via": via}});
    Bytes::from(format!("data: {answer}\n\n"))
}

#[test]
fn an_answer_in_another_calls_response_is_dropped() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    let (_, posts) = calls_in_flight(&mut up, 2, now);
    // The response to call 101 answers call 100, then itself, then itself
    // again.
    for event in [
        answer_event(100, 1),
        answer_event(101, 1),
        answer_event(101, 1),
    ] {
        up.handle_data(posts[1], &event);
    }
    up.handle_end(posts[1], now);
    let d = drain(&mut up);
    assert_eq!(d.lines.len(), 1, "{:?}", d.lines);
    assert_eq!(d.lines[0]["id"], 101);
    // Call 100 still waits for its own answer, and gets it.
    up.handle_data(posts[0], &answer_event(100, 0));
    let d = drain(&mut up);
    assert_eq!(d.lines.len(), 1);
    assert_eq!(d.lines[0]["result"]["via"], 0);
}

#[test]
fn the_sessions_stream_answers_only_a_call_still_waiting_in_it() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    let (listen, posts) = calls_in_flight(&mut up, 1, now);
    for event in [
        answer_event(7, 9),
        answer_event(100, 9),
        answer_event(100, 9),
    ] {
        up.handle_data(listen, &event);
    }
    let d = drain(&mut up);
    assert_eq!(d.lines.len(), 1, "{:?}", d.lines);
    assert_eq!(d.lines[0]["id"], 100);
    // Answered there, its own response's answer is one too many, and its
    // end owes nothing.
    up.handle_data(posts[0], &answer_event(100, 0));
    up.handle_end(posts[0], now);
    assert!(drain(&mut up).lines.is_empty());
}

#[test]
fn a_call_answered_on_the_sessions_stream_gets_no_error_from_its_own_response() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    let (listen, _) = calls_in_flight(&mut up, 0, now);
    up.send(
        r#"{"jsonrpc":"2.0","id":100,"method":"tools/list"}"#.into(),
        now,
    );
    let post = drain(&mut up).sent.remove(0);
    up.handle_data(listen, &answer_event(100, 9));
    assert_eq!(drain(&mut up).lines.len(), 1);
    answer(&mut up, post.id, head(500, &[]), "boom", now);
    assert!(drain(&mut up).lines.is_empty(), "one answer, not two");
    // Nor is it posted again when its own response says the session is
    // lost.
    up.send(
        r#"{"jsonrpc":"2.0","id":101,"method":"tools/list"}"#.into(),
        now,
    );
    let post = drain(&mut up).sent.remove(0);
    up.handle_data(listen, &answer_event(101, 9));
    answer(&mut up, post.id, head(404, &[]), "", now);
    let d = drain(&mut up);
    assert_eq!(d.lines.len(), 1);
    assert!(d.sent.is_empty(), "{:?}", d.sent.len());
}

#[test]
fn a_cancelled_call_lets_go_of_its_exchange_or_is_never_sent() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    let (_, posts) = calls_in_flight(&mut up, 1, now);
    let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":100,"reason":"timed out"}}"#;
    up.send(cancel.into(), now);
    let d = drain(&mut up);
    assert_eq!(d.aborted, [posts[0]], "its answer's stream is cut");
    assert_eq!(d.sent.len(), 1);
    assert_eq!(d.sent[0].body()["method"], "notifications/cancelled");
    assert!(!up.wants(posts[0]));
    up.handle_data(posts[0], &answer_event(100, 0));
    assert!(
        drain(&mut up).lines.is_empty(),
        "a late answer goes nowhere"
    );
    // A call held (behind a login) is dropped instead, and the server
    // hears nothing of it.
    up.send(r#"{"jsonrpc":"2.0","id":101,"method":"ping"}"#.into(), now);
    let ping = drain(&mut up).sent.remove(0);
    answer(&mut up, ping.id, head(401, &[]), "", now);
    drain(&mut up);
    up.send(r#"{"jsonrpc":"2.0","id":102,"method":"ping"}"#.into(), now);
    up.send(cancel.replace("100", "102"), now);
    up.handle_token(Ok("T".into()), now);
    let d = drain(&mut up);
    let posted: Vec<Value> = d.sent.iter().map(|s| s.body()["id"].clone()).collect();
    assert_eq!(posted, [json!(101)]);
}

#[test]
fn a_legacy_stream_answers_only_requests_posted_to_it() {
    let now = Instant::now();
    let (mut up, stream) = initializing(Transport::Sse, now);
    let stream = stream.id;
    legacy_session_open(&mut up, stream, now);
    up.send(
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#.into(),
        now,
    );
    let post = drain(&mut up).sent.remove(0);
    answer(&mut up, post.id, head(202, &[]), "", now);
    for id in [4, 5, 5] {
        let answer = json!({"jsonrpc": "2.0", "id": id, "result": {}});
        up.handle_data(
            stream,
            &Bytes::from(format!("event: message\ndata: {answer}\n\n")),
        );
    }
    let d = drain(&mut up);
    assert_eq!(d.lines.len(), 1, "{:?}", d.lines);
    assert_eq!(d.lines[0]["id"], 5);
}

/// A legacy stream that names its endpoint and answers `initialize` there.
fn legacy_session_open(up: &mut Upstream, stream: ExchangeId, now: Instant) {
    up.handle_head(
        stream,
        &head(200, &[("content-type", "text/event-stream")]),
        now,
    );
    up.handle_data(
        stream,
        &Bytes::from_static(b"event: endpoint\ndata: /messages/?session_id=abc\n\n"),
    );
    let post = drain(up).sent.remove(0);
    answer(up, post.id, head(202, &[]), "Accepted", now);
    up.handle_data(
        stream,
        &Bytes::from_static(b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2024-11-05\"}}\n\n"),
    );
    assert_eq!(drain(up).lines[0]["id"], 1);
}

mod interleavings {
    //! Whatever a server sends wherever, in any order: an answer reaches
    //! only the call it answers, at most once, and every call gets one.

    use proptest::prelude::*;

    use super::*;

    const CALLS: u64 = 4;
    /// The session's stream, among the exchanges a step names.
    const STREAM: usize = CALLS as usize;

    #[derive(Debug, Clone)]
    enum Step {
        /// An answer under `id` (a call's, or one no call has: `CALLS`
        /// and past it) in the response to call `on`, or on the session's
        /// stream.
        Answer { on: usize, id: u64 },
        /// That exchange ends…
        End { on: usize },
        /// …or breaks.
        Break { on: usize },
    }

    fn step() -> impl Strategy<Value = Step> {
        let on = 0..=STREAM;
        prop_oneof![
            4 => (on.clone(), 0..CALLS + 2).prop_map(|(on, id)| Step::Answer { on, id: 100 + id }),
            1 => on.clone().prop_map(|on| Step::End { on }),
            1 => on.prop_map(|on| Step::Break { on }),
        ]
    }

    /// Each call's answers so far, checked as they come: under a call's
    /// id, at most one, and a result only from that call's response or
    /// the session's stream.
    fn tally(up: &mut Upstream, answers: &mut [usize]) {
        for line in drain(up).lines {
            let id = line["id"].as_u64().expect("an answer");
            let call = usize::try_from(id - 100).expect("a call's id");
            answers[call] += 1;
            assert!(answers[call] <= 1, "call {id} answered twice: {line}");
            if let Some(via) = line["result"]["via"].as_u64() {
                let via = usize::try_from(via).unwrap();
                assert!(
                    via == call || via == STREAM,
                    "call {id} answered by {via}'s response"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn an_answer_reaches_only_its_call_and_once(steps in prop::collection::vec(step(), 0..40)) {
            let now = Instant::now();
            let mut up = Upstream::new("r", remote(Transport::Auto));
            let (listen, posts) = calls_in_flight(&mut up, CALLS, now);
            let exchange = |on: usize| posts.get(on).copied().unwrap_or(listen);
            let mut answers = [0; CALLS as usize];
            for step in steps {
                match step {
                    Step::Answer { on, id } => up.handle_data(exchange(on), &answer_event(id, on)),
                    Step::End { on } => up.handle_end(exchange(on), now),
                    Step::Break { on } => up.handle_failed(exchange(on), "reset", true, now),
                }
                tally(&mut up, &mut answers);
            }
            for post in &posts {
                up.handle_end(*post, now);
            }
            tally(&mut up, &mut answers);
            prop_assert_eq!(answers, [1; CALLS as usize], "every call answered once");
        }
    }
}

#[test]
fn a_request_carrying_a_trace_context_is_posted_with_its_headers() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    session(&mut up, now);
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo", "_meta": {"traceparent": parent, "tracestate": "k=v", "progressToken": 4}}});
    up.send(call.to_string(), now);
    let d = drain(&mut up);
    assert_eq!(d.sent[0].header("traceparent"), Some(parent));
    assert_eq!(d.sent[0].header("tracestate"), Some("k=v"));
    assert_eq!(d.sent[0].body(), call, "the message is posted as it was");
    // Without one, or with one that is not valid, no header is made up.
    for meta in [json!({}), json!({"traceparent": "00-zz"})] {
        let call = json!({"jsonrpc": "2.0", "id": 3, "method": "ping", "params": {"_meta": meta}});
        up.send(call.to_string(), now);
        let d = drain(&mut up);
        assert_eq!(d.sent[0].header("traceparent"), None);
    }
}

/// A call in a session, its answer begun as an event stream: the
/// call's exchange.
fn streaming_call(up: &mut Upstream, now: Instant) -> ExchangeId {
    session(up, now);
    up.send(
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"slow"}}"#.into(),
        now,
    );
    let call = drain(up).sent.remove(0).id;
    up.handle_head(
        call,
        &head(200, &[("content-type", "text/event-stream")]),
        now,
    );
    call
}

const ANSWER_9: &str =
    "id: e-9\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"content\":[]}}\n\n";

#[test]
fn a_call_stream_closed_before_its_answer_is_taken_up_after_its_retry() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    let call = streaming_call(&mut up, now);
    up.handle_data(
        call,
        &Bytes::from_static(b"id: e-1\nretry: 300\ndata: \n\n"),
    );
    up.handle_end(call, now);
    let d = drain(&mut up);
    assert!(d.lines.is_empty(), "no error: the rest is to be asked for");
    assert!(d.sent.is_empty(), "not before the wait");
    let due = now + Duration::from_millis(300);
    assert_eq!(d.wake, [due]);
    up.handle_timeout(now + Duration::from_millis(100));
    assert!(drain(&mut up).sent.is_empty(), "woken early: still waiting");
    up.handle_timeout(due);
    let d = drain(&mut up);
    assert_eq!(d.sent.len(), 1);
    let get = &d.sent[0];
    assert_eq!(get.request.method, "GET");
    assert_eq!(get.header("last-event-id"), Some("e-1"));
    assert_eq!(get.header("mcp-session-id"), Some("S1"));
    assert_eq!(get.header("mcp-protocol-version"), Some("2025-06-18"));
    assert_eq!(get.header("accept"), Some("text/event-stream"));
    answer(
        &mut up,
        get.id,
        head(200, &[("content-type", "text/event-stream")]),
        ANSWER_9,
        due,
    );
    let d = drain(&mut up);
    assert_eq!(d.lines.len(), 1);
    assert_eq!(d.lines[0]["id"], 9);
    assert!(d.lines[0]["result"].is_object());
    assert!(d.wake.is_empty());
}

#[test]
fn a_call_never_answered_fails_after_the_bound_with_the_default_wait() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    let call = streaming_call(&mut up, now);
    up.handle_data(call, &Bytes::from_static(b"id: e-1\ndata: \n\n"));
    up.handle_end(call, now);
    let mut at = now;
    for attempt in 1..=resume::MAX_RESUMES {
        let d = drain(&mut up);
        assert!(d.lines.is_empty(), "attempt {attempt}: not failed yet");
        assert_eq!(d.wake, [at + resume::RESUME_WAIT], "the default wait");
        at += resume::RESUME_WAIT;
        up.handle_timeout(at);
        let get = drain(&mut up).sent.remove(0);
        let after = format!("e-{attempt}");
        assert_eq!(get.header("last-event-id"), Some(after.as_str()));
        // Each stream gives one more event, never the answer.
        let event = format!("id: e-{}\ndata: \n\n", attempt + 1);
        answer(
            &mut up,
            get.id,
            head(200, &[("content-type", "text/event-stream")]),
            &event,
            at,
        );
    }
    let d = drain(&mut up);
    assert!(d.wake.is_empty() && d.sent.is_empty(), "not asked again");
    assert_eq!(d.lines.len(), 1);
    assert_eq!(d.lines[0]["id"], 9);
    let message = d.lines[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("without answering"), "{message}");
    assert!(message.contains("3 times"), "{message}");
}

#[test]
fn a_call_stream_with_no_event_id_fails_at_once() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    let call = streaming_call(&mut up, now);
    up.handle_data(
        call,
        &Bytes::from_static(b"retry: 300\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n"),
    );
    up.handle_end(call, now);
    let d = drain(&mut up);
    assert!(d.wake.is_empty() && d.sent.is_empty());
    assert_eq!(d.lines.len(), 2);
    assert_eq!(d.lines[0]["method"], "notifications/progress");
    assert_eq!(d.lines[1]["id"], 9);
    assert!(d.lines[1]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ended its answer without answering"));
}

#[test]
fn a_refused_resumption_fails_the_call_and_a_cancelled_one_is_never_asked() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    let call = streaming_call(&mut up, now);
    up.handle_data(call, &Bytes::from_static(b"id: e-1\ndata: \n\n"));
    up.handle_end(call, now);
    let due = drain(&mut up).wake[0];
    up.handle_timeout(due);
    let get = drain(&mut up).sent.remove(0);
    answer(&mut up, get.id, head(405, &[]), "", due);
    let d = drain(&mut up);
    assert_eq!(d.lines[0]["id"], 9);
    assert!(d.lines[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("refused to send the rest (HTTP 405"));

    // Cancelled while it waits: nothing is asked, nothing answered.
    up.send(
        r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"slow"}}"#.into(),
        now,
    );
    let call = drain(&mut up).sent.remove(0).id;
    up.handle_head(
        call,
        &head(200, &[("content-type", "text/event-stream")]),
        now,
    );
    up.handle_data(call, &Bytes::from_static(b"id: e-1\ndata: \n\n"));
    up.handle_end(call, now);
    let due = drain(&mut up).wake[0];
    up.send(
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":10}}"#.into(),
        now,
    );
    drain(&mut up);
    up.handle_timeout(due);
    let d = drain(&mut up);
    assert!(d.sent.is_empty() && d.lines.is_empty());
}

#[test]
fn every_post_says_its_method_and_a_named_request_its_name() {
    let now = Instant::now();
    let (_, init) = initializing(Transport::Auto, now);
    assert_eq!(init.header("mcp-method"), Some("initialize"));
    assert_eq!(init.header("mcp-name"), None);
    let mut up = Upstream::new("r", remote(Transport::Auto));
    session(&mut up, now);
    let cases = [
        (
            json!({"method": "notifications/initialized"}),
            "notifications/initialized",
            None,
        ),
        (json!({"id": 2, "method": "tools/list"}), "tools/list", None),
        (
            json!({"id": 3, "method": "tools/call", "params": {"name": "my-hyphenated-tool"}}),
            "tools/call",
            Some("my-hyphenated-tool"),
        ),
        (
            json!({"id": 4, "method": "prompts/get", "params": {"name": "test_prompt"}}),
            "prompts/get",
            Some("test_prompt"),
        ),
        (
            json!({"id": 5, "method": "resources/read", "params": {"uri": "file:///path/to/file%20name.txt"}}),
            "resources/read",
            Some("file:///path/to/file%20name.txt"),
        ),
        // Not header-safe: wrapped, never a line break on the wire.
        (
            json!({"id": 6, "method": "tools/call", "params": {"name": "x\r\nevil: 1"}}),
            "tools/call",
            Some("=?base64?eA0KZXZpbDogMQ==?="),
        ),
        (
            json!({"id": 7, "method": "resources/read", "params": {"uri": "file:///héllo"}}),
            "resources/read",
            Some("=?base64?ZmlsZTovLy9ow6lsbG8=?="),
        ),
    ];
    for (mut message, method, name) in cases {
        message["jsonrpc"] = json!("2.0");
        up.send(message.to_string(), now);
        let sent = drain(&mut up).sent.remove(0);
        assert_eq!(sent.request.method, "POST");
        assert_eq!(sent.header("mcp-method"), Some(method));
        assert_eq!(sent.header("mcp-name"), name, "{method}");
        assert_eq!(
            sent.header("mcp-session-id"),
            Some("S1"),
            "a 2025 session still"
        );
        let wire = String::from_utf8(sent.request.encode()).unwrap();
        assert!(!wire.contains("evil: 1\r\n"), "{wire}");
    }
}

/// A step-up refusal, as a server wanting `mcp:write` answers.
fn wants_scope() -> ResponseHead {
    head(
        403,
        &[(
            "www-authenticate",
            "Bearer error=\"insufficient_scope\", scope=\"mcp:write\"",
        )],
    )
}

/// Refuses every token `up` sends for `sent`'s request, giving a new one
/// each time it asks: the tokens it was sent, in all, once it gives up.
fn tokens_tried(up: &mut Upstream, mut sent: Sent, now: Instant) -> Vec<String> {
    let mut tried = Vec::new();
    let mut given = 0;
    loop {
        if let Some(token) = sent.header("authorization") {
            tried.push(token.to_owned());
        }
        answer(up, sent.id, wants_scope(), "", now);
        let d = drain(up);
        if d.unauthorized.is_empty() {
            assert!(d.lines[0]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("refused 3 tokens"));
            return tried;
        }
        assert!(given < 10, "asked for tokens without end");
        given += 1;
        up.handle_token(Ok(format!("T{given}")), now);
        sent = drain(up).sent.remove(0);
    }
}

#[test]
fn three_tokens_are_tried_in_all_whether_the_first_came_from_a_login_or_not() {
    let now = Instant::now();
    // Logged in before: the login's token is the first of the three.
    let mut up = Upstream::new("r", remote(Transport::Auto));
    up.set_bearer(Some("T0".into()));
    up.send(INIT.into(), now);
    let sent = drain(&mut up).sent.remove(0);
    assert_eq!(
        tokens_tried(&mut up, sent, now),
        ["Bearer T0", "Bearer T1", "Bearer T2"]
    );
    // No login: the server's first refusal is of no token, then three.
    let (mut up, sent) = initializing(Transport::Auto, now);
    assert_eq!(
        tokens_tried(&mut up, sent, now),
        ["Bearer T1", "Bearer T2", "Bearer T3"]
    );
}

#[test]
fn json_lines_under_application_json_are_each_a_message_and_garbage_an_error() {
    let now = Instant::now();
    let mut up = Upstream::new("r", remote(Transport::Auto));
    session(&mut up, now);
    let call = |up: &mut Upstream, n: u64| {
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"count"}}}}"#
        );
        up.send(line, now);
        drain(up).sent.remove(0)
    };
    let sent = call(&mut up, 2);
    let lines = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[]}}\n";
    answer(&mut up, sent.id, json(200), lines, now);
    let d = drain(&mut up);
    assert_eq!(d.lines.len(), 2, "{:?}", d.lines);
    assert_eq!(d.lines[0]["method"], "notifications/progress");
    assert_eq!(d.lines[1]["id"], 2);
    let sent = call(&mut up, 3);
    answer(
        &mut up,
        sent.id,
        json(200),
        "{\"jsonrpc\":\"2.0\"} not json",
        now,
    );
    let d = drain(&mut up);
    assert_eq!(d.lines.len(), 1, "{:?}", d.lines);
    assert_eq!(d.lines[0]["id"], 3);
    assert!(d.lines[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not JSON"));
}

#[test]
fn a_listen_stream_is_read_as_it_comes_whether_events_or_json_lines() {
    let now = Instant::now();
    let listen = json!({"jsonrpc": "2.0", "id": 4, "method": "subscriptions/listen",
        "params": {"notifications": {"toolsListChanged": true},
            "_meta": {mcp::PROTOCOL_VERSION_META: "2026-07-28", mcp::CLIENT_CAPABILITIES_META: {}}}});
    let ack =
        r#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{}}"#;
    let changed = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
    // Answered as JSON lines: each line a message once it is whole.
    let mut up = Upstream::new("r", remote(Transport::Auto));
    up.send(listen.to_string(), now);
    let sent = drain(&mut up).sent.remove(0);
    assert!(sent.streaming, "no deadline, no bound on the whole");
    assert_eq!(sent.header("mcp-protocol-version"), Some("2026-07-28"));
    up.handle_head(sent.id, &json(200), now);
    up.handle_data(sent.id, &Bytes::from(format!("{ack}\n{}", &changed[..10])));
    let heard = drain(&mut up).lines;
    assert_eq!(heard.len(), 1);
    assert_eq!(
        heard[0]["method"],
        "notifications/subscriptions/acknowledged"
    );
    up.handle_data(sent.id, &Bytes::from(format!("{}\n\n", &changed[10..])));
    assert_eq!(
        drain(&mut up).lines[0]["method"],
        "notifications/tools/list_changed"
    );
    // Ended without its answer: the listen request gets an error.
    up.handle_end(sent.id, now);
    let ended = drain(&mut up).lines;
    assert_eq!((ended.len(), &ended[0]["id"]), (1, &json!(4)));
    assert!(ended[0]["error"].is_object());
    // Answered as events: the same.
    up.send(listen.to_string(), now);
    let sent = drain(&mut up).sent.remove(0);
    up.handle_head(
        sent.id,
        &head(200, &[("content-type", "text/event-stream")]),
        now,
    );
    up.handle_data(
        sent.id,
        &Bytes::from(format!("data: {ack}\n\ndata: {changed}\n\n")),
    );
    assert_eq!(drain(&mut up).lines.len(), 2);
}
