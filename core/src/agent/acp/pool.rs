//! The agent's processes: up to [`AcpPlan::max_processes`] of them, each in
//! a slot its sessions name, the requests sent to them, and where a new
//! session opens.
//!
//! One process serves many sessions; another is started when every
//! session of those running is busy, or ahead of need when none has room
//! left for a spare session (see `spare`), and ended again once its
//! sessions are gone (idle past their time). [`Pool`] owns the processes: it starts,
//! feeds and ends them, and restarts one that ended after a growing wait.
//! [`choose`] reads the state and says where a session opens, the agent
//! does it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{rpc, AcpPlan, Pending, Session, MAX_LINE, PROTOCOL_VERSION};
use crate::agent::process::{Action, RunId, Stdin};
use crate::lines::LineBuffer;
use crate::time::later;

/// The wait before restarting an agent that ended early, doubled each time
/// it does so again, up to [`MAX_BACKOFF`].
pub(super) const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An agent that ran this long before it ended is restarted at once.
pub(super) const STABLE: Duration = Duration::from_secs(10);

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

/// The agent's processes, the requests sent to them, and what the runtime
/// is to do with them.
pub(super) struct Pool {
    /// The agent's command line and environment.
    command: Vec<String>,
    env: Vec<(String, String)>,
    /// The longest a process may take to answer `initialize`.
    start_timeout: Duration,
    pub slots: Vec<Slot>,
    /// Requests sent, by id: for which slot's process, and what for.
    pub pending: HashMap<u64, (usize, Pending)>,
    actions: VecDeque<Action>,
    next_run: u64,
    next_id: u64,
    /// Processes started, for observing.
    starts: u64,
}

impl Pool {
    pub fn new(plan: &AcpPlan) -> Self {
        Pool {
            command: plan.command.clone(),
            env: plan.env.clone(),
            start_timeout: plan.start_timeout,
            slots: Vec::new(),
            pending: HashMap::new(),
            actions: VecDeque::new(),
            next_run: 0,
            next_id: 0,
            starts: 0,
        }
    }

    /// Processes started so far.
    pub fn starts(&self) -> u64 {
        self.starts
    }

    /// Processes running.
    pub fn processes(&self) -> usize {
        self.slots.iter().filter(|s| s.process.is_some()).count()
    }

    /// Sends a request to the process of `slot`.
    pub fn call(&mut self, slot: usize, method: &str, params: Value, pending: Pending) {
        let Some(run) = self.run_of(slot) else {
            return;
        };
        let id = self.next_id;
        self.next_id += 1;
        tracing::debug!("ACP agent: request {id} sent to process {slot}: {method}");
        self.pending.insert(id, (slot, pending));
        self.actions.push_back(Action::Write {
            run,
            line: rpc::request(id, method, params),
        });
    }

    /// Writes `line` to the process of `slot`.
    pub fn write(&mut self, slot: usize, line: String) {
        if let Some(run) = self.run_of(slot) {
            self.actions.push_back(Action::Write { run, line });
        }
    }

    fn run_of(&self, slot: usize) -> Option<RunId> {
        self.slots.get(slot)?.process.as_ref().map(|p| p.run)
    }

    /// The slot of a process.
    pub fn slot_of(&self, run: RunId) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.process.as_ref().is_some_and(|p| p.run == run))
    }

    /// Starts an agent process in `slot` (a new one past the last), and
    /// says `initialize` to it.
    pub fn start(&mut self, slot: usize, now: Instant) {
        if slot >= self.slots.len() {
            self.slots.resize_with(slot + 1, || Slot {
                backoff: FIRST_BACKOFF,
                ..Slot::default()
            });
        }
        let run = RunId(self.next_run);
        self.next_run += 1;
        self.starts += 1;
        self.actions.push_back(Action::Spawn {
            run,
            argv: self.command.clone(),
            stdin: Stdin::Open,
            env: self.env.clone(),
            home: None,
        });
        let Some(place) = self.slots.get_mut(slot) else {
            return;
        };
        place.retry_at = None;
        place.process = Some(Running {
            run,
            lines: LineBuffer::new(MAX_LINE),
            started: now,
            ready: false,
            loads: false,
            fault: None,
            retired: false,
            headless: None,
            tried_login: false,
        });
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "clientCapabilities": {"fs": {"readTextFile": false, "writeTextFile": false}, "terminal": false},
            "clientInfo": {"name": "mcp-provider", "version": env!("CARGO_PKG_VERSION")},
        });
        self.call(slot, "initialize", params, Pending::Initialize);
    }

    /// Ends the process of `slot` for `why` (its exit then fails what it
    /// had).
    pub fn end(&mut self, slot: usize, why: String) {
        let process = self.slots.get_mut(slot).and_then(|s| s.process.as_mut());
        if let Some(process) = process.filter(|p| p.fault.is_none()) {
            tracing::warn!("ACP agent: {why}");
            process.fault = Some(why);
            self.actions.push_back(Action::Kill { run: process.run });
        }
    }

    /// The process of `slot` ended: the requests it had are given back,
    /// and the slot is started again at once if it had run a while, after
    /// a growing wait if it keeps ending early.
    pub fn ended(&mut self, slot: usize, process: &Running, now: Instant) -> Vec<Pending> {
        let its: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, (s, _))| *s == slot)
            .map(|(id, _)| *id)
            .collect();
        let had = its
            .into_iter()
            .filter_map(|id| self.pending.remove(&id).map(|(_, pending)| pending))
            .collect();
        if let Some(place) = self.slots.get_mut(slot) {
            place.warm = process.ready;
            if process.ready && now.duration_since(process.started) >= STABLE {
                place.backoff = FIRST_BACKOFF;
                place.retry_at = Some(now);
            } else {
                place.retry_at = Some(now + place.backoff);
                place.backoff = (place.backoff * 2).min(MAX_BACKOFF);
            }
        }
        had
    }

    /// Ends the processes past the first that have no session but their
    /// spare and nothing to do (unless the agent is `busy`: requests wait,
    /// or new conversations come fast), while another has room for a
    /// conversation: another starts when the work comes back.
    pub fn retire_idle(&mut self, sessions: &HashMap<At, Session>, plan: &AcpPlan, busy: bool) {
        let first = self.slots.iter().position(Slot::ready);
        let used = |slot: usize| {
            sessions
                .iter()
                .filter(|(at, s)| at.slot == slot && !s.spare)
                .count()
        };
        let ready: Vec<bool> = self.slots.iter().map(Slot::ready).collect();
        let roomy = |slot: usize| ready.get(slot) == Some(&true) && used(slot) < plan.max_sessions;
        for slot in 0..self.slots.len() {
            let room_elsewhere = (0..self.slots.len()).any(|s| s != slot && roomy(s));
            let unused = Some(slot) != first
                && ready.get(slot) == Some(&true)
                && used(slot) == 0
                && room_elsewhere
                && !self.pending.values().any(|(s, _)| *s == slot);
            let process = self.slots.get_mut(slot).and_then(|s| s.process.as_mut());
            if let Some(process) = process.filter(|_| unused && !busy) {
                tracing::info!("ACP agent: an agent process with no sessions left is ended");
                process.retired = true;
                process.fault = Some("it had no sessions left".into());
                self.actions.push_back(Action::Kill { run: process.run });
            }
        }
    }

    /// A process that did not answer `initialize` in time is ended; a
    /// slot waiting out its backoff is started again when requests wait
    /// (or, one process kept warm, when none runs).
    pub fn handle_timeout(&mut self, waiting: bool, now: Instant) {
        let silent: Vec<usize> = self
            .start_due()
            .filter(|(_, due)| *due <= now)
            .map(|(slot, _)| slot)
            .collect();
        for slot in silent {
            let secs = self.start_timeout.as_secs();
            self.end(
                slot,
                format!("it did not answer `initialize` within {secs} s"),
            );
        }
        let due: Vec<usize> = self
            .retry_due(waiting)
            .filter(|(_, at)| *at <= now)
            .map(|(slot, _)| slot)
            .collect();
        for slot in due {
            // One process kept warm is enough when nothing waits.
            if waiting || self.processes() == 0 {
                self.start(slot, now);
            }
        }
    }

    /// When a process still starting must have answered `initialize`.
    fn start_due(&self) -> impl Iterator<Item = (usize, Instant)> + '_ {
        let wait = self.start_timeout;
        self.slots.iter().enumerate().filter_map(move |(slot, s)| {
            let process = s.process.as_ref().filter(|_| s.starting())?;
            Some((slot, later(process.started, wait)))
        })
    }

    /// When a slot whose process ended may start again: when requests are
    /// `waiting`, or, for one that had served, when no other process runs
    /// (the agent is kept warm).
    fn retry_due(&self, waiting: bool) -> impl Iterator<Item = (usize, Instant)> + '_ {
        let none_up = self.processes() == 0;
        self.slots.iter().enumerate().filter_map(move |(slot, s)| {
            let wanted = waiting || (none_up && s.warm);
            let at = s.retry_at.filter(|_| wanted && s.process.is_none())?;
            Some((slot, at))
        })
    }

    /// When [`Pool::handle_timeout`] has something to do.
    pub fn poll_timeout(&self, waiting: bool) -> Option<Instant> {
        let starts = self.start_due().map(|(_, due)| due);
        starts
            .chain(self.retry_due(waiting).map(|(_, at)| at))
            .min()
    }

    /// The next process to start, feed or kill.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
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
            || pending
                .values()
                .any(|(s, p)| *s == slot && p.opens_session())
    };
    // A spare takes no room: it is reclaimed for a session that needs it.
    let count = |slot: usize, busy: bool| {
        sessions
            .iter()
            .filter(|(at, s)| at.slot == slot && !s.spare && (!busy || s.turn.is_some()))
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
    if let Some(slot) = free_slot(slots, plan, now) {
        return Room::Start(slot);
    }
    let open_in = |at: &At| slots.get(at.slot).is_some_and(Slot::ready) && !opening(at.slot);
    sessions
        .iter()
        .filter(|(at, s)| s.turn.is_none() && open_in(at))
        .min_by_key(|(_, s)| (s.key.is_some(), s.last_used))
        .map_or(Room::Wait, |(at, _)| Room::Evict(at.clone()))
}

/// The slot another process may start in now, within the plan's
/// processes, if any.
pub(super) fn free_slot(slots: &[Slot], plan: &AcpPlan, now: Instant) -> Option<usize> {
    let running = slots.iter().filter(|s| s.process.is_some()).count();
    if running >= plan.max_processes {
        return None;
    }
    let slot = slots
        .iter()
        .position(|s| s.free(now))
        .unwrap_or(slots.len());
    (slot < plan.max_processes).then_some(slot)
}
