use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::preset::{Format, Preset};
use super::*;

pub(super) fn plan(format: Format, command: &[&str]) -> ExecPlan {
    ExecPlan {
        model: "m".into(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        format,
        timeout: Duration::from_secs(60),
        max_running: 2,
        max_queued: 1,
        resume: None,
        conversations: 0,
        conversation_ttl: Duration::from_secs(600),
        preset: None,
        tools: None,
    }
}

fn invoke(id: &str, text: &str) -> String {
    json!({"type": "model_invoke", "id": id, "session_id": "s",
           "payload": {"kind": "chat", "messages": [{"role": "user", "content": text}],
                       "parameters": {"stream": true}}})
    .to_string()
}

pub(super) fn frames(agent: &mut ExecAgent) -> Vec<Value> {
    std::iter::from_fn(|| agent.poll_transmit())
        .map(|f| serde_json::from_str(&f).unwrap())
        .collect()
}

pub(super) fn actions(agent: &mut ExecAgent) -> Vec<Action> {
    std::iter::from_fn(|| agent.poll_action()).collect()
}

/// The one spawn the agent asked for: run, argv, stdin.
pub(super) fn one_spawn(agent: &mut ExecAgent) -> (RunId, Vec<String>, Vec<u8>) {
    match actions(agent).as_slice() {
        [Action::Spawn {
            run,
            argv,
            stdin: Stdin::Once(stdin),
            ..
        }] => (*run, argv.clone(), stdin.clone()),
        other => panic!("expected one spawn, got {other:?}"),
    }
}

/// An agent for `plan` that took request `inv-1` and started its run.
fn started(plan: ExecPlan, now: Instant) -> (ExecAgent, RunId) {
    let mut agent = ExecAgent::new(plan, "a");
    frames(&mut agent);
    agent.handle_message(&invoke("inv-1", "x"), now);
    let (run, _, _) = one_spawn(&mut agent);
    (agent, run)
}

pub(super) fn exited(code: i32) -> Exit {
    Exit::Exited {
        code: Some(code),
        stderr: String::new(),
    }
}

#[test]
fn a_plain_command_streams_stdout_and_ends_with_usage() {
    let now = Instant::now();
    let mut agent = ExecAgent::new(plan(Format::Plain, &["cat"]), "a1");
    let register = frames(&mut agent);
    assert_eq!(register[0]["type"], "register");
    assert_eq!(register[0]["models"], json!(["m"]));

    agent.handle_message(&invoke("inv-1", "Hello there"), now);
    let (run, argv, stdin) = one_spawn(&mut agent);
    assert_eq!(argv, ["cat"]);
    assert_eq!(stdin, b"Hello there");

    agent.handle_stdout(run, b"Hello ", now);
    agent.handle_stdout(run, b"there", now);
    agent.handle_exit(run, exited(0), now);
    let sent = frames(&mut agent);
    let text: String = sent
        .iter()
        .map(|f| f["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello there");
    assert_eq!(sent[0]["delta"]["role"], "assistant");
    let last = sent.last().unwrap();
    assert_eq!(last["finish_reason"], "stop");
    assert_eq!(last["chunk_index"], 2);
    assert_eq!(last["usage"]["completion_tokens"], 3);
    assert_eq!(agent.running(), 0);
}

#[test]
fn qwen_and_gemini_run_in_one_process() {
    // Each would otherwise start Node a second time, before every answer.
    let expected = [
        (Preset::Qwen, "QWEN_CODE_NO_RELAUNCH"),
        (Preset::Gemini, "GEMINI_CLI_NO_RELAUNCH"),
    ];
    for (preset, var) in expected {
        let plan = ExecPlan {
            command: preset.command(&[]),
            preset: Some(preset),
            ..plan(preset.format(), &[])
        };
        let mut agent = ExecAgent::new(plan, "a");
        frames(&mut agent);
        agent.handle_message(&invoke("inv-1", "x"), Instant::now());
        match actions(&mut agent).as_slice() {
            [Action::Spawn { env, .. }] => {
                assert_eq!(env, &[(var.to_owned(), "true".to_owned())], "{preset:?}");
            }
            other => panic!("expected one spawn, got {other:?}"),
        }
    }
    for preset in [Preset::Claude, Preset::Codex, Preset::CursorAgent] {
        assert!(preset.env().is_empty(), "{preset:?}");
    }
}

#[test]
fn the_prompt_goes_into_a_templated_argument_instead_of_stdin() {
    let now = Instant::now();
    let mut agent = ExecAgent::new(plan(Format::Plain, &["say", "--text={prompt}"]), "a");
    frames(&mut agent);
    agent.handle_message(&invoke("inv-1", "hi"), now);
    let (_, argv, stdin) = one_spawn(&mut agent);
    assert_eq!(argv, ["say", "--text=hi"]);
    assert!(stdin.is_empty());
}

#[test]
fn a_failing_exit_is_an_error_with_stderr_never_an_empty_success() {
    let now = Instant::now();
    let (mut agent, run) = started(plan(Format::Plain, &["false"]), now);
    agent.handle_exit(
        run,
        Exit::Exited {
            code: Some(3),
            stderr: "no such file\n".into(),
        },
        now,
    );
    let sent = frames(&mut agent);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["type"], "error");
    assert_eq!(
        sent[0]["error"]["message"],
        "`false` exited with status 3: no such file"
    );

    agent.handle_message(&invoke("inv-2", "x"), now);
    let (run, _, _) = one_spawn(&mut agent);
    agent.handle_exit(
        run,
        Exit::NotStarted("No such file or directory".into()),
        now,
    );
    let sent = frames(&mut agent);
    assert_eq!(
        sent[0]["error"]["message"],
        "could not start `false`: No such file or directory"
    );
}

#[test]
fn a_json_cli_that_exits_0_without_a_result_has_failed() {
    let now = Instant::now();
    let (mut agent, run) = started(plan(Format::StreamJson, &["claude"]), now);
    agent.handle_stdout(run, b"this is not json\n", now);
    agent.handle_exit(run, exited(0), now);
    let sent = frames(&mut agent);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]["error"]["message"],
        "`claude` exited without a result"
    );
}

#[test]
fn an_error_result_fails_at_once_and_kills_the_run() {
    let now = Instant::now();
    let (mut agent, run) = started(plan(Format::StreamJson, &["claude"]), now);
    agent.handle_stdout(
        run,
        br#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 401"}
"#,
        now,
    );
    let sent = frames(&mut agent);
    assert_eq!(sent[0]["type"], "error");
    assert_eq!(sent[0]["error"]["message"], "API Error: 401");
    assert_eq!(actions(&mut agent), [Action::Kill { run }]);
    // The exit that follows sends nothing more.
    agent.handle_exit(run, exited(1), now);
    assert!(frames(&mut agent).is_empty());
    assert_eq!(agent.running(), 0);
}

#[test]
fn cancel_kills_the_group_and_sends_nothing() {
    let now = Instant::now();
    let (mut agent, run) = started(plan(Format::Plain, &["sleep"]), now);
    agent.handle_message(r#"{"type":"cancel","id":"inv-1"}"#, now);
    assert_eq!(actions(&mut agent), [Action::Kill { run }]);
    agent.handle_stdout(run, b"late", now);
    agent.handle_exit(
        run,
        Exit::Exited {
            code: None,
            stderr: String::new(),
        },
        now,
    );
    assert!(frames(&mut agent).is_empty());
}

#[test]
fn a_hung_run_times_out_then_its_slot_goes_to_the_next() {
    let now = Instant::now();
    let mut p = plan(Format::Plain, &["sleep"]);
    p.max_running = 1;
    let mut agent = ExecAgent::new(p, "a");
    frames(&mut agent);
    agent.handle_message(&invoke("inv-1", "x"), now);
    let later = now + Duration::from_secs(30);
    agent.handle_message(&invoke("inv-2", "y"), later);
    let (run, _, _) = one_spawn(&mut agent);
    assert_eq!(agent.poll_timeout(), Some(now + Duration::from_secs(60)));

    agent.handle_timeout(now + Duration::from_secs(60));
    let sent = frames(&mut agent);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["id"], "inv-1");
    assert_eq!(sent[0]["error"]["code"], "timeout");
    assert_eq!(actions(&mut agent), [Action::Kill { run }]);
    // The slot frees when the killed process is reaped, not before.
    assert_eq!(agent.poll_timeout(), Some(later + Duration::from_secs(60)));
    agent.handle_exit(run, exited(137), now);
    let next = actions(&mut agent);
    assert!(matches!(next.as_slice(), [Action::Spawn { stdin: Stdin::Once(s), .. }] if s == b"y"));
    assert!(frames(&mut agent).is_empty());
}

#[test]
fn a_prompt_too_long_for_one_argument_is_refused_and_the_next_request_runs() {
    let now = Instant::now();
    let mut once = plan(Format::Plain, &["say", "--", "{prompt}"]);
    once.max_running = 1;
    once.max_queued = 2;
    let mut agent = ExecAgent::new(once, "a");
    frames(&mut agent);
    agent.handle_message(&invoke("inv-1", "x"), now);
    let (first, _, _) = one_spawn(&mut agent);
    let long = "y".repeat(200_000);
    agent.handle_message(&invoke("inv-2", &long), now);
    agent.handle_message(&invoke("inv-3", "z"), now);
    assert!(actions(&mut agent).is_empty());
    agent.handle_exit(first, exited(0), now);
    let sent = frames(&mut agent);
    let refused = sent.iter().find(|f| f["id"] == "inv-2").unwrap();
    assert_eq!(refused["error"]["code"], "context_length_exceeded");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`say`") && message.contains("stdin"),
        "{message}"
    );
    let (_, argv, _) = one_spawn(&mut agent);
    assert_eq!(argv, ["say", "--", "z"]);
}

#[test]
fn past_the_queue_requests_are_refused_as_busy() {
    let now = Instant::now();
    let mut agent = ExecAgent::new(plan(Format::Plain, &["sleep"]), "a");
    frames(&mut agent);
    for i in 0..4 {
        agent.handle_message(&invoke(&format!("inv-{i}"), "x"), now);
    }
    assert_eq!(actions(&mut agent).len(), 2);
    let sent = frames(&mut agent);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["id"], "inv-3");
    assert_eq!(sent[0]["error"]["code"], "busy");
    // A cancelled waiting request leaves the queue without a frame.
    agent.handle_message(r#"{"type":"cancel","id":"inv-2"}"#, now);
    agent.handle_exit(RunId(0), exited(0), now);
    assert!(actions(&mut agent).is_empty());
}

#[test]
fn codex_output_through_the_preset() {
    let now = Instant::now();
    let p = ExecPlan {
        command: Preset::Codex.command(&[]),
        ..plan(Preset::Codex.format(), &[])
    };
    let mut agent = ExecAgent::new(p, "a");
    frames(&mut agent);
    agent.handle_message(&invoke("inv-1", "Say it"), now);
    let (run, argv, stdin) = one_spawn(&mut agent);
    assert_eq!(argv.first().map(String::as_str), Some("codex"));
    assert_eq!(stdin, b"Say it");
    agent.handle_stdout(
        run,
        concat!(
            r#"{"type":"thread.started","thread_id":"t"}"#,
            "\n",
            r#"{"type":"item.completed","item":{"type":"agent_message","text":"Said."}}"#,
            "\n",
            r#"{"type":"turn.completed","usage":{"input_tokens":7,"output_tokens":2}}"#,
            "\n"
        )
        .as_bytes(),
        now,
    );
    agent.handle_exit(run, exited(0), now);
    let sent = frames(&mut agent);
    assert_eq!(sent[0]["delta"]["content"], "Said.");
    assert_eq!(sent[1]["finish_reason"], "stop");
    assert_eq!(
        sent[1]["usage"],
        json!({"prompt_tokens": 7, "completion_tokens": 2})
    );
}

fn chat(id: &str, messages: Value) -> String {
    json!({"type": "model_invoke", "id": id, "session_id": "s",
           "payload": {"kind": "chat", "messages": messages, "parameters": {"stream": true}}})
    .to_string()
}

/// An agent for `preset` that remembers conversations.
fn resuming(preset: Preset) -> ExecAgent {
    let mut agent = ExecAgent::new(
        ExecPlan {
            command: preset.command(&[]),
            resume: preset.resume_command(&[]),
            conversations: 8,
            ..plan(preset.format(), &[])
        },
        "a",
    );
    frames(&mut agent);
    agent
}

const CLAUDE_ANSWER: &str = concat!(
    r#"{"type":"system","subtype":"init","session_id":"S1"}"#,
    "\n",
    r#"{"type":"stream_event","event":{"type":"message_start","message":{"id":"m"}}}"#,
    "\n",
    r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}}"#,
    "\n",
    r#"{"type":"result","subtype":"success","is_error":false,"result":"Hello"}"#,
    "\n"
);

/// A claude agent that answered "Hi" with "Hello" in session `S1`.
fn claude_after_one_turn(now: Instant) -> ExecAgent {
    let mut agent = resuming(Preset::Claude);
    let first = json!([{"role": "user", "content": "Hi"}]);
    agent.handle_message(&chat("inv-1", first), now);
    let (run, _, stdin) = one_spawn(&mut agent);
    assert_eq!(stdin, b"Hi");
    agent.handle_stdout(run, CLAUDE_ANSWER.as_bytes(), now);
    agent.handle_exit(run, exited(0), now);
    frames(&mut agent);
    assert_eq!(agent.conversations(), 1);
    agent
}

#[test]
fn a_continued_chat_resumes_the_cli_session_with_the_new_message_alone() {
    let now = Instant::now();
    let mut agent = claude_after_one_turn(now);

    let next = json!([{"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello"},
                      {"role": "user", "content": "And then?"}]);
    agent.handle_message(&chat("inv-2", next.clone()), now);
    let (run, argv, stdin) = one_spawn(&mut agent);
    assert_eq!(argv[argv.len() - 2..], ["--resume", "S1"]);
    assert_eq!(stdin, b"And then?");
    agent.handle_stdout(run, CLAUDE_ANSWER.as_bytes(), now);
    agent.handle_exit(run, exited(0), now);
    assert_eq!(frames(&mut agent).last().unwrap()["finish_reason"], "stop");

    // The same point continued again (an editor regenerating): afresh.
    agent.handle_message(&chat("inv-3", next), now);
    let (_, argv, stdin) = one_spawn(&mut agent);
    assert!(!argv.contains(&"--resume".to_owned()));
    assert_eq!(
        String::from_utf8(stdin).unwrap(),
        "User: Hi\n\nAssistant: Hello\n\nUser: And then?"
    );
}

#[test]
fn a_conversation_the_editor_changed_starts_afresh() {
    let now = Instant::now();
    let mut agent = claude_after_one_turn(now);
    let edited = json!([{"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello, edited"},
                        {"role": "user", "content": "Next"}]);
    agent.handle_message(&chat("inv-2", edited), now);
    let (_, argv, _) = one_spawn(&mut agent);
    assert!(!argv.contains(&"--resume".to_owned()));
}

#[test]
fn a_resume_that_fails_before_any_text_runs_afresh_unseen() {
    let now = Instant::now();
    let mut agent = claude_after_one_turn(now);

    let next = json!([{"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello"},
                      {"role": "user", "content": "More"}]);
    agent.handle_message(&chat("inv-2", next), now);
    let (run, _, _) = one_spawn(&mut agent);
    agent.handle_stdout(
        run,
        b"{\"type\":\"result\",\"subtype\":\"error_during_execution\",\"is_error\":true,\"result\":\"No conversation found\"}\n", now);
    assert_eq!(actions(&mut agent), [Action::Kill { run }]);
    agent.handle_exit(run, exited(1), now);
    assert!(frames(&mut agent).is_empty(), "the editor sees no error");
    let (_, argv, stdin) = one_spawn(&mut agent);
    assert!(!argv.contains(&"--resume".to_owned()));
    assert!(String::from_utf8(stdin).unwrap().starts_with("User: Hi"));
}

#[test]
fn a_resumed_codex_turn_reports_its_own_usage_not_the_thread_total() {
    let now = Instant::now();
    let mut agent = resuming(Preset::Codex);
    let turn = |text: &str, input: u64, output: u64| {
        format!(
            "{}\n{}\n{}\n",
            r#"{"type":"thread.started","thread_id":"T1"}"#,
            json!({"type": "item.completed", "item": {"type": "agent_message", "text": text}}),
            json!({"type": "turn.completed", "usage": {"input_tokens": input, "output_tokens": output}})
        )
    };
    agent.handle_message(
        &chat("inv-1", json!([{"role": "user", "content": "one"}])),
        now,
    );
    let (run, _, _) = one_spawn(&mut agent);
    agent.handle_stdout(run, turn("one", 4968, 3).as_bytes(), now);
    agent.handle_exit(run, exited(0), now);
    frames(&mut agent);

    let next = json!([{"role": "user", "content": "one"},
                      {"role": "assistant", "content": "one"},
                      {"role": "user", "content": "two"}]);
    agent.handle_message(&chat("inv-2", next), now);
    let (run, argv, stdin) = one_spawn(&mut agent);
    assert_eq!(argv[1..3], ["exec", "resume"]);
    assert_eq!(argv[argv.len() - 2..], ["T1", "-"]);
    assert_eq!(stdin, b"two");
    agent.handle_stdout(run, turn("two", 9946, 6).as_bytes(), now);
    agent.handle_exit(run, exited(0), now);
    let last = frames(&mut agent).pop().unwrap();
    assert_eq!(
        last["usage"],
        json!({"prompt_tokens": 4978, "completion_tokens": 3})
    );
}

mod round_trip;

#[test]
fn the_cli_gets_the_providers_span_as_traceparent_in_its_environment() {
    let now = Instant::now();
    let mut agent = ExecAgent::new(plan(Format::Plain, &["cat"]), "a");
    frames(&mut agent);
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut frame: Value = serde_json::from_str(&invoke("inv-1", "x")).unwrap();
    frame["traceparent"] = json!(parent);
    frame["tracestate"] = json!("k=v");
    agent.handle_message(&frame.to_string(), now);
    let env = match actions(&mut agent).as_slice() {
        [Action::Spawn { env, .. }] => env.clone(),
        other => panic!("expected one spawn, got {other:?}"),
    };
    assert!(env.contains(&("TRACEPARENT".to_owned(), parent.to_owned())));
    assert!(env.contains(&("TRACESTATE".to_owned(), "k=v".to_owned())));

    // No context (or one that is not valid): nothing is set.
    let mut frame: Value = serde_json::from_str(&invoke("inv-2", "x")).unwrap();
    frame["traceparent"] = json!("00-not-a-trace");
    agent.handle_message(&frame.to_string(), now);
    match actions(&mut agent).as_slice() {
        [Action::Spawn { env, .. }] => {
            assert!(!env.iter().any(|(name, _)| name.starts_with("TRACE")));
        }
        other => panic!("expected one spawn, got {other:?}"),
    }
}
