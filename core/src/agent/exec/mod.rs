//! `agent exec`: a CLI agent run once per request, as a model.
//!
//! Sans-IO like the echo agent: [`ExecAgent`] reads provider frames, the
//! runs' output and their exits, and says what to do — frames to send
//! ([`ExecAgent::poll_transmit`]), processes to start or kill
//! ([`ExecAgent::poll_action`]), when to look again
//! ([`ExecAgent::poll_timeout`]). The runtime spawns each process in a
//! process group of its own, pipes its stdout in, and reports its exit
//! exactly once per spawn (a process that could not start included).
//!
//! Every invocation ends with exactly one final frame: the last chunk on
//! success, an `error` frame on failure, timeout or a full queue — or
//! nothing after a `cancel`, whose editor is gone.

pub mod claude;
pub mod codex;
pub mod conversation;
pub mod cursor;
pub mod gemini;
pub mod home;
pub mod link;
pub mod offer;
pub mod output;
pub mod plain;
pub mod preset;
pub mod prompt;
pub mod relays;
pub mod round;
pub mod tool_search;
pub mod tools;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::agent::echo::text_of;
use crate::agent::ledger::{error_frame, Answer, Invocation, Waiting};
use crate::agent::process::{Action, Exit, ProcessAgent, RunId, Stdin};
use crate::agent::relink::Relink;
use crate::agent::to_agent::{Invoke, ToAgent};
use crate::lines::Line;
use crate::telemetry::SpanContext;
use crate::time::later;
use crate::tokens::{estimate_tokens, tokens_for_chars};
use conversation::{Conversation, Conversations, Transcript};
use link::{LinkId, LinkOutput};
use output::{Event, OutputFormat};
use preset::{Format, Preset, MAX_ARGUMENT, SESSION};
use relays::{Heard, Relays};
use round::Round;
use tool_search::Indexes;
use tools::{Chat, Offer, Results};

/// The MCP server's name in each CLI's configuration: claude shows its
/// tools as `mcp__editor__NAME`, gemini and qwen as `NAME`.
pub const SERVER: &str = "editor";

/// Calls given to the editor in one answer, at most; more are refused to
/// the CLI as errors.
pub const MAX_CALLS: usize = 64;

/// The most of a run's stderr kept for its error message.
pub const STDERR_TAIL: usize = 2048;

/// What to run, and the limits to run it in.
#[derive(Debug, Clone)]
pub struct ExecPlan {
    /// The model name editors ask for.
    pub model: String,
    /// The program and its arguments; an argument may hold `{prompt}`.
    pub command: Vec<String>,
    pub format: Format,
    /// The longest a request may take, waiting in the queue included.
    pub timeout: Duration,
    /// Processes at once.
    pub max_running: usize,
    /// Requests waiting for a process slot; more are refused as busy.
    pub max_queued: usize,
    /// The command that resumes a CLI session (`{session}` marks its id),
    /// for CLIs that can: a chat continuing one the CLI answered then gets
    /// only its new message.
    pub resume: Option<Vec<String>>,
    /// Conversations remembered for resuming, at most (0: never resume).
    pub conversations: usize,
    /// How long a conversation is remembered after its last answer.
    pub conversation_ttl: Duration,
    /// The known CLI this runs, if any: it decides how the CLI is given
    /// the editor's tools.
    pub preset: Option<Preset>,
    /// How runs reach the editor's tools; without it (or for a CLI that
    /// cannot take them) a request's tools are not offered.
    pub tools: Option<ToolLink>,
}

/// How runs are given the editor's tools: set up by the runtime, which
/// serves the relays' connections.
#[derive(Debug, Clone)]
pub struct ToolLink {
    /// The relay's command line, before the run's secret (which is added
    /// as its last argument).
    pub relay: Vec<String>,
    /// Random bytes the runs' secrets and call ids are derived from.
    pub seed: [u8; 32],
    /// How long a run waits for the editor's results before it is ended.
    pub wait: Duration,
    /// Keep the CLI's own tools beside the editor's.
    pub cli_tools: bool,
    /// When a request's tools are offered behind `search_tools` and
    /// `call_tool` rather than listed whole.
    pub search: tool_search::ToolSearch,
}

/// A request to run: what to send, and what it continues.
struct Request {
    invoke: String,
    prompt: String,
    deadline: Instant,
    /// The messages so far, hashed: with the answer, the key under which a
    /// continuation will find this conversation.
    transcript: Option<Transcript>,
    /// The CLI session this request continues, if any.
    resumes: Option<Conversation>,
    /// The whole conversation as one prompt, in case resuming fails before
    /// any text was sent.
    fallback: Option<String>,
    /// The editor's tools, when the run is given them.
    offer: Option<Offer>,
    /// The provider's span for it (`model_invoke`'s `traceparent`), which
    /// the CLI is handed in its environment.
    trace: Option<SpanContext>,
}

impl Invocation for Request {
    fn invoke(&self) -> &str {
        &self.invoke
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }
}

struct Run {
    request: Request,
    /// The request's transcript with the answer so far.
    answer: Option<Transcript>,
    format: Box<dyn OutputFormat>,
    /// The answer's chunks sent so far.
    stream: Answer,
    /// The usage the CLI reported.
    usage: Option<(u64, u64)>,
    session: Option<String>,
    finished: bool,
    /// The CLI reported failure; the run was killed.
    failed: Option<String>,
    /// Its final frame went (or, cancelled, never will): the rest of its
    /// output is ignored until its exit frees the slot.
    settled: bool,
    /// Its calls of the editor's tools, when it was given them.
    round: Option<Round>,
}

impl Run {
    /// Whether a failure may still be retried as a fresh run: it resumed a
    /// session and sent nothing yet.
    fn may_start_over(&self) -> bool {
        self.request.fallback.is_some() && !self.stream.begun()
    }

    /// Whether the run waits for the editor's results: its request was
    /// answered, and what it prints belongs to no one until they come.
    fn parked(&self) -> bool {
        self.round.as_ref().is_some_and(Round::parked)
    }
}

pub struct ExecAgent {
    plan: ExecPlan,
    relink: Relink,
    ready: VecDeque<String>,
    actions: VecDeque<Action>,
    queue: Waiting<Request>,
    runs: HashMap<RunId, Run>,
    conversations: Conversations,
    next_run: u64,
    relays: Relays,
    /// The indexes of the tool sets offered lately behind a search.
    indexes: Indexes,
}

impl ExecAgent {
    /// The first frame polled registers the plan's model.
    pub fn new(plan: ExecPlan, agent_id: &str) -> Self {
        let relink = Relink::new(json!({
            "type": "register",
            "agent_id": agent_id,
            "label": format!("{} (agent exec)", plan.command.first().map_or("", String::as_str)),
            "models": [plan.model],
            "allowed_scopes": ["inference"],
        }));
        let conversations = Conversations::new(plan.conversations, plan.conversation_ttl);
        let queue = Waiting::new(plan.max_queued);
        ExecAgent {
            plan,
            ready: VecDeque::from([relink.register()]),
            relink,
            actions: VecDeque::new(),
            queue,
            runs: HashMap::new(),
            conversations,
            next_run: 0,
            relays: Relays::default(),
            indexes: Indexes::default(),
        }
    }

    /// The request for an invocation: a continuation of a remembered
    /// conversation resumes it with the new message alone. The editor's
    /// tools are offered when the CLI can take them (behind a search when
    /// they are many); what `tool_choice` asks is said at the prompt's end.
    fn request(&mut self, invoke: &Invoke, now: Instant) -> Request {
        let payload = &invoke.payload;
        let takes = self.plan.preset.is_some_and(offer::takes_tools);
        let search = self.plan.tools.as_ref().map(|link| link.search);
        let offer = search
            .filter(|_| takes)
            .and_then(|mode| Some(Offer::of(payload)?.searched(mode, &mut self.indexes)));
        let with_choice = |prompt: String| match offer.as_ref().and_then(|o| o.choice.as_ref()) {
            Some(choice) => format!("{prompt}\n\n{choice}"),
            None => prompt,
        };
        let prompt = with_choice(prompt::render(payload));
        let mut request = Request {
            invoke: invoke.id.clone(),
            prompt,
            deadline: later(now, self.plan.timeout),
            transcript: None,
            resumes: None,
            fallback: None,
            offer: None,
            trace: invoke.trace(),
        };
        let messages = payload["messages"].as_array().map(Vec::as_slice);
        let remembering = self.plan.resume.is_some() && self.plan.conversations > 0;
        if let Some(messages) = messages.filter(|_| remembering && payload["kind"] == "chat") {
            request.transcript = Some(Transcript::of(messages));
            if let Some((last, earlier)) = messages.split_last() {
                if last["role"] == "user" && !earlier.is_empty() {
                    let key = Transcript::of(earlier).key();
                    if let Some(conversation) = self.conversations.take(&key, now) {
                        let whole = std::mem::replace(
                            &mut request.prompt,
                            with_choice(text_of(&last["content"])),
                        );
                        request.resumes = Some(conversation);
                        request.fallback = Some(whole);
                    }
                }
            }
        }
        request.offer = offer;
        request
    }

    /// A request whose history ends with the results a parked run waits
    /// for, in that run's conversation, goes to that run: its MCP calls are
    /// answered and what its CLI does next is this request's answer. The
    /// run's conversation is now this request's (its next results follow
    /// these messages).
    fn resume_waiting(&mut self, invoke: &str, payload: &Value, now: Instant) -> bool {
        let Some(results) = Results::of(payload) else {
            return false;
        };
        let found = self.runs.iter_mut().find_map(|(&run, state)| {
            let round = state
                .round
                .as_mut()
                .filter(|r| r.parked() && !state.settled)?;
            let answers = results.answers(&round.given(), &round.offer.chat)?;
            round.offer.chat = results.chat.clone();
            Some((run, round.answer(answers)))
        });
        let Some((run, replies)) = found else {
            return false;
        };
        for (link, line) in replies {
            self.relays.send(link, line);
        }
        let Some(state) = self.runs.get_mut(&run) else {
            return false;
        };
        let said: usize = results.results.iter().map(|r| r.text.chars().count()).sum();
        state.request.invoke = invoke.to_owned();
        state.request.deadline = later(now, self.plan.timeout);
        state.stream = Answer::new(tokens_for_chars(said as u64));
        // Calls the CLI made after the others were given go now.
        give(&mut self.ready, &self.plan, state, now, false);
        true
    }

    /// A new request of a conversation (not the results) means the editor
    /// will not send the results a run of that conversation waits for: it
    /// was edited, regenerated or went on without them. That run is ended;
    /// a run of another conversation of the same window is not.
    fn end_waiting_in(&mut self, chat: &Chat) {
        for (&run, state) in self.runs.iter_mut() {
            let waiting = state.round.as_ref().filter(|r| r.parked());
            if !state.settled && waiting.is_some_and(|r| r.offer.chat.same_conversation(chat)) {
                state.settled = true;
                self.actions.push_back(Action::Kill { run });
            }
        }
    }

    /// An invocation: results a parked run waits for go to it; anything
    /// else is a new request.
    fn invoked(&mut self, invoke: &Invoke, now: Instant) {
        if !self.resume_waiting(&invoke.id, &invoke.payload, now) {
            let request = self.request(invoke, now);
            self.invoke(request);
        }
    }

    /// A new request runs, or waits for a place (refused as busy past the
    /// queue's bound); a run parked in its conversation is ended.
    fn invoke(&mut self, request: Request) {
        if let Some(offer) = &request.offer {
            self.end_waiting_in(&offer.chat);
        }
        if self.runs.len() < self.plan.max_running {
            return self.start(request);
        }
        if self.queue.has_room() {
            self.make_room();
        }
        let running = self.runs.len();
        let busy = |waiting| format!("{running} requests are running and {waiting} waiting");
        self.queue.push(request, busy, &mut self.ready);
    }

    /// Every place is taken and a request waits: unless enough runs are
    /// ending already, the run parked longest for an editor's results ends
    /// (its editor's results, if they ever come, are then an ordinary
    /// request), so waiting processes nobody answers never keep a new
    /// request out.
    fn make_room(&mut self) {
        let ending = self.runs.values().filter(|r| r.settled).count();
        if ending > self.queue.len() {
            return;
        }
        let oldest = self
            .runs
            .iter_mut()
            .filter(|(_, r)| !r.settled && r.parked())
            .min_by_key(|(_, r)| r.round.as_ref().and_then(Round::deadline));
        if let Some((&run, state)) = oldest {
            state.settled = true;
            self.actions.push_back(Action::Kill { run });
        }
    }

    fn start(&mut self, request: Request) {
        let run = RunId(self.next_run);
        self.next_run += 1;
        let command = match (&request.resumes, &self.plan.resume) {
            (Some(conversation), Some(resume)) => resume
                .iter()
                .map(|a| a.replace(SESSION, &conversation.session))
                .collect(),
            _ => self.plan.command.clone(),
        };
        let (mut argv, on_stdin) = preset::arguments(&command, &request.prompt);
        let preset_env = self.plan.preset.map_or(&[][..], Preset::env);
        let mut env: Vec<(String, String)> = preset_env
            .iter()
            .map(|&(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        // The OpenTelemetry environment carrier: a CLI that traces makes
        // its spans children of the provider's.
        if let Some(trace) = &request.trace {
            env.push(("TRACEPARENT".to_owned(), trace.traceparent()));
            env.extend(trace.state.clone().map(|s| ("TRACESTATE".to_owned(), s)));
        }
        let home = match self.launch(run, request.offer.is_some()) {
            Some(launch) => {
                let at = 1.min(argv.len());
                argv.splice(at..at, launch.args);
                env.extend(launch.env);
                launch.home
            }
            None => None,
        };
        if let Some(long) = argv.iter().map(String::len).find(|&n| n > MAX_ARGUMENT) {
            let message = format!(
                "the conversation is too long for `{}`, which takes its prompt as an argument: \
                 that argument would be {long} bytes, and the most one may hold is {MAX_ARGUMENT}; \
                 shorten the conversation, or use a command that reads its prompt from stdin",
                argv.first().map_or("", String::as_str),
            );
            self.ready.push_back(error_frame(
                &request.invoke,
                &message,
                "context_length_exceeded",
            ));
            return;
        }
        let stdin = Stdin::Once(if on_stdin {
            request.prompt.as_bytes().to_vec()
        } else {
            Vec::new()
        });
        let mut answer = request.transcript.clone();
        if let Some(t) = answer.as_mut() {
            t.open("assistant");
        }
        let prompt_tokens = estimate_tokens(request.fallback.as_ref().unwrap_or(&request.prompt));
        let round = request.offer.clone().map(Round::new);
        self.runs.insert(
            run,
            Run {
                request,
                answer,
                format: self.plan.format.parser(),
                stream: Answer::new(prompt_tokens),
                usage: None,
                session: None,
                finished: false,
                failed: None,
                settled: false,
                round,
            },
        );
        self.actions.push_back(Action::Spawn {
            run,
            argv,
            stdin,
            env,
            home,
        });
    }

    /// What the run's CLI is started with to reach the editor's tools.
    fn launch(&self, run: RunId, offered: bool) -> Option<offer::Launch> {
        let (link, preset) = (self.plan.tools.as_ref()?, self.plan.preset?);
        if !offered {
            return None;
        }
        let mut relay = link.relay.clone();
        relay.push(link::secret(&link.seed, run));
        let setup = offer::Setup {
            relay: &relay,
            wait: link.wait,
            cli_tools: link.cli_tools,
        };
        offer::launch(preset, &setup)
    }

    fn cancel(&mut self, invoke: &str) {
        self.queue.cancel(invoke);
        let found = self
            .runs
            .iter_mut()
            .find(|(_, r)| r.request.invoke == invoke && !r.settled && !r.parked());
        if let Some((&run, state)) = found {
            state.settled = true;
            self.actions.push_back(Action::Kill { run });
        }
    }

    /// The final frame of a run that ended by itself; a conversation it
    /// answered is remembered.
    fn finish(&mut self, mut run: Run, exit: &Exit, now: Instant) {
        let failed = run
            .failed
            .take()
            .or_else(|| failure(&self.plan, &run, exit));
        if let Some(message) = failed {
            if run.may_start_over() {
                tracing::warn!("resuming a CLI session failed ({message}); starting afresh");
                let request = run.request;
                let prompt = request.fallback.clone().unwrap_or_default();
                self.start(Request {
                    prompt,
                    resumes: None,
                    fallback: None,
                    ..request
                });
            } else {
                self.ready
                    .push_back(error_frame(&run.request.invoke, &message, "agent_failed"));
            }
            return;
        }
        let cumulative = self.plan.format.cumulative_usage();
        let total = run.usage;
        if let (true, Some((prompt, completion)), Some(before)) = (
            cumulative,
            run.usage,
            run.request.resumes.as_ref().and_then(|c| c.usage_total),
        ) {
            run.usage = Some((
                prompt.saturating_sub(before.0),
                completion.saturating_sub(before.1),
            ));
        }
        let last = run.stream.end(&run.request.invoke, "stop", run.usage);
        self.ready.push_back(last);
        let session = run.session.or(run.request.resumes.map(|c| c.session));
        if let (Some(session), Some(transcript)) = (session, run.answer) {
            let usage_total = total.filter(|_| cumulative);
            self.conversations.remember(
                transcript.close(),
                Conversation {
                    session,
                    usage_total,
                },
                now,
            );
        }
    }

    fn apply(&mut self, run: RunId, events: Vec<Event>, now: Instant) {
        let Some(state) = self.runs.get_mut(&run) else {
            return;
        };
        for event in events {
            if state.settled || state.failed.is_some() {
                return;
            }
            match event {
                // Text while the editor has the calls has no answer to go
                // to (CLIs print none before a tool's result).
                Event::Text(_) if state.parked() => {
                    tracing::debug!("text from a run waiting for tool results dropped");
                }
                Event::Text(text) => {
                    if let Some(t) = state.answer.as_mut() {
                        t.text(&text);
                    }
                    let chunk = state.stream.text(&state.request.invoke, &text);
                    self.ready.push_back(chunk);
                }
                Event::Turn { calls } => {
                    if let Some(round) = state.round.as_mut() {
                        round.turn(calls);
                    }
                    give(&mut self.ready, &self.plan, state, now, false);
                }
                Event::Usage { prompt, completion } => state.usage = Some((prompt, completion)),
                Event::Session(id) => state.session = Some(id),
                Event::Finished => state.finished = true,
                Event::Failed(_) if state.parked() => {
                    state.settled = true;
                    self.actions.push_back(Action::Kill { run });
                }
                Event::Failed(message) => {
                    self.actions.push_back(Action::Kill { run });
                    if state.may_start_over() {
                        // Decided at its exit: it may be run afresh.
                        state.failed = Some(message);
                    } else {
                        state.settled = true;
                        self.ready.push_back(error_frame(
                            &state.request.invoke,
                            &message,
                            "agent_failed",
                        ));
                    }
                }
            }
        }
    }

    /// A line from `run`'s relay on connection `id`.
    fn link_line(&mut self, id: LinkId, run: RunId, line: &Line, now: Instant) {
        let (Some(state), Some(tools)) = (self.runs.get_mut(&run), self.plan.tools.as_ref()) else {
            return;
        };
        let Some(round) = state.round.as_mut() else {
            return;
        };
        let call_id = |n| link::call_id(&tools.seed, run, n);
        if let Heard::Called = self.relays.hear(id, line, round, call_id, now) {
            give(&mut self.ready, &self.plan, state, now, false);
        }
    }

    /// Processes started and not yet reaped.
    pub fn running(&self) -> usize {
        self.runs.len()
    }

    /// Conversations remembered for resuming.
    pub fn conversations(&self) -> usize {
        self.conversations.len()
    }
}

impl ProcessAgent for ExecAgent {
    /// A frame from the provider.
    fn handle_message(&mut self, text: &str, now: Instant) {
        let Some(message) = self.relink.read(text, &mut self.ready) else {
            return;
        };
        match message {
            ToAgent::ModelInvoke(invoke) => self.invoked(&invoke, now),
            ToAgent::Cancel { id } => self.cancel(&id),
            // A run's CLI writes as it likes (an answer whose editor falls
            // behind is held by the provider), and asks no questions.
            _ => {}
        }
    }

    /// The link dropped: the provider failed every request it had sent us,
    /// so their runs are killed (their exits then say nothing) and the
    /// queue is emptied. Remembered conversations stay, for chats that
    /// continue on the next link; that link starts by asking for the
    /// session back.
    fn link_lost(&mut self) {
        self.queue.take();
        for (&run, state) in self.runs.iter_mut().filter(|(_, r)| !r.settled) {
            state.settled = true;
            self.actions.push_back(Action::Kill { run });
        }
        self.ready.clear();
        self.ready.push_back(self.relink.register());
    }

    /// Bytes the run printed on stdout.
    fn handle_stdout(&mut self, run: RunId, bytes: &[u8], now: Instant) {
        let Some(state) = self.runs.get_mut(&run) else {
            return;
        };
        if state.settled || state.failed.is_some() {
            return;
        }
        let mut events = Vec::new();
        state.format.feed(bytes, &mut events);
        self.apply(run, events, now);
    }

    /// The run is over: its stdout closed and its process was reaped.
    fn handle_exit(&mut self, run: RunId, exit: Exit, now: Instant) {
        if let Some(state) = self
            .runs
            .get_mut(&run)
            .filter(|s| !s.settled && s.failed.is_none())
        {
            let mut events = Vec::new();
            state.format.end(&mut events);
            self.apply(run, events, now);
        }
        let Some(state) = self.runs.remove(&run) else {
            return;
        };
        self.relays.close_all_of(run);
        if !state.settled && !state.parked() {
            self.finish(state, &exit, now);
        }
        // A queued request may be refused without a run (a prompt too long
        // for its command), so keep starting until a slot is taken.
        while self.runs.len() < self.plan.max_running {
            let Some(next) = self.queue.pop() else {
                break;
            };
            self.start(next);
        }
    }

    /// Runs and waiting requests past their deadline fail as timed out;
    /// their processes are killed. Calls whose bound passed go to the
    /// editor; a run the editor left waiting past its wait is ended; a
    /// relay's connection that did not say its hello in time is closed.
    fn handle_timeout(&mut self, now: Instant) {
        self.relays.expire(now);
        let secs = self.plan.timeout.as_secs();
        let message = format!("the agent did not answer within {secs} s");
        self.queue.expire(now, &message, &mut self.ready);
        for (&run, state) in self.runs.iter_mut() {
            let due = state.round.as_ref().and_then(Round::deadline);
            if state.parked() && !state.settled && due.is_some_and(|d| d <= now) {
                tracing::info!("the editor did not send the tool results in time: run ended");
                state.settled = true;
                self.actions.push_back(Action::Kill { run });
            } else if !state.parked() && due.is_some_and(|d| d <= now) {
                give(&mut self.ready, &self.plan, state, now, true);
            }
            if !state.settled && !state.parked() && state.request.deadline <= now {
                state.settled = true;
                self.ready
                    .push_back(error_frame(&state.request.invoke, &message, "timeout"));
                self.actions.push_back(Action::Kill { run });
            }
        }
    }

    /// The next frame for the provider.
    fn poll_transmit(&mut self) -> Option<String> {
        self.ready.pop_front()
    }

    /// The next process to start or kill.
    fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest deadline of a run, its tool calls, a waiting request
    /// or a relay's hello.
    fn poll_timeout(&self) -> Option<Instant> {
        let runs = self.runs.values().filter(|r| !r.settled).flat_map(|r| {
            let own = (!r.parked()).then_some(r.request.deadline);
            // A run that failed is being ended: its round gives no more
            // calls, and a batch already due would be due for ever.
            let round = r.round.as_ref().filter(|_| r.failed.is_none());
            own.into_iter().chain(round.and_then(Round::deadline))
        });
        runs.chain(self.queue.deadlines())
            .chain(self.relays.due())
            .min()
    }

    /// Bytes from a relay's connection (a new one, opened at `now`,
    /// starts with its hello). Connections that have not said theirs are
    /// few at most: a new one closes the oldest of them.
    fn handle_link(&mut self, id: LinkId, bytes: &[u8], now: Instant) {
        let seed = self.plan.tools.as_ref().map(|t| t.seed);
        let runs = &self.runs;
        let owner = |hello: &str| {
            let seed = seed?;
            runs.iter().find_map(|(&run, state)| {
                let secret = link::secret(&seed, run);
                (state.round.is_some() && link::says(hello, &secret)).then_some(run)
            })
        };
        for (run, line) in self.relays.input(id, bytes, now, owner) {
            self.link_line(id, run, &line, now);
        }
    }

    /// A relay's connection closed.
    fn handle_link_closed(&mut self, id: LinkId) {
        let round = self
            .relays
            .closed(id)
            .and_then(|run| self.runs.get_mut(&run))
            .and_then(|state| state.round.as_mut());
        if let Some(round) = round {
            round.link_closed(id);
        }
    }

    /// The next line to write to a relay, or one to close.
    fn poll_link(&mut self) -> Option<LinkOutput> {
        self.relays.poll()
    }
}

/// Why a run that was not settled earlier failed, if it did.
fn failure(plan: &ExecPlan, run: &Run, exit: &Exit) -> Option<String> {
    let program = plan.command.first().map_or("the agent", String::as_str);
    let (code, stderr) = match exit {
        Exit::NotStarted(why) => return Some(format!("could not start `{program}`: {why}")),
        Exit::Exited { code, stderr } => (*code, stderr.trim()),
    };
    let status = match code {
        Some(0) if run.finished || !run.format.needs_result() => return None,
        Some(0) => "exited without a result".to_owned(),
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".to_owned(),
    };
    let mut message = format!("`{program}` {status}");
    if let Some(said) = run.format.last_error() {
        message.push_str(&format!(": {said}"));
    } else if !stderr.is_empty() {
        message.push_str(&format!(": {stderr}"));
    }
    Some(message)
}

/// Gives the run's pending calls to its editor when they are all its turn
/// made, or (`due`) when the bound passed: the answer ends with them, and
/// the run is parked until the results come or the wait is over.
fn give(ready: &mut VecDeque<String>, plan: &ExecPlan, state: &mut Run, now: Instant, due: bool) {
    let (Some(round), Some(link)) = (state.round.as_mut(), plan.tools.as_ref()) else {
        return;
    };
    if state.settled || state.failed.is_some() || !(round.complete() || due && round.due(now)) {
        return;
    }
    let given = round.give(later(now, link.wait));
    let invoke = &state.request.invoke;
    ready.push_back(state.stream.calls(invoke, &given));
    ready.push_back(state.stream.end(invoke, "tool_calls", state.usage));
    // The conversation now holds calls and results an editor writes its
    // own way: it is not remembered for resuming, and a failure from here
    // on cannot start over.
    state.answer = None;
    state.request.fallback = None;
}

#[cfg(test)]
mod tests;
