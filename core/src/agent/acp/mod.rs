//! `agent acp`: an agent that speaks the Agent Client Protocol, as a model,
//! kept warm.
//!
//! The agent process is started once and spoken to over its stdin and
//! stdout (JSON-RPC, a message a line). Each editor conversation is an ACP
//! session of its own: an editor sends the whole history every turn, the
//! agent keeps it, so a turn that continues a conversation this agent
//! answered sends only the new message (recognised by its history, as
//! `agent exec` recognises a CLI's session); any other opens a new session
//! with the history written out as its first prompt. Sessions are few and
//! cheap to forget: at most [`AcpPlan::max_sessions`], idle ones dropped
//! after [`AcpPlan::idle`], the least recently used idle one first when a
//! new one needs the room.
//!
//! Sans-IO like the exec agent, and driven by the same runtime loop
//! ([`ProcessAgent`]): provider frames, the process's stdout and its exit
//! come in; frames, writes to its stdin, spawns and kills go out. Every
//! invocation ends with exactly one final frame — or nothing after a
//! `cancel`, whose editor is gone.

mod auth;
mod models;
pub mod permission;
mod plan;
mod pool;
pub mod preset;
pub mod rpc;
mod session;
mod spare;
mod textual;
mod tools;
pub mod update;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::agent::echo::text_of;
use crate::agent::exec::conversation::Transcript;
use crate::agent::exec::link::{LinkId, LinkOutput};
use crate::agent::exec::prompt;
use crate::agent::exec::relays::Relays;
use crate::agent::exec::round::Round;
use crate::agent::exec::tool_search::Indexes;
use crate::agent::exec::tools::Offer;
use crate::agent::ledger::{error_frame, Answer, Waiting};
use crate::agent::process::{Action, Exit, ProcessAgent, RunId};
use crate::agent::quoted;
use crate::agent::relink::Relink;
use crate::agent::to_agent::{Invoke, ToAgent};
use crate::lines::Line;
use crate::mcp;
use crate::time::later;
use crate::tokens::estimate_tokens;
use models::Models;
use permission::Policy;
use pool::{At, Pool, Room, Running, Slot};
use rpc::{Failure, Incoming};
use textual::Scanner;
use update::{Shown, Shows};

pub use plan::{AcpPlan, EditorTools};
use session::{Pending, Request, Session, Tooled, Turn};

/// The ACP version spoken: the stable one.
pub const PROTOCOL_VERSION: u64 = 1;

/// The longest line the agent may send; a longer one ends the process.
pub const MAX_LINE: usize = 16 << 20;

/// The longest a session's first prompt waits for its agent to list the
/// editor's tools.
const LIST_WAIT: Duration = Duration::from_secs(5);
/// How long after listing the editor's tools an agent is given to take
/// them in before its first prompt: qwen-code offers its model only the
/// tools it registered by then, some time after their listing.
const LIST_SETTLE: Duration = Duration::from_millis(500);
/// How long the agent's first session is given to list the tools of the
/// MCP server it was handed, before the agent is taken to drop them.
const PROBE_WAIT: Duration = Duration::from_secs(15);

pub struct AcpAgent {
    plan: AcpPlan,
    relink: Relink,
    ready: VecDeque<String>,
    /// Its processes, and the requests sent to them.
    pool: Pool,
    sessions: HashMap<At, Session>,
    queue: Waiting<Request>,
    relays: Relays,
    /// The next owner number for a session's relay.
    next_tools: u64,
    /// The owners whose relay answered a `tools/list`, and when.
    listed: HashMap<RunId, Instant>,
    /// It registered, with the models it learned.
    registered: bool,
    /// The agent's model when none is asked for, when known.
    default_model: Option<String>,
    /// The editor's tools of the last new conversation given them over
    /// MCP: the spares are opened with them.
    spare_offer: Option<Offer>,
    /// Spare sessions are kept: not once the agent refused its first
    /// session or a spare.
    spares: bool,
    /// How fast new conversations take the spares.
    pace: spare::Pace,
    /// Whether an agent's session listed the tools of the MCP server it
    /// was given, once known.
    tools_reach: Option<bool>,
    /// The relay owner of the probe's session, and until when it may list
    /// its tools.
    probe: Option<(RunId, Instant)>,
    /// Permission questions waiting for the user ([`Policy::Ask`]).
    asks: permission::Asks,
    /// The indexes of the tool sets offered lately behind a search.
    indexes: Indexes,
}

impl AcpAgent {
    /// The agent is started at once (at `now`): it registers once its
    /// first session told its models, or it failed to start.
    pub fn new(plan: AcpPlan, agent_id: &str, now: Instant) -> Self {
        let relink = Relink::new(json!({
            "type": "register",
            "agent_id": agent_id,
            "label": format!("{} (agent acp)", plan.command.first().map_or("", String::as_str)),
            "models": [plan.model],
            "allowed_scopes": ["inference"],
        }));
        let queue = Waiting::new(plan.max_queued);
        let pool = Pool::new(&plan);
        let mut agent = AcpAgent {
            plan,
            ready: VecDeque::new(),
            relink,
            pool,
            sessions: HashMap::new(),
            queue,
            relays: Relays::default(),
            next_tools: 0,
            listed: HashMap::new(),
            registered: false,
            default_model: None,
            spare_offer: None,
            spares: true,
            pace: spare::Pace::default(),
            tools_reach: None,
            probe: None,
            asks: permission::Asks::default(),
            indexes: Indexes::default(),
        };
        agent.pool.start(0, now);
        agent
    }

    /// Agent processes started so far.
    pub fn starts(&self) -> u64 {
        self.pool.starts()
    }

    /// Agent processes running.
    pub fn processes(&self) -> usize {
        self.pool.processes()
    }

    /// Sessions open for conversations (spares aside).
    pub fn sessions(&self) -> usize {
        self.sessions.values().filter(|s| !s.spare).count()
    }

    fn program(&self) -> &str {
        self.plan
            .command
            .first()
            .map_or("the agent", String::as_str)
    }
    /// The request for an invocation.
    fn request(&mut self, invoke: &Invoke, now: Instant) -> Request {
        let payload = &invoke.payload;
        let model = invoke.model_meta.model.as_str();
        let offer = self.offer_of(payload);
        let textual = offer.is_some() && self.tools_as_text();
        let with_choice = |prompt: String| match offer.as_ref() {
            Some(offer) if textual => format!("{prompt}\n\n{}", textual::tools_text(offer)),
            Some(Offer {
                choice: Some(choice),
                ..
            }) => format!("{prompt}\n\n{choice}"),
            _ => prompt,
        };
        let mut request = Request {
            invoke: invoke.id.clone(),
            whole: with_choice(prompt::render(payload)),
            last: None,
            continues: None,
            transcript: None,
            deadline: later(now, self.plan.timeout),
            cancelled: false,
            offer: None,
            owner: None,
            model: None,
            effort: payload["parameters"]["reasoning_effort"]
                .as_str()
                .map(str::to_owned),
            textual,
            trace: invoke.trace(),
        };
        let messages = payload["messages"].as_array().map(Vec::as_slice);
        if let Some(messages) = messages.filter(|_| payload["kind"] == "chat") {
            request.transcript = Some(Transcript::of(messages));
            if let Some((last, earlier)) = messages.split_last() {
                if last["role"] == "user" && !earlier.is_empty() {
                    request.continues = Some(Transcript::of(earlier).key());
                    request.last = Some(with_choice(text_of(&last["content"])));
                }
            }
        }
        request.offer = offer;
        request.model = self.wanted_model(model);
        request
    }

    /// Whether the editor's tools go to the agent as text.
    fn tools_as_text(&self) -> bool {
        match self.plan.editor_tools {
            EditorTools::Auto => self.tools_reach == Some(false),
            EditorTools::Mcp => false,
            EditorTools::Text => true,
        }
    }

    /// An invocation: results a parked turn (or a session whose calls
    /// were made as text) waits for go to it; anything else is a new turn.
    fn invoked(&mut self, invoke: &Invoke, now: Instant) {
        if self.resume_waiting(&invoke.id, &invoke.payload, now) {
            return;
        }
        tracing::debug!("ACP agent: invocation {} came", invoke.id);
        let request = self.request(invoke, now);
        let Some(request) = self.resume_textual(request, &invoke.payload, now) else {
            return;
        };
        if let Some(offer) = &request.offer {
            self.end_waiting_in(&offer.chat);
        }
        self.dispatch(request, now);
    }

    /// A request is answered as soon as it can be: in the idle session
    /// holding its conversation, else in a new session once there is room;
    /// until then it waits.
    fn dispatch(&mut self, mut request: Request, now: Instant) {
        // A session continues with the editor's tools only if it was
        // opened with them (its MCP servers are fixed when it opens).
        let tools = request.offer.is_some() && !request.textual;
        let found = request.continues.and_then(|key| {
            self.sessions
                .iter()
                .find(|(_, s)| s.turn.is_none() && s.key == Some(key) && s.tools.is_some() == tools)
                .map(|(at, _)| at.clone())
        });
        if let (Some(at), Some(last)) = (found, request.last.clone()) {
            let shared = tools && self.tools_turn_in(at.slot).is_some();
            if shared || !self.pool.slots.get(at.slot).is_some_and(Slot::ready) {
                // Its process is starting again, or busy with another
                // turn using the editor's tools: the turn waits for it.
                return self.wait(request, Some(at.slot), now);
            }
            // A session kept from an agent process that ended is loaded
            // into this one first.
            let unloaded = self.sessions.get(&at).filter(|s| s.unloaded);
            if let Some(owner) = unloaded.map(|s| s.tools) {
                let mut params = self.session_params(owner);
                params["sessionId"] = json!(at.id);
                let slot = at.slot;
                let pending = Pending::Load {
                    session: at,
                    request: Box::new(request),
                };
                return self.pool.call(slot, "session/load", params, pending);
            }
            return self.prompt(at, request, last, now);
        }
        if let Some(at) = self.take_spare(&request, tools, now) {
            let text = request.whole.clone();
            return self.prompt(at, request, text, now);
        }
        if self.spares && self.registered {
            self.pace.came(None, now);
            let offer = request.offer.as_ref().filter(|_| tools);
            let free = |slot: usize| !tools || self.tools_turn_in(slot).is_none();
            if spare::coming(&self.pool.pending, offer, &free) {
                return self.wait(request, None, now);
            }
        }
        match self.room(tools, now) {
            Some(slot) => {
                let params = self.new_session(&mut request);
                self.pool.call(
                    slot,
                    "session/new",
                    params,
                    Pending::NewSession(Box::new(request)),
                );
            }
            None => self.wait(request, None, now),
        }
    }

    /// The slot whose process opens the next new session now (`None`:
    /// it waits), making room for it as [`pool::choose`] says: for one
    /// given the editor's `tools`, of an agent that shares MCP servers
    /// across its sessions, a process with no other turn using them.
    fn room(&mut self, tools: bool, now: Instant) -> Option<usize> {
        let busy = |slot: usize| tools && self.tools_turn_in(slot).is_some();
        match pool::choose(
            &self.pool.slots,
            &self.sessions,
            &self.pool.pending,
            &self.plan,
            &busy,
            now,
        ) {
            Room::Open(slot) => {
                self.reclaim_spare(slot);
                Some(slot)
            }
            Room::Evict(at) => {
                self.forget(&at);
                Some(at.slot)
            }
            Room::Start(slot) => {
                tracing::info!("ACP agent: every session is busy; another agent process starts");
                self.pool.start(slot, now);
                None
            }
            Room::Wait => None,
        }
    }

    /// Takes a spare session for the new conversation of `request`, if
    /// one was opened as its session would be (`tools`: it is given the
    /// editor's tools over MCP). The spares that follow are opened for
    /// its tools.
    fn take_spare(&mut self, request: &Request, tools: bool, now: Instant) -> Option<At> {
        let offer = request.offer.as_ref().filter(|_| tools);
        if offer.is_some() {
            self.spare_offer = offer.cloned();
        }
        // Not in a process being ended; an agent sharing MCP servers has
        // one turn using them a process.
        let ready = |at: &At| self.pool.slots.get(at.slot).is_some_and(Slot::ready);
        let free = |at: &At| ready(at) && (!tools || self.tools_turn_in(at.slot).is_none());
        let at = spare::pick(&self.sessions, offer, &free)?;
        if let Some(session) = self.sessions.get_mut(&at) {
            session.spare = false;
            self.pace.came(Some(session.last_used), now);
        }
        Some(at)
    }

    /// Makes room for one more session in `slot`'s process: its spare is
    /// forgotten if, with it, the process would hold more than its plan's
    /// sessions.
    fn reclaim_spare(&mut self, slot: usize) {
        if spare::used(&self.sessions, slot) < self.plan.max_sessions.saturating_sub(1) {
            return;
        }
        if let Some(at) = spare::spare_in(&self.sessions, slot) {
            self.forget(&at);
        }
    }

    /// Keeps a spare in each process, and a process started ahead when
    /// none has room for one, or only one while new conversations come
    /// fast ([`spare::needed`]): not before the agent's first session is
    /// answered, nor once spares were refused. While requests wait, no
    /// spare takes their room, but a process may start.
    fn keep_spares(&mut self, now: Instant) {
        if !self.spares || !self.registered {
            return;
        }
        let mut needed = spare::needed(
            &self.pool.slots,
            &self.sessions,
            &self.pool.pending,
            &self.plan,
            self.spare_offer.as_ref(),
            self.pace.hurried(now),
            now,
        );
        if !self.queue.is_empty() {
            (needed.stale, needed.open) = (Vec::new(), Vec::new());
        }
        // An agent sharing MCP servers takes them from the session it
        // opened last: a spare given them is not opened while a turn of
        // its process calls them.
        if self.spare_offer.is_some() {
            needed
                .open
                .retain(|&slot| self.tools_turn_in(slot).is_none());
        }
        for at in needed.stale {
            self.forget(&at);
        }
        for slot in needed.open {
            // Given a relay of its own listing the tools of the last
            // conversation given them, if any.
            let tooled = self.spare_offer.clone().map(|offer| {
                let owner = RunId(self.next_tools);
                self.next_tools += 1;
                Box::new(Tooled { owner, offer })
            });
            let params = self.session_params(tooled.as_ref().map(|t| t.owner));
            let pending = Pending::Spare { tooled, sent: now };
            self.pool.call(slot, "session/new", params, pending);
        }
        if let Some(slot) = needed.start {
            tracing::info!(
                "ACP agent: no agent process has room for a spare session; another starts"
            );
            self.pool.start(slot, now);
        }
    }

    /// A spare's `session/new` answered: it waits for the next new
    /// conversation. Once one is refused (or named as a session already
    /// open), new conversations open their sessions as they come.
    fn spare_opened(
        &mut self,
        slot: usize,
        tooled: Option<Box<Tooled>>,
        result: Result<Value, Failure>,
        now: Instant,
    ) {
        let opened = result.ok().and_then(|result| {
            let id = result["sessionId"].as_str()?.to_owned();
            Some((At { slot, id }, Models::of(&result)))
        });
        let owner = tooled.as_ref().map(|t| t.owner);
        match opened.filter(|(at, _)| self.take_id(at)) {
            Some((at, models)) => {
                let mut session = Session::new(now, owner);
                session.spare = true;
                session.offer = tooled.map(|t| t.offer);
                session.know(models);
                self.sessions.insert(at, session);
            }
            None => {
                tracing::info!("ACP agent: a spare session was refused; no more are opened");
                if let Some(owner) = owner {
                    self.relays.close_all_of(owner);
                    self.listed.remove(&owner);
                }
                self.spares = false;
            }
        }
        self.drain_queue(now);
    }

    /// Forgets a session, closing its relay's connections; false when
    /// there was none.
    fn forget(&mut self, at: &At) -> bool {
        let Some(session) = self.sessions.remove(at) else {
            return false;
        };
        if let Some(owner) = session.tools {
            self.relays.close_all_of(owner);
            self.listed.remove(&owner);
        }
        true
    }

    /// Queues a request that cannot go yet (refused as busy past the
    /// queue's bound), starting the process it waits for (`slot`, else
    /// any) if none is up and it may start.
    fn wait(&mut self, request: Request, slot: Option<usize>, now: Instant) {
        let sessions = self.sessions.len();
        let busy = |waiting| format!("{sessions} sessions are busy and {waiting} requests waiting");
        if !self.queue.push(request, busy, &mut self.ready) {
            return;
        }
        let slot = slot.unwrap_or_else(|| {
            let up = self.pool.slots.iter().position(|s| s.process.is_some());
            up.unwrap_or(0)
        });
        let down = self
            .pool
            .slots
            .get(slot)
            .is_none_or(|s| s.process.is_none() && s.retry_at.is_none_or(|at| at <= now));
        if down {
            self.pool.start(slot, now);
        }
    }

    /// Sends a turn's prompt to its session: held, in a session given the
    /// editor's tools, until its agent listed them (or for a while).
    fn prompt(&mut self, at: At, mut request: Request, text: String, now: Instant) {
        let Some(session) = self.sessions.get_mut(&at) else {
            return;
        };
        let until = session.tools.map(|owner| match self.listed.get(&owner) {
            Some(&listed) => listed + LIST_SETTLE,
            None => now + LIST_WAIT,
        });
        let held = until.filter(|&t| t > now).map(|t| (text.clone(), t));
        let mut answer = request.transcript;
        if let Some(t) = answer.as_mut() {
            t.open("assistant");
        }
        session.key = None;
        session.last_used = now;
        if let Some(offer) = request.offer.as_mut() {
            offer.keep_found(session.offer.as_ref());
        }
        session.offer.clone_from(&request.offer);
        // Offered over MCP, the calls come in a round; as text, from the
        // answer's text.
        let (round, textual) = match request.offer {
            Some(offer) if request.textual => (None, Some((offer, Scanner::default()))),
            offer => (offer.map(Round::new), None),
        };
        session.turn = Some(Turn {
            invoke: request.invoke,
            deadline: request.deadline,
            stream: Answer::new(estimate_tokens(&text)),
            answer,
            shows: Shows::new(self.plan.show_tools),
            round,
            held: None,
            model: request.model,
            effort: request.effort,
            textual,
            context: None,
            trace: request.trace,
        });
        match held {
            Some(held) => {
                if let Some(turn) = session.turn.as_mut() {
                    turn.held = Some(held);
                }
            }
            None => self.send_prompt(&at, text),
        }
    }

    /// Sends the prompt, once the session is on the turn's model.
    fn send_prompt(&mut self, at: &At, text: String) {
        let Some(text) = self.settle(at, text) else {
            return;
        };
        let mut params = json!({"sessionId": at.id, "prompt": [{"type": "text", "text": text}]});
        // The trace context goes in `_meta`, where ACP lets a request carry
        // what the protocol does not define.
        let trace = self
            .sessions
            .get(at)
            .and_then(|s| s.turn.as_ref()?.trace.as_ref());
        if let Some(trace) = trace {
            let mut meta = serde_json::Map::new();
            trace.put_in_meta(&mut meta);
            params["_meta"] = Value::Object(meta);
        }
        self.pool.call(
            at.slot,
            "session/prompt",
            params,
            Pending::Prompt(at.clone()),
        );
    }

    /// Sends what waits and can now go, in order.
    fn drain_queue(&mut self, now: Instant) {
        for request in self.queue.take() {
            self.dispatch(request, now);
        }
    }

    /// A line from the process of `slot`.
    fn handle_line(&mut self, slot: usize, line: Line, now: Instant) {
        let text = match line {
            Line::Text(text) => text,
            Line::TooLong => {
                let mib = MAX_LINE >> 20;
                return self
                    .pool
                    .end(slot, format!("it sent a line longer than {mib} MiB"));
            }
        };
        match rpc::parse(&text) {
            Incoming::Response { id, result } => self.answered(slot, id, result, now),
            Incoming::Request { id, method, params } => {
                if method == "session/request_permission"
                    && self.ask_the_user(slot, &id, &params, now)
                {
                    return;
                }
                let line = match method.as_str() {
                    "session/request_permission" => {
                        let editors = self.asks_for_editor_tool(slot, &params);
                        let answer = permission::answer(self.plan.policy, &params, editors);
                        tracing::debug!(
                            "ACP agent asked permission for {}: {}",
                            params["toolCall"],
                            answer["outcome"]
                        );
                        mcp::result(&id, answer)
                    }
                    _ => mcp::error(
                        &id,
                        mcp::METHOD_NOT_FOUND,
                        &format!("{} is not offered by this client", quoted(&method)),
                        None,
                    ),
                };
                self.pool.write(slot, line);
            }
            Incoming::Notification { method, params } if method == "session/update" => {
                self.updated(slot, &params);
            }
            Incoming::Notification { .. } => {}
            Incoming::Invalid => tracing::debug!("ACP agent: a line that is not JSON-RPC skipped"),
        }
    }

    /// A `session/update` from the process of `slot`: shown to the editor
    /// of the session's turn.
    fn updated(&mut self, slot: usize, params: &Value) {
        let Some(turn) = params["sessionId"]
            .as_str()
            .and_then(|id| {
                self.sessions.get_mut(&At {
                    slot,
                    id: id.to_owned(),
                })
            })
            .and_then(|s| s.turn.as_mut())
            .filter(|t| !t.parked())
        else {
            return;
        };
        if let Some(used) = update::context_used(&params["update"]) {
            turn.context = Some(used);
            return;
        }
        let shown = match (turn.shows.of(&params["update"]), turn.textual.as_mut()) {
            (Some(Shown::Text(text)), Some((offer, scanner))) => {
                Some(Shown::Text(scanner.push(offer, &text)))
            }
            (shown, _) => shown,
        };
        let first = !turn.stream.begun();
        let chunk = match shown {
            Some(Shown::Text(text)) if text.is_empty() => return,
            Some(Shown::Text(text)) => {
                if let Some(t) = turn.answer.as_mut() {
                    t.text(&text);
                }
                turn.stream.text(&turn.invoke, &text)
            }
            Some(Shown::Reasoning(text)) => {
                let delta = json!({"reasoning_content": text});
                turn.stream.chunk(&turn.invoke, delta, None, None)
            }
            None => return,
        };
        if first {
            tracing::debug!("ACP agent: the first words of {} came", turn.invoke);
        }
        self.ready.push_back(chunk);
    }

    /// The process of `slot` answered our request `id` (an answer to a
    /// request it was not sent is let be).
    fn answered(&mut self, slot: usize, id: u64, result: Result<Value, Failure>, now: Instant) {
        tracing::debug!("ACP agent answered request {id}: ok {}", result.is_ok());
        if self.pool.pending.get(&id).is_none_or(|(s, _)| *s != slot) {
            return;
        }
        let Some((_, pending)) = self.pool.pending.remove(&id) else {
            return;
        };
        match pending {
            Pending::Initialize => self.initialized(slot, result, now),
            Pending::Models => self.first_session_opened(slot, result, now),
            Pending::Probe(owner) => self.probing(owner, result.is_ok(), now),
            Pending::Authenticate(request) => self.authenticated(slot, request, result, now),
            Pending::Load { session, request } => {
                self.loaded(&session, *request, result.is_ok(), now)
            }
            Pending::Set {
                session,
                setting,
                text,
            } => self.set(&session, setting, text, result, now),
            Pending::NewSession(request) => self.opened(slot, *request, result, now),
            Pending::Spare { tooled, sent } => {
                self.pace.opened(sent, now);
                self.spare_opened(slot, tooled, result, now);
            }
            Pending::Prompt(session) => self.prompted(&session, result, now),
        }
    }

    /// `authenticate` answered.
    fn authenticated(
        &mut self,
        slot: usize,
        request: Option<Box<Request>>,
        result: Result<Value, Failure>,
        now: Instant,
    ) {
        match (request, result) {
            (None, Ok(_)) => self.open_first_session(slot),
            (None, Err(_)) => {
                self.register(&[]);
                self.drain_queue(now);
            }
            (Some(request), Ok(_)) => {
                // Its relay's owner, if any, was given when it first asked.
                let params = self.session_params(request.owner);
                self.pool
                    .call(slot, "session/new", params, Pending::NewSession(request));
            }
            (Some(request), Err(failure)) => {
                if !request.cancelled {
                    let (message, kind) = self.refusal(&failure);
                    self.ready
                        .push_back(error_frame(&request.invoke, &message, kind));
                }
                self.drain_queue(now);
            }
        }
    }

    fn initialized(&mut self, slot: usize, result: Result<Value, Failure>, now: Instant) {
        let capabilities = result.as_ref().cloned().unwrap_or_default();
        let version = match result {
            Ok(result) => result["protocolVersion"].as_u64(),
            Err(failure) => {
                let why = format!("it refused `initialize`: {}", failure.message);
                return self.pool.end(slot, why);
            }
        };
        if version != Some(PROTOCOL_VERSION) {
            let said = version.map_or("no version".to_owned(), |v| format!("version {v}"));
            let why = format!(
                "it speaks ACP {said}, and this provider speaks version {PROTOCOL_VERSION}"
            );
            return self.pool.end(slot, why);
        }
        if let Some(process) = self
            .pool
            .slots
            .get_mut(slot)
            .and_then(|s| s.process.as_mut())
        {
            process.ready = true;
            process.loads = capabilities["agentCapabilities"]["loadSession"] == true;
            process.headless = auth::headless(&capabilities);
        }
        if !self.registered {
            self.open_first_session(slot);
        }
        self.drain_queue(now);
    }

    /// Opens the agent's first session, to learn its models.
    fn open_first_session(&mut self, slot: usize) {
        let params = json!({"cwd": self.plan.cwd, "mcpServers": []});
        self.pool.call(slot, "session/new", params, Pending::Models);
    }

    /// `session/new` answered by the process of `slot`: the turn that
    /// opened it goes on in it.
    fn opened(
        &mut self,
        slot: usize,
        request: Request,
        result: Result<Value, Failure>,
        now: Instant,
    ) {
        let (id, models) = match result {
            Ok(result) => (
                result["sessionId"].as_str().map(str::to_owned),
                Models::of(&result),
            ),
            Err(failure) if !request.cancelled => {
                if let Some(method) = self.pool.login_method(slot, &failure) {
                    return self.pool.authenticate(slot, method, Some(request));
                }
                let (message, kind) = self.refusal(&failure);
                self.ready
                    .push_back(error_frame(&request.invoke, &message, kind));
                return self.drain_queue(now);
            }
            Err(_) => return self.drain_queue(now),
        };
        let Some(id) = id else {
            let why = "it answered `session/new` without a session id";
            if !request.cancelled {
                let message = format!("`{}` failed: {why}", self.program());
                self.ready
                    .push_back(error_frame(&request.invoke, &message, "agent_failed"));
            }
            return self.pool.end(slot, why.into());
        };
        let at = At { slot, id };
        if !self.take_id(&at) {
            // The agent named a session it already has: the one it names
            // keeps its conversation, and this one gets none of it.
            if let Some(owner) = request.owner {
                self.relays.close_all_of(owner);
            }
            tracing::warn!(
                "ACP agent: `session/new` answered with the id of a session already open"
            );
            if !request.cancelled {
                let message = format!(
                    "`{}` answered `session/new` with the id of a session already open",
                    self.program()
                );
                self.ready
                    .push_back(error_frame(&request.invoke, &message, "agent_failed"));
            }
            return self.drain_queue(now);
        }
        let mut session = Session::new(now, request.owner);
        session.know(models);
        self.sessions.insert(at.clone(), session);
        if request.cancelled {
            return self.drain_queue(now);
        }
        let text = request.whole.clone();
        self.prompt(at, request, text, now);
        // The next session may open.
        self.drain_queue(now);
    }

    /// Whether a new session may take the id `at`: one no session of that
    /// process holds. A session kept from a process that ended holds it no
    /// longer (its agent is gone; this one numbers its sessions anew): it
    /// is forgotten, its conversation opening a session of its own next
    /// time.
    fn take_id(&mut self, at: &At) -> bool {
        match self.sessions.get(at) {
            None => true,
            Some(session) if session.unloaded => self.forget(at),
            Some(_) => false,
        }
    }

    /// `session/load` answered (the history it replayed went to no turn):
    /// the turn goes on in the session, or, when the agent could not load
    /// it, in a new one with the whole conversation.
    fn loaded(&mut self, at: &At, mut request: Request, loaded: bool, now: Instant) {
        let last = request.last.clone().filter(|_| loaded);
        match (self.sessions.get_mut(at), last) {
            (Some(session), Some(last)) => {
                session.unloaded = false;
                self.prompt(at.clone(), request, last, now);
            }
            _ => {
                tracing::info!(
                    "ACP agent: a session could not be loaded; a new one takes its turn"
                );
                self.forget(at);
                request.continues = None;
                self.dispatch(request, now);
            }
        }
    }

    /// What an editor is told of a refused `session/new`.
    fn refusal(&self, failure: &Failure) -> (String, &'static str) {
        let program = self.program();
        match (&self.plan.login, auth::needs_login(failure)) {
            (Some(login), true) => (
                format!(
                    "`{program}` needs a login ({}): run `{login}` once, as the user the provider runs as",
                    failure.message
                ),
                "agent_login",
            ),
            _ => (
                format!("`{program}` refused a new session: {}", failure.message),
                "agent_failed",
            ),
        }
    }

    /// `session/prompt` answered: the turn ends, and its session is idle,
    /// holding the conversation with this answer.
    fn prompted(&mut self, at: &At, result: Result<Value, Failure>, now: Instant) {
        // A question its agent stopped waiting for goes with the turn.
        self.end_asks(at);
        let Some(session) = self.sessions.get_mut(at) else {
            return;
        };
        let Some(mut turn) = session.turn.take() else {
            return;
        };
        session.last_used = now;
        match result {
            // The editor has its answer already: the calls it was given.
            Ok(_) if turn.parked() => {}
            Ok(result) => {
                let stop = result["stopReason"].as_str().unwrap_or("end_turn");
                let Some(finish) = update::finish_reason(stop) else {
                    // Cancelled, and not by us: the editor still waits.
                    let message = format!("`{}` cancelled the turn itself", self.program());
                    self.ready
                        .push_back(error_frame(&turn.invoke, &message, "agent_failed"));
                    self.forget(at);
                    return self.drain_queue(now);
                };
                let calls = textual::ended(
                    &mut turn,
                    &mut self.ready,
                    &mut self.next_tools,
                    self.plan.tools.as_ref(),
                );
                let finish = if calls.is_some() {
                    "tool_calls"
                } else {
                    finish
                };
                let usage = update::turn_usage(&result, turn.context, turn.stream.estimated());
                let last = turn.stream.end(&turn.invoke, finish, Some(usage));
                self.ready.push_back(last);
                session.awaiting = calls;
                if stop == "end_turn" && session.awaiting.is_none() {
                    session.key = turn.answer.map(Transcript::close);
                }
            }
            Err(failure) => {
                let message = format!("`{}` failed the turn: {}", self.program(), failure.message);
                self.ready
                    .push_back(error_frame(&turn.invoke, &message, "agent_failed"));
                self.forget(at);
            }
        }
        self.drain_queue(now);
    }

    /// Stops a session's turn: the agent is told to cancel, and the session
    /// is forgotten (an agent's cancelled session is not reliably reusable).
    fn stop_turn(&mut self, at: &At) {
        self.forget(at);
        self.pool.write(
            at.slot,
            mcp::notification("session/cancel", json!({"sessionId": at.id})),
        );
        self.end_asks(at);
    }

    /// The session whose turn answers `invoke`, if one does.
    fn session_of(&self, invoke: &str) -> Option<At> {
        self.sessions
            .iter()
            .find(|(_, s)| {
                s.turn
                    .as_ref()
                    .is_some_and(|t| t.invoke == invoke && !t.parked())
            })
            .map(|(at, _)| at.clone())
    }

    fn cancel(&mut self, invoke: &str, now: Instant) {
        self.queue.cancel(invoke);
        for (_, pending) in self.pool.pending.values_mut() {
            if let Some(request) = pending.request() {
                if request.invoke == invoke {
                    request.cancelled = true;
                }
            }
        }
        if let Some(at) = self.session_of(invoke) {
            self.stop_turn(&at);
            self.drain_queue(now);
        }
    }

    /// The process of `slot` ended: what it had fails, and it is started
    /// again when something waits ([`Pool::ended`]). A process that never
    /// got ready, with no other running, fails what waits too: its editors
    /// hear why now, not at their timeout. One retired for want of work
    /// had nothing, and is not started again.
    fn ended(&mut self, slot: usize, process: Running, exit: &Exit, now: Instant) {
        if process.retired {
            // Its spare goes with it.
            if let Some(at) = spare::spare_in(&self.sessions, slot) {
                self.forget(&at);
            }
            return;
        }
        let why = self.why_ended(&process, exit);
        self.end_all_asks(slot);
        for mut pending in self.pool.ended(slot, &process, now) {
            if let Some(request) = pending.request().filter(|r| !r.cancelled) {
                self.ready
                    .push_back(error_frame(&request.invoke, &why, "agent_failed"));
            }
        }
        self.sessions_ended(slot, process.loads, &why);
        // It registers even so: an editor asking is then told why.
        self.register(&[]);
        let others = self.pool.slots.iter().any(|s| s.ready() || s.starting());
        if !process.ready && !others {
            for request in self.queue.take() {
                self.ready
                    .push_back(error_frame(&request.invoke, &why, "agent_failed"));
            }
        }
        self.drain_queue(now);
    }

    /// What an editor is told of a process that ended.
    fn why_ended(&self, process: &Running, exit: &Exit) -> String {
        let program = self.program();
        match (&process.fault, exit) {
            (Some(fault), _) => format!("`{program}` was ended: {fault}"),
            (None, Exit::NotStarted(why)) => format!("could not start `{program}`: {why}"),
            (None, Exit::Exited { code, stderr }) => {
                let status = code.map_or("was killed by a signal".to_owned(), |c| {
                    format!("exited with status {c}")
                });
                match stderr.trim() {
                    "" => format!("`{program}` {status}"),
                    said => format!("`{program}` {status}: {said}"),
                }
            }
        }
    }

    /// The sessions of the process of `slot`, which ended for `why`: an
    /// idle conversation's is kept for the next process to load, when
    /// this one could (`loads`); the rest are gone with it, their turns
    /// failed.
    fn sessions_ended(&mut self, slot: usize, loads: bool, why: &str) {
        let kept = |s: &Session| loads && s.turn.is_none() && s.key.is_some();
        let its: Vec<At> = self
            .sessions
            .keys()
            .filter(|at| at.slot == slot)
            .cloned()
            .collect();
        for at in its {
            let Some(mut session) = self.sessions.remove(&at) else {
                continue;
            };
            if let Some(owner) = session.tools {
                self.relays.close_all_of(owner);
                self.listed.remove(&owner);
            }
            if kept(&session) {
                session.unloaded = true;
                self.sessions.insert(at, session);
            } else if let Some(turn) = session.turn.filter(|t| !t.parked()) {
                self.ready
                    .push_back(error_frame(&turn.invoke, why, "agent_failed"));
            }
        }
    }

    /// Turns past their deadline fail as timed out (`message`), and are
    /// stopped.
    fn time_out_turns(&mut self, message: &str, now: Instant) {
        let late: Vec<(At, String)> = self
            .sessions
            .iter()
            .filter_map(|(at, s)| {
                let turn = s
                    .turn
                    .as_ref()
                    .filter(|t| !t.parked() && t.deadline <= now)?;
                Some((at.clone(), turn.invoke.clone()))
            })
            .collect();
        for (at, invoke) in late {
            self.ready
                .push_back(error_frame(&invoke, message, "timeout"));
            self.stop_turn(&at);
        }
    }

    /// Idle sessions past their time are forgotten.
    fn forget_idle(&mut self, now: Instant) {
        let idle = self.plan.idle;
        let gone: Vec<At> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.spare && s.turn.is_none() && later(s.last_used, idle) <= now)
            .map(|(at, _)| at.clone())
            .collect();
        for at in gone {
            self.forget(&at);
        }
    }

    /// Bytes from the stdout of the process `run`: its lines, while it
    /// lives.
    fn read_stdout(&mut self, run: RunId, bytes: &[u8], now: Instant) {
        let Some(slot) = self.pool.slot_of(run) else {
            return;
        };
        let live = |slots: &[Slot]| {
            let process = slots.get(slot).and_then(|s| s.process.as_ref());
            process.is_some_and(|p| p.run == run && p.fault.is_none())
        };
        if !live(&self.pool.slots) {
            return;
        }
        let process = self
            .pool
            .slots
            .get_mut(slot)
            .and_then(|s| s.process.as_mut());
        let lines = process.map(|p| p.lines.push(bytes)).unwrap_or_default();
        for line in lines {
            self.handle_line(slot, line, now);
            if !live(&self.pool.slots) {
                return;
            }
        }
    }
}

impl ProcessAgent for AcpAgent {
    fn handle_message(&mut self, text: &str, now: Instant) {
        let Some(message) = self.relink.read(text, &mut self.ready) else {
            return;
        };
        match message {
            ToAgent::ModelInvoke(invoke) => self.invoked(&invoke, now),
            ToAgent::Cancel { id } => self.cancel(&id, now),
            ToAgent::PermissionDecision { id, allow, .. } => self.permission_decided(&id, allow),
            // Its agent's updates come as it sends them (an answer whose
            // editor falls behind is held by the provider).
            _ => {}
        }
        self.keep_spares(now);
    }

    /// The provider failed every request it had sent: their turns are
    /// cancelled and what waits is dropped. The processes and their idle
    /// sessions stay, for conversations that go on over the next link.
    fn link_lost(&mut self) {
        self.queue.take();
        for (_, pending) in self.pool.pending.values_mut() {
            if let Some(request) = pending.request() {
                request.cancelled = true;
            }
        }
        let busy: Vec<At> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.turn.is_some())
            .map(|(at, _)| at.clone())
            .collect();
        for at in busy {
            self.stop_turn(&at);
        }
        self.ready.clear();
        if self.registered {
            self.ready.push_back(self.relink.register());
        }
    }

    fn handle_stdout(&mut self, run: RunId, bytes: &[u8], now: Instant) {
        self.read_stdout(run, bytes, now);
        self.keep_spares(now);
    }

    fn handle_exit(&mut self, run: RunId, exit: Exit, now: Instant) {
        let Some(slot) = self.pool.slot_of(run) else {
            return;
        };
        if let Some(process) = self.pool.slots.get_mut(slot).and_then(|s| s.process.take()) {
            self.ended(slot, process, &exit, now);
        }
        self.keep_spares(now);
    }

    /// Turns and waiting requests past their deadline fail as timed out;
    /// an agent that did not answer `initialize` in time is ended; idle
    /// sessions past their time are forgotten, and processes left with
    /// none ended; an agent waiting out its backoff is started again when
    /// something waits.
    fn handle_timeout(&mut self, now: Instant) {
        let secs = self.plan.timeout.as_secs();
        let message = format!("the agent did not answer within {secs} s");
        self.time_out_turns(&message, now);
        self.queue.expire(now, &message, &mut self.ready);
        self.forget_idle(now);
        // Processes are kept while new conversations come fast.
        let busy = !self.queue.is_empty() || self.pace.hurried(now);
        self.pool.retire_idle(&self.sessions, &self.plan, busy);
        if self.probe.is_some_and(|(_, due)| due <= now) {
            self.tools_reached(false);
        }
        self.tools_due(now);
        self.asks_due(now);
        self.pool.handle_timeout(!self.queue.is_empty(), now);
        self.drain_queue(now);
        self.keep_spares(now);
    }

    fn handle_link(&mut self, id: LinkId, bytes: &[u8], now: Instant) {
        self.relay_input(id, bytes, now);
    }

    fn handle_link_closed(&mut self, id: LinkId) {
        self.relay_closed(id);
    }

    fn poll_transmit(&mut self) -> Option<String> {
        self.ready.pop_front()
    }

    fn poll_action(&mut self) -> Option<Action> {
        self.pool.poll_action()
    }

    fn poll_link(&mut self) -> Option<LinkOutput> {
        self.relays.poll()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.plan.idle;
        let sessions = self.sessions.values().flat_map(|s| match &s.turn {
            Some(turn) => tools::due(turn),
            None if s.spare => vec![],
            None => vec![later(s.last_used, idle)],
        });
        sessions
            .chain(self.queue.deadlines())
            .chain(self.relays.due())
            .chain(self.asks.due())
            .chain(self.pool.poll_timeout(!self.queue.is_empty()))
            .chain(self.probe.map(|(_, due)| due))
            .min()
    }
}

#[cfg(test)]
mod tests;
