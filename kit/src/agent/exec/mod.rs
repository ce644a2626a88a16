//! `agent exec` and `agent acp` as a runtime runs them: where they dial,
//! which agent they run and how (the plan), and where the runs start and
//! find the editor's tools. Both are the same loop around a core
//! [`ProcessAgent`]: only the plan differs.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_provider_core::agent::acp::{AcpAgent, AcpPlan};
use mcp_provider_core::agent::exec::link::{LinkId, LinkOutput, OUTBOX, OUTBOX_BYTES};
use mcp_provider_core::agent::exec::{ExecAgent, ExecPlan};
use mcp_provider_core::agent::process::{Exit, ProcessAgent, RunId, Stdin};

use crate::agent::dial::{FromLink, LinkEnd};
use crate::process::{Ended, Groups, NotStarted, Tail};

mod actions;

/// What answers the link's requests.
#[derive(Debug, Clone)]
pub enum Plan {
    /// A CLI run per request (`agent exec`).
    Exec(ExecPlan),
    /// One agent process kept warm, spoken to over the Agent Client
    /// Protocol (`agent acp`).
    Acp(AcpPlan),
}

impl Plan {
    /// The longest a turn may take: a process that reads nothing of its
    /// stdin for this long cannot be answering anyone.
    fn timeout(&self) -> Duration {
        match self {
            Plan::Exec(plan) => plan.timeout,
            Plan::Acp(plan) => plan.timeout,
        }
    }

    /// The core's agent for this plan, registering as `agent_id`.
    fn agent(&self) -> Box<dyn ProcessAgent> {
        match self {
            Plan::Exec(plan) => Box::new(ExecAgent::new(plan.clone(), "exec")),
            Plan::Acp(plan) => Box::new(AcpAgent::new(plan.clone(), "acp", Instant::now())),
        }
    }
}

/// `agent exec` or `agent acp` dialing a provider.
#[derive(Debug, Clone)]
pub struct RemoteExec {
    pub link: crate::agent::dial::Link,
    pub plan: Plan,
    /// Where the runs start (default: where `agent exec` was started).
    pub cwd: Option<PathBuf>,
    /// Our own variables (`MCP_PROVIDER_*`) the runs get all the same.
    pub pass_env: Vec<String>,
    /// Where runs' tool relays connect, when the CLI is given the editor's
    /// tools.
    pub tool_socket: Option<PathBuf>,
    /// Where runs whose CLI gets a home of its own have it (in the tool
    /// directory).
    pub run_homes: Option<PathBuf>,
}

/// A relay's connection, or a kept process's stdin, as a runtime holds
/// it: lines go into an outbox (of
/// [`OUTBOX`] lines and
/// [`Queued`] bytes) that a writer of its own empties, so a peer that does
/// not read holds up nobody but itself.
pub trait Outbox {
    /// Queues a line without waiting: false when the outbox is full (the
    /// peer is not reading) or its writer is gone.
    fn offer(&self, line: String) -> bool;
    /// Ends it now: its writer (and a connection's reader) stop.
    fn close(self);
    /// What it holds.
    fn queued(&self) -> &Queued;
}

/// A kept stdin holding this many bytes, or half its [`OUTBOX`] lines, is
/// full: its process's stdout is neither read nor handed to the agent
/// until it has read most of it ([`Queued::drained`]). The process is held
/// back as a pipe would hold it, instead of its answers piling up.
pub const STDIN_FULL: usize = 1 << 20;

/// How often the agent's loop, and a run's stdout reader, look whether a
/// full stdin has drained.
pub const DRAIN_POLL: Duration = Duration::from_millis(10);

/// What an outbox holds, shared by the agent's loop (which counts a line
/// in before queuing it) and its writer (which counts it out once
/// written): the outbox's bound in bytes, [`OUTBOX_BYTES`], and, for a
/// kept stdin, whether it is full.
#[derive(Debug, Clone, Default)]
pub struct Queued(Arc<Level>);

#[derive(Debug, Default)]
struct Level {
    bytes: AtomicUsize,
    lines: AtomicUsize,
    /// Its writer is gone: nothing it holds will be read.
    ended: AtomicBool,
}

impl Queued {
    /// Counts a line of `len` bytes in, unless the outbox would then pass
    /// [`OUTBOX_BYTES`]; a line alone in an empty outbox always fits.
    pub fn admit(&self, len: usize) -> bool {
        let fits = |held: usize| (held == 0 || held + len <= OUTBOX_BYTES).then_some(held + len);
        let admitted = self
            .0
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, fits)
            .is_ok();
        if admitted {
            self.0.lines.fetch_add(1, Ordering::AcqRel);
        }
        admitted
    }

    /// A line of `len` bytes was written.
    pub fn written(&self, len: usize) {
        self.0.bytes.fetch_sub(len, Ordering::AcqRel);
        self.0.lines.fetch_sub(1, Ordering::AcqRel);
    }

    /// The bytes held.
    pub fn bytes(&self) -> usize {
        self.0.bytes.load(Ordering::Acquire)
    }

    /// Whether its process must wait before more of its output is read:
    /// it holds [`STDIN_FULL`] bytes or half its lines, and its writer
    /// still writes.
    pub fn full(&self) -> bool {
        let lines = self.0.lines.load(Ordering::Acquire);
        !self.ended() && (self.bytes() >= STDIN_FULL || lines >= OUTBOX / 2)
    }

    /// Whether a full outbox has drained enough for its process's output
    /// to be read again: to half of what makes it full, or its writer is
    /// gone.
    pub fn drained(&self) -> bool {
        let lines = self.0.lines.load(Ordering::Acquire);
        self.ended() || (self.bytes() < STDIN_FULL / 2 && lines < OUTBOX / 4)
    }

    fn ended(&self) -> bool {
        self.0.ended.load(Ordering::Acquire)
    }

    /// Marks its writer gone when dropped: held by the writer for as long
    /// as it writes, however it stops.
    pub fn writing(&self) -> Writing {
        Writing(self.clone())
    }
}

/// See [`Queued::writing`].
pub struct Writing(Queued);

impl Drop for Writing {
    fn drop(&mut self) {
        self.0 .0.ended.store(true, Ordering::Release);
    }
}

/// What the agent's loop waits for, in every runtime; `R` is the
/// runtime's [`Outbox`].
pub enum Input<R> {
    /// From the link of this number: a later link's frames are told from
    /// an earlier one's stragglers.
    Link(u64, FromLink),
    Stdout(RunId, Vec<u8>),
    Exit(RunId, Exit),
    /// A relay connected: where its lines are written.
    RelayOpened(LinkId, R),
    Relay(LinkId, Vec<u8>),
    RelayClosed(LinkId),
}

impl<R> Input<R> {
    /// The exit of a run whose group [`Groups::ended`]: `code` its leader's
    /// exit code, `stderr` what was read of its stderr by then.
    pub fn ended(ended: Ended, code: Option<i32>, stderr: Option<Tail>) -> Self {
        let (run, exit) = ended.exit(code, stderr);
        Input::Exit(run, exit)
    }
}

/// Inputs waiting for the agent: a run's reader waits past this, so a CLI
/// that prints faster than the link takes its output is held back.
pub const EXEC_INPUTS: usize = 256;

/// The agent between its waits, the same in every runtime: the core's
/// agent, the relays' connections, the stdins kept open, and the number of
/// the link it serves. A runtime waits for an input (or the agent's
/// deadline), hands it to [`Exec::handle`], then carries out what the
/// agent has: runs to start, feed or kill and lines for relays
/// ([`Exec::prepare`]), frames for the link.
pub struct Exec<R> {
    pub agent: Box<dyn ProcessAgent>,
    pub relays: HashMap<LinkId, R>,
    /// The stdins of the runs started with theirs kept open.
    pub stdins: HashMap<RunId, R>,
    /// Frames of earlier links are stragglers, and dropped.
    pub link: u64,
    /// Output of runs whose stdin is full, not handed to the agent yet.
    held: HashMap<RunId, VecDeque<Vec<u8>>>,
    /// The runs whose stdin is full, and how far it has drained.
    stalls: HashMap<RunId, Stall>,
    /// How long a full stdin may go without draining at all
    /// ([`Plan::timeout`]).
    patience: Duration,
}

/// A full stdin: the fewest bytes it held so far, since when, and whether
/// its run was killed for holding them too long.
struct Stall {
    low: usize,
    since: Instant,
    killed: bool,
}

impl<R: Outbox> Exec<R> {
    pub fn new(remote: &RemoteExec) -> Self {
        Exec {
            agent: remote.plan.agent(),
            relays: HashMap::new(),
            stdins: HashMap::new(),
            link: 0,
            held: HashMap::new(),
            stalls: HashMap::new(),
            patience: remote.plan.timeout(),
        }
    }

    /// When the loop has something to do without an input: the agent's
    /// deadline, soon when output is held back for a stdin to drain, or
    /// when a full stdin will have gone too long without draining.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let poll = (!self.held.is_empty())
            .then(|| mcp_provider_core::time::later(Instant::now(), DRAIN_POLL));
        let stalls = self.stalls.values().filter(|s| !s.killed);
        let stalls = stalls.map(|s| mcp_provider_core::time::later(s.since, self.patience));
        let agent = self.agent.poll_timeout();
        agent.into_iter().chain(poll).chain(stalls).min()
    }

    /// Handles what waiting found (`None`: the agent's deadline passed);
    /// returns how the link ended, when it did. The runs that link asked
    /// for are then to be killed now, not when (or if) the provider is
    /// back: carry out the agent's outputs before dialing again.
    pub fn handle(
        &mut self,
        input: Option<Input<R>>,
        remote: &RemoteExec,
        groups: &Groups,
    ) -> Option<LinkEnd> {
        let now = Instant::now();
        let input = match input {
            Some(Input::Stdout(run, bytes)) => {
                self.stdout(run, bytes, now);
                return None;
            }
            input => input,
        };
        let agent = &mut self.agent;
        match input {
            None => agent.handle_timeout(now),
            Some(Input::Link(n, FromLink::Frame(frame))) if n == self.link => {
                agent.handle_message(&frame, now)
            }
            Some(Input::Link(n, FromLink::Closed(end))) if n == self.link => {
                agent.link_lost();
                self.link += 1;
                return Some(end);
            }
            Some(Input::Link(..) | Input::Stdout(..)) => {}
            Some(Input::RelayOpened(id, relay)) => {
                self.relays.insert(id, relay);
                // Its time to say its hello counts from its opening, not
                // its first bytes: one that never speaks is closed too.
                agent.handle_link(id, &[], now);
            }
            Some(Input::Relay(id, bytes)) if self.relays.contains_key(&id) => {
                agent.handle_link(id, &bytes, now)
            }
            // Read before its relay was closed: nobody is there any more.
            Some(Input::Relay(..)) => {}
            Some(Input::RelayClosed(id)) => {
                self.relays.remove(&id);
                agent.handle_link_closed(id);
            }
            Some(Input::Exit(run, exit)) => {
                self.stdins.remove(&run);
                // What it printed before it ended comes first.
                self.stalls.remove(&run);
                for chunk in self.held.remove(&run).into_iter().flatten() {
                    agent.handle_stdout(run, &chunk, now);
                }
                agent.handle_exit(run, exit, now);
                actions::remove_gone_homes(remote, groups);
            }
        }
        None
    }

    /// Carries out what the agent has before the next wait: starts (with
    /// `start`, which gives back a stdin kept open), feeds and kills the
    /// runs it asks for, and hands its lines to their relays; then hands
    /// the agent output it held back, a chunk at a time, while its run's
    /// stdin has room. The frames it has for the link are then the
    /// runtime's to send ([`ProcessAgent::poll_transmit`]).
    pub fn prepare(
        &mut self,
        remote: &RemoteExec,
        groups: &Groups,
        mut start: impl FnMut(RunId, Command, Stdin) -> Result<Option<R>, NotStarted>,
    ) {
        loop {
            actions::carry_out(
                self.agent.as_mut(),
                &mut self.stdins,
                groups,
                remote,
                &mut start,
            );
            self.write_relays();
            let Some((run, chunk)) = self.release() else {
                break;
            };
            self.agent.handle_stdout(run, &chunk, Instant::now());
        }
        self.kill_stalled(groups);
    }

    /// Output of `run`: handed to the agent, unless its stdin is full (or
    /// earlier output waits): then held back until the stdin drains.
    fn stdout(&mut self, run: RunId, bytes: Vec<u8>, now: Instant) {
        let full = self.stdins.get(&run).is_some_and(|s| s.queued().full());
        if !full && !self.held.contains_key(&run) {
            return self.agent.handle_stdout(run, &bytes, now);
        }
        self.held.entry(run).or_default().push_back(bytes);
    }

    /// The next chunk of held-back output whose run's stdin is no longer
    /// full (or is gone).
    fn release(&mut self) -> Option<(RunId, Vec<u8>)> {
        let stdins = &self.stdins;
        let room = |run: &RunId| stdins.get(run).is_none_or(|s| !s.queued().full());
        let run = self.held.keys().copied().find(room)?;
        let held = self.held.get_mut(&run)?;
        let chunk = held.pop_front();
        if held.is_empty() {
            self.held.remove(&run);
        }
        Some((run, chunk?))
    }

    /// Kills a run whose stdin is full and has not drained at all for as
    /// long as a turn may take: it reads nothing, and cannot be answering
    /// anyone. Its exit is reported as usual.
    fn kill_stalled(&mut self, groups: &Groups) {
        let now = Instant::now();
        let stdins = &self.stdins;
        self.stalls
            .retain(|run, _| stdins.get(run).is_some_and(|s| s.queued().full()));
        for (run, stdin) in stdins.iter().filter(|(_, s)| s.queued().full()) {
            let bytes = stdin.queued().bytes();
            let stall = self.stalls.entry(*run).or_insert(Stall {
                low: bytes,
                since: now,
                killed: false,
            });
            if bytes < stall.low {
                stall.low = bytes;
                stall.since = now;
            } else if !stall.killed && now.duration_since(stall.since) >= self.patience {
                let secs = self.patience.as_secs();
                tracing::warn!("an agent process read nothing of its stdin for {secs} s: killed");
                stall.killed = true;
                groups.kill(*run);
            }
        }
    }

    /// Hands the agent's lines to their relays' outboxes, and closes the
    /// relays it is done with and those whose outbox is full; never waits,
    /// so one run's relays cannot delay another run's lines.
    fn write_relays(&mut self) {
        while let Some(output) = self.agent.poll_link() {
            let id = match output {
                LinkOutput::Send(id, mut line) => {
                    line.push('\n');
                    match self.relays.get(&id) {
                        Some(relay) if !relay.offer(line) => id,
                        _ => continue,
                    }
                }
                LinkOutput::Close(id) => id,
            };
            if let Some(relay) = self.relays.remove(&id) {
                relay.close();
            }
            self.agent.handle_link_closed(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outbox_takes_lines_up_to_its_bytes_and_one_long_line_alone() {
        let queued = Queued::default();
        assert!(queued.admit(OUTBOX_BYTES - 10));
        assert!(queued.admit(10));
        assert!(!queued.admit(1), "full");
        queued.written(OUTBOX_BYTES - 10);
        assert!(queued.admit(100));
        queued.written(110);
        assert!(queued.admit(3 * OUTBOX_BYTES), "alone in an empty outbox");
        assert!(!queued.admit(1));
    }

    #[test]
    fn a_stdin_is_full_at_its_bytes_or_half_its_lines_until_it_drains_or_its_writer_goes() {
        let queued = Queued::default();
        assert!(queued.admit(STDIN_FULL - 1) && !queued.full());
        assert!(queued.admit(1) && queued.full() && !queued.drained());
        queued.written(STDIN_FULL - 1);
        assert!(!queued.full() && queued.drained());
        queued.written(1);
        for _ in 0..OUTBOX / 2 {
            assert!(queued.admit(10));
        }
        assert!(queued.full());
        for _ in 0..OUTBOX / 4 {
            queued.written(10);
        }
        assert!(
            !queued.full() && !queued.drained(),
            "not yet drained enough"
        );
        queued.written(10);
        assert!(queued.drained());
        assert!(queued.admit(STDIN_FULL) && queued.full());
        drop(queued.writing());
        assert!(
            !queued.full() && queued.drained(),
            "nothing waits on a writer that is gone"
        );
    }
}
