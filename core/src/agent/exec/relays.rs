//! The relays' connections an agent holds, whoever owns them: each says an
//! owner's secret first (a CLI run's for `agent exec`, a session's for
//! `agent acp`), then carries that owner's MCP lines. What a connection
//! must do to be kept — say its hello in time, be one of few silent ones,
//! be one of few per owner — is kept here, once.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use serde_json::json;

use super::link::{self, Asked, Link, LinkId, LinkOutput};
use super::round::Round;
use super::RunId;
use crate::lines::Line;
use crate::mcp;

/// What a line from a relay came to in its owner's round.
pub enum Heard {
    /// A listing or a search, answered.
    Answered,
    /// A search that changed the tools listed, answered.
    Relisted,
    /// A call, taken into the round.
    Called,
    /// Nothing the owner acts on (a notification, a refused call).
    Nothing,
}

#[derive(Default)]
pub struct Relays {
    links: HashMap<LinkId, Link>,
    out: VecDeque<LinkOutput>,
}

impl Relays {
    /// Bytes from a connection (a new one, opened at `now`, starts with
    /// its hello, which `owner` tells the owner of, if any). Connections
    /// that have not said theirs are few at most: a new one closes the
    /// oldest of them. The lines for owners come back, in order.
    pub fn input(
        &mut self,
        id: LinkId,
        bytes: &[u8],
        now: Instant,
        owner: impl Fn(&str) -> Option<RunId>,
    ) -> Vec<(RunId, Line)> {
        if !self.links.contains_key(&id) {
            if let Some(oldest) = link::crowded_out(&self.links) {
                self.close(oldest, "crowded out before its hello");
            }
            self.links.insert(id, Link::new(now));
        }
        let Some(lines) = self.links.get_mut(&id).map(|l| l.input.push(bytes)) else {
            return Vec::new();
        };
        let mut owned = Vec::new();
        for line in lines {
            match self.links.get(&id).map(|l| l.run) {
                Some(Some(run)) => owned.push((run, line)),
                Some(None) => self.hello(id, &line, &owner),
                None => break,
            }
        }
        if self.links.get(&id).is_some_and(|l| l.unsaid_past(now)) {
            self.close(id, "sent more than a hello");
        }
        owned
    }

    /// A connection's first line: the owner whose secret it says gets it,
    /// unless it holds as many as an owner may.
    fn hello(&mut self, id: LinkId, line: &Line, owner: impl Fn(&str) -> Option<RunId>) {
        let found = match line {
            Line::Text(hello) => owner(hello),
            Line::TooLong => None,
        };
        match found {
            Some(run) if link::held_by(&self.links, run) >= link::MAX_PER_RUN => {
                self.close(id, "is one more than a run may hold");
            }
            Some(run) => {
                if let Some(link) = self.links.get_mut(&id) {
                    link.run = Some(run);
                }
            }
            None => self.close(id, "did not say a run's secret"),
        }
    }

    /// Closes a connection the agent is done with.
    pub fn close(&mut self, id: LinkId, why: &str) {
        if self.links.remove(&id).is_some() {
            tracing::warn!("a tool relay's connection {why}: closed");
            self.out.push_back(LinkOutput::Close(id));
        }
    }

    /// Closes every connection of `run`.
    pub fn close_all_of(&mut self, run: RunId) {
        let ids: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.run == Some(run))
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.links.remove(&id);
            self.out.push_back(LinkOutput::Close(id));
        }
    }

    /// The connection closed: whose it was.
    pub fn closed(&mut self, id: LinkId) -> Option<RunId> {
        self.links.remove(&id).and_then(|l| l.run)
    }

    /// Closes the connections that did not say their hello in time.
    pub fn expire(&mut self, now: Instant) {
        for id in link::silent(&self.links, now) {
            self.close(id, "did not say a run's secret in time");
        }
    }

    /// When [`Relays::expire`] has something to do.
    pub fn due(&self) -> Option<Instant> {
        link::hello_due(&self.links)
    }

    pub fn send(&mut self, id: LinkId, line: String) {
        self.out.push_back(LinkOutput::Send(id, line));
    }

    /// Sends `reply`, then tells the relay's client that the tools listed
    /// changed.
    pub fn send_relisted(&mut self, id: LinkId, reply: String) {
        self.send(id, reply);
        let changed = mcp::notification("notifications/tools/list_changed", json!({}));
        self.send(id, changed);
    }

    /// A line from the relay on connection `id`, in its owner's `round`,
    /// whose calls take their ids from `call_id`: a listing or a search is
    /// answered, a call taken into the round (or refused, back to the
    /// relay).
    pub fn hear(
        &mut self,
        id: LinkId,
        line: &Line,
        round: &mut Round,
        call_id: impl FnOnce(u64) -> String,
        now: Instant,
    ) -> Heard {
        match link::asked(line, &mut round.offer) {
            Asked::Reply(reply) => {
                self.send(id, reply);
                Heard::Answered
            }
            Asked::Relisted(reply) => {
                self.send_relisted(id, reply);
                Heard::Relisted
            }
            Asked::Nothing => Heard::Nothing,
            Asked::Call {
                rpc,
                name,
                arguments,
            } => match round.call(id, rpc, name, arguments, call_id, now) {
                Ok(()) => Heard::Called,
                Err(refusal) => {
                    self.send(id, refusal);
                    Heard::Nothing
                }
            },
        }
    }

    /// The next line to write to a relay, or one to close.
    pub fn poll(&mut self) -> Option<LinkOutput> {
        self.out.pop_front()
    }
}
