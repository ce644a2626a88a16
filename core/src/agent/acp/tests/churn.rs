//! Hours of editors that never clean up, on simulated time: conversations
//! started, continued, abandoned and cancelled mid-answer, an agent process
//! that now and then crashes, against a scripted agent answering every
//! request. What the agent holds stays bounded, every turn ends once, and
//! once the editors are gone it comes back to one idle process.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::super::*;
use super::plan;

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

/// The scripted agent: every process answers at once, except prompts,
/// which are answered at the next tick (so turns overlap).
#[derive(Default)]
struct Script {
    runs: HashSet<u64>,
    next_session: u64,
    /// Prompts waiting for their answer: run, request id, session, text.
    prompts: Vec<(u64, Value, String, String)>,
}

impl Script {
    fn act(&mut self, agent: &mut AcpAgent, now: Instant) {
        while let Some(action) = agent.poll_action() {
            match action {
                Action::Spawn { run, .. } => {
                    self.runs.insert(run.0);
                }
                Action::Kill { run } => {
                    self.runs.remove(&run.0);
                    self.prompts.retain(|p| p.0 != run.0);
                    let exit = Exit::Exited {
                        code: None,
                        stderr: String::new(),
                    };
                    agent.handle_exit(run, exit, now);
                }
                Action::Write { run, line } => self.answer(agent, run.0, &line, now),
            }
        }
    }

    fn answer(&mut self, agent: &mut AcpAgent, run: u64, line: &str, now: Instant) {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            return;
        };
        let id = message["id"].clone();
        let result = match message["method"].as_str() {
            Some("initialize") => {
                json!({"protocolVersion": 1, "agentCapabilities": {"loadSession": true}})
            }
            Some("session/new") => {
                self.next_session += 1;
                json!({"sessionId": format!("s{}", self.next_session)})
            }
            Some("session/load") => json!({}),
            Some("session/prompt") => {
                let session = message["params"]["sessionId"].as_str().unwrap_or_default();
                let text = message["params"]["prompt"][0]["text"]
                    .as_str()
                    .unwrap_or_default();
                self.prompts
                    .push((run, id, session.to_owned(), text.to_owned()));
                return;
            }
            Some("session/cancel") => {
                let session = message["params"]["sessionId"].as_str().unwrap_or_default();
                let (cancelled, kept) = std::mem::take(&mut self.prompts)
                    .into_iter()
                    .partition(|p| p.0 == run && p.2 == session);
                self.prompts = kept;
                let cancelled: Vec<(u64, Value, String, String)> = cancelled;
                for (run, id, _, _) in cancelled {
                    let answer =
                        json!({"jsonrpc": "2.0", "id": id, "result": {"stopReason": "cancelled"}});
                    agent.handle_stdout(RunId(run), format!("{answer}\n").as_bytes(), now);
                }
                return;
            }
            _ => return,
        };
        let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
        agent.handle_stdout(RunId(run), format!("{answer}\n").as_bytes(), now);
    }

    /// Answers the prompts waiting: a chunk each, then the end of the turn.
    fn answer_prompts(&mut self, agent: &mut AcpAgent, now: Instant) {
        for (run, id, session, text) in std::mem::take(&mut self.prompts) {
            let said = format!("re {}", text.len());
            let update = json!({"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": session,
                "update": {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": said}}}});
            let done = json!({"jsonrpc": "2.0", "id": id, "result": {"stopReason": "end_turn"}});
            agent.handle_stdout(RunId(run), format!("{update}\n{done}\n").as_bytes(), now);
        }
    }
}

/// An editor's conversation, and the turn it waits on.
struct Chat {
    messages: Vec<Value>,
    waiting: Option<(String, String)>,
}

#[test]
fn hours_of_churn_stay_bounded_and_end_with_one_idle_process() {
    let start = Instant::now();
    let pool = AcpPlan {
        max_sessions: 4,
        max_processes: 2,
        max_queued: 8,
        idle: Duration::from_secs(600),
        timeout: Duration::from_secs(120),
        ..plan()
    };
    let mut agent = AcpAgent::new(pool, "acp", start);
    let mut script = Script::default();
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let mut chats: Vec<Chat> = Vec::new();
    let mut finals: HashMap<String, u32> = HashMap::new();
    let (mut next_invoke, mut continued) = (0u64, 0u64);
    let tick = Duration::from_secs(3);
    let hours = 6;
    let mut now = start;
    for step in 0..(hours * 3600 / 3) {
        now = start + tick * step;
        // Busy hours and quiet hours: at night nobody asks.
        let busy = (step * 3 / 3600) % 3 != 2;
        if busy && dice.roll(2) == 0 {
            // The user goes on in one of the last few conversations; the
            // older ones are left open, never to be continued.
            let recent = chats.len().saturating_sub(6)..chats.len();
            let idle: Vec<usize> = recent.filter(|&c| chats[c].waiting.is_none()).collect();
            let pick = (!idle.is_empty() && dice.roll(3) != 0)
                .then(|| idle[dice.roll(idle.len() as u64) as usize]);
            let chat = match pick {
                Some(c) => {
                    continued += 1;
                    c
                }
                None => {
                    // Editors keep at most 40 conversations open.
                    if chats.len() >= 40 {
                        chats.remove(0);
                    }
                    chats.push(Chat {
                        messages: Vec::new(),
                        waiting: None,
                    });
                    chats.len() - 1
                }
            };
            next_invoke += 1;
            let invoke = format!("inv-{next_invoke}");
            chats[chat]
                .messages
                .push(json!({"role": "user", "content": format!("question {next_invoke}")}));
            chats[chat].waiting = Some((invoke.clone(), String::new()));
            let frame = json!({"type": "model_invoke", "id": invoke,
                               "payload": {"kind": "chat", "messages": chats[chat].messages}});
            agent.handle_message(&frame.to_string(), now);
        }
        // Some editors leave mid-answer.
        if dice.roll(40) == 0 {
            if let Some(chat) = chats.iter_mut().find(|c| c.waiting.is_some()) {
                if let Some((invoke, _)) = chat.waiting.take() {
                    chat.messages.pop();
                    agent.handle_message(&json!({"type": "cancel", "id": invoke}).to_string(), now);
                    finals.insert(invoke, 0);
                }
            }
        }
        // And now and then the agent crashes.
        if dice.roll(900) == 0 {
            if let Some(&run) = script.runs.iter().next() {
                script.runs.remove(&run);
                script.prompts.retain(|p| p.0 != run);
                let exit = Exit::Exited {
                    code: Some(1),
                    stderr: "crashed".into(),
                };
                agent.handle_exit(RunId(run), exit, now);
            }
        }
        script.act(&mut agent, now);
        script.answer_prompts(&mut agent, now);
        script.act(&mut agent, now);
        if agent.poll_timeout().is_some_and(|due| due <= now) {
            agent.handle_timeout(now);
            script.act(&mut agent, now);
        }
        for frame in std::iter::from_fn(|| agent.poll_transmit()) {
            let Ok(frame) = serde_json::from_str::<Value>(&frame) else {
                continue;
            };
            let Some(id) = frame["id"].as_str() else {
                continue;
            };
            let chat = chats
                .iter_mut()
                .find(|c| c.waiting.as_ref().is_some_and(|(w, _)| w == id));
            let Some(chat) = chat else {
                assert!(
                    !finals.contains_key(id),
                    "a frame after the end of {id}: {frame}"
                );
                continue;
            };
            if let Some((_, text)) = chat.waiting.as_mut() {
                text.push_str(frame["delta"]["content"].as_str().unwrap_or_default());
            }
            let error = frame["type"] == "error";
            if error || !frame["finish_reason"].is_null() {
                *finals.entry(id.to_owned()).or_default() += 1;
                if let Some((_, text)) = chat.waiting.take() {
                    if error {
                        chat.messages.pop();
                    } else {
                        chat.messages
                            .push(json!({"role": "assistant", "content": text}));
                    }
                }
            }
        }
        assert!(agent.processes() <= 2, "step {step}");
        assert!(
            agent.sessions() <= 8,
            "step {step}: {} sessions",
            agent.sessions()
        );
        assert!(
            agent.queue.len() <= 8 && agent.pool.pending.len() <= 16,
            "step {step}"
        );
        assert!(agent.listed.len() <= agent.sessions(), "step {step}");
    }
    // Every turn asked for ended once (a cancelled one never).
    assert!(finals.values().all(|&n| n <= 1));
    let ended = finals.values().filter(|&&n| n == 1).count() as u64;
    assert!(
        ended * 10 >= next_invoke * 9,
        "{ended} of {next_invoke} turns ended"
    );
    // Most continued conversations found their session warm.
    let opened = script.next_session;
    let warm = next_invoke - opened;
    assert!(
        continued > 1000 && warm * 2 > continued,
        "continued {continued}, warm {warm}"
    );
    eprintln!("churn: {next_invoke} turns, {ended} ended, {continued} continued, {warm} warm, {} processes started", agent.starts());
    // The editors are gone: an hour later nothing is held but one process.
    let later = now + Duration::from_secs(3600);
    agent.handle_timeout(later);
    script.act(&mut agent, later);
    assert_eq!((agent.sessions(), agent.processes()), (0, 1));
    assert!(agent.queue.is_empty() && agent.pool.pending.is_empty() && agent.listed.is_empty());
}
