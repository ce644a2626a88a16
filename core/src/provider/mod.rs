//! The provider state machine: editor requests and agent messages in,
//! responses, the steps of each answer (for the editor's connection to
//! write, see [`crate::stream`]) and agent messages out.
//!
//! Methods come in four groups, as in every state machine of this crate:
//! getters; `handle_*` for input from the outside world; commands
//! (`open_agent`); and `poll_*` for output. After any `handle_*` call, drain
//! [`Provider::poll_output`] until `None`, then arm a timer for
//! [`Provider::poll_timeout`].
//!
//! [`Provider`] owns parts, each keeping its own state behind its own
//! methods, as quinn-proto's `Connection` hands its state to `Streams`,
//! `PacketSpace` and `TimerTable`:
//!
//! - `links.rs`: the agent links, their sessions, congestion, the links
//!   the driver opened itself, and the pings that find silent ones;
//! - `invocations.rs`: the invocations in flight, the editor connection
//!   each answers, their pieces in order and their wake-ups;
//! - `requests.rs`: the request each editor connection is on, and its
//!   meter (metrics, audit line, span);
//! - `by_id.rs`: every answer by its id, in flight or lately ended;
//! - `kept.rs`: the Responses API's store and the jobs writing its answers;
//! - `questions.rs`: the agents' permission questions;
//! - `trace.rs`: the spans, and `security.rs`: origins, credentials and
//!   rate limits;
//! - and from the crate, the sessions, the metrics and the audit trail.
//!
//! What one event means for several parts is said in four files: this one
//! (the drive contract), `editor.rs` (editor requests in), `agents.rs`
//! (agent messages in, sessions and questions) and `invoke.rs` (an
//! answer's life). `outcome.rs` holds how answers and questions end, below
//! both the parts and the metrics that count them.

mod agents;
mod by_id;
mod content;
mod control;
mod editor;
mod ids;
mod invocations;
mod invoke;
mod kept;
mod links;
pub(crate) mod outcome;
mod output;
mod questions;
mod requests;
mod routing;
mod security;
mod tool_spans;
mod trace;

use std::cell::Cell;
use std::collections::VecDeque;
use std::time::{Instant, SystemTime};

use bytes::BytesMut;
use serde_json::{json, Value};

use crate::agent::close::LinkClose;
use crate::agent::message::{FromAgent, Invalid};
use crate::audit::Audit;
use crate::auth::LastPresented;
use crate::config::Config;
use crate::error::{ApiError, Dialect};
use crate::http::{Body, Fields, HttpError, Limits, Request, Response};
use crate::idmap::IdMap;
use crate::metrics::{Gauges, Metrics};
use crate::session::{Sessions, Status};
use crate::stream::AnswerEvent;
use crate::telemetry::Span;

use by_id::Answers;
use ids::{Epoch, Ids};
use invocations::Invocations;
use kept::KeptAnswers;
use links::Links;
pub use output::{too_many_connections, Output, Upgrade};
use questions::Questions;
use requests::Requests;
use security::RateLimits;
use trace::Traces;

/// A connection, named by the driver: unique among its live connections.
/// An editor connection carries one request at a time; an agent link is a
/// connection that was upgraded to WebSocket (or an in-process agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// One request on an editor connection: the connection, and the
/// request's number on it ([`Request::seq`]). An answer is addressed to its
/// request, not only to the connection, so that whatever comes late for a
/// request already answered (an event of a stream that ended, a keep-alive)
/// is dropped where the connection writes, never written into the answer
/// of the request after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    pub conn: ConnId,
    pub seq: u64,
}

impl RequestId {
    /// `request`, which arrived on `conn`.
    pub fn of(conn: ConnId, request: &Request) -> Self {
        RequestId {
            conn,
            seq: request.seq(),
        }
    }
}

/// Counters for `/health` and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub invocations: u64,
    /// Chunks or results for no waiting request.
    pub dropped_messages: u64,
    pub duplicate_chunks: u64,
    pub rate_limited: u64,
    pub timeouts: u64,
    pub cancels: u64,
}

/// The sans-IO provider. See the crate docs for the drive loop, and the
/// module's for its parts.
pub struct Provider {
    config: Config,
    epoch: Epoch,
    /// The last instant turned into wall time, and that wall time: every
    /// frame of a burst is handled at the same instant, and the
    /// conversion subtracts instants.
    last_wall: Cell<(Instant, SystemTime)>,
    ids: Ids,
    sessions: Sessions,
    links: Links,
    invocations: Invocations,
    /// Every answer by its id (`GET|DELETE /completions/{id}`).
    answers: Answers,
    requests: Requests,
    /// The secret each connection presented last (see [`LastPresented`]).
    presented: IdMap<ConnId, LastPresented>,
    limits: RateLimits,
    /// Answers kept past their connection (the Responses API's store).
    kept: KeptAnswers,
    /// Agents' permission questions waiting for the user.
    questions: Questions,
    /// Spans of the requests answered, for the driver to export.
    traces: Traces,
    metrics: Metrics,
    audit: Audit,
    /// The MCP bridge's latest figures, for `/metrics` and `/health/deep`.
    bridge: Option<crate::bridge::Report>,
    /// Bytes waiting to be written to every connection, as last told by
    /// [`Provider::handle_queued`].
    queued: usize,
    /// Set by [`Provider::shut_down`]: every new request gets 503.
    shutting_down: bool,
    outputs: VecDeque<Output>,
    /// The text of the pieces posted to editors, in blocks reused once the
    /// editors wrote them ([`crate::stream::Piece`]).
    texts: BytesMut,
    stats: Stats,
    /// The time of the latest call that brought one: outputs are stamped
    /// with it as the driver drains them.
    now: Instant,
}

impl Provider {
    /// `now` and `wall` are the same moment on the two clocks.
    pub fn new(config: Config, now: Instant, wall: SystemTime) -> Self {
        let audit = Audit::new(config.audit);
        let traces = Traces::new(&config, now, wall);
        let kept = KeptAnswers::new(crate::store::Store::new(config.store));
        Provider {
            epoch: Epoch { instant: now, wall },
            last_wall: Cell::new((now, wall)),
            ids: Ids::new(config.id_seed),
            sessions: Sessions::default(),
            links: Links::new(config.agent_ping_interval, now),
            invocations: Invocations::new(&config),
            answers: Answers::default(),
            requests: Requests::default(),
            presented: IdMap::default(),
            limits: RateLimits::new(config.requests_per_minute, config.tokens_per_minute),
            kept,
            questions: Questions::default(),
            traces,
            metrics: Metrics::default(),
            audit,
            bridge: None,
            queued: 0,
            shutting_down: false,
            outputs: VecDeque::new(),
            texts: BytesMut::new(),
            stats: Stats::default(),
            now,
            config,
        }
    }

    // ---- getters ----

    /// Caps the driver's HTTP reader must apply.
    pub fn http_limits(&self) -> Limits {
        self.config.http
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Bytes all connections together may have waiting for their readers.
    pub fn max_queued_bytes(&self) -> usize {
        self.config.max_queued_bytes
    }

    /// Requests waiting for an agent.
    pub fn in_flight(&self) -> usize {
        self.invocations.len()
    }

    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Whether [`Provider::shut_down`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    // ---- input ----

    /// A complete request arrived on an editor connection.
    pub fn handle_request(&mut self, conn: ConnId, request: Request, now: Instant) {
        self.now = now;
        self.stats.requests += 1;
        self.requests.arrived(conn, request.seq());
        let route = crate::api::routes::index_of(request.path());
        self.requests.meter(conn, route, now);
        let dialect = crate::api::routes::dialect_of(request.path());
        let mut extra = Vec::new();
        if let Err(e) = self.serve(conn, &request, &mut extra, now) {
            self.respond_error(conn, dialect, &e, extra);
        }
    }

    /// The driver's HTTP reader rejected what the connection sent; the
    /// connection closes after this answer.
    pub fn handle_http_error(&mut self, conn: ConnId, error: &HttpError) {
        let route = error
            .path()
            .map_or(crate::api::routes::UNMATCHED, crate::api::routes::index_of);
        self.requests.meter(conn, route, self.now);
        let dialect = error
            .path()
            .map_or(Dialect::OpenAi, crate::api::routes::dialect_of);
        let api_error = match error {
            HttpError::HeadTooLarge(_) => ApiError::headers_too_large(error.to_string()),
            HttpError::BodyTooLarge { .. } => ApiError::too_large(error.to_string()),
            _ => ApiError::invalid(error.to_string()),
        };
        let response = api_error.response(dialect);
        self.outputs.push_back(Output::Refuse { conn, response });
    }

    /// A text frame from an agent link.
    pub fn handle_agent_text(&mut self, conn: ConnId, text: &str, now: Instant) {
        self.handle_agent_message(conn, FromAgent::parse(text), now);
    }

    /// A frame from an agent link, already parsed by
    /// [`FromAgent::parse`]: a driver parses on its own task or thread, so
    /// a large frame never holds up other connections while it is read.
    pub fn handle_agent_message(
        &mut self,
        conn: ConnId,
        message: Result<FromAgent<'_>, Invalid>,
        now: Instant,
    ) {
        self.now = now;
        self.agent_message(conn, message, now);
    }

    /// How many bytes wait to be written to all connections together
    /// (the switchboard tells this before every call).
    pub fn handle_queued(&mut self, bytes: usize) {
        self.queued = bytes;
    }

    /// `conn` has `bytes` posted and not yet written, past
    /// [`crate::backlog::PAUSE_AT`]. An editor that reads slower than its
    /// agent writes gets its answer paused at the agent, and ended with an
    /// error past `max_output_bytes`, or once all connections together
    /// have more than `max_queued_bytes` waiting (an agent that ignores
    /// `pause` on many streams at once must not hold the sum of their
    /// caps); an agent link with more than `max_output_bytes` unread (a
    /// few requests with long prompts are normal) gets no new requests
    /// until it drains.
    pub fn handle_backlog(&mut self, conn: ConnId, bytes: usize) {
        let max = self.config.max_output_bytes;
        if self.links.contains(conn) {
            if bytes > max {
                self.links.congest(conn);
            }
            return;
        }
        let to = self.requests.on(conn);
        if (self.kept).follower_behind(to, bytes, max, &mut self.outputs) {
            return;
        }
        let Some(n) = self.invocations.answering(conn) else {
            return;
        };
        let whole = self.invocations.get(n).is_some_and(|inv| !inv.stream);
        let error = if bytes > max && whole {
            // A whole answer waits in its connection until it is complete:
            // what waits is the answer, too large.
            let overflow = crate::answer::Overflow::Bytes(max);
            format!("{overflow}; the request was cancelled.")
        } else if bytes > max {
            format!(
                "The editor read too slowly: more than {max} bytes of this answer were waiting for it."
            )
        } else if self.queued > self.config.max_queued_bytes {
            format!(
                "The editor read too slowly while the server's output buffers were full: more than {} bytes were waiting for all readers.",
                self.config.max_queued_bytes
            )
        } else {
            self.invocations.pause(n, &mut self.outputs);
            return;
        };
        self.fail(n, ApiError::agent(error), true);
    }

    /// `conn` wrote out what was waiting after a high backlog.
    pub fn handle_drained(&mut self, conn: ConnId) {
        if self.links.drained(conn) {
            return;
        }
        if let Some(n) = self.invocations.answering(conn) {
            self.invocations.resume(n, &mut self.outputs);
        }
    }

    /// A connection closed: an editor went away (its request is cancelled)
    /// or an agent link dropped (its requests fail at once).
    pub fn handle_conn_closed(&mut self, conn: ConnId, now: Instant) {
        self.now = now;
        if self.links.contains(conn) {
            self.link_closed(conn, now);
        } else if let Some(n) = self.invocations.forget_conn(conn) {
            self.editor_gone(n);
        } else {
            self.kept.follower_gone(conn);
        }
        self.requests.closed(conn);
        self.presented.remove(&conn);
        self.meter_end(conn, now, true);
    }

    /// Time passed; a call before [`Provider::poll_timeout`] is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        while let Some(n) = self.invocations.due(now) {
            self.invocation_timer(n, now);
        }
        self.expire_sessions(now);
        for q in self.questions.expire(now, &mut self.outputs) {
            self.question_ended(&q, outcome::Decision::Timeout, now);
        }
        self.traces.expire(now);
        self.links.ping(now, &mut self.outputs);
    }

    // ---- commands ----

    /// Attaches an agent the driver opened itself (an in-process agent, a
    /// hub it dialed) as if it had connected over WebSocket. `name` is what
    /// `/health/deep` calls it when [`Config::expected_agents`] lists it.
    pub fn open_agent(&mut self, conn: ConnId, name: &str) {
        self.links.attach(conn, name);
    }

    /// The MCP bridge's figures now (the driver hands them on when they
    /// change): shown in `/metrics` and checked in `/health/deep`.
    pub fn handle_bridge_report(&mut self, report: crate::bridge::Report) {
        self.bridge = Some(report);
    }

    /// The server is stopping: every request still waiting is answered
    /// now (a stream ends with an error event and its end marker, a whole
    /// answer gets 503), agents get `cancel` and their links are closed,
    /// and every later request gets 503. The driver stops accepting, lets
    /// its connections write what was posted, then exits.
    pub fn shut_down(&mut self) {
        self.shutting_down = true;
        let error = ApiError::unavailable("The server is shutting down.");
        self.fail_where(|_| true, &error, true);
        for conn in self.links.conns() {
            self.outputs.push_back(Output::CloseAgent {
                conn,
                why: LinkClose::ShuttingDown,
            });
        }
    }

    // ---- output ----

    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            match self.outputs.pop_front()? {
                // A kept answer is written here, not by a connection.
                Output::Answer { to, event } if kept::is_kept(to.conn) => {
                    self.kept_event(to, event)
                }
                output => {
                    self.observe(&output);
                    return Some(output);
                }
            }
        }
    }

    /// The next audit line to append to the log (JSON, no newline), when
    /// [`Config::audit`] is on.
    pub fn poll_audit(&mut self) -> Option<String> {
        self.audit.poll()
    }

    /// The line [`Provider::poll_audit`] would return next, left queued
    /// (for a writer that may be too busy to take it).
    pub fn peek_audit(&self) -> Option<&str> {
        self.audit.peek()
    }

    /// The next finished span, for the driver to export (none unless
    /// [`Config::trace`] is set).
    pub fn poll_span(&mut self) -> Option<Span> {
        self.traces.poll()
    }

    /// `count` spans were lost after [`Provider::poll_span`] (the
    /// exporter's queue was full, the collector down): counted in
    /// `/metrics` beside the ones this provider dropped itself.
    pub fn handle_spans_dropped(&mut self, count: u64) {
        self.traces.lost(count);
    }

    /// When [`Provider::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.invocations.next_timeout(),
            self.links.due(),
            self.sessions.next_expiry(),
            self.questions.due(),
            self.traces.due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- what outputs mean for their requests ----

    /// Notes what an output means for its request: the head going out, or
    /// the answer ending. Called as the driver takes it, so no answer path
    /// needs to remember to record itself.
    fn observe(&mut self, output: &Output) {
        let now = self.now;
        match output {
            Output::Data { data, .. } => self.metrics.counters.bytes += data.len() as u64,
            Output::Respond {
                to: RequestId { conn, .. },
                response,
            }
            | Output::Refuse { conn, response } => {
                let status = response.status;
                (self.requests).head(*conn, status, true, now, &mut self.metrics);
                if matches!(response.body, Body::Full(_)) {
                    self.meter_end(*conn, now, false);
                }
            }
            Output::End { to } => self.meter_end(to.conn, now, false),
            Output::Answer { to, event } => self.observe_answer(to.conn, event),
            Output::AcceptAgent { conn, .. } => {
                self.requests.upgraded(*conn);
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
                trace::error(self.answer_span(conn), error);
                error.status
            }
            AnswerEvent::Piece { .. } => {
                self.metrics.counters.bytes += event.text_bytes() as u64;
                return;
            }
            AnswerEvent::Open(_) | AnswerEvent::Keepalive => return,
        };
        (self.requests).head(conn, status, false, now, &mut self.metrics);
        if !matches!(event, AnswerEvent::Open(_)) {
            self.meter_end(conn, now, false);
        }
    }

    /// The request on `conn` is over: its answer ended, or its editor went
    /// away first (`editor_left`; recorded as 499, the editor closed the
    /// request, when no head had gone out). Its span ends, and its audit
    /// line is written.
    fn meter_end(&mut self, conn: ConnId, now: Instant, editor_left: bool) {
        let Some(ended) = self.requests.end(conn, now, &mut self.metrics) else {
            return;
        };
        if let Some(span) = ended.span {
            self.traces.end(span, ended.status, editor_left, now);
        }
        if self.audit.enabled() {
            let fields = (ended.meter).audit_fields(ended.status, ended.took, editor_left);
            self.audit.record(self.epoch.wall(now), "request", fields);
        }
    }

    // ---- views ----

    /// The gauges of `/metrics`.
    fn gauges(&self) -> Gauges {
        let s = self.stats;
        let mut gauges = Gauges {
            in_flight: self.invocations.len(),
            open_streams: self.invocations.open_streams(),
            agent_links: self.links.len(),
            sessions: sessions_by_state(&self.sessions),
            queued_bytes: self.queued,
            requests: s.requests,
            invocations: s.invocations,
            rate_limited: s.rate_limited,
            timeouts: s.timeouts,
            cancels: s.cancels,
            dropped_agent_messages: s.dropped_messages,
            duplicate_chunks: s.duplicate_chunks,
            audit_dropped: self.audit.dropped(),
            spans_dropped: self.traces.dropped(),
            bridge: self.bridge.clone(),
            ..Gauges::default()
        };
        self.kept.gauges(&mut gauges);
        gauges
    }

    /// `/health/deep`: every configured piece checked; whether all are
    /// up, and the body.
    fn deep_health(&self) -> (bool, Value) {
        let mut checks = Vec::new();
        for name in &self.config.expected_agents {
            let link = self.links.attached(name);
            let session = link
                .and_then(|(_, session)| session)
                .and_then(|id| self.sessions.get(id));
            let (ok, detail) = match (link, session) {
                (None, _) => (false, "not connected".to_owned()),
                (Some(_), None) => (false, "connected, not registered".to_owned()),
                (Some(_), Some(s)) => (
                    s.status == Status::Active,
                    format!(
                        "session {} serving {}",
                        s.status.as_str(),
                        s.models.join(", ")
                    ),
                ),
            };
            checks.push(json!({"name": name, "ok": ok, "detail": detail}));
        }
        let queued_ok = self.queued <= self.config.max_queued_bytes;
        checks.push(json!({
            "name": "output queue",
            "ok": queued_ok,
            "detail": format!("{} of {} bytes waiting for readers", self.queued, self.config.max_queued_bytes),
        }));
        checks.push(json!({
            "name": "sessions",
            // At the cap there is still room while a dropped session can
            // be freed for a new agent.
            "ok": self.sessions.len() < self.config.max_sessions
                || self.sessions.reclaimable().is_some(),
            "detail": format!("{} of {} sessions", self.sessions.len(), self.config.max_sessions),
        }));
        if let Some(bridge) = &self.bridge {
            checks.extend(bridge.checks());
        }
        checks.push(json!({
            "name": "accepting requests",
            "ok": !self.shutting_down,
            "detail": if self.shutting_down { "shutting down" } else { "yes" },
        }));
        let healthy = checks.iter().all(|c| c["ok"] == true);
        let sessions: serde_json::Map<String, Value> = sessions_by_state(&self.sessions)
            .into_iter()
            .map(|(state, n)| (state.to_owned(), Value::from(n)))
            .collect();
        let body = json!({
            "status": if healthy { "ok" } else { "degraded" },
            "checks": checks,
            "agents": self.links.len(),
            "sessions": sessions,
            "in_flight": self.invocations.len(),
            "limits": {
                "max_sessions": self.config.max_sessions,
                "max_output_bytes": self.config.max_output_bytes,
                "max_queued_bytes": self.config.max_queued_bytes,
                "queued_bytes": self.queued,
                "requests_per_minute": self.config.requests_per_minute,
                "tokens_per_minute": self.config.tokens_per_minute,
            },
        });
        (healthy, body)
    }

    /// `/control/streams`: the answers in flight, oldest first.
    fn control_streams(&self, now: Instant) -> Value {
        let mut streams: Vec<(Instant, Value)> = self
            .invocations
            .iter()
            .map(|(n, inv)| {
                let (editor, session, stream, chunks) = inv.view();
                let meter = self.requests.meter_of(self.kept.metered(editor));
                let started = meter.map_or(now, |m| m.started);
                let entry = json!({
                    "id": invocations::wire_id(n),
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

    // ---- shared helpers ----

    fn wall(&self, now: Instant) -> SystemTime {
        let (at, wall) = self.last_wall.get();
        if at == now {
            return wall;
        }
        let wall = self.epoch.wall(now);
        self.last_wall.set((now, wall));
        wall
    }

    /// The span of the request `conn` answers (see [`trace::answer_span`]).
    fn answer_span(&mut self, conn: ConnId) -> Option<&mut Span> {
        trace::answer_span(&mut self.kept, &mut self.requests, conn)
    }

    fn respond(&mut self, conn: ConnId, mut response: Response, extra: Fields) {
        response.headers.extend(extra);
        let to = self.requests.on(conn);
        self.outputs.push_back(Output::Respond { to, response });
    }

    fn respond_json(&mut self, conn: ConnId, body: Value, extra: Fields) {
        self.respond(conn, Response::json(200, body.to_string()), extra);
    }

    fn respond_error(&mut self, conn: ConnId, dialect: Dialect, error: &ApiError, extra: Fields) {
        trace::error(self.answer_span(conn), error);
        self.respond(conn, error.response(dialect), extra);
    }
}

/// Sessions by state name, every state listed.
fn sessions_by_state(sessions: &Sessions) -> Vec<(&'static str, usize)> {
    const STATES: [Status; 5] = [
        Status::Active,
        Status::Pending,
        Status::Suspended,
        Status::Expired,
        Status::Revoked,
    ];
    STATES
        .iter()
        .map(|state| {
            let n = sessions.iter().filter(|s| s.status == *state).count();
            (state.as_str(), n)
        })
        .collect()
}

#[cfg(test)]
mod tests;
