//! A provider driven by a sequence of session events on a virtual clock:
//! agents connecting, answering, dropping, resuming and being revoked, a
//! thief trying to take their sessions over, editors asking and hanging
//! up, time passing. Shared by the property laws and the fuzz target that
//! check no such sequence leaves a request waiting forever and no thief
//! ever gets a session.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde_json::json;

use crate::http::{Body, Request};
use crate::stream::EditorSides;
use crate::{Config, ConnId, Output, Provider};

/// One thing that can happen to a provider with two agents and a few
/// editors.
#[derive(Debug, Clone)]
pub enum Op {
    Connect(u8),
    Drop(u8),
    Request {
        stream: bool,
    },
    EditorGone(u8),
    Answer {
        agent: u8,
        chunks: u8,
        finish: bool,
    },
    Revoke(u8),
    Advance(u16),
    /// A dropped agent reconnects naming its last session, with the
    /// `resume_token` it was given (or, `right: false`, a wrong one).
    Resume {
        agent: u8,
        right: bool,
    },
    /// Someone else (another `agent_id`, holding the bridge token) names
    /// the agent's session: with a made-up token, or with the agent's real
    /// one (a leaked token is still not enough without the `agent_id`).
    Steal {
        victim: u8,
        leaked: bool,
    },
}

impl Op {
    /// Ops from fuzzer bytes, two bytes each.
    #[cfg(fuzzing)]
    pub fn decode(data: &[u8]) -> Vec<Op> {
        data.chunks_exact(2)
            .map(|pair| {
                let (kind, arg) = match *pair {
                    [kind, arg] => (kind % 9, arg),
                    _ => (0, 0),
                };
                match kind {
                    0 => Op::Connect(arg % 2),
                    1 => Op::Drop(arg % 2),
                    2 => Op::Request {
                        stream: arg % 2 == 0,
                    },
                    3 => Op::EditorGone(arg % 8),
                    4 => Op::Answer {
                        agent: arg % 2,
                        chunks: (arg >> 1) % 3,
                        finish: arg & 0x80 != 0,
                    },
                    5 => Op::Revoke(arg % 2),
                    6 => Op::Resume {
                        agent: arg % 2,
                        right: arg & 0x80 == 0,
                    },
                    7 => Op::Steal {
                        victim: arg % 2,
                        leaked: arg & 0x80 != 0,
                    },
                    _ => Op::Advance(u16::from(arg) * 20),
                }
            })
            .collect()
    }
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// Short enough that `Advance` ops (up to 5.1 s) free dropped sessions.
const SESSION_GRACE: Duration = Duration::from_secs(2);

/// What playing a sequence of ops came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Editors still waiting for (the end of) an answer a minute after the
    /// last op: must be none.
    pub waiting: Vec<ConnId>,
    /// Times a thief was handed a session that was not its own: must be 0.
    pub takeovers: usize,
    /// Revokes that took effect (the control API answered 200).
    pub revoked: usize,
    /// Resumes that got the agent's own session back.
    pub resumed: usize,
}

/// Plays `ops`, then lets time run a minute past the last.
pub fn play(ops: &[Op]) -> Outcome {
    let mut sim = Sim::new();
    for op in ops {
        sim.apply(op);
    }
    let end = sim.now + Duration::from_secs(60);
    while let Some(at) = sim.provider.poll_timeout().filter(|at| *at <= end) {
        sim.now = at;
        sim.provider.handle_timeout(at);
        sim.drain();
    }
    let mut waiting: Vec<ConnId> = sim
        .editors
        .iter()
        .copied()
        .filter(|c| !sim.ended.contains(c) && !sim.gone.contains(c))
        .collect();
    if sim.provider.in_flight() > 0 && waiting.is_empty() {
        // An invocation outlived its editor.
        waiting.push(ConnId(0));
    }
    Outcome {
        waiting,
        takeovers: sim.takeovers,
        revoked: sim.revoked,
        resumed: sim.resumed,
    }
}

/// Plays `ops`; returns the editors left waiting, which must be none.
#[cfg(test)]
pub fn editors_left_waiting(ops: &[Op]) -> Vec<ConnId> {
    play(ops).waiting
}

struct Sim {
    provider: Provider,
    now: Instant,
    connected: [bool; 2],
    editors: Vec<ConnId>,
    gone: HashSet<ConnId>,
    ended: HashSet<ConnId>,
    /// Invocations sent to each agent and not yet answered by the ops.
    invokes: [Vec<String>; 2],
    /// Each agent's last session and the resume token it holds for it.
    sessions: [Option<(String, String)>; 2],
    takeovers: usize,
    revoked: usize,
    resumed: usize,
    /// The editors' connections, writing their answers.
    editor_sides: EditorSides,
}

fn agent_conn(k: u8) -> ConnId {
    ConnId(100 + u64::from(k))
}

/// The thief's link while it tries agent `k`'s session.
fn thief_conn(k: u8) -> ConnId {
    ConnId(200 + u64::from(k))
}

impl Sim {
    fn new() -> Sim {
        let mut config = Config::new(&["key"], "bridge");
        config.request_timeout = REQUEST_TIMEOUT;
        config.stream_idle_timeout = STREAM_IDLE_TIMEOUT;
        config.session_grace = SESSION_GRACE;
        let now = Instant::now();
        Sim {
            provider: Provider::new(config, now, SystemTime::UNIX_EPOCH),
            now,
            connected: [false; 2],
            editors: Vec::new(),
            gone: HashSet::new(),
            ended: HashSet::new(),
            invokes: [Vec::new(), Vec::new()],
            sessions: [None, None],
            takeovers: 0,
            revoked: 0,
            resumed: 0,
            editor_sides: EditorSides::default(),
        }
    }

    fn drain(&mut self) {
        let mut plain = Vec::new();
        while let Some(output) = self.provider.poll_output() {
            self.editor_sides.carry(output, |o| plain.push(o));
        }
        for output in plain {
            match output {
                Output::Respond { to, response } => {
                    if to.conn.0 >= 10_000 && response.status == 200 {
                        self.revoked += 1;
                    }
                    if matches!(response.body, Body::Full(_)) {
                        self.ended.insert(to.conn);
                    }
                }
                Output::End { to } => {
                    self.ended.insert(to.conn);
                }
                Output::ToAgent { conn, text } => {
                    let msg: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    let session = msg["session_id"].as_str().unwrap_or_default().to_owned();
                    if conn == thief_conn(0) || conn == thief_conn(1) {
                        // The thief must never hear of anyone's session.
                        let theirs = self.sessions.iter().flatten().any(|(id, _)| *id == session);
                        if msg["type"] == "registered" && theirs {
                            self.takeovers += 1;
                        }
                        continue;
                    }
                    let k = usize::from(conn == agent_conn(1));
                    if msg["type"] == "model_invoke" {
                        self.invokes[k].push(msg["id"].as_str().unwrap_or_default().to_owned());
                    }
                    if let Some(token) = msg["resume_token"].as_str() {
                        if self.sessions[k]
                            .as_ref()
                            .is_some_and(|(id, _)| *id == session)
                        {
                            self.resumed += 1;
                        }
                        self.sessions[k] = Some((session, token.to_owned()));
                    }
                }
                _ => {}
            }
        }
    }

    fn request(&mut self, conn: ConnId, path: &str, auth: &str, body: serde_json::Value) {
        let headers = vec![
            ("host".to_owned(), "127.0.0.1:8788".to_owned()),
            ("authorization".to_owned(), format!("Bearer {auth}")),
        ];
        let request = Request::new("POST", path, headers, Bytes::from(body.to_string()))
            .expect("the simulation's paths are canonical");
        self.provider.handle_request(conn, request, self.now);
        self.drain();
    }

    fn agent_says(&mut self, k: u8, message: serde_json::Value) {
        let text = message.to_string();
        self.provider
            .handle_agent_text(agent_conn(k), &text, self.now);
        self.drain();
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Connect(k) if !self.connected[usize::from(k)] => {
                self.connected[usize::from(k)] = true;
                self.provider.open_agent(agent_conn(k), "agent");
                let register =
                    json!({"type": "register", "agent_id": format!("a{k}"), "models": ["m"]});
                self.agent_says(k, register);
            }
            Op::Drop(k) if self.connected[usize::from(k)] => {
                self.connected[usize::from(k)] = false;
                self.invokes[usize::from(k)].clear();
                self.provider.handle_conn_closed(agent_conn(k), self.now);
                self.drain();
            }
            Op::Request { stream } => {
                let conn = ConnId(1 + self.editors.len() as u64);
                self.editors.push(conn);
                let body = json!({"model": "m", "stream": stream,
                                  "messages": [{"role": "user", "content": "hi"}]});
                self.request(conn, "/v1/chat/completions", "key", body);
            }
            Op::EditorGone(e) => {
                if let Some(&conn) = self.editors.get(usize::from(e)) {
                    self.gone.insert(conn);
                    self.provider.handle_conn_closed(conn, self.now);
                    self.drain();
                }
            }
            Op::Answer {
                agent,
                chunks,
                finish,
            } if self.connected[usize::from(agent)] => {
                for id in std::mem::take(&mut self.invokes[usize::from(agent)]) {
                    for i in 0..chunks {
                        let last = finish && i + 1 == chunks;
                        let chunk = json!({"type": "model_stream_chunk", "id": id, "chunk_index": i,
                                           "delta": {"content": "w"},
                                           "finish_reason": if last { Some("stop") } else { None }});
                        self.agent_says(agent, chunk);
                    }
                }
            }
            Op::Revoke(k) => {
                // Control connections are 10_000 up: `drain` counts the
                // revokes answered 200.
                let conn = ConnId(10_000 + u64::from(k));
                let Some((id, _)) = self.sessions[usize::from(k)].clone() else {
                    return;
                };
                self.request(conn, "/control/revoke", "bridge", json!({"session_id": id}));
            }
            Op::Resume { agent: k, right } if !self.connected[usize::from(k)] => {
                let Some((id, token)) = self.sessions[usize::from(k)].clone() else {
                    return;
                };
                let token = if right { token } else { format!("{token}0") };
                self.connected[usize::from(k)] = true;
                self.provider.open_agent(agent_conn(k), "agent");
                let register = json!({"type": "register", "agent_id": format!("a{k}"), "models": ["m"],
                                      "session_id": id, "resume_token": token});
                self.agent_says(k, register);
                if !right {
                    let linked = self
                        .provider
                        .sessions()
                        .get(&id)
                        .is_some_and(|s| s.link == Some(agent_conn(k)));
                    self.takeovers += usize::from(linked);
                }
            }
            Op::Steal { victim, leaked } => {
                let Some((id, token)) = self.sessions[usize::from(victim)].clone() else {
                    return;
                };
                let token = if leaked { token } else { "guess".to_owned() };
                let thief = thief_conn(victim);
                self.provider.open_agent(thief, "thief");
                let register = json!({"type": "register", "agent_id": "thief", "models": ["m"],
                                      "session_id": id, "resume_token": token});
                self.provider
                    .handle_agent_text(thief, &register.to_string(), self.now);
                self.drain();
                let linked = self
                    .provider
                    .sessions()
                    .get(&id)
                    .is_some_and(|s| s.link == Some(thief));
                self.takeovers += usize::from(linked);
                // The thief leaves again (with whatever session it got,
                // which must be a new one of its own).
                self.provider.handle_conn_closed(thief, self.now);
                self.drain();
            }
            Op::Advance(ms) => {
                self.now += Duration::from_millis(u64::from(ms));
                self.provider.handle_timeout(self.now);
                self.drain();
            }
            _ => {}
        }
    }
}
