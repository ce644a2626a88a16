//! Fuzz target bodies, compiled only with `--cfg fuzzing` (cargo fuzz sets
//! it). Each checks a property, not just the absence of a panic, where one
//! exists.

use std::time::{Instant, SystemTime};

use crate::api::{anthropic, ollama, openai, responses, RequestLimits};
use crate::http::{Limits, RequestReader};
use crate::{Config, ConnId, Provider};

/// Any split of the same bytes yields the same requests (or the same error).
pub fn http_request(data: &[u8]) {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_head: 4096,
        max_body: 4096,
        ..Limits::default()
    };
    let read = |pieces: &[&[u8]]| {
        let mut reader = RequestReader::new(limits);
        let mut out = Vec::new();
        for piece in pieces {
            reader.handle_data(piece);
            loop {
                match reader.next_request() {
                    Ok(Some(r)) => out.push(Ok(r)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e.status()));
                        return out;
                    }
                }
            }
        }
        out
    };
    let at = usize::from(split).min(input.len());
    let whole = read(&[input]);
    let halves = read(&[&input[..at], &input[at..]]);
    assert_eq!(whole, halves);
}

/// Agent frames of any content, against a provider with a registered
/// session and open requests (streamed and whole, in every editor API), never
/// break it; once the link drops, no editor is left waiting.
///
/// Each line of input is one frame. A line starting with `{` is sent as
/// it is; any other line is a chunk for one of the open requests (its first
/// byte picks the request and the chunk index, the rest is the `delta`
/// JSON, or plain text), so frames reach streams in flight.
pub fn agent_messages(data: &[u8]) {
    use crate::http::{Body, Request};
    use crate::switchboard::Switchboard;
    use crate::Output;
    use std::cell::RefCell;

    let now = Instant::now();
    let mut config = Config::new(&["k"], "t");
    config.max_output_bytes = 4096;
    let mut board = Switchboard::new(Provider::new(config, now, SystemTime::UNIX_EPOCH));
    let agent = ConnId(1);
    // Whether each editor got its whole answer (`true`) or is waiting.
    let answered = RefCell::new(std::collections::BTreeMap::new());
    let editor_sides = RefCell::new(crate::stream::EditorSides::default());
    let post = |conn: &ConnId, output: Output| {
        editor_sides.borrow_mut().carry(output, |output| {
            let done = match &output {
                Output::Respond { response, .. } | Output::Refuse { response, .. } => {
                    matches!(response.body, Body::Full(_))
                }
                Output::End { .. } => true,
                _ => false,
            };
            if done {
                answered.borrow_mut().insert(*conn, true);
            }
        });
    };
    board.attach(agent, agent);
    let register = r#"{"type":"register","agent_id":"f","models":["m"],"allowed_scopes":["inference","embedding"]}"#;
    board.with(
        now,
        |p, now| {
            p.open_agent(agent, "agent");
            p.handle_agent_text(agent, register, now);
        },
        post,
    );
    let requests = [
        (
            "/v1/chat/completions",
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"a"}]}"#,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"m","messages":[{"role":"user","content":"a"}]}"#,
        ),
        (
            "/v1/completions",
            r#"{"model":"m","prompt":"a","stream":true}"#,
        ),
        (
            "/api/chat",
            r#"{"model":"m","messages":[{"role":"user","content":"a"}]}"#,
        ),
        (
            "/api/generate",
            r#"{"model":"m","prompt":"a","stream":false}"#,
        ),
        ("/v1/embeddings", r#"{"model":"m","input":"a"}"#),
        (
            "/v1/responses",
            r#"{"model":"m","input":"a","stream":true}"#,
        ),
        ("/v1/responses", r#"{"model":"m","input":"a"}"#),
        (
            "/v1/messages",
            r#"{"model":"m","max_tokens":9,"stream":true,"messages":[{"role":"user","content":"a"}]}"#,
        ),
        (
            "/v1/messages",
            r#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"a"}]}"#,
        ),
    ];
    for (i, (path, body)) in requests.iter().enumerate() {
        let conn = ConnId(10 + i as u64);
        board.attach(conn, conn);
        answered.borrow_mut().insert(conn, false);
        let headers = vec![
            ("host".to_owned(), "127.0.0.1".to_owned()),
            ("authorization".to_owned(), "Bearer k".to_owned()),
        ];
        let request = Request::new(
            "POST",
            path,
            headers,
            bytes::Bytes::from_static(body.as_bytes()),
        )
        .expect("the paths above are canonical");
        board.with(now, |p, now| p.handle_request(conn, request, now), post);
    }
    for line in data.split(|&b| b == b'\n') {
        let frame = match line.split_first() {
            Some((b'{', _)) => String::from_utf8_lossy(line).into_owned(),
            Some((&pick, rest)) => {
                let rest = String::from_utf8_lossy(rest);
                let delta = match serde_json::from_str::<serde_json::Value>(&rest) {
                    Ok(v) => v,
                    Err(_) => serde_json::json!({ "content": rest }),
                };
                let finish = (pick & 0x80 != 0).then_some("stop");
                serde_json::json!({"type": "model_stream_chunk", "id": format!("inv-{}", pick % 16),
                    "chunk_index": (pick >> 4) % 8, "delta": delta, "finish_reason": finish})
                .to_string()
            }
            None => continue,
        };
        crate::agent::message::scan_agrees_with_serde(&frame);
        board.with(now, |p, now| p.handle_agent_text(agent, &frame, now), post);
    }
    board.with(now, |p, now| p.handle_conn_closed(agent, now), post);
    let waiting: Vec<ConnId> = answered
        .borrow()
        .iter()
        .filter(|(_, done)| !**done)
        .map(|(conn, _)| *conn)
        .collect();
    assert!(
        waiting.is_empty(),
        "{waiting:?} still waiting after the link dropped"
    );
}

/// OpenAI and Anthropic request bodies: parsed or rejected with a 4xx,
/// never a panic.
pub fn openai_body(data: &[u8]) {
    let limits = RequestLimits::default();
    for result in [
        openai::parse_chat(data, &limits),
        openai::parse_completion(data, &limits),
        openai::parse_embeddings(data),
        responses::parse(data, &limits),
        anthropic::parse(data, &limits, true),
        anthropic::parse(data, &limits, false),
    ] {
        assert_client_error(result);
    }
}

/// Ollama request bodies: parsed or rejected with a 4xx, never a panic.
pub fn ollama_body(data: &[u8]) {
    let limits = RequestLimits::default();
    for result in [
        ollama::parse_chat(data, &limits),
        ollama::parse_generate(data, &limits),
        ollama::parse_embed(data, "input", &ollama::EMBED),
        ollama::parse_embed(data, "prompt", &ollama::EMBEDDINGS),
    ] {
        assert_client_error(result);
    }
    assert_client_error(ollama::parse_show(data));
    assert_client_error(ollama::parse_pull(data));
}

/// A refused body is the client's fault: a 4xx, never anything else.
fn assert_client_error<T>(result: Result<T, crate::ApiError>) {
    if let Err(e) = result {
        assert!((400..500).contains(&e.status), "{e}");
    }
}

/// Reassembly under any pushes (a byte is an index) and pops (0xFF):
/// chunks come out once each, in index order from 0; a duplicate is only
/// ever a chunk seen before; an overflow only refuses a new, early chunk.
pub fn reassembly(data: &[u8]) {
    use crate::reassembly::{Pushed, Reassembler};
    let max_held = 4;
    let mut r = Reassembler::new(max_held);
    let mut seen = std::collections::BTreeSet::new();
    let mut expected_next = 0u64;
    for &byte in data {
        if byte == 0xFF {
            if let Some(index) = r.pop() {
                assert_eq!(index, expected_next);
                expected_next += 1;
            }
            continue;
        }
        let index = u64::from(byte % 16);
        match r.push(index, index) {
            Ok(Pushed::Duplicate) => assert!(seen.contains(&index)),
            Ok(_) => assert!(seen.insert(index)),
            Err(_) => assert!(!seen.contains(&index) && index > expected_next),
        }
        while let Some(index) = r.pop() {
            assert_eq!(index, expected_next);
            expected_next += 1;
        }
    }
}

/// Any sequence of session events (drops, resumes with the right or a
/// wrong token, revokes, time) leaves no request waiting forever and never
/// hands a session to an agent that cannot prove it owns it.
pub fn sessions(data: &[u8]) {
    let ops = crate::simulation::Op::decode(data);
    let outcome = crate::simulation::play(&ops);
    assert!(
        outcome.waiting.is_empty(),
        "{:?} left waiting after {ops:?}",
        outcome.waiting
    );
    assert_eq!(
        outcome.takeovers, 0,
        "a session was taken over after {ops:?}"
    );
}

/// A listing and a query from peers: the input split on NUL bytes into a
/// server's tools (name, description, a parameter's name and description,
/// in turn) and, last, the query a client searches with, as text however
/// it reads. Checks: no panic, at most the limit found, and each tool
/// found is one of the listing's.
pub fn tool_search(data: &[u8]) {
    use crate::search::{ToolDoc, ToolIndex};
    let text = String::from_utf8_lossy(data);
    let mut parts: Vec<&str> = text.split('\0').collect();
    let query = parts.pop().unwrap_or_default();
    let docs: Vec<ToolDoc> = parts
        .chunks(4)
        .map(|tool| {
            let part = |i: usize| tool.get(i).copied().unwrap_or_default();
            ToolDoc {
                name: part(0).to_owned(),
                server: "peer".to_owned(),
                description: part(1).to_owned(),
                input_schema: serde_json::json!({
                    "type": "object",
                    "properties": {part(2): {"type": "string", "description": part(3)}},
                }),
            }
        })
        .collect();
    let index = ToolIndex::build(docs.clone());
    for limit in [1, 5, 20] {
        let hits = index.search(query, limit, None);
        assert!(
            hits.len() <= limit,
            "{} found for limit {limit}",
            hits.len()
        );
        for hit in hits {
            assert!(
                docs.contains(hit.doc),
                "{:?} is not in the listing",
                hit.doc.name
            );
        }
    }
    index.search(query, 5, Some("peer"));
}

/// A server connection driven the way the driver contract in
/// [`crate::http::ServerConn`] says, with the input choosing what the peer
/// sends (well-formed requests numbered in order, or any bytes), how it is
/// split, and when responses (whole, streamed), EOF and polls happen.
/// Checks: no panic; requests come out in the order sent; nothing after
/// an error; HEAD answers carry no body; at most one `100 Continue` per
/// request; what is buffered stays bounded while `wants_read` is obeyed;
/// after EOF the connection ends up wanting to close.
pub fn http_conn(data: &[u8]) {
    conn_fuzz::run(data);
}

mod conn_fuzz {
    use bytes::BytesMut;

    use crate::http::{HttpError, Limits, Request, Response, ServerConn};

    const LIMITS: Limits = Limits {
        max_head: 512,
        max_body: 1024,
        max_pipeline: 256,
        idle_timeout: std::time::Duration::from_secs(60),
    };
    /// The most one read hands the connection.
    const MAX_PIECE: usize = 32 * 16;

    /// Where the response to the current request is.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Answer {
        Idle,
        /// A request (`head`: a HEAD) or an error waits for its response.
        Owed {
            head: bool,
        },
        Streaming {
            head: bool,
        },
    }

    struct Driver {
        conn: ServerConn,
        /// What the peer has sent that the driver has not read yet.
        wire: Vec<u8>,
        answer: Answer,
        next_seq: u32,
        last_seq: Option<u32>,
        failed: bool,
        eof: bool,
        interims: u32,
        out: BytesMut,
    }

    pub(super) fn run(data: &[u8]) {
        let mut d = Driver {
            conn: ServerConn::new(LIMITS, std::time::Instant::now()),
            wire: Vec::new(),
            answer: Answer::Idle,
            next_seq: 0,
            last_seq: None,
            failed: false,
            eof: false,
            interims: 0,
            out: BytesMut::new(),
        };
        let mut input = data;
        while let Some((&op, rest)) = input.split_first() {
            input = rest;
            let arg = op >> 3;
            match op % 8 {
                0 => input = d.send_junk(usize::from(arg) * 4, input),
                1 => d.send_request(arg),
                2 => d.read(usize::from(arg) * 16 + 1),
                3 => d.poll(),
                4 => d.respond_full(),
                5 => d.respond_stream(),
                6 => d.stream(arg & 1 == 0),
                _ => d.eof(),
            }
            d.check();
            if d.conn.wants_close() {
                return;
            }
        }
        // The peer stops: everything whole is answered, then it closes.
        d.eof();
        for _ in 0..64 {
            d.poll();
            d.respond_full();
            d.stream(false);
            if d.conn.wants_close() {
                return;
            }
        }
        panic!("no close after EOF: {:?}", d.answer);
    }

    impl Driver {
        /// Bytes with no `-`, so that only [`Driver::send_request`] can
        /// write a `/seq-N` target.
        fn send_junk<'a>(&mut self, len: usize, input: &'a [u8]) -> &'a [u8] {
            let (junk, rest) = input.split_at(len.min(input.len()));
            self.wire
                .extend(junk.iter().map(|&b| if b == b'-' { b'_' } else { b }));
            rest
        }

        fn send_request(&mut self, kind: u8) {
            let n = self.next_seq;
            self.next_seq += 1;
            let host = "Host: 127.0.0.1\r\n";
            let request = match kind % 8 {
                0 => format!("GET /seq-{n} HTTP/1.1\r\n{host}\r\n"),
                1 => format!("HEAD /seq-{n} HTTP/1.1\r\n{host}\r\n"),
                2 => format!("POST /seq-{n} HTTP/1.1\r\n{host}Content-Length: 3\r\n\r\nabc"),
                3 => format!(
                    "POST /seq-{n} HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                ),
                4 => format!(
                    "POST /seq-{n} HTTP/1.1\r\n{host}Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"
                ),
                5 => format!("GET http://127.0.0.1:8788/seq-{n} HTTP/1.1\r\n{host}\r\n"),
                6 => format!("GET /seq-{n} HTTP/1.0\r\n\r\n"),
                _ => format!("HEAD /seq-{n} HTTP/1.1\r\n{host}Connection: close\r\n\r\n"),
            };
            self.wire.extend_from_slice(request.as_bytes());
        }

        /// One socket read, when the connection wants one, then the
        /// polls a driver makes after a read.
        fn read(&mut self, len: usize) {
            if self.eof || !self.conn.wants_read() || self.wire.is_empty() {
                return;
            }
            let piece: Vec<u8> = self.wire.drain(..len.min(self.wire.len())).collect();
            self.conn.handle_data(&piece);
            let bound = LIMITS
                .max_pipeline
                .max(LIMITS.max_head)
                .max(LIMITS.max_body)
                + 2 * MAX_PIECE;
            assert!(
                self.conn.buffered() <= bound,
                "{} buffered",
                self.conn.buffered()
            );
            self.poll();
        }

        fn eof(&mut self) {
            self.eof = true;
            self.conn.handle_eof();
            assert!(!self.conn.wants_read());
            self.poll();
        }

        fn poll(&mut self) {
            match self.conn.poll_request() {
                Ok(Some(request)) => self.got(&request),
                Ok(None) => self.poll_interim(),
                Err(error) => self.got_error(&error),
            }
        }

        fn got(&mut self, request: &Request) {
            assert!(!self.failed, "a request after an error");
            assert_eq!(self.answer, Answer::Idle, "a request while one is answered");
            if let Some(seq) = request
                .target()
                .strip_prefix("/seq-")
                .and_then(|n| n.parse().ok())
            {
                assert!(self.last_seq < Some(seq), "{seq} after {:?}", self.last_seq);
                self.last_seq = Some(seq);
            }
            self.interims = 0;
            self.answer = Answer::Owed {
                head: request.method == "HEAD",
            };
        }

        fn got_error(&mut self, error: &HttpError) {
            assert!(!self.failed, "a second error");
            assert_eq!(self.answer, Answer::Idle);
            assert!(matches!(error.status(), 400 | 413 | 431));
            self.failed = true;
            self.answer = Answer::Owed { head: false };
        }

        fn poll_interim(&mut self) {
            if let Some(bytes) = self.conn.poll_interim() {
                assert_eq!(&bytes[..], b"HTTP/1.1 100 Continue\r\n\r\n");
                assert_eq!(self.answer, Answer::Idle, "100 while answering");
                assert!(!self.eof && !self.failed);
                self.interims += 1;
                assert_eq!(self.interims, 1, "a second 100 for one request");
            }
        }

        fn respond_full(&mut self) {
            let Answer::Owed { head } = self.answer else {
                return;
            };
            self.out.clear();
            self.conn
                .encode_response(&Response::json(200, "{\"ok\":1}"), &mut self.out);
            assert!(self
                .out
                .ends_with(if head { b"\r\n\r\n" } else { b"{\"ok\":1}" }));
            self.answer = Answer::Idle;
            self.poll();
        }

        fn respond_stream(&mut self) {
            let Answer::Owed { head } = self.answer else {
                return;
            };
            self.out.clear();
            self.conn
                .encode_response(&Response::stream("text/event-stream"), &mut self.out);
            assert!(self.out.ends_with(b"\r\n\r\n"));
            self.answer = Answer::Streaming { head };
        }

        fn stream(&mut self, data: bool) {
            let Answer::Streaming { head } = self.answer else {
                return;
            };
            self.out.clear();
            if data {
                self.conn.encode_data(b"data: x\n\n", &mut self.out);
            } else {
                self.conn.encode_end(&mut self.out);
                self.answer = Answer::Idle;
            }
            assert!(!head || self.out.is_empty(), "a HEAD answer with a body");
            if self.answer == Answer::Idle {
                self.poll();
            }
        }

        /// What holds between any two calls.
        fn check(&self) {
            let answering = self.answer != Answer::Idle;
            assert_eq!(self.conn.is_idle(), !answering);
            assert!(!self.conn.wants_close() || !answering);
            if self.eof {
                assert!(!self.conn.wants_read());
            }
        }
    }
}

/// A line the walk over its text reads is read as serde_json reads it,
/// and what is read of a message's params without their tree (`name`,
/// `_meta`) is what the tree says.
fn reads_agree(line: &[u8]) {
    use crate::mcp::{self, Message};
    let Ok(text) = std::str::from_utf8(line) else {
        return;
    };
    mcp::assert_walk_reads_as_serde_json(text);
    let Ok(Message::Request { params, .. } | Message::Notification { params, .. }) =
        mcp::parse(text)
    else {
        return;
    };
    let (name, meta) = (params.name().clone(), params.meta().clone());
    let null = serde_json::Value::Null;
    assert_eq!(&name, params.get("name").unwrap_or(&null));
    assert_eq!(&meta, params.get("_meta").unwrap_or(&null));
}

/// Anything clients and a bridged child send, in any order, never breaks
/// the MCP bridge, and what it holds stays bounded: each input line is one
/// event, its first byte saying which (a POST, GET or DELETE on
/// `/mcp/echo` in the session generation or the stateless one, a REST
/// call, a WebSocket frame, a line or an exit of the child, a connection
/// closing, time passing), the rest its body. Sessions are named by the
/// ids the bridge handed out. A deadline, once handled, is never the
/// next one again.
pub fn bridge(data: &[u8]) {
    use crate::bridge::{BridgeOutput, ChildId, Limits, Routed, ServerSpec};
    use crate::gateway::Bridge;
    use crate::http::{Body, Request};
    use crate::Output;
    use bytes::Bytes;
    use std::time::Duration;

    let mut now = Instant::now();
    let spec = ServerSpec::new("echo", vec!["echo-mcp".into()]);
    let mut bridge = Bridge::new(vec![spec], Limits::default(), [1; 32], now);
    let mut sessions: Vec<String> = Vec::new();
    let mut children: Vec<ChildId> = Vec::new();
    for (n, line) in data.split(|&b| b == b'\n').enumerate() {
        let Some((&kind, rest)) = line.split_first() else {
            continue;
        };
        reads_agree(rest);
        let conn = ConnId(1 + (n as u64 % 8));
        let body = Bytes::copy_from_slice(rest);
        let session = sessions
            .get(usize::from(kind) % sessions.len().max(1))
            .cloned();
        let mut headers = Vec::new();
        let mut add = |name: &str, value: &str| headers.push((name.to_owned(), value.to_owned()));
        let request = |method: &str, target: &str, headers| {
            Request::new(method, target, headers, body.clone())
                .expect("the paths below are canonical")
        };
        match kind % 12 {
            0 | 1 | 2 => {
                if let (Some(id), true) = (&session, kind % 12 != 0) {
                    add("mcp-session-id", id);
                }
                let method = ["POST", "GET", "DELETE"][usize::from(kind / 12) % 3];
                bridge.handle_request(conn, request(method, "/mcp/echo", headers), now);
            }
            3 => {
                add("mcp-protocol-version", "2026-07-28");
                add("mcp-method", "tools/call");
                bridge.handle_request(conn, request("POST", "/mcp/echo", headers), now);
            }
            4 => {
                let path = [
                    "/tools/call",
                    "/sessions",
                    "/tools/discover",
                    "/stats",
                    "/integrations",
                ][usize::from(kind / 12) % 5];
                bridge.handle_request(conn, request("POST", path, headers), now);
            }
            5 => bridge.handle_socket_text(conn, &String::from_utf8_lossy(rest), now),
            6 | 7 => {
                if let Some(&child) = children.get(usize::from(kind) % children.len().max(1)) {
                    bridge.handle_child_line(child, &*String::from_utf8_lossy(rest), now);
                }
            }
            8 => {
                if let Some(&child) = children.first() {
                    bridge.handle_child_exit(child, &String::from_utf8_lossy(rest), now);
                }
            }
            9 => bridge.handle_conn_closed(conn, now),
            10 => {
                now += Duration::from_millis(u64::from(rest.first().copied().unwrap_or(1)) * 100);
                bridge.handle_timeout(now);
                // A handled deadline is never the next one again: the
                // runtime would wake for it without end.
                assert!(
                    bridge.poll_timeout().is_none_or(|next| next > now),
                    "a deadline handled at {now:?} is still the next one"
                );
            }
            _ => bridge.handle_slow_conn(conn, now),
        }
        while let Some(routed) = bridge.poll_output() {
            match routed {
                Routed::Child {
                    child,
                    action: BridgeOutput::Spawn { .. },
                } => {
                    children.push(child);
                    bridge.handle_spawned(child, now);
                }
                Routed::Http(Output::Respond { response, .. }) => {
                    if let Some(id) = response.header("mcp-session-id") {
                        if !sessions.iter().any(|s| s == id) && sessions.len() < 16 {
                            sessions.push(id.to_owned());
                        }
                    }
                    // Every answer the bridge makes is JSON (or a bare 202).
                    if let Body::Full(body) = &response.body {
                        let json = serde_json::from_slice::<serde_json::Value>(body).is_ok();
                        assert!(
                            json || (body.is_empty() && response.status == 202),
                            "{response:?}"
                        );
                    }
                }
                _ => {}
            }
        }
        assert!(bridge.sessions() <= Limits::default().max_sessions);
    }
    bridge.stop(now);
    while bridge.poll_output().is_some() {}
}

/// An ACP agent, whatever it prints (split anywhere) before it exits: the
/// editor's turn gets exactly one final frame — its last chunk or an error
/// — and no frame after it. An odd split byte offers the editor's tools as
/// text, so the answer's text is scanned for their calls.
pub fn acp_agent(data: &[u8]) {
    use crate::agent::acp::{permission::Policy, AcpAgent, AcpPlan, EditorTools};
    use crate::agent::exec::ToolLink;
    use crate::agent::process::{Exit, ProcessAgent, RunId};
    use std::time::Duration;

    let Some((&split, output)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let plan = AcpPlan {
        model: "acp".into(),
        command: vec!["agent".into()],
        env: Vec::new(),
        cwd: "/".into(),
        timeout: Duration::from_secs(60),
        start_timeout: Duration::from_secs(5),
        max_sessions: 2,
        max_processes: 1,
        idle: Duration::from_secs(60),
        max_queued: 4,
        policy: Policy::Never,
        show_tools: true,
        login: None,
        tools: (split % 2 == 1).then(|| ToolLink {
            relay: vec!["relay".into()],
            seed: [1; 32],
            wait: Duration::from_secs(60),
            cli_tools: false,
            search: Default::default(),
        }),
        editor_tools: EditorTools::Text,
        shared_servers: false,
        spare_when_idle: false,
        own_tools_off: None,
    };
    let mut agent = AcpAgent::new(plan, "fuzz", now);
    let invoke = r#"{"type":"model_invoke","id":"inv-1","payload":{"kind":"chat","messages":[{"role":"user","content":"Hi"}],"parameters":{"tools":[{"type":"function","function":{"name":"weather"}}]}}}"#;
    agent.handle_message(invoke, now);
    let at = usize::from(split).min(output.len());
    let (first, second) = output.split_at(at);
    agent.handle_stdout(RunId(0), first, now);
    agent.handle_stdout(RunId(0), second, now);
    let exit = Exit::Exited {
        code: Some(0),
        stderr: String::new(),
    };
    agent.handle_exit(RunId(0), exit, now);
    // A turn still waiting goes to the restarted agent, which here cannot
    // start: it fails then.
    for _ in 0..4 {
        while let Some(action) = agent.poll_action() {
            if let crate::agent::process::Action::Spawn { run, .. } = action {
                agent.handle_exit(run, Exit::NotStarted("gone".into()), now);
            }
        }
        match agent.poll_timeout() {
            Some(at) => agent.handle_timeout(at),
            None => break,
        }
    }
    let mut finals = 0;
    while let Some(frame) = agent.poll_transmit() {
        let Ok(frame) = serde_json::from_str::<serde_json::Value>(&frame) else {
            continue;
        };
        if frame["id"] != "inv-1" {
            continue;
        }
        assert_eq!(finals, 0, "a frame after the final one: {frame}");
        if frame["type"] == "error" || !frame["finish_reason"].is_null() {
            finals += 1;
        }
    }
    assert_eq!(finals, 1, "the turn got no final frame");
}

/// A remote MCP server answering the bridge's client with arbitrary bytes:
/// the first byte picks the transport and where the bytes are split; the
/// rest is read as the HTTP response to each exchange the client starts,
/// in turn. Whatever it answers, nothing panics, and no request the bridge
/// sent is left waiting: each gets an answer (the server's, or an error).
/// (One the server answers twice, or under another's id, is the bridge's
/// to drop, as it drops a child's.)
pub fn upstream(data: &[u8]) {
    use crate::http::{ResponseEvent, ResponseReader, Url};
    use crate::upstream::{Remote, Transport, Upstream, UpstreamOutput};
    use std::collections::{HashMap, VecDeque};

    let Some((&first, answer)) = data.split_first() else {
        return;
    };
    let Ok(url) = Url::parse("http://127.0.0.1:9/mcp") else {
        return;
    };
    let mut remote = Remote::new(url);
    remote.transport = if first & 1 == 1 {
        Transport::Sse
    } else {
        Transport::Auto
    };
    let split = usize::from(first >> 1).max(1);
    let now = Instant::now();
    let mut up = Upstream::new("fuzz", remote);
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{}}}"#;
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#;
    up.send(init.to_owned(), now);
    up.send(call.to_owned(), now);
    let mut answered: HashMap<u64, usize> = HashMap::new();
    let mut exchanges = VecDeque::new();
    let mut rounds = 0;
    let mut wakes = 0;
    loop {
        let mut due = None;
        while let Some(output) = up.poll_output() {
            match output {
                UpstreamOutput::Send { id, request, .. } => exchanges.push_back((id, request)),
                UpstreamOutput::WakeAt(at) => due = Some(at),
                UpstreamOutput::Line(line) | UpstreamOutput::Answer(line, _) => {
                    if let Some(answer) = crate::mcp::answer(&line) {
                        *answered.entry(answer.id).or_default() += 1;
                    } else if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if let Some(id) = v.get("id").and_then(serde_json::Value::as_u64) {
                            if v.get("method").is_none() {
                                *answered.entry(id).or_default() += 1;
                            }
                        }
                    }
                }
                UpstreamOutput::Unauthorized { .. } => {
                    up.handle_token(Err("no login".into()), now);
                }
                UpstreamOutput::Abort(_)
                | UpstreamOutput::Gone(_)
                | UpstreamOutput::Sessionless
                | UpstreamOutput::Status(_) => {}
            }
        }
        // A call's stream to ask for again: its time comes at once.
        if let Some(at) = due.filter(|_| wakes < 16) {
            wakes += 1;
            up.handle_timeout(at);
            continue;
        }
        rounds += 1;
        let Some((id, request)) = exchanges.pop_front() else {
            break;
        };
        if rounds > 16 {
            up.handle_failed(id, "the fuzzer's connection ended", true, now);
            continue;
        }
        let mut reader = ResponseReader::new(request.method, 1 << 20);
        let mut ended = false;
        let mut events = Vec::new();
        for piece in answer.chunks(split) {
            match reader.push(piece, &mut events) {
                Ok(()) => {
                    for event in events.drain(..) {
                        match event {
                            ResponseEvent::Head(head) => up.handle_head(id, &head, now),
                            ResponseEvent::Data(data) => up.handle_data(id, &data),
                            ResponseEvent::End => {
                                up.handle_end(id, now);
                                ended = true;
                            }
                        }
                    }
                }
                Err(_) => break,
            }
            if ended {
                break;
            }
        }
        if !ended {
            up.handle_failed(id, "the fuzzer's connection ended", true, now);
        }
    }
    for id in [1, 2] {
        let count = answered.get(&id).copied().unwrap_or(0);
        assert!(count >= 1, "request {id} was left waiting");
    }
}

/// An MCP host (`agent mcp`'s peer) sending arbitrary bytes, split
/// anywhere, with editor requests arriving before and between: nothing
/// panics, every line to the host is JSON, and time always moves on — a
/// handled deadline is never the next one again (a held call that cannot
/// end would have the runtime wake for it forever).
pub fn host_agent(data: &[u8]) {
    use crate::agent::host::{HostAgent, HostPlan};

    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let mut agent = HostAgent::new(HostPlan {
        model: "host".into(),
        sampling: split % 2 == 1,
    });
    let invoke = |id: &str| {
        format!(
            r#"{{"type":"model_invoke","id":"{id}","session_id":"s","payload":{{"kind":"chat","messages":[{{"role":"user","content":"Hi"}}],"parameters":{{"stream":true}}}}}}"#
        )
    };
    let mut now = Instant::now();
    agent.handle_provider_message(&invoke("inv-1"));
    let at = usize::from(split).min(input.len());
    let (first, second) = input.split_at(at);
    agent.handle_host_bytes(first, now);
    agent.handle_provider_message(&invoke("inv-2"));
    agent.handle_host_bytes(second, now);
    for _ in 0..64 {
        let Some(due) = agent.poll_timeout() else {
            break;
        };
        now = now.max(due);
        agent.handle_timeout(now);
        assert!(
            agent.poll_timeout().is_none_or(|next| next > now),
            "a deadline handled at {now:?} is still the next one"
        );
    }
    while let Some(line) = agent.poll_host() {
        assert!(
            serde_json::from_str::<serde_json::Value>(&line).is_ok(),
            "not JSON: {line}"
        );
    }
    while agent.poll_provider().is_some() {}
}
