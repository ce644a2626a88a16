//! The provider state machine: editor requests and agent messages in,
//! responses, the steps of each answer (for the editor's connection to
//! write, see [`crate::stream`]) and agent messages out.
//!
//! Methods come in four groups, as in every state machine of this crate:
//! getters; `handle_*` for input from the outside world; commands
//! (`open_agent`); and `poll_*` for output. After any `handle_*` call, drain
//! [`Provider::poll_output`] until `None`, then arm a timer for
//! [`Provider::poll_timeout`].

mod agents;
mod by_id;
mod content;
mod control;
mod editor;
mod health;
mod invoke;
mod kept;
mod meter;
mod questions;
mod security;
mod tool_spans;
mod trace;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};

use crate::agent::close::{LinkClose, PINGS_MISSED};
use crate::agent::message::{FromAgent, Invalid};
use crate::audit::Audit;
use crate::config::Config;
use crate::error::{ApiError, Dialect};
use crate::http::{HttpError, Limits, Request, Response, ServerConn};
use crate::idmap::IdMap;
use crate::limiter::TokenBucket;
use crate::metrics::Metrics;
use crate::session::Sessions;
use crate::stream::{AnswerEvent, Answering};
use crate::telemetry::{Span, Tracer};
use crate::time::later;

use by_id::Answers;
use invoke::Invocation;
use kept::KeptAnswers;
use meter::Meter;
pub use questions::Decision;
use questions::Questions;

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

/// What the driver must do.
#[derive(Debug)]
pub enum Output {
    /// Answer the request. A [`crate::http::Body::Full`] response
    /// completes it; a stream continues with `Data` and `End`.
    Respond { to: RequestId, response: Response },
    /// The next bytes of a streamed body.
    Data { to: RequestId, data: Bytes },
    /// The streamed body is complete.
    End { to: RequestId },
    /// The next step of the answer to a model request, written by the
    /// connection's own [`Answering`] (see [`crate::stream`]).
    Answer { to: RequestId, event: AnswerEvent },
    /// Refuse what the connection sent, which could not be read as a
    /// request ([`Provider::handle_http_error`]): the response, then the
    /// connection closes.
    Refuse { conn: ConnId, response: Response },
    /// Accept the WebSocket upgrade (`key` is `Sec-WebSocket-Key`); the
    /// connection is an agent link from now on, pinged every `ping_every`.
    AcceptAgent {
        conn: ConnId,
        key: String,
        ping_every: Duration,
    },
    /// Accept a WebSocket upgrade for the MCP bridge's envelope (`/ws`),
    /// naming the subprotocol `protocol` if the client offered it: its
    /// frames go to the bridge, and `ToAgent` carries its frames out.
    AcceptSocket {
        conn: ConnId,
        key: String,
        protocol: Option<&'static str>,
    },
    /// Send a text frame to an agent (or to a bridge WebSocket client).
    ToAgent { conn: ConnId, text: String },
    /// Close an agent link, saying why.
    CloseAgent { conn: ConnId, why: LinkClose },
}

/// A WebSocket upgrade accepted (its `Sec-WebSocket-Key`), and whose
/// frames it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// An agent link: frames to the provider. The `101` tells the agent
    /// how often it is pinged, so that it knows how long a silence means
    /// the provider is gone.
    Agent(String, Duration),
    /// A client of the MCP bridge's envelope: frames to the bridge; the
    /// `101` names the subprotocol, if any.
    Bridge(String, Option<&'static str>),
}

impl Upgrade {
    /// The client's `Sec-WebSocket-Key`.
    pub fn key(&self) -> &str {
        match self {
            Upgrade::Agent(key, _) | Upgrade::Bridge(key, _) => key,
        }
    }

    /// The subprotocol the `101` names.
    pub fn protocol(&self) -> Option<&'static str> {
        match self {
            Upgrade::Agent(..) => None,
            Upgrade::Bridge(_, protocol) => *protocol,
        }
    }

    /// How often the provider pings the agent on this link (`None` for a
    /// bridge client).
    pub fn ping_every(&self) -> Option<Duration> {
        match self {
            Upgrade::Agent(_, every) => Some(*every),
            Upgrade::Bridge(..) => None,
        }
    }
}

impl Output {
    /// The connection this output is for.
    pub fn conn(&self) -> ConnId {
        match self {
            Output::Respond { to, .. }
            | Output::Data { to, .. }
            | Output::End { to }
            | Output::Answer { to, .. } => to.conn,
            Output::Refuse { conn, .. }
            | Output::AcceptAgent { conn, .. }
            | Output::AcceptSocket { conn, .. }
            | Output::ToAgent { conn, .. }
            | Output::CloseAgent { conn, .. } => *conn,
        }
    }

    /// Carries out an output on an editor connection: encodes it into
    /// `out`, an answer's events through the connection's `answering`.
    /// What is addressed to a request other than the one being answered
    /// is dropped (see [`RequestId`]). An accepted upgrade comes back as
    /// its `Sec-WebSocket-Key`: the driver answers `101` and the connection
    /// is a WebSocket from then on, an agent link or a bridge client.
    /// Outputs for WebSockets encode nothing.
    pub fn encode_http(
        self,
        http: &mut ServerConn,
        answering: &mut Answering,
        out: &mut BytesMut,
    ) -> Option<Upgrade> {
        match self {
            Output::Answer { to, event } => {
                answering.handle(to, event, |plain| {
                    plain.encode_plain(http, out);
                });
                None
            }
            plain => plain.encode_plain(http, out),
        }
    }

    /// [`Output::encode_http`] of an output that is no answer event.
    fn encode_plain(self, http: &mut ServerConn, out: &mut BytesMut) -> Option<Upgrade> {
        match self {
            Output::Respond { to, .. } | Output::Data { to, .. } | Output::End { to }
                if !http.is_answering(to.seq) => {}
            Output::Respond { response, .. } | Output::Refuse { response, .. } => {
                http.encode_response(&response, out)
            }
            Output::Data { data, .. } => http.encode_data(&data, out),
            Output::End { .. } => http.encode_end(out),
            Output::AcceptAgent {
                key, ping_every, ..
            } => return Some(Upgrade::Agent(key, ping_every)),
            Output::AcceptSocket { key, protocol, .. } => {
                return Some(Upgrade::Bridge(key, protocol))
            }
            Output::Answer { .. } | Output::ToAgent { .. } | Output::CloseAgent { .. } => {}
        }
        None
    }

    /// Whether this output accepts a WebSocket upgrade: the connection
    /// stops speaking HTTP after it.
    pub fn is_upgrade(&self) -> bool {
        matches!(
            self,
            Output::AcceptAgent { .. } | Output::AcceptSocket { .. }
        )
    }

    /// What an output asks of an agent link: a text frame to send, or to
    /// close with a reason. Outputs for editors ask nothing of a link.
    pub fn into_link(self) -> Option<Result<String, LinkClose>> {
        match self {
            Output::ToAgent { text, .. } => Some(Ok(text)),
            Output::CloseAgent { why, .. } => Some(Err(why)),
            _ => None,
        }
    }

    /// The bytes this output adds to its connection's backlog until the
    /// driver has written it (see [`crate::backlog::Backlog::written`]).
    pub fn backlog_bytes(&self) -> usize {
        match self {
            Output::Respond { response, .. } | Output::Refuse { response, .. } => {
                match &response.body {
                    crate::http::Body::Full(body) => body.len(),
                    crate::http::Body::Stream => 0,
                }
            }
            Output::Data { data, .. } => data.len(),
            Output::Answer { event, .. } => event.backlog_bytes(),
            Output::ToAgent { text, .. } => text.len(),
            Output::End { .. }
            | Output::AcceptAgent { .. }
            | Output::AcceptSocket { .. }
            | Output::CloseAgent { .. } => 0,
        }
    }
}

/// The bytes refusing a connection a driver will not serve because too
/// many are open: 503 in the OpenAI error shape (the request is never read,
/// so its dialect is unknown), then close.
pub fn too_many_connections() -> Bytes {
    let error = ApiError::unavailable("too many open connections; retry shortly");
    let response = Response::json(503, error.body(Dialect::OpenAi)).with_header("retry-after", "1");
    crate::http::encode_closing(&response)
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

#[derive(Debug)]
struct Buckets {
    requests: Option<TokenBucket>,
    tokens: Option<TokenBucket>,
}

/// An agent link as the provider keeps it.
struct Link {
    /// The session it registered, if any.
    session: Option<String>,
    /// When a frame last came from it; `None` for a link the driver
    /// opened itself (the built-in agent, a hub it dialed), whose silence
    /// says nothing.
    heard: Option<Instant>,
}

/// The sans-IO provider. See the crate docs for the drive loop.
pub struct Provider {
    config: Config,
    /// The instant and wall time at start: wall time is derived from
    /// instants so the core never reads a clock.
    epoch: (Instant, SystemTime),
    sessions: Sessions,
    /// Agent links, by connection.
    links: IdMap<ConnId, Link>,
    /// Links the driver opened itself (the built-in agent, a dialed hub),
    /// by the name `/health/deep` checks them under.
    attached: IdMap<ConnId, String>,
    /// The MCP bridge's latest figures, for `/metrics` and `/health/deep`.
    bridge: Option<crate::bridge::Report>,
    invocations: IdMap<u64, Invocation>,
    /// Editor connection → the invocation answering it.
    by_conn: IdMap<ConnId, u64>,
    /// Editor connection → the number of the request it is on: what is
    /// answered on it is addressed to that request ([`RequestId`]).
    requests: IdMap<ConnId, u64>,
    next_id: u64,
    /// Wake-ups for invocations (deadline or keep-alive); stale entries are
    /// skipped when they come up.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    next_ping: Instant,
    limits: HashMap<Option<usize>, Buckets>,
    /// Agent links whose backlog is high: no new requests go to them
    /// until they drain.
    congested: IdMap<ConnId, ()>,
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
    /// Requests in progress, by editor connection.
    meters: IdMap<ConnId, Meter>,
    metrics: Metrics,
    audit: Audit,
    /// Spans of the requests answered, for the driver to export.
    tracer: Tracer,
    /// Spans lost on their way out, as the driver reported them.
    spans_dropped: u64,
    /// Editors' tool calls waiting for their results, as spans.
    tool_spans: tool_spans::ToolSpans,
    /// Every answer by its id (`GET|DELETE /completions/{id}`).
    answers: Answers,
    /// Answers kept past their connection (the Responses API's store).
    kept: KeptAnswers,
    /// Agents' permission questions waiting for the user.
    questions: Questions,
}

impl Provider {
    /// `now` and `wall` are the same moment on the two clocks.
    pub fn new(config: Config, now: Instant, wall: SystemTime) -> Self {
        let next_ping = later(now, config.agent_ping_interval);
        let audit = Audit::new(config.audit);
        // Trace ids are drawn from a one-way image of the secret key:
        // nothing of the key, or of the session and response ids, can be
        // worked back from them.
        let trace_seed = crate::telemetry::seed_from(&config.secret);
        let tracer = Tracer::new(config.trace.clone(), trace_seed, now, wall)
            .capturing_content(config.trace_content);
        let kept = KeptAnswers::new(crate::store::Store::new(config.store));
        Provider {
            config,
            epoch: (now, wall),
            sessions: Sessions::default(),
            links: IdMap::default(),
            attached: IdMap::default(),
            invocations: IdMap::default(),
            by_conn: IdMap::default(),
            requests: IdMap::default(),
            next_id: 0,
            timers: BinaryHeap::new(),
            next_ping,
            limits: HashMap::new(),
            congested: IdMap::default(),
            queued: 0,
            shutting_down: false,
            bridge: None,
            outputs: VecDeque::new(),
            texts: BytesMut::new(),
            stats: Stats::default(),
            now,
            meters: IdMap::default(),
            metrics: Metrics::default(),
            audit,
            tracer,
            spans_dropped: 0,
            tool_spans: tool_spans::ToolSpans::default(),
            answers: Answers::default(),
            kept,
            questions: Questions::default(),
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
        self.requests.insert(conn, request.seq());
        self.meter_start(conn, crate::api::routes::index_of(request.path()), now);
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
        self.meter_start(conn, route, self.now);
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
        if self.links.contains_key(&conn) {
            if bytes > self.config.max_output_bytes {
                self.congested.insert(conn, ());
            }
            return;
        }
        if self.follower_behind(conn, bytes) {
            return;
        }
        let Some(&n) = self.by_conn.get(&conn) else {
            return;
        };
        let whole = self.invocations.get(&n).is_some_and(|inv| !inv.is_stream());
        let error = if bytes > self.config.max_output_bytes && whole {
            // A whole answer waits in its connection until it is complete:
            // what waits is the answer, too large.
            let overflow = crate::answer::Overflow::Bytes(self.config.max_output_bytes);
            format!("{overflow}; the request was cancelled.")
        } else if bytes > self.config.max_output_bytes {
            format!(
                "The editor read too slowly: more than {} bytes of this answer were waiting for it.",
                self.config.max_output_bytes
            )
        } else if self.queued > self.config.max_queued_bytes {
            format!(
                "The editor read too slowly while the server's output buffers were full: more than {} bytes were waiting for all readers.",
                self.config.max_queued_bytes
            )
        } else {
            self.pause_answer(n);
            return;
        };
        self.fail(n, ApiError::agent(error), true);
    }

    /// `conn` wrote out what was waiting after a high backlog.
    pub fn handle_drained(&mut self, conn: ConnId) {
        if self.congested.remove(&conn).is_some() {
            return;
        }
        if let Some(&n) = self.by_conn.get(&conn) {
            self.resume_answer(n);
        }
    }

    /// A connection closed: an editor went away (its request is cancelled)
    /// or an agent link dropped (its requests fail at once).
    pub fn handle_conn_closed(&mut self, conn: ConnId, now: Instant) {
        self.now = now;
        if self.links.contains_key(&conn) {
            self.congested.remove(&conn);
            self.attached.remove(&conn);
            self.link_closed(conn, now);
        } else if let Some(id) = self.by_conn.remove(&conn) {
            self.editor_gone(id);
        } else {
            self.follower_gone(conn);
        }
        self.requests.remove(&conn);
        self.meter_end(conn, now, true);
    }

    /// Time passed; a call before [`Provider::poll_timeout`] is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.invocation_timer(id, now);
        }
        self.expire_sessions(now);
        self.expire_questions(now);
        self.tool_spans.expire(&mut self.tracer, now);
        if now >= self.next_ping {
            self.ping_agents(now);
            self.next_ping = later(now, self.config.agent_ping_interval);
        }
    }

    /// Pings every agent link, and closes those from which nothing came
    /// for [`PINGS_MISSED`] pings: an agent whose machine slept or whose
    /// network went away sends no close and no reset, and the requests
    /// routed to it would wait out their whole timeout. Until its
    /// connection ends, a closing link gets no new requests (it counts as
    /// congested).
    fn ping_agents(&mut self, now: Instant) {
        let silence = self.config.agent_ping_interval.saturating_mul(PINGS_MISSED);
        for (conn, link) in self.links.iter() {
            let silent = link
                .heard
                .is_some_and(|heard| now.saturating_duration_since(heard) >= silence);
            let output = match silent {
                true if self.congested.contains_key(conn) => continue,
                true => {
                    self.congested.insert(*conn, ());
                    Output::CloseAgent {
                        conn: *conn,
                        why: LinkClose::Silent,
                    }
                }
                false => Output::ToAgent {
                    conn: *conn,
                    text: crate::agent::message::to_agent::ping(),
                },
            };
            self.outputs.push_back(output);
        }
    }

    // ---- commands ----

    /// Attaches an agent the driver opened itself (an in-process agent, a
    /// hub it dialed) as if it had connected over WebSocket. `name` is what
    /// `/health/deep` calls it when [`Config::expected_agents`] lists it.
    pub fn open_agent(&mut self, conn: ConnId, name: &str) {
        let link = Link {
            session: None,
            heard: None,
        };
        self.links.insert(conn, link);
        self.attached.insert(conn, name.to_owned());
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
        for conn in self.links.keys() {
            self.outputs.push_back(Output::CloseAgent {
                conn: *conn,
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
        self.tracer.poll()
    }

    /// `count` spans were lost after [`Provider::poll_span`] (the
    /// exporter's queue was full, the collector down): counted in
    /// `/metrics` beside the ones this provider dropped itself.
    pub fn handle_spans_dropped(&mut self, count: u64) {
        self.spans_dropped = self.spans_dropped.saturating_add(count);
    }

    /// When [`Provider::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timers = self.timers.peek().map(|Reverse((at, _))| *at);
        let ping = (!self.links.is_empty()).then_some(self.next_ping);
        [
            timers,
            ping,
            self.sessions.next_expiry(),
            self.questions.due(),
            self.tool_spans.due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- shared helpers ----

    fn wall(&self, now: Instant) -> SystemTime {
        self.epoch.1 + now.saturating_duration_since(self.epoch.0)
    }

    /// A fresh id, unique within this run and different between runs.
    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A random-looking hex id (splitmix64 of seed and counter).
    fn fresh_token(&mut self) -> String {
        let mut z = self.config.id_seed ^ self.fresh_id().wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        format!("{:016x}", z ^ (z >> 31))
    }

    fn respond(
        &mut self,
        conn: ConnId,
        mut response: Response,
        extra: Vec<(&'static str, String)>,
    ) {
        response.headers.extend(extra);
        let to = self.request_on(conn);
        self.outputs.push_back(Output::Respond { to, response });
    }

    /// The request connection `conn` is on.
    fn request_on(&self, conn: ConnId) -> RequestId {
        let seq = self.requests.get(&conn).copied().unwrap_or_default();
        RequestId { conn, seq }
    }

    fn respond_json(
        &mut self,
        conn: ConnId,
        body: serde_json::Value,
        extra: Vec<(&'static str, String)>,
    ) {
        self.respond(conn, Response::json(200, body.to_string()), extra);
    }

    fn respond_error(
        &mut self,
        conn: ConnId,
        dialect: Dialect,
        error: &ApiError,
        extra: Vec<(&'static str, String)>,
    ) {
        self.trace_error(conn, error);
        self.respond(conn, error.response(dialect), extra);
    }
}

/// Seconds, for `Retry-After` and reset headers: rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests;
