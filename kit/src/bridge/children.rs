//! The bridge's live children: each one's stdin and process group, or a
//! remote server's client, by its id; what the bridge asks of one carried
//! out under the bridge's lock, and what waits for that lock to be let go.

use std::sync::{Arc, Mutex, MutexGuard};

use mcp_provider_core::bridge::{BridgeOutput, ChildId, StopSignal};
use mcp_provider_core::IdMap;

use crate::few::Few;
use crate::outbound::upstream::RemoteRun;
use crate::process::child_stdin::{Stdin, Written};
use crate::process::{self, watchdog};

/// The bridge's live children.
#[derive(Default)]
pub(super) struct Children(Mutex<IdMap<ChildId, Running>>);

/// A live child: a process (its stdin and its process group), or a remote
/// server's client.
pub(super) enum Running {
    Process { stdin: Arc<Stdin>, pgid: u32 },
    Remote(Arc<RemoteRun>),
}

impl Drop for Running {
    /// Ends the stdin writer thread (its child is gone or going).
    fn drop(&mut self) {
        if let Running::Process { stdin, .. } = self {
            stdin.close();
        }
    }
}

/// A running child's parts, taken out of the map to act on.
enum Handle {
    Process(Arc<Stdin>, u32),
    Remote(Arc<RemoteRun>),
}

impl Running {
    fn handle(&self) -> Handle {
        match self {
            Running::Process { stdin, pgid } => Handle::Process(stdin.clone(), *pgid),
            Running::Remote(remote) => Handle::Remote(remote.clone()),
        }
    }

    /// The process group to kill, for a process.
    fn pgid(&self) -> Option<u32> {
        match self {
            Running::Process { pgid, .. } => Some(*pgid),
            Running::Remote(_) => None,
        }
    }
}

/// What waits for the bridge's lock to be let go: lines written to a
/// child's stdin, or sent to a remote server; a remote server's client
/// ended.
pub(super) enum Flush {
    Stdin(Arc<Stdin>),
    Remote(Arc<RemoteRun>),
    Close(Arc<RemoteRun>),
}

impl Flush {
    pub(super) fn run(self) {
        match self {
            Flush::Stdin(stdin) => stdin.flush(),
            Flush::Remote(remote) => remote.flush(),
            Flush::Close(remote) => remote.close(),
        }
    }

    /// Whether this is the same flush as `other` (each is done once).
    fn same(&self, other: &Flush) -> bool {
        match (self, other) {
            (Flush::Stdin(a), Flush::Stdin(b)) => Arc::ptr_eq(a, b),
            (Flush::Remote(a), Flush::Remote(b)) | (Flush::Close(a), Flush::Close(b)) => {
                Arc::ptr_eq(a, b)
            }
            _ => false,
        }
    }
}

impl Children {
    fn map(&self) -> MutexGuard<'_, IdMap<ChildId, Running>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn insert(&self, child: ChildId, running: Running) {
        self.map().insert(child, running);
    }

    /// `child` is gone: its parts, if it was here.
    pub(super) fn remove(&self, child: ChildId) -> Option<Running> {
        self.map().remove(&child)
    }

    /// A process exited: it is forgotten, and its group killed (whatever
    /// the group leader left behind, such as the children of an `sh -c`).
    pub(super) fn exited(&self, child: ChildId) {
        if let Some(pgid) = self.remove(child).as_ref().and_then(Running::pgid) {
            process::kill_group(pgid);
            watchdog::forget(pgid);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    /// SIGKILL to every child's group.
    pub(super) fn kill_all(&self) {
        for pgid in self.map().values().filter_map(Running::pgid) {
            process::kill_group(pgid);
        }
    }

    /// Carries out what the bridge asks of a running child, under the
    /// bridge's lock and in its order: a line is queued on the child's
    /// stdin (and the stdin put in `flushes`, to be written once the lock
    /// is let go), a close or signal is done at once. Spawns are done after
    /// the lock is let go (they call the bridge again), not here.
    pub(super) fn to_child(&self, child: ChildId, action: BridgeOutput, flushes: &mut Few<Flush>) {
        let Some(running) = self.map().get(&child).map(Running::handle) else {
            return;
        };
        let flush = match (action, running) {
            (BridgeOutput::ToChild { line, .. }, Handle::Process(stdin, _)) => {
                if stdin.queue_line(line) == Written::Dropped {
                    tracing::warn!(
                        "an MCP server is not reading its stdin: a message to it was dropped"
                    );
                }
                Flush::Stdin(stdin)
            }
            (BridgeOutput::ToChild { line, outline }, Handle::Remote(remote)) => {
                remote.queue(line, outline);
                Flush::Remote(remote)
            }
            (BridgeOutput::CloseStdin, Handle::Process(stdin, _)) => {
                stdin.close();
                return;
            }
            (BridgeOutput::Signal(signal), Handle::Process(_, pgid)) => {
                let signal = match signal {
                    StopSignal::Term => libc::SIGTERM,
                    StopSignal::Kill => libc::SIGKILL,
                };
                process::signal_group(pgid, signal);
                return;
            }
            // A remote server has no stdin nor signals: being stopped ends
            // its client.
            (BridgeOutput::CloseStdin | BridgeOutput::Signal(_), Handle::Remote(remote)) => {
                Flush::Close(remote)
            }
            // The core routes client messages itself; starts wait for the
            // lock to be let go.
            (
                BridgeOutput::Spawn { .. }
                | BridgeOutput::Connect { .. }
                | BridgeOutput::ToClient { .. },
                _,
            ) => return,
        };
        if !flushes.iter().any(|queued| queued.same(&flush)) {
            flushes.push(flush);
        }
    }
}
