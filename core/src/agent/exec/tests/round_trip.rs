//! The editor's tools through a run: offered, called, given to the editor,
//! answered by its next request, and the same run going on.

use super::*;

const SEED: [u8; 32] = [9; 32];
const WAIT: Duration = Duration::from_secs(300);

fn tools_plan() -> ExecPlan {
    ExecPlan {
        command: Preset::Claude.command(&[]),
        preset: Some(Preset::Claude),
        tools: Some(ToolLink {
            relay: ["/bin/mcp-provider", "__relay", "/tmp/l.sock"]
                .map(str::to_owned)
                .to_vec(),
            seed: SEED,
            wait: WAIT,
            cli_tools: false,
            search: Default::default(),
        }),
        ..plan(Preset::Claude.format(), &[])
    }
}

fn weather() -> Value {
    json!([{"type": "function", "function": {"name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

fn invoke_with(id: &str, messages: Value, tools: Value) -> String {
    json!({"type": "model_invoke", "id": id, "session_id": "s",
           "payload": {"kind": "chat", "messages": messages,
                       "parameters": {"stream": true, "tools": tools}}})
    .to_string()
}

fn asking() -> Value {
    json!([{"role": "system", "content": "You are an agent."},
           {"role": "user", "content": "Weather in Oslo and Rome?"}])
}

fn links(agent: &mut ExecAgent) -> Vec<LinkOutput> {
    std::iter::from_fn(|| agent.poll_link()).collect()
}

fn sent(agent: &mut ExecAgent) -> Vec<Value> {
    links(agent)
        .into_iter()
        .map(|out| match out {
            LinkOutput::Send(_, line) => serde_json::from_str(&line).unwrap(),
            other => panic!("expected a line, got {other:?}"),
        })
        .collect()
}

fn rpc(agent: &mut ExecAgent, link: LinkId, message: Value, now: Instant) {
    agent.handle_link(link, format!("{message}\n").as_bytes(), now);
}

fn call(agent: &mut ExecAgent, link: LinkId, id: u64, city: &str, now: Instant) {
    let message = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                         "params": {"name": "weather", "arguments": {"city": city}}});
    rpc(agent, link, message, now);
}

/// Claude's stream for a turn that calls the editor's tool `calls` times.
fn turn_calling(calls: usize) -> String {
    let mut lines =
        vec![r#"{"type":"stream_event","event":{"type":"message_start","message":{}}}"#.to_owned()];
    for i in 0..calls {
        lines.push(format!(
            r#"{{"type":"stream_event","event":{{"type":"content_block_start","index":{i},"content_block":{{"type":"tool_use","id":"toolu_{i}","name":"mcp__editor__weather","input":{{}}}}}}}}"#
        ));
    }
    lines.push(r#"{"type":"stream_event","event":{"type":"message_stop"}}"#.to_owned());
    lines.join("\n") + "\n"
}

const ANSWER_LINES: &str = concat!(
    r#"{"type":"stream_event","event":{"type":"message_start","message":{}}}"#,
    "\n",
    r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Rain and sun."}}}"#,
    "\n",
    r#"{"type":"result","subtype":"success","is_error":false,"result":"Rain and sun.","usage":{"input_tokens":10,"output_tokens":4}}"#,
    "\n",
);

/// An agent whose run for `inv-1` was offered the weather tool and whose
/// relay connected as link 1 (initialized): the agent and the run.
fn connected(now: Instant) -> (ExecAgent, RunId) {
    let (agent, run, listed) = connected_with(weather(), now);
    assert_eq!(listed[0]["name"], "weather");
    (agent, run)
}

/// An agent whose run for `inv-1` was offered `tools` and whose relay
/// connected as link 1: the agent, the run and the tools it listed.
fn connected_with(tools: Value, now: Instant) -> (ExecAgent, RunId, Vec<Value>) {
    let mut agent = ExecAgent::new(tools_plan(), "a");
    frames(&mut agent);
    agent.handle_message(&invoke_with("inv-1", asking(), tools), now);
    let (run, argv, env) = match actions(&mut agent).as_slice() {
        [Action::Spawn { run, argv, env, .. }] => (*run, argv.clone(), env.clone()),
        other => panic!("expected one spawn, got {other:?}"),
    };
    assert_eq!(argv[1], "--mcp-config");
    let config: Value = serde_json::from_str(&argv[2]).unwrap();
    let args = &config["mcpServers"]["editor"]["args"];
    assert_eq!(args[2], link::secret(&SEED, run));
    assert!(argv.windows(2).any(|w| w == ["--tools", ""]));
    assert_eq!(env[0], ("MCP_TOOL_TIMEOUT".into(), "360000".into()));
    let hello = json!({"secret": link::secret(&SEED, run)});
    agent.handle_link(LinkId(1), format!("{hello}\n").as_bytes(), now);
    rpc(
        &mut agent,
        LinkId(1),
        json!({"jsonrpc": "2.0", "id": 0, "method": "tools/list"}),
        now,
    );
    let listed = sent(&mut agent);
    let tools = listed[0]["result"]["tools"].as_array().cloned();
    (agent, run, tools.unwrap_or_default())
}

/// A connected agent whose run called the tool once and was parked.
fn parked(now: Instant) -> (ExecAgent, RunId) {
    let (mut agent, run) = connected(now);
    agent.handle_stdout(run, turn_calling(1).as_bytes(), now);
    call(&mut agent, LinkId(1), 1, "Oslo", now);
    given_calls(&frames(&mut agent));
    (agent, run)
}

/// The tool calls the last frames gave the editor, after checking they
/// end the answer.
fn given_calls(sent: &[Value]) -> Vec<Value> {
    let last = sent.last().unwrap();
    assert_eq!(last["finish_reason"], "tool_calls", "{sent:?}");
    sent.iter()
        .flat_map(|f| {
            f["delta"]["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

fn results_for(calls: &[Value], texts: &[&str]) -> Value {
    let mut messages = asking().as_array().unwrap().clone();
    messages.push(json!({"role": "assistant", "content": "", "tool_calls": calls}));
    for (call, text) in calls.iter().zip(texts) {
        messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": text}));
    }
    Value::Array(messages)
}

#[test]
fn parallel_calls_go_to_the_editor_together_and_its_results_back_to_the_same_run() {
    let now = Instant::now();
    let (mut agent, run) = connected(now);
    agent.handle_stdout(run, turn_calling(2).as_bytes(), now);
    call(&mut agent, LinkId(1), 7, "Oslo", now);
    assert!(
        frames(&mut agent).is_empty(),
        "the turn's second call is awaited"
    );
    call(&mut agent, LinkId(1), 8, "Rome", now);
    let answer = frames(&mut agent);
    assert!(answer.iter().all(|f| f["id"] == "inv-1"));
    let calls = given_calls(&answer);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["function"]["name"], "weather");
    assert_eq!(calls[1]["function"]["arguments"], r#"{"city":"Rome"}"#);
    assert_eq!(calls[0]["index"], 0);
    assert_eq!(calls[1]["index"], 1);
    assert_eq!(agent.running(), 1);
    // Parked until the editor's deadline for it.
    assert_eq!(agent.poll_timeout(), Some(now + WAIT));

    let later = now + Duration::from_secs(5);
    let results = results_for(&calls, &["rain", "sun"]);
    agent.handle_message(&invoke_with("inv-2", results, weather()), later);
    assert!(actions(&mut agent).is_empty(), "nothing is spawned again");
    let answered = sent(&mut agent);
    assert_eq!(answered[0]["id"], 7);
    assert_eq!(answered[0]["result"]["content"][0]["text"], "rain");
    assert_eq!(answered[1]["id"], 8);
    assert_eq!(answered[1]["result"]["isError"], false);

    agent.handle_stdout(run, ANSWER_LINES.as_bytes(), later);
    agent.handle_exit(run, exited(0), later);
    let rest = frames(&mut agent);
    assert!(rest.iter().all(|f| f["id"] == "inv-2"));
    assert_eq!(rest[0]["delta"]["role"], "assistant");
    assert_eq!(rest[0]["delta"]["content"], "Rain and sun.");
    assert_eq!(rest.last().unwrap()["finish_reason"], "stop");
    assert_eq!(links(&mut agent), [LinkOutput::Close(LinkId(1))]);
}

#[test]
fn a_call_the_output_did_not_announce_goes_after_the_bound() {
    let now = Instant::now();
    let (mut agent, _) = connected(now);
    call(&mut agent, LinkId(1), 1, "Oslo", now);
    assert!(frames(&mut agent).is_empty());
    assert_eq!(agent.poll_timeout(), Some(now + round::BATCH_WAIT));
    agent.handle_timeout(now + round::BATCH_WAIT);
    assert_eq!(given_calls(&frames(&mut agent)).len(), 1);
}

#[test]
fn an_editor_that_never_sends_the_results_has_its_run_ended_at_the_deadline() {
    let now = Instant::now();
    let (mut agent, run) = parked(now);
    agent.handle_timeout(now + WAIT - Duration::from_millis(1));
    assert!(actions(&mut agent).is_empty());
    agent.handle_timeout(now + WAIT);
    assert_eq!(actions(&mut agent), [Action::Kill { run }]);
    agent.handle_exit(
        run,
        Exit::Exited {
            code: None,
            stderr: String::new(),
        },
        now + WAIT,
    );
    assert!(
        frames(&mut agent).is_empty(),
        "its request was answered already"
    );
    assert_eq!(agent.running(), 0);
    assert_eq!(agent.poll_timeout(), None);
}

/// `history`, the assistant message with `calls`, and one result per
/// call as Ollama sends them: no call ids, the calls numbered by the
/// translation.
fn id_less_results(history: Value, calls: &[Value], texts: &[&str]) -> Value {
    let mut messages = history.as_array().unwrap().clone();
    let calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"id": format!("call_{i}"), "type": "function", "function": c["function"]}))
        .collect();
    messages.push(json!({"role": "assistant", "content": "", "tool_calls": calls}));
    for text in texts {
        messages.push(json!({"role": "tool", "content": text}));
    }
    Value::Array(messages)
}

#[test]
fn a_new_request_of_the_conversation_ends_its_waiting_run_and_runs_afresh() {
    let now = Instant::now();
    let (mut agent, run) = connected(now);
    agent.handle_stdout(run, turn_calling(1).as_bytes(), now);
    call(&mut agent, LinkId(1), 1, "Oslo", now);
    let calls = given_calls(&frames(&mut agent));
    // The user wrote on instead of letting the editor run the tool.
    let mut went_on = asking().as_array().unwrap().clone();
    went_on.push(json!({"role": "assistant", "content": "", "tool_calls": calls}));
    went_on.push(json!({"role": "user", "content": "Never mind: Bergen?"}));
    agent.handle_message(&invoke_with("inv-2", Value::Array(went_on), weather()), now);
    let next = actions(&mut agent);
    assert_eq!(next[0], Action::Kill { run });
    assert!(matches!(next[1], Action::Spawn { .. }));
}

#[test]
fn r3_1_two_conversations_of_one_window_do_not_end_each_others_runs() {
    let now = Instant::now();
    let (mut agent, run) = parked(now);
    // Same system text, same tools, another conversation.
    let other = json!([{"role": "system", "content": "You are an agent."},
                       {"role": "user", "content": "Weather in Bergen?"}]);
    agent.handle_message(&invoke_with("inv-2", other, weather()), now);
    let next = actions(&mut agent);
    assert!(
        matches!(next.as_slice(), [Action::Spawn { run: other, .. }] if *other != run),
        "{next:?}"
    );
    assert_eq!(agent.running(), 2, "the parked run waits on");
}

#[test]
fn r3_1_id_less_results_after_another_history_are_an_ordinary_request() {
    let now = Instant::now();
    let (mut agent, run) = connected(now);
    agent.handle_stdout(run, turn_calling(1).as_bytes(), now);
    call(&mut agent, LinkId(1), 1, "Oslo", now);
    let calls = given_calls(&frames(&mut agent));
    // Other conversations end with the same call and an id-less result:
    // one of another window, one of the same window.
    let elsewhere = json!([{"role": "system", "content": "You are another agent."},
                           {"role": "user", "content": "Weather in Oslo and Rome?"}]);
    let beside = json!([{"role": "system", "content": "You are an agent."},
                        {"role": "user", "content": "Oslo?"}]);
    for (n, history) in [elsewhere, beside].into_iter().enumerate() {
        let results = id_less_results(history, &calls, &["planted"]);
        agent.handle_message(&invoke_with(&format!("inv-b{n}"), results, weather()), now);
        let (other, _, _) = one_spawn(&mut agent);
        assert_ne!(other, run);
        assert!(
            sent(&mut agent).is_empty(),
            "nothing reaches the parked CLI"
        );
        agent.handle_exit(other, exited(1), now);
        frames(&mut agent);
    }
    // Its own editor's results, in its own conversation, resume it.
    let own = id_less_results(asking(), &calls, &["rain"]);
    agent.handle_message(&invoke_with("inv-2", own, weather()), now);
    assert!(actions(&mut agent).is_empty(), "nothing is spawned again");
    let answered = sent(&mut agent);
    assert_eq!(answered[0]["result"]["content"][0]["text"], "rain");
    agent.handle_stdout(run, ANSWER_LINES.as_bytes(), now);
    agent.handle_exit(run, exited(0), now);
    let rest = frames(&mut agent);
    let answer: Vec<&Value> = rest.iter().filter(|f| f["id"] == "inv-2").collect();
    assert_eq!(answer[0]["delta"]["content"], "Rain and sun.");
}

#[test]
fn r3_1_id_less_results_of_a_second_round_follow_the_first_rounds_results() {
    let now = Instant::now();
    let (mut agent, run) = connected(now);
    agent.handle_stdout(run, turn_calling(1).as_bytes(), now);
    call(&mut agent, LinkId(1), 1, "Oslo", now);
    let first = given_calls(&frames(&mut agent));
    let round_one = id_less_results(asking(), &first, &["rain"]);
    agent.handle_message(&invoke_with("inv-2", round_one.clone(), weather()), now);
    assert_eq!(sent(&mut agent)[0]["id"], 1);
    agent.handle_stdout(run, turn_calling(1).as_bytes(), now);
    call(&mut agent, LinkId(1), 2, "Rome", now);
    let second = given_calls(&frames(&mut agent));
    // The run's history is now the first round's request.
    let round_two = id_less_results(round_one, &second, &["sun"]);
    agent.handle_message(&invoke_with("inv-3", round_two, weather()), now);
    let answered = sent(&mut agent);
    assert_eq!(answered[0]["id"], 2);
    assert_eq!(answered[0]["result"]["content"][0]["text"], "sun");
}

#[test]
fn at_the_cap_the_run_parked_longest_makes_room_for_a_new_request() {
    let now = Instant::now();
    let mut agent = ExecAgent::new(
        ExecPlan {
            max_running: 1,
            ..tools_plan()
        },
        "a",
    );
    frames(&mut agent);
    agent.handle_message(&invoke_with("inv-1", asking(), weather()), now);
    let run = match actions(&mut agent).as_slice() {
        [Action::Spawn { run, .. }] => *run,
        other => panic!("{other:?}"),
    };
    let hello = json!({"secret": link::secret(&SEED, run)});
    agent.handle_link(LinkId(1), format!("{hello}\n").as_bytes(), now);
    agent.handle_stdout(run, turn_calling(1).as_bytes(), now);
    call(&mut agent, LinkId(1), 1, "Oslo", now);
    given_calls(&frames(&mut agent));
    // Another chat's request: the one place is the parked run's, which
    // ends; the request starts once it has.
    let other = json!([{"role": "user", "content": "Something else"}]);
    agent.handle_message(&invoke_with("inv-2", other, weather()), now);
    assert_eq!(actions(&mut agent), [Action::Kill { run }]);
    agent.handle_exit(
        run,
        Exit::Exited {
            code: None,
            stderr: String::new(),
        },
        now,
    );
    assert!(
        matches!(actions(&mut agent).as_slice(), [Action::Spawn { .. }]),
        "the waiting request starts"
    );
}

#[test]
fn results_for_other_calls_are_an_ordinary_request() {
    let now = Instant::now();
    let (mut agent, _) = parked(now);
    let other = json!([{"id": "call_other", "type": "function",
                        "function": {"name": "weather", "arguments": "{}"}}]);
    let mut messages = results_for(other.as_array().unwrap(), &["rain"]);
    messages[0]["content"] = json!("You are another agent.");
    agent.handle_message(&invoke_with("inv-2", messages, weather()), now);
    // Another chat's results: this one's run waits on, the request runs.
    let next = actions(&mut agent);
    assert!(
        matches!(next.as_slice(), [Action::Spawn { .. }]),
        "{next:?}"
    );
    assert!(sent(&mut agent).is_empty());
}

#[test]
fn a_relay_without_its_runs_secret_is_closed() {
    let now = Instant::now();
    let (mut agent, _) = connected(now);
    agent.handle_link(LinkId(2), b"{\"secret\":\"guess\"}\n", now);
    assert_eq!(links(&mut agent), [LinkOutput::Close(LinkId(2))]);
}

#[test]
fn tool_choice_none_offers_nothing_and_required_is_said_in_the_prompt() {
    let now = Instant::now();
    let mut agent = ExecAgent::new(tools_plan(), "a");
    frames(&mut agent);
    let mut none: Value = serde_json::from_str(&invoke_with("inv-1", asking(), weather())).unwrap();
    none["payload"]["parameters"]["tool_choice"] = json!("none");
    agent.handle_message(&none.to_string(), now);
    let (_, argv, _) = one_spawn(&mut agent);
    assert!(!argv.iter().any(|a| a == "--mcp-config"));
    let mut required = none.clone();
    required["id"] = json!("inv-2");
    required["payload"]["parameters"]["tool_choice"] = json!("required");
    agent.handle_message(&required.to_string(), now);
    let (_, argv, stdin) = one_spawn(&mut agent);
    assert!(argv.iter().any(|a| a == "--mcp-config"));
    assert!(String::from_utf8(stdin)
        .unwrap()
        .ends_with("Answer by calling one or more of the editor's tools."));
}

fn hello(agent: &mut ExecAgent, link: LinkId, run: RunId, now: Instant) {
    let hello = json!({"secret": link::secret(&SEED, run)});
    agent.handle_link(link, format!("{hello}\n").as_bytes(), now);
}

fn ping(agent: &mut ExecAgent, link: LinkId, now: Instant) -> Vec<LinkOutput> {
    rpc(
        agent,
        link,
        json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}),
        now,
    );
    links(agent)
}

/// R3-2: a connection that says no hello is closed at its exact deadline.
#[test]
fn r3_2_a_relay_silent_past_the_hello_wait_is_closed_and_the_run_s_own_goes_on() {
    let now = Instant::now();
    let (mut agent, _) = connected(now);
    agent.handle_link(LinkId(2), b"", now);
    agent.handle_link(LinkId(3), b"{\"secr", now + Duration::from_secs(1));
    assert!(links(&mut agent).is_empty());
    assert_eq!(agent.poll_timeout(), Some(now + link::HELLO_WAIT));
    agent.handle_timeout(now + link::HELLO_WAIT - Duration::from_millis(1));
    assert!(links(&mut agent).is_empty());
    agent.handle_timeout(now + link::HELLO_WAIT);
    assert_eq!(links(&mut agent), [LinkOutput::Close(LinkId(2))]);
    let later = now + Duration::from_secs(1) + link::HELLO_WAIT;
    assert_eq!(agent.poll_timeout(), Some(later));
    agent.handle_timeout(later);
    assert_eq!(links(&mut agent), [LinkOutput::Close(LinkId(3))]);
    assert_eq!(agent.poll_timeout(), Some(now + Duration::from_secs(60)));
    let pong = ping(&mut agent, LinkId(1), later);
    assert!(matches!(pong.as_slice(), [LinkOutput::Send(LinkId(1), _)]));
}

/// R3-2: bytes past what a hello can be close the connection at once.
#[test]
fn r3_2_a_hello_longer_than_a_hello_can_be_is_closed_at_once() {
    let now = Instant::now();
    let (mut agent, _) = connected(now);
    agent.handle_link(LinkId(2), &[b'x'; link::MAX_HELLO], now);
    assert!(links(&mut agent).is_empty());
    agent.handle_link(LinkId(2), b"x", now);
    assert_eq!(links(&mut agent), [LinkOutput::Close(LinkId(2))]);
}

/// R3-2: silent connections have a bound of their own; a run's relay always gets in.
#[test]
fn r3_2_silent_relays_crowd_out_the_oldest_silent_one_never_a_run_s() {
    let now = Instant::now();
    let (mut agent, run) = connected(now);
    let silent = 10..10 + link::MAX_UNSAID as u64;
    for (n, id) in silent.clone().enumerate() {
        agent.handle_link(LinkId(id), b"", now + Duration::from_millis(n as u64));
    }
    assert!(links(&mut agent).is_empty());
    agent.handle_link(LinkId(100), b"", now + Duration::from_secs(1));
    assert_eq!(links(&mut agent), [LinkOutput::Close(LinkId(10))]);
    // The run's next relay gets in: it crowds out one silent, and is
    // then the run's.
    hello(&mut agent, LinkId(101), run, now + Duration::from_secs(1));
    assert_eq!(links(&mut agent), [LinkOutput::Close(LinkId(11))]);
    for id in [1, 101] {
        let pong = ping(&mut agent, LinkId(id), now + Duration::from_secs(1));
        assert!(matches!(pong.as_slice(), [LinkOutput::Send(got, _)] if *got == LinkId(id)));
    }
}

/// R3-3: one more connection with a run's secret than its cap is closed.
#[test]
fn r3_3_a_run_holds_at_most_its_cap_of_relays() {
    let now = Instant::now();
    let (mut agent, run) = connected(now);
    let cap = link::MAX_PER_RUN as u64;
    for id in 2..=cap {
        hello(&mut agent, LinkId(id), run, now);
    }
    assert!(links(&mut agent).is_empty());
    hello(&mut agent, LinkId(cap + 1), run, now);
    assert_eq!(links(&mut agent), [LinkOutput::Close(LinkId(cap + 1))]);
    agent.handle_link_closed(LinkId(2));
    hello(&mut agent, LinkId(cap + 2), run, now);
    let pong = ping(&mut agent, LinkId(cap + 2), now);
    assert!(matches!(pong.as_slice(), [LinkOutput::Send(got, _)] if *got == LinkId(cap + 2)));
}

/// Claude's stream for a turn that calls the relay's `tool`.
fn turn_calling_through(tool: &str) -> String {
    [
        r#"{"type":"stream_event","event":{"type":"message_start","message":{}}}"#.to_owned(),
        format!(
            r#"{{"type":"stream_event","event":{{"type":"content_block_start","index":0,"content_block":{{"type":"tool_use","id":"toolu_0","name":"mcp__editor__{tool}","input":{{}}}}}}}}"#
        ),
        r#"{"type":"stream_event","event":{"type":"message_stop"}}"#.to_owned(),
    ]
    .join("\n")
        + "\n"
}

#[test]
fn many_tools_are_found_by_search_and_a_call_through_call_tool_reaches_the_editor_as_the_tools_own()
{
    let now = Instant::now();
    let tools = tool_search::chat_tools(40);
    let (mut agent, run, listed) = connected_with(tools.clone(), now);
    let names: Vec<&Value> = listed.iter().map(|t| &t["name"]).collect();
    assert_eq!(names, ["search_tools", "call_tool"]);
    // The search is the relay's own: answered at once, then the CLI is told
    // its list changed, and the editor hears nothing.
    agent.handle_stdout(run, turn_calling_through("search_tools").as_bytes(), now);
    let search = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                        "params": {"name": "search_tools", "arguments": {"query": "open a new pull request"}}});
    rpc(&mut agent, LinkId(1), search, now);
    let answered = sent(&mut agent);
    assert_eq!(answered[0]["id"], 3);
    let found = &answered[0]["result"]["structuredContent"]["tools"];
    assert_eq!(found[0]["name"], "create_pull_request");
    assert_eq!(answered[1]["method"], "notifications/tools/list_changed");
    assert!(frames(&mut agent).is_empty());
    let list = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"});
    rpc(&mut agent, LinkId(1), list, now);
    let relisted = &sent(&mut agent)[0]["result"]["tools"];
    assert_eq!(relisted[2]["name"], "create_pull_request");
    // The call through call_tool is the editor's call of that tool.
    agent.handle_stdout(run, turn_calling_through("call_tool").as_bytes(), now);
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                      "params": {"name": "call_tool",
                                 "arguments": {"name": "create_pull_request", "arguments": {"head": "fix"}}}});
    rpc(&mut agent, LinkId(1), call, now);
    let calls = given_calls(&frames(&mut agent));
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["function"]["name"], "create_pull_request");
    assert_eq!(calls[0]["function"]["arguments"], r#"{"head":"fix"}"#);
    // Its result answers the call_tool call, unchanged.
    let mut messages = asking().as_array().unwrap().clone();
    messages.push(json!({"role": "assistant", "content": "", "tool_calls": calls}));
    messages
        .push(json!({"role": "tool", "tool_call_id": calls[0]["id"], "content": "PR #7 opened"}));
    agent.handle_message(&invoke_with("inv-2", Value::Array(messages), tools), now);
    let answered = sent(&mut agent);
    assert_eq!(answered[0]["id"], 5);
    assert_eq!(answered[0]["result"]["content"][0]["text"], "PR #7 opened");
}
