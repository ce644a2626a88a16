//! Spare sessions: opened ahead in each process, taken by new
//! conversations without a `session/new` in their way, replaced at once,
//! a process started ahead when none has room left for one, and given up
//! first when a conversation needs their place.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::super::*;
use super::{heard, invoke, invoke_with_tools, reply, request_of, with_tools, written};

/// An agent of `plan` whose first process answered `initialize` and its
/// first session, `s0`: the spare.
fn spared(plan: AcpPlan, now: Instant) -> AcpAgent {
    let mut agent = AcpAgent::new(plan, "acp", now);
    written(&mut agent);
    reply(&mut agent, 0, &json!(0), json!({"protocolVersion": 1}), now);
    let first = request_of(&written(&mut agent), "session/new");
    assert_eq!(first["params"]["mcpServers"], json!([]));
    reply(&mut agent, 0, &first["id"], json!({"sessionId": "s0"}), now);
    assert_eq!(agent.sessions(), 0, "a spare holds no conversation");
    agent
}

/// A new conversation `id` (one message): what the agent then wrote.
fn start(agent: &mut AcpAgent, id: &str, now: Instant) -> Vec<Value> {
    invoke(agent, id, json!([{"role": "user", "content": id}]), now);
    written(agent)
}

#[test]
fn a_new_conversation_takes_the_spare_and_another_opens_in_its_place() {
    let now = Instant::now();
    let plan = AcpPlan {
        max_sessions: 4,
        ..super::plan()
    };
    let mut agent = spared(plan, now);
    // Idle past the sessions' time, the spare is kept.
    let later = now + Duration::from_secs(3600);
    agent.handle_timeout(later);
    assert!(written(&mut agent).is_empty());
    for (n, session) in ["s0", "s1", "s2"].into_iter().enumerate() {
        let lines = start(&mut agent, &format!("inv-{n}"), later);
        // Its prompt goes to the spare, alone: no `session/new` before it,
        // and none beside it before its first words.
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["method"], "session/prompt", "{lines:?}");
        assert_eq!(lines[0]["params"]["sessionId"], session);
        // Once they came, another spare is asked for, as any new session
        // is.
        let lines = heard(&mut agent, 0, session, "Hi", later);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(
            (&lines[0]["method"], &lines[0]["params"]),
            (
                &json!("session/new"),
                &json!({"cwd": "/work", "mcpServers": []})
            )
        );
        let next = format!("s{}", n + 1);
        reply(
            &mut agent,
            0,
            &lines[0]["id"],
            json!({"sessionId": next}),
            later,
        );
        assert_eq!(agent.sessions(), n + 1);
    }
    // The fourth takes the last place: no spare fits beside it, and no
    // other process may start.
    let lines = start(&mut agent, "inv-3", later);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["params"]["sessionId"], "s3");
    assert!(heard(&mut agent, 0, "s3", "Hi", later).is_empty());
    assert_eq!((agent.sessions(), agent.starts()), (4, 1));
}

#[test]
fn a_second_process_starts_when_the_last_spare_is_taken_within_the_plan() {
    let now = Instant::now();
    let plan = AcpPlan {
        max_sessions: 2,
        max_processes: 2,
        ..super::plan()
    };
    let mut agent = spared(plan, now);
    start(&mut agent, "inv-1", now);
    let spare = request_of(&heard(&mut agent, 0, "s0", "Hi", now), "session/new");
    reply(&mut agent, 0, &spare["id"], json!({"sessionId": "s1"}), now);
    // The last spare taken, with no room left for another: the second
    // process starts ahead of the next conversation, once the turn was
    // heard from.
    let lines = start(&mut agent, "inv-2", now);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["params"]["sessionId"], "s1");
    let lines = heard(&mut agent, 0, "s1", "Hi", now);
    assert_eq!(lines[0], json!({"spawn": 1}), "{lines:?}");
    let init = request_of(&lines, "initialize");
    reply(
        &mut agent,
        1,
        &init["id"],
        json!({"protocolVersion": 1}),
        now,
    );
    // Ready, it opens its own spare (its models are known already).
    let spare = request_of(&written(&mut agent), "session/new");
    reply(&mut agent, 1, &spare["id"], json!({"sessionId": "t0"}), now);
    let lines = start(&mut agent, "inv-3", now);
    assert_eq!(lines[0]["params"]["sessionId"], "t0");
    let spare = request_of(&heard(&mut agent, 1, "t0", "Hi", now), "session/new");
    reply(&mut agent, 1, &spare["id"], json!({"sessionId": "t1"}), now);
    let lines = start(&mut agent, "inv-4", now);
    assert_eq!(lines[0]["params"]["sessionId"], "t1");
    // Every place taken and every process running: none starts.
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(heard(&mut agent, 1, "t1", "Hi", now).is_empty());
    assert_eq!((agent.processes(), agent.starts()), (2, 2));
}

#[test]
fn a_conversation_needing_the_spares_place_reclaims_it() {
    let now = Instant::now();
    let plan = AcpPlan {
        editor_tools: EditorTools::Mcp,
        ..with_tools()
    };
    // Two sessions a process: a conversation and the spare.
    let mut agent = spared(plan, now);
    start(&mut agent, "inv-1", now);
    let spare = request_of(&heard(&mut agent, 0, "s0", "Hi", now), "session/new");
    reply(&mut agent, 0, &spare["id"], json!({"sessionId": "s1"}), now);
    // One given the editor's tools cannot take the spare (its relay is
    // named as its session opens): the spare makes way for it.
    invoke_with_tools(
        &mut agent,
        "inv-2",
        json!([{"role": "user", "content": "Weather?"}]),
        now,
    );
    let lines = written(&mut agent);
    let new = request_of(&lines, "session/new");
    assert_eq!(new["params"]["mcpServers"][0]["command"], "relay");
    reply(&mut agent, 0, &new["id"], json!({"sessionId": "s2"}), now);
    assert_eq!(agent.sessions(), 2);
    assert!(written(&mut agent)
        .iter()
        .all(|l| l["method"] != "session/new"));
    // The next new conversation opens a session of its own in place of
    // the least recently used idle one, as without spares.
    let lines = start(&mut agent, "inv-3", now);
    assert!(lines.is_empty(), "both busy: {lines:?}");
}

#[test]
fn a_spare_goes_with_its_process_and_the_next_opens_its_own() {
    let now = Instant::now();
    let mut agent = spared(super::plan(), now);
    agent.handle_exit(
        RunId(0),
        Exit::Exited {
            code: Some(1),
            stderr: String::new(),
        },
        now,
    );
    // No process served yet again: the restart waits for its backoff.
    assert!(written(&mut agent).is_empty());
    let later = now + Duration::from_secs(2);
    agent.handle_timeout(later);
    let lines = written(&mut agent);
    assert_eq!(lines[0], json!({"spawn": 1}), "{lines:?}");
    let init = request_of(&lines, "initialize");
    reply(
        &mut agent,
        1,
        &init["id"],
        json!({"protocolVersion": 1}),
        later,
    );
    let spare = request_of(&written(&mut agent), "session/new");
    reply(
        &mut agent,
        1,
        &spare["id"],
        json!({"sessionId": "s0"}),
        later,
    );
    let lines = start(&mut agent, "inv-1", later);
    assert_eq!(lines[0]["method"], "session/prompt", "{lines:?}");
}

#[test]
fn an_agent_opening_spares_only_when_idle_replaces_a_taken_one_when_its_turn_ends() {
    let now = Instant::now();
    let plan = AcpPlan {
        max_sessions: 4,
        spare_when_idle: true,
        ..super::plan()
    };
    let mut agent = spared(plan, now);
    let lines = start(&mut agent, "inv-1", now);
    // Its prompt goes to the spare, and no other session opens beside it.
    assert_eq!(lines.len(), 1, "{lines:?}");
    let prompt = &lines[0];
    assert_eq!(prompt["params"]["sessionId"], "s0");
    // Cancelled, the turn still runs until the agent answers its prompt.
    agent.handle_message(&json!({"type": "cancel", "id": "inv-1"}).to_string(), now);
    let lines = written(&mut agent);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["method"], "session/cancel");
    reply(
        &mut agent,
        0,
        &prompt["id"],
        json!({"stopReason": "cancelled"}),
        now,
    );
    let spare = request_of(&written(&mut agent), "session/new");
    reply(&mut agent, 0, &spare["id"], json!({"sessionId": "s1"}), now);
    let lines = start(&mut agent, "inv-2", now);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["params"]["sessionId"], "s1");
    // The turn ended, a spare opens in its place.
    reply(
        &mut agent,
        0,
        &lines[0]["id"],
        json!({"stopReason": "end_turn"}),
        now,
    );
    let spare = request_of(&written(&mut agent), "session/new");
    assert_eq!(spare["params"]["mcpServers"], json!([]));
    reply(&mut agent, 0, &spare["id"], json!({"sessionId": "s2"}), now);
    let lines = start(&mut agent, "inv-3", now);
    assert_eq!(lines[0]["params"]["sessionId"], "s2");
}

#[test]
fn while_conversations_come_faster_than_spares_open_a_second_process_keeps_one_too() {
    let now = Instant::now();
    let plan = AcpPlan {
        max_sessions: 4,
        max_processes: 2,
        ..super::plan()
    };
    let mut agent = spared(plan, now);
    let opening = Duration::from_millis(400);
    start(&mut agent, "inv-1", now);
    let spare = request_of(&heard(&mut agent, 0, "s0", "Hi", now), "session/new");
    reply(
        &mut agent,
        0,
        &spare["id"],
        json!({"sessionId": "s1"}),
        now + opening,
    );
    // A conversation finding its spare opened long before: one process
    // is enough.
    let t1 = now + Duration::from_secs(2);
    let lines = start(&mut agent, "inv-2", t1);
    assert_eq!(lines[0]["params"]["sessionId"], "s1");
    let lines = heard(&mut agent, 0, "s1", "Hi", t1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    reply(
        &mut agent,
        0,
        &lines[0]["id"],
        json!({"sessionId": "s2"}),
        t1 + opening,
    );
    // The next comes as its spare just opened: the spares are behind, and
    // a second process starts (once the turn was heard from) beside the
    // first one's spare.
    let t2 = t1 + opening;
    let lines = start(&mut agent, "inv-3", t2);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["params"]["sessionId"], "s2");
    let lines = heard(&mut agent, 0, "s2", "Hi", t2);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["method"], "session/new");
    assert_eq!(lines[1], json!({"spawn": 1}));
    reply(
        &mut agent,
        0,
        &lines[0]["id"],
        json!({"sessionId": "s3"}),
        t2,
    );
    reply(
        &mut agent,
        1,
        &lines[2]["id"],
        json!({"protocolVersion": 1}),
        t2,
    );
    // Its spare opens at once: two in all, and no more.
    let lines = written(&mut agent);
    assert_eq!(lines.len(), 1, "{lines:?}");
    reply(
        &mut agent,
        1,
        &lines[0]["id"],
        json!({"sessionId": "t0"}),
        t2,
    );
    assert!(written(&mut agent).is_empty());
    // Kept while the pace lasts, though it holds no conversation; ended
    // once conversations stopped coming fast, its spare with it.
    agent.handle_timeout(t2 + Duration::from_secs(1));
    assert!(written(&mut agent).is_empty());
    agent.handle_timeout(t2 + Duration::from_secs(6));
    assert_eq!(written(&mut agent), [json!({"kill": 1})]);
    // The next conversation takes the first process's spare.
    let t3 = t2 + Duration::from_secs(6);
    let lines = start(&mut agent, "inv-4", t3);
    assert_eq!(lines[0]["params"]["sessionId"], "s3");
}

#[test]
fn a_conversation_finding_no_spare_waits_for_the_one_opening_while_a_second_process_starts() {
    let now = Instant::now();
    let plan = AcpPlan {
        max_sessions: 4,
        max_processes: 2,
        ..super::plan()
    };
    let mut agent = spared(plan, now);
    start(&mut agent, "inv-1", now);
    let spare = request_of(&heard(&mut agent, 0, "s0", "Hi", now), "session/new");
    // The next finds the spare still opening: it waits for it, and the
    // spares being behind, a second process starts meanwhile.
    let lines = start(&mut agent, "inv-2", now);
    assert_eq!(lines[0], json!({"spawn": 1}), "{lines:?}");
    let init = request_of(&lines, "initialize");
    assert_eq!(lines.len(), 2, "{lines:?}");
    reply(
        &mut agent,
        1,
        &init["id"],
        json!({"protocolVersion": 1}),
        now,
    );
    // Ready first, it opens no session for the conversation, which would
    // be ready no sooner than the spare.
    assert!(written(&mut agent).is_empty());
    reply(&mut agent, 0, &spare["id"], json!({"sessionId": "s1"}), now);
    let lines = written(&mut agent);
    assert_eq!(lines[0]["method"], "session/prompt", "{lines:?}");
    assert_eq!(lines[0]["params"]["sessionId"], "s1");
    // Then the second process opens its spare, the first waiting for the
    // turn's first words.
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["method"], "session/new");
    reply(
        &mut agent,
        1,
        &lines[1]["id"],
        json!({"sessionId": "t0"}),
        now,
    );
    let lines = heard(&mut agent, 0, "s1", "Hi", now);
    assert_eq!(
        request_of(&lines, "session/new")["params"]["mcpServers"],
        json!([])
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
}
