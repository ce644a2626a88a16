//! What a hostile or merely slow peer can do to the provider: agent frames
//! of the wrong shape, answers that grow without end, editors that stop
//! reading. Each ends cleanly with bounded memory.

use std::cell::RefCell;

use super::*;
use crate::backlog::{Backlog, PAUSE_AT};
use crate::switchboard::Switchboard;

/// Frames that answer a live invocation but cannot be applied: each is
/// refused to the agent and ends its editor's answer at once.
fn unreadable_answers(id: &str) -> [Value; 5] {
    [
        json!({"type": "model_stream_chunk", "id": id, "chunk_index": 0,
               "delta": {"tool_calls": [1]}, "finish_reason": null}),
        json!({"type": "model_stream_chunk", "id": id, "chunk_index": 0,
               "delta": {"tool_calls": (0..65).map(|_| json!({})).collect::<Vec<_>>()}}),
        json!({"type": "model_stream_chunk", "id": id, "chunk_index": "first"}),
        json!({"type": "model_result", "id": id, "status": 5}),
        json!({"type": "error", "id": id, "error": "not an object"}),
    ]
}

#[test]
fn an_answer_that_cannot_be_read_ends_its_request_at_once_and_cancels_it() {
    for (api, stream) in [
        ("/v1/chat/completions", true),
        ("/v1/chat/completions", false),
        ("/api/chat", true),
    ] {
        for n in 0..unreadable_answers("").len() {
            let mut t = Pair::new(|_| {});
            t.connect_agent(AGENT, register(3600));
            t.agent_frames(AGENT);
            let body = json!({"model": "m", "stream": stream,
                              "messages": [{"role": "user", "content": "hi"}]});
            t.request(EDITOR, "POST", api, &[], body);
            let id = t.last_invoke_id(AGENT);
            // A first piece that reads, so a stream has begun.
            t.agent(AGENT, chunk(&id, 0, "fine", None));
            let bad = unreadable_answers(&id)[n].clone();
            let case = format!("{api} stream={stream}: {bad}");
            t.agent(AGENT, bad);

            let frames = t.agent_frames(AGENT);
            assert_eq!(frames.len(), 2, "{case}: {frames:?}");
            assert_eq!(frames[0]["type"], "error", "{case}");
            assert_eq!(frames[0]["error"]["code"], "invalid_message", "{case}");
            assert_eq!(frames[1], json!({"type": "cancel", "id": id}), "{case}");
            // Ended now, with no time passing: not by a timeout.
            let (status, body, ended) = t.editor(EDITOR);
            let body = String::from_utf8_lossy(&body);
            assert!(ended, "{case}");
            assert!(body.contains("cannot be read"), "{case}: {body}");
            let expected = if stream { 200 } else { 502 };
            assert_eq!(status, Some(expected), "{case}");
            if stream && api == "/api/chat" {
                let last = body.lines().last().unwrap_or_default();
                let last: Value = serde_json::from_str(last).unwrap();
                assert!(last["error"].is_string(), "{case}: {last}");
            } else if stream {
                assert!(body.contains("data: {\"error\""), "{case}: {body}");
            }
            // Anything more for it is dropped; the link serves the next one.
            t.agent(AGENT, chunk(&id, 1, "late", Some("stop")));
            assert!(t.agent_frames(AGENT).is_empty(), "{case}");
            t.chat(ConnId(2), false);
            let next = t.last_invoke_id(AGENT);
            t.agent(AGENT, chunk(&next, 0, "again", Some("stop")));
            let (status, body, _) = t.editor(ConnId(2));
            assert_eq!(status, Some(200), "{case}");
            assert!(String::from_utf8_lossy(&body).contains("again"), "{case}");
        }
    }
}

#[test]
fn an_unreadable_frame_that_names_no_live_invocation_ends_nothing() {
    let mut t = Pair::new(|_| {});
    t.connect_agent(AGENT, register(3600));
    t.agent_frames(AGENT);
    t.chat(EDITOR, true);
    let id = t.last_invoke_id(AGENT);
    let bad = &unreadable_answers(&id)[0];
    let mut unnamed = bad.clone();
    unnamed["id"] = json!(7);
    let mut other = bad.clone();
    other["id"] = json!("inv-999");
    for frame in [unnamed, other] {
        t.agent(AGENT, frame);
        let frames = t.agent_frames(AGENT);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0]["error"]["code"], "invalid_message");
    }
    // Another link's invocation is not this link's to end.
    t.connect_agent(ConnId(101), register(3600));
    t.agent_frames(ConnId(101));
    t.agent(ConnId(101), bad.clone());
    assert_eq!(t.agent_frames(ConnId(101)).len(), 1);
    assert!(t.agent_frames(AGENT).is_empty());
    t.agent(AGENT, chunk(&id, 0, "fine", Some("stop")));
    let (_, body, ended) = t.editor(EDITOR);
    assert!(ended && String::from_utf8_lossy(&body).contains("fine"));
}

#[test]
fn a_whole_answer_with_bad_or_too_many_tool_calls_fails_cleanly() {
    for calls in [
        json!([1]),
        json!((0..300).map(|i| json!({"id": i})).collect::<Vec<_>>()),
    ] {
        let mut t = Pair::new(|_| {});
        t.connect_agent(AGENT, register(3600));
        t.agent_frames(AGENT);
        t.chat(EDITOR, false);
        let id = t.agent_frames(AGENT)[0]["id"].as_str().unwrap().to_owned();
        t.agent(
            AGENT,
            json!({"type": "model_result", "id": id, "status": "ok", "result": {"choices": [
                {"message": {"role": "assistant", "tool_calls": calls}, "finish_reason": "tool_calls"}]}}),
        );
        let (status, body, ended) = t.editor(EDITOR);
        assert_eq!(status, Some(502));
        assert!(ended && String::from_utf8_lossy(&body).contains("tool call"));
    }
}

#[test]
fn a_whole_answer_past_the_output_cap_fails_and_cancels() {
    let mut t = Pair::new(|c| c.max_output_bytes = 1000);
    t.connect_agent(AGENT, register(3600));
    t.agent_frames(AGENT);
    t.chat(EDITOR, false);
    let id = t.agent_frames(AGENT)[0]["id"].as_str().unwrap().to_owned();
    let piece = "x".repeat(600);
    t.agent(AGENT, chunk(&id, 0, &piece, None));
    t.agent(AGENT, chunk(&id, 1, &piece, None));
    let (status, _, ended) = t.editor(EDITOR);
    assert_eq!(status, Some(502));
    assert!(ended);
    assert_eq!(t.agent_frames(AGENT)[0]["type"], "cancel");
}

/// A chat request with the right key and host.
fn chat_request(stream: bool, content: &str) -> Request {
    let body =
        json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": content}]});
    Request::new(
        "POST",
        "/v1/chat/completions",
        vec![
            ("host".into(), "127.0.0.1".into()),
            ("authorization".into(), "Bearer key".into()),
        ],
        Bytes::from(body.to_string()),
    )
    .expect("a canonical path")
}

/// A switchboard whose mailboxes are plain vectors (answers as their
/// editor's connection writes them), and the backlog of each connection as
/// a writer would see it.
struct Board {
    board: Switchboard<ConnId>,
    posted: RefCell<Vec<Output>>,
    editors: RefCell<crate::stream::EditorSides>,
    now: Instant,
}

impl Board {
    fn new(tweak: impl FnOnce(&mut Config)) -> Board {
        let mut config = Config::new(&["key"], "bridge");
        tweak(&mut config);
        let now = Instant::now();
        Board {
            board: Switchboard::new(Provider::new(config, now, SystemTime::UNIX_EPOCH)),
            posted: RefCell::new(Vec::new()),
            editors: RefCell::default(),
            now,
        }
    }

    fn with(&mut self, f: impl FnOnce(&mut Provider, Instant)) {
        let (posted, editors) = (&self.posted, &self.editors);
        self.board.with(self.now, f, |_, o| {
            let mut posted = posted.borrow_mut();
            editors.borrow_mut().carry(o, |o| posted.push(o));
        });
    }

    fn to_agent(&self) -> Vec<Value> {
        let mut posted = self.posted.borrow_mut();
        let (mine, rest): (Vec<Output>, Vec<Output>) = std::mem::take(&mut *posted)
            .into_iter()
            .partition(|o| matches!(o, Output::ToAgent { .. }));
        *posted = rest;
        mine.into_iter()
            .map(|o| match o {
                Output::ToAgent { text, .. } => serde_json::from_str(&text).unwrap(),
                _ => unreachable!(),
            })
            .collect()
    }

    fn editor_bytes(&self) -> String {
        let posted = self.posted.borrow();
        let mut text = String::new();
        for o in posted.iter() {
            match o {
                Output::Data { to, data } if to.conn == EDITOR => {
                    text.push_str(&String::from_utf8_lossy(data));
                }
                _ => {}
            }
        }
        text
    }

    /// An agent and an editor with a stream open; the invocation id.
    fn stream(&mut self) -> (Backlog, String) {
        self.open(true)
    }

    /// An agent and an editor waiting for an answer, streamed or whole.
    fn open(&mut self, stream: bool) -> (Backlog, String) {
        self.board.attach(AGENT, AGENT);
        let editor = self.board.attach(EDITOR, EDITOR);
        self.with(|p, now| {
            p.open_agent(AGENT, "agent");
            p.handle_agent_text(AGENT, &register(3600).to_string(), now);
        });
        let request = chat_request(stream, "hi");
        self.with(|p, now| p.handle_request(EDITOR, request, now));
        let invoke = self.to_agent().pop().unwrap();
        (editor, invoke["id"].as_str().unwrap().to_owned())
    }

    /// Agent frames, each handled on its own as a link delivers them.
    fn chunks(&mut self, id: &str, from: u64, count: u64, size: usize) {
        let text = "y".repeat(size);
        for i in from..from + count {
            let frame = chunk(id, i, &text, None).to_string();
            self.with(|p, now| p.handle_agent_text(AGENT, &frame, now));
        }
    }
}

#[test]
fn an_editor_that_falls_behind_pauses_its_answer_and_resumes_it_when_it_reads() {
    let mut b = Board::new(|_| {});
    let (editor, id) = b.stream();
    b.chunks(&id, 0, 10, 1000);
    assert!(b.to_agent().is_empty(), "a small backlog needs no pause");
    b.chunks(&id, 10, (PAUSE_AT / 1000) as u64, 1000);
    let frames = b.to_agent();
    assert_eq!(frames.len(), 1);
    assert_eq!(
        (frames[0]["type"].as_str(), frames[0]["id"].as_str()),
        (Some("pause"), Some(id.as_str()))
    );
    b.chunks(&id, 10 + (PAUSE_AT / 1000) as u64, 5, 1000);
    assert!(b.to_agent().is_empty(), "pause is sent once");
    assert!(editor.written(editor.bytes()));
    b.with(|p, _| p.handle_drained(EDITOR));
    let frames = b.to_agent();
    assert_eq!(frames[0]["type"], "resume");
}

#[test]
fn an_editor_that_never_reads_ends_its_stream_at_the_output_cap() {
    let cap = 2 * PAUSE_AT;
    let mut b = Board::new(|c| c.max_output_bytes = cap);
    let (editor, id) = b.stream();
    // An agent that ignores `pause`.
    b.chunks(&id, 0, (3 * PAUSE_AT / 1000) as u64, 1000);
    let frames = b.to_agent();
    let kinds: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(kinds, ["pause", "cancel"]);
    assert!(b.editor_bytes().contains("read too slowly"));
    assert!(
        editor.bytes() < cap + 64 * 1024,
        "what waits stays near the cap"
    );
    let before = editor.bytes();
    b.chunks(&id, 2000, 100, 1000);
    assert_eq!(editor.bytes(), before, "later chunks are dropped");
}

#[test]
fn a_whole_answer_whose_pieces_pile_up_past_the_cap_ends_as_too_large() {
    // A whole answer's pieces wait in its connection until it is
    // complete: past the cap, the answer is too large, whoever is slow.
    let cap = 2 * PAUSE_AT;
    let mut b = Board::new(|c| c.max_output_bytes = cap);
    let (_, id) = b.open(false);
    b.chunks(&id, 0, (3 * PAUSE_AT / 1000) as u64, 1000);
    let kinds: Vec<String> = b.to_agent().iter().map(|f| f["type"].to_string()).collect();
    assert_eq!(kinds, ["\"pause\"", "\"cancel\""]);
    let answer = b.posted.borrow().iter().find_map(|o| match o {
        Output::Respond { to, response } if to.conn == EDITOR => Some(response.clone()),
        _ => None,
    });
    let answer = answer.expect("the editor is answered");
    assert_eq!(answer.status, 502);
    let Body::Full(body) = answer.body else {
        panic!("a whole answer")
    };
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains(&format!("larger than {cap} bytes")), "{body}");
}

#[test]
fn streams_end_once_all_readers_together_have_too_much_waiting() {
    // Each stream is far under its own cap, but the server's total is
    // past its cap: an agent ignoring `pause` on many streams at once.
    let mut b = Board::new(|c| c.max_queued_bytes = PAUSE_AT + PAUSE_AT / 2);
    let (editor, id) = b.stream();
    b.chunks(&id, 0, (PAUSE_AT / 1000) as u64 + 1, 1000);
    let kinds: Vec<String> = b.to_agent().iter().map(|f| f["type"].to_string()).collect();
    assert_eq!(
        kinds,
        ["\"pause\""],
        "under the total cap the answer is paused"
    );
    assert!(!b.editor_bytes().contains("output buffers were full"));
    b.chunks(
        &id,
        (PAUSE_AT / 1000) as u64 + 1,
        (PAUSE_AT / 1000) as u64,
        1000,
    );
    let kinds: Vec<String> = b.to_agent().iter().map(|f| f["type"].to_string()).collect();
    assert_eq!(kinds, ["\"cancel\""]);
    assert!(b.editor_bytes().contains("output buffers were full"));
    let before = editor.bytes();
    assert!(before < 2 * PAUSE_AT, "{before}");
    b.chunks(&id, 5000, 100, 1000);
    assert_eq!(editor.bytes(), before, "later chunks are dropped");
}

#[test]
fn an_agent_link_that_does_not_read_gets_no_new_requests() {
    // Nothing is ever written to the agent: its backlog only grows.
    let mut b = Board::new(|c| c.max_output_bytes = 300 * 1024);
    b.stream();
    let big = "z".repeat(200 * 1024);
    let mut statuses = Vec::new();
    for conn in 2..6 {
        b.board.attach(ConnId(conn), ConnId(conn));
        let request = chat_request(false, &big);
        b.with(|p, now| p.handle_request(ConnId(conn), request, now));
        let status = b.posted.borrow().iter().find_map(|o| match o {
            Output::Respond { to, response } if to.conn == ConnId(conn) => Some(response.status),
            _ => None,
        });
        statuses.push(status);
    }
    assert_eq!(
        statuses[..2],
        [None, None],
        "the first invocations are sent"
    );
    assert!(
        statuses[2..].iter().all(|s| *s == Some(503)),
        "{statuses:?}"
    );
}
