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
pub mod cursor;
pub mod gemini;
pub mod output;
pub mod plain;
pub mod preset;
pub mod prompt;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::tokens::{estimate_tokens, tokens_for_chars};
use output::{Event, OutputFormat};
use preset::Format;

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
}

/// One process, for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub u64);

/// What the runtime should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start `argv` in a process group of its own, write `stdin` to it and
    /// close it, and pipe its stdout back through
    /// [`ExecAgent::handle_stdout`].
    Spawn {
        run: RunId,
        argv: Vec<String>,
        stdin: Vec<u8>,
    },
    /// Kill the run's whole process group (its exit is still reported).
    Kill { run: RunId },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It ran and exited: its exit code (`None` when a signal ended it),
    /// and the end of what it wrote on stderr.
    Exited { code: Option<i32>, stderr: String },
    /// It could not be started.
    NotStarted(String),
}

/// A request waiting for a process slot.
struct Waiting {
    invoke: String,
    prompt: String,
    deadline: Instant,
}

struct Run {
    invoke: String,
    format: Box<dyn OutputFormat>,
    /// The next chunk's index.
    index: u64,
    deadline: Instant,
    prompt_tokens: u64,
    /// Characters of text sent, for a usage estimate.
    completion_chars: u64,
    usage: Option<(u64, u64)>,
    finished: bool,
    /// Its final frame went (or, cancelled, never will): the rest of its
    /// output is ignored until its exit frees the slot.
    settled: bool,
}

pub struct ExecAgent {
    plan: ExecPlan,
    ready: VecDeque<String>,
    actions: VecDeque<Action>,
    queue: VecDeque<Waiting>,
    runs: HashMap<RunId, Run>,
    next_run: u64,
}

impl ExecAgent {
    /// The first frame polled registers the plan's model.
    pub fn new(plan: ExecPlan, agent_id: &str) -> Self {
        let register = json!({
            "type": "register",
            "agent_id": agent_id,
            "label": format!("{} (agent exec)", plan.command.first().map_or("", String::as_str)),
            "models": [plan.model],
            "allowed_scopes": ["inference"],
        })
        .to_string();
        ExecAgent {
            plan,
            ready: VecDeque::from([register]),
            actions: VecDeque::new(),
            queue: VecDeque::new(),
            runs: HashMap::new(),
            next_run: 0,
        }
    }

    /// A frame from the provider.
    pub fn handle_message(&mut self, text: &str, now: Instant) {
        let Ok(msg) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let id = msg["id"].as_str().unwrap_or_default();
        match msg["type"].as_str() {
            Some("ping") => self.ready.push_back(r#"{"type":"pong"}"#.to_owned()),
            Some("model_invoke") if !id.is_empty() => {
                let prompt = prompt::render(&msg["payload"]);
                self.invoke(id.to_owned(), prompt, now);
            }
            Some("cancel") => self.cancel(id),
            _ => {}
        }
    }

    fn invoke(&mut self, invoke: String, prompt: String, now: Instant) {
        let waiting = Waiting {
            invoke,
            prompt,
            deadline: now + self.plan.timeout,
        };
        if self.runs.len() < self.plan.max_running {
            self.start(waiting);
        } else if self.queue.len() < self.plan.max_queued {
            self.queue.push_back(waiting);
        } else {
            let message = format!(
                "{} requests are running and {} waiting",
                self.runs.len(),
                self.queue.len()
            );
            self.ready
                .push_back(error_frame(&waiting.invoke, &message, "busy"));
        }
    }

    fn start(&mut self, waiting: Waiting) {
        let run = RunId(self.next_run);
        self.next_run += 1;
        let (argv, on_stdin) = preset::arguments(&self.plan.command, &waiting.prompt);
        let stdin = if on_stdin {
            waiting.prompt.as_bytes().to_vec()
        } else {
            Vec::new()
        };
        self.runs.insert(
            run,
            Run {
                invoke: waiting.invoke,
                format: self.plan.format.parser(),
                index: 0,
                deadline: waiting.deadline,
                prompt_tokens: estimate_tokens(&waiting.prompt),
                completion_chars: 0,
                usage: None,
                finished: false,
                settled: false,
            },
        );
        self.actions.push_back(Action::Spawn { run, argv, stdin });
    }

    fn cancel(&mut self, invoke: &str) {
        self.queue.retain(|w| w.invoke != invoke);
        let found = self
            .runs
            .iter_mut()
            .find(|(_, r)| r.invoke == invoke && !r.settled);
        if let Some((&run, state)) = found {
            state.settled = true;
            self.actions.push_back(Action::Kill { run });
        }
    }

    /// Bytes the run printed on stdout.
    pub fn handle_stdout(&mut self, run: RunId, bytes: &[u8]) {
        let Some(state) = self.runs.get_mut(&run) else {
            return;
        };
        if state.settled {
            return;
        }
        let mut events = Vec::new();
        state.format.feed(bytes, &mut events);
        self.apply(run, events);
    }

    /// The run is over: its stdout closed and its process was reaped.
    pub fn handle_exit(&mut self, run: RunId, exit: Exit) {
        if let Some(state) = self.runs.get_mut(&run).filter(|s| !s.settled) {
            let mut events = Vec::new();
            state.format.end(&mut events);
            self.apply(run, events);
        }
        let Some(state) = self.runs.remove(&run) else {
            return;
        };
        if !state.settled {
            let frame = match failure(&self.plan, &state, &exit) {
                Some(message) => error_frame(&state.invoke, &message, "agent_failed"),
                None => last_chunk(&state),
            };
            self.ready.push_back(frame);
        }
        if let Some(next) = self.queue.pop_front() {
            self.start(next);
        }
    }

    fn apply(&mut self, run: RunId, events: Vec<Event>) {
        let Some(state) = self.runs.get_mut(&run) else {
            return;
        };
        for event in events {
            if state.settled {
                return;
            }
            match event {
                Event::Text(text) => {
                    let mut delta = json!({"content": text});
                    if state.index == 0 {
                        delta["role"] = json!("assistant");
                    }
                    state.completion_chars += text.chars().count() as u64;
                    self.ready.push_back(
                        json!({"type": "model_stream_chunk", "id": state.invoke,
                               "chunk_index": state.index, "delta": delta, "finish_reason": null})
                        .to_string(),
                    );
                    state.index += 1;
                }
                Event::Usage { prompt, completion } => state.usage = Some((prompt, completion)),
                Event::Finished => state.finished = true,
                Event::Failed(message) => {
                    state.settled = true;
                    self.ready
                        .push_back(error_frame(&state.invoke, &message, "agent_failed"));
                    self.actions.push_back(Action::Kill { run });
                }
            }
        }
    }

    /// Runs and waiting requests past their deadline fail as timed out;
    /// their processes are killed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let secs = self.plan.timeout.as_secs();
        let message = format!("the agent did not answer within {secs} s");
        let (late, waiting): (Vec<_>, Vec<_>) =
            self.queue.drain(..).partition(|w| w.deadline <= now);
        self.queue = waiting.into();
        for w in late {
            self.ready
                .push_back(error_frame(&w.invoke, &message, "timeout"));
        }
        for (&run, state) in self.runs.iter_mut() {
            if !state.settled && state.deadline <= now {
                state.settled = true;
                self.ready
                    .push_back(error_frame(&state.invoke, &message, "timeout"));
                self.actions.push_back(Action::Kill { run });
            }
        }
    }

    /// The next frame for the provider.
    pub fn poll_transmit(&mut self) -> Option<String> {
        self.ready.pop_front()
    }

    /// The next process to start or kill.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest deadline of a run or a waiting request.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let runs = self
            .runs
            .values()
            .filter(|r| !r.settled)
            .map(|r| r.deadline);
        runs.chain(self.queue.iter().map(|w| w.deadline)).min()
    }

    /// Processes started and not yet reaped.
    pub fn running(&self) -> usize {
        self.runs.len()
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

/// The final chunk of a successful run, with its usage (the CLI's counts,
/// else estimates).
fn last_chunk(run: &Run) -> String {
    let (prompt, completion) = run
        .usage
        .unwrap_or_else(|| (run.prompt_tokens, tokens_for_chars(run.completion_chars)));
    let mut delta = json!({"content": ""});
    if run.index == 0 {
        delta["role"] = json!("assistant");
    }
    json!({"type": "model_stream_chunk", "id": run.invoke, "chunk_index": run.index,
           "delta": delta, "finish_reason": "stop",
           "usage": {"prompt_tokens": prompt, "completion_tokens": completion}})
    .to_string()
}

fn error_frame(invoke: &str, message: &str, code: &str) -> String {
    json!({"type": "error", "id": invoke, "error": {"message": message, "code": code}}).to_string()
}

#[cfg(test)]
mod tests;
