//! Spare sessions: each ready agent process keeps one session opened
//! ahead, so that a new conversation's first prompt goes at once rather
//! than after a `session/new` round trip.
//!
//! A spare is opened as the next new conversation's session would be:
//! without the editor's tools (the first one, opened to learn the agent's
//! models, is the first process's), or — once a new conversation was given
//! them over MCP — with its own relay, listing the tools that conversation
//! offered (an editor offers the same ones to each). A new conversation
//! takes a spare opened as its session would be (the same tools listed, or
//! none), set to the model and effort it asks for as any session is, and
//! another is opened in its place at once; any other conversation opens a
//! session as it comes. A spare takes no room a conversation needs: it is
//! opened only in a process with room, and reclaimed first when a session
//! needs its place. When no process has room left for one, another process
//! starts ahead of need, within [`AcpPlan::max_processes`]. A spare is
//! never forgotten for being idle: it goes with its process. An agent
//! that must not be killed while it opens a session has its spare opened
//! only while its process runs no turn ([`AcpPlan::spare_when_idle`]):
//! the one a conversation takes is replaced when that turn ends.
//!
//! [`AcpPlan::max_processes`]: super::AcpPlan::max_processes
//! [`AcpPlan::spare_when_idle`]: super::AcpPlan::spare_when_idle

use std::collections::HashMap;
use std::time::Instant;

use super::pool::{self, At, Slot};
use super::{AcpPlan, Offer, Pending, Session};

/// Whether a session was opened as one for `offer` (the editor's tools
/// over MCP, if any) would be: given a relay listing the same tools, or
/// none.
pub(super) fn fits(session: &Session, offer: Option<&Offer>) -> bool {
    match (session.tools, offer) {
        (None, None) => true,
        (Some(_), Some(offer)) => session
            .offer
            .as_ref()
            .is_some_and(|listed| listed.listing() == offer.listing()),
        _ => false,
    }
}

/// The spare a new conversation given `offer` takes, if one fits it and
/// is `free` for it.
pub(super) fn pick(
    sessions: &HashMap<At, Session>,
    offer: Option<&Offer>,
    free: &dyn Fn(&At) -> bool,
) -> Option<At> {
    sessions
        .iter()
        .find(|(at, s)| s.spare && s.turn.is_none() && fits(s, offer) && free(at))
        .map(|(at, _)| at.clone())
}

/// The sessions of `slot`'s process that hold conversations.
pub(super) fn used(sessions: &HashMap<At, Session>, slot: usize) -> usize {
    let its = sessions.iter().filter(|(at, _)| at.slot == slot);
    its.filter(|(_, s)| !s.spare).count()
}

/// The spare of `slot`'s process, if it has one.
pub(super) fn spare_in(sessions: &HashMap<At, Session>, slot: usize) -> Option<At> {
    let spares = sessions.iter().filter(|(_, s)| s.spare);
    spares.map(|(at, _)| at).find(|at| at.slot == slot).cloned()
}

/// What keeping a spare in each process takes now.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Needed {
    /// Spares opened for other tools than the next conversation's, to
    /// forget.
    pub(super) stale: Vec<At>,
    /// The processes to ask for a spare.
    pub(super) open: Vec<usize>,
    /// The slot to start a process in ahead of need.
    pub(super) start: Option<usize>,
}

/// A spare for each ready process without one that has room for it and
/// opens no other session (one opened for other tools than `offer` is
/// replaced), nor runs a turn when the plan opens spares only in idle
/// processes; when none has room and none is starting, another process,
/// if the plan lets it start.
pub(super) fn needed(
    slots: &[Slot],
    sessions: &HashMap<At, Session>,
    pending: &HashMap<u64, (usize, Pending)>,
    plan: &AcpPlan,
    offer: Option<&Offer>,
    now: Instant,
) -> Needed {
    let mut needed = Needed::default();
    let (mut ready, mut room) = (false, false);
    for slot in 0..slots.len() {
        if !slots.get(slot).is_some_and(Slot::ready) {
            continue;
        }
        ready = true;
        if used(sessions, slot) >= plan.max_sessions {
            continue;
        }
        room = true;
        // One session opened at a time; for an agent that must not be
        // killed while opening one, none beside a turn.
        let waits = |p: &Pending| p.opens_session() || (plan.spare_when_idle && p.runs_turn());
        if pending.values().any(|(s, p)| *s == slot && waits(p)) {
            continue;
        }
        if let Some(at) = spare_in(sessions, slot) {
            if sessions.get(&at).is_some_and(|s| fits(s, offer)) {
                continue;
            }
            needed.stale.push(at);
        }
        needed.open.push(slot);
    }
    // Only beside a process that serves: not in place of one waiting out
    // its backoff.
    if ready && !room && !slots.iter().any(Slot::starting) {
        needed.start = pool::free_slot(slots, plan, now);
    }
    needed
}
