//! Every answer found by its id, whatever API it was asked through: `GET
//! /completions/{id}` says how it stands, `DELETE` cancels it (the seed's
//! job routes, also under `/v1/completions/`). Answers in flight are found
//! through their invocation; the last few thousand that ended are
//! remembered as a line each, so a client that asks just after the end is
//! told how it ended rather than that it never was.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use serde_json::{json, Value};

use super::invoke::Invocation;
use super::Provider;
use crate::error::ApiError;
use crate::store::may_see;

/// How an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    Completed,
    Failed,
    /// By its id, or because its editor left.
    Cancelled,
}

impl Ended {
    fn as_str(self) -> &'static str {
        match self {
            Ended::Completed => "completed",
            Ended::Failed => "failed",
            Ended::Cancelled => "cancelled",
        }
    }
}

/// How many ended answers are remembered.
const ENDED_KEPT: usize = 4096;

/// Answers by id.
#[derive(Debug, Default)]
pub(super) struct Answers {
    /// Answers in flight: id → invocation.
    running: HashMap<String, u64>,
    /// Answers that ended, newest last: id → (who asked, status body).
    ended: HashMap<String, (Option<usize>, Value)>,
    ended_order: VecDeque<String>,
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
        let body = status_body(inv, agent, ended.as_str());
        self.ended.insert(inv.id.clone(), (inv.key, body));
        self.ended_order.push_back(inv.id.clone());
    }

    pub(super) fn running(&self, id: &str) -> Option<u64> {
        self.running.get(id).copied()
    }
}

/// What `GET /completions/{id}` says of an answer.
fn status_body(inv: &Invocation, agent: Option<String>, status: &str) -> Value {
    json!({
        "id": inv.id,
        "object": "completion.status",
        "status": status,
        "model": inv.model,
        "agent": agent,
        "session_id": inv.session(),
        "created": inv.created,
        "started": crate::time::rfc3339(
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(inv.created)
        ),
        "stream": inv.is_stream(),
        "tokens": inv.tokens(),
    })
}

impl Provider {
    /// `GET /completions/{id}` (`cancel` false) or `DELETE` (true), for the
    /// API key `caller` (`None`: the bridge token, or keys not required).
    pub(super) fn answer_by_id(
        &mut self,
        id: &str,
        cancel: bool,
        caller: Option<usize>,
        now: Instant,
    ) -> Result<Value, ApiError> {
        let running = self.answers.running(id).filter(|n| {
            self.invocations
                .get(n)
                .is_some_and(|i| may_see(caller, i.key))
        });
        if let Some(n) = running {
            if !cancel {
                let inv = self.invocations.get(&n).ok_or_else(|| unknown(id))?;
                let agent = self.sessions.get(inv.session()).map(|s| s.agent_id.clone());
                return Ok(status_body(inv, agent, "in_progress"));
            }
            self.cancel_answer(n, now);
            self.pump_kept();
        }
        match self.answers.ended.get(id) {
            Some((owner, body)) if may_see(caller, *owner) => {
                if cancel && running.is_none() {
                    return Err(ApiError::invalid(format!(
                        "The answer '{id}' is already {}: only an answer in progress can be cancelled.",
                        body["status"].as_str().unwrap_or("over")
                    )));
                }
                Ok(body.clone())
            }
            _ => Err(unknown(id)),
        }
    }

    /// The answers in flight, oldest first, for the dashboard.
    pub(super) fn control_streams(&self, now: Instant) -> Value {
        let mut streams: Vec<(Instant, Value)> = self
            .invocations
            .iter()
            .map(|(n, inv)| {
                let (editor, session, stream, chunks) = inv.view();
                let meter = self.meters.get(&self.metered(editor));
                let started = meter.map_or(now, |m| m.started);
                let entry = json!({
                    "id": super::invoke::wire_id(*n),
                    "completion_id": inv.id,
                    "route": meter.map(|m| crate::api::routes::label(m.route)),
                    "model": inv.model,
                    "session_id": session,
                    "stream": stream,
                    "age_ms": now.saturating_duration_since(started).as_millis() as u64,
                    "chunks": chunks,
                    "tokens": inv.tokens(),
                });
                (started, entry)
            })
            .collect();
        streams.sort_by_key(|(started, _)| *started);
        json!({"streams": streams.into_iter().map(|(_, v)| v).collect::<Vec<_>>()})
    }
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "No answer with id '{id}': none is in progress, and none that ended lately had it."
    ))
}
