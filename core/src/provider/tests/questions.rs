//! Agents' permission questions: kept for the user while their answer is
//! in progress, decided through the control API, bounded, and never left
//! behind by what they were about.

use super::*;
use crate::provider::questions::{MAX_PER_LINK, MAX_QUESTIONS};

const USER: ConnId = ConnId(60);

/// A provider with an agent answering one streamed chat: its wire id.
fn answering() -> (Pair, String) {
    let mut t = Pair::new(|c| c.audit = true);
    t.connect_agent(AGENT, register(3600));
    t.agent_frames(AGENT);
    t.chat(EDITOR, true);
    let id = t.last_invoke_id(AGENT);
    (t, id)
}

fn ask(t: &mut Pair, agent: ConnId, asked: &str, invoke: &str) {
    let input = json!({"command": "rm -rf build", "secret": "s3cr3t-input"});
    t.agent(
        agent,
        json!({"type": "permission_request", "id": asked, "invoke": invoke,
               "tool": {"title": "Run a command", "kind": "execute", "input": input},
               "deadline_ms": 30_000}),
    );
}

fn control(t: &mut Pair, method: &str, path: &str, body: Value) -> (u16, Value) {
    t.request(USER, method, path, &BRIDGE, body);
    let (status, body, _) = t.editor(USER);
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status.unwrap_or(0), body)
}

fn waiting(t: &mut Pair) -> Vec<Value> {
    let (status, body) = control(t, "GET", "/control/permissions", Value::Null);
    assert_eq!(status, 200);
    body["questions"].as_array().cloned().unwrap_or_default()
}

fn counted(t: &mut Pair, decision: &str) -> u64 {
    t.request(USER, "GET", "/metrics", &BRIDGE, Value::Null);
    let (_, body, _) = t.editor(USER);
    let page = String::from_utf8(body).unwrap_or_default();
    let series = format!("mcp_provider_permission_questions_total{{decision=\"{decision}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(series.as_str())?.parse().ok())
        .unwrap_or(u64::MAX)
}

#[test]
fn a_question_is_listed_then_decided_and_the_agent_told() {
    let (mut t, inv) = answering();
    ask(&mut t, AGENT, "perm-1", &inv);
    assert!(t.agent_frames(AGENT).is_empty(), "it waits for the user");
    let list = waiting(&mut t);
    assert_eq!(list.len(), 1);
    let q = &list[0];
    assert_eq!(q["agent_id"], "a");
    assert_eq!(q["model"], "m");
    assert_eq!(q["tool"]["title"], "Run a command");
    assert_eq!(q["tool"]["kind"], "execute");
    assert!(q["tool"]["input"]
        .as_str()
        .is_some_and(|i| i.contains("rm -rf build")));
    assert_eq!(q["expires_in_ms"], 30_000);
    let id = q["id"].as_str().unwrap().to_owned();

    let (status, body) = control(
        &mut t,
        "POST",
        "/control/permission",
        json!({"id": id, "allow": true}),
    );
    assert_eq!((status, body), (200, json!({"id": id, "allow": true})));
    assert_eq!(
        t.agent_frames(AGENT),
        [json!({"type": "permission_decision", "id": "perm-1", "allow": true})]
    );
    assert!(waiting(&mut t).is_empty());
    assert_eq!(counted(&mut t, "allow"), 1);

    // Decided already: 404 in the API's error shape.
    let (status, body) = control(
        &mut t,
        "POST",
        "/control/permission",
        json!({"id": id, "allow": false}),
    );
    assert_eq!(status, 404);
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("No permission question")));
    // A body without a boolean decision is a 400.
    for bad in [
        json!({"id": id}),
        json!({"id": id, "allow": "yes"}),
        json!({"allow": true}),
    ] {
        assert_eq!(control(&mut t, "POST", "/control/permission", bad).0, 400);
    }
    // Only the bridge token may see or decide them.
    t.request(USER, "GET", "/control/permissions", &[], Value::Null);
    assert_eq!(t.editor(USER).0, Some(401));

    // The audit trail has the tool and the decision, never the input.
    let mut decided = Vec::new();
    while let Some(line) = t.p.poll_audit() {
        assert!(
            !line.contains("s3cr3t-input") && !line.contains("rm -rf"),
            "{line}"
        );
        let line: Value = serde_json::from_str(&line).unwrap();
        if line["event"] == "permission_decided" {
            decided.push(line);
        }
    }
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["tool"], "Run a command");
    assert_eq!(decided[0]["decision"], "allow");
}

#[test]
fn a_rejection_reaches_the_agent() {
    let (mut t, inv) = answering();
    ask(&mut t, AGENT, "perm-1", &inv);
    let id = waiting(&mut t)[0]["id"].as_str().unwrap().to_owned();
    let (status, _) = control(
        &mut t,
        "POST",
        "/control/permission",
        json!({"id": id, "allow": false}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        t.agent_frames(AGENT),
        [json!({"type": "permission_decision", "id": "perm-1", "allow": false})]
    );
    assert_eq!(counted(&mut t, "reject"), 1);
}

#[test]
fn questions_go_with_their_answer_their_link_their_agents_word_and_their_deadline() {
    // Withdrawn by the agent, for its own timeout.
    let (mut t, inv) = answering();
    ask(&mut t, AGENT, "perm-1", &inv);
    t.agent(
        AGENT,
        json!({"type": "permission_withdrawn", "id": "perm-1", "reason": "timeout"}),
    );
    assert!(waiting(&mut t).is_empty());
    assert_eq!(counted(&mut t, "timeout"), 1);
    // One it never asked is ignored.
    t.agent(
        AGENT,
        json!({"type": "permission_withdrawn", "id": "perm-9"}),
    );
    assert!(t.agent_frames(AGENT).is_empty());

    // The answer ends: its question goes.
    ask(&mut t, AGENT, "perm-2", &inv);
    assert_eq!(waiting(&mut t).len(), 1);
    t.agent(AGENT, chunk(&inv, 0, "done", Some("stop")));
    assert!(waiting(&mut t).is_empty());
    assert_eq!(counted(&mut t, "withdrawn"), 1);

    // The link drops: its questions go.
    let (mut t, inv) = answering();
    ask(&mut t, AGENT, "perm-1", &inv);
    t.p.handle_conn_closed(AGENT, t.now);
    t.drain();
    assert!(waiting(&mut t).is_empty());

    // Nobody decides: at its deadline exactly, the agent is told no.
    let (mut t, inv) = answering();
    ask(&mut t, AGENT, "perm-1", &inv);
    let due = t.now + Duration::from_secs(30);
    assert!(t.p.poll_timeout().is_some_and(|at| at <= due));
    t.advance_to(due - Duration::from_nanos(1));
    assert_eq!(waiting(&mut t).len(), 1);
    t.advance_to(due);
    let told = t.agent_frames(AGENT);
    assert!(
        told.iter().any(|f| f["type"] == "permission_decision"
            && f["id"] == "perm-1"
            && f["allow"] == false),
        "{told:?}"
    );
    assert!(waiting(&mut t).is_empty());
}

#[test]
fn over_the_caps_or_about_no_answer_of_its_link_a_question_is_answered_no_at_once() {
    let (mut t, inv) = answering();
    // About an answer that is not in progress here.
    ask(&mut t, AGENT, "perm-x", "inv-999");
    let told = t.agent_frames(AGENT);
    assert_eq!(told.len(), 1);
    assert_eq!(told[0]["allow"], false);
    assert_eq!(told[0]["id"], "perm-x");

    // Per link.
    for n in 0..MAX_PER_LINK {
        ask(&mut t, AGENT, &format!("perm-{n}"), &inv);
    }
    assert!(t.agent_frames(AGENT).is_empty());
    ask(&mut t, AGENT, "perm-over", &inv);
    let told = t.agent_frames(AGENT);
    assert_eq!(told.len(), 1);
    assert_eq!(
        (told[0]["id"].clone(), told[0]["allow"].clone()),
        (json!("perm-over"), json!(false))
    );
    assert!(told[0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("too many")));
    assert_eq!(waiting(&mut t).len(), MAX_PER_LINK);
    assert_eq!(counted(&mut t, "refused"), 2);

    // The same id twice: an error, the first one still waits.
    ask(&mut t, AGENT, "perm-0", &inv);
    let told = t.agent_frames(AGENT);
    assert_eq!(told[0]["type"], "error");
    assert_eq!(told[0]["error"]["code"], "invalid_message");
    assert_eq!(waiting(&mut t).len(), MAX_PER_LINK);

    // In all: links enough to fill the cap (each serving a model of its
    // own), then one more question refused.
    let links = MAX_QUESTIONS / MAX_PER_LINK;
    for l in 1..=links {
        let (conn, model) = (ConnId(200 + l as u64), format!("m{l}"));
        t.connect_agent(
            conn,
            json!({"type": "register", "agent_id": model, "models": [model]}),
        );
        t.agent_frames(conn);
        let body = json!({"model": model, "stream": true,
                          "messages": [{"role": "user", "content": "hi"}]});
        t.request(
            ConnId(300 + l as u64),
            "POST",
            "/v1/chat/completions",
            &[],
            body,
        );
        let inv = t.last_invoke_id(conn);
        let asks = if l == links { 1 } else { MAX_PER_LINK };
        for n in 0..asks {
            ask(&mut t, conn, &format!("perm-{n}"), &inv);
        }
        if l == links {
            let told = t.agent_frames(conn);
            assert_eq!(told.len(), 1, "{told:?}");
            assert_eq!(told[0]["allow"], false);
        }
    }
    assert_eq!(waiting(&mut t).len(), MAX_QUESTIONS);
}

#[test]
fn a_question_that_does_not_read_gets_an_error_in_the_links_shape() {
    let (mut t, inv) = answering();
    for bad in [
        json!({"type": "permission_request", "invoke": inv}),
        json!({"type": "permission_request", "id": 5, "invoke": inv}),
        json!({"type": "permission_request", "id": "p", "invoke": inv, "tool": "rm"}),
        json!({"type": "permission_request", "id": "", "invoke": inv}),
        json!({"type": "permission_withdrawn"}),
    ] {
        t.agent(AGENT, bad.clone());
        let told = t.agent_frames(AGENT);
        assert_eq!(told.len(), 1, "{bad}");
        assert_eq!(told[0]["type"], "error", "{bad}");
        assert_eq!(told[0]["error"]["code"], "invalid_message", "{bad}");
    }
    // The answer in progress was not touched.
    assert!(waiting(&mut t).is_empty());
    t.agent(AGENT, chunk(&inv, 0, "still here", Some("stop")));
    let (status, body, _) = t.editor(EDITOR);
    assert_eq!(status, Some(200));
    assert!(String::from_utf8(body).unwrap().contains("still here"));
}
