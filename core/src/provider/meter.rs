//! Following each request from arrival to its answer's last byte, for the
//! metrics and the audit trail.
//!
//! A request gets a [`Meter`] when it arrives; the outputs the provider
//! hands the driver tell when its head went out and when it ended
//! ([`Provider::observe`], called from `poll_output`), so no answer path
//! needs to remember to record itself.

use std::time::Instant;

use serde_json::json;

use super::{Output, Provider, RequestId};
use crate::api::routes::label;
use crate::http::Body;
use crate::stream::AnswerEvent;
use crate::telemetry::Span;
use crate::ConnId;

/// One request in progress on an editor connection.
#[derive(Debug)]
pub(super) struct Meter {
    pub(super) route: usize,
    pub(super) started: Instant,
    status: Option<u16>,
    /// Set once the request went to an agent.
    pub(super) model: Option<String>,
    session: Option<String>,
    prompt_tokens: u64,
    completion_tokens: u64,
    prompt_sha256: Option<String>,
    first_chunk: Option<Instant>,
    /// The request's SERVER span, for a model request when tracing is on
    /// (see `trace.rs`).
    pub(super) span: Option<Span>,
}

impl Provider {
    /// A request on `route` arrived on `conn`.
    pub(super) fn meter_start(&mut self, conn: ConnId, route: usize, now: Instant) {
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

    /// The connection a request's meter is kept under: its own, or for a
    /// kept answer's job, the connection that asked and waits (a
    /// background answer's asker got its answer at once).
    pub(super) fn metered(&self, conn: ConnId) -> ConnId {
        self.kept.live_conn(conn).unwrap_or(conn)
    }

    /// The request on `conn` went to `session`'s agent for `model`, with
    /// this invocation `payload`.
    pub(super) fn meter_invoked(
        &mut self,
        conn: ConnId,
        model: &str,
        session: &str,
        prompt_tokens: u64,
        payload: &serde_json::Value,
    ) {
        let audit = self.audit.enabled();
        let conn = self.metered(conn);
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
    pub(super) fn meter_first_chunk(&mut self, conn: ConnId, now: Instant) {
        self.trace_first_chunk(conn, now);
        let conn = self.metered(conn);
        if let Some(m) = self.meters.get_mut(&conn) {
            if m.first_chunk.is_none() {
                m.first_chunk = Some(now);
                self.metrics
                    .first_chunk(m.route, now.saturating_duration_since(m.started));
            }
        }
    }

    /// The answer for `conn` used this many tokens.
    pub(super) fn meter_usage(&mut self, conn: ConnId, prompt: u64, completion: u64) {
        let conn = self.metered(conn);
        if let Some(m) = self.meters.get_mut(&conn) {
            m.prompt_tokens = prompt.max(m.prompt_tokens);
            m.completion_tokens = completion;
        }
    }

    /// Notes what an output means for its request: the head going out, or
    /// the answer ending.
    pub(super) fn observe(&mut self, output: &Output) {
        let now = self.now;
        match output {
            Output::Data { data, .. } => self.metrics.counters.bytes += data.len() as u64,
            Output::Respond {
                to: RequestId { conn, .. },
                response,
            }
            | Output::Refuse { conn, response } => {
                if let Some(m) = self.meters.get_mut(conn) {
                    m.status = Some(response.status);
                    self.metrics
                        .first_byte(m.route, now.saturating_duration_since(m.started));
                }
                if matches!(response.body, Body::Full(_)) {
                    self.meter_end(*conn, now, false);
                }
            }
            Output::End { to } => self.meter_end(to.conn, now, false),
            Output::Answer { to, event } => self.observe_answer(to.conn, event),
            Output::AcceptAgent { conn, .. } => {
                if let Some(m) = self.meters.get_mut(conn) {
                    m.status = Some(101);
                }
                self.meter_end(*conn, now, false);
            }
            Output::AcceptSocket { .. } | Output::ToAgent { .. } | Output::CloseAgent { .. } => {}
        }
    }

    /// Notes a step of an answer: a stream's head goes out when it opens,
    /// a whole answer's when it ends.
    fn observe_answer(&mut self, conn: ConnId, event: &AnswerEvent) {
        let now = self.now;
        let status = match event {
            AnswerEvent::Open(stream) if stream.is_stream() => 200,
            AnswerEvent::Finish { .. } | AnswerEvent::Vectors { .. } => 200,
            AnswerEvent::Fail(error) => {
                self.trace_error(conn, error);
                error.status
            }
            AnswerEvent::Piece { .. } => {
                self.metrics.counters.bytes += event.text_bytes() as u64;
                return;
            }
            AnswerEvent::Open(_) | AnswerEvent::Keepalive => return,
        };
        if let Some(m) = self.meters.get_mut(&conn) {
            if m.status.is_none() {
                m.status = Some(status);
                self.metrics
                    .first_byte(m.route, now.saturating_duration_since(m.started));
            }
        }
        if !matches!(event, AnswerEvent::Open(_)) {
            self.meter_end(conn, now, false);
        }
    }

    /// The request on `conn` is over: its answer ended, or its editor went
    /// away first (`editor_left`; recorded as 499, the editor closed the
    /// request, when no head had gone out).
    pub(super) fn meter_end(&mut self, conn: ConnId, now: Instant, editor_left: bool) {
        let Some(mut m) = self.meters.remove(&conn) else {
            return;
        };
        let status = m.status.unwrap_or(499);
        if let Some(span) = m.span.take() {
            self.trace_end(span, status, editor_left, now);
        }
        let took = now.saturating_duration_since(m.started);
        self.metrics.finished(m.route, status, took);
        if !self.audit.enabled() {
            return;
        }
        let ms = |d: std::time::Duration| d.as_micros() as f64 / 1000.0;
        let wall = self.wall(now);
        self.audit.record(
            wall,
            "request",
            json!({
                "route": label(m.route),
                "status": status,
                "model": m.model,
                "session_id": m.session,
                "duration_ms": ms(took),
                "first_chunk_ms": m.first_chunk.map(|t| ms(t.saturating_duration_since(m.started))),
                "prompt_tokens": m.prompt_tokens,
                "completion_tokens": m.completion_tokens,
                "prompt_sha256": m.prompt_sha256,
                "editor_left": editor_left,
            }),
        );
    }
}
