//! Every answer found by its id, whatever API it was asked through: `GET
//! /completions/{id}` says how it stands, `DELETE` cancels it (the seed's
//! job routes, also under `/v1/completions/`). Answers in flight are found
//! through their invocation; the last few thousand that ended are
//! remembered as a line each, so a client that asks just after the end is
//! told how it ended rather than that it never was.

use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};

use super::invocations::Invocation;
use super::outcome::Ended;
use crate::error::ApiError;
use crate::store::may_see;

/// How many ended answers are remembered.
const ENDED_KEPT: usize = 4096;

/// Answers by id.
#[derive(Debug, Default)]
pub(super) struct Answers {
    /// Answers in flight: id → invocation.
    running: HashMap<String, u64>,
    /// Answers that ended, newest last: id → (who asked, how it stands).
    ended: HashMap<String, (Option<usize>, Status)>,
    ended_order: VecDeque<String>,
}

/// What is kept of an answer to say how it stands: its body is written
/// only when asked for, as few answers ever are (kept as a JSON tree, each
/// ended answer cost some thirty allocations and a kilobyte).
#[derive(Debug)]
pub(super) struct Status {
    status: &'static str,
    model: String,
    agent: Option<String>,
    session: String,
    created: u64,
    stream: bool,
    tokens: u64,
}

impl Status {
    /// How `inv` stands: `status`, served by `agent`.
    pub(super) fn of(inv: &Invocation, agent: Option<String>, status: &'static str) -> Self {
        Status {
            status,
            model: inv.model.clone(),
            agent,
            session: inv.session.clone(),
            created: inv.created,
            stream: inv.stream,
            tokens: inv.tokens(),
        }
    }

    /// What `GET /completions/{id}` says of answer `id`.
    pub(super) fn body(&self, id: &str) -> Value {
        json!({
            "id": id,
            "object": "completion.status",
            "status": self.status,
            "model": self.model,
            "agent": self.agent,
            "session_id": self.session,
            "created": self.created,
            "started": crate::time::rfc3339(
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(self.created)
            ),
            "stream": self.stream,
            "tokens": self.tokens,
        })
    }
}

impl Answers {
    pub(super) fn started(&mut self, id: &str, n: u64) {
        self.running.insert(id.to_owned(), n);
    }

    /// Invocation `inv` ended: `agent` served it.
    pub(super) fn ended(&mut self, inv: &Invocation, agent: Option<String>, ended: Ended) {
        self.running.remove(&inv.id);
        if self.ended_order.len() >= ENDED_KEPT {
            if let Some(oldest) = self.ended_order.pop_front() {
                self.ended.remove(&oldest);
            }
        }
        let status = Status::of(inv, agent, ended.as_str());
        self.ended.insert(inv.id.clone(), (inv.key, status));
        self.ended_order.push_back(inv.id.clone());
    }

    pub(super) fn running(&self, id: &str) -> Option<u64> {
        self.running.get(id).copied()
    }

    /// What `GET /completions/{id}` says of an answer that ended, to
    /// `caller`; `cancelling` (a `DELETE`), an error: only an answer in
    /// progress can be cancelled.
    pub(super) fn ended_body(
        &self,
        id: &str,
        caller: Option<usize>,
        cancelling: bool,
    ) -> Result<Value, ApiError> {
        match self.ended.get(id) {
            Some((owner, status)) if may_see(caller, *owner) => {
                if cancelling {
                    return Err(ApiError::invalid(format!(
                        "The answer '{id}' is already {}: only an answer in progress can be cancelled.",
                        status.status
                    )));
                }
                Ok(status.body(id))
            }
            _ => Err(unknown(id)),
        }
    }
}

pub(super) fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "No answer with id '{id}': none is in progress, and none that ended lately had it."
    ))
}
