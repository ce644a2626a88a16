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
//! never forgotten for being idle: it goes with its process.
//!
//! [`AcpPlan::max_processes`]: super::AcpPlan::max_processes

use std::time::Instant;

use serde_json::Value;

use super::models::Models;
use super::pool::{self, At, Slot};
use super::session::Tooled;
use super::{AcpAgent, Failure, Offer, Pending, Request, RunId, Session};

/// Whether a session was opened as one for `offer` (the editor's tools
/// over MCP, if any) would be: given a relay listing the same tools, or
/// none.
fn fits(session: &Session, offer: Option<&Offer>) -> bool {
    match (session.tools, offer) {
        (None, None) => true,
        (Some(_), Some(offer)) => session
            .offer
            .as_ref()
            .is_some_and(|listed| listed.listing() == offer.listing()),
        _ => false,
    }
}

impl AcpAgent {
    /// Takes a spare session for the new conversation of `request`, if
    /// one was opened as its session would be (`tools`: it is given the
    /// editor's tools over MCP). The spares that follow are opened for
    /// its tools.
    pub(super) fn take_spare(&mut self, request: &Request, tools: bool) -> Option<At> {
        let offer = request.offer.as_ref().filter(|_| tools);
        if offer.is_some() {
            self.spare_offer = offer.cloned();
        }
        // An agent sharing MCP servers has one turn using them a process.
        let free = |at: &At| !tools || self.tools_turn_in(at.slot).is_none();
        let at = self
            .sessions
            .iter()
            .find(|(at, s)| s.spare && s.turn.is_none() && fits(s, offer) && free(at))
            .map(|(at, _)| at.clone())?;
        if let Some(session) = self.sessions.get_mut(&at) {
            session.spare = false;
        }
        Some(at)
    }

    /// The sessions of `slot`'s process that hold conversations.
    pub(super) fn used(&self, slot: usize) -> usize {
        let its = self.sessions.iter().filter(|(at, _)| at.slot == slot);
        its.filter(|(_, s)| !s.spare).count()
    }

    /// The spare of `slot`'s process, if it has one.
    fn spare_in(&self, slot: usize) -> Option<At> {
        let spares = self.sessions.iter().filter(|(_, s)| s.spare);
        spares.map(|(at, _)| at).find(|at| at.slot == slot).cloned()
    }

    /// Makes room for one more session in `slot`'s process: its spare is
    /// forgotten if, with it, the process would hold more than its plan's
    /// sessions.
    pub(super) fn reclaim_spare(&mut self, slot: usize) {
        if self.used(slot) < self.plan.max_sessions.saturating_sub(1) {
            return;
        }
        if let Some(at) = self.spare_in(slot) {
            self.forget(&at);
        }
    }

    /// Opens a spare in each ready process without one that has room for
    /// it and opens no other session (one opened for other tools than the
    /// next conversation's is replaced); when none has room and none is
    /// starting, starts another process ahead of need (when it may). Not
    /// before the agent's first session is answered, nor while requests
    /// wait for room, nor once spares were refused.
    pub(super) fn keep_spares(&mut self, now: Instant) {
        if !self.spares || !self.registered || !self.queue.is_empty() {
            return;
        }
        let (mut ready, mut room) = (false, false);
        for slot in 0..self.pool.slots.len() {
            if !self.pool.slots.get(slot).is_some_and(Slot::ready) {
                continue;
            }
            ready = true;
            if self.used(slot) >= self.plan.max_sessions {
                continue;
            }
            room = true;
            let opening = self
                .pool
                .pending
                .values()
                .any(|(s, p)| *s == slot && p.opens_session());
            if opening {
                continue;
            }
            if let Some(at) = self.spare_in(slot) {
                let offer = self.spare_offer.as_ref();
                if self.sessions.get(&at).is_some_and(|s| fits(s, offer)) {
                    continue;
                }
                self.forget(&at);
            }
            self.open_spare(slot);
        }
        // Only beside a process that serves: not in place of one
        // waiting out its backoff.
        if !ready || room || self.pool.slots.iter().any(Slot::starting) {
            return;
        }
        if let Some(slot) = pool::free_slot(&self.pool.slots, &self.plan, now) {
            tracing::info!(
                "ACP agent: no agent process has room for a spare session; another starts"
            );
            self.pool.start(slot, now);
        }
    }

    /// Asks `slot`'s process for a spare, given a relay of its own listing
    /// the tools of the last conversation given them, if any.
    fn open_spare(&mut self, slot: usize) {
        let tooled = self.spare_offer.clone().map(|offer| {
            let owner = RunId(self.next_tools);
            self.next_tools += 1;
            Box::new(Tooled { owner, offer })
        });
        let params = self.session_params(tooled.as_ref().map(|t| t.owner));
        self.pool
            .call(slot, "session/new", params, Pending::Spare(tooled));
    }

    /// A spare's `session/new` answered: it waits for the next new
    /// conversation. Once one is refused (or named as a session already
    /// open), new conversations open their sessions as they come.
    pub(super) fn spare_opened(
        &mut self,
        slot: usize,
        tooled: Option<Box<Tooled>>,
        result: Result<Value, Failure>,
        now: Instant,
    ) {
        let opened = result.ok().and_then(|result| {
            let id = result["sessionId"].as_str()?.to_owned();
            Some((At { slot, id }, Models::of(&result)))
        });
        let owner = tooled.as_ref().map(|t| t.owner);
        match opened.filter(|(at, _)| self.take_id(at)) {
            Some((at, models)) => {
                let mut session = Session::new(now, owner);
                session.spare = true;
                session.offer = tooled.map(|t| t.offer);
                session.know(models);
                self.sessions.insert(at, session);
            }
            None => {
                tracing::info!("ACP agent: a spare session was refused; no more are opened");
                if let Some(owner) = owner {
                    self.relays.close_all_of(owner);
                    self.listed.remove(&owner);
                }
                self.spares = false;
            }
        }
        self.drain_queue(now);
    }

    /// The spare of a process retired for want of work goes with it.
    pub(super) fn drop_spare(&mut self, slot: usize) {
        if let Some(at) = self.spare_in(slot) {
            self.forget(&at);
        }
    }
}
