//! The requests in progress on editor connections: the number of the
//! request each connection is on, and its [`Meter`], following it from
//! arrival to its answer's last byte for the metrics and the audit trail.
//!
//! A request gets a meter when it arrives; the outputs the provider
//! hands the driver tell when its head went out and when it ended
//! (`Provider::observe`, called from `poll_output`), so no answer path
//! needs to remember to record itself.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{ConnId, RequestId};
use crate::api::routes::label;
use crate::idmap::IdMap;
use crate::metrics::Metrics;
use crate::telemetry::Span;

/// One request in progress on an editor connection.
#[derive(Debug)]
pub(super) struct Meter {
    pub(super) route: usize,
    pub(super) started: Instant,
    status: Option<u16>,
    /// Set once the request went to an agent.
    model: Option<String>,
    session: Option<String>,
    prompt_tokens: u64,
    completion_tokens: u64,
    prompt_sha256: Option<String>,
    first_chunk: Option<Instant>,
    /// The request's SERVER span, for a model request when tracing is on
    /// (see `trace.rs`).
    span: Option<Span>,
}

impl Meter {
    /// The audit line of a request that ended with `status` after `took`.
    pub(super) fn audit_fields(&self, status: u16, took: Duration, editor_left: bool) -> Value {
        let ms = |d: Duration| d.as_micros() as f64 / 1000.0;
        json!({
            "route": label(self.route),
            "status": status,
            "model": self.model,
            "session_id": self.session,
            "duration_ms": ms(took),
            "first_chunk_ms": self.first_chunk.map(|t| ms(t.saturating_duration_since(self.started))),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "prompt_sha256": self.prompt_sha256,
            "editor_left": editor_left,
        })
    }
}

/// A request that is over ([`Requests::end`]).
pub(super) struct Ended {
    pub(super) meter: Meter,
    pub(super) span: Option<Span>,
    pub(super) status: u16,
    pub(super) took: Duration,
}

/// The requests in progress, by editor connection.
#[derive(Debug, Default)]
pub(super) struct Requests {
    /// Editor connection → the number of the request it is on: what is
    /// answered on it is addressed to that request ([`RequestId`]).
    seqs: IdMap<ConnId, u64>,
    meters: IdMap<ConnId, Meter>,
}

impl Requests {
    /// Request `seq` arrived on `conn`.
    pub(super) fn arrived(&mut self, conn: ConnId, seq: u64) {
        self.seqs.insert(conn, seq);
    }

    /// The request connection `conn` is on.
    pub(super) fn on(&self, conn: ConnId) -> RequestId {
        let seq = self.seqs.get(&conn).copied().unwrap_or_default();
        RequestId { conn, seq }
    }

    /// `conn` closed: it is on no request.
    pub(super) fn closed(&mut self, conn: ConnId) {
        self.seqs.remove(&conn);
    }

    /// A request on `route` arrived on `conn`: its meter starts.
    pub(super) fn meter(&mut self, conn: ConnId, route: usize, now: Instant) {
        self.meters.insert(
            conn,
            Meter {
                route,
                started: now,
                status: None,
                model: None,
                session: None,
                prompt_tokens: 0,
                completion_tokens: 0,
                prompt_sha256: None,
                first_chunk: None,
                span: None,
            },
        );
    }

    pub(super) fn meter_of(&self, conn: ConnId) -> Option<&Meter> {
        self.meters.get(&conn)
    }

    /// The span of the request on `conn`.
    pub(super) fn span_mut(&mut self, conn: ConnId) -> Option<&mut Span> {
        self.meters.get_mut(&conn)?.span.as_mut()
    }

    /// The request on `conn` holds `span` (unless it holds one already).
    pub(super) fn hold_span(&mut self, conn: ConnId, span: Option<Span>) {
        if let Some(m) = self.meters.get_mut(&conn) {
            m.span = m.span.take().or(span);
        }
    }

    /// The span of the request on `conn`, handed to what answers it past
    /// the request (a background answer's job).
    pub(super) fn take_span(&mut self, conn: ConnId) -> Option<Span> {
        self.meters.get_mut(&conn)?.span.take()
    }

    /// The request on `conn` went to `session`'s agent for `model`, with
    /// this invocation `payload` (hashed for the audit trail if `audit`).
    pub(super) fn invoked(
        &mut self,
        conn: ConnId,
        model: &str,
        session: &str,
        prompt_tokens: u64,
        payload: &Value,
        audit: bool,
    ) {
        if let Some(m) = self.meters.get_mut(&conn) {
            m.model = Some(model.to_owned());
            m.session = Some(session.to_owned());
            m.prompt_tokens = prompt_tokens;
            if audit {
                // The conversation alone, not the parameters: the same
                // prompt hashes the same through every API.
                let prompt = ["messages", "prompt", "input"]
                    .iter()
                    .find_map(|k| payload.get(k))
                    .unwrap_or(payload);
                let text = serde_json::to_vec(prompt).unwrap_or_default();
                m.prompt_sha256 = Some(crate::audit::sha256_hex(&text));
            }
        }
    }

    /// The agent's first piece of the answer for `conn` arrived.
    pub(super) fn first_chunk(&mut self, conn: ConnId, now: Instant, metrics: &mut Metrics) {
        if let Some(m) = self.meters.get_mut(&conn) {
            if m.first_chunk.is_none() {
                m.first_chunk = Some(now);
                metrics.first_chunk(m.route, now.saturating_duration_since(m.started));
            }
        }
    }

    /// The answer for `conn` used this many tokens.
    pub(super) fn usage(&mut self, conn: ConnId, prompt: u64, completion: u64) {
        if let Some(m) = self.meters.get_mut(&conn) {
            m.prompt_tokens = prompt.max(m.prompt_tokens);
            m.completion_tokens = completion;
        }
    }

    /// The response head for `conn` went out with `status` (`again`: even
    /// if one was noted already, as a refusal's).
    pub(super) fn head(
        &mut self,
        conn: ConnId,
        status: u16,
        again: bool,
        now: Instant,
        metrics: &mut Metrics,
    ) {
        if let Some(m) = self.meters.get_mut(&conn) {
            if again || m.status.is_none() {
                m.status = Some(status);
                metrics.first_byte(m.route, now.saturating_duration_since(m.started));
            }
        }
    }

    /// The WebSocket upgrade on `conn` was accepted.
    pub(super) fn upgraded(&mut self, conn: ConnId) {
        if let Some(m) = self.meters.get_mut(&conn) {
            m.status = Some(101);
        }
    }

    /// The request on `conn` is over: its meter (its span taken out),
    /// with its status (499, the editor closed the request, when no head
    /// had gone out) and how long it took, counted in `metrics`.
    pub(super) fn end(
        &mut self,
        conn: ConnId,
        now: Instant,
        metrics: &mut Metrics,
    ) -> Option<Ended> {
        let mut meter = self.meters.remove(&conn)?;
        let status = meter.status.unwrap_or(499);
        let took = now.saturating_duration_since(meter.started);
        metrics.finished(meter.route, status, took);
        let span = meter.span.take();
        Some(Ended {
            meter,
            span,
            status,
            took,
        })
    }
}
