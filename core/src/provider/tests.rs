//! Deterministic tests of the whole provider: an in-memory editor ↔ core ↔
//! agent pair on a virtual clock.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde_json::{json, Value};

use super::*;
use crate::agent::close::PINGS_MISSED;
use crate::http::{Body, Request, Response, ServerConn};
use crate::stream::Answering;
use crate::Approval;

const EDITOR: ConnId = ConnId(1);
const AGENT: ConnId = ConnId(100);

struct Pair {
    p: Provider,
    t0: Instant,
    now: Instant,
    /// Everything output so far, not yet looked at, answers as their
    /// editor's connection writes them.
    seen: Vec<Output>,
    editors: crate::stream::EditorSides,
}

impl Pair {
    fn new(tweak: impl FnOnce(&mut Config)) -> Pair {
        let mut config = Config::new(&["key"], "bridge");
        config.id_seed = 7;
        tweak(&mut config);
        let t0 = Instant::now();
        Pair {
            p: Provider::new(
                config,
                t0,
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            ),
            t0,
            now: t0,
            seen: Vec::new(),
            editors: Default::default(),
        }
    }

    fn drain(&mut self) {
        while let Some(o) = self.p.poll_output() {
            let seen = &mut self.seen;
            self.editors.carry(o, |o| seen.push(o));
        }
    }

    fn advance_to(&mut self, at: Instant) {
        self.now = at;
        self.p.handle_timeout(at);
        self.drain();
    }

    fn request(
        &mut self,
        conn: ConnId,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) {
        let mut h: Vec<(String, String)> = vec![
            ("host".into(), "127.0.0.1:8788".into()),
            ("authorization".into(), "Bearer key".into()),
        ];
        for (k, v) in headers {
            h.retain(|(name, _)| name != k);
            h.push((k.to_string(), v.to_string()));
        }
        let body = if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(body.to_string())
        };
        self.p.handle_request(
            conn,
            Request::new(method, path, h, body).expect("a canonical path"),
            self.now,
        );
        self.drain();
    }

    fn chat(&mut self, conn: ConnId, stream: bool) {
        let body = json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
        self.request(conn, "POST", "/v1/chat/completions", &[], body);
    }

    fn agent(&mut self, conn: ConnId, msg: Value) {
        self.p.handle_agent_text(conn, &msg.to_string(), self.now);
        self.drain();
    }

    fn connect_agent(&mut self, conn: ConnId, register: Value) {
        self.p.open_agent(conn, "agent");
        self.agent(conn, register);
    }

    /// Frames sent to an agent since last asked.
    fn agent_frames(&mut self, conn: ConnId) -> Vec<Value> {
        let (mine, rest): (Vec<Output>, Vec<Output>) = std::mem::take(&mut self.seen)
            .into_iter()
            .partition(|o| matches!(o, Output::ToAgent { conn: c, .. } if *c == conn));
        self.seen = rest;
        mine.into_iter()
            .map(|o| match o {
                Output::ToAgent { text, .. } => serde_json::from_str(&text).unwrap(),
                _ => unreachable!(),
            })
            .collect()
    }

    /// What an editor connection received since last asked: status (if a
    /// response started), body bytes, and whether it ended.
    fn editor(&mut self, conn: ConnId) -> (Option<u16>, Vec<u8>, bool) {
        let (mine, rest): (Vec<Output>, Vec<Output>) = std::mem::take(&mut self.seen)
            .into_iter()
            .partition(|o| match o {
                Output::Respond { to, .. } | Output::Data { to, .. } | Output::End { to } => {
                    to.conn == conn
                }
                _ => false,
            });
        self.seen = rest;
        let (mut status, mut body, mut ended) = (None, Vec::new(), false);
        for o in mine {
            match o {
                Output::Respond { response, .. } => {
                    status = Some(response.status);
                    if let Body::Full(b) = response.body {
                        body.extend_from_slice(&b);
                        ended = true;
                    }
                }
                Output::Data { data, .. } => body.extend_from_slice(&data),
                Output::End { .. } => ended = true,
                _ => {}
            }
        }
        (status, body, ended)
    }

    /// The response (head) a connection got, taking every output seen.
    fn response(&mut self, conn: ConnId) -> Response {
        std::mem::take(&mut self.seen)
            .into_iter()
            .find_map(|o| match o {
                Output::Respond { to, response } if to.conn == conn => Some(response),
                _ => None,
            })
            .expect("a response")
    }

    fn last_invoke_id(&mut self, agent: ConnId) -> String {
        let frames = self.agent_frames(agent);
        let invoke = frames
            .iter()
            .rev()
            .find(|f| f["type"] == "model_invoke")
            .expect("an invoke");
        invoke["id"].as_str().unwrap().to_owned()
    }
}

fn register(ttl: u64) -> Value {
    json!({"type": "register", "agent_id": "a", "models": ["m"], "ttl_seconds": ttl})
}

fn chunk(id: &str, index: u64, text: &str, finish: Option<&str>) -> Value {
    json!({"type": "model_stream_chunk", "id": id, "chunk_index": index,
           "delta": {"content": text}, "finish_reason": finish})
}

#[test]
fn session_expires_at_its_exact_deadline_and_renew_moves_it() {
    let mut t = Pair::new(|_| {});
    t.connect_agent(AGENT, register(10));
    let registered = t.agent_frames(AGENT);
    assert_eq!(registered[0]["status"], "active");
    let id = registered[0]["session_id"].as_str().unwrap().to_owned();
    assert_eq!(t.p.poll_timeout(), Some(t.t0 + Duration::from_secs(10)));

    // Renew at 5 s for 10 s more: the deadline is 15 s.
    t.advance_to(t.t0 + Duration::from_secs(5));
    t.agent(
        AGENT,
        json!({"type": "renew", "session_id": id, "ttl_seconds": 10}),
    );
    assert_eq!(t.agent_frames(AGENT)[0]["type"], "registered");
    assert_eq!(t.p.poll_timeout(), Some(t.t0 + Duration::from_secs(15)));

    t.advance_to(t.t0 + Duration::from_secs(15) - Duration::from_nanos(1));
    assert!(t.agent_frames(AGENT).is_empty());
    t.chat(EDITOR, false);
    let inv = t.last_invoke_id(AGENT);

    t.advance_to(t.t0 + Duration::from_secs(15));
    let frames = t.agent_frames(AGENT);
    assert_eq!(frames[0], json!({"type": "expired", "session_id": id}));
    // The request in flight may still finish after expiry.
    t.agent(AGENT, chunk(&inv, 0, "done", Some("stop")));
    assert_eq!(t.editor(EDITOR).0, Some(200));
    t.chat(ConnId(2), false);
    let (status, body, _) = t.editor(ConnId(2));
    assert_eq!(status, Some(503));
    assert!(String::from_utf8(body).unwrap().contains("expired"));
}

#[test]
fn whole_answer_timeout_answers_504_and_cancels_the_agent() {
    let mut t = Pair::new(|c| c.request_timeout = Duration::from_secs(5));
    t.connect_agent(AGENT, register(3600));
    t.chat(EDITOR, false);
    let id = t.last_invoke_id(AGENT);
    t.advance_to(t.t0 + Duration::from_secs(5) - Duration::from_nanos(1));
    assert_eq!(t.editor(EDITOR).0, None);
    t.advance_to(t.t0 + Duration::from_secs(5));
    let (status, body, ended) = t.editor(EDITOR);
    assert_eq!(status, Some(504));
    assert!(ended);
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["error"]["type"], "timeout");
    assert_eq!(
        t.agent_frames(AGENT),
        vec![json!({"type": "cancel", "id": id})]
    );
    // A late answer for it is dropped and counted.
    t.agent(AGENT, chunk(&id, 0, "late", Some("stop")));
    assert_eq!(t.p.stats().dropped_messages, 1);
    assert_eq!(t.editor(EDITOR), (None, Vec::new(), false));
}

/// What an editor's whole chat gets when its agent answers with `error`:
/// the status, the body, and whether it ended.
fn refused_by_agent(error: Value) -> (Option<u16>, Vec<u8>, bool) {
    let mut t = Pair::new(|_| {});
    t.connect_agent(AGENT, register(3600));
    t.chat(EDITOR, false);
    let id = t.last_invoke_id(AGENT);
    t.agent(AGENT, json!({"type": "error", "id": id, "error": error}));
    t.editor(EDITOR)
}

#[test]
fn an_agent_that_finds_the_conversation_too_long_is_a_400_the_editor_can_act_on() {
    let (status, body, ended) = refused_by_agent(
        json!({"message": "too long for `cursor-agent`", "code": "context_length_exceeded"}),
    );
    assert_eq!(status, Some(400));
    assert!(ended);
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["error"]["code"], "context_length_exceeded");
    assert_eq!(err["error"]["message"], "too long for `cursor-agent`");
}

#[test]
fn quiet_stream_gets_keepalives_then_idle_timeout() {
    let mut t = Pair::new(|c| {
        c.stream_idle_timeout = Duration::from_secs(3);
        c.keepalive_interval = Duration::from_secs(1);
    });
    t.connect_agent(AGENT, register(3600));
    t.chat(EDITOR, true);
    let id = t.last_invoke_id(AGENT);
    assert_eq!(t.editor(EDITOR).0, Some(200));
    t.advance_to(t.t0 + Duration::from_secs(1));
    assert_eq!(t.editor(EDITOR).1, b": keep-alive\n\n");
    // A chunk resets both the keep-alive and the idle deadline.
    t.now = t.t0 + Duration::from_millis(1500);
    t.agent(AGENT, chunk(&id, 0, "a", None));
    t.advance_to(t.t0 + Duration::from_millis(2000));
    let (_, body, _) = t.editor(EDITOR);
    assert!(!String::from_utf8(body).unwrap().contains("keep-alive"));
    t.advance_to(t.t0 + Duration::from_millis(2500));
    assert_eq!(t.editor(EDITOR).1, b": keep-alive\n\n");
    t.advance_to(t.t0 + Duration::from_millis(4500));
    let (_, body, ended) = t.editor(EDITOR);
    let text = String::from_utf8(body).unwrap();
    assert!(ended);
    assert!(text.contains(r#""type":"timeout""#), "{text}");
    assert_eq!(t.agent_frames(AGENT).last().unwrap()["type"], "cancel");
}

#[test]
fn an_answer_that_ended_leaves_no_wake_up_behind() {
    let mut t = Pair::new(|c| {
        c.keepalive_interval = Duration::from_secs(1);
        c.agent_ping_interval = Duration::from_secs(1000);
    });
    t.connect_agent(AGENT, register(3600));
    let before = t.p.poll_timeout();
    for _ in 0..3 {
        t.chat(EDITOR, true);
        let id = t.last_invoke_id(AGENT);
        assert!(
            t.p.poll_timeout() < before,
            "a stream waits for its keep-alive"
        );
        t.agent(AGENT, chunk(&id, 0, "a", Some("stop")));
        assert!(t.editor(EDITOR).2, "the stream ended");
        assert_eq!(t.p.poll_timeout(), before, "and its keep-alive is gone");
    }
}

/// Every order of four chunks (with the duplicates of each) gives the
/// same bytes.
#[test]
fn chunks_in_any_order_with_duplicates_give_identical_bytes() {
    let words = ["Hel", "lo ", "wor", "ld"];
    let run = |order: &[usize], dup: bool| {
        let mut t = Pair::new(|_| {});
        t.connect_agent(AGENT, register(3600));
        t.chat(EDITOR, true);
        let id = t.last_invoke_id(AGENT);
        for &i in order {
            let finish = (i == words.len() - 1).then_some("stop");
            t.agent(AGENT, chunk(&id, i as u64, words[i], finish));
            if dup {
                t.agent(AGENT, chunk(&id, i as u64, "DUPLICATE", finish));
            }
        }
        let (_, body, ended) = t.editor(EDITOR);
        assert!(ended);
        body
    };
    let reference = run(&[0, 1, 2, 3], false);
    let text = String::from_utf8(reference.clone()).unwrap();
    assert!(text.contains("\"Hel\"") && text.ends_with("data: [DONE]\n\n"));
    let mut order = [0, 1, 2, 3];
    // All 24 permutations (Heap's algorithm).
    let mut c = [0usize; 4];
    let mut i = 0;
    assert_eq!(run(&order, true), reference);
    while i < 4 {
        if c[i] < i {
            if i % 2 == 0 {
                order.swap(0, i)
            } else {
                order.swap(c[i], i)
            }
            assert_eq!(run(&order, true), reference, "order {order:?}");
            assert_eq!(run(&order, false), reference, "order {order:?}");
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
}

#[test]
fn a_gap_that_overflows_the_buffer_ends_the_stream_with_an_error() {
    let mut t = Pair::new(|c| c.max_held_chunks = 2);
    t.connect_agent(AGENT, register(3600));
    t.chat(EDITOR, true);
    let id = t.last_invoke_id(AGENT);
    for i in 1..=3 {
        t.agent(AGENT, chunk(&id, i, "x", None));
    }
    let (_, body, ended) = t.editor(EDITOR);
    assert!(ended);
    assert!(String::from_utf8(body).unwrap().contains("stream broken"));
    assert_eq!(t.agent_frames(AGENT).last().unwrap()["type"], "cancel");
}

#[test]
fn agent_disconnect_mid_stream_ends_the_editor_stream_at_once() {
    let mut t = Pair::new(|_| {});
    t.connect_agent(AGENT, register(3600));
    t.chat(EDITOR, true);
    let id = t.last_invoke_id(AGENT);
    t.agent(AGENT, chunk(&id, 0, "par", None));
    t.p.handle_conn_closed(AGENT, t.now);
    t.drain();
    let (_, body, ended) = t.editor(EDITOR);
    let text = String::from_utf8(body).unwrap();
    assert!(ended);
    assert!(
        text.contains("\"par\"") && text.contains("disconnected"),
        "{text}"
    );
    assert_eq!(t.p.in_flight(), 0);
    // With the link gone the model is unavailable, not unknown.
    t.chat(ConnId(2), false);
    assert_eq!(t.editor(ConnId(2)).0, Some(503));
}

/// Upgrades `conn` to an agent link as a WebSocket client would.
fn upgrade_agent(t: &mut Pair, conn: ConnId) {
    let upgrade = [
        ("authorization", "Bearer bridge"),
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];
    t.request(conn, "GET", "/v1/agent", &upgrade, Value::Null);
    let accepted = std::mem::take(&mut t.seen);
    assert!(
        matches!(
            accepted.as_slice(),
            [Output::AcceptAgent { conn: c, ping_every, .. }]
                if *c == conn && *ping_every == t.p.config.agent_ping_interval
        ),
        "{accepted:?}"
    );
}

#[test]
fn an_agent_silent_for_three_pings_is_closed_and_given_nothing_more() {
    const SILENT: ConnId = ConnId(101);
    let every = Duration::from_secs(10);
    let mut t = Pair::new(|c| c.agent_ping_interval = every);
    for conn in [AGENT, SILENT] {
        upgrade_agent(&mut t, conn);
        t.agent(conn, register(3600));
        assert_eq!(t.agent_frames(conn)[0]["type"], "registered");
    }
    let closed = |t: &mut Pair| {
        let (closes, rest): (Vec<Output>, Vec<Output>) = std::mem::take(&mut t.seen)
            .into_iter()
            .partition(|o| matches!(o, Output::CloseAgent { .. }));
        t.seen = rest;
        closes
            .iter()
            .map(|o| match o {
                Output::CloseAgent { conn, why } => (*conn, *why),
                _ => unreachable!(),
            })
            .collect::<Vec<_>>()
    };
    // Two pings go unanswered by one, answered by the other: both are
    // pinged still.
    for n in 1..PINGS_MISSED {
        t.advance_to(t.t0 + every * n);
        assert!(closed(&mut t).is_empty());
        for conn in [AGENT, SILENT] {
            assert_eq!(t.agent_frames(conn), [json!({"type": "ping"})]);
        }
        t.agent(AGENT, json!({"type": "pong"}));
    }
    // The third: the silent link is closed, not pinged; the other is.
    t.advance_to(t.t0 + every * PINGS_MISSED);
    assert_eq!(closed(&mut t), [(SILENT, LinkClose::Silent)]);
    assert!(t.agent_frames(SILENT).is_empty());
    assert_eq!(t.agent_frames(AGENT), [json!({"type": "ping"})]);
    // Until its connection ends, every request goes to the other agent.
    for editor in 1..=4 {
        t.chat(ConnId(editor), true);
        assert_eq!(t.agent_frames(AGENT)[0]["type"], "model_invoke");
        assert!(t.agent_frames(SILENT).is_empty());
    }
    // It is closed once; the other, answering, never.
    t.advance_to(t.t0 + every * (PINGS_MISSED + 1));
    assert!(closed(&mut t).is_empty());
    assert_eq!(t.agent_frames(AGENT), [json!({"type": "ping"})]);
    t.p.handle_conn_closed(SILENT, t.now);
    t.drain();
    t.agent(AGENT, json!({"type": "pong"}));
    t.advance_to(t.t0 + every * (PINGS_MISSED + 2));
    assert!(closed(&mut t).is_empty());
    assert_eq!(t.agent_frames(AGENT), [json!({"type": "ping"})]);
}

#[test]
fn an_agent_the_driver_opened_is_never_closed_for_its_silence() {
    let every = Duration::from_secs(10);
    let mut t = Pair::new(|c| c.agent_ping_interval = every);
    t.connect_agent(AGENT, register(3600));
    t.advance_to(t.t0 + every * (PINGS_MISSED * 5));
    assert!(!t
        .seen
        .iter()
        .any(|o| matches!(o, Output::CloseAgent { .. })));
}

#[test]
fn editor_disconnect_sends_cancel() {
    let mut t = Pair::new(|_| {});
    t.connect_agent(AGENT, register(3600));
    t.chat(EDITOR, true);
    let id = t.last_invoke_id(AGENT);
    t.p.handle_conn_closed(EDITOR, t.now);
    t.drain();
    assert_eq!(
        t.agent_frames(AGENT),
        vec![json!({"type": "cancel", "id": id})]
    );
    assert_eq!(t.p.in_flight(), 0);
    assert_eq!(t.p.sessions().iter().next().unwrap().in_flight, 0);
}

#[test]
fn manual_approval_then_revoke() {
    let mut t = Pair::new(|c| c.approval = Approval::Manual);
    t.connect_agent(AGENT, register(3600));
    let reg = t.agent_frames(AGENT);
    assert_eq!(reg[0]["status"], "pending");
    let sid = reg[0]["session_id"].as_str().unwrap().to_owned();
    t.chat(EDITOR, false);
    let (status, body, _) = t.editor(EDITOR);
    assert_eq!(status, Some(503));
    assert!(String::from_utf8(body).unwrap().contains("approval"));

    let bridge = [("authorization", "Bearer bridge")];
    t.request(
        ConnId(9),
        "POST",
        "/control/approve",
        &bridge,
        json!({"session_id": sid}),
    );
    assert_eq!(t.editor(ConnId(9)).0, Some(200));
    assert_eq!(
        t.agent_frames(AGENT),
        vec![json!({"type": "approved", "session_id": sid})]
    );

    t.chat(EDITOR, true);
    assert_eq!(t.editor(EDITOR).0, Some(200));
    t.request(
        ConnId(9),
        "POST",
        "/control/revoke",
        &bridge,
        json!({"session_id": sid}),
    );
    let (_, body, ended) = t.editor(EDITOR);
    assert!(ended && String::from_utf8(body).unwrap().contains("revoked"));
    let frames = t.agent_frames(AGENT);
    assert!(frames.iter().any(|f| f["type"] == "cancel"));
    assert!(frames
        .iter()
        .any(|f| *f == json!({"type": "revoked", "session_id": sid})));
    assert!(t
        .seen
        .iter()
        .any(|o| matches!(o, Output::CloseAgent { conn: AGENT, .. })));
    // Revoked while its link still closes: not found again.
    t.request(
        ConnId(9),
        "POST",
        "/control/revoke",
        &bridge,
        json!({"session_id": sid}),
    );
    assert_eq!(t.editor(ConnId(9)).0, Some(404));
    // The control API needs the bridge token, not an API key.
    t.request(ConnId(9), "GET", "/control/sessions", &[], Value::Null);
    assert_eq!(t.editor(ConnId(9)).0, Some(401));
}

#[test]
fn max_requests_suspends_and_pinning_picks_the_session() {
    let mut t = Pair::new(|_| {});
    t.connect_agent(
        AGENT,
        json!({"type": "register", "agent_id": "a", "models": ["m"], "max_requests": 1}),
    );
    t.connect_agent(ConnId(101), register(3600));
    let second = t.agent_frames(ConnId(101))[0]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.agent_frames(AGENT);
    // Least in flight: both idle, the one with fewer requests wins; pinning overrides.
    t.request(
        EDITOR,
        "POST",
        "/v1/chat/completions",
        &[("x-mcp-session", &second)],
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(t.agent_frames(ConnId(101)).len(), 1);
    t.chat(ConnId(2), false);
    assert_eq!(
        t.agent_frames(AGENT).len(),
        1,
        "the idle session gets the next request"
    );
    // The first session has spent its single request.
    t.chat(ConnId(3), false);
    assert_eq!(t.agent_frames(ConnId(101)).len(), 1);
    let s =
        t.p.sessions()
            .iter()
            .find(|s| s.link == Some(AGENT))
            .unwrap();
    assert_eq!(s.status, crate::session::Status::Suspended);
}

#[test]
fn no_agent_is_503_unknown_model_is_404() {
    let mut t = Pair::new(|_| {});
    t.chat(EDITOR, false);
    let (status, body, _) = t.editor(EDITOR);
    assert_eq!(status, Some(503));
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("mcp-provider agent echo"));
    t.connect_agent(AGENT, register(3600));
    t.request(
        EDITOR,
        "POST",
        "/api/chat",
        &[],
        json!({"model": "zzz", "messages": [{"role": "user", "content": "x"}]}),
    );
    let (status, body, _) = t.editor(EDITOR);
    assert_eq!(status, Some(404));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("zzz"),
        "Ollama-shaped error"
    );
}

#[test]
fn rate_limit_answers_429_then_refills() {
    let mut t = Pair::new(|c| c.requests_per_minute = 2);
    t.connect_agent(AGENT, register(3600));
    for conn in [1, 2] {
        t.request(ConnId(conn), "GET", "/v1/models", &[], Value::Null);
        t.chat(ConnId(conn), false);
    }
    t.chat(ConnId(3), false);
    let limited = t.response(ConnId(3));
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("30"));
    assert_eq!(limited.header("x-ratelimit-remaining-requests"), Some("0"));
    t.now = t.t0 + Duration::from_secs(30);
    t.chat(ConnId(4), false);
    assert_eq!(
        t.editor(ConnId(4)).0,
        None,
        "admitted and waiting for the agent"
    );
}

#[test]
fn foreign_host_or_origin_is_refused_local_origin_gets_cors() {
    let mut t = Pair::new(|_| {});
    t.request(
        EDITOR,
        "GET",
        "/v1/models",
        &[("host", "evil.example:8788")],
        Value::Null,
    );
    assert_eq!(t.editor(EDITOR).0, Some(403));
    t.request(
        EDITOR,
        "GET",
        "/v1/models",
        &[("origin", "http://evil.example")],
        Value::Null,
    );
    assert_eq!(t.editor(EDITOR).0, Some(403));
    t.request(
        EDITOR,
        "OPTIONS",
        "/v1/chat/completions",
        &[("origin", "http://localhost:3000")],
        Value::Null,
    );
    let response = t.response(EDITOR);
    assert_eq!(response.status, 204);
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
}

/// The usage an answer ends with is the router's one count: estimated
/// from what was streamed, or what the agent reported.
#[test]
fn an_answer_reports_the_usage_the_router_counted() {
    let mut t = Pair::new(|_| {});
    t.connect_agent(AGENT, register(3600));
    let usage_of = |t: &mut Pair, reported: Value| {
        let body = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hi"}]});
        t.request(EDITOR, "POST", "/v1/chat/completions", &[], body);
        let id = t.last_invoke_id(AGENT);
        t.agent(AGENT, chunk(&id, 0, "12345678", None));
        t.agent(
            AGENT,
            json!({"type": "model_stream_chunk", "id": id, "chunk_index": 1,
            "delta": {"content": "é"}, "finish_reason": "stop", "usage": reported}),
        );
        let (_, body, ended) = t.editor(EDITOR);
        assert!(ended);
        let body = String::from_utf8(body).unwrap();
        let last = body
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .last()
            .expect("a usage event");
        last["usage"].clone()
    };
    let estimated = usage_of(&mut t, Value::Null);
    // Nine characters streamed: three tokens by the four-characters rule.
    assert_eq!(estimated["completion_tokens"], 3);
    assert!(estimated["prompt_tokens"].as_u64().is_some_and(|p| p > 0));
    let reported = usage_of(
        &mut t,
        json!({"prompt_tokens": 11, "completion_tokens": 22}),
    );
    assert_eq!(
        (
            &reported["prompt_tokens"],
            &reported["completion_tokens"],
            &reported["total_tokens"]
        ),
        (&json!(11), &json!(22), &json!(33))
    );
}

#[test]
fn tool_calls_stream_with_index_and_arrive_whole_in_ollama_shape() {
    let mut t = Pair::new(|_| {});
    t.connect_agent(AGENT, register(3600));
    t.request(
        EDITOR,
        "POST",
        "/api/chat",
        &[],
        json!({"model": "m", "stream": false,
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather"}}]}),
    );
    let id = t.last_invoke_id(AGENT);
    for (i, args) in ["{\"city\":", "\"Paris\"}"].iter().enumerate() {
        t.agent(AGENT, json!({"type": "model_stream_chunk", "id": id, "chunk_index": i,
            "delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": if i == 0 {"get_weather"} else {""}, "arguments": args}}]},
            "finish_reason": if i == 1 { json!("tool_calls") } else { Value::Null }}));
    }
    let (status, body, _) = t.editor(EDITOR);
    assert_eq!(status, Some(200));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["message"]["tool_calls"][0]["function"],
        json!({"name": "get_weather", "arguments": {"city": "Paris"}})
    );
}

#[test]
fn malformed_agent_messages_get_an_error_and_the_link_stays() {
    let mut t = Pair::new(|_| {});
    t.p.open_agent(AGENT, "agent");
    t.p.handle_agent_text(AGENT, "not json", t.now);
    t.drain();
    t.agent(AGENT, json!({"type": "teleport"}));
    let frames = t.agent_frames(AGENT);
    assert_eq!(frames.len(), 2);
    assert!(frames.iter().all(|f| f["type"] == "error"));
    t.agent(AGENT, register(60));
    let registered = t.agent_frames(AGENT).remove(0);
    assert_eq!(registered["type"], "registered");
    assert_eq!(registered["status"], "active");
    let sid = registered["session_id"].as_str().unwrap().to_owned();
    let expires = registered["expires_at"].as_str().unwrap().to_owned();
    assert!(
        sid.starts_with("sess-") && expires.ends_with('Z'),
        "{registered}"
    );
    // Renewed for longer: it expires later (RFC 3339 times order as text).
    t.agent(
        AGENT,
        json!({"type": "renew", "session_id": sid, "ttl_seconds": 120}),
    );
    let renewed = t.agent_frames(AGENT).remove(0);
    assert_eq!(renewed["type"], "registered");
    assert!(
        renewed["expires_at"].as_str().unwrap() > expires.as_str(),
        "{renewed}"
    );
    // Listed connected with its models; its models go with its link.
    t.request(ConnId(9), "GET", "/control/sessions", &BRIDGE, Value::Null);
    let (_, body, _) = t.editor(ConnId(9));
    let listed: Value = serde_json::from_slice(&body).unwrap();
    let mine = &listed["sessions"].as_array().unwrap()[0];
    assert_eq!(mine["session_id"], sid.as_str());
    assert_eq!(
        (&mine["models"], &mine["connected"], &mine["status"]),
        (&json!(["m"]), &json!(true), &json!("active"))
    );
    drop_link(&mut t, AGENT);
    t.request(EDITOR, "GET", "/v1/models", &[], Value::Null);
    let (_, body, _) = t.editor(EDITOR);
    let models: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(models["data"], json!([]), "{models}");
}

#[test]
fn an_agent_s_error_reaches_its_editor_as_a_502_with_its_message() {
    let (status, body, ended) =
        refused_by_agent(json!({"message": "model is on fire", "code": "fire"}));
    assert_eq!((status, ended), (Some(502), true));
    let body: Value = serde_json::from_slice(&body).unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("model is on fire"), "{body}");
}

#[test]
fn a_whole_answer_keeps_the_cors_headers_of_its_request() {
    let mut t = Pair::new(|_| {});
    t.connect_agent(AGENT, register(3600));
    let origin = [("origin", "http://localhost:5173")];
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    t.request(EDITOR, "POST", "/v1/chat/completions", &origin, body);
    let id = t.last_invoke_id(AGENT);
    t.agent(AGENT, chunk(&id, 0, "ok", Some("stop")));
    let response = t.response(EDITOR);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
}

#[test]
fn embedding_from_an_inference_only_session_is_403() {
    let mut t = Pair::new(|_| {});
    t.connect_agent(AGENT, register(3600));
    t.request(
        EDITOR,
        "POST",
        "/v1/embeddings",
        &[],
        json!({"model": "m", "input": "x"}),
    );
    let (status, body, _) = t.editor(EDITOR);
    assert_eq!(status, Some(403));
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("`embedding` scope"));
}

mod access;
mod bad_input;
mod echoed;
mod hostile;
mod kept;
mod laws;
mod observe;
mod questions;
mod trace;

// ---- sessions: resume secrets, grace period, statuses ----

const BRIDGE: [(&str, &str); 1] = [("authorization", "Bearer bridge")];

/// Registers `agent_id` on a fresh link `conn` (resuming `resume` = (session
/// id, token) if given); returns what the agent got back.
fn register_as(
    t: &mut Pair,
    conn: ConnId,
    agent_id: &str,
    resume: Option<(&str, &str)>,
    extra: Value,
) -> Value {
    let mut msg = json!({"type": "register", "agent_id": agent_id, "models": ["m"]});
    if let Some((id, token)) = resume {
        msg["session_id"] = json!(id);
        msg["resume_token"] = json!(token);
    }
    if let (Some(m), Value::Object(extra)) = (msg.as_object_mut(), extra) {
        m.extend(extra);
    }
    t.connect_agent(conn, msg);
    let frames = t.agent_frames(conn);
    assert_eq!(frames.len(), 1, "one answer: {frames:?}");
    frames.into_iter().next().unwrap()
}

fn sid_and_token(registered: &Value) -> (String, String) {
    assert_eq!(registered["type"], "registered", "{registered}");
    (
        registered["session_id"].as_str().unwrap().to_owned(),
        registered["resume_token"].as_str().unwrap().to_owned(),
    )
}

/// An editor's whole chat, answered `served` by the agent on `conn`: its
/// status and the answer's text.
fn served_by(t: &mut Pair, conn: ConnId) -> (Option<u16>, Value) {
    t.chat(EDITOR, false);
    let invoke = t.last_invoke_id(conn);
    t.agent(conn, chunk(&invoke, 0, "served", Some("stop")));
    let (status, body, _) = t.editor(EDITOR);
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    (status, body["choices"][0]["message"]["content"].clone())
}

fn drop_link(t: &mut Pair, conn: ConnId) {
    t.p.handle_conn_closed(conn, t.now);
    t.drain();
}

#[test]
fn only_the_agent_holding_the_resume_token_resumes_its_session() {
    let mut t = Pair::new(|_| {});
    let reg = register_as(&mut t, AGENT, "a", None, json!({}));
    assert_eq!(reg["status"], "active");
    let (sid, token) = sid_and_token(&reg);
    // At least 128 bits, hex, and not derived from the visible session id.
    assert!(token.len() >= 32 && token.bytes().all(|b| b.is_ascii_hexdigit()));
    // 256 bits, in lower-case hex.
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    assert!(token.len() == 64 && token.bytes().all(lower_hex), "{token}");
    assert!(!token.contains(sid.trim_start_matches("sess-")));
    drop_link(&mut t, AGENT);

    let thief = ConnId(150);
    let attempts = [
        ("b", Some(token.as_str()), json!({})), // a leaked token, another agent
        ("a", None, json!({})),                 // the id alone
        ("a", Some("0123456789abcdef"), json!({})), // a guess
        ("a", Some(""), json!({"session_token": token})), // the token in the wrong field
    ];
    for (agent_id, presented, extra) in attempts {
        let mut msg = json!({"type": "register", "agent_id": agent_id, "models": ["x"],
                             "session_id": sid});
        if let Some(p) = presented {
            msg["resume_token"] = json!(p);
        }
        if let (Some(m), Value::Object(extra)) = (msg.as_object_mut(), extra) {
            m.extend(extra);
        }
        t.connect_agent(thief, msg);
        let frames = t.agent_frames(thief);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0]["type"], "error");
        assert_eq!(frames[0]["error"]["code"], "unauthorized");
        // Untouched: still detached, still serving the owner's models.
        let s = t.p.sessions().get(&sid).unwrap();
        assert_eq!((s.link, s.models.clone()), (None, vec!["m".to_owned()]));
        drop_link(&mut t, thief);
    }

    // The owner comes back, and gets a new token; the old one is spent.
    let again = register_as(&mut t, ConnId(101), "a", Some((&sid, &token)), json!({}));
    let (same, rotated) = sid_and_token(&again);
    assert_eq!(same, sid);
    assert_eq!(again["status"], "active");
    assert_ne!(rotated, token);
    assert_eq!(served_by(&mut t, ConnId(101)), (Some(200), json!("served")));
    drop_link(&mut t, ConnId(101));
    let stale = register_as(&mut t, ConnId(102), "a", Some((&sid, &token)), json!({}));
    assert_eq!(stale["error"]["code"], "unauthorized");
    drop_link(&mut t, ConnId(102));
    let fresh = register_as(&mut t, ConnId(103), "a", Some((&sid, &rotated)), json!({}));
    assert_eq!(sid_and_token(&fresh).0, sid);
}

#[test]
fn an_agent_back_before_its_old_link_was_seen_to_drop_takes_its_session_over() {
    let mut t = Pair::new(|_| {});
    let (sid, token) = sid_and_token(&register_as(&mut t, AGENT, "a", None, json!({})));
    t.chat(EDITOR, true);
    t.last_invoke_id(AGENT);
    // The same agent, on a new connection, while the old one looks alive.
    const NEW: ConnId = ConnId(101);
    let again = register_as(&mut t, NEW, "a", Some((&sid, &token)), json!({}));
    assert_eq!(sid_and_token(&again).0, sid);
    let closes: Vec<_> = t
        .seen
        .iter()
        .filter_map(|o| match o {
            Output::CloseAgent { conn, why } => Some((*conn, *why)),
            _ => None,
        })
        .collect();
    assert_eq!(closes, [(AGENT, LinkClose::Replaced)]);
    // The old link's request failed as if it had dropped.
    let (_, body, ended) = t.editor(EDITOR);
    assert!(ended && String::from_utf8_lossy(&body).contains("disconnected"));
    // The next goes to the new link, also once the old one is gone.
    t.chat(ConnId(2), true);
    assert_eq!(t.agent_frames(NEW)[0]["type"], "model_invoke");
    drop_link(&mut t, AGENT);
    t.chat(ConnId(3), true);
    assert_eq!(t.agent_frames(NEW)[0]["type"], "model_invoke");
    assert!(t.agent_frames(AGENT).is_empty());
}

#[test]
fn a_pending_session_cannot_be_taken_over_and_resumes_pending() {
    let mut t = Pair::new(|c| c.approval = Approval::Manual);
    let reg = register_as(&mut t, AGENT, "a", None, json!({}));
    assert_eq!(reg["status"], "pending");
    let (sid, token) = sid_and_token(&reg);
    drop_link(&mut t, AGENT);
    let stolen = register_as(
        &mut t,
        ConnId(150),
        "intruder",
        Some((&sid, "x")),
        json!({}),
    );
    assert_eq!(stolen["error"]["code"], "unauthorized");
    let again = register_as(&mut t, ConnId(101), "a", Some((&sid, &token)), json!({}));
    assert_eq!(
        (again["session_id"].as_str(), again["status"].as_str()),
        (Some(sid.as_str()), Some("pending"))
    );
    // Approval still goes to the session's own agent.
    t.request(
        ConnId(9),
        "POST",
        "/control/approve",
        &BRIDGE,
        json!({"session_id": sid}),
    );
    assert_eq!(t.editor(ConnId(9)).0, Some(200));
    assert_eq!(
        t.agent_frames(ConnId(101)),
        vec![json!({"type": "approved", "session_id": sid})]
    );
    assert!(t.agent_frames(ConnId(150)).is_empty());
    assert_eq!(served_by(&mut t, ConnId(101)), (Some(200), json!("served")));
}

#[test]
fn renew_answers_registered_without_a_new_resume_token() {
    let mut t = Pair::new(|_| {});
    let (sid, token) = sid_and_token(&register_as(&mut t, AGENT, "a", None, json!({})));
    t.agent(
        AGENT,
        json!({"type": "renew", "session_id": sid, "ttl_seconds": 60}),
    );
    let frames = t.agent_frames(AGENT);
    assert_eq!(frames[0]["type"], "registered");
    assert!(frames[0].get("resume_token").is_none());
    // The token from `register` still resumes.
    drop_link(&mut t, AGENT);
    let again = register_as(&mut t, ConnId(101), "a", Some((&sid, &token)), json!({}));
    assert_eq!(sid_and_token(&again).0, sid);
}

#[test]
fn a_control_session_is_claimed_with_its_session_token_then_resumed_with_either() {
    let mut t = Pair::new(|c| c.session_grace = Duration::from_secs(1));
    let body = json!({"session_id": "s-1", "session_token": "claim", "agent_id": "ide",
                      "models": ["m"], "ttl_seconds": 100});
    t.request(ConnId(9), "POST", "/control/register", &BRIDGE, body);
    assert_eq!(t.editor(ConnId(9)).0, Some(200));
    let claim = |agent_id: &str, token: &str| json!({"session_token": token, "session_id": "s-1", "agent_id": agent_id});
    // Another agent_id, or a wrong token: refused.
    let r = register_as(&mut t, ConnId(150), "other", None, claim("other", "claim"));
    assert_eq!(r["error"]["code"], "unauthorized");
    let r = register_as(&mut t, ConnId(151), "ide", None, claim("ide", "nope"));
    assert_eq!(r["error"]["code"], "unauthorized");
    drop_link(&mut t, ConnId(150));
    drop_link(&mut t, ConnId(151));
    let r = register_as(&mut t, AGENT, "ide", None, claim("ide", "claim"));
    let (sid, token) = sid_and_token(&r);
    assert_eq!(sid, "s-1");
    drop_link(&mut t, AGENT);
    // Made by the control API: kept until its TTL, not freed after the grace.
    assert_eq!(t.p.poll_timeout(), Some(t.t0 + Duration::from_secs(100)));
    let r = register_as(&mut t, ConnId(101), "ide", Some((&sid, &token)), json!({}));
    assert_eq!(sid_and_token(&r).0, "s-1");
    drop_link(&mut t, ConnId(101));
    let r = register_as(&mut t, ConnId(102), "ide", None, claim("ide", "claim"));
    assert_eq!(sid_and_token(&r).0, "s-1");
}

#[test]
fn a_dropped_session_is_freed_at_the_exact_end_of_its_grace() {
    let mut t = Pair::new(|c| {
        c.session_grace = Duration::from_secs(60);
        c.max_sessions = 1;
        c.agent_ping_interval = Duration::from_secs(1000);
    });
    let (sid, token) = sid_and_token(&register_as(
        &mut t,
        AGENT,
        "a",
        None,
        json!({"ttl_seconds": 3600}),
    ));
    t.advance_to(t.t0 + Duration::from_secs(5));
    drop_link(&mut t, AGENT);
    let grace_end = t.t0 + Duration::from_secs(65);
    assert_eq!(t.p.poll_timeout(), Some(grace_end));
    // Resuming within the grace clears the deadline; dropping again restarts it.
    t.advance_to(t.t0 + Duration::from_secs(30));
    let r = register_as(&mut t, ConnId(101), "a", Some((&sid, &token)), json!({}));
    let (_, token) = sid_and_token(&r);
    // Linked again: the next wake-up is the ping, not a grace deadline.
    assert_eq!(t.p.poll_timeout(), Some(t.t0 + Duration::from_secs(1000)));
    drop_link(&mut t, ConnId(101));
    let grace_end = t.t0 + Duration::from_secs(90);
    assert_eq!(t.p.poll_timeout(), Some(grace_end));

    t.advance_to(grace_end - Duration::from_nanos(1));
    assert!(t.p.sessions().get(&sid).is_some());
    t.advance_to(grace_end);
    assert!(t.p.sessions().is_empty(), "freed at the deadline");
    assert_eq!(t.p.poll_timeout(), None);
    // Too late to resume: the agent gets a new session, and there is room.
    let r = register_as(&mut t, ConnId(102), "a", Some((&sid, &token)), json!({}));
    assert_ne!(sid_and_token(&r).0, sid);
}

#[test]
fn at_the_session_cap_a_new_agent_takes_the_place_of_the_one_dropped_longest_ago() {
    let mut t = Pair::new(|c| {
        c.max_sessions = 3;
        c.session_grace = Duration::from_secs(300);
    });
    let mut dropped = Vec::new();
    for (i, conn) in [ConnId(101), ConnId(102)].into_iter().enumerate() {
        let r = register_as(&mut t, conn, &format!("a{i}"), None, json!({}));
        let (sid, token) = sid_and_token(&r);
        t.advance_to(t.t0 + Duration::from_secs(1 + i as u64));
        drop_link(&mut t, conn);
        dropped.push((sid, token));
    }
    // A control-API session waits for its agent until its TTL: kept.
    let body = json!({"session_id": "s-ctl", "session_token": "claim", "agent_id": "ide",
                      "models": ["m"], "ttl_seconds": 3600});
    t.request(ConnId(9), "POST", "/control/register", &BRIDGE, body);
    assert_eq!(t.editor(ConnId(9)).0, Some(200));
    assert_eq!(t.p.sessions().len(), 3);
    assert!(
        session_room(&mut t),
        "full, but a dropped session can be freed"
    );

    // Full, well within the grace: the session dropped first gives way.
    let r = register_as(&mut t, AGENT, "new", None, json!({}));
    let (new_sid, _) = sid_and_token(&r);
    assert!(t.p.sessions().get(&dropped[0].0).is_none());
    assert!(t.p.sessions().get(&dropped[1].0).is_some());
    assert!(t.p.sessions().get("s-ctl").is_some());
    t.chat(EDITOR, false);
    let inv = t.last_invoke_id(AGENT);
    t.agent(AGENT, chunk(&inv, 0, "served", Some("stop")));
    assert_eq!(t.editor(EDITOR).0, Some(200));

    // Its agent comes back: as after the grace, a new session, in the
    // place of the other dropped one.
    let (gone, token) = &dropped[0];
    let r = register_as(&mut t, ConnId(103), "a0", Some((gone, token)), json!({}));
    assert_ne!(&sid_and_token(&r).0, gone);
    assert!(t.p.sessions().get(&dropped[1].0).is_none());
    assert_eq!(t.p.sessions().len(), 3);

    // Now every session has a link or was made through the control API:
    // an agent, or the control API, is refused, and nobody loses a place.
    let (gone, token) = &dropped[1];
    let r = register_as(&mut t, ConnId(104), "a1", Some((gone, token)), json!({}));
    assert_eq!(r["error"]["code"], "too_many_sessions");
    drop_link(&mut t, ConnId(104));
    let body = json!({"session_id": "s-2", "session_token": "x", "agent_id": "x"});
    t.request(ConnId(9), "POST", "/control/register", &BRIDGE, body);
    assert_eq!(t.editor(ConnId(9)).0, Some(503));
    assert!(t.p.sessions().get(&new_sid).is_some());
    assert_eq!(t.p.sessions().len(), 3);
    assert!(!session_room(&mut t));

    // One drops: the control API may now take its place too.
    drop_link(&mut t, AGENT);
    let body = json!({"session_id": "s-3", "session_token": "x", "agent_id": "x"});
    t.request(ConnId(9), "POST", "/control/register", &BRIDGE, body);
    assert_eq!(t.editor(ConnId(9)).0, Some(200));
    assert!(t.p.sessions().get(&new_sid).is_none());
}

/// Whether `/health/deep` says a new session would find room.
fn session_room(t: &mut Pair) -> bool {
    t.request(ConnId(8), "GET", "/health/deep", &[], Value::Null);
    let (_, body, _) = t.editor(ConnId(8));
    let health: Value = serde_json::from_slice(&body).unwrap();
    let checks = health["checks"].as_array().unwrap();
    let sessions = checks.iter().find(|c| c["name"] == "sessions").unwrap();
    sessions["ok"].as_bool().unwrap()
}

#[test]
fn max_requests_zero_serves_nothing_and_says_suspended() {
    let mut t = Pair::new(|_| {});
    let r = register_as(&mut t, AGENT, "a", None, json!({"max_requests": 0}));
    assert_eq!(r["status"], "suspended");
    t.chat(EDITOR, false);
    let (status, body, _) = t.editor(EDITOR);
    assert_eq!(status, Some(503));
    assert!(String::from_utf8(body).unwrap().contains("max_requests"));
    assert!(t.agent_frames(AGENT).is_empty(), "no invoke");
    // Pinned to the session or not, the refusal names no session.
    let sid = r["session_id"].as_str().unwrap_or_default().to_owned();
    for pin in [vec![], vec![("x-mcp-session", sid.as_str())]] {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        t.request(EDITOR, "POST", "/v1/chat/completions", &pin, body);
        let (status, body, _) = t.editor(EDITOR);
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, Some(503), "{body}");
        assert!(body.contains("max_requests"), "{body}");
        assert!(!body.contains(&sid) && !body.contains("sess-"), "{body}");
    }

    // Through the control API, and through manual approval, the same.
    let body =
        json!({"session_id": "s-0", "session_token": "t", "agent_id": "x", "max_requests": 0});
    t.request(ConnId(9), "POST", "/control/register", &BRIDGE, body);
    let (_, body, _) = t.editor(ConnId(9));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["status"],
        "suspended"
    );

    let mut t = Pair::new(|c| c.approval = Approval::Manual);
    let r = register_as(&mut t, AGENT, "a", None, json!({"max_requests": 0}));
    assert_eq!(r["status"], "pending");
    let sid = r["session_id"].as_str().unwrap().to_owned();
    t.request(
        ConnId(9),
        "POST",
        "/control/approve",
        &BRIDGE,
        json!({"session_id": sid}),
    );
    let (_, body, _) = t.editor(ConnId(9));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["status"],
        "suspended"
    );
    t.chat(EDITOR, false);
    assert_eq!(t.editor(EDITOR).0, Some(503));
}

#[test]
fn a_suspended_session_resumes_as_suspended() {
    let mut t = Pair::new(|_| {});
    let (sid, token) = sid_and_token(&register_as(
        &mut t,
        AGENT,
        "a",
        None,
        json!({"max_requests": 1}),
    ));
    t.chat(EDITOR, false);
    let inv = t.last_invoke_id(AGENT);
    t.agent(AGENT, chunk(&inv, 0, "ok", Some("stop")));
    drop_link(&mut t, AGENT);
    let r = register_as(&mut t, ConnId(101), "a", Some((&sid, &token)), json!({}));
    assert_eq!(
        (r["session_id"].as_str(), r["status"].as_str()),
        (Some(sid.as_str()), Some("suspended"))
    );
}

#[test]
fn an_expired_pending_session_renewed_is_still_pending() {
    let mut t = Pair::new(|c| c.approval = Approval::Manual);
    let r = register_as(&mut t, AGENT, "a", None, json!({"ttl_seconds": 10}));
    let sid = r["session_id"].as_str().unwrap().to_owned();
    t.advance_to(t.t0 + Duration::from_secs(10));
    assert_eq!(t.agent_frames(AGENT)[0]["type"], "expired");
    t.agent(
        AGENT,
        json!({"type": "renew", "session_id": sid, "ttl_seconds": 10}),
    );
    assert_eq!(t.agent_frames(AGENT)[0]["status"], "pending");
    t.chat(EDITOR, false);
    assert_eq!(t.editor(EDITOR).0, Some(503));
}

#[test]
fn expired_or_revoked_sessions_are_not_resumed() {
    let mut t = Pair::new(|_| {});
    let (sid, token) = sid_and_token(&register_as(
        &mut t,
        AGENT,
        "a",
        None,
        json!({"ttl_seconds": 10}),
    ));
    t.advance_to(t.t0 + Duration::from_secs(10));
    // Expired but still linked: nobody else gets it, not even with the token.
    let r = register_as(&mut t, ConnId(150), "a", Some((&sid, &token)), json!({}));
    assert_eq!(r["error"]["code"], "session_unavailable");
    drop_link(&mut t, ConnId(150));
    drop_link(&mut t, AGENT);
    let r = register_as(&mut t, ConnId(101), "a", Some((&sid, &token)), json!({}));
    let (other, token) = sid_and_token(&r);
    assert_ne!(other, sid, "a new session, not the expired one");

    t.request(
        ConnId(9),
        "POST",
        "/control/revoke",
        &BRIDGE,
        json!({"session_id": other}),
    );
    assert_eq!(t.editor(ConnId(9)).0, Some(200));
    let r = register_as(&mut t, ConnId(102), "a", Some((&other, &token)), json!({}));
    assert_eq!(r["error"]["code"], "session_unavailable");
    drop_link(&mut t, ConnId(102));
    drop_link(&mut t, ConnId(101));
    let r = register_as(&mut t, ConnId(103), "a", Some((&other, &token)), json!({}));
    assert_ne!(
        sid_and_token(&r).0,
        other,
        "a new session, not the revoked one"
    );
}

#[test]
fn errors_editors_read_name_no_session() {
    let mut t = Pair::new(|c| c.approval = Approval::Manual);
    let (sid, _) = sid_and_token(&register_as(
        &mut t,
        AGENT,
        "a",
        None,
        json!({"max_requests": 1}),
    ));
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
    let mut bodies = Vec::new();
    for pin in [None, Some(sid.as_str()), Some("sess-nope")] {
        let headers: Vec<(&str, &str)> = pin.map(|p| ("x-mcp-session", p)).into_iter().collect();
        t.request(
            EDITOR,
            "POST",
            "/v1/chat/completions",
            &headers,
            body.clone(),
        );
        bodies.push(t.editor(EDITOR));
        t.request(EDITOR, "POST", "/api/chat", &headers, body.clone());
        bodies.push(t.editor(EDITOR));
    }
    // A session waiting for approval: each of those is a 503.
    assert!(bodies.iter().all(|(status, ..)| *status == Some(503)));
    t.request(
        EDITOR,
        "POST",
        "/v1/embeddings",
        &[],
        json!({"model": "m", "input": "x"}),
    );
    bodies.push(t.editor(EDITOR));
    // Revoked with a request in flight.
    t.request(
        ConnId(9),
        "POST",
        "/control/approve",
        &BRIDGE,
        json!({"session_id": sid}),
    );
    t.chat(ConnId(2), true);
    t.request(
        ConnId(9),
        "POST",
        "/control/revoke",
        &BRIDGE,
        json!({"session_id": sid}),
    );
    bodies.push(t.editor(ConnId(2)));
    for (status, body, _) in bodies {
        let body = String::from_utf8(body).unwrap();
        assert!(
            status.is_some_and(|s| s >= 400) || body.contains("revoked"),
            "{body}"
        );
        assert!(!body.contains(&sid) && !body.contains("sess-"), "{body}");
    }
}

#[test]
fn simulated_revokes_and_resumes_take_effect() {
    use crate::simulation::{play, Op};
    let revoke = play(&[Op::Connect(0), Op::Request { stream: true }, Op::Revoke(0)]);
    assert_eq!((revoke.revoked, revoke.waiting.len()), (1, 0));
    let ops = [
        Op::Connect(0),
        Op::Drop(0),
        Op::Steal {
            victim: 0,
            leaked: true,
        },
        Op::Steal {
            victim: 0,
            leaked: false,
        },
        Op::Resume {
            agent: 0,
            right: false,
        },
        Op::Drop(0),
        Op::Resume {
            agent: 0,
            right: true,
        },
        Op::Request { stream: false },
        Op::Answer {
            agent: 0,
            chunks: 1,
            finish: true,
        },
    ];
    let out = play(&ops);
    assert_eq!((out.resumed, out.takeovers), (1, 0));
    assert!(out.waiting.is_empty());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Whatever happens, no wrong token (nor a leaked one in another
    /// agent's hands) takes a session over, and no request waits forever.
    #[test]
    fn no_wrong_token_takes_a_session_over(ops in proptest::collection::vec(laws::op(), 1..40)) {
        let out = crate::simulation::play(&ops);
        proptest::prop_assert_eq!(out.takeovers, 0);
        proptest::prop_assert_eq!(out.waiting, vec![]);
    }
}

/// Two requests on one connection: whatever still comes for the first
/// after its answer ended is not written into the second's answer.
#[test]
fn a_late_output_for_an_answered_request_is_not_written_into_the_next() {
    let mut http = ServerConn::new(Limits::default(), Instant::now());
    http.handle_data(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n");
    let mut answering = Answering::default();
    let mut out = BytesMut::new();
    let mut write = |output: Output, http: &mut ServerConn| {
        output.encode_http(http, &mut answering, &mut out);
    };
    let first = RequestId::of(EDITOR, &http.poll_request().unwrap().unwrap());
    let stream = || Response::stream("text/event-stream");
    write(
        Output::Respond {
            to: first,
            response: stream(),
        },
        &mut http,
    );
    write(Output::End { to: first }, &mut http);
    let second = RequestId::of(EDITOR, &http.poll_request().unwrap().unwrap());
    assert_ne!(first, second);
    write(
        Output::Respond {
            to: second,
            response: stream(),
        },
        &mut http,
    );
    write(
        Output::Data {
            to: first,
            data: Bytes::from_static(b"late"),
        },
        &mut http,
    );
    let json = Response::json(200, "{}");
    write(
        Output::Respond {
            to: first,
            response: json,
        },
        &mut http,
    );
    write(
        Output::Data {
            to: second,
            data: Bytes::from_static(b"mine"),
        },
        &mut http,
    );
    write(Output::End { to: second }, &mut http);
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert!(text.contains("mine") && !text.contains("late"), "{text}");
    assert!(text.ends_with("0\r\n\r\n"), "{text}");
}
