//! No conversation gets another's words: an agent process that answers at
//! random — `session/new` with new ids or with ids already open, text for
//! any session, prompt answers for any session, calls of the editor's
//! tools over any session's relay, at any time — while editors start
//! conversations, send the results of the calls they were given, or leave.
//! Every text and every tool call an editor receives was produced in its
//! own conversation's session while its turn was running there (not
//! waiting for the editor's results).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::super::*;
use super::{frames, reply, update, weather, with_tools};
use crate::agent::exec::link;

/// What happens next.
#[derive(Debug, Clone)]
enum Step {
    /// An editor starts a conversation offering its tools.
    Start,
    /// The oldest unanswered `session/new` is answered: with a new id, or
    /// with the n-th id handed out so far.
    Open(Option<usize>),
    /// Text for the n-th session id handed out.
    Say(usize),
    /// A call of the editor's tool over a new relay connection saying the
    /// n-th secret handed out.
    Call(usize),
    /// The oldest unanswered prompt of the n-th session id is answered.
    End(usize),
    /// The editor of the n-th conversation sends the results of the calls
    /// it was given.
    Results(usize),
    /// The editor of the n-th conversation leaves.
    Leave(usize),
    /// Time passes (milliseconds).
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => Just(Step::Start),
        2 => proptest::option::of(0..6usize).prop_map(Step::Open),
        3 => (0..6usize).prop_map(Step::Say),
        3 => (0..8usize).prop_map(Step::Call),
        2 => (0..6usize).prop_map(Step::End),
        2 => (0..6usize).prop_map(Step::Results),
        1 => (0..6usize).prop_map(Step::Leave),
        2 => prop_oneof![Just(250u64), Just(600), Just(6_000)].prop_map(Step::Wait),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Its turn runs: what its session says is its.
    Running,
    /// Its editor has the calls of its turn and will send their results.
    Parked,
    /// Answered, failed or left.
    Done,
}

struct Conversation {
    invoke: String,
    turns: usize,
    state: State,
    /// The calls it was given, as the editor's history holds them.
    calls: Vec<Value>,
}

/// The editors, the hostile agent process (run 0), and what the agent
/// process was told and said.
struct World {
    agent: AcpAgent,
    now: Instant,
    conversations: Vec<Conversation>,
    /// `session/new` requests not answered: request id, the conversation
    /// it opens a session for, and the secret of its relay.
    opening: VecDeque<(Value, usize, String)>,
    /// Session ids handed out, with the conversation whose session holds
    /// each now.
    ids: Vec<(String, usize)>,
    /// Relay secrets handed out, with their conversation.
    secrets: Vec<(String, usize)>,
    /// Prompts not answered: request id and session id.
    prompts: Vec<(Value, String)>,
    /// For each text or call made, the only turn that may receive it.
    owners: HashMap<String, Option<String>>,
    next_tag: u64,
    next_link: u64,
}

fn question(k: usize) -> Value {
    json!([{"role": "user", "content": format!("conversation {k}")}])
}

impl World {
    fn new() -> Self {
        let now = Instant::now();
        let plan = AcpPlan {
            editor_tools: EditorTools::Mcp,
            max_sessions: 3,
            timeout: Duration::from_secs(30),
            ..with_tools()
        };
        let mut world = World {
            agent: AcpAgent::new(plan, "acp", now),
            now,
            conversations: Vec::new(),
            opening: VecDeque::new(),
            ids: Vec::new(),
            secrets: Vec::new(),
            prompts: Vec::new(),
            owners: HashMap::new(),
            next_tag: 0,
            next_link: 0,
        };
        world.pump();
        reply(
            &mut world.agent,
            0,
            &json!(0),
            json!({"protocolVersion": 1}),
            now,
        );
        reply(
            &mut world.agent,
            0,
            &json!(1),
            json!({"sessionId": "s0"}),
            now,
        );
        world.ids.push(("s0".into(), usize::MAX));
        world.pump();
        world
    }

    fn invoke(&mut self, k: usize, messages: Value) {
        let Some(conversation) = self.conversations.get_mut(k) else {
            return;
        };
        conversation.turns += 1;
        conversation.invoke = format!("c{k}-t{}", conversation.turns);
        conversation.state = State::Running;
        let frame = json!({"type": "model_invoke", "id": conversation.invoke,
            "payload": {"kind": "chat", "messages": messages, "parameters": {"tools": weather()}}});
        self.agent.handle_message(&frame.to_string(), self.now);
    }

    /// The turn that may receive what the conversation `k` says now.
    fn running(&self, k: usize) -> Option<String> {
        let conversation = self.conversations.get(k)?;
        (conversation.state == State::Running).then(|| conversation.invoke.clone())
    }

    fn tag(&mut self, owner: Option<String>) -> String {
        self.next_tag += 1;
        let tag = format!("t{}", self.next_tag);
        self.owners.insert(tag.clone(), owner);
        tag
    }

    fn act(&mut self, step: Step) {
        let now = self.now;
        match step {
            Step::Start => {
                self.conversations.push(Conversation {
                    invoke: String::new(),
                    turns: 0,
                    state: State::Done,
                    calls: Vec::new(),
                });
                let k = self.conversations.len() - 1;
                self.invoke(k, question(k));
            }
            Step::Open(reused) => {
                let Some((request, k, secret)) = self.opening.pop_front() else {
                    return;
                };
                let id = match reused.and_then(|n| self.ids.get(n % self.ids.len())) {
                    Some((id, _)) => id.clone(),
                    None => format!("s{}", self.ids.len()),
                };
                // An id the provider holds a session under stays that
                // session's; any other is the new session's.
                let held = self.agent.sessions.contains_key(&At {
                    slot: 0,
                    id: id.clone(),
                });
                match self.ids.iter_mut().find(|(i, _)| *i == id) {
                    Some((_, owner)) if !held => *owner = k,
                    Some(_) => {}
                    None => self.ids.push((id.clone(), k)),
                }
                self.secrets.push((secret.clone(), k));
                reply(&mut self.agent, 0, &request, json!({"sessionId": id}), now);
                // The agent starts the session's MCP server, which lists
                // the tools at once.
                let hello = json!({"secret": secret});
                let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
                self.relay(format!("{hello}\n{list}\n"));
            }
            Step::Say(n) => {
                let Some((id, k)) = self.ids.get(n % self.ids.len()).cloned() else {
                    return;
                };
                let tag = self.tag(self.running(k));
                update(&mut self.agent, 0, &id, "agent_message_chunk", &tag, now);
            }
            Step::Call(n) => {
                if self.secrets.is_empty() {
                    return;
                }
                let Some((secret, k)) = self.secrets.get(n % self.secrets.len()).cloned() else {
                    return;
                };
                let tag = self.tag(self.running(k));
                let hello = json!({"secret": secret});
                let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                  "params": {"name": "weather", "arguments": {"city": tag}}});
                self.relay(format!("{hello}\n{call}\n"));
            }
            Step::End(n) => {
                let Some((id, _)) = self.ids.get(n % self.ids.len()).cloned() else {
                    return;
                };
                let Some(at) = self.prompts.iter().position(|(_, s)| *s == id) else {
                    return;
                };
                let (request, _) = self.prompts.remove(at);
                let ended = json!({"stopReason": "end_turn"});
                reply(&mut self.agent, 0, &request, ended, now);
            }
            Step::Results(n) => {
                if self.conversations.is_empty() {
                    return;
                }
                let k = n % self.conversations.len();
                let Some(conversation) = self.conversations.get(k) else {
                    return;
                };
                if conversation.state != State::Parked {
                    return;
                }
                let mut messages = question(k).as_array().cloned().unwrap_or_default();
                messages.push(
                    json!({"role": "assistant", "content": "", "tool_calls": conversation.calls}),
                );
                for call in &conversation.calls {
                    messages.push(
                        json!({"role": "tool", "tool_call_id": call["id"], "content": "sunny"}),
                    );
                }
                self.invoke(k, json!(messages));
            }
            Step::Leave(n) => {
                if self.conversations.is_empty() {
                    return;
                }
                let k = n % self.conversations.len();
                if let Some(conversation) = self.conversations.get_mut(k) {
                    conversation.state = State::Done;
                    let cancel = json!({"type": "cancel", "id": conversation.invoke});
                    self.agent.handle_message(&cancel.to_string(), now);
                }
            }
            Step::Wait(ms) => {
                self.now += Duration::from_millis(ms);
                self.agent.handle_timeout(self.now);
            }
        }
        self.pump();
    }

    /// Bytes from a new relay connection.
    fn relay(&mut self, bytes: String) {
        self.next_link += 1;
        let link = LinkId(self.next_link);
        self.agent.handle_link(link, bytes.as_bytes(), self.now);
    }

    /// A spare a conversation took is that conversation's, and so is
    /// its relay.
    fn taken(&mut self) {
        let seed = [7; 32];
        for (id, owner) in self.ids.iter_mut().filter(|(_, o)| *o == usize::MAX) {
            let at = At {
                slot: 0,
                id: id.clone(),
            };
            let Some(session) = self.agent.sessions.get(&at) else {
                continue;
            };
            let Some(k) = session.turn.as_ref().map(|t| conversation_of(&t.invoke)) else {
                continue;
            };
            *owner = k;
            let secret = session.tools.map(|o| link::secret(&seed, o));
            for (s, of) in self.secrets.iter_mut() {
                if Some(&*s) == secret.as_ref() && *of == usize::MAX {
                    *of = k;
                }
            }
        }
    }

    /// Takes in what the agent wrote to its process and its relays, and
    /// checks every frame its editors were sent.
    fn pump(&mut self) {
        while let Some(action) = self.agent.poll_action() {
            let Action::Write { line, .. } = action else {
                continue;
            };
            let Ok(request) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let id = request["id"].clone();
            match request["method"].as_str() {
                Some("session/new") => {
                    // A spare is nobody's until a conversation takes it.
                    let k = match id.as_u64().and_then(|id| self.agent.pool.pending.get(&id)) {
                        Some((_, Pending::NewSession(asking))) => conversation_of(&asking.invoke),
                        Some((_, Pending::Spare { .. })) => usize::MAX,
                        _ => continue,
                    };
                    let args = request["params"]["mcpServers"][0]["args"].as_array();
                    let secret = args.and_then(|a| a.last()).and_then(Value::as_str);
                    self.opening
                        .push_back((id, k, secret.unwrap_or_default().to_owned()));
                }
                Some("session/prompt") => {
                    let session = request["params"]["sessionId"].as_str();
                    self.prompts
                        .push((id, session.unwrap_or_default().to_owned()));
                }
                _ => {}
            }
        }
        self.taken();
        while self.agent.poll_link().is_some() {}
        for frame in frames(&mut self.agent) {
            self.check(&frame);
        }
    }

    fn check(&mut self, frame: &Value) {
        let invoke = frame["id"].as_str().unwrap_or_default();
        let mut said: Vec<String> = Vec::new();
        if let Some(text) = frame["delta"]["content"].as_str().filter(|t| !t.is_empty()) {
            said.push(text.to_owned());
        }
        let calls = frame["delta"]["tool_calls"].as_array();
        for call in calls.into_iter().flatten() {
            let arguments = call["function"]["arguments"].as_str().unwrap_or_default();
            let arguments: Value = serde_json::from_str(arguments).unwrap_or_default();
            said.push(arguments["city"].as_str().unwrap_or_default().to_owned());
        }
        for tag in said {
            let owner = self.owners.get(&tag).cloned().flatten();
            assert_eq!(
                owner.as_deref(),
                Some(invoke),
                "{tag} reached {invoke}: {frame}"
            );
        }
        let k = conversation_of(invoke);
        let Some(conversation) = self.conversations.get_mut(k) else {
            return;
        };
        if conversation.invoke != invoke || conversation.state != State::Running {
            return;
        }
        if let Some(calls) = frame["delta"]["tool_calls"].as_array() {
            conversation.calls.extend(calls.iter().map(
                |call| json!({"id": call["id"], "type": "function", "function": call["function"]}),
            ));
        }
        match frame["finish_reason"].as_str() {
            Some("tool_calls") => conversation.state = State::Parked,
            Some(_) => conversation.state = State::Done,
            None if frame["type"] == "error" => conversation.state = State::Done,
            None => {}
        }
        if conversation.state != State::Parked && conversation.state != State::Running {
            conversation.calls.clear();
        }
    }
}

/// The conversation an invocation id (`c{k}-t{n}`) is a turn of.
fn conversation_of(invoke: &str) -> usize {
    let number = invoke.strip_prefix('c').and_then(|s| s.split('-').next());
    number.and_then(|n| n.parse().ok()).unwrap_or(usize::MAX)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_text_or_call_reaches_another_conversation_or_turn(steps in proptest::collection::vec(step(), 1..60)) {
        let mut world = World::new();
        for step in steps {
            world.act(step);
        }
    }
}

/// The two ways a hostile agent reached another conversation, played out.
#[test]
fn a_reused_session_id_and_a_call_during_parked_wait_reach_nobody_else() {
    let mut world = World::new();
    for step in [
        Step::Start,
        Step::Open(None),
        Step::Wait(600),
        Step::Say(1),
        Step::Start,
        // The spare opening ahead, then the second conversation's own
        // session, answered with the first's id.
        Step::Open(Some(1)),
        Step::Open(Some(1)),
        Step::Say(1),
        Step::Call(0),
        Step::Wait(250),
        Step::Call(0),
        Step::Wait(250),
        Step::Results(0),
        Step::Wait(250),
        Step::End(1),
    ] {
        world.act(step);
    }
    let states: Vec<State> = world.conversations.iter().map(|c| c.state).collect();
    assert_eq!(
        states,
        [State::Done, State::Done],
        "the second conversation was refused, the first's turn ended"
    );
}
