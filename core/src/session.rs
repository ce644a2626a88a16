//! Agent sessions: lifecycle, scopes, counters, and routing of a model
//! request to the session that should serve it.

use std::cell::Cell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::auth::{Presented, SecretHash};
use crate::time::later;
use crate::ConnId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Active,
    Expired,
    Revoked,
    /// Its request budget (`max_requests`) is spent.
    Suspended,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Expired => "expired",
            Status::Revoked => "revoked",
            Status::Suspended => "suspended",
        }
    }
}

/// What a session is allowed to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes {
    pub inference: bool,
    pub embedding: bool,
}

impl Scopes {
    /// From the protocol's scope names; none given means inference only.
    pub fn parse(names: Option<&[String]>) -> Scopes {
        match names {
            None => Scopes {
                inference: true,
                embedding: false,
            },
            Some(names) => Scopes {
                inference: names.iter().any(|s| s == "inference"),
                embedding: names.iter().any(|s| s == "embedding"),
            },
        }
    }

    pub fn names(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.inference {
            v.push("inference");
        }
        if self.embedding {
            v.push("embedding");
        }
        v
    }
}

#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub agent_id: String,
    pub label: String,
    pub models: Vec<String>,
    pub scopes: Scopes,
    pub status: Status,
    pub created: Instant,
    pub expires_at: Instant,
    pub max_requests: Option<u64>,
    pub requests: u64,
    pub tokens: u64,
    pub last_activity: Instant,
    /// The agent link serving it, while one is connected.
    pub link: Option<ConnId>,
    pub in_flight: usize,
    /// Set for sessions made through the control API: an agent must show
    /// this `session_token` to claim the session (and may show it again to
    /// resume it, as agents written for the control API do).
    pub claim: Option<SecretHash>,
    /// The digest of the `resume_token` last handed to the agent holding
    /// the session: the proof a reconnecting agent must show, so that
    /// knowing a session id (it is in every `model_invoke`, in the control
    /// API, in logs) is not enough to take the session over.
    pub resume: Option<SecretHash>,
    /// Whether approval was given (automatically or by a human): a session
    /// revived by `renew` after it expired goes back to `pending` without.
    pub approved: bool,
    /// While no link holds an agent-made session: the instant it is freed
    /// unless its agent resumes it. Bounds how long dropped sessions count
    /// against `max_sessions` (they would otherwise stay until their TTL).
    pub detached_until: Option<Instant>,
}

impl Session {
    pub fn serves(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == model)
    }

    /// Whether `max_requests` leaves no request to serve.
    pub fn budget_spent(&self) -> bool {
        self.max_requests.is_some_and(|max| self.requests >= max)
    }

    /// The status a session starts with, or returns to when `renew` revives
    /// it after expiry: approval and the request budget are not reset by
    /// time passing.
    pub fn live_status(&self) -> Status {
        if !self.approved {
            Status::Pending
        } else if self.budget_spent() {
            Status::Suspended
        } else {
            Status::Active
        }
    }

    /// Whether a `register` naming this session proves it comes from the
    /// session's own agent: the same `agent_id`, and the `resume_token`
    /// last handed out (or, for a session made through the control API, its
    /// `session_token`). Both secrets are checked, in constant time, so the
    /// time taken does not tell which one (if any) matched.
    pub fn may_resume(
        &self,
        agent_id: &str,
        resume_token: Option<&str>,
        session_token: Option<&str>,
    ) -> bool {
        let proves = |hash: &Option<SecretHash>, presented: Option<&str>| match (hash, presented) {
            (Some(hash), Some(presented)) => hash.matches(&Presented::of(presented)),
            _ => false,
        };
        let resume_ok = proves(&self.resume, resume_token);
        let claim_ok = proves(&self.claim, session_token);
        self.agent_id == agent_id && (resume_ok | claim_ok)
    }

    fn routable(&self, embedding: bool) -> bool {
        self.status == Status::Active
            && self.link.is_some()
            && if embedding {
                self.scopes.embedding
            } else {
                self.scopes.inference
            }
    }
}

/// Why a request found no session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No agent is connected at all.
    NoAgents,
    /// Agents are connected but none serves this model.
    UnknownModel,
    /// The model is served, but by no session that can take the request now
    /// (pending approval, expired, out of budget, no link).
    Unavailable(String),
    /// The sessions serving the model lack the scope the request needs.
    WrongScope(String),
}

#[derive(Debug, Default)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
    /// [`Sessions::next_expiry`], remembered until a session changes: the
    /// provider asks after every agent frame, and a scan of every session
    /// per chunk would grow with the number of sessions.
    next_expiry: Cell<Option<Option<Instant>>>,
}

impl Sessions {
    pub fn get(&self, id: &str) -> Option<&Session> {
        self.by_id.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Session> {
        self.next_expiry.set(None);
        self.by_id.get_mut(id)
    }

    /// Notes activity on a session (an agent frame): nothing a deadline
    /// depends on changes.
    pub fn touch(&mut self, id: &str, now: Instant) {
        if let Some(s) = self.by_id.get_mut(id) {
            s.last_activity = now;
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.by_id.values()
    }

    pub fn insert(&mut self, session: Session) {
        self.next_expiry.set(None);
        self.by_id.insert(session.id.clone(), session);
    }

    pub fn remove(&mut self, id: &str) -> Option<Session> {
        self.next_expiry.set(None);
        self.by_id.remove(id)
    }

    /// The session to free when `max_sessions` is reached and another is
    /// asked for: of the agent-made sessions whose link dropped (kept only
    /// so that their agent may resume them) with nothing in flight, the one
    /// whose link dropped longest ago (then the least recently active).
    /// Such a session must not lock out an agent that is here now. A
    /// session with a live link, or made through the control API (kept
    /// until its TTL on purpose), is never the one.
    pub fn reclaimable(&self) -> Option<&str> {
        self.by_id
            .values()
            .filter(|s| s.link.is_none() && s.in_flight == 0 && s.detached_until.is_some())
            .min_by_key(|s| (s.detached_until, s.last_activity, s.id.as_str()))
            .map(|s| s.id.as_str())
    }

    /// The model's name as sessions know it: `name:latest` also finds `name`
    /// (Ollama clients add the tag).
    pub fn resolve_model(&self, model: &str) -> Option<String> {
        let known = |m: &str| self.by_id.values().any(|s| s.serves(m));
        if known(model) {
            return Some(model.to_owned());
        }
        let bare = model.strip_suffix(":latest")?;
        known(bare).then(|| bare.to_owned())
    }

    /// Picks the session for a request: the pinned one if given, else the
    /// least busy routable session serving the model, one whose link takes
    /// no new requests (`closed`: it is not reading, or it is closing)
    /// only when every other one is such.
    pub fn route(
        &self,
        model: &str,
        embedding: bool,
        pin: Option<&str>,
        closed: impl Fn(ConnId) -> bool,
    ) -> Result<&str, RouteError> {
        if !self.by_id.values().any(|s| s.link.is_some()) && pin.is_none() {
            return Err(RouteError::NoAgents);
        }
        if let Some(pin) = pin {
            // Editors read these messages: they name no session, not even
            // the one the editor pinned.
            let s = self.by_id.get(pin).ok_or_else(|| {
                RouteError::Unavailable("no session has the id given in X-MCP-Session".to_owned())
            })?;
            if !s.serves(model) {
                return Err(RouteError::Unavailable(format!(
                    "the session pinned by X-MCP-Session does not serve model `{model}`"
                )));
            }
            if !s.routable(embedding) {
                return Err(unavailable(s, embedding));
            }
            return Ok(&s.id);
        }
        let serving: Vec<&Session> = self.by_id.values().filter(|s| s.serves(model)).collect();
        if serving.is_empty() {
            return Err(RouteError::UnknownModel);
        }
        serving
            .iter()
            .filter(|s| s.routable(embedding))
            .min_by_key(|s| (s.link.is_some_and(&closed), s.in_flight, s.requests))
            .map(|s| s.id.as_str())
            .ok_or_else(|| unavailable(serving[0], embedding))
    }

    /// The earliest deadline among sessions: the expiry of one still
    /// running, or the end of a dropped session's grace period.
    pub fn next_expiry(&self) -> Option<Instant> {
        if let Some(known) = self.next_expiry.get() {
            return known;
        }
        let next = self
            .by_id
            .values()
            .flat_map(|s| {
                let running = matches!(
                    s.status,
                    Status::Active | Status::Pending | Status::Suspended
                );
                [running.then_some(s.expires_at), s.detached_until]
            })
            .flatten()
            .min();
        self.next_expiry.set(Some(next));
        next
    }
}

/// Why session `s` cannot take a request now. Editors read this: it names
/// no session id (ids are for agents and the control API).
fn unavailable(s: &Session, embedding: bool) -> RouteError {
    let why = match s.status {
        Status::Pending => "is waiting for approval (POST /control/approve)",
        Status::Expired => "has expired",
        Status::Revoked => "was revoked",
        Status::Suspended => "has used all of its max_requests",
        Status::Active if s.link.is_none() => "has no agent connected",
        Status::Active => {
            let scope = if embedding { "embedding" } else { "inference" };
            return RouteError::WrongScope(format!(
                "the session serving this model does not have the `{scope}` scope"
            ));
        }
    };
    RouteError::Unavailable(format!("the session serving this model {why}"))
}

/// A session's new expiry for a requested TTL, capped by the configured max.
pub fn expiry(now: Instant, requested: Option<u64>, default: Duration, max: Duration) -> Instant {
    let ttl = requested.map_or(default, Duration::from_secs).min(max);
    later(now, ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, expires_at: Instant) -> Session {
        Session {
            id: id.to_owned(),
            agent_id: "a".to_owned(),
            label: String::new(),
            models: vec!["m".to_owned()],
            scopes: Scopes {
                inference: true,
                embedding: false,
            },
            status: Status::Active,
            created: expires_at,
            expires_at,
            max_requests: None,
            requests: 0,
            tokens: 0,
            last_activity: expires_at,
            link: None,
            in_flight: 0,
            claim: None,
            resume: None,
            approved: true,
            detached_until: None,
        }
    }

    #[test]
    fn the_session_reclaimed_is_the_one_dropped_longest_ago_with_nothing_in_flight() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut sessions = Sessions::default();
        // Linked, made through the control API, busy: never reclaimed.
        let mut linked = session("linked", at(100));
        linked.link = Some(ConnId(1));
        sessions.insert(linked);
        sessions.insert(session("control", at(100)));
        let mut busy = session("busy", at(100));
        busy.detached_until = Some(at(1));
        busy.in_flight = 1;
        sessions.insert(busy);
        assert_eq!(sessions.reclaimable(), None);

        for (id, dropped_until, active) in [("late", 9, 0), ("early", 5, 2), ("early-idle", 5, 1)] {
            let mut s = session(id, at(100));
            s.detached_until = Some(at(dropped_until));
            s.last_activity = at(active);
            sessions.insert(s);
        }
        assert_eq!(sessions.reclaimable(), Some("early-idle"));
        sessions.remove("early-idle");
        assert_eq!(sessions.reclaimable(), Some("early"));
        sessions.remove("early");
        assert_eq!(sessions.reclaimable(), Some("late"));
        sessions.remove("late");
        assert_eq!(sessions.reclaimable(), None);
    }

    #[test]
    fn the_remembered_next_expiry_follows_every_change_but_activity() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(60);
        let mut sessions = Sessions::default();
        assert_eq!(sessions.next_expiry(), None);
        sessions.insert(session("s1", later));
        assert_eq!(sessions.next_expiry(), Some(later));
        sessions.insert(session("s2", later + Duration::from_secs(1)));
        assert_eq!(sessions.next_expiry(), Some(later));
        if let Some(s) = sessions.get_mut("s1") {
            s.detached_until = Some(t0 + Duration::from_secs(5));
        }
        assert_eq!(sessions.next_expiry(), Some(t0 + Duration::from_secs(5)));
        sessions.touch("s1", later);
        assert_eq!(sessions.next_expiry(), Some(t0 + Duration::from_secs(5)));
        sessions.remove("s1");
        assert_eq!(sessions.next_expiry(), Some(later + Duration::from_secs(1)));
        if let Some(s) = sessions.get_mut("s2") {
            s.status = Status::Expired;
        }
        assert_eq!(sessions.next_expiry(), None);
    }
}
