//! What an agent that answers the link by running processes asks of its
//! runtime, the same for `agent exec` (a CLI run per request) and
//! `agent acp` (one agent process kept warm): processes to start, feed and
//! kill, and what they printed and how they ended coming back.
//!
//! A runtime drives any [`ProcessAgent`] with one loop: it waits for a
//! provider frame, a process's output or exit, a tool relay's bytes, or
//! the agent's deadline, hands it over, then carries out the agent's
//! actions and sends its frames.

use std::time::Instant;

use crate::agent::exec::home::OwnHome;
use crate::agent::exec::link::{LinkId, LinkOutput};

/// One process the agent started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub u64);

/// What a started process's stdin gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stdin {
    /// These bytes, then its end: a CLI that reads its prompt and answers.
    Once(Vec<u8>),
    /// Nothing yet: it stays open for [`Action::Write`]s, as long as the
    /// process lives.
    Open,
}

/// What the runtime should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start `argv` in a process group of its own, give it `stdin`, and
    /// pipe its stdout back through [`ProcessAgent::handle_stdout`].
    Spawn {
        run: RunId,
        argv: Vec<String>,
        stdin: Stdin,
        /// Variables set for it, beside the inherited ones.
        env: Vec<(String, String)>,
        /// A home of its own to make first, its variable set for it; to be
        /// removed once the run is gone.
        home: Option<OwnHome>,
    },
    /// Write `line` and a newline to the stdin a spawn kept open. While
    /// its bounded outbox is full, the process's stdout is not read (it
    /// waits for it to read, as a pipe would make it); one that reads
    /// nothing of it for a turn's timeout is killed (its exit is reported
    /// as usual).
    Write { run: RunId, line: String },
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

/// An agent that answers the provider's link with processes. Every
/// spawn's exit is reported exactly once (a process that could not start
/// included).
pub trait ProcessAgent: Send {
    /// A frame from the provider.
    fn handle_message(&mut self, text: &str, now: Instant);
    /// The link dropped: the provider failed every request it had sent.
    fn link_lost(&mut self);
    /// Bytes the run printed on stdout.
    fn handle_stdout(&mut self, run: RunId, bytes: &[u8], now: Instant);
    /// The run is over: its stdout closed and its process was reaped.
    fn handle_exit(&mut self, run: RunId, exit: Exit, now: Instant);
    /// [`ProcessAgent::poll_timeout`]'s moment came.
    fn handle_timeout(&mut self, now: Instant);
    /// Bytes from a tool relay's connection (a new one, opened at `now`,
    /// starts with its hello).
    fn handle_link(&mut self, id: LinkId, bytes: &[u8], now: Instant);
    /// A tool relay's connection closed.
    fn handle_link_closed(&mut self, id: LinkId);
    /// The next frame for the provider.
    fn poll_transmit(&mut self) -> Option<String>;
    /// The next process to start, feed or kill.
    fn poll_action(&mut self) -> Option<Action>;
    /// The next line for a tool relay, or one to close.
    fn poll_link(&mut self) -> Option<LinkOutput>;
    /// When to call [`ProcessAgent::handle_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;
}
