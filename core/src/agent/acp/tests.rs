//! The ACP agent driven by hand: provider frames and the agent process's
//! lines in, frames, writes and kills out.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::pool::{FIRST_BACKOFF, STABLE};
use super::*;
use crate::agent::exec::ToolLink;
use crate::agent::process::Stdin;

mod churn;
mod isolation;
mod spare;
mod tool_search;

fn plan() -> AcpPlan {
    AcpPlan {
        model: "acp".into(),
        command: vec!["agent".into(), "--acp".into()],
        env: Vec::new(),
        cwd: "/work".into(),
        timeout: Duration::from_secs(60),
        start_timeout: Duration::from_secs(5),
        max_sessions: 2,
        max_processes: 1,
        idle: Duration::from_secs(300),
        max_queued: 4,
        policy: Policy::Never,
        show_tools: true,
        login: Some("agent login".into()),
        tools: None,
        editor_tools: EditorTools::Auto,
        shared_servers: false,
        spare_when_idle: false,
        own_tools_off: None,
    }
}

/// An agent just made: its process (run 0) is started and asked to
/// `initialize` (request 0).
fn agent(now: Instant) -> AcpAgent {
    let mut agent = AcpAgent::new(plan(), "acp", now);
    let lines = written(&mut agent);
    assert_eq!(lines[0], json!({"spawn": 0}));
    assert_eq!(
        request_of(&lines, "initialize")["params"]["protocolVersion"],
        1
    );
    assert!(
        frames(&mut agent).is_empty(),
        "no register before its models are known"
    );
    agent
}

/// An agent whose process answered `initialize`, and its first session
/// (request 1) with `probe` (`None`: an error), past its `register`.
fn started(now: Instant, probe: Option<Value>) -> (AcpAgent, Value) {
    let mut agent = agent(now);
    reply(&mut agent, 0, &json!(0), json!({"protocolVersion": 1}), now);
    let first = request_of(&written(&mut agent), "session/new");
    assert_eq!(first["id"], 1);
    match probe {
        Some(result) => reply(&mut agent, 0, &json!(1), result, now),
        None => {
            let refused =
                json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "no"}});
            say(&mut agent, 0, refused, now);
        }
    }
    let register = frames(&mut agent).remove(0);
    assert_eq!(register["type"], "register");
    (agent, register)
}

fn invoke(agent: &mut AcpAgent, id: &str, messages: Value, now: Instant) {
    let frame = json!({"type": "model_invoke", "id": id,
                       "payload": {"kind": "chat", "messages": messages}});
    agent.handle_message(&frame.to_string(), now);
}

fn frames(agent: &mut AcpAgent) -> Vec<Value> {
    std::iter::from_fn(|| agent.poll_transmit())
        .filter_map(|f| serde_json::from_str(&f).ok())
        .collect()
}

/// What the agent wrote to the process's stdin, parsed; spawns and kills
/// as `{"spawn": run}` / `{"kill": run}`.
fn written(agent: &mut AcpAgent) -> Vec<Value> {
    std::iter::from_fn(|| agent.poll_action())
        .map(|a| match a {
            Action::Write { line, .. } => serde_json::from_str(&line).unwrap_or(Value::Null),
            Action::Spawn { run, stdin, .. } => {
                assert_eq!(stdin, Stdin::Open);
                json!({"spawn": run.0})
            }
            Action::Kill { run } => json!({"kill": run.0}),
        })
        .collect()
}

fn say(agent: &mut AcpAgent, run: u64, message: Value, now: Instant) {
    let line = format!("{message}\n");
    agent.handle_stdout(RunId(run), line.as_bytes(), now);
}

fn reply(agent: &mut AcpAgent, run: u64, id: &Value, result: Value, now: Instant) {
    say(
        agent,
        run,
        json!({"jsonrpc": "2.0", "id": id, "result": result}),
        now,
    );
}

fn update(agent: &mut AcpAgent, run: u64, session: &str, kind: &str, text: &str, now: Instant) {
    let params = json!({"sessionId": session,
                        "update": {"sessionUpdate": kind, "content": {"type": "text", "text": text}}});
    say(
        agent,
        run,
        json!({"jsonrpc": "2.0", "method": "session/update", "params": params}),
        now,
    );
}

/// The first words `text` of the turn in `session` (of run `run`), its
/// chunks taken: what the agent then wrote (a spare opens only once the
/// turns of its process were heard from).
fn heard(agent: &mut AcpAgent, run: u64, session: &str, text: &str, now: Instant) -> Vec<Value> {
    update(agent, run, session, "agent_message_chunk", text, now);
    frames(agent);
    written(agent)
}

/// The request the agent wrote for `method`, the last of them.
fn request_of(lines: &[Value], method: &str) -> Value {
    lines
        .iter()
        .rev()
        .find(|l| l["method"] == method)
        .cloned()
        .unwrap_or_else(|| panic!("no {method} in {lines:?}"))
}

/// A started agent with request `inv-1` (one user message) sent as the
/// prompt (request 3) of session `s1` (opened by request 2).
fn prompted(now: Instant) -> AcpAgent {
    let (mut agent, _) = started(now, None);
    invoke(
        &mut agent,
        "inv-1",
        json!([{"role": "user", "content": "Hi"}]),
        now,
    );
    let new = request_of(&written(&mut agent), "session/new");
    assert_eq!(new["params"], json!({"cwd": "/work", "mcpServers": []}));
    reply(&mut agent, 0, &new["id"], json!({"sessionId": "s1"}), now);
    let prompt = request_of(&written(&mut agent), "session/prompt");
    assert_eq!(
        prompt["params"],
        json!({"sessionId": "s1", "prompt": [{"type": "text", "text": "Hi"}]})
    );
    agent
}

/// Answers the `session/new` the agent wrote (on run `run`) with session
/// `id`: the `session/prompt` it then writes.
fn open(agent: &mut AcpAgent, run: u64, id: &str, now: Instant) -> Value {
    let new = request_of(&written(agent), "session/new");
    reply(agent, run, &new["id"], json!({"sessionId": id}), now);
    request_of(&written(agent), "session/prompt")
}

/// A prompt's text.
fn text_of(prompt: &Value) -> &str {
    prompt["params"]["prompt"][0]["text"]
        .as_str()
        .unwrap_or_default()
}

fn prompt_id(agent: &mut AcpAgent) -> Value {
    request_of(&written(agent), "session/prompt")["id"].clone()
}

#[test]
fn a_turn_streams_text_and_reasoning_and_ends_with_the_stop_reason() {
    let now = Instant::now();
    let mut agent = prompted(now);
    update(&mut agent, 0, "s1", "agent_thought_chunk", "hmm", now);
    update(&mut agent, 0, "s1", "agent_message_chunk", "Hello", now);
    update(&mut agent, 0, "other", "agent_message_chunk", "stray", now);
    // The prompt was request 2: initialize 0, session/new 1.
    reply(
        &mut agent,
        0,
        &json!(3),
        json!({"stopReason": "max_tokens"}),
        now,
    );
    let out = frames(&mut agent);
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(
        out[0]["delta"],
        json!({"role": "assistant", "reasoning_content": "hmm"})
    );
    assert_eq!(out[1]["delta"], json!({"content": "Hello"}));
    assert_eq!(out[2]["finish_reason"], "length");
    assert_eq!(out[2]["chunk_index"], 2);
    assert!(out[2]["usage"]["completion_tokens"].as_u64() > Some(0));
}

#[test]
fn a_continued_conversation_goes_to_its_session_with_only_its_new_message() {
    let now = Instant::now();
    let mut agent = prompted(now);
    update(&mut agent, 0, "s1", "agent_message_chunk", "Hello!", now);
    reply(
        &mut agent,
        0,
        &json!(3),
        json!({"stopReason": "end_turn"}),
        now,
    );
    frames(&mut agent);
    let history = json!([{"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": "Hello!"},
                         {"role": "user", "content": "More"}]);
    invoke(&mut agent, "inv-2", history.clone(), now);
    let prompt = request_of(&written(&mut agent), "session/prompt");
    assert_eq!(prompt["params"]["sessionId"], "s1");
    assert_eq!(prompt["params"]["prompt"][0]["text"], "More");
    reply(
        &mut agent,
        0,
        &prompt["id"],
        json!({"stopReason": "end_turn"}),
        now,
    );
    frames(&mut agent);

    // The same point regenerated: that session has moved on.
    invoke(&mut agent, "inv-3", history, now);
    let lines = written(&mut agent);
    let new = request_of(&lines, "session/new");
    assert_eq!(agent.starts(), 1);
    reply(&mut agent, 0, &new["id"], json!({"sessionId": "s2"}), now);
    let prompt = request_of(&written(&mut agent), "session/prompt");
    assert_eq!(prompt["params"]["sessionId"], "s2");
    let whole = text_of(&prompt);
    assert!(
        whole.contains("Hello!") && whole.ends_with("More"),
        "{whole}"
    );
}

#[test]
fn an_editor_leaving_cancels_the_turn_and_forgets_its_session() {
    let now = Instant::now();
    let mut agent = prompted(now);
    agent.handle_message(r#"{"type":"cancel","id":"inv-1"}"#, now);
    let lines = written(&mut agent);
    assert_eq!(
        lines,
        [json!({"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": "s1"}})]
    );
    update(&mut agent, 0, "s1", "agent_message_chunk", "late", now);
    reply(
        &mut agent,
        0,
        &json!(3),
        json!({"stopReason": "cancelled"}),
        now,
    );
    assert!(frames(&mut agent).is_empty(), "nothing for a gone editor");
    assert_eq!(agent.sessions(), 0);
}

#[test]
fn a_crash_fails_the_turn_and_the_next_request_starts_the_agent_again() {
    let now = Instant::now();
    let mut agent = prompted(now);
    let exit = Exit::Exited {
        code: Some(3),
        stderr: "boom".into(),
    };
    agent.handle_exit(RunId(0), exit, now);
    let out = frames(&mut agent);
    assert_eq!(out[0]["type"], "error");
    assert_eq!(
        out[0]["error"]["message"],
        "`agent` exited with status 3: boom"
    );
    // It ended early: the next start waits out the backoff.
    invoke(
        &mut agent,
        "inv-2",
        json!([{"role": "user", "content": "again"}]),
        now,
    );
    assert!(written(&mut agent).is_empty());
    let due = agent.poll_timeout().unwrap_or(now);
    assert_eq!(due, now + FIRST_BACKOFF);
    agent.handle_timeout(due);
    assert_eq!(written(&mut agent)[0], json!({"spawn": 1}));
}

#[test]
fn an_agent_that_cannot_start_registers_and_fails_what_waits_at_once() {
    let now = Instant::now();
    let mut agent = agent(now);
    invoke(
        &mut agent,
        "inv-1",
        json!([{"role": "user", "content": "Hi"}]),
        now,
    );
    agent.handle_exit(RunId(0), Exit::NotStarted("No such file".into()), now);
    let out = frames(&mut agent);
    assert_eq!(out[0]["type"], "register");
    assert_eq!(out[0]["models"], json!(["acp"]));
    assert_eq!(
        out[1]["error"]["message"],
        "could not start `agent`: No such file"
    );
}

#[test]
fn a_wrong_version_a_silent_start_and_a_huge_line_end_the_process() {
    let now = Instant::now();
    let mut agent = agent(now);
    invoke(
        &mut agent,
        "inv-1",
        json!([{"role": "user", "content": "Hi"}]),
        now,
    );
    reply(&mut agent, 0, &json!(0), json!({"protocolVersion": 2}), now);
    assert_eq!(written(&mut agent), [json!({"kill": 0})]);
    let exit = Exit::Exited {
        code: None,
        stderr: String::new(),
    };
    agent.handle_exit(RunId(0), exit, now);
    let out = frames(&mut agent);
    assert!(out[1]["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("speaks ACP version 2")));

    let mut silent = self::agent(now);
    assert_eq!(silent.poll_timeout(), Some(now + Duration::from_secs(5)));
    silent.handle_timeout(now + Duration::from_secs(5));
    assert_eq!(written(&mut silent), [json!({"kill": 0})]);

    let mut huge = prompted(now);
    huge.handle_stdout(RunId(0), &vec![b'x'; MAX_LINE + 1], now);
    assert_eq!(written(&mut huge), [json!({"kill": 0})]);
}

#[test]
fn permission_is_answered_by_the_policy_and_other_requests_refused() {
    let now = Instant::now();
    let mut agent = prompted(now);
    let asked = json!({"jsonrpc": "2.0", "id": "p1", "method": "session/request_permission",
                       "params": {"sessionId": "s1", "toolCall": {"toolCallId": "t", "kind": "edit"},
                                  "options": [{"optionId": "ok", "kind": "allow_once"},
                                              {"optionId": "nope", "kind": "reject_once"}]}});
    say(&mut agent, 0, asked, now);
    say(
        &mut agent,
        0,
        json!({"jsonrpc": "2.0", "id": 9, "method": "fs/read_text_file", "params": {}}),
        now,
    );
    let lines = written(&mut agent);
    assert_eq!(lines[0]["id"], "p1");
    assert_eq!(lines[0]["result"]["outcome"]["optionId"], "nope");
    assert_eq!(lines[1]["error"]["code"], crate::mcp::METHOD_NOT_FOUND);
}

#[test]
fn a_huge_unknown_method_is_quoted_only_in_part() {
    let now = Instant::now();
    let mut agent = prompted(now);
    let method = format!("é{}", "x".repeat(1 << 20));
    say(
        &mut agent,
        0,
        json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": {}}),
        now,
    );
    let action = agent.poll_action();
    let Some(Action::Write { line, .. }) = action else {
        panic!("no answer: {action:?}");
    };
    assert!(line.len() < 400, "{} bytes", line.len());
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["error"]["code"], crate::mcp::METHOD_NOT_FOUND);
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("éxxx") && message.contains('…'),
        "{message}"
    );
}

#[test]
fn past_the_sessions_cap_the_least_recently_used_idle_session_goes() {
    let now = Instant::now();
    let mut agent = prompted(now);
    reply(
        &mut agent,
        0,
        &json!(3),
        json!({"stopReason": "end_turn"}),
        now,
    );
    let later = now + Duration::from_secs(1);
    invoke(
        &mut agent,
        "inv-2",
        json!([{"role": "user", "content": "Two"}]),
        later,
    );
    let new = request_of(&written(&mut agent), "session/new");
    reply(&mut agent, 0, &new["id"], json!({"sessionId": "s2"}), later);
    let second = prompt_id(&mut agent);
    // Both places taken, s2 busy: a third conversation takes s1's place.
    invoke(
        &mut agent,
        "inv-3",
        json!([{"role": "user", "content": "Three"}]),
        later,
    );
    let new = request_of(&written(&mut agent), "session/new");
    reply(&mut agent, 0, &new["id"], json!({"sessionId": "s3"}), later);
    assert_eq!(agent.sessions(), 2);
    prompt_id(&mut agent);
    // Every session busy: a fourth waits for one to be done.
    invoke(
        &mut agent,
        "inv-4",
        json!([{"role": "user", "content": "Four"}]),
        later,
    );
    assert!(written(&mut agent).is_empty());
    reply(
        &mut agent,
        0,
        &second,
        json!({"stopReason": "end_turn"}),
        later,
    );
    assert_eq!(
        request_of(&written(&mut agent), "session/new")["method"],
        "session/new"
    );
    frames(&mut agent);
}

#[test]
fn a_turn_past_its_deadline_times_out_and_is_cancelled() {
    let now = Instant::now();
    let mut agent = prompted(now);
    let due = now + Duration::from_secs(60);
    assert_eq!(agent.poll_timeout(), Some(due));
    agent.handle_timeout(due);
    assert_eq!(frames(&mut agent)[0]["error"]["code"], "timeout");
    assert_eq!(written(&mut agent)[0]["method"], "session/cancel");
}

#[test]
fn a_login_the_agent_needs_is_named() {
    let now = Instant::now();
    let (mut agent, _) = started(now, None);
    invoke(
        &mut agent,
        "inv-1",
        json!([{"role": "user", "content": "Hi"}]),
        now,
    );
    let new = request_of(&written(&mut agent), "session/new");
    let refused = json!({"jsonrpc": "2.0", "id": new["id"],
                         "error": {"code": -32000, "message": "Authentication required"}});
    say(&mut agent, 0, refused, now);
    let out = frames(&mut agent);
    assert_eq!(out[0]["error"]["code"], "agent_login");
    assert!(out[0]["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("run `agent login`")));
}

#[test]
fn the_agents_models_are_registered_and_a_turn_sets_the_one_it_asks_for() {
    let now = Instant::now();
    let probe = json!({"sessionId": "s0", "configOptions": [
        {"id": "model", "category": "model", "currentValue": "fast",
         "options": [{"value": "fast"}, {"value": "deep"}]}]});
    let (mut agent, register) = started(now, Some(probe));
    assert_eq!(register["models"], json!(["acp", "acp/fast", "acp/deep"]));
    // The first conversation takes the session opened at start, on the
    // model it asks for.
    let frame = json!({"type": "model_invoke", "id": "inv-1", "model_meta": {"model": "acp/deep"},
                       "payload": {"kind": "chat", "messages": [{"role": "user", "content": "Hi"}]}});
    agent.handle_message(&frame.to_string(), now);
    let set = written(&mut agent);
    assert_eq!(set.len(), 1, "{set:?}");
    assert_eq!(set[0]["method"], "session/set_config_option");
    assert_eq!(
        set[0]["params"],
        json!({"sessionId": "s0", "configId": "model", "value": "deep"})
    );
    reply(&mut agent, 0, &set[0]["id"], json!({}), now);
    let lines = written(&mut agent);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let prompt = request_of(&lines, "session/prompt");
    assert_eq!(prompt["params"]["sessionId"], "s0");
    // A spare opens in its place once the turn's first words came.
    let spare = request_of(&heard(&mut agent, 0, "s0", "Hi", now), "session/new");

    // An agent that refuses the model fails the turn with why.
    reply(
        &mut agent,
        0,
        &prompt["id"],
        json!({"stopReason": "end_turn"}),
        now,
    );
    frames(&mut agent);
    let frame = json!({"type": "model_invoke", "id": "inv-2", "model_meta": {"model": "acp/nope"},
                       "payload": {"kind": "chat", "messages": [{"role": "user", "content": "Yo"}]}});
    reply(&mut agent, 0, &spare["id"], json!({"sessionId": "s9"}), now);
    agent.handle_message(&frame.to_string(), now);
    let set = request_of(&written(&mut agent), "session/set_model");
    assert_eq!(set["params"], json!({"sessionId": "s9", "modelId": "nope"}));
    let refused = json!({"jsonrpc": "2.0", "id": set["id"], "error": {"code": -32602, "message": "unknown model"}});
    say(&mut agent, 0, refused, now);
    let out = frames(&mut agent);
    assert_eq!(out[0]["error"]["code"], "model_not_found");
}

#[test]
fn a_session_kept_across_a_restart_is_loaded_or_else_replaced_with_the_whole_history() {
    let now = Instant::now();
    let (mut agent, _) = started(now, None);
    // The agent can load sessions.
    invoke(
        &mut agent,
        "inv-1",
        json!([{"role": "user", "content": "Hi"}]),
        now,
    );
    let prompt = open(&mut agent, 0, "s1", now);
    update(&mut agent, 0, "s1", "agent_message_chunk", "Hello", now);
    reply(
        &mut agent,
        0,
        &prompt["id"],
        json!({"stopReason": "end_turn"}),
        now,
    );
    frames(&mut agent);
    if let Some(process) = agent.pool.slots[0].process.as_mut() {
        process.loads = true;
    }
    let later = now + STABLE;
    agent.handle_exit(
        RunId(0),
        Exit::Exited {
            code: Some(1),
            stderr: String::new(),
        },
        later,
    );
    assert_eq!(
        agent.sessions(),
        1,
        "the idle conversation's session is kept"
    );

    let history = json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                         {"role": "user", "content": "More"}]);
    invoke(&mut agent, "inv-2", history, later);
    let lines = written(&mut agent);
    assert_eq!(lines[0], json!({"spawn": 1}));
    let init = request_of(&lines, "initialize");
    reply(
        &mut agent,
        1,
        &init["id"],
        json!({"protocolVersion": 1, "agentCapabilities": {"loadSession": true}}),
        later,
    );
    let load = request_of(&written(&mut agent), "session/load");
    assert_eq!(load["params"]["sessionId"], "s1");
    let refused =
        json!({"jsonrpc": "2.0", "id": load["id"], "error": {"code": -32002, "message": "gone"}});
    say(&mut agent, 1, refused, later);
    let prompt = open(&mut agent, 1, "s2", later);
    let whole = text_of(&prompt);
    assert!(
        whole.contains("Hello") && whole.ends_with("More"),
        "{whole}"
    );
}

#[test]
fn sessions_open_one_at_a_time() {
    let now = Instant::now();
    let (mut agent, _) = started(now, None);
    invoke(
        &mut agent,
        "inv-1",
        json!([{"role": "user", "content": "One"}]),
        now,
    );
    invoke(
        &mut agent,
        "inv-2",
        json!([{"role": "user", "content": "Two"}]),
        now,
    );
    let lines = written(&mut agent);
    assert_eq!(lines.len(), 1, "{lines:?}");
    reply(
        &mut agent,
        0,
        &lines[0]["id"],
        json!({"sessionId": "s1"}),
        now,
    );
    let lines = written(&mut agent);
    let methods: Vec<&Value> = lines.iter().map(|l| &l["method"]).collect();
    assert_eq!(methods, [&json!("session/prompt"), &json!("session/new")]);
}

#[test]
fn a_turn_sets_the_reasoning_effort_it_asks_for_and_goes_on_if_refused() {
    let now = Instant::now();
    let probe = json!({"sessionId": "s0", "configOptions": [
        {"id": "effort", "category": "thought_level", "currentValue": "medium",
         "options": [{"value": "low", "name": "Low"}, {"value": "high", "name": "High"}]}]});
    let (mut agent, _) = started(now, Some(probe));
    let frame = json!({"type": "model_invoke", "id": "inv-1",
                       "payload": {"kind": "chat", "messages": [{"role": "user", "content": "Hi"}],
                                   "parameters": {"reasoning_effort": "High"}}});
    agent.handle_message(&frame.to_string(), now);
    let set = written(&mut agent);
    assert_eq!(
        set[0]["params"],
        json!({"sessionId": "s0", "configId": "effort", "value": "high"})
    );
    let refused =
        json!({"jsonrpc": "2.0", "id": set[0]["id"], "error": {"code": -32602, "message": "no"}});
    say(&mut agent, 0, refused, now);
    let prompt = request_of(&written(&mut agent), "session/prompt");
    assert_eq!(prompt["params"]["sessionId"], "s0");
    assert!(frames(&mut agent).is_empty(), "the turn goes on");
}

#[test]
fn a_turn_the_agent_cancels_itself_ends_with_an_error() {
    let now = Instant::now();
    let mut agent = prompted(now);
    reply(
        &mut agent,
        0,
        &json!(3),
        json!({"stopReason": "cancelled"}),
        now,
    );
    let out = frames(&mut agent);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0]["error"]["message"],
        "`agent` cancelled the turn itself"
    );
}

/// An agent of at most two processes of one session each, the first
/// answering `inv-1` (its prompt's id returned) in the spare, which was
/// the last: the second process is started ahead (its `initialize`
/// returned), and `inv-2`, sent, waits for it.
fn two_conversations(now: Instant) -> (AcpAgent, Value, Value) {
    let pool = AcpPlan {
        max_sessions: 1,
        max_processes: 2,
        ..plan()
    };
    let mut agent = AcpAgent::new(pool, "acp", now);
    written(&mut agent);
    reply(&mut agent, 0, &json!(0), json!({"protocolVersion": 1}), now);
    reply(&mut agent, 0, &json!(1), json!({"sessionId": "s"}), now);
    frames(&mut agent);
    invoke(
        &mut agent,
        "inv-1",
        json!([{"role": "user", "content": "One"}]),
        now,
    );
    let lines = written(&mut agent);
    assert!(!lines.contains(&json!({"spawn": 1})), "{lines:?}");
    let first = request_of(&lines, "session/prompt");
    assert_eq!(first["params"]["sessionId"], "s");
    // Once its turn's first words came, not before.
    let lines = heard(&mut agent, 0, "s", "On", now);
    assert_eq!(lines[0], json!({"spawn": 1}), "{lines:?}");
    let init = request_of(&lines, "initialize");
    invoke(
        &mut agent,
        "inv-2",
        json!([{"role": "user", "content": "Two"}]),
        now,
    );
    assert!(written(&mut agent).is_empty());
    (agent, first["id"].clone(), init)
}

#[test]
fn every_session_busy_starts_another_process_which_ends_once_its_sessions_are_gone() {
    let now = Instant::now();
    // Process 0 holds its one session, busy: process 1 started, the
    // second conversation opens its session there.
    let (mut agent, first, init) = two_conversations(now);
    reply(
        &mut agent,
        1,
        &init["id"],
        json!({"protocolVersion": 1}),
        now,
    );
    // The same session id in another process is another session.
    let second = open(&mut agent, 1, "s", now);
    assert_eq!(agent.processes(), 2);
    update(&mut agent, 1, "s", "agent_message_chunk", "two", now);
    update(&mut agent, 0, "s", "agent_message_chunk", "one", now);
    let out = frames(&mut agent);
    assert_eq!(
        (out[0]["id"].as_str(), out[0]["delta"]["content"].as_str()),
        (Some("inv-2"), Some("two"))
    );
    assert_eq!(
        (out[1]["id"].as_str(), out[1]["delta"]["content"].as_str()),
        (Some("inv-1"), Some("one"))
    );
    // An answer only the other process was asked for is not taken from
    // this one.
    reply(
        &mut agent,
        0,
        &second["id"],
        json!({"stopReason": "end_turn"}),
        now,
    );
    assert!(frames(&mut agent).is_empty());
    reply(
        &mut agent,
        1,
        &second["id"],
        json!({"stopReason": "end_turn"}),
        now,
    );
    reply(
        &mut agent,
        0,
        &first,
        json!({"stopReason": "end_turn"}),
        now,
    );
    let finished: Vec<_> = frames(&mut agent)
        .into_iter()
        .filter(|f| !f["finish_reason"].is_null())
        .map(|f| f["id"].clone())
        .collect();
    assert_eq!(finished, [json!("inv-2"), json!("inv-1")]);
    // Both sessions idle out; the second process, left with none, ends
    // without failing or restarting anything. The first stays warm.
    let later = now + Duration::from_secs(301);
    agent.handle_timeout(later);
    let lines = written(&mut agent);
    assert_eq!(lines[0], json!({"kill": 1}));
    // The first, with room again, opens a spare.
    assert_eq!(request_of(&lines, "session/new")["params"]["cwd"], "/work");
    assert_eq!(lines.len(), 2);
    agent.handle_exit(RunId(1), Exit::NotStarted("killed".into()), later);
    assert!(frames(&mut agent).is_empty());
    assert!(written(&mut agent).is_empty());
    assert_eq!(
        (agent.processes(), agent.sessions(), agent.starts()),
        (1, 0, 2)
    );
}

#[test]
fn with_every_process_running_a_new_conversation_takes_an_idle_place_or_waits() {
    let now = Instant::now();
    let (mut agent, first, init) = two_conversations(now);
    reply(
        &mut agent,
        1,
        &init["id"],
        json!({"protocolVersion": 1}),
        now,
    );
    open(&mut agent, 1, "t", now);
    // Both processes full and busy: a third waits, and takes the first
    // place whose turn ends.
    invoke(
        &mut agent,
        "inv-3",
        json!([{"role": "user", "content": "Three"}]),
        now,
    );
    assert!(written(&mut agent).is_empty());
    reply(
        &mut agent,
        0,
        &first,
        json!({"stopReason": "end_turn"}),
        now,
    );
    let new = request_of(&written(&mut agent), "session/new");
    assert_eq!(agent.sessions(), 1, "the idle session made way");
    reply(&mut agent, 0, &new["id"], json!({"sessionId": "u"}), now);
    assert_eq!(
        text_of(&request_of(&written(&mut agent), "session/prompt")),
        "Three"
    );
    assert_eq!(agent.starts(), 2);
}

/// A plan whose sessions are given the editor's tools.
fn with_tools() -> AcpPlan {
    AcpPlan {
        tools: Some(ToolLink {
            relay: vec!["relay".into()],
            seed: [7; 32],
            wait: Duration::from_secs(300),
            cli_tools: false,
            search: Default::default(),
        }),
        ..plan()
    }
}

fn weather() -> Value {
    json!([{"type": "function", "function": {"name": "weather", "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

fn invoke_with_tools(agent: &mut AcpAgent, id: &str, messages: Value, now: Instant) {
    let frame = json!({"type": "model_invoke", "id": id,
                       "payload": {"kind": "chat", "messages": messages, "parameters": {"tools": weather()}}});
    agent.handle_message(&frame.to_string(), now);
}

/// The agent's first session (no MCP server, to learn its models) and
/// then the probe's (given the relay) opened: the probe's `session/new`.
fn probe_opened(agent: &mut AcpAgent, now: Instant) -> Value {
    written(agent);
    reply(agent, 0, &json!(0), json!({"protocolVersion": 1}), now);
    let first = request_of(&written(agent), "session/new");
    assert_eq!(first["params"]["mcpServers"], json!([]));
    reply(agent, 0, &first["id"], json!({"sessionId": "s0"}), now);
    let probe = request_of(&written(agent), "session/new");
    reply(agent, 0, &probe["id"], json!({"sessionId": "probe"}), now);
    probe
}

#[test]
fn an_agent_whose_first_session_never_lists_its_tools_gets_them_as_text() {
    let now = Instant::now();
    let mut agent = AcpAgent::new(with_tools(), "acp", now);
    let probe = probe_opened(&mut agent, now);
    assert_eq!(probe["params"]["mcpServers"][0]["command"], "relay");
    frames(&mut agent);
    // Nothing lists the probe's tools within the wait.
    assert_eq!(agent.poll_timeout(), Some(now + PROBE_WAIT));
    let later = now + PROBE_WAIT;
    agent.handle_timeout(later);
    let question = json!([{"role": "user", "content": "Weather in Paris?"}]);
    // It takes the first session, which has no MCP server.
    invoke_with_tools(&mut agent, "inv-1", question.clone(), later);
    let lines = written(&mut agent);
    assert_eq!(lines.len(), 1, "no spare before its first words: {lines:?}");
    let prompt = request_of(&lines, "session/prompt");
    assert_eq!(prompt["params"]["sessionId"], "s0");
    let text = text_of(&prompt);
    assert!(
        text.starts_with("Weather in Paris?\n\n")
            && text.contains("- weather: The weather in a city"),
        "{text}"
    );
    // The call, split anywhere, is taken out of the text shown.
    update(
        &mut agent,
        0,
        "s0",
        "agent_message_chunk",
        "Looking.<tool_",
        later,
    );
    update(
        &mut agent,
        0,
        "s0",
        "agent_message_chunk",
        r#"call>{"name": "weather", "arguments": {"city": "Paris"}}</tool_call>"#,
        later,
    );
    // Its first words came: a spare opens, without the editor's tools.
    let spare = request_of(&written(&mut agent), "session/new");
    assert_eq!(spare["params"]["mcpServers"], json!([]));
    reply(
        &mut agent,
        0,
        &prompt["id"],
        json!({"stopReason": "end_turn"}),
        later,
    );
    let out = frames(&mut agent);
    let text: String = out
        .iter()
        .filter_map(|f| f["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Looking.");
    let calls = out
        .iter()
        .find(|f| f["delta"]["tool_calls"].is_array())
        .map(|f| f["delta"]["tool_calls"].clone())
        .unwrap_or_default();
    assert_eq!(calls[0]["function"]["name"], "weather");
    assert_eq!(calls[0]["function"]["arguments"], r#"{"city":"Paris"}"#);
    assert_eq!(
        out.last().map(|f| f["finish_reason"].clone()),
        Some(json!("tool_calls"))
    );
    // The results go on in the same session, as its next prompt.
    let mut messages = question.as_array().cloned().unwrap_or_default();
    messages.push(
        json!({"role": "assistant", "content": "Looking.", "tool_calls": [
        {"id": calls[0]["id"], "type": "function", "function": calls[0]["function"]}]}),
    );
    messages.push(json!({"role": "tool", "tool_call_id": calls[0]["id"], "content": "Sunny"}));
    invoke_with_tools(&mut agent, "inv-2", json!(messages), later);
    let lines = written(&mut agent);
    assert!(
        lines.iter().all(|l| l["method"] != "session/new"),
        "{lines:?}"
    );
    let next = request_of(&lines, "session/prompt");
    assert_eq!(next["params"]["sessionId"], "s0");
    assert!(
        text_of(&next).contains("<tool_result name=\"weather\">\nSunny\n</tool_result>"),
        "{next}"
    );
    update(
        &mut agent,
        0,
        "s0",
        "agent_message_chunk",
        "It is sunny.",
        later,
    );
    reply(
        &mut agent,
        0,
        &next["id"],
        json!({"stopReason": "end_turn"}),
        later,
    );
    let out = frames(&mut agent);
    assert_eq!(out[0]["id"], "inv-2");
    assert_eq!(out[0]["delta"]["content"], "It is sunny.");
    assert_eq!(
        out.last().map(|f| f["finish_reason"].clone()),
        Some(json!("stop"))
    );
}

#[test]
fn an_agent_that_lists_the_probes_tools_keeps_them_on_mcp() {
    let now = Instant::now();
    let mut agent = AcpAgent::new(with_tools(), "acp", now);
    let probe = probe_opened(&mut agent, now);
    let secret = probe["params"]["mcpServers"][0]["args"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // The relay says its secret, and the agent lists the tools.
    let link = LinkId(1);
    let hello = json!({"secret": secret});
    agent.handle_link(link, format!("{hello}\n").as_bytes(), now);
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    agent.handle_link(link, format!("{list}\n").as_bytes(), now);
    let listed = std::iter::from_fn(|| agent.poll_link()).count();
    assert!(listed > 0, "the probe tool is listed");
    agent.handle_timeout(now + PROBE_WAIT);
    assert_eq!(agent.tools_reach, Some(true));
    // A conversation with tools opens a session given the relay.
    invoke_with_tools(
        &mut agent,
        "inv-1",
        json!([{"role": "user", "content": "Hi"}]),
        now + PROBE_WAIT,
    );
    let new = request_of(&written(&mut agent), "session/new");
    assert_eq!(new["params"]["mcpServers"][0]["command"], "relay");
}

/// A started agent asking the user ([`Policy::Ask`], 30 s), with `inv-1`
/// prompted in `s1`, whose agent asked permission (`p1`) for an `edit`:
/// the question it sent the server.
fn asked(now: Instant) -> (AcpAgent, Value) {
    asked_for(now, Duration::from_secs(30))
}

/// [`asked`], the user given `timeout` to decide.
fn asked_for(now: Instant, timeout: Duration) -> (AcpAgent, Value) {
    let mut agent = prompted(now);
    agent.plan.policy = Policy::Ask { timeout };
    let input = json!({"path": "/tmp/notes.txt", "text": "x".repeat(5000)});
    let asked = json!({"jsonrpc": "2.0", "id": "p1", "method": "session/request_permission",
                       "params": {"sessionId": "s1",
                                  "toolCall": {"toolCallId": "t", "title": "Write notes", "kind": "edit",
                                               "rawInput": input},
                                  "options": [{"optionId": "always", "kind": "allow_always"},
                                              {"optionId": "ok", "kind": "allow_once"},
                                              {"optionId": "nope", "kind": "reject_once"}]}});
    say(&mut agent, 0, asked, now);
    assert!(written(&mut agent).is_empty(), "not answered at once");
    let mut out = frames(&mut agent);
    assert_eq!(out.len(), 1, "{out:?}");
    let question = out.remove(0);
    (agent, question)
}

/// The agent's answer to `p1`, when it wrote one.
fn answer_to_p1(lines: &[Value]) -> Option<Value> {
    lines
        .iter()
        .find(|l| l["id"] == "p1")
        .map(|l| l["result"]["outcome"].clone())
}

#[test]
fn a_question_asked_goes_to_the_server_with_the_tool_and_its_input_bounded() {
    let now = Instant::now();
    let (agent, question) = asked(now);
    assert_eq!(question["type"], "permission_request");
    assert_eq!(question["invoke"], "inv-1");
    assert_eq!(question["deadline_ms"], 30_000);
    assert_eq!(question["tool"]["title"], "Write notes");
    assert_eq!(question["tool"]["kind"], "edit");
    let input = question["tool"]["input"].as_str().unwrap_or_default();
    assert!(input.starts_with(r#"{"#) && input.contains("/tmp/notes.txt"));
    assert!(input.len() <= permission::MAX_INPUT + 3 && input.ends_with('…'));
    assert!(question["id"].as_str().is_some_and(|id| !id.is_empty()));
    // Its deadline is the agent's next wake-up.
    assert_eq!(agent.poll_timeout(), Some(now + Duration::from_secs(30)));
}

#[test]
fn the_users_decision_answers_the_agent_with_the_option_of_its_kind() {
    let now = Instant::now();
    for (allow, chosen) in [(true, "ok"), (false, "nope")] {
        let (mut agent, question) = asked(now);
        let decision = json!({"type": "permission_decision", "id": question["id"], "allow": allow});
        agent.handle_message(&decision.to_string(), now);
        let outcome = answer_to_p1(&written(&mut agent));
        assert_eq!(
            outcome,
            Some(json!({"outcome": "selected", "optionId": chosen}))
        );
        // A second decision, or one for no question, does nothing.
        agent.handle_message(&decision.to_string(), now);
        agent.handle_message(
            r#"{"type":"permission_decision","id":"perm-99","allow":true}"#,
            now,
        );
        assert!(written(&mut agent).is_empty());
        assert!(frames(&mut agent).is_empty());
        assert_eq!(agent.poll_timeout(), Some(now + Duration::from_secs(60)));
    }
}

#[test]
fn a_question_nobody_decides_is_rejected_at_its_deadline_and_withdrawn() {
    let now = Instant::now();
    let (mut agent, question) = asked(now);
    let due = now + Duration::from_secs(30);
    agent.handle_timeout(due - Duration::from_nanos(1));
    assert!(written(&mut agent).is_empty());
    agent.handle_timeout(due);
    assert_eq!(
        answer_to_p1(&written(&mut agent)),
        Some(json!({"outcome": "selected", "optionId": "nope"}))
    );
    assert_eq!(
        frames(&mut agent),
        [json!({"type": "permission_withdrawn", "id": question["id"], "reason": "timeout"})]
    );
    // The turn goes on: the agent's answer still reaches the editor.
    update(&mut agent, 0, "s1", "agent_message_chunk", "no then", due);
    reply(
        &mut agent,
        0,
        &json!(3),
        json!({"stopReason": "end_turn"}),
        due,
    );
    let out = frames(&mut agent);
    assert_eq!(
        out.last().map(|f| f["finish_reason"].clone()),
        Some(json!("stop"))
    );
}

#[test]
fn a_lost_link_cancels_the_turn_and_answers_the_question() {
    let now = Instant::now();
    let (mut agent, _) = asked(now);
    agent.link_lost();
    let lines = written(&mut agent);
    assert_eq!(lines[0]["method"], "session/cancel");
    assert_eq!(answer_to_p1(&lines), Some(json!({"outcome": "cancelled"})));
    // Nothing for the link that is gone: the next one starts with the
    // agent's register.
    let out = frames(&mut agent);
    assert!(out.iter().all(|f| f["type"] == "register"), "{out:?}");
    assert!(agent.asks.is_empty());
}

#[test]
fn a_cancelled_or_timed_out_turn_answers_its_question_and_withdraws_it() {
    let now = Instant::now();
    let (mut agent, question) = asked(now);
    agent.handle_message(r#"{"type":"cancel","id":"inv-1"}"#, now);
    let lines = written(&mut agent);
    assert_eq!(lines[0]["method"], "session/cancel");
    assert_eq!(answer_to_p1(&lines), Some(json!({"outcome": "cancelled"})));
    assert_eq!(
        frames(&mut agent),
        [json!({"type": "permission_withdrawn", "id": question["id"], "reason": "ended"})]
    );

    // A turn whose deadline (60 s) comes before its question's.
    let (mut agent, question) = asked_for(now, Duration::from_secs(600));
    let turn_due = now + Duration::from_secs(60);
    assert_eq!(agent.poll_timeout(), Some(turn_due));
    agent.handle_timeout(turn_due);
    assert_eq!(
        answer_to_p1(&written(&mut agent)),
        Some(json!({"outcome": "cancelled"}))
    );
    let out = frames(&mut agent);
    assert_eq!(out[0]["error"]["code"], "timeout");
    assert_eq!(
        out[1],
        json!({"type": "permission_withdrawn", "id": question["id"], "reason": "ended"})
    );
    assert!(agent.asks.is_empty() && agent.poll_timeout().is_none());
}

#[test]
fn without_a_turn_to_ask_in_or_for_an_editors_tool_the_policy_answers_at_once() {
    let now = Instant::now();
    let mut agent = prompted(now);
    agent.plan.policy = Policy::Ask {
        timeout: Duration::from_secs(30),
    };
    // A session with no turn: rejected at once, nothing asked.
    let stray = json!({"jsonrpc": "2.0", "id": "p1", "method": "session/request_permission",
        "params": {"sessionId": "nobody", "toolCall": {"kind": "edit"},
                   "options": [{"optionId": "ok", "kind": "allow_once"},
                               {"optionId": "nope", "kind": "reject_once"}]}});
    say(&mut agent, 0, stray, now);
    assert_eq!(
        answer_to_p1(&written(&mut agent)),
        Some(json!({"outcome": "selected", "optionId": "nope"}))
    );
    assert!(frames(&mut agent).is_empty());
}

#[test]
fn the_agent_process_ending_withdraws_every_question() {
    let now = Instant::now();
    let (mut agent, question) = asked(now);
    agent.handle_exit(
        RunId(0),
        Exit::Exited {
            code: Some(1),
            stderr: String::new(),
        },
        now,
    );
    let out = frames(&mut agent);
    assert!(out.contains(
        &json!({"type": "permission_withdrawn", "id": question["id"], "reason": "ended"})
    ));
    assert!(
        answer_to_p1(&written(&mut agent)).is_none(),
        "no process to answer"
    );
    assert!(agent.asks.is_empty());
}

#[test]
fn an_agent_that_needs_a_login_is_logged_in_with_a_key_once_else_the_editor_is_told() {
    let now = Instant::now();
    let mut agent = agent(now);
    let methods = json!({"protocolVersion": 1, "authMethods": [
        {"id": "oauth", "name": "Log in with a browser"},
        {"id": "gemini-api-key", "name": "Gemini API key", "_meta": {"api-key": {"provider": "google"}}}]});
    reply(&mut agent, 0, &json!(0), methods, now);
    let first = request_of(&written(&mut agent), "session/new");
    let refused = |id: &Value| json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": "Authentication required"}});
    say(&mut agent, 0, refused(&first["id"]), now);
    let login = request_of(&written(&mut agent), "authenticate");
    assert_eq!(login["params"], json!({"methodId": "gemini-api-key"}));
    reply(&mut agent, 0, &login["id"], json!({}), now);
    let again = request_of(&written(&mut agent), "session/new");
    reply(&mut agent, 0, &again["id"], json!({"sessionId": "s0"}), now);
    assert_eq!(frames(&mut agent)[0]["type"], "register");
    // Its login lapses: tried once already, the editor is told the
    // agent's own login command.
    invoke(
        &mut agent,
        "inv-1",
        json!([{"role": "user", "content": "Hi"}]),
        now,
    );
    let lines = written(&mut agent);
    assert_eq!(lines.len(), 1, "{lines:?}");
    request_of(&lines, "session/prompt");
    // The spare opened in its place once the turn was heard from is
    // refused: no other is asked for.
    let spare = request_of(&heard(&mut agent, 0, "s0", "Hi", now), "session/new");
    say(&mut agent, 0, refused(&spare["id"]), now);
    assert!(written(&mut agent).is_empty());
    invoke(
        &mut agent,
        "inv-2",
        json!([{"role": "user", "content": "Two"}]),
        now,
    );
    let new = request_of(&written(&mut agent), "session/new");
    say(&mut agent, 0, refused(&new["id"]), now);
    assert!(written(&mut agent)
        .iter()
        .all(|l| l["method"] != "authenticate"));
    let out = frames(&mut agent);
    assert_eq!(out[0]["id"], "inv-2");
    assert!(
        out[0]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("run `agent login` once"),
        "{out:?}"
    );
}

/// A relay connection saying the secret of the MCP server `new` gave its
/// session, and listing its tools.
fn relay_of(agent: &mut AcpAgent, link: LinkId, new: &Value, now: Instant) {
    let secret = new["params"]["mcpServers"][0]["args"][0]
        .as_str()
        .unwrap_or_default();
    let hello = json!({"secret": secret});
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    agent.handle_link(link, format!("{hello}\n{list}\n").as_bytes(), now);
    std::iter::from_fn(|| agent.poll_link()).count();
}

#[test]
fn an_agent_sharing_mcp_servers_has_one_tools_turn_at_a_time_and_its_calls_go_to_it() {
    let now = Instant::now();
    let shared = AcpPlan {
        shared_servers: true,
        editor_tools: EditorTools::Mcp,
        ..with_tools()
    };
    let mut agent = AcpAgent::new(shared, "acp", now);
    written(&mut agent);
    reply(&mut agent, 0, &json!(0), json!({"protocolVersion": 1}), now);
    reply(&mut agent, 0, &json!(1), json!({"sessionId": "s0"}), now);
    let one = json!([{"role": "user", "content": "One"}]);
    invoke_with_tools(&mut agent, "inv-1", one.clone(), now);
    let first = request_of(&written(&mut agent), "session/new");
    reply(&mut agent, 0, &first["id"], json!({"sessionId": "s1"}), now);
    relay_of(&mut agent, LinkId(1), &first, now);
    agent.handle_timeout(now + LIST_SETTLE);
    let lines = written(&mut agent);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let prompt = request_of(&lines, "session/prompt");
    // No spare given the relay opens beside the turn calling the tools.
    assert!(heard(&mut agent, 0, "s1", "Done.", now).is_empty());
    // A second conversation with tools waits for the first's turn.
    invoke_with_tools(
        &mut agent,
        "inv-2",
        json!([{"role": "user", "content": "Two"}]),
        now,
    );
    assert!(written(&mut agent).is_empty());
    reply(
        &mut agent,
        0,
        &prompt["id"],
        json!({"stopReason": "end_turn"}),
        now,
    );
    // Then it opens its session, given a relay of its own.
    let second = request_of(&written(&mut agent), "session/new");
    reply(
        &mut agent,
        0,
        &second["id"],
        json!({"sessionId": "s2"}),
        now,
    );
    relay_of(&mut agent, LinkId(2), &second, now);
    agent.handle_timeout(now + LIST_SETTLE);
    let prompt = request_of(&written(&mut agent), "session/prompt");
    assert_eq!(prompt["params"]["sessionId"], "s2");
    reply(
        &mut agent,
        0,
        &prompt["id"],
        json!({"stopReason": "end_turn"}),
        now,
    );
    frames(&mut agent);
    // The first conversation goes on in s1; the agent calls the editor's
    // tool over the relay it registered last, s2's: the call is s1's turn's.
    let mut messages = one.as_array().cloned().unwrap_or_default();
    messages.push(json!({"role": "assistant", "content": "Done."}));
    messages.push(json!({"role": "user", "content": "Weather?"}));
    let later = now + Duration::from_secs(2);
    invoke_with_tools(&mut agent, "inv-3", json!(messages), later);
    let prompt = request_of(&written(&mut agent), "session/prompt");
    assert_eq!(prompt["params"]["sessionId"], "s1");
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "weather", "arguments": {"city": "Oslo"}}});
    agent.handle_link(LinkId(2), format!("{call}\n").as_bytes(), later);
    agent.handle_timeout(later + Duration::from_secs(1));
    let out = frames(&mut agent);
    let calls: Vec<&Value> = out
        .iter()
        .filter(|f| f["delta"]["tool_calls"].is_array())
        .collect();
    assert_eq!(calls.len(), 1, "{out:?}");
    assert_eq!(calls[0]["id"], "inv-3");
}

#[test]
fn the_prompt_carries_the_providers_span_in_its_meta() {
    let now = Instant::now();
    let (mut agent, _) = started(now, None);
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let frame = json!({"type": "model_invoke", "id": "inv-1",
                       "traceparent": parent, "tracestate": "k=v",
                       "payload": {"kind": "chat", "messages": [{"role": "user", "content": "Hi"}]}});
    agent.handle_message(&frame.to_string(), now);
    let prompt = open(&mut agent, 0, "s1", now);
    assert_eq!(
        prompt["params"]["_meta"],
        json!({"traceparent": parent, "tracestate": "k=v"})
    );
}
