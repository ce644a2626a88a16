//! Every bridged server, its children, and the network clients' sessions:
//! what the transports (`streamable.rs`, `stateless.rs`, `rest.rs`)
//! share. A request comes in here and goes to its transport by path; what a
//! child sends a client comes back here and goes to the connection waiting
//! for it, or down the client's event stream.
//!
//! The gateway's [`Bridge`](crate::gateway::Bridge) owns it and drives it
//! like the other state machines: it hands it the requests for its paths
//! that are not the gateway's own (Host, Origin and the API key already
//! checked by the provider), the child processes' lines and exits, and
//! time, and takes its queue: every [`Routed`] output for the driver, and
//! every [`Event`] for the gateway, in order.

use crate::telemetry::{Span, Tracer};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::common::Answered;
use super::common::{
    event, missed, rest_answer, socket, socket_frame, stateless_answer, Parked, Pending, Reply,
    StreamStart, Target, Transport, EVENTS_KIND,
};
use super::lazy::{kept_file, LastRun};
use super::listen::Listener;
use super::logging;
use super::routes::{self, Found, Miss, Route};
use super::session::{Session, View, MAX_SOCKETS};
use super::traced::{Answering, Traces};
use super::verbatim::FromClient;
use super::{
    BridgeOutput, BridgedServer, ChildId, ChildState, ClientId, Limits, ServerSpec, Share,
};
use crate::agent::close::LinkClose;
use crate::error::Dialect;
use crate::http::{Request, Response};
use crate::idmap::{IdMap, IdSet};
use crate::mcp;
use crate::provider::{ConnId, Output, RequestId};

/// Child processes at once, all servers together; past this a new
/// session of a per-session server (or a new server's first) gets a 503.
pub const MAX_CHILDREN: usize = 64;

/// How often idle sessions are looked for.
const SWEEP: Duration = Duration::from_secs(60);

/// How often an open event stream gets a `:` comment, so proxies and
/// clients with read timeouts keep it.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// Which cap refused a new client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// The cap on sessions is reached, and every session is busy.
    Sessions(usize),
    /// [`MAX_CHILDREN`] child processes run, each with a client.
    Children,
}

impl Full {
    /// What the refused client is told: the cap that was hit.
    pub(crate) fn message(self) -> String {
        match self {
            Full::Sessions(cap) => format!(
                "every MCP session is busy, with a stream open or a call in flight (the cap is {cap})"
            ),
            Full::Children => format!(
                "too many MCP server processes are running, each with a client (the cap is {MAX_CHILDREN})"
            ),
        }
    }
}

/// An aggregate session's "child": the bridge itself answers it (no
/// process ever has this id: children are numbered from 1).
pub(crate) const BRIDGE: ChildId = ChildId(0);

/// What the registry tells the gateway (`crate::gateway`), which owns it
/// and claims its own routes before the registry sees them: what is the
/// gateway's to do, queued with the outputs and polled in their order
/// ([`Registry::poll_queued`]). The registry never names the gateway, so
/// the dependency goes one way.
#[derive(Debug)]
pub(crate) enum Event {
    /// An `initialize` at `/mcp`, answering `to`: a new aggregate session.
    Open {
        to: RequestId,
        id: Value,
        params: Value,
        now: Instant,
    },
    /// A message at `/mcp` for the aggregate session `session`.
    Message {
        to: RequestId,
        session: String,
        message: mcp::Message,
        now: Instant,
    },
    /// A stateless request at `/mcp`, its version and headers checked.
    Stateless {
        to: RequestId,
        id: Value,
        method: String,
        params: Value,
        now: Instant,
    },
    /// A server says `message` to its client `client`, a member of the
    /// aggregate session `session`: the session's client hears it as the
    /// gateway rewrites it.
    Said {
        session: String,
        child: ChildId,
        client: ClientId,
        message: String,
        now: Instant,
    },
    /// The aggregate session `session` ended (its members on the
    /// servers' children released).
    SessionEnded { session: String },
    /// Server `server` ended.
    Retired { server: String, now: Instant },
    /// A server was added at run time.
    ServersChanged,
    /// A page of one server's list for a gather ([`Reply::Gathered`]): the
    /// gateway releases its client when the gather is done with it.
    Gathered { answered: Answered, now: Instant },
    /// A tool called as an OpenAPI operation answered `to` with `answer`
    /// (JSON-RPC, `Null` when it was not JSON).
    Operation { to: RequestId, answer: Value },
    /// Time passed (the registry's own timers are handled around it).
    Tick(Instant),
}

/// One entry of the registry's queue: an output for the driver, or an
/// event for the gateway.
#[derive(Debug)]
pub(crate) enum Queued {
    Out(Routed),
    Up(Event),
}

/// What the driver carries out.
#[derive(Debug)]
pub enum Routed {
    /// An HTTP answer, for the connection it names.
    Http(Output),
    /// Something for a child process to do.
    Child {
        child: ChildId,
        action: BridgeOutput,
    },
    /// Begin the OAuth login of remote server `server`, then answer `to`
    /// with [`Bridge::handle_login_started`](crate::gateway::Bridge::handle_login_started).
    Login { to: RequestId, server: String },
    /// Keep a lazy server's last run: write `contents` to `file` in the
    /// folder of kept runs, in place of what it held (read back at the
    /// next start, and handed to
    /// [`Bridge::handle_kept`](crate::gateway::Bridge::handle_kept)).
    Keep { file: String, contents: String },
}

/// What a server's children did that outlives them, for its figures.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Past {
    pub(super) calls: u64,
    pub(super) restarts: u64,
}

/// The most outputs of a child whose room is kept between its events.
const KEPT_ROUTING: usize = 64;

/// Every bridged server, its children and the clients' sessions.
pub(crate) struct Registry {
    pub(super) specs: Vec<ServerSpec>,
    /// The names of the servers that came from the configuration (given
    /// to [`Registry::new`] or [`Registry::configure`]), not added at run
    /// time: the only ones a new configuration may change or remove.
    pub(super) configured: HashSet<String>,
    pub(super) limits: Limits,
    /// Children by [`ChildId`] (never reused: a late report of a gone
    /// child's process finds nothing).
    pub(super) children: IdMap<ChildId, BridgedServer>,
    next_child: usize,
    /// When idle sessions are next swept.
    sweep_at: Instant,
    /// Per server: calls sent, and restarts of children now gone.
    pub(super) past: IdMap<String, Past>,
    /// The shared child of each server, by name, once made.
    pub(super) shared: IdMap<String, ChildId>,
    /// The shared child of each remote server that serves the clients of
    /// the stateless revision, by name, once made (see [`Registry::child_for`]).
    pub(super) modern: IdMap<String, ChildId>,
    pub(super) sessions: IdMap<String, Session>,
    pub(super) by_client: IdMap<(ChildId, ClientId), String>,
    /// Requests waiting for their response: (child, client, id as JSON).
    pub(super) pending: HashMap<(ChildId, ClientId, String), Pending>,
    /// Open event streams: connection → session id.
    pub(super) streams: IdMap<ConnId, String>,
    /// The clients that stateless requests (and REST calls without a
    /// session) have on their child, for as long as each waits.
    pub(super) stateless: IdSet<(ChildId, ClientId)>,
    /// Open `subscriptions/listen` streams, by the client each is of its
    /// child (see `listen`).
    pub(super) listeners: IdMap<(ChildId, ClientId), Listener>,
    /// Bytes every session keeps for its client (see `kept`).
    kept: usize,
    /// Stateless clients' calls waiting for their retry, by `requestState`.
    pub(super) parked: HashMap<String, Parked>,
    /// Ids of the bridge's own requests for a session or a REST call, and
    /// numbers of its parked calls and merged listings.
    pub(super) next_request: u64,
    /// Seed of session ids, from the driver's randomness.
    pub(super) seed: [u8; 32],
    next_session: u64,
    /// When the open event streams get their next keep-alive.
    keepalive_at: Option<Instant>,
    /// Lazy servers' last runs, by [`kept_file`]: each new child of the
    /// server is given its own.
    last_runs: HashMap<String, LastRun>,
    out: VecDeque<Queued>,
    /// Room for a child's outputs while they are routed, kept between
    /// events: a call's request and its answer each route some.
    routing: Vec<BridgeOutput>,
    /// Spans of the clients' requests and of what was sent for them.
    pub(super) traces: Traces,
}

impl Registry {
    pub(crate) fn new(
        specs: Vec<ServerSpec>,
        limits: Limits,
        seed: [u8; 32],
        now: Instant,
    ) -> Self {
        Registry {
            configured: specs.iter().map(|s| s.name.clone()).collect(),
            specs,
            limits,
            children: IdMap::default(),
            next_child: 0,
            sweep_at: now + SWEEP,
            past: IdMap::default(),
            shared: IdMap::default(),
            modern: IdMap::default(),
            sessions: IdMap::default(),
            by_client: IdMap::default(),
            pending: HashMap::new(),
            streams: IdMap::default(),
            stateless: IdSet::default(),
            listeners: IdMap::default(),
            kept: 0,
            parked: HashMap::new(),
            next_request: 0,
            seed,
            next_session: 0,
            keepalive_at: None,
            last_runs: HashMap::new(),
            out: VecDeque::new(),
            routing: Vec::new(),
            traces: Traces::default(),
        }
    }

    /// The registry, recording spans with `tracer` (it records none
    /// without one).
    pub(crate) fn with_tracer(mut self, tracer: Tracer) -> Self {
        self.traces.set_tracer(tracer);
        self
    }

    /// The next finished span, for the driver to export.
    pub(crate) fn poll_span(&mut self) -> Option<Span> {
        self.traces.poll()
    }

    /// Spans this registry dropped because they were not drained in time.
    pub(crate) fn spans_dropped(&self) -> u64 {
        self.traces.dropped()
    }

    // ---- getters ----

    /// The shape a refusal of a request for `path` takes: MCP clients
    /// read one of their transports' as JSON-RPC, the REST API's callers
    /// like the provider's own routes.
    pub(crate) fn refusal_dialect(path: &str) -> Dialect {
        match routes::is_mcp_transport(path) {
            true => Dialect::JsonRpc,
            false => Dialect::OpenAi,
        }
    }

    /// Every child there is, by id.
    pub(crate) fn children(&self) -> impl Iterator<Item = (ChildId, &BridgedServer)> {
        self.children.iter().map(|(id, c)| (*id, c))
    }

    pub(crate) fn child(&self, id: ChildId) -> Option<&BridgedServer> {
        self.children.get(&id)
    }

    pub(crate) fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The servers bridged now: the configured ones, then those added at
    /// run time.
    pub(crate) fn specs(&self) -> &[ServerSpec] {
        &self.specs
    }

    /// The names of the servers that came from the configuration.
    pub(crate) fn configured(&self) -> &HashSet<String> {
        &self.configured
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The shared child of server `name`, once made.
    pub(crate) fn shared_child(&self, name: &str) -> Option<ChildId> {
        self.shared.get(name).copied()
    }

    /// Whether `child`'s `client` waits for the answer to its call `id`
    /// (JSON text).
    pub(crate) fn awaits(&self, child: ChildId, client: ClientId, id: &str) -> bool {
        self.pending.contains_key(&(child, client, id.to_owned()))
    }

    /// A number of the bridge's own, never given before: the id of a
    /// request it makes, or of a gather.
    pub(crate) fn next_number(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    /// The spans of the clients' requests, for the gateway's routes to
    /// start theirs.
    pub(crate) fn traces(&mut self) -> &mut Traces {
        &mut self.traces
    }

    /// The tracer, for a test to set up.
    #[cfg(test)]
    pub(crate) fn tracer_mut(&mut self) -> &mut Tracer {
        self.traces.tracer_mut()
    }

    // ---- what the gateway does with them ----

    /// The instant of the input being handled, for the spans.
    pub(crate) fn clock(&mut self, now: Instant) {
        self.traces.clock(now);
    }

    /// Takes a new configuration's servers (`taken`, in its order, then
    /// those added at run time, as they were) and its limits; the servers
    /// it ends are retired first ([`Registry::retire`]).
    pub(crate) fn configure(&mut self, taken: Vec<ServerSpec>, limits: Limits) {
        let configured = &self.configured;
        let added_at_run_time: Vec<ServerSpec> = self
            .specs
            .drain(..)
            .filter(|s| !configured.contains(&s.name))
            .collect();
        self.configured = taken.iter().map(|s| s.name.clone()).collect();
        self.specs = taken.into_iter().chain(added_at_run_time).collect();
        self.limits = limits;
    }

    /// A new client on `child`.
    pub(crate) fn open_client(&mut self, child: ChildId, now: Instant) -> Option<ClientId> {
        let server = self.children.get_mut(&child)?;
        Some(server.open_client(now))
    }

    /// `child`'s `client` is a member of session `session`: what its
    /// server says on its own goes to that session.
    pub(crate) fn join(&mut self, session: &str, child: ChildId, client: ClientId) {
        self.by_client.insert((child, client), session.to_owned());
    }

    /// `child`'s `client` is no longer a session's member.
    pub(crate) fn leave(&mut self, child: ChildId, client: ClientId) {
        self.by_client.remove(&(child, client));
    }

    /// Session `id` was used now (it is not idle).
    pub(crate) fn touch(&mut self, id: &str, now: Instant) {
        if let Some(session) = self.sessions.get_mut(id) {
            session.used = now;
        }
    }

    // ---- input ----

    /// A request for a bridge path (one [`routes::guard`] knows), to
    /// answer `to`, and its row of the route table ([`routes::find`]):
    /// `/mcp` and `/mcp/NAME` (Streamable HTTP, both generations),
    /// `/mcp/NAME/sse` and `/mcp/NAME/messages` (HTTP+SSE), and the REST
    /// API, events and WebSocket of `rest.rs`.
    pub(crate) fn handle_request(
        &mut self,
        to: RequestId,
        request: &Request,
        found: Result<Found, Miss>,
        now: Instant,
    ) {
        self.traces.clock(now);
        let transport = routes::is_mcp_transport(request.path());
        let found = match found {
            Ok(found) => found,
            Err(Miss::Method) if transport => {
                return self.reply_error(
                    to,
                    405,
                    mcp::INVALID_REQUEST,
                    "GET …/sse, POST …/messages",
                )
            }
            Err(miss) => return self.respond(to, missed(miss)),
        };
        if found.route != Route::Mcp {
            return self.rest(to, request, &found, now);
        }
        let name = found.params.first().copied().unwrap_or_default();
        let tail = found.params.get(1).copied().unwrap_or_default();
        if found.params.is_empty() {
            return self.streamable(to, Target::Every, request, now);
        }
        let Some(spec) = self.specs.iter().position(|s| s.name == name) else {
            let known: Vec<&str> = self.specs.iter().map(|s| s.name.as_str()).collect();
            let message = format!(
                "no bridged MCP server is called `{name}`; configured: {}",
                if known.is_empty() {
                    "none (start with --server NAME=COMMAND)".to_owned()
                } else {
                    known.join(", ")
                }
            );
            return self.reply_error(to, 404, mcp::INVALID_REQUEST, &message);
        };
        match (tail, request.method.as_ref()) {
            ("", _) => self.streamable(to, Target::Server(spec), request, now),
            ("sse", "GET") => self.open_legacy(to, spec, now),
            ("messages", "POST") => self.post_legacy(to, spec, request, now),
            ("sse" | "messages", _) => {
                self.reply_error(to, 405, mcp::INVALID_REQUEST, "GET …/sse, POST …/messages")
            }
            _ => self.reply_error(
                to,
                404,
                mcp::INVALID_REQUEST,
                "the paths are /mcp/NAME, /mcp/NAME/sse and /mcp/NAME/messages",
            ),
        }
    }

    /// The connection closed, or its peer shut its sending side (an MCP
    /// client never half-closes to wait for an answer: it left). Its event
    /// stream ends, and each call it waited for is abandoned
    /// (`Registry::abandon_calls`). A Streamable HTTP session stays until
    /// `DELETE`; an HTTP+SSE one ends with its stream.
    pub(crate) fn handle_conn_closed(&mut self, conn: ConnId, now: Instant) {
        self.traces.clock(now);
        if let Some((id, View::Stream(_))) = self.detach(conn) {
            let legacy = self
                .sessions
                .get(&id)
                .is_some_and(|session| session.transport == Transport::LegacySse);
            if legacy {
                self.end_session(&id, now);
            }
        }
        self.end_listeners(|_, listener| listener.to.conn == conn, false, now);
        let why = "the client closed its connection";
        self.abandon_calls(conn, why, now);
        self.traces.abandoned(Some(conn), &[], why);
    }

    /// `conn` no longer views its session: which session, and how it did.
    fn detach(&mut self, conn: ConnId) -> Option<(String, View)> {
        let id = self.streams.remove(&conn)?;
        let session = self.sessions.get_mut(&id)?;
        let view = match session.stream {
            Some(to) if to.conn == conn => {
                session.stream = None;
                View::Stream(to)
            }
            _ => {
                session.sockets.retain(|&socket| socket != conn);
                View::Socket
            }
        };
        Some((id, view))
    }

    /// Every call answered on `conn` is cancelled at the child
    /// (`notifications/cancelled`), so the child's slot is free again, and
    /// answered with an error saying `why`, so a connection still open
    /// can end. A request's own client (stateless, or REST without a
    /// session) ends with it.
    fn abandon_calls(&mut self, conn: ConnId, why: &str, now: Instant) {
        let left: Vec<(ChildId, ClientId, String)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.to.conn == conn)
            .map(|(key, _)| key.clone())
            .collect();
        for key in left {
            let Some(pending) = self.pending.remove(&key) else {
                continue;
            };
            let (child, client, id) = key;
            let id: Value = serde_json::from_str(&id).unwrap_or(Value::Null);
            if !self.stateless.contains(&(child, client)) {
                // A session's client: only this call is cancelled.
                let params = json!({"requestId": id, "reason": why}).into();
                let method = "notifications/cancelled".to_owned();
                let cancel = mcp::Message::Notification { method, params };
                self.forward(child, client, cancel, None, now);
            }
            // Answered in the shape its request waits for; a request's own
            // client ends with the answer, its call cancelled at the child.
            let message = format!("the call was cancelled: {why}");
            let answer = mcp::error(&id, super::SERVER_ERROR, &message, None);
            // A socket's request is traced by its call, not its connection.
            let key = Answering::Call(child, client, mcp::id_text(&id).into());
            self.traces.answer(key, &answer);
            self.answer(child, client, pending, answer, now);
        }
    }

    /// A lazy server's last run, read back from `file` (its
    /// [`kept_file`]) where [`Routed::Keep`] had it written: its children
    /// answer from it while they are stopped. A file that is not a kept
    /// run is ignored (its server starts to list, as on a first run).
    pub(crate) fn handle_kept(&mut self, file: &str, contents: &[u8], now: Instant) {
        if !self.limits.lazy {
            return;
        }
        let run = match LastRun::parse(contents) {
            Ok(run) => run,
            Err(why) => {
                tracing::warn!(file, "a kept MCP server listing is ignored: {why}");
                return;
            }
        };
        let children: Vec<ChildId> = self
            .children()
            .filter(|(_, c)| kept_file(c.spec()) == file)
            .map(|(id, _)| id)
            .collect();
        for child in children {
            self.on_child(child, now, |c| c.remember(run.clone()));
        }
        // A run learned in this process is fresher than the file.
        self.last_runs.entry(file.to_owned()).or_insert(run);
    }

    pub(crate) fn handle_spawned(&mut self, child: ChildId, now: Instant) {
        self.on_child(child, now, |c| c.handle_spawned(now));
    }

    pub(crate) fn handle_spawn_failed(&mut self, child: ChildId, error: &str, now: Instant) {
        self.on_child(child, now, |c| c.handle_spawn_failed(error, now));
    }

    /// How a remote server is doing, as its client saw last.
    pub(crate) fn handle_remote_status(
        &mut self,
        child: ChildId,
        status: crate::upstream::Status,
        now: Instant,
    ) {
        self.on_child(child, now, |c| c.handle_remote_status(status));
    }

    /// A remote server answers the coming `initialize` with no session.
    pub(crate) fn handle_child_sessionless(&mut self, child: ChildId, now: Instant) {
        self.on_child(child, now, |c| c.handle_child_sessionless());
    }

    pub(crate) fn handle_child_line<'a>(
        &mut self,
        child: ChildId,
        line: impl Into<mcp::Line<'a>>,
        now: Instant,
    ) {
        let line = line.into();
        self.on_child(child, now, |c| c.handle_child_line(line, now));
    }

    /// The child exited; `said` is the end of what it wrote on stderr
    /// (empty when unknown), for the clients' error.
    pub(crate) fn handle_child_exit(&mut self, child: ChildId, said: &str, now: Instant) {
        self.on_child(child, now, |c| c.handle_child_exit(said, now));
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.traces.clock(now);
        if self.keepalive_at.is_some_and(|at| at <= now) {
            self.keepalive_at = (!self.streams.is_empty()).then(|| now + KEEPALIVE);
            for (conn, id) in &self.streams {
                let Some(session) = self.sessions.get(id) else {
                    continue;
                };
                // A socket has none: WebSocket pings keep it.
                let Some(to) = session.stream.filter(|to| to.conn == *conn) else {
                    continue;
                };
                let data = match session.stream_kind {
                    EVENTS_KIND => Bytes::from_static(b"event: heartbeat\ndata: {}\n\n"),
                    _ => Bytes::from_static(b":\n\n"),
                };
                let beat = Queued::Out(Routed::Http(Output::Data { to, data }));
                self.out.push_back(beat);
            }
        }
        if self.sweep_at <= now {
            self.sweep_at = now + SWEEP;
            self.sweep(now);
        }
        self.up(Event::Tick(now));
        let due: Vec<ChildId> = self
            .children
            .iter()
            .filter(|(_, c)| c.poll_timeout().is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for child in due {
            self.on_child(child, now, |c| c.handle_timeout(now));
        }
    }

    /// `conn` has too much unread: its event stream ends (the session
    /// holds what follows, boundedly, for a reconnect with
    /// `Last-Event-ID`), its WebSocket closes, a call whose answer
    /// streams to it (its progress first) is cancelled at the child, and
    /// a listen stream on it ends (its client to listen again).
    pub(crate) fn handle_slow_conn(&mut self, conn: ConnId, now: Instant) {
        self.traces.clock(now);
        let streaming = |p: &Pending| p.to.conn == conn && p.streams();
        if self.pending.values().any(streaming) {
            tracing::warn!("an MCP bridge client reads too slowly: its call was cancelled");
            self.abandon_calls(conn, "the client read too slowly", now);
        }
        if self.listeners.values().any(|l| l.to.conn == conn) {
            tracing::warn!("an MCP listen stream's client reads too slowly: the stream was ended");
            self.end_listeners(|_, listener| listener.to.conn == conn, true, now);
        }
        let Some((_, view)) = self.detach(conn) else {
            return;
        };
        tracing::warn!("an MCP bridge client reads too slowly: its stream was cut");
        let output = match view {
            View::Socket => Output::CloseAgent {
                conn,
                why: LinkClose::TooSlow,
            },
            View::Stream(to) => Output::End { to },
        };
        self.push(Routed::Http(output));
    }

    // ---- commands ----

    /// Stops every child (the process is shutting down).
    pub(crate) fn stop(&mut self, now: Instant) {
        self.end_listeners(|_, _| true, true, now);
        let all: Vec<ChildId> = self.children.keys().copied().collect();
        for child in all {
            self.on_child(child, now, |c| c.stop(now));
        }
    }

    /// Server `name` ends: its children stop, every call in flight
    /// answered with an error, and its sessions end (their next request
    /// gets 404, and an MCP client initializes again). Its spec stays:
    /// the caller removes or replaces it.
    pub(crate) fn retire(&mut self, name: &str, now: Instant) {
        let children: Vec<ChildId> = self
            .children()
            .filter(|(_, c)| c.spec().name == name)
            .map(|(id, _)| id)
            .collect();
        for child in &children {
            self.on_child(*child, now, |c| c.stop(now));
        }
        self.end_listeners(|child, _| children.contains(&child), true, now);
        let doomed: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| children.contains(&s.child))
            .map(|(id, _)| id.clone())
            .collect();
        for id in doomed {
            self.end_session(&id, now);
        }
        self.shared.remove(name);
        self.modern.remove(name);
        let server = name.to_owned();
        self.up(Event::Retired { server, now });
    }

    // ---- output ----

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.children
            .values()
            .filter_map(BridgedServer::poll_timeout)
            .chain(self.keepalive_at)
            .chain((!self.sessions.is_empty() || !self.parked.is_empty()).then_some(self.sweep_at))
            .min()
    }

    /// The next output for the driver or event for the gateway, in the
    /// order they were made.
    pub(crate) fn poll_queued(&mut self) -> Option<Queued> {
        self.out.pop_front()
    }

    /// What is queued after an event being handled: set aside while the
    /// gateway handles it, so what the handling outputs comes first, as
    /// if it had been done where the event was queued
    /// ([`Registry::requeue`]).
    pub(crate) fn set_aside(&mut self) -> VecDeque<Queued> {
        std::mem::take(&mut self.out)
    }

    /// Queues again what [`Registry::set_aside`] took, after what was
    /// queued since. The shorter of the two is moved, so a burst of events
    /// (a fan-out's answers on `/mcp`) does not copy the queue behind them
    /// once per event.
    pub(crate) fn requeue(&mut self, mut rest: VecDeque<Queued>) {
        if self.out.len() <= rest.len() {
            while let Some(queued) = self.out.pop_back() {
                rest.push_front(queued);
            }
            self.out = rest;
        } else {
            self.out.extend(rest);
        }
    }

    pub(crate) fn push(&mut self, routed: Routed) {
        self.out.push_back(Queued::Out(routed));
    }

    fn push_all(&mut self, outputs: Vec<Output>) {
        let queued = outputs.into_iter().map(|o| Queued::Out(Routed::Http(o)));
        self.out.extend(queued);
    }

    /// Tells the gateway of `event`.
    pub(crate) fn up(&mut self, event: Event) {
        self.out.push_back(Queued::Up(event));
    }

    // ---- what the transports share ----

    /// The child a new client of server `spec` goes to: the shared one, or
    /// a new one for a per-session server. A `modern` client (of the
    /// stateless revision) of a shared remote server has a shared child
    /// of its own, which speaks that revision to the server when it
    /// offers it: only there are its tools for that revision listed and
    /// its own requests asked of a client (as `input_required`), while
    /// the clients of the session revisions keep their session. At
    /// [`MAX_CHILDREN`] a child nobody uses makes room first; only when
    /// every child has a client is the new one refused.
    pub(crate) fn child_for(
        &mut self,
        spec: usize,
        modern: bool,
        now: Instant,
    ) -> Result<ChildId, Full> {
        let modern = modern && self.modern_apart(spec);
        let name = &self.specs[spec].name;
        let share = self.specs[spec].share;
        let shared = if modern { &self.modern } else { &self.shared };
        if let (Share::Shared, Some(&child)) = (share, shared.get(name)) {
            return Ok(child);
        }
        if self.children.len() >= MAX_CHILDREN && !self.reclaim_child(now) {
            tracing::warn!("{MAX_CHILDREN} MCP server processes run already, each with a client: no more are started");
            return Err(Full::Children);
        }
        self.next_child += 1;
        let child = ChildId(self.next_child);
        let mut server = BridgedServer::new(self.specs[spec].clone(), self.limits.clone(), now);
        if let Some(run) = self.last_runs.get(&kept_file(&self.specs[spec])) {
            server.remember(run.clone());
        }
        if modern {
            server.prefer_stateless();
        }
        self.children.insert(child, server);
        if share == Share::Shared {
            let shared = if modern {
                &mut self.modern
            } else {
                &mut self.shared
            };
            shared.insert(self.specs[spec].name.clone(), child);
        }
        Ok(child)
    }

    /// Makes room for a child: one with no client and nothing in flight
    /// is forgotten (no process) or stopped for good (a shared one's
    /// server gets a new child when a client comes). A child already
    /// stopping is on its way out and frees its place when it exits.
    /// Whether one was found.
    fn reclaim_child(&mut self, now: Instant) -> bool {
        let unused = |c: &BridgedServer| c.clients() == 0 && c.in_flight() == 0;
        let idle = |state| {
            self.children
                .iter()
                .filter(|(_, c)| unused(c) && c.state() == state)
                .map(|(id, _)| *id)
                .min_by_key(|id| id.0)
        };
        let Some(child) = idle(ChildState::Stopped).or_else(|| {
            [
                ChildState::Running,
                ChildState::Failed,
                ChildState::Starting,
                ChildState::Restarting,
            ]
            .into_iter()
            .find_map(idle)
        }) else {
            return false;
        };
        tracing::info!("an MCP server process nobody uses is stopped to make room for another");
        self.shared.retain(|_, shared| *shared != child);
        self.modern.retain(|_, modern| *modern != child);
        match self.children.get(&child).map(BridgedServer::state) {
            Some(ChildState::Stopped) => {
                self.forget_child(child);
            }
            _ => self.on_child(child, now, |c| c.stop(now)),
        }
        true
    }

    /// Whether server `spec` has a child apart for the clients of the
    /// stateless revision (see [`Registry::child_for`]): a shared remote
    /// one.
    pub(crate) fn modern_apart(&self, spec: usize) -> bool {
        self.specs
            .get(spec)
            .is_some_and(|s| s.share == Share::Shared && s.remote.is_some())
    }

    /// A client of its own on a child of server `spec`, for one stateless
    /// request (`modern`) or REST call: it ends with its answer, or when
    /// its connection does ([`Registry::release_client`]).
    pub(crate) fn ephemeral_client(
        &mut self,
        spec: usize,
        modern: bool,
        now: Instant,
    ) -> Result<(ChildId, ClientId), Full> {
        let child = self.child_for(spec, modern, now)?;
        let client = self
            .children
            .get_mut(&child)
            .map(|c| c.open_client(now))
            .ok_or(Full::Children)?;
        self.stateless.insert((child, client));
        Ok((child, client))
    }

    /// A client is done with its child: its calls still in flight are
    /// cancelled there, and a per-session child with no client left stops
    /// (it was made for this client alone).
    pub(crate) fn release_client(&mut self, child: ChildId, client: ClientId, now: Instant) {
        self.stateless.remove(&(child, client));
        self.on_child(child, now, |c| {
            c.close_client(client, now);
            if c.spec().share == Share::PerSession && c.clients() == 0 {
                c.stop(now);
            }
        });
    }

    /// Ends the sessions unused for `session_idle` with no stream open
    /// (a client gone without `DELETE`).
    fn sweep(&mut self, now: Instant) {
        self.expire_parked(now);
        let stale: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                !s.viewed() && now.saturating_duration_since(s.used) >= self.limits.session_idle
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            tracing::debug!("an idle MCP session expired");
            self.end_session(&id, now);
        }
    }

    /// At the session cap: ends the least recently used session that is
    /// idle (no stream open, no call in flight), whose client is most
    /// likely gone without `DELETE`. Its next request, if it comes, gets
    /// 404, and an MCP client initializes again. Whether one ended.
    fn reclaim_session(&mut self, now: Instant) -> bool {
        // A session is busy when any of its clients has a call in flight
        // (an aggregate session has one on each of its servers).
        let busy: HashSet<&String> = self
            .pending
            .keys()
            .filter_map(|(child, client, _)| self.by_client.get(&(*child, *client)))
            .collect();
        let idlest = self
            .sessions
            .iter()
            .filter(|(id, s)| !s.viewed() && !busy.contains(id))
            .min_by_key(|(_, s)| s.used)
            .map(|(id, _)| id.clone());
        let Some(id) = idlest else {
            return false;
        };
        tracing::debug!("the least recently used MCP session ended to make room for a new one");
        self.end_session(&id, now);
        true
    }

    /// A new session of `transport` for server `spec`: its id.
    pub(crate) fn open_session(
        &mut self,
        spec: usize,
        transport: Transport,
        now: Instant,
    ) -> Result<String, Full> {
        self.admit_session(now)?;
        let child = self.child_for(spec, false, now)?;
        let client = self
            .children
            .get_mut(&child)
            .ok_or(Full::Children)?
            .open_client(now);
        Ok(self.insert_session(child, client, transport, now))
    }

    /// Room for one more session: at the cap, the least recently used
    /// idle one ends ([`Registry::reclaim_session`]); refused when all are
    /// busy.
    pub(crate) fn admit_session(&mut self, now: Instant) -> Result<(), Full> {
        if self.sessions.len() >= self.limits.max_sessions && !self.reclaim_session(now) {
            return Err(Full::Sessions(self.limits.max_sessions));
        }
        Ok(())
    }

    /// A new session of `child`'s `client` ([`BRIDGE`]'s for the aggregate
    /// endpoint, whose members say whose clients are its): its id.
    pub(crate) fn insert_session(
        &mut self,
        child: ChildId,
        client: ClientId,
        transport: Transport,
        now: Instant,
    ) -> String {
        self.next_session += 1;
        let id = crate::auth::derive_token(&[&self.seed, &self.next_session.to_le_bytes()]);
        let session = Session::new(child, client, transport, now);
        self.sessions.insert(id.clone(), session);
        if child != BRIDGE {
            self.by_client.insert((child, client), id.clone());
        }
        id
    }

    /// The session `id` names, if it is one of `target`'s; else the
    /// status and message to answer with. (An id read into a `String`
    /// already is handed back as it is.)
    pub(crate) fn session_of<S: AsRef<str> + Into<String>>(
        &self,
        target: Target,
        id: Option<S>,
    ) -> Result<String, (u16, String)> {
        let given = id.ok_or_else(|| {
            (
                400,
                "missing Mcp-Session-Id: send initialize first".to_owned(),
            )
        })?;
        let id = given.as_ref();
        let known = match target {
            Target::Every => self.sessions.get(id).is_some_and(|s| s.child == BRIDGE),
            Target::Server(spec) => self.sessions.get(id).is_some_and(|s| {
                self.child(s.child)
                    .is_some_and(|c| Some(&c.spec().name) == self.specs.get(spec).map(|s| &s.name))
            }),
        };
        if known {
            Ok(given.into())
        } else {
            Err((
                404,
                "unknown or expired MCP session: initialize again".to_owned(),
            ))
        }
    }

    /// Opens the session's event stream, answering `to` (a new one
    /// replaces the old, which ends), sending what it missed.
    pub(crate) fn attach_stream(
        &mut self,
        to: RequestId,
        id: &str,
        start: StreamStart,
        now: Instant,
    ) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        let (outputs, replaced) = session.attach(to, start.kind, start.last_event, &mut self.kept);
        if let Some(old) = replaced {
            self.streams.remove(&old.conn);
            self.push(Routed::Http(Output::End { to: old }));
        }
        self.streams.insert(to.conn, id.to_owned());
        self.keepalive_at.get_or_insert(now + KEEPALIVE);
        self.respond(to, start.response);
        if let Some(data) = start.greeting {
            self.push(Routed::Http(Output::Data { to, data }));
        }
        self.push_all(outputs);
    }

    /// A WebSocket views the session too, and is sent what was held; the
    /// reason when it may not (too many already).
    pub(crate) fn attach_socket(&mut self, conn: ConnId, id: &str) -> Result<(), String> {
        let Some(session) = self.sessions.get_mut(id) else {
            return Err("no such session".to_owned());
        };
        if session.sockets.len() >= MAX_SOCKETS {
            return Err(format!("{MAX_SOCKETS} sockets view this session already"));
        }
        let outputs = session.attach_socket(conn, &mut self.kept);
        self.streams.insert(conn, id.to_owned());
        self.push_all(outputs);
        Ok(())
    }

    pub(crate) fn end_session(&mut self, id: &str, now: Instant) {
        let Some(mut session) = self.sessions.remove(id) else {
            return;
        };
        session.release(&mut self.kept);
        let sockets = session.sockets.iter().map(|&conn| socket(conn));
        for to in session.stream.into_iter().chain(sockets) {
            self.streams.remove(&to.conn);
            self.push(Routed::Http(Output::End { to }));
        }
        // An aggregate session's members, one per server, in the order
        // of the servers' names.
        let mut clients: Vec<(ChildId, ClientId)> = Vec::new();
        if session.child == BRIDGE {
            let members = self.by_client.iter().filter(|(_, s)| s.as_str() == id);
            clients.extend(members.map(|(key, _)| *key));
            clients.sort_by_cached_key(|(child, _)| self.child_name(*child));
            let session = id.to_owned();
            self.up(Event::SessionEnded { session });
        }
        clients.push((session.child, session.client));
        self.traces.abandoned(None, &clients, "the session ended");
        for key in clients {
            self.by_client.remove(&key);
            self.pending
                .retain(|(child, client, _), _| (*child, *client) != key);
            self.release_client(key.0, key.1, now);
        }
    }

    /// Hands a client's message to its child, the answer awaited by `wait`.
    pub(crate) fn forward(
        &mut self,
        child: ChildId,
        client: ClientId,
        message: impl Into<FromClient>,
        wait: Option<Pending>,
        now: Instant,
    ) {
        let read = message.into();
        let message = &read.message;
        if !self.children.contains_key(&child) {
            // An aggregate session's "child" (the bridge) reached by
            // another transport: nothing here could answer it.
            if let (mcp::Message::Request { id, .. }, Some(pending)) = (message, wait) {
                let why = "no MCP server answers this session here: an aggregate session is served at /mcp only";
                let answer = mcp::error(id, super::SERVER_ERROR, why, None);
                self.answer(child, client, pending, answer, now);
            }
            return;
        }
        if let (mcp::Message::Request { id, .. }, Some(pending)) = (message, wait) {
            self.pending
                .insert((child, client, mcp::id_text(id)), pending);
        }
        if let Some(session) = self
            .by_client
            .get(&(child, client))
            .and_then(|id| self.sessions.get_mut(id))
        {
            session.used = now;
        }
        if matches!(message, mcp::Message::Request { .. }) {
            if let Some(name) = self.children.get(&child).map(|c| c.spec().name.as_str()) {
                // Looked up before it is inserted: no copy of the name per call.
                match self.past.get_mut(name) {
                    Some(past) => past.calls += 1,
                    None => self.past.entry(name.to_owned()).or_default().calls += 1,
                }
            }
        }
        self.on_child(child, now, |c| c.handle_client_message(client, read, now));
    }

    /// Sends the child a request of the bridge's own (numbered from
    /// [`Registry::next_number`]) for `client`, its answer going to `to` in
    /// the shape `reply` says.
    pub(crate) fn ask(
        &mut self,
        (child, client): (ChildId, ClientId),
        to: RequestId,
        method: &str,
        params: Value,
        reply: Reply,
        now: Instant,
    ) {
        self.next_request += 1;
        let message = mcp::Message::Request {
            id: json!(self.next_request),
            method: method.to_owned(),
            params: params.into(),
        };
        let wait = Pending {
            to,
            reply,
            progress: None,
            log: None,
        };
        self.forward(child, client, message, Some(wait), now);
    }

    /// Runs `f` on a child, then routes what it output.
    pub(crate) fn on_child(
        &mut self,
        child: ChildId,
        now: Instant,
        f: impl FnOnce(&mut BridgedServer),
    ) {
        self.traces.clock(now);
        let Some(server) = self.children.get_mut(&child) else {
            return;
        };
        // The child traces the calls it writes with the registry's tracer.
        if let Some(tracer) = self.traces.lend() {
            server.lend_tracer(tracer, now);
        }
        f(server);
        if let Some(tracer) = server.take_tracer() {
            self.traces.give_back(tracer);
        }
        // Taken while routed (a child routed meanwhile gets room of its own).
        let mut outputs = std::mem::take(&mut self.routing);
        outputs.extend(std::iter::from_fn(|| server.poll_output()));
        for output in outputs.drain(..) {
            match output {
                BridgeOutput::ToClient {
                    client,
                    message,
                    answers,
                } => self.deliver(child, client, message, answers, now),
                action => self.push(Routed::Child { child, action }),
            }
        }
        // A burst's room is let go, not kept for good.
        if outputs.capacity() <= KEPT_ROUTING {
            self.routing = outputs;
        }
        self.keep_learned(child);
        // A per-session child, or a retired one (its server removed or
        // changed, or its place taken), that stopped for good is
        // forgotten: a new spec under the same name gets a child of its own.
        let gone = self.child(child).is_some_and(|c| {
            (c.spec().share == Share::PerSession || c.retired())
                && c.clients() == 0
                && c.state() == ChildState::Stopped
        });
        if gone {
            self.forget_child(child);
        }
    }

    /// A run `child` learned is kept for its server's next children, and
    /// written (runs of servers no longer configured are forgotten).
    fn keep_learned(&mut self, child: ChildId) {
        let Some(server) = self.children.get_mut(&child) else {
            return;
        };
        let Some(run) = server.take_learned() else {
            return;
        };
        let file = kept_file(server.spec());
        let contents = run.to_json();
        let current: HashSet<String> = self.specs.iter().map(kept_file).collect();
        self.last_runs.retain(|kept, _| current.contains(kept));
        self.last_runs.insert(file.clone(), run);
        self.push(Routed::Keep { file, contents });
    }

    /// A child is gone for good; its restarts stay in its server's figures.
    fn forget_child(&mut self, child: ChildId) {
        if let Some(server) = self.children.remove(&child) {
            let past = self.past.entry(server.spec().name.clone()).or_default();
            past.restarts += server.restarts();
        }
    }

    /// A message for a client: the answer a connection waits for, or an
    /// event for its session's stream. Only its head is read here; the
    /// few reply shapes that rework the message parse it whole.
    fn deliver(
        &mut self,
        child: ChildId,
        client: ClientId,
        message: String,
        answers: Option<String>,
        now: Instant,
    ) {
        // An answer comes named: only another message is read here.
        let head = match answers {
            Some(_) => None,
            None => serde_json::from_str::<Head>(&message).ok(),
        };
        let answer_to = answers.or_else(|| {
            head.as_ref()
                .filter(|h| h.method.is_none())
                .and_then(|h| h.id.as_ref())
                .map(mcp::id_text)
        });
        if let Some(id) = &answer_to {
            self.traces
                .answer(Answering::Call(child, client, id.into()), &message);
        }
        if let Some(to) = self.answer_stream(child, client, head.as_ref()) {
            let data = event(0, "message", &message);
            return self.push(Routed::Http(Output::Data { to, data }));
        }
        if let Some(pending) = answer_to.and_then(|id| self.pending.remove(&(child, client, id))) {
            return self.answer(child, client, pending, message, now);
        }
        let key = (child, client);
        if self.stateless.contains(&key) || self.listeners.contains_key(&key) {
            let parsed = serde_json::from_str::<Value>(&message).ok();
            return self.sessionless_message(child, client, parsed, now);
        }
        let Some(id) = self.by_client.get(&(child, client)).cloned() else {
            return;
        };
        if self.sessions.get(&id).is_some_and(|s| s.child == BRIDGE) {
            let session = id;
            return self.up(Event::Said {
                session,
                child,
                client,
                message,
                now,
            });
        }
        self.tell_session(&id, message);
    }

    /// `message` for every view of session `id`, or held until one opens.
    pub(crate) fn tell_session(&mut self, id: &str, message: String) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        if session.viewed() {
            let outputs = session.outputs(message, &mut self.kept);
            self.push_all(outputs);
        } else if session.hold(message, &mut self.kept) > 0 {
            tracing::warn!(
                "an MCP session's client is not listening: its oldest messages were dropped"
            );
        }
    }

    /// The answer a connection waited for, in the shape it waits for.
    fn answer(
        &mut self,
        child: ChildId,
        client: ClientId,
        pending: Pending,
        message: String,
        now: Instant,
    ) {
        let (to, streams) = (pending.to, pending.streams());
        let parsed = || serde_json::from_str::<Value>(&message).ok();
        let close = match pending.reply {
            Reply::Json { opened } => {
                if streams {
                    self.end_answer_stream(to, &message);
                } else {
                    let mut response = Response::json(200, message);
                    if let Some(session) = opened {
                        response = response.with_header("mcp-session-id", session);
                    }
                    self.respond(to, response);
                }
                false
            }
            Reply::Stateless { id, method } => {
                let body = stateless_answer(&message, &id, &method);
                if streams {
                    self.end_answer_stream(to, &body);
                } else {
                    self.respond(to, Response::json(mcp::stateless_status(&body), body));
                }
                true
            }
            Reply::Rest { opened, ephemeral } => {
                let response = rest_answer(
                    parsed().unwrap_or(Value::Null),
                    opened,
                    &self.child_name(child),
                );
                self.respond(to, response);
                ephemeral
            }
            Reply::Gathered {
                gather,
                server,
                ephemeral,
            } => {
                let answered = Answered {
                    gather,
                    server,
                    child,
                    client,
                    ephemeral,
                    answer: parsed(),
                    size: message.len(),
                };
                self.up(Event::Gathered { answered, now });
                false
            }
            Reply::Member => {
                if let Some(error) = parsed().and_then(|a| a.get("error").cloned()) {
                    let server = self.child_name(child);
                    tracing::debug!(server, %error, "an aggregate session's own request was refused");
                }
                false
            }
            Reply::Operation => {
                let answer = parsed().unwrap_or(Value::Null);
                self.up(Event::Operation { to, answer });
                true
            }
            Reply::Socket { id } => {
                let mut answer = parsed().unwrap_or(Value::Null);
                if let Some(fields) = answer.as_object_mut() {
                    fields.insert("id".to_owned(), id);
                }
                self.push(Routed::Http(Output::ToAgent {
                    conn: to.conn,
                    text: socket_frame(answer),
                }));
                false
            }
            Reply::SocketSession { session } => {
                let result = parsed().map_or(Value::Null, |p| p["result"].clone());
                let frame = json!({
                    "type": "session_created",
                    "session_id": session,
                    "server": self.child_name(child),
                    "capabilities": result["capabilities"],
                    "server_info": result["serverInfo"],
                });
                self.push(Routed::Http(Output::ToAgent {
                    conn: to.conn,
                    text: frame.to_string(),
                }));
                false
            }
        };
        if close {
            self.release_client(child, client, now);
        }
    }

    /// The answer as the last event of the stream its request began.
    pub(crate) fn end_answer_stream(&mut self, to: RequestId, answer: &str) {
        self.traces.answer(Answering::Http(to), answer);
        let data = event(0, "message", answer);
        self.push(Routed::Http(Output::Data { to, data }));
        self.push(Routed::Http(Output::End { to }));
    }

    /// The event stream of the request `message` (of `child`'s `client`)
    /// goes down before its answer, if any: a progress notification with
    /// that request's token, or a log message at or above the level it
    /// asked for.
    fn answer_stream(
        &self,
        child: ChildId,
        client: ClientId,
        message: Option<&Head>,
    ) -> Option<RequestId> {
        let message = message?;
        let params = &message.params;
        let wants: &dyn Fn(&Pending) -> bool = match message.method.as_deref() {
            Some("notifications/progress") => {
                &|p| p.progress.as_ref() == Some(&params["progressToken"])
            }
            Some("notifications/message") => {
                &|p| p.log.is_some_and(|least| logging::reaches(params, least))
            }
            _ => return None,
        };
        self.pending
            .iter()
            .find(|((c, k, _), p)| (*c, *k) == (child, client) && wants(p))
            .map(|(_, p)| p.to)
    }

    /// The configured name of a child's server.
    pub(crate) fn child_name(&self, child: ChildId) -> String {
        self.child(child)
            .map_or_else(String::new, |c| c.spec().name.clone())
    }

    pub(crate) fn respond(&mut self, to: RequestId, response: Response) {
        self.traces.response(to, &response);
        self.push(Routed::Http(Output::Respond { to, response }));
    }

    pub(crate) fn reply_error(&mut self, to: RequestId, status: u16, code: i64, message: &str) {
        let body = mcp::error(&Value::Null, code, message, None);
        self.respond(to, Response::json(status, body));
    }
}

/// What [`Registry::deliver`] reads of a message: whether it answers a
/// request (and which), or is a progress notification (and for which
/// token). The rest (a result of any size) is skipped, not built.
#[derive(serde::Deserialize)]
struct Head {
    id: Option<Value>,
    method: Option<String>,
    #[serde(default)]
    params: Value,
}
