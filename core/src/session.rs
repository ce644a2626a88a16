//! Agent sessions: lifecycle, scopes, counters, and routing of a model
//! request to the session that should serve it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::auth::SecretHash;
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
    /// this token to claim it.
    pub token: Option<SecretHash>,
}

impl Session {
    pub fn serves(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == model)
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
}

impl Sessions {
    pub fn get(&self, id: &str) -> Option<&Session> {
        self.by_id.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Session> {
        self.by_id.get_mut(id)
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
        self.by_id.insert(session.id.clone(), session);
    }

    pub fn remove(&mut self, id: &str) -> Option<Session> {
        self.by_id.remove(id)
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
    /// least busy routable session serving the model.
    pub fn route(
        &self,
        model: &str,
        embedding: bool,
        pin: Option<&str>,
    ) -> Result<&str, RouteError> {
        if !self.by_id.values().any(|s| s.link.is_some()) && pin.is_none() {
            return Err(RouteError::NoAgents);
        }
        if let Some(pin) = pin {
            let s = self.by_id.get(pin).ok_or_else(|| {
                RouteError::Unavailable(format!("session `{pin}` does not exist"))
            })?;
            if !s.serves(model) {
                return Err(RouteError::Unavailable(format!(
                    "session `{pin}` does not serve model `{model}`"
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
            .min_by_key(|s| (s.in_flight, s.requests))
            .map(|s| s.id.as_str())
            .ok_or_else(|| unavailable(serving[0], embedding))
    }

    /// The earliest expiry among sessions still running.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_id
            .values()
            .filter(|s| {
                matches!(
                    s.status,
                    Status::Active | Status::Pending | Status::Suspended
                )
            })
            .map(|s| s.expires_at)
            .min()
    }
}

/// Why session `s` cannot take a request now.
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
                "the session serving this model ({}) does not have the `{scope}` scope",
                s.id
            ));
        }
    };
    RouteError::Unavailable(format!("the session serving this model ({}) {why}", s.id))
}

/// A session's new expiry for a requested TTL, capped by the configured max.
pub fn expiry(now: Instant, requested: Option<u64>, default: Duration, max: Duration) -> Instant {
    let ttl = requested.map_or(default, Duration::from_secs).min(max);
    now + ttl
}
