//! Spare sessions: each ready agent process keeps one session opened
//! ahead, so that a new conversation's first prompt goes at once rather
//! than after a `session/new` round trip.
//!
//! A spare is opened as a session without the editor's tools is (the
//! first one, opened to learn the agent's models, is the first process's).
//! The next new conversation without tools over MCP takes it, set to the
//! model and effort it asks for as any session is, and another is opened
//! in its place at once. A spare takes no room a conversation needs: it is
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
use super::{AcpAgent, Failure, Pending, Session};

impl AcpAgent {
    /// Takes a spare session for a new conversation, unless it is given
    /// the editor's tools over MCP (which a session gets only as it opens).
    pub(super) fn take_spare(&mut self, tools: bool) -> Option<At> {
        if tools {
            return None;
        }
        let (at, session) = self
            .sessions
            .iter_mut()
            .find(|(_, s)| s.spare && s.turn.is_none())?;
        session.spare = false;
        Some(at.clone())
    }

    /// The sessions of `slot`'s process that hold conversations.
    pub(super) fn used(&self, slot: usize) -> usize {
        let its = self.sessions.iter().filter(|(at, _)| at.slot == slot);
        its.filter(|(_, s)| !s.spare).count()
    }

    /// Makes room for one more session in `slot`'s process: its spare is
    /// forgotten if, with it, the process would hold more than its plan's
    /// sessions.
    pub(super) fn reclaim_spare(&mut self, slot: usize) {
        if self.used(slot) < self.plan.max_sessions.saturating_sub(1) {
            return;
        }
        let spare = self
            .sessions
            .iter()
            .find(|(at, s)| at.slot == slot && s.spare)
            .map(|(at, _)| at.clone());
        if let Some(at) = spare {
            self.forget(&at);
        }
    }

    /// Opens a spare in each ready process without one that has room for
    /// it and opens no other session; when none has room and none is
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
            let has = self
                .sessions
                .iter()
                .any(|(at, s)| at.slot == slot && s.spare);
            let opening = self
                .pool
                .pending
                .values()
                .any(|(s, p)| *s == slot && p.opens_session());
            if !has && !opening {
                let params = self.session_params(None);
                self.pool.call(slot, "session/new", params, Pending::Spare);
            }
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

    /// A spare's `session/new` answered: it waits for the next new
    /// conversation. Once one is refused (or named as a session already
    /// open), new conversations open their sessions as they come.
    pub(super) fn spare_opened(
        &mut self,
        slot: usize,
        result: Result<Value, Failure>,
        now: Instant,
    ) {
        let opened = result.ok().and_then(|result| {
            let id = result["sessionId"].as_str()?.to_owned();
            Some((At { slot, id }, Models::of(&result)))
        });
        match opened.filter(|(at, _)| self.take_id(at)) {
            Some((at, models)) => {
                let mut session = Session::new(now, None);
                session.spare = true;
                session.know(models);
                self.sessions.insert(at, session);
            }
            None => {
                tracing::info!("ACP agent: a spare session was refused; no more are opened");
                self.spares = false;
            }
        }
        self.drain_queue(now);
    }

    /// The spares of a process retired for want of work go with it.
    pub(super) fn drop_spares(&mut self, slot: usize) {
        self.sessions.retain(|at, s| !(at.slot == slot && s.spare));
    }
}
