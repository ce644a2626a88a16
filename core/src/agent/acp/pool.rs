//! The agent's processes: up to [`AcpPlan::max_processes`] of them, each in
//! a slot its sessions name, and where a new session opens.
//!
//! One process serves many sessions; another is started only when every
//! session of those running is busy, and ended again once its sessions are
//! gone (idle past their time). Kept small and pure: [`choose`] reads the
//! state and says what to do, the agent does it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{AcpPlan, Pending, Session};
use crate::agent::process::RunId;
use crate::lines::LineBuffer;

/// An agent process.
pub(super) struct Running {
    pub run: RunId,
    pub lines: LineBuffer,
    pub started: Instant,
    /// It answered `initialize`.
    pub ready: bool,
    /// It can load a session it had (`loadSession`).
    pub loads: bool,
    /// Why it is being ended, when it is.
    pub fault: Option<String>,
    /// It is being ended for want of work: nothing fails, nothing restarts.
    pub retired: bool,
    /// A login method it offers that needs no person, if any.
    pub headless: Option<String>,
    /// It was logged in with it (once is enough).
    pub tried_login: bool,
}

/// A place for an agent process; its sessions name it by index, so it
/// outlives the processes it runs (a session kept from one that ended is
/// loaded into the next).
#[derive(Default)]
pub(super) struct Slot {
    pub process: Option<Running>,
    /// When to start it again, after its process ended early.
    pub retry_at: Option<Instant>,
    /// The wait after its process's next early end.
    pub backoff: Duration,
    /// Its last process had served (answered `initialize`): it is started
    /// again even with nothing waiting, to keep the agent warm.
    pub warm: bool,
}

impl Slot {
    /// Its process answered `initialize` and is not being ended.
    pub fn ready(&self) -> bool {
        self.process
            .as_ref()
            .is_some_and(|p| p.ready && p.fault.is_none())
    }

    /// Its process is starting, not ready yet.
    pub fn starting(&self) -> bool {
        self.process
            .as_ref()
            .is_some_and(|p| !p.ready && p.fault.is_none())
    }

    /// No process runs in it, and one may start now.
    fn free(&self, now: Instant) -> bool {
        self.process.is_none() && self.retry_at.is_none_or(|at| at <= now)
    }
}

/// Where a session is: its process's slot, and its id in that process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct At {
    pub slot: usize,
    pub id: String,
}

/// Where the next new session goes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Room {
    /// Opens in this slot's process.
    Open(usize),
    /// Opens in this session's process, once the session (idle, the least
    /// recently used) is closed.
    Evict(At),
    /// A process starts in this slot; the session waits for it.
    Start(usize),
    /// Waits: for a process starting, a session opening, or a turn ending.
    Wait,
}

/// Where a new session opens: in a ready process with room (the least
/// busy), waiting for one starting or opening a session if only they have
/// room; when none has, in a new process while fewer than the plan's
/// run; else in place of the least recently used idle session (one no
/// conversation continues first). A process opens one session at a time:
/// agents open them one after another anyway, and Gemini CLI leaves some
/// unanswered when asked for many at once. A slot `busy` says is not for
/// this session now, as if opening one.
pub(super) fn choose(
    slots: &[Slot],
    sessions: &HashMap<At, Session>,
    pending: &HashMap<u64, (usize, Pending)>,
    plan: &AcpPlan,
    busy: &dyn Fn(usize) -> bool,
    now: Instant,
) -> Room {
    let opening = |slot: usize| {
        busy(slot)
            || pending.values().any(|(s, p)| {
                *s == slot
                    && matches!(
                        p,
                        Pending::NewSession(_)
                            | Pending::Models
                            | Pending::Probe(_)
                            | Pending::Authenticate(_)
                    )
            })
    };
    let count = |slot: usize, busy: bool| {
        sessions
            .iter()
            .filter(|(at, s)| at.slot == slot && (!busy || s.turn.is_some()))
            .count()
    };
    let up =
        |slot: &usize| !busy(*slot) && slots.get(*slot).is_some_and(|s| s.ready() || s.starting());
    let with_room: Vec<usize> = (0..slots.len())
        .filter(up)
        .filter(|&slot| count(slot, false) < plan.max_sessions)
        .collect();
    if !with_room.is_empty() {
        let ready = |slot: &usize| slots.get(*slot).is_some_and(Slot::ready) && !opening(*slot);
        return with_room
            .into_iter()
            .filter(ready)
            .min_by_key(|&slot| count(slot, true))
            .map_or(Room::Wait, Room::Open);
    }
    let running = slots.iter().filter(|s| s.process.is_some()).count();
    if running < plan.max_processes {
        let slot = slots
            .iter()
            .position(|s| s.free(now))
            .unwrap_or(slots.len());
        if slot < plan.max_processes {
            return Room::Start(slot);
        }
    }
    let open_in = |at: &At| slots.get(at.slot).is_some_and(Slot::ready) && !opening(at.slot);
    sessions
        .iter()
        .filter(|(at, s)| s.turn.is_none() && open_in(at))
        .min_by_key(|(_, s)| (s.key.is_some(), s.last_used))
        .map_or(Room::Wait, |(at, _)| Room::Evict(at.clone()))
}
