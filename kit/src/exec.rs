//! `agent exec` and `agent acp` as a runtime runs them: where they dial,
//! which agent they run and how (the plan), and where the runs start and
//! find the editor's tools. Both are the same loop around a core
//! [`ProcessAgent`]: only the plan differs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mcp_provider_core::agent::acp::{AcpAgent, AcpPlan};
use mcp_provider_core::agent::exec::link::{LinkId, LinkOutput, OUTBOX_BYTES};
use mcp_provider_core::agent::exec::{ExecAgent, ExecPlan};
use mcp_provider_core::agent::process::{Exit, ProcessAgent, RunId, Stdin};

use crate::dial::{FromLink, LinkEnd};
use crate::process::{self, Groups};

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
    pub link: crate::dial::Link,
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
/// [`OUTBOX`](mcp_provider_core::agent::exec::link::OUTBOX) lines and
/// [`Queued`] bytes) that a writer of its own empties, so a peer that does
/// not read holds up nobody but itself.
pub trait Outbox {
    /// Queues a line without waiting: false when the outbox is full (the
    /// peer is not reading) or its writer is gone.
    fn offer(&self, line: String) -> bool;
    /// Ends it now: its writer (and a connection's reader) stop.
    fn close(self);
}

/// The bytes a relay's outbox holds, shared by the agent's loop (which
/// counts a line in before queuing it) and the connection's writer (which
/// counts it out once written): the outbox's bound in bytes,
/// [`OUTBOX_BYTES`].
#[derive(Debug, Clone, Default)]
pub struct Queued(Arc<AtomicUsize>);

impl Queued {
    /// Counts a line of `len` bytes in, unless the outbox would then pass
    /// [`OUTBOX_BYTES`]; a line alone in an empty outbox always fits.
    pub fn admit(&self, len: usize) -> bool {
        let fits = |held: usize| (held == 0 || held + len <= OUTBOX_BYTES).then_some(held + len);
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, fits)
            .is_ok()
    }

    /// A line of `len` bytes was written.
    pub fn written(&self, len: usize) {
        self.0.fetch_sub(len, Ordering::AcqRel);
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

/// Inputs waiting for the agent: a run's reader waits past this, so a CLI
/// that prints faster than the link takes its output is held back.
pub const INPUTS: usize = 256;

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
}

impl<R> Exec<R> {
    pub fn new(remote: &RemoteExec) -> Self {
        Exec {
            agent: remote.plan.agent(),
            relays: HashMap::new(),
            stdins: HashMap::new(),
            link: 0,
        }
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
            Some(Input::Link(..)) => {}
            Some(Input::Stdout(run, bytes)) => agent.handle_stdout(run, &bytes, now),
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
                agent.handle_exit(run, exit, now);
                process::remove_gone_homes(remote, groups);
            }
        }
        None
    }
}

impl<R: Outbox> Exec<R> {
    /// Carries out what the agent has before the next wait: starts (with
    /// `start`, which gives back a stdin kept open), feeds and kills the
    /// runs it asks for, and hands its lines to their relays. The frames
    /// it has for the link are then the runtime's to send
    /// ([`ProcessAgent::poll_transmit`]).
    pub fn prepare(
        &mut self,
        remote: &RemoteExec,
        groups: &Groups,
        start: impl FnMut(RunId, Command, Stdin) -> Result<Option<R>, String>,
    ) {
        process::carry_out(self.agent.as_mut(), &mut self.stdins, groups, remote, start);
        self.write_relays();
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
}
