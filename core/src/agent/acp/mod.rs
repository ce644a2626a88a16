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

mod models;
pub mod permission;
pub mod preset;
pub mod rpc;
mod tools;
pub mod update;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::agent::echo::text_of;
use crate::agent::exec::conversation::{Key, Transcript};
use crate::agent::exec::error_frame;
use crate::agent::exec::link::{LinkId, LinkOutput};
use crate::agent::exec::prompt;
use crate::agent::exec::relays::Relays;
use crate::agent::exec::round::Round;
use crate::agent::exec::tools::Offer;
use crate::agent::exec::ToolLink;
use crate::agent::process::{read_frame, Action, Exit, Frame, ProcessAgent, RunId, Stdin};
use crate::agent::relink::Relink;
use crate::lines::{Line, LineBuffer};
use crate::mcp;
use crate::tokens::{estimate_tokens, tokens_for_chars};
use models::{Effort, Models, Setting};
use permission::Policy;
use rpc::{Failure, Incoming};
use update::{Shown, Shows};

/// The ACP version spoken: the stable one.
pub const PROTOCOL_VERSION: u64 = 1;

/// The longest line the agent may send; a longer one ends the process.
pub const MAX_LINE: usize = 16 << 20;

/// The wait before restarting an agent that ended early, doubled each time
/// it does so again, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An agent that ran this long before it ended is restarted at once.
const STABLE: Duration = Duration::from_secs(10);
/// The longest a session's first prompt waits for its agent to list the
/// editor's tools.
const LIST_WAIT: Duration = Duration::from_secs(5);
/// How long after listing the editor's tools an agent is given to take
/// them in before its first prompt: qwen-code offers its model only the
/// tools it registered by then, some time after their listing.
const LIST_SETTLE: Duration = Duration::from_millis(500);

/// What to run, and the limits to run it in.
#[derive(Debug, Clone)]
pub struct AcpPlan {
    /// The model name editors ask for.
    pub model: String,
    /// The agent's command line.
    pub command: Vec<String>,
    /// Variables set for it, beside the inherited ones.
    pub env: Vec<(String, String)>,
    /// The directory its sessions work in (absolute, as ACP wants).
    pub cwd: String,
    /// The longest a turn may take, waiting for the agent included.
    pub timeout: Duration,
    /// The longest the agent may take to answer `initialize`.
    pub start_timeout: Duration,
    /// Sessions at once.
    pub max_sessions: usize,
    /// How long an idle session is kept.
    pub idle: Duration,
    /// Requests waiting for the agent or a session; more are refused.
    pub max_queued: usize,
    /// Which of its own tools the agent may run.
    pub policy: Policy,
    /// Show the agent's own tool calls and plan as reasoning.
    pub show_tools: bool,
    /// What logs the agent in, when known: said to an editor whose turn
    /// the agent refused for want of a login.
    pub login: Option<String>,
    /// How sessions reach the editor's tools; without it a request's
    /// tools are not offered.
    pub tools: Option<ToolLink>,
    /// The `_meta` of a `session/new` that turns the agent's own tools off
    /// (for an agent that can), sent when the session gets the editor's
    /// tools and the agent may not run its own anyway.
    pub own_tools_off: Option<Value>,
}

/// A request for a turn.
struct Request {
    invoke: String,
    /// The whole conversation as one prompt, for a new session.
    whole: String,
    /// The new message alone, when the turn may continue a session.
    last: Option<String>,
    /// The key of the messages before the new one: the session it
    /// continues, if one is idle under it.
    continues: Option<Key>,
    /// The messages, hashed: with the answer, the key a continuation will
    /// look for.
    transcript: Option<Transcript>,
    deadline: Instant,
    /// The editor left while the session was being opened.
    cancelled: bool,
    /// The editor's tools, when the session is given them.
    offer: Option<Offer>,
    /// Whose secret the session's relay says, once its `session/new` went.
    owner: Option<RunId>,
    /// The model it asks for, as the agent names it.
    model: Option<String>,
    /// The reasoning effort it asks for.
    effort: Option<String>,
}

/// A turn being answered.
struct Turn {
    invoke: String,
    deadline: Instant,
    /// The next chunk's index.
    index: u64,
    /// The conversation with the answer so far, for remembering it.
    answer: Option<Transcript>,
    prompt_tokens: u64,
    /// Characters of text sent, for a usage estimate.
    completion_chars: u64,
    shows: Shows,
    /// Its calls of the editor's tools, when it was given them.
    round: Option<Round>,
    /// The prompt, held until the agent has listed the editor's tools and
    /// taken them in (an agent may take its first prompt before it has),
    /// and until when.
    held: Option<(String, Instant)>,
    /// The model it wants its session on.
    model: Option<String>,
    /// The reasoning effort it wants.
    effort: Option<String>,
}

impl Turn {
    /// Whether the turn waits for the editor's results: its request was
    /// answered, and what the agent says belongs to no one until they come.
    fn parked(&self) -> bool {
        self.round.as_ref().is_some_and(Round::parked)
    }
}

/// An ACP session.
struct Session {
    /// The conversation it holds, when idle and continuable.
    key: Option<Key>,
    turn: Option<Turn>,
    last_used: Instant,
    /// The owner its relay says the secret of, when it was given the
    /// editor's tools.
    tools: Option<RunId>,
    /// The tools its last turn offered, listed between turns.
    offer: Option<Offer>,
    /// Opened when the agent started, and not used yet: the next new
    /// conversation without tools takes it.
    fresh: bool,
    /// Its model, as the agent names it, when known.
    model: Option<String>,
    /// The config option that sets its model, when the agent has one.
    model_option: Option<String>,
    /// Its reasoning effort option, when it has one.
    effort: Option<Effort>,
    /// Kept from an agent process that ended: to be loaded into the new
    /// one before its next turn.
    unloaded: bool,
}

impl Session {
    fn new(now: Instant, tools: Option<RunId>) -> Self {
        Session {
            key: None,
            turn: None,
            last_used: now,
            tools,
            offer: None,
            fresh: false,
            model: None,
            model_option: None,
            effort: None,
            unloaded: false,
        }
    }

    /// What its `session/new` answer said of its models and effort.
    fn know(&mut self, models: Models) {
        self.model = models.current;
        self.model_option = models.option;
        self.effort = models.effort;
    }
}

/// What an answer from the agent is for.
enum Pending {
    Initialize,
    /// The first session of a started agent, opened to learn its models.
    Probe,
    /// A session kept from an agent process that ended, loaded into the
    /// new one for `request`.
    Load {
        session: String,
        request: Box<Request>,
    },
    /// A setting of the session, before the prompt `text`.
    Set {
        session: String,
        setting: Setting,
        text: String,
    },
    NewSession(Box<Request>),
    /// The turn of this session.
    Prompt(String),
}

/// The agent process.
struct Running {
    run: RunId,
    lines: LineBuffer,
    started: Instant,
    /// It answered `initialize`.
    ready: bool,
    /// It can load a session it had (`loadSession`).
    loads: bool,
    /// Why it is being ended, when it is.
    fault: Option<String>,
}

pub struct AcpAgent {
    plan: AcpPlan,
    relink: Relink,
    ready: VecDeque<String>,
    actions: VecDeque<Action>,
    process: Option<Running>,
    next_run: u64,
    /// When to start the process again, after it ended early.
    retry_at: Option<Instant>,
    backoff: Duration,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    sessions: HashMap<String, Session>,
    queue: VecDeque<Request>,
    /// Processes started, for observing.
    starts: u64,
    relays: Relays,
    /// The next owner number for a session's relay.
    next_tools: u64,
    /// The owners whose relay answered a `tools/list`, and when.
    listed: HashMap<RunId, Instant>,
    /// It registered, with the models it learned.
    probed: bool,
    /// The agent's model when none is asked for, when known.
    default_model: Option<String>,
    /// Permission questions waiting for the user ([`Policy::Ask`]).
    asks: permission::Asks,
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
        let mut agent = AcpAgent {
            plan,
            ready: VecDeque::new(),
            relink,
            actions: VecDeque::new(),
            process: None,
            next_run: 0,
            retry_at: None,
            backoff: FIRST_BACKOFF,
            next_id: 0,
            pending: HashMap::new(),
            sessions: HashMap::new(),
            queue: VecDeque::new(),
            starts: 0,
            relays: Relays::default(),
            next_tools: 0,
            listed: HashMap::new(),
            probed: false,
            default_model: None,
            asks: permission::Asks::default(),
        };
        agent.start(now);
        agent
    }

    /// Agent processes started so far.
    pub fn starts(&self) -> u64 {
        self.starts
    }

    /// Sessions open.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    fn program(&self) -> &str {
        self.plan
            .command
            .first()
            .map_or("the agent", String::as_str)
    }

    /// The request for an invocation.
    fn request(&self, invoke: String, msg: &Value, now: Instant) -> Request {
        let payload = &msg["payload"];
        let model = msg["model_meta"]["model"].as_str().unwrap_or_default();
        let offer = Offer::of(payload).filter(|_| self.plan.tools.is_some());
        let with_choice = |prompt: String| match offer.as_ref().and_then(|o| o.choice.as_ref()) {
            Some(choice) => format!("{prompt}\n\n{choice}"),
            None => prompt,
        };
        let mut request = Request {
            invoke,
            whole: with_choice(prompt::render(payload)),
            last: None,
            continues: None,
            transcript: None,
            deadline: now + self.plan.timeout,
            cancelled: false,
            offer: None,
            owner: None,
            model: None,
            effort: payload["parameters"]["reasoning_effort"]
                .as_str()
                .map(str::to_owned),
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

    /// Sends a request to the agent.
    fn call(&mut self, method: &str, params: Value, pending: Pending) {
        let Some(run) = self.process.as_ref().map(|p| p.run) else {
            return;
        };
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, pending);
        self.actions.push_back(Action::Write {
            run,
            line: rpc::request(id, method, params),
        });
    }

    fn write(&mut self, line: String) {
        if let Some(run) = self.process.as_ref().map(|p| p.run) {
            self.actions.push_back(Action::Write { run, line });
        }
    }

    /// Starts the agent process, and says `initialize` to it.
    fn start(&mut self, now: Instant) {
        let run = RunId(self.next_run);
        self.next_run += 1;
        self.starts += 1;
        self.retry_at = None;
        self.actions.push_back(Action::Spawn {
            run,
            argv: self.plan.command.clone(),
            stdin: Stdin::Open,
            env: self.plan.env.clone(),
            home: None,
        });
        self.process = Some(Running {
            run,
            lines: LineBuffer::new(MAX_LINE),
            started: now,
            ready: false,
            loads: false,
            fault: None,
        });
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "clientCapabilities": {"fs": {"readTextFile": false, "writeTextFile": false}, "terminal": false},
            "clientInfo": {"name": "mcp-provider", "version": env!("CARGO_PKG_VERSION")},
        });
        self.call("initialize", params, Pending::Initialize);
    }

    /// Ends the process for `why` (its exit then fails what it had).
    fn end_process(&mut self, why: String) {
        if let Some(process) = self.process.as_mut().filter(|p| p.fault.is_none()) {
            tracing::warn!("ACP agent: {why}");
            process.fault = Some(why);
            self.actions.push_back(Action::Kill { run: process.run });
        }
    }

    /// A request is answered as soon as it can be: in the idle session
    /// holding its conversation, else in a new session once there is room;
    /// until then it waits.
    fn dispatch(&mut self, mut request: Request, now: Instant) {
        let ready = self
            .process
            .as_ref()
            .is_some_and(|p| p.ready && p.fault.is_none());
        if !ready {
            return self.wait(request, now);
        }
        // A session continues with the editor's tools only if it was
        // opened with them (its MCP servers are fixed when it opens).
        let tools = request.offer.is_some();
        let found = request.continues.and_then(|key| {
            self.sessions
                .iter()
                .find(|(_, s)| s.turn.is_none() && s.key == Some(key) && s.tools.is_some() == tools)
                .map(|(id, _)| id.clone())
        });
        if let (Some(id), Some(last)) = (found, request.last.clone()) {
            // A session kept from an agent process that ended is loaded
            // into this one first.
            let unloaded = self.sessions.get(&id).filter(|s| s.unloaded);
            if let Some(owner) = unloaded.map(|s| s.tools) {
                let mut params = self.session_params(owner);
                params["sessionId"] = json!(id);
                let pending = Pending::Load {
                    session: id,
                    request: Box::new(request),
                };
                return self.call("session/load", params, pending);
            }
            return self.prompt(id, request, last, now);
        }
        let fresh = self
            .sessions
            .iter_mut()
            .find(|(_, s)| s.fresh && s.turn.is_none())
            .filter(|_| !tools);
        if let Some((id, session)) = fresh {
            session.fresh = false;
            let (id, text) = (id.clone(), request.whole.clone());
            return self.prompt(id, request, text, now);
        }
        // One session opens at a time: agents open them one after another
        // anyway, and Gemini CLI leaves some unanswered when asked for many
        // at once.
        let opening = self
            .pending
            .values()
            .any(|p| matches!(p, Pending::NewSession(_) | Pending::Probe));
        if opening {
            return self.wait(request, now);
        }
        if self.sessions.len() >= self.plan.max_sessions && !self.evict_idle() {
            return self.wait(request, now);
        }
        let params = self.new_session(&mut request);
        self.call(
            "session/new",
            params,
            Pending::NewSession(Box::new(request)),
        );
    }

    /// Forgets the least recently used idle session (one no conversation
    /// continues first); false when every session is busy.
    fn evict_idle(&mut self) -> bool {
        let victim = self
            .sessions
            .iter()
            .filter(|(_, s)| s.turn.is_none())
            .min_by_key(|(_, s)| (s.key.is_some(), s.last_used))
            .map(|(id, _)| id.clone());
        victim.is_some_and(|id| self.forget(&id))
    }

    /// Forgets a session, closing its relay's connections; false when
    /// there was none.
    fn forget(&mut self, id: &str) -> bool {
        let Some(session) = self.sessions.remove(id) else {
            return false;
        };
        if let Some(owner) = session.tools {
            self.relays.close_all_of(owner);
            self.listed.remove(&owner);
        }
        true
    }

    /// Queues a request that cannot go yet (refused as busy past the
    /// queue's bound), starting the agent if it is down and may start.
    fn wait(&mut self, request: Request, now: Instant) {
        if self.queue.len() >= self.plan.max_queued {
            let message = format!(
                "{} sessions are busy and {} requests waiting",
                self.sessions.len(),
                self.queue.len()
            );
            self.ready
                .push_back(error_frame(&request.invoke, &message, "busy"));
            return;
        }
        self.queue.push_back(request);
        if self.process.is_none() && self.retry_at.is_none_or(|at| at <= now) {
            self.start(now);
        }
    }

    /// Sends a turn's prompt to its session: held, in a session given the
    /// editor's tools, until its agent listed them (or for a while).
    fn prompt(&mut self, id: String, request: Request, text: String, now: Instant) {
        let Some(session) = self.sessions.get_mut(&id) else {
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
        session.offer.clone_from(&request.offer);
        session.turn = Some(Turn {
            invoke: request.invoke,
            deadline: request.deadline,
            index: 0,
            answer,
            prompt_tokens: estimate_tokens(&text),
            completion_chars: 0,
            shows: Shows::new(self.plan.show_tools),
            round: request.offer.map(Round::new),
            held: None,
            model: request.model,
            effort: request.effort,
        });
        match held {
            Some(held) => {
                if let Some(turn) = session.turn.as_mut() {
                    turn.held = Some(held);
                }
            }
            None => self.send_prompt(&id, text),
        }
    }

    /// Sends the prompt, once the session is on the turn's model.
    fn send_prompt(&mut self, id: &str, text: String) {
        let Some(text) = self.settle(id, text) else {
            return;
        };
        let params = json!({"sessionId": id, "prompt": [{"type": "text", "text": text}]});
        self.call("session/prompt", params, Pending::Prompt(id.to_owned()));
    }

    /// Sends what waits and can now go, in order.
    fn drain_queue(&mut self, now: Instant) {
        for request in std::mem::take(&mut self.queue) {
            self.dispatch(request, now);
        }
    }

    fn handle_line(&mut self, line: Line, now: Instant) {
        let text = match line {
            Line::Text(text) => text,
            Line::TooLong => {
                let mib = MAX_LINE >> 20;
                return self.end_process(format!("it sent a line longer than {mib} MiB"));
            }
        };
        match rpc::parse(&text) {
            Incoming::Response { id, result } => self.answered(id, result, now),
            Incoming::Request { id, method, params } => {
                if method == "session/request_permission" && self.ask_the_user(&id, &params, now) {
                    return;
                }
                let line = match method.as_str() {
                    "session/request_permission" => {
                        let editors = self.asks_for_editor_tool(&params);
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
                        &format!("{method} is not offered by this client"),
                        None,
                    ),
                };
                self.write(line);
            }
            Incoming::Notification { method, params } if method == "session/update" => {
                self.updated(&params);
            }
            Incoming::Notification { .. } => {}
            Incoming::Invalid => tracing::debug!("ACP agent: a line that is not JSON-RPC skipped"),
        }
    }

    /// A `session/update`: shown to the editor of the session's turn.
    fn updated(&mut self, params: &Value) {
        let Some(turn) = params["sessionId"]
            .as_str()
            .and_then(|id| self.sessions.get_mut(id))
            .and_then(|s| s.turn.as_mut())
            .filter(|t| !t.parked())
        else {
            return;
        };
        let delta = match turn.shows.of(&params["update"]) {
            Some(Shown::Text(text)) => {
                turn.completion_chars += text.chars().count() as u64;
                if let Some(t) = turn.answer.as_mut() {
                    t.text(&text);
                }
                json!({"content": text})
            }
            Some(Shown::Reasoning(text)) => json!({"reasoning_content": text}),
            None => return,
        };
        self.ready.push_back(chunk(turn, delta, None, None));
    }

    /// The agent answered our request `id`.
    fn answered(&mut self, id: u64, result: Result<Value, Failure>, now: Instant) {
        tracing::debug!("ACP agent answered request {id}: ok {}", result.is_ok());
        match self.pending.remove(&id) {
            Some(Pending::Initialize) => self.initialized(result, now),
            Some(Pending::Probe) => self.probed(result, now),
            Some(Pending::Load { session, request }) => {
                self.loaded(&session, *request, result.is_ok(), now)
            }
            Some(Pending::Set {
                session,
                setting,
                text,
            }) => self.set(&session, setting, text, result, now),
            Some(Pending::NewSession(request)) => self.opened(*request, result, now),
            Some(Pending::Prompt(session)) => self.prompted(&session, result, now),
            None => {}
        }
    }

    fn initialized(&mut self, result: Result<Value, Failure>, now: Instant) {
        let capabilities = result.as_ref().cloned().unwrap_or_default();
        let version = match result {
            Ok(result) => result["protocolVersion"].as_u64(),
            Err(failure) => {
                return self.end_process(format!("it refused `initialize`: {}", failure.message));
            }
        };
        if version != Some(PROTOCOL_VERSION) {
            let said = version.map_or("no version".to_owned(), |v| format!("version {v}"));
            return self.end_process(format!(
                "it speaks ACP {said}, and this provider speaks version {PROTOCOL_VERSION}"
            ));
        }
        if let Some(process) = self.process.as_mut() {
            process.ready = true;
            process.loads = capabilities["agentCapabilities"]["loadSession"] == true;
        }
        if !self.probed {
            let params = json!({"cwd": self.plan.cwd, "mcpServers": []});
            self.call("session/new", params, Pending::Probe);
        }
        self.drain_queue(now);
    }

    /// `session/new` answered: the turn that opened it goes on in it.
    fn opened(&mut self, request: Request, result: Result<Value, Failure>, now: Instant) {
        let (id, models) = match result {
            Ok(result) => (
                result["sessionId"].as_str().map(str::to_owned),
                Models::of(&result),
            ),
            Err(failure) if !request.cancelled => {
                let (message, code) = self.refusal(&failure);
                self.ready
                    .push_back(error_frame(&request.invoke, &message, code));
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
            return self.end_process(why.into());
        };
        let mut session = Session::new(now, request.owner);
        session.know(models);
        self.sessions.insert(id.clone(), session);
        if request.cancelled {
            return self.drain_queue(now);
        }
        let text = request.whole.clone();
        self.prompt(id, request, text, now);
        // The next session may open.
        self.drain_queue(now);
    }

    /// `session/load` answered (the history it replayed went to no turn):
    /// the turn goes on in the session, or, when the agent could not load
    /// it, in a new one with the whole conversation.
    fn loaded(&mut self, id: &str, mut request: Request, loaded: bool, now: Instant) {
        let last = request.last.clone().filter(|_| loaded);
        match (self.sessions.get_mut(id), last) {
            (Some(session), Some(last)) => {
                session.unloaded = false;
                self.prompt(id.to_owned(), request, last, now);
            }
            _ => {
                tracing::info!(
                    "ACP agent: a session could not be loaded; a new one takes its turn"
                );
                self.forget(id);
                request.continues = None;
                self.dispatch(request, now);
            }
        }
    }

    /// What an editor is told of a refused `session/new`.
    fn refusal(&self, failure: &Failure) -> (String, &'static str) {
        let program = self.program();
        let auth = failure.code == -32000 || failure.message.to_lowercase().contains("auth");
        match (&self.plan.login, auth) {
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
    fn prompted(&mut self, id: &str, result: Result<Value, Failure>, now: Instant) {
        // A question its agent stopped waiting for goes with the turn.
        self.end_asks(id);
        let Some(session) = self.sessions.get_mut(id) else {
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
                    self.forget(id);
                    return self.drain_queue(now);
                };
                let usage = update::usage(&result)
                    .unwrap_or((turn.prompt_tokens, tokens_for_chars(turn.completion_chars)));
                self.ready.push_back(chunk(
                    &mut turn,
                    json!({"content": ""}),
                    Some(finish),
                    Some(usage),
                ));
                if stop == "end_turn" {
                    session.key = turn.answer.map(Transcript::close);
                }
            }
            Err(failure) => {
                let message = format!("`{}` failed the turn: {}", self.program(), failure.message);
                self.ready
                    .push_back(error_frame(&turn.invoke, &message, "agent_failed"));
                self.forget(id);
            }
        }
        self.drain_queue(now);
    }

    /// Stops a session's turn: the agent is told to cancel, and the session
    /// is forgotten (an agent's cancelled session is not reliably reusable).
    fn stop_turn(&mut self, id: &str) {
        self.forget(id);
        self.write(mcp::notification(
            "session/cancel",
            json!({"sessionId": id}),
        ));
        self.end_asks(id);
    }

    /// The turn of `invoke`'s session, if it has one.
    fn session_of(&self, invoke: &str) -> Option<String> {
        self.sessions
            .iter()
            .find(|(_, s)| {
                s.turn
                    .as_ref()
                    .is_some_and(|t| t.invoke == invoke && !t.parked())
            })
            .map(|(id, _)| id.clone())
    }

    fn cancel(&mut self, invoke: &str, now: Instant) {
        self.queue.retain(|r| r.invoke != invoke);
        for pending in self.pending.values_mut() {
            if let Pending::NewSession(request) = pending {
                if request.invoke == invoke {
                    request.cancelled = true;
                }
            }
        }
        if let Some(id) = self.session_of(invoke) {
            self.stop_turn(&id);
            self.drain_queue(now);
        }
    }

    /// The process ended: what it had fails, and it is started again when
    /// something waits — at once if it had run a while, after a growing
    /// wait if it keeps ending early. A process that never got ready fails
    /// what waits too: its editors hear why now, not at their timeout.
    fn ended(&mut self, process: Running, exit: &Exit, now: Instant) {
        let program = self.program().to_owned();
        let why = match (&process.fault, exit) {
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
        };
        self.end_all_asks();
        for (_, pending) in self.pending.drain() {
            if let Pending::NewSession(request) = pending {
                if !request.cancelled {
                    self.ready
                        .push_back(error_frame(&request.invoke, &why, "agent_failed"));
                }
            }
        }
        // An idle conversation's session is kept for the next process to
        // load, when this one could; the rest are gone with it.
        let kept = |s: &Session| process.loads && s.turn.is_none() && s.key.is_some();
        for (id, mut session) in std::mem::take(&mut self.sessions) {
            if let Some(owner) = session.tools {
                self.relays.close_all_of(owner);
                self.listed.remove(&owner);
            }
            if kept(&session) {
                session.unloaded = true;
                self.sessions.insert(id, session);
            } else if let Some(turn) = session.turn.filter(|t| !t.parked()) {
                self.ready
                    .push_back(error_frame(&turn.invoke, &why, "agent_failed"));
            }
        }
        // It registers even so: an editor asking is then told why.
        self.register(&[]);
        if !process.ready {
            for request in self.queue.drain(..) {
                self.ready
                    .push_back(error_frame(&request.invoke, &why, "agent_failed"));
            }
        }
        if process.ready && now.duration_since(process.started) >= STABLE {
            self.backoff = FIRST_BACKOFF;
            self.retry_at = None;
        } else {
            self.retry_at = Some(now + self.backoff);
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
        if !self.queue.is_empty() && self.retry_at.is_none() {
            self.start(now);
        }
    }
}

impl ProcessAgent for AcpAgent {
    fn handle_message(&mut self, text: &str, now: Instant) {
        match read_frame(text, &mut self.relink, &mut self.ready) {
            // Results a parked turn waits for go to it; anything else is
            // a new turn.
            Some(Frame::Invoke { id, frame })
                if !self.resume_waiting(&id, &frame["payload"], now) =>
            {
                let request = self.request(id, &frame, now);
                if let Some(offer) = &request.offer {
                    self.end_waiting_in(&offer.chat);
                }
                self.dispatch(request, now);
            }
            Some(Frame::Cancel(id)) => self.cancel(&id, now),
            Some(Frame::Decision { id, allow }) => self.permission_decided(&id, allow),
            Some(Frame::Invoke { .. }) | None => {}
        }
    }

    /// The provider failed every request it had sent: their turns are
    /// cancelled and what waits is dropped. The process and its idle
    /// sessions stay, for conversations that go on over the next link.
    fn link_lost(&mut self) {
        self.queue.clear();
        for pending in self.pending.values_mut() {
            if let Pending::NewSession(request) = pending {
                request.cancelled = true;
            }
        }
        let busy: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.turn.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for id in busy {
            self.stop_turn(&id);
        }
        self.ready.clear();
        if self.probed {
            self.ready.push_back(self.relink.register());
        }
    }

    fn handle_stdout(&mut self, run: RunId, bytes: &[u8], now: Instant) {
        let Some(process) = self.process.as_mut().filter(|p| p.run == run) else {
            return;
        };
        if process.fault.is_some() {
            return;
        }
        for line in process.lines.push(bytes) {
            self.handle_line(line, now);
            if self.process.as_ref().is_none_or(|p| p.fault.is_some()) {
                return;
            }
        }
    }

    fn handle_exit(&mut self, run: RunId, exit: Exit, now: Instant) {
        if self.process.as_ref().is_some_and(|p| p.run == run) {
            if let Some(process) = self.process.take() {
                self.ended(process, &exit, now);
            }
        }
    }

    /// Turns and waiting requests past their deadline fail as timed out;
    /// an agent that did not answer `initialize` in time is ended; idle
    /// sessions past their time are forgotten; an agent waiting out its
    /// backoff is started again when something waits.
    fn handle_timeout(&mut self, now: Instant) {
        let secs = self.plan.timeout.as_secs();
        let message = format!("the agent did not answer within {secs} s");
        let late: Vec<(String, String)> = self
            .sessions
            .iter()
            .filter_map(|(id, s)| {
                let turn = s
                    .turn
                    .as_ref()
                    .filter(|t| !t.parked() && t.deadline <= now)?;
                Some((id.clone(), turn.invoke.clone()))
            })
            .collect();
        for (id, invoke) in late {
            self.ready
                .push_back(error_frame(&invoke, &message, "timeout"));
            self.stop_turn(&id);
        }
        let (late, waiting): (Vec<_>, Vec<_>) =
            self.queue.drain(..).partition(|r| r.deadline <= now);
        self.queue = waiting.into();
        for r in late {
            self.ready
                .push_back(error_frame(&r.invoke, &message, "timeout"));
        }
        let idle = self.plan.idle;
        let gone: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.turn.is_none() && s.last_used + idle <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.forget(&id);
        }
        self.tools_due(now);
        self.asks_due(now);
        let start_due = self.start_due();
        if start_due.is_some_and(|due| due <= now) {
            let secs = self.plan.start_timeout.as_secs();
            self.end_process(format!("it did not answer `initialize` within {secs} s"));
        }
        let retry = self.retry_at.filter(|_| !self.queue.is_empty());
        if self.process.is_none() && retry.is_some_and(|at| at <= now) {
            self.start(now);
        }
        self.drain_queue(now);
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
        self.actions.pop_front()
    }

    fn poll_link(&mut self) -> Option<LinkOutput> {
        self.relays.poll()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.plan.idle;
        let sessions = self.sessions.values().flat_map(|s| match &s.turn {
            Some(turn) => tools::due(turn),
            None => vec![s.last_used + idle],
        });
        let retry = self.retry_at.filter(|_| !self.queue.is_empty());
        sessions
            .chain(self.queue.iter().map(|r| r.deadline))
            .chain(self.relays.due())
            .chain(self.asks.due())
            .chain(self.start_due())
            .chain(retry)
            .min()
    }
}

impl AcpAgent {
    /// When a process still starting must have answered `initialize`.
    fn start_due(&self) -> Option<Instant> {
        self.process
            .as_ref()
            .filter(|p| !p.ready && p.fault.is_none())
            .map(|p| p.started + self.plan.start_timeout)
    }
}

/// A chunk of `turn`'s answer: `finish` and `usage` on its last.
fn chunk(
    turn: &mut Turn,
    mut delta: Value,
    finish: Option<&str>,
    usage: Option<(u64, u64)>,
) -> String {
    if turn.index == 0 {
        delta["role"] = json!("assistant");
    }
    let mut frame = json!({"type": "model_stream_chunk", "id": turn.invoke,
                           "chunk_index": turn.index, "delta": delta, "finish_reason": finish});
    if let Some((prompt, completion)) = usage {
        frame["usage"] = json!({"prompt_tokens": prompt, "completion_tokens": completion});
    }
    turn.index += 1;
    frame.to_string()
}

#[cfg(test)]
mod tests;
