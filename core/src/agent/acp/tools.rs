//! The editor's tools in an ACP session: the session's one MCP server is
//! the relay `agent exec` gives its CLIs, saying the session's secret. The
//! agent's calls of the editor's tools are gathered ([`Round`]) and given
//! to the editor as the answer's tool calls; the turn is then parked, its
//! prompt still running in the agent, until the editor's next request
//! brings the results: they answer the agent's MCP calls, and what the
//! agent does next is that request's answer. Offered as text
//! (`textual`), the calls end the turn, and the request
//! that brings their results goes on in the session that made them.

use std::time::Instant;

use serde_json::{json, Value};

use super::textual::results_text;
use super::{AcpAgent, At, Pending, Request, Turn};
use crate::agent::exec::link::{self, Asked, LinkId};
use crate::agent::exec::relays::Heard;
use crate::agent::exec::round::Round;
use crate::agent::exec::tools::{Chat, Offer, Results};
use crate::agent::exec::SERVER;
use crate::agent::ledger::Answer;
use crate::agent::process::RunId;
use crate::lines::Line;
use crate::time::later;
use crate::tokens::tokens_for_chars;

/// The tool the first session's relay lists: its listing shows the tools
/// of an MCP server handed over `session/new` reach the agent.
pub(super) fn probe_offer() -> Offer {
    let tool = json!({"name": "probe", "inputSchema": {"type": "object", "properties": {}},
        "description": "Shows the editor's tools reach this agent. There is no need to call it."});
    Offer {
        tools: vec![tool],
        choice: None,
        chat: Chat::of(&Value::Null),
        search: None,
    }
}

/// When the turn has something to do: its own deadline, its calls' batch
/// or wait, its held prompt's.
pub(super) fn due(turn: &Turn) -> Vec<Instant> {
    let own = (!turn.parked()).then_some(turn.deadline);
    let round = turn.round.as_ref().and_then(Round::deadline);
    let held = turn.held.as_ref().map(|(_, until)| *until);
    own.into_iter().chain(round).chain(held).collect()
}

impl AcpAgent {
    /// A request whose history ends with the results of the calls a
    /// session's last answer made as text goes on in that session, with
    /// the results as its prompt; any other request is given back.
    pub(super) fn resume_textual(
        &mut self,
        mut request: Request,
        payload: &Value,
        now: Instant,
    ) -> Option<Request> {
        let Some(results) = Results::of(payload) else {
            return Some(request);
        };
        let found = self.sessions.iter_mut().find_map(|(at, session)| {
            let (given, chat) = session
                .awaiting
                .as_ref()
                .filter(|_| session.turn.is_none())?;
            let answers = results.answers(given, chat)?;
            Some((at.clone(), results_text(given, &answers), session))
        });
        let Some((at, text, session)) = found else {
            return Some(request);
        };
        session.awaiting = None;
        request.textual = true;
        self.prompt(at, request, text, now);
        None
    }

    /// `session/new`'s parameters for `request`: with the editor's tools,
    /// the relay as its MCP server, saying a secret of the session's own
    /// (its owner is kept in the request).
    pub(super) fn new_session(&mut self, request: &mut Request) -> Value {
        if request.offer.is_some() && self.plan.tools.is_some() && !request.textual {
            request.owner = Some(RunId(self.next_tools));
            self.next_tools += 1;
        }
        self.session_params(request.owner)
    }

    /// The editor's tools a request offers, if the sessions are given
    /// them: behind a search when they are too many to list whole.
    pub(super) fn offer_of(&mut self, payload: &Value) -> Option<Offer> {
        let search = self.plan.tools.as_ref()?.search;
        Some(Offer::of(payload)?.searched(search, &mut self.indexes))
    }

    /// A session's `session/new` (or `session/load`) parameters: with a
    /// relay's `owner`, the relay as its MCP server, saying the owner's
    /// secret, and the agent's own tools off where it can be told.
    pub(super) fn session_params(&self, owner: Option<RunId>) -> Value {
        let relay = self.plan.tools.as_ref().and_then(|link| {
            let owner = owner?;
            let (command, args) = link.relay.split_first()?;
            let mut args = args.to_vec();
            args.push(link::secret(&link.seed, owner));
            Some(json!({"name": SERVER, "command": command, "args": args, "env": []}))
        });
        let mut params = json!({"cwd": self.plan.cwd, "mcpServers": Vec::from_iter(relay.clone())});
        if let Some(meta) = self.plan.own_tools_off.as_ref() {
            if relay.is_some() && self.plan.policy == super::Policy::Never {
                params["_meta"] = meta.clone();
            }
        }
        params
    }

    /// Whether a permission request is for one of the editor's tools in
    /// its session: the editor decides on those, by running them or not.
    pub(super) fn asks_for_editor_tool(&self, slot: usize, params: &Value) -> bool {
        let turn = params["sessionId"]
            .as_str()
            .and_then(|id| {
                self.sessions.get(&At {
                    slot,
                    id: id.to_owned(),
                })
            })
            .and_then(|s| s.turn.as_ref());
        let Some((turn, round)) = turn.and_then(|t| Some((t, t.round.as_ref()?))) else {
            return false;
        };
        // Agents name the call in different places: its title, the title
        // of the update that announced it, or its `_meta`'s tool name.
        let call = &params["toolCall"];
        let announced = call["toolCallId"]
            .as_str()
            .and_then(|id| turn.shows.title(id));
        let names = [
            call["title"].as_str(),
            announced,
            call["_meta"]["toolName"].as_str(),
        ];
        names
            .into_iter()
            .flatten()
            .any(|t| !t.is_empty() && round.offer.named_in(t))
    }

    /// Bytes from a relay's connection.
    pub(super) fn relay_input(&mut self, id: LinkId, bytes: &[u8], now: Instant) {
        let Some(seed) = self.plan.tools.as_ref().map(|t| t.seed) else {
            return;
        };
        // A relay may say its hello before its session is open: agents
        // start their MCP servers while they answer `session/new`.
        let opened = self.sessions.values().filter_map(|s| s.tools);
        let opening = self.pool.pending.values().filter_map(|(_, p)| p.owner());
        let probe = self.probe.map(|(owner, _)| owner);
        let owners: Vec<RunId> = opened.chain(opening).chain(probe).collect();
        let owner = |hello: &str| {
            owners
                .iter()
                .copied()
                .find(|&owner| link::says(hello, &link::secret(&seed, owner)))
        };
        for (owner, line) in self.relays.input(id, bytes, now, owner) {
            self.relay_line(id, owner, &line, now);
        }
    }

    /// A line from the relay of the session `owner` stands for.
    fn relay_line(&mut self, id: LinkId, owner: RunId, line: &Line, now: Instant) {
        let Some(seed) = self.plan.tools.as_ref().map(|t| t.seed) else {
            return;
        };
        if lists_tools(line) {
            self.listed.insert(owner, now);
            self.tools_reached(true);
        }
        let at = self.speaks_for(owner);
        let in_turn = at
            .as_ref()
            .and_then(|at| self.sessions.get_mut(at))
            .filter(|s| s.turn.as_ref().is_some_and(|t| t.round.is_some()));
        let Some(session) = in_turn else {
            return self.outside_turn(id, owner, at.as_ref(), line);
        };
        let Some((held, round)) = session
            .turn
            .as_mut()
            .and_then(|t| Some((&mut t.held, t.round.as_mut()?)))
        else {
            return;
        };
        let call_id = |n| link::call_id(&seed, owner, n);
        match self.relays.hear(id, line, round, call_id, now) {
            Heard::Answered => {
                if let Some(held) = held.as_mut().filter(|_| lists_tools(line)) {
                    held.1 = held.1.min(now + super::LIST_SETTLE);
                }
            }
            // What a turn found is listed between turns, and kept by the
            // session's next turns.
            Heard::Relisted => {
                if let Some(offer) = session.offer.as_mut() {
                    offer.search.clone_from(&round.offer.search);
                }
            }
            // The agent does not say how many calls its model's turn
            // made: they go together after the batch's bound.
            Heard::Called | Heard::Nothing => {}
        }
    }

    /// A line from a relay before its session opened, or between turns:
    /// the tools of its request or last turn are listed (and searched),
    /// and none can be called (nobody would take the call).
    fn outside_turn(&mut self, id: LinkId, owner: RunId, session: Option<&At>, line: &Line) {
        let probing = self.probe.is_some_and(|(o, _)| o == owner)
            || self
                .pool
                .pending
                .values()
                .any(|(_, p)| matches!(p, Pending::Probe(o) if *o == owner));
        let mut probe = probe_offer();
        let offer = match session.and_then(|at| self.sessions.get_mut(at)) {
            Some(session) => session.offer.as_mut(),
            None if probing => Some(&mut probe),
            None => self
                .pool
                .pending
                .values_mut()
                .find_map(|(_, p)| p.offer_of(owner)),
        };
        match offer.map(|offer| link::asked(line, offer)) {
            Some(Asked::Reply(reply)) => self.relays.send(id, reply),
            Some(Asked::Relisted(reply)) => self.relays.send_relisted(id, reply),
            Some(Asked::Call { rpc, .. }) => {
                let refusal = link::result(&rpc, "no request is being answered", true);
                self.relays.send(id, refusal);
            }
            _ => {}
        }
    }

    /// Opens the probe's session in the process of `slot`, unless the way
    /// to the editor's tools is settled: given the relay, it shows whether
    /// the agent lists the tools of an MCP server handed to it.
    pub(super) fn probe(&mut self, slot: usize) {
        if self.plan.tools.is_none() || self.plan.editor_tools != super::EditorTools::Auto {
            return;
        }
        let owner = RunId(self.next_tools);
        self.next_tools += 1;
        let params = self.session_params(Some(owner));
        self.pool
            .call(slot, "session/new", params, Pending::Probe(owner));
    }

    /// The probe's session opened (or not): its relay is given a while to
    /// list the probe tool. The session itself is not used (its tools are
    /// the probe's), nor closed (ACP 1 has no way to).
    pub(super) fn probing(&mut self, owner: RunId, opened: bool, now: Instant) {
        if opened && self.tools_reach.is_none() {
            self.probe = Some((owner, now + super::PROBE_WAIT));
        } else {
            self.relays.close_all_of(owner);
            tracing::info!("the probe session was refused: the editor's tools go over MCP");
        }
        self.drain_queue(now);
    }

    /// What the probe found, once: whether a session's relay listed its
    /// tools (else they are offered as text from now on).
    pub(super) fn tools_reached(&mut self, reached: bool) {
        if self.tools_reach.is_some() {
            return;
        }
        self.tools_reach = Some(reached);
        if let Some((owner, _)) = self.probe.take() {
            self.relays.close_all_of(owner);
        }
        let program = self.program();
        if reached {
            tracing::info!("`{program}` listed the tools of the MCP server its session was given: the editor's tools reach it over MCP");
        } else {
            let secs = super::PROBE_WAIT.as_secs();
            tracing::warn!(
                "`{program}` did not list the tools of the MCP server its first session was given within {secs} s: \
                 the editor's tools are offered to it as text in the prompt (--editor-tools mcp keeps them on MCP)"
            );
        }
    }

    /// A relay's connection closed: its calls can no longer be answered.
    pub(super) fn relay_closed(&mut self, id: LinkId) {
        let Some(owner) = self.relays.closed(id) else {
            return;
        };
        let round = self
            .speaks_for(owner)
            .and_then(|at| self.sessions.get_mut(&at))
            .and_then(|s| s.turn.as_mut())
            .and_then(|t| t.round.as_mut());
        if let Some(round) = round {
            round.link_closed(id);
        }
    }

    /// The session the relay of `owner` speaks for: the one it was given
    /// to — or, for an agent that shares MCP servers across its sessions,
    /// the one of that process whose turn uses the editor's tools, whoever
    /// the relay was given to.
    fn speaks_for(&self, owner: RunId) -> Option<At> {
        let given = self
            .sessions
            .iter()
            .find(|(_, s)| s.tools == Some(owner))
            .map(|(at, _)| at.clone());
        let slot = given.as_ref().map(|at| at.slot).or_else(|| {
            let mut opening = self.pool.pending.values();
            opening.find_map(|(slot, p)| {
                let given = !matches!(p, Pending::Probe(_)) && p.owner() == Some(owner);
                given.then_some(*slot)
            })
        });
        slot.and_then(|slot| self.tools_turn_in(slot)).or(given)
    }

    /// For an agent that shares MCP servers across its sessions (by name,
    /// for its whole working directory, as opencode does): the session of
    /// `slot` whose turn uses the editor's tools, if one does. There is at
    /// most one (such turns go one at a time in a process), and every
    /// relay of the process speaks for it.
    pub(super) fn tools_turn_in(&self, slot: usize) -> Option<At> {
        if !self.plan.shared_servers {
            return None;
        }
        self.sessions
            .iter()
            .find(|(at, s)| at.slot == slot && s.turn.as_ref().is_some_and(|t| t.round.is_some()))
            .map(|(at, _)| at.clone())
    }

    /// Calls whose batch is due go to the editor; a turn the editor left
    /// parked past its wait is ended; a prompt held past its wait for the
    /// tools' listing goes.
    pub(super) fn tools_due(&mut self, now: Instant) {
        let Some(wait) = self.plan.tools.as_ref().map(|t| t.wait) else {
            return;
        };
        let mut ended = Vec::new();
        let mut release = Vec::new();
        for (at, session) in self.sessions.iter_mut() {
            let Some(turn) = session.turn.as_mut() else {
                continue;
            };
            if turn.held.as_ref().is_some_and(|(_, until)| *until <= now) {
                release.push((at.clone(), turn.held.take().map(|(t, _)| t)));
            }
            let due = turn.round.as_ref().and_then(Round::deadline);
            if turn.parked() && due.is_some_and(|d| d <= now) {
                tracing::info!("the editor did not send the tool results in time: turn ended");
                ended.push(at.clone());
            } else if turn.round.as_ref().is_some_and(|r| r.due(now)) {
                give(&mut self.ready, turn, later(now, wait));
            }
        }
        for (at, text) in release {
            if let Some(text) = text {
                self.send_prompt(&at, text);
            }
        }
        for at in ended {
            self.stop_turn(&at);
        }
    }

    /// A request whose history ends with the results a parked turn waits
    /// for, in that turn's conversation, goes to that turn: the agent's MCP
    /// calls are answered and what it does next is this request's answer.
    pub(super) fn resume_waiting(&mut self, invoke: &str, payload: &Value, now: Instant) -> bool {
        let Some(results) = Results::of(payload) else {
            return false;
        };
        let found = self.sessions.values_mut().find_map(|session| {
            let turn = session.turn.as_mut().filter(|t| t.parked())?;
            let round = turn.round.as_mut()?;
            let answers = results.answers(&round.given(), &round.offer.chat)?;
            round.offer.chat = results.chat.clone();
            let replies = round.answer(answers);
            Some((turn, replies))
        });
        let Some((turn, replies)) = found else {
            return false;
        };
        let said: usize = results.results.iter().map(|r| r.text.chars().count()).sum();
        turn.invoke = invoke.to_owned();
        turn.deadline = later(now, self.plan.timeout);
        turn.stream = Answer::new(tokens_for_chars(said as u64));
        for (link, line) in replies {
            self.relays.send(link, line);
        }
        true
    }

    /// A new request of a conversation (not the results) means the editor
    /// will not send the results a turn of that conversation waits for: it
    /// was edited, regenerated or went on without them. That turn ends.
    pub(super) fn end_waiting_in(&mut self, chat: &Chat) {
        let waiting: Vec<At> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                let round = s.turn.as_ref().and_then(|t| t.round.as_ref());
                round.is_some_and(|r| r.parked() && r.offer.chat.same_conversation(chat))
            })
            .map(|(at, _)| at.clone())
            .collect();
        for at in waiting {
            self.stop_turn(&at);
        }
    }
}

/// Whether a relay's line asks for the tools' listing.
fn lists_tools(line: &Line) -> bool {
    let Line::Text(text) = line else {
        return false;
    };
    serde_json::from_str::<Value>(text).is_ok_and(|v| v["method"] == "tools/list")
}

/// Gives the turn's pending calls to its editor: the answer ends with
/// them, and the turn is parked until the results come or `until`.
fn give(ready: &mut std::collections::VecDeque<String>, turn: &mut Turn, until: Instant) {
    let Some(round) = turn.round.as_mut() else {
        return;
    };
    let given = round.give(until);
    ready.push_back(turn.stream.calls(&turn.invoke, &given));
    ready.push_back(turn.stream.end(&turn.invoke, "tool_calls", None));
    // The conversation now holds calls and results an editor writes its
    // own way: it is not remembered for continuing.
    turn.answer = None;
}
