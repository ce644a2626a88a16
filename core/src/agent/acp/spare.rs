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
//! never forgotten for being idle: it goes with its process. A spare is
//! opened only while no turn of its process waits for its first words,
//! so that the opening does not slow the answer a user is watching. There
//! are at most [`MAX_SPARES`] in all.
//!
//! New conversations may come faster than a spare opens (an agent may take
//! longer to open a session than a short conversation lasts): one finds
//! none ready, or takes one opened less than an opening's time before
//! ([`Pace`]). While they do, spares are kept in two processes, which open
//! them side by side: a second process is started ahead while only one
//! has room, and kept while the pace lasts. Once conversations find their
//! spares ready again, one process with room is enough, and the others,
//! left without conversations, end as any idle process does. An agent
//! that must not be killed while it opens a session has its spare opened
//! only while its process runs no turn ([`AcpPlan::spare_when_idle`]):
//! the one a conversation takes is replaced when that turn ends.
//!
//! [`AcpPlan::max_processes`]: super::AcpPlan::max_processes
//! [`AcpPlan::spare_when_idle`]: super::AcpPlan::spare_when_idle

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::pool::{self, At, Slot};
use super::{AcpPlan, Offer, Pending, Session};
use crate::time::later;

/// The most spares kept at once, across the processes.
pub(super) const MAX_SPARES: usize = 2;

/// How long new conversations are taken to come faster than spares open
/// after one last found them behind.
const HURRY: Duration = Duration::from_secs(5);

/// How fast new conversations come, against how long a spare takes to
/// open.
#[derive(Debug, Default)]
pub(super) struct Pace {
    /// How long the last spare took to open, once one did.
    opening: Option<Duration>,
    /// When a new conversation last found the spares behind.
    behind: Option<Instant>,
}

impl Pace {
    /// A spare asked for at `sent` opened at `now`.
    pub(super) fn opened(&mut self, sent: Instant, now: Instant) {
        self.opening = Some(now.saturating_duration_since(sent));
    }

    /// A new conversation came at `now`, taking the spare opened at
    /// `took`, or none: the spares were behind when it found none, or one
    /// opened less than an opening's time before (the next would not be
    /// ready in time either); when it found one older, they keep up.
    pub(super) fn came(&mut self, took: Option<Instant>, now: Instant) {
        let young = |at: Instant| self.opening.is_some_and(|o| now < later(at, o));
        let behind = took.is_none_or(young);
        self.behind = behind.then_some(now);
    }

    /// Whether new conversations come faster than spares open: one found
    /// them behind lately.
    pub(super) fn hurried(&self, now: Instant) -> bool {
        self.behind.is_some_and(|at| now < later(at, HURRY))
    }
}

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
/// is `free` for it: the one opened first.
pub(super) fn pick(
    sessions: &HashMap<At, Session>,
    offer: Option<&Offer>,
    free: &dyn Fn(&At) -> bool,
) -> Option<At> {
    sessions
        .iter()
        .filter(|(at, s)| s.spare && s.turn.is_none() && fits(s, offer) && free(at))
        .min_by_key(|(at, s)| (s.last_used, at.slot))
        .map(|(at, _)| at.clone())
}

/// Whether a spare that a new conversation given `offer` would take is
/// being opened, in a process `free` for it: it waits for that one rather
/// than open a session of its own, which would be ready no sooner.
pub(super) fn coming(
    pending: &HashMap<u64, (usize, Pending)>,
    offer: Option<&Offer>,
    free: &dyn Fn(usize) -> bool,
) -> bool {
    pending.values().any(|(slot, p)| match (p, offer) {
        (Pending::Spare { tooled: None, .. }, None) => free(*slot),
        (
            Pending::Spare {
                tooled: Some(t), ..
            },
            Some(offer),
        ) => t.offer.listing() == offer.listing() && free(*slot),
        _ => false,
    })
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
/// processes, nor a turn still waiting for its first words; at most
/// [`MAX_SPARES`] in all. Another process starts when no ready process
/// has room (when new conversations come `hurried`: fewer than two, or
/// room for no more than the spares), none is starting, no turn waits for
/// its first words, and the plan lets it.
pub(super) fn needed(
    slots: &[Slot],
    sessions: &HashMap<At, Session>,
    pending: &HashMap<u64, (usize, Pending)>,
    plan: &AcpPlan,
    offer: Option<&Offer>,
    hurried: bool,
    now: Instant,
) -> Needed {
    let mut needed = Needed::default();
    let opening = pending
        .values()
        .filter(|(_, p)| matches!(p, Pending::Spare { .. }));
    let mut spares = sessions.values().filter(|s| s.spare).count() + opening.count();
    let (mut ready, mut roomy, mut places) = (false, 0, 0);
    for slot in 0..slots.len() {
        if !slots.get(slot).is_some_and(Slot::ready) {
            continue;
        }
        ready = true;
        let room = plan.max_sessions.saturating_sub(used(sessions, slot));
        if room == 0 {
            continue;
        }
        roomy += 1;
        places += room;
        // One session opened at a time; for an agent that must not be
        // killed while opening one, none beside a turn.
        let waits = |p: &Pending| p.opens_session() || (plan.spare_when_idle && p.runs_turn());
        if pending.values().any(|(s, p)| *s == slot && waits(p)) || unheard(sessions, slot) {
            continue;
        }
        if let Some(at) = spare_in(sessions, slot) {
            if sessions.get(&at).is_some_and(|s| fits(s, offer)) {
                continue;
            }
            needed.stale.push(at);
            spares -= 1;
        }
        if spares < MAX_SPARES {
            needed.open.push(slot);
            spares += 1;
        }
    }
    // In a hurry, spares are opened side by side in two processes, and
    // the next process is started while there is still room for the two
    // and the conversation after them: starting one takes as long as a
    // few conversations.
    let short = if hurried {
        roomy < 2 || places <= MAX_SPARES
    } else {
        roomy == 0
    };
    // Only beside a process that serves: not in place of one waiting out
    // its backoff.
    let heard = (0..slots.len()).all(|slot| !unheard(sessions, slot));
    if ready && short && heard && !slots.iter().any(Slot::starting) {
        needed.start = pool::free_slot(slots, plan, now);
    }
    needed
}

/// Whether a turn in `slot`'s process still waits for its first words.
fn unheard(sessions: &HashMap<At, Session>, slot: usize) -> bool {
    sessions
        .iter()
        .any(|(at, s)| at.slot == slot && s.turn.as_ref().is_some_and(|t| !t.stream.begun()))
}
