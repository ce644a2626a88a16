//! A remote MCP server, spoken to over HTTP as the bridge's child: the
//! bridge writes JSON-RPC messages to it as it would to a child's stdin,
//! and reads the server's messages back as a child's stdout lines. So a
//! remote server is served exactly like a stdio one on every path — the
//! bridge's handshake, sharing, routing, generations and supervision are
//! the same machine's.
//!
//! [`Upstream`] is the client's side of the MCP HTTP transports, as a
//! sans-IO state machine: a message in ([`Upstream::send`]) becomes an HTTP
//! exchange out ([`UpstreamOutput::Send`]); what the driver reads of each
//! exchange comes back in (`handle_head`, `handle_data`, `handle_end`,
//! `handle_failed`) and becomes the server's messages
//! ([`UpstreamOutput::Line`]). The driver owns the connections (pooled,
//! kept alive, over TLS for `https`) and nothing else. Policy lives here:
//!
//! * **which transport**: Streamable HTTP, either generation — a message
//!   carrying the stateless envelope is posted with its protocol version,
//!   a session one with the `Mcp-Session-Id` the server gave at
//!   `initialize`, every one with the `Mcp-Method`/`Mcp-Name` headers
//!   (`headers`), and a tool call the parameters its tool marks for
//!   headers (`params`; a tool whose marks are invalid is left out of
//!   the listing) — and legacy
//!   HTTP+SSE (an event stream naming where to post) for a server that
//!   refuses both, or when configured;
//! * **answers taken up again**: a call's event stream that ends before
//!   its answer, after events with ids, is asked for the rest after the
//!   stream's `retry:` (`resume`); the wait is the driver's to keep
//!   ([`UpstreamOutput::WakeAt`]);
//! * **sessions kept**: a server that lost its session (restarted) answers
//!   404; the bridge's `initialize` is replayed, its answer swallowed, and
//!   the message sent again, so no client sees it;
//! * **errors in the protocol's shape**: every request that cannot be
//!   delivered, or that the server answers with an HTTP error, is answered
//!   with a JSON-RPC error under its own id, never left waiting;
//! * **backoff**: a server that cannot be reached is not dialed again for
//!   a doubling while (100 ms to 10 s); requests meanwhile fail at once;
//! * **credentials**: a `401`, or a `403` for want of a scope, holds the
//!   request (and every one after it) and asks the driver once for a token
//!   ([`UpstreamOutput::Unauthorized`]); with one they are sent again,
//!   without one answered with why. A server that refuses
//!   [`MAX_AUTH_TRIES`] tokens in a row — the one it was first sent
//!   counted, wherever it came from — is not asked again for that
//!   request: it gets an error.

mod headers;
mod outline;
mod params;
mod resume;
mod sse;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use crate::backoff::Doubling;
use crate::http::{Outgoing, ResponseHead, Url};
use crate::idmap::IdMap;
use crate::mcp;
pub use outline::Outline;
use params::ParamHeaders;
use resume::{Resume, Waiting};
use sse::SseReader;

/// JSON-RPC's "server error" code, as the bridge answers a call its server
/// will not.
const SERVER_ERROR: i64 = -32000;
/// The most of an HTTP error's body quoted in the JSON-RPC error.
const ERROR_BODY: usize = 4096;
/// The waits before dialing again a server that could not be reached.
const REDIAL: Doubling = Doubling {
    first: Duration::from_millis(100),
    most: Duration::from_secs(10),
};
/// Tokens a server may refuse in a row before the request it refuses is
/// answered with an error (step-up that never ends): every token sent
/// counts, the first one too — so a login made before the bridge started
/// and one it made itself leave the server the same tries.
pub const MAX_AUTH_TRIES: u32 = 3;
/// Messages held while a session is re-established or a legacy server
/// names its endpoint; past it a request is answered with an error.
const MAX_HELD: usize = 1024;
/// New sessions a server may lose in a row, answering nothing in any of
/// them, before what waits for one is answered with an error (a server
/// behind a balancer that forgets every session at once).
const MAX_LOST_SESSIONS: u32 = 3;
/// `tools/list` requests whose answers are looked for, the most recent
/// ones: one not answered by then is answered with nothing to read.
const MAX_LISTINGS: usize = 64;

/// The room for events kept from one read of a stream to the next: a read
/// brings one or a few; a burst's larger list is let go.
const KEPT_EVENTS: usize = 16;

/// How a remote server is reached: one `[[bridge.servers]]` entry with a
/// `url`.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    pub url: Url,
    /// Sent with every request (`Authorization`, API keys), as configured.
    pub headers: Vec<(String, String)>,
    pub transport: Transport,
    /// PEM roots to trust instead of the system's (a private CA).
    pub ca_file: Option<String>,
}

impl Remote {
    pub fn new(url: Url) -> Self {
        Remote {
            url,
            headers: Vec::new(),
            transport: Transport::Auto,
            ca_file: None,
        }
    }
}

/// Which transport a remote server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Streamable HTTP, falling back to legacy SSE if the server refuses
    /// it.
    #[default]
    Auto,
    /// Legacy HTTP+SSE (2024-11-05) only.
    Sse,
}

/// How a remote server is doing, as its users are shown (`/stats`, the
/// dashboard, `/health/deep`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Status {
    /// Nothing answered yet.
    #[default]
    Connecting,
    Connected,
    /// It wants credentials there are none of (why: what to run).
    NeedsLogin(String),
    /// It cannot be reached, or its session broke (why).
    Failing(String),
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Connecting => "connecting",
            Status::Connected => "connected",
            Status::NeedsLogin(_) => "needs login",
            Status::Failing(_) => "failing",
        }
    }

    /// Why it is not connected, if it says.
    pub fn why(&self) -> Option<&str> {
        match self {
            Status::NeedsLogin(why) | Status::Failing(why) => Some(why),
            Status::Connecting | Status::Connected => None,
        }
    }
}

/// One HTTP exchange of an [`Upstream`], numbered by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExchangeId(pub u64);

/// What the driver must do next, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamOutput {
    /// Send `request` on a connection to the server (a pooled one, or a new
    /// one), and report its response with the exchange's id. `streaming`:
    /// the response is an event stream that lasts as long as the session
    /// (no deadline on reading it).
    Send {
        id: ExchangeId,
        request: Outgoing,
        streaming: bool,
    },
    /// Drop an exchange's connection (a stream no longer wanted).
    Abort(ExchangeId),
    /// A message of the server's, for the bridge (as a child's stdout line).
    Line(String),
    /// An answer of the server's, for the bridge as [`UpstreamOutput::Line`],
    /// and where its parts stand in it: read here, it is not read again.
    Answer(String, mcp::Placed),
    /// The server's session is gone for good (a legacy event stream
    /// ended): taken as the child's exit, so the bridge starts again.
    Gone(String),
    /// The answer to the bridge's `initialize`, next, comes with no session
    /// (a stateless transport): the bridge then tries the stateless
    /// revision, the only one in which such a server can ask its clients
    /// anything.
    Sessionless,
    /// How the server is doing changed (see [`Status`]).
    Status(Status),
    /// The server wants credentials (`challenge`: its `WWW-Authenticate`).
    /// Answer with [`Upstream::handle_token`].
    Unauthorized {
        challenge: Option<String>,
        /// Whether it was a `403` asking for more scope (a new login,
        /// not a refresh).
        step_up: bool,
    },
    /// Call [`Upstream::handle_timeout`] at this instant (a call's answer
    /// is to be asked for again then); one asked for later than another
    /// still due may be taken as the earlier.
    WakeAt(Instant),
}

/// How long a session's stream of server messages must have lasted for
/// its end to be taken as a cut (by a proxy's idle timeout, a server's
/// restart of its streams) and the stream opened again; one that ends
/// sooner is one the server does not want, and it is not asked again in
/// that session.
const LISTEN_AGAIN_AFTER: Duration = Duration::from_secs(1);

/// A session's stream of server messages.
#[derive(Debug)]
struct Listening {
    id: ExchangeId,
    /// The session it listens in: it may answer that session's requests.
    session: Arc<str>,
    /// When the server accepted it (its response's head came).
    since: Option<Instant>,
    /// The `id:` of the last event it carried: asked again with it
    /// (`Last-Event-ID`), a server that keeps its events sends what was
    /// missed.
    last_event: Option<String>,
}

/// The transport found to work.
#[derive(Debug, Clone, PartialEq)]
enum Protocol {
    /// Streamable HTTP, unless refused.
    Streamable,
    /// Legacy HTTP+SSE: messages are posted to `endpoint`, once the
    /// server's stream has named it.
    Legacy {
        stream: ExchangeId,
        endpoint: Option<Url>,
    },
}

/// What an exchange is for.
#[derive(Debug)]
enum Kind {
    /// One message posted. `id`: its JSON-RPC id when it is a request (an
    /// answer is owed); `line`, the body as it went, is kept to send
    /// again.
    Post {
        line: Bytes,
        id: Option<Value>,
        method: Option<Cow<'static, str>>,
        /// The session id it went with, if any (a 404 then means the
        /// session is gone; the session's stream may answer it).
        session: Option<Arc<str>>,
        /// The bridge's `initialize` replayed for a new session: its answer
        /// is not the bridge's to see.
        replay: bool,
        /// Posted to a legacy endpoint: the answer comes on the event
        /// stream, the post's own response only acknowledges it.
        legacy: bool,
        answered: bool,
        /// What its event stream said of taking it up again.
        resume: Resume,
    },
    /// The rest of a request's answer, asked for with `Last-Event-ID`
    /// after its stream ended without it.
    Resumed {
        id: Value,
        session: Option<Arc<str>>,
        answered: bool,
        resume: Resume,
    },
    /// The session's GET stream, for messages of the server's own.
    Listen,
    /// A legacy server's event stream.
    Legacy,
    /// Ending the session.
    Delete,
}

/// What an answer from the server settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// A request of the bridge's: the answer goes on.
    Passed,
    /// The `initialize` replayed for a new session: not the bridge's to see.
    Replayed,
}

/// How an exchange's body is read.
#[derive(Debug)]
enum Body {
    /// Not yet known (no head).
    Unknown,
    /// One JSON-RPC message (or a batch), whole.
    Json(Vec<u8>),
    /// JSON-RPC messages a line each, read as each line comes: a listen
    /// stream a server answers as JSON lines rather than events (the
    /// part of a line still to come kept, at most [`mcp::MAX_LINE`]).
    Lines(Vec<u8>),
    Events(SseReader),
    /// An HTTP error's body, quoted in the error the request gets.
    Error {
        status: u16,
        text: Vec<u8>,
    },
    Ignored,
}

#[derive(Debug)]
struct Exchange {
    kind: Kind,
    body: Body,
}

/// The client of one remote MCP server.
#[derive(Debug)]
pub struct Upstream {
    /// The bridged server's name, for errors.
    name: String,
    remote: Remote,
    protocol: Protocol,
    /// `Mcp-Session-Id`, once the server gave one: shared, not copied,
    /// with each exchange made in it (every call's post is one).
    session: Option<Arc<str>>,
    /// The protocol version the server answered `initialize` with: one
    /// of the revisions the provider knows, borrowed (it is sent with
    /// every request), or whatever else the server said.
    version: Option<Cow<'static, str>>,
    /// The bridge's `initialize` and `notifications/initialized`, replayed
    /// when the session must be made again.
    initialize: Option<String>,
    initialized: Option<String>,
    /// Whether a replayed `initialize` is under way: messages wait.
    reinitializing: bool,
    /// Messages waiting: for a new session, for a legacy endpoint, or for
    /// credentials.
    held: VecDeque<String>,
    /// Whether a token was asked for and not given yet.
    unauthorized: bool,
    /// Tokens refused in a row.
    auth_tries: u32,
    /// Sessions lost in a row, nothing answered in any of them.
    lost_sessions: u32,
    bearer: Option<String>,
    /// The session's stream of server messages (Streamable HTTP's `GET`).
    listening: Option<Listening>,
    /// Requests posted to a legacy endpoint, their answers still to come
    /// on the event stream (at most [`MAX_HELD`]).
    awaited: Vec<Value>,
    /// Requests whose stream ended before their answer, waiting to ask
    /// for the rest (at most [`MAX_HELD`]).
    resuming: Vec<Waiting>,
    /// The tools the server marks parameters of for headers.
    params: ParamHeaders,
    /// The ids of `tools/list` requests sent, with whether each asked
    /// for a listing's first page (at most [`MAX_LISTINGS`]).
    listings: VecDeque<(Value, bool)>,
    exchanges: IdMap<ExchangeId, Exchange>,
    next: u64,
    /// Dial failures in a row, and when dialing may be tried again.
    failures: u32,
    down: Option<(Instant, String)>,
    status: Status,
    out: VecDeque<UpstreamOutput>,
    /// The list an event stream's events are taken into, kept from read
    /// to read (up to [`KEPT_EVENTS`] of room).
    events: Vec<sse::Event>,
}

impl Upstream {
    pub fn new(name: &str, remote: Remote) -> Self {
        Upstream {
            name: name.to_owned(),
            remote,
            protocol: Protocol::Streamable,
            session: None,
            version: None,
            initialize: None,
            initialized: None,
            reinitializing: false,
            held: VecDeque::new(),
            unauthorized: false,
            auth_tries: 0,
            lost_sessions: 0,
            bearer: None,
            listening: None,
            awaited: Vec::new(),
            resuming: Vec::new(),
            params: ParamHeaders::default(),
            listings: VecDeque::new(),
            exchanges: IdMap::default(),
            next: 1,
            failures: 0,
            down: None,
            status: Status::Connecting,
            out: VecDeque::new(),
            events: Vec::new(),
        }
    }

    pub fn poll_output(&mut self) -> Option<UpstreamOutput> {
        self.out.pop_front()
    }

    /// Whether exchange `id` is still to be made (not aborted, not over).
    pub fn wants(&self, id: ExchangeId) -> bool {
        self.exchanges.contains_key(&id)
    }

    /// The bearer token sent now, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.bearer.as_deref()
    }

    /// Says so when how the server is doing changed.
    fn set_status(&mut self, status: Status) {
        if self.status != status {
            self.status = status.clone();
            self.out.push_back(UpstreamOutput::Status(status));
        }
    }

    /// The bearer token sent from now on.
    pub fn set_bearer(&mut self, token: Option<String>) {
        self.bearer = token;
    }

    /// One message of the bridge's for the server.
    pub fn send(&mut self, line: String, now: Instant) {
        if let Some(outline) = Outline::of(&line) {
            self.send_outlined(line, outline, now);
        }
    }

    /// [`Upstream::send`] of a message whose outline its maker gives (the
    /// bridge knows it of every message it writes), so it is not read again.
    pub fn send_outlined(&mut self, line: String, outline: Outline, now: Instant) {
        let id = outline.id.clone();
        match outline.method.as_deref() {
            Some("initialize") => {
                self.initialize = Some(line.clone());
                self.session = None;
                self.version = None;
            }
            Some("notifications/initialized") => self.initialized = Some(line.clone()),
            Some("notifications/cancelled") if self.withdraw(&line) => return,
            _ => {}
        }
        if let Some((until, why)) = &self.down {
            if now < *until {
                let why = format!("the remote MCP server cannot be reached: {why}");
                self.fail(id.as_ref(), &why);
                return;
            }
        }
        if self.must_hold() {
            self.hold(line, id.as_ref());
            return;
        }
        if self.remote.transport == Transport::Sse
            && outline.method.as_deref() == Some("initialize")
            && matches!(self.protocol, Protocol::Streamable)
        {
            self.hold(line, id.as_ref());
            self.open_legacy();
            return;
        }
        self.post(line, outline, false);
    }

    /// Whether messages wait rather than go.
    fn must_hold(&self) -> bool {
        self.reinitializing
            || self.unauthorized
            || matches!(self.protocol, Protocol::Legacy { endpoint: None, .. })
    }

    fn hold(&mut self, line: String, id: Option<&Value>) {
        if self.held.len() >= MAX_HELD {
            self.fail(
                id,
                "too many messages are waiting for the remote MCP server",
            );
            return;
        }
        self.held.push_back(line);
    }

    /// The bridge gave up on a request (`cancelled`: its
    /// `notifications/cancelled`; its client left, or it waited too long):
    /// what the request holds is let go. Still held, it is never sent, and
    /// neither is the cancellation (true): the server never saw it. Posted,
    /// its exchange is cut — its connection with it, when its answer was
    /// still streaming — and an answer after it has nowhere to go.
    fn withdraw(&mut self, cancelled: &str) -> bool {
        let Some(request) = serde_json::from_str::<Value>(cancelled)
            .ok()
            .and_then(|message| message["params"].get("requestId").cloned())
        else {
            return false;
        };
        let held = self.held.len();
        self.held
            .retain(|line| request_id(line).as_ref() != Some(&request));
        if self.held.len() != held {
            return true;
        }
        self.awaited.retain(|awaited| *awaited != request);
        self.resuming.retain(|waiting| waiting.id != request);
        let posted = self.exchanges.iter().find_map(|(&id, e)| {
            let asked = match &e.kind {
                Kind::Post {
                    id: Some(asked),
                    answered: false,
                    replay: false,
                    ..
                }
                | Kind::Resumed {
                    id: asked,
                    answered: false,
                    ..
                } => asked,
                _ => return None,
            };
            (*asked == request).then_some(id)
        });
        if let Some(id) = posted {
            self.exchanges.remove(&id);
            self.out.push_back(UpstreamOutput::Abort(id));
        }
        false
    }

    /// The driver got (or could not get) a token after an
    /// [`UpstreamOutput::Unauthorized`]: what waited is sent with it, or
    /// answered with `why`.
    pub fn handle_token(&mut self, token: Result<String, String>, now: Instant) {
        self.unauthorized = false;
        match token {
            Ok(token) => {
                self.set_status(Status::Connecting);
                self.bearer = Some(token);
                self.release(now);
            }
            Err(why) => {
                self.set_status(Status::NeedsLogin(why.clone()));
                for line in std::mem::take(&mut self.held) {
                    let id = request_id(&line);
                    self.fail(id.as_ref(), &why);
                }
            }
        }
    }

    /// The session is over (the bridge stops the server): the session is
    /// ended with the server if it has one, and every exchange dropped.
    pub fn close(&mut self) {
        let ids: Vec<ExchangeId> = self.exchanges.keys().copied().collect();
        for id in ids {
            self.out.push_back(UpstreamOutput::Abort(id));
        }
        self.exchanges.clear();
        self.listening = None;
        self.awaited.clear();
        self.resuming.clear();
        if let (Protocol::Streamable, Some(session)) = (&self.protocol, self.session.take()) {
            let request = self
                .request("DELETE", self.remote.url.clone())
                .header("mcp-session-id", session.to_string());
            self.start(Kind::Delete, request, false);
        }
    }

    // Input from the driver.

    /// An exchange's response head.
    pub fn handle_head(&mut self, id: ExchangeId, head: &ResponseHead, now: Instant) {
        self.failures = 0;
        self.down = None;
        if let Some(listening) = self.listening.as_mut().filter(|l| l.id == id) {
            if (200..300).contains(&head.status) {
                listening.since = Some(now);
            }
        }
        if (200..300).contains(&head.status) {
            self.auth_tries = 0;
            self.set_status(Status::Connected);
        }
        let initialize = self.is_initialize(id);
        let replay = matches!(
            self.exchanges.get(&id).map(|e| &e.kind),
            Some(Kind::Post { replay: true, .. })
        );
        let may_fall_back = initialize
            && matches!(self.protocol, Protocol::Streamable)
            && self.remote.transport == Transport::Auto;
        let Some(exchange) = self.exchanges.get_mut(&id) else {
            return;
        };
        if (200..300).contains(&head.status)
            && matches!(
                exchange.kind,
                Kind::Post {
                    session: Some(_),
                    replay: false,
                    ..
                }
            )
        {
            self.lost_sessions = 0;
        }
        let status = head.status;
        let events = head.is_media_type("text/event-stream");
        exchange.body = match (&exchange.kind, status) {
            (Kind::Post { legacy: true, .. }, 200..=299) => Body::Ignored,
            // Answered on the session's stream already: a refusal now
            // (a lost session, a token wanted) is not a reason to post it
            // again, nor to answer it twice.
            (Kind::Post { answered: true, .. }, 300..) => Body::Ignored,
            (_, 200..=299) if events => Body::Events(SseReader::new(mcp::MAX_LINE)),
            (
                Kind::Post {
                    method: Some(method),
                    ..
                },
                200..=299,
            ) if method == "subscriptions/listen" => Body::Lines(Vec::new()),
            (Kind::Post { .. }, 200..=299) => Body::Json(Vec::new()),
            (Kind::Post { .. }, 401) => {
                let challenge = head.header("www-authenticate").map(str::to_owned);
                self.unauthorized_post(id, challenge, false);
                return;
            }
            (Kind::Post { .. }, 403)
                if head
                    .header("www-authenticate")
                    .is_some_and(|c| c.contains("insufficient_scope")) =>
            {
                let challenge = head.header("www-authenticate").map(str::to_owned);
                self.unauthorized_post(id, challenge, true);
                return;
            }
            (
                Kind::Post {
                    session: Some(_),
                    replay: false,
                    ..
                },
                404,
            ) => {
                self.session_lost(id, now);
                return;
            }
            (Kind::Post { replay: false, .. }, 404 | 405) if may_fall_back => {
                self.streamable_refused(id, status);
                return;
            }
            (Kind::Post { .. }, 300..=399) => {
                // Never followed: a configured server that moved is
                // configured again, and a redirect could lead anywhere (a
                // private address, another origin's credentials).
                let to = head.header("location").unwrap_or("nowhere");
                let why = format!(
                    "the remote MCP server redirected to {}; redirects are not followed (configure the URL it names, if it is to be trusted)",
                    crate::text::bounded(to, 200)
                );
                tracing::warn!(server = %self.name, "{why}");
                self.out.push_back(UpstreamOutput::Abort(id));
                self.ended(id, Some(why));
                return;
            }
            (Kind::Post { .. }, _) => Body::Error {
                status,
                text: Vec::new(),
            },
            (Kind::Legacy, _) => {
                self.legacy_refused(id, status);
                return;
            }
            (Kind::Resumed { .. }, _) => {
                let why = format!(
                    "the remote MCP server ended its answer early and refused to send the rest (HTTP {status} {})",
                    crate::http::reason(status)
                );
                self.out.push_back(UpstreamOutput::Abort(id));
                self.ended(id, Some(why));
                return;
            }
            _ => Body::Ignored,
        };
        if initialize && (200..300).contains(&status) {
            match head.header("mcp-session-id").filter(|s| !s.is_empty()) {
                Some(session) => self.session = Some(session.into()),
                None if !replay => self.out.push_back(UpstreamOutput::Sessionless),
                None => {}
            }
        }
    }

    /// Some of an exchange's body.
    pub fn handle_data(&mut self, id: ExchangeId, data: &Bytes) {
        let Some(exchange) = self.exchanges.get_mut(&id) else {
            return;
        };
        match &mut exchange.body {
            Body::Json(buf) if buf.len() + data.len() > mcp::MAX_LINE => {
                let why = format!(
                    "the remote MCP server's answer is longer than {} bytes: refused",
                    mcp::MAX_LINE
                );
                tracing::warn!(server = %self.name, "{why}");
                self.out.push_back(UpstreamOutput::Abort(id));
                self.ended(id, Some(why));
            }
            Body::Json(buf) => buf.extend_from_slice(data),
            Body::Lines(buf) => {
                buf.extend_from_slice(data);
                let whole = buf
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |end| end + 1);
                let lines: Vec<u8> = buf.drain(..whole).collect();
                if buf.len() > mcp::MAX_LINE {
                    let why = format!(
                        "a line of the remote MCP server's stream is longer than {} bytes: refused",
                        mcp::MAX_LINE
                    );
                    tracing::warn!(server = %self.name, "{why}");
                    self.out.push_back(UpstreamOutput::Abort(id));
                    return self.ended(id, Some(why));
                }
                self.json_lines(id, &lines);
            }
            Body::Error { text, .. } => {
                let room = ERROR_BODY.saturating_sub(text.len());
                text.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
            }
            Body::Events(reader) => match reader.push(data, &mut self.events) {
                Ok(()) => {
                    // The listen stream is taken up again after its last
                    // event, whatever the events below lead to.
                    let listening = self.listening.as_mut().filter(|l| l.id == id);
                    if let (Some(listening), Some(named)) = (listening, reader.named_id()) {
                        if listening.last_event.as_deref() != Some(named) {
                            listening.last_event = Some(named.to_owned());
                        }
                    }
                    let mut events = std::mem::take(&mut self.events);
                    for event in events.drain(..) {
                        self.event(id, event);
                    }
                    // A burst's room is let go.
                    if events.capacity() <= KEPT_EVENTS {
                        self.events = events;
                    }
                }
                Err(e) => {
                    // What the read completed before the fault goes with it.
                    self.events.clear();
                    tracing::warn!(server = %self.name, "the remote MCP server's event stream: {e}");
                    self.out.push_back(UpstreamOutput::Abort(id));
                    self.ended(id, Some(e.to_string()));
                }
            },
            Body::Unknown | Body::Ignored => {}
        }
    }

    /// An exchange's body is over.
    pub fn handle_end(&mut self, id: ExchangeId, now: Instant) {
        let Some(exchange) = self.exchanges.get_mut(&id) else {
            return;
        };
        match std::mem::replace(&mut exchange.body, Body::Ignored) {
            Body::Json(buf) => self.json_answer(id, &buf),
            Body::Lines(rest) => self.json_lines(id, &rest),
            Body::Error { status, text } => {
                let text = String::from_utf8_lossy(&text).into_owned();
                self.http_error(id, status, &text);
            }
            // Kept for what it says of taking the stream up again.
            events @ Body::Events(_) => exchange.body = events,
            _ => {}
        }
        let replayed = matches!(
            self.exchanges.get(&id).map(|e| &e.kind),
            Some(Kind::Post {
                replay: true,
                answered: true,
                ..
            })
        );
        self.exchange_ended(id, now, None);
        if replayed {
            self.reinitialized(now);
        }
    }

    /// Time passed: the requests whose wait is over ask for the rest of
    /// their answers, and the driver is told when the next is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let (due, later): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.resuming)
            .into_iter()
            .partition(|waiting| waiting.due <= now);
        self.resuming = later;
        for waiting in due {
            self.resume(waiting);
        }
        if let Some(next) = self.resuming.iter().map(|waiting| waiting.due).min() {
            self.out.push_back(UpstreamOutput::WakeAt(next));
        }
    }

    /// An exchange failed: the server could not be reached, or the
    /// connection broke. `dialed`: whether a connection was made at all
    /// (a refused dial counts toward the backoff).
    pub fn handle_failed(&mut self, id: ExchangeId, why: &str, dialed: bool, now: Instant) {
        if !dialed {
            self.failures = self.failures.saturating_add(1);
            let wait = REDIAL.after(self.failures);
            self.down = Some((now + wait, why.to_owned()));
            self.set_status(Status::Failing(why.to_owned()));
        }
        let why = format!("the remote MCP server: {why}");
        self.exchange_ended(id, now, Some(why));
    }

    // Exchanges.

    fn request(&self, method: &'static str, url: Url) -> Outgoing {
        let mut request = Outgoing::new(method, url);
        for (name, value) in &self.remote.headers {
            request = request.header(name.clone(), value.clone());
        }
        if let Some(token) = &self.bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.header(
            "user-agent",
            concat!("mcp-provider/", env!("CARGO_PKG_VERSION")),
        )
    }

    fn start(&mut self, kind: Kind, request: Outgoing, streaming: bool) -> ExchangeId {
        let id = ExchangeId(self.next);
        self.next += 1;
        self.exchanges.insert(
            id,
            Exchange {
                kind,
                body: Body::Unknown,
            },
        );
        self.out.push_back(UpstreamOutput::Send {
            id,
            request,
            streaming,
        });
        id
    }

    /// Posts one message: to the legacy endpoint, or over Streamable HTTP
    /// in the generation the message speaks.
    fn post(&mut self, line: String, outline: Outline, replay: bool) {
        let Outline {
            method,
            id,
            version,
            name,
            trace,
        } = outline;
        let (url, legacy) = match &self.protocol {
            Protocol::Legacy {
                endpoint: Some(endpoint),
                ..
            } => (endpoint.clone(), true),
            _ => (self.remote.url.clone(), false),
        };
        let mut request = self
            .request("POST", url)
            .header("accept", "application/json, text/event-stream");
        if let Some(context) = trace {
            request = request.header("traceparent", context.traceparent());
            if let Some(state) = context.state {
                request = request.header("tracestate", state);
            }
        }
        match (method.as_deref(), &name, &id) {
            (Some("tools/call"), Some(tool), _) => {
                for (header, value) in self.params.for_call(tool, &line) {
                    request = request.header(header, value);
                }
            }
            (Some("tools/list"), _, Some(asked)) => self.listing(asked, &line),
            _ => {}
        }
        request = headers::standard(request, method.clone(), name);
        let mut session = None;
        if !legacy {
            match version {
                Some(version) => {
                    request = request.header("mcp-protocol-version", version);
                }
                None => {
                    if let Some(id) = &self.session {
                        request = request.header("mcp-session-id", String::from(&**id));
                        session = Some(id.clone());
                    }
                    if let Some(version) = &self.version {
                        request = request.header("mcp-protocol-version", version.clone());
                    }
                }
            }
        }
        if let (true, Some(asked)) = (legacy, &id) {
            if self.awaited.len() >= MAX_HELD {
                let why = "too many requests are waiting for the remote MCP server";
                return self.fail(Some(asked), why);
            }
            self.awaited.push(asked.clone());
        }
        let listen = method.as_deref() == Some("notifications/initialized") && !legacy;
        // The stateless revision's listen stream lasts until the bridge
        // cancels it: no deadline, no bound on its whole length (each of
        // its events is bounded).
        let streaming = method.as_deref() == Some("subscriptions/listen");
        let line = Bytes::from(line);
        let request = request.body("application/json", line.clone());
        self.start(
            Kind::Post {
                line,
                id,
                method,
                session,
                replay,
                legacy,
                answered: false,
                resume: Resume::default(),
            },
            request,
            streaming,
        );
        if listen && self.listening.is_none() {
            self.listen(None);
        }
    }

    /// A `tools/list` request (`line`, under `asked`) is posted: its answer
    /// will be read for the tools' marked parameters.
    fn listing(&mut self, asked: &Value, line: &str) {
        let first = serde_json::from_str::<Value>(line)
            .map_or(true, |request| request["params"]["cursor"].is_null());
        if self.listings.len() >= MAX_LISTINGS {
            self.listings.pop_front();
        }
        self.listings.push_back((asked.clone(), first));
    }

    /// Opens the session's stream of server messages (`after`: the last
    /// event of the stream before it).
    fn listen(&mut self, after: Option<String>) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let mut request = self
            .request("GET", self.remote.url.clone())
            .header("accept", "text/event-stream")
            .header("mcp-session-id", session.to_string());
        if let Some(version) = &self.version {
            request = request.header("mcp-protocol-version", version.clone());
        }
        if let Some(after) = &after {
            request = request.header("last-event-id", after.clone());
        }
        let id = self.start(Kind::Listen, request, true);
        self.listening = Some(Listening {
            id,
            session,
            since: None,
            last_event: after,
        });
    }

    /// Exchange `id` ended at `now` (`failed`: why, if it broke). When it
    /// was the session's stream of server messages and had lasted, it is
    /// opened again: a proxy's idle timeout or a server's own limit ends
    /// such streams, and without one the session hears nothing the server
    /// says on its own (list changes, its requests).
    fn exchange_ended(&mut self, id: ExchangeId, now: Instant, failed: Option<String>) {
        if self.resume_later(id, now) {
            return;
        }
        let listening = self.listening.take_if(|l| l.id == id);
        self.ended(id, failed);
        let Some(listening) = listening else {
            return;
        };
        let lasted = listening
            .since
            .is_some_and(|since| now.saturating_duration_since(since) >= LISTEN_AGAIN_AFTER);
        if lasted && matches!(self.protocol, Protocol::Streamable) {
            self.listen(listening.last_event);
        }
    }

    /// Exchange `id` ended at `now` (cleanly, or broken) and was a
    /// request's event stream that had not brought its answer: the rest is
    /// asked for once the stream's wait is over, if it can be (it had an
    /// event id) and may be again. Whether it will be.
    fn resume_later(&mut self, id: ExchangeId, now: Instant) -> bool {
        let Some(exchange) = self.exchanges.get(&id) else {
            return false;
        };
        let (asked, session, resume) = match &exchange.kind {
            Kind::Post {
                id: Some(asked),
                answered: false,
                replay: false,
                legacy: false,
                session,
                resume,
                ..
            }
            | Kind::Resumed {
                id: asked,
                answered: false,
                session,
                resume,
            } => (asked, session, resume),
            _ => return false,
        };
        // What the stream said is read once, as it ends, not per chunk.
        let mut resume = resume.clone();
        if let Body::Events(reader) = &exchange.body {
            resume.heard(reader);
        }
        let Some(due) = resume.due(now) else {
            return false;
        };
        if self.resuming.len() >= MAX_HELD {
            return false;
        }
        let waiting = Waiting {
            due,
            id: asked.clone(),
            session: session.clone(),
            resume,
        };
        self.exchanges.remove(&id);
        tracing::debug!(server = %self.name, id = %waiting.id, "a call's event stream ended before its answer: asking for the rest");
        self.resuming.push(waiting);
        self.out.push_back(UpstreamOutput::WakeAt(due));
        true
    }

    /// Asks for the rest of a request's answer: a `GET` in its session,
    /// after the last event it had.
    fn resume(&mut self, waiting: Waiting) {
        let Waiting {
            id,
            session,
            mut resume,
            ..
        } = waiting;
        let Some(after) = resume.last_event.clone() else {
            return self.fail(
                Some(&id),
                "the remote MCP server ended its answer without answering",
            );
        };
        resume.attempts += 1;
        let mut request = self
            .request("GET", self.remote.url.clone())
            .header("accept", "text/event-stream")
            .header("last-event-id", after);
        if let Some(session) = &session {
            request = request.header("mcp-session-id", session.to_string());
        }
        if let Some(version) = &self.version {
            request = request.header("mcp-protocol-version", version.clone());
        }
        let kind = Kind::Resumed {
            id,
            session,
            answered: false,
            resume,
        };
        self.start(kind, request, false);
    }

    fn open_legacy(&mut self) {
        let request = self
            .request("GET", self.remote.url.clone())
            .header("accept", "text/event-stream");
        let stream = self.start(Kind::Legacy, request, true);
        self.protocol = Protocol::Legacy {
            stream,
            endpoint: None,
        };
    }

    fn is_initialize(&self, id: ExchangeId) -> bool {
        matches!(
            self.exchanges.get(&id).map(|e| &e.kind),
            Some(Kind::Post { method: Some(m), .. }) if m == "initialize"
        )
    }

    /// One event of a stream: a message (on any stream), or a legacy
    /// server's endpoint.
    fn event(&mut self, id: ExchangeId, event: sse::Event) {
        match event.kind() {
            "message" if !event.data.trim_ascii().is_empty() => self.message(id, event.data),
            "endpoint" => self.endpoint(id, &event.data),
            _ => {}
        }
    }

    /// A message from the server, on exchange `id`. Its own requests and
    /// notifications go on from any stream; an answer only if it settles a
    /// request it may answer there ([`Upstream::settle`]), else it is
    /// dropped: a server (or whatever speaks for it) cannot answer one
    /// client's call in the response to another's, nor answer a call twice.
    fn message(&mut self, id: ExchangeId, mut line: String) {
        if !self.exchanges.contains_key(&id) {
            return;
        }
        // Most lines are answers to calls: read once here, for the bridge too.
        let read = mcp::answer(&line);
        let mut placed = read.and_then(|answer| answer.placed(&line));
        let answered = match read {
            Some(answer) => Some(Value::from(answer.id)),
            None => answer_id(&line),
        };
        if let Some(answered) = answered {
            match self.settle(id, &answered) {
                Some(Settled::Passed) => {
                    if let Some(at) = self.listings.iter().position(|(a, _)| *a == answered) {
                        let first = self.listings.remove(at).is_none_or(|(_, first)| first);
                        if let Some(kept) = self.params.listed(&line, first) {
                            line = kept;
                            placed = None;
                        }
                    }
                }
                Some(Settled::Replayed) => return,
                None => {
                    tracing::debug!(server = %self.name, "an answer that answers no request waiting for it there was dropped: {}", crate::text::bounded(&line, 200));
                    return;
                }
            }
        }
        if self.is_initialize(id) {
            if let Ok(message) = serde_json::from_str::<Value>(&line) {
                if let Some(version) = message["result"]["protocolVersion"].as_str() {
                    self.version = Some(mcp::known_version(version));
                }
            }
        }
        if matches!(self.protocol, Protocol::Legacy { .. }) && self.is_initialize_answer(&line) {
            if let Ok(message) = serde_json::from_str::<Value>(&line) {
                self.version = message["result"]["protocolVersion"]
                    .as_str()
                    .map(mcp::known_version);
            }
        }
        self.out.push_back(match placed {
            Some(placed) => UpstreamOutput::Answer(line, placed),
            None => UpstreamOutput::Line(line),
        });
    }

    /// The request an answer under `answered` settles, arriving on
    /// exchange `on`, marked answered: the one request that exchange
    /// posted, or, on the session's stream (a legacy server's event
    /// stream), a request posted in that session and still waiting. None:
    /// it answers nothing it may answer there.
    fn settle(&mut self, on: ExchangeId, answered: &Value) -> Option<Settled> {
        if answered.is_null() {
            return None;
        }
        let waiting = |kind: &Kind, session: Option<&str>| {
            let (asked, posted_in) = match kind {
                Kind::Post {
                    id: Some(asked),
                    answered: false,
                    session,
                    ..
                }
                | Kind::Resumed {
                    id: asked,
                    answered: false,
                    session,
                    ..
                } => (asked, session),
                _ => return false,
            };
            asked == answered && session.is_none_or(|s| posted_in.as_deref() == Some(s))
        };
        let post = match &self.exchanges.get(&on)?.kind {
            Kind::Post { .. } | Kind::Resumed { .. } => on,
            Kind::Listen => {
                let session = self
                    .listening
                    .as_ref()
                    .filter(|l| l.id == on)?
                    .session
                    .clone();
                self.exchanges
                    .iter()
                    .find(|(_, e)| waiting(&e.kind, Some(&session)))
                    .map(|(&id, _)| id)?
            }
            Kind::Legacy if matches!(self.protocol, Protocol::Legacy { stream, .. } if stream == on) =>
            {
                let at = self.awaited.iter().position(|a| a == answered)?;
                self.awaited.swap_remove(at);
                return Some(Settled::Passed);
            }
            Kind::Legacy | Kind::Delete => return None,
        };
        let exchange = self.exchanges.get_mut(&post)?;
        if !waiting(&exchange.kind, None) {
            return None;
        }
        match &mut exchange.kind {
            Kind::Post {
                answered, replay, ..
            } => {
                *answered = true;
                Some(if *replay {
                    Settled::Replayed
                } else {
                    Settled::Passed
                })
            }
            Kind::Resumed { answered, .. } => {
                *answered = true;
                Some(Settled::Passed)
            }
            _ => None,
        }
    }

    /// Whether a legacy server's message answers the held `initialize`.
    fn is_initialize_answer(&self, line: &str) -> bool {
        let asked = self.initialize.as_deref().and_then(request_id);
        let answer = mcp::answer(line);
        matches!((asked, answer), (Some(asked), Some(a)) if asked == a.id)
    }

    /// Whole lines of a stream of JSON lines: each a message (blank lines
    /// and lines that are no JSON skipped, as an event stream's comments).
    fn json_lines(&mut self, id: ExchangeId, lines: &[u8]) {
        for line in lines.split(|&b| b == b'\n') {
            match std::str::from_utf8(line).map(str::trim) {
                Ok(line) if serde_json::from_str::<serde::de::IgnoredAny>(line).is_ok() => {
                    self.message(id, line.to_owned())
                }
                _ => {}
            }
        }
    }

    /// A whole JSON answer to a post: a message (passed on as it came), a
    /// batch of them, or messages one after another (JSON lines: some
    /// servers write their notifications before the answer so under
    /// `application/json`).
    fn json_answer(&mut self, id: ExchangeId, body: &[u8]) {
        let Ok(text) = std::str::from_utf8(body) else {
            return self.http_error(id, 200, "an answer that is not JSON");
        };
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        if text.starts_with('[') {
            match serde_json::from_str::<Vec<Box<serde_json::value::RawValue>>>(text) {
                Ok(messages) => {
                    for message in messages {
                        self.message(id, message.get().to_owned());
                    }
                }
                Err(_) => self.http_error(id, 200, "an answer that is not JSON"),
            }
        } else if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
            self.message(id, text.to_owned());
        } else {
            let lines = serde_json::Deserializer::from_str(text)
                .into_iter::<Box<serde_json::value::RawValue>>()
                .collect::<Result<Vec<_>, _>>();
            match lines {
                Ok(messages) => {
                    for message in messages {
                        self.message(id, message.get().to_owned());
                    }
                }
                Err(_) => self.http_error(id, 200, "an answer that is not JSON"),
            }
        }
    }

    /// A post the server answered with an HTTP error: its request gets a
    /// JSON-RPC error — the server's own, when it sent one.
    fn http_error(&mut self, id: ExchangeId, status: u16, text: &str) {
        let Some(Exchange {
            kind:
                Kind::Post {
                    id: asked,
                    answered,
                    legacy,
                    ..
                },
            ..
        }) = self.exchanges.get_mut(&id)
        else {
            return;
        };
        if *answered {
            // On the session's stream already: the request has its answer.
            return;
        }
        let legacy = *legacy;
        let Some(asked) = asked.clone() else {
            tracing::debug!(server = %self.name, status, "the remote MCP server refused a notification: {}", crate::text::bounded(text, 200));
            return;
        };
        *answered = true;
        if legacy {
            self.awaited.retain(|awaited| *awaited != asked);
        }
        let own = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("error").cloned())
            .filter(|e| e["code"].is_i64() && e["message"].is_string());
        let line = match own {
            Some(error) => mcp::response(&asked, Err(&error)),
            None => {
                let text = crate::text::bounded(text.trim(), 300);
                let what = match status {
                    0 => text,
                    _ => format!(
                        "the remote MCP server answered HTTP {status} {}{}{text}",
                        crate::http::reason(status),
                        if text.is_empty() { "" } else { ": " }
                    ),
                };
                mcp::error(&asked, SERVER_ERROR, &what, None)
            }
        };
        self.out.push_back(UpstreamOutput::Line(line));
    }

    /// The exchange is over (`failed`: why, if it broke): a request it
    /// left unanswered gets an error; a stream's end is handled.
    fn ended(&mut self, id: ExchangeId, failed: Option<String>) {
        let Some(exchange) = self.exchanges.remove(&id) else {
            return;
        };
        match exchange.kind {
            Kind::Post {
                id: Some(asked),
                answered: false,
                replay,
                legacy,
                ..
            } if !legacy || failed.is_some() => {
                let why = failed.unwrap_or_else(|| {
                    "the remote MCP server ended its answer without answering".to_owned()
                });
                if legacy {
                    self.awaited.retain(|awaited| *awaited != asked);
                }
                if replay {
                    self.reinitializing = false;
                    for line in std::mem::take(&mut self.held) {
                        let id = request_id(&line);
                        self.fail(id.as_ref(), &why);
                    }
                } else {
                    self.fail(Some(&asked), &why);
                }
            }
            Kind::Legacy => {
                let Protocol::Legacy { stream, endpoint } = &self.protocol else {
                    return;
                };
                if *stream != id {
                    return;
                }
                let established = endpoint.is_some();
                self.awaited.clear();
                let why = failed.unwrap_or_else(|| "its event stream ended".to_owned());
                for line in std::mem::take(&mut self.held) {
                    let id = request_id(&line);
                    self.fail(id.as_ref(), &format!("the remote MCP server: {why}"));
                }
                self.protocol = Protocol::Streamable;
                if established {
                    // The legacy session is over: the bridge starts again.
                    self.set_status(Status::Failing(why.clone()));
                    self.out.push_back(UpstreamOutput::Gone(why));
                }
                // Never established: the bridge's `initialize` was answered
                // with the error above, and its handshake goes on (a server
                // of the stateless revision answers `server/discover`).
            }
            Kind::Resumed {
                id: asked,
                answered: false,
                resume,
                ..
            } => {
                let why = failed.unwrap_or_else(|| {
                    format!(
                        "the remote MCP server ended its answer without answering, asked for the rest {} times",
                        resume.attempts
                    )
                });
                self.fail(Some(&asked), &why);
            }
            Kind::Listen => {
                self.listening.take_if(|l| l.id == id);
            }
            _ => {}
        }
    }

    /// A JSON-RPC error for request `id` (nothing for a notification).
    fn fail(&mut self, id: Option<&Value>, why: &str) {
        if let Some(id) = id {
            self.out.push_back(UpstreamOutput::Line(mcp::error(
                id,
                SERVER_ERROR,
                why,
                None,
            )));
        }
    }

    /// A post came back 401 (or 403 for want of scope): it waits, with
    /// everything after it, for a token — unless the server refused too
    /// many in a row.
    fn unauthorized_post(&mut self, id: ExchangeId, challenge: Option<String>, step_up: bool) {
        let Some(Exchange {
            kind: Kind::Post {
                line, id: asked, ..
            },
            ..
        }) = self.exchanges.remove(&id)
        else {
            return;
        };
        if self.unauthorized {
            self.held.push_front(sent_line(&line));
            return;
        }
        // A refusal of no token (the first ask, with no login yet) is no
        // token tried; every token refused is, the first one included.
        if self.bearer.is_some() {
            self.auth_tries += 1;
        }
        if self.auth_tries >= MAX_AUTH_TRIES {
            self.auth_tries = 0;
            let why = format!(
                "the remote MCP server `{}` refused {MAX_AUTH_TRIES} tokens in a row{}",
                self.name,
                challenge
                    .as_deref()
                    .map(|c| format!(" ({})", crate::text::bounded(c, 200)))
                    .unwrap_or_default()
            );
            self.fail(asked.as_ref(), &why);
            return;
        }
        self.held.push_front(sent_line(&line));
        self.unauthorized = true;
        self.out
            .push_back(UpstreamOutput::Unauthorized { challenge, step_up });
    }

    /// A post in a session came back 404: the server forgot the session
    /// (it restarted). The bridge's `initialize` is replayed, and the
    /// message waits for the new session — unless sessions keep being
    /// lost before anything is answered in them: then what waits is
    /// answered with an error.
    fn session_lost(&mut self, id: ExchangeId, _now: Instant) {
        let Some(Exchange {
            kind: Kind::Post { line, .. },
            ..
        }) = self.exchanges.remove(&id)
        else {
            return;
        };
        // The session's `notifications/initialized` goes again with the
        // new session anyway.
        if self.initialized.as_deref().map(str::as_bytes) != Some(&line[..]) {
            self.held.push_front(sent_line(&line));
        }
        if self.reinitializing {
            return;
        }
        self.lost_sessions += 1;
        if self.lost_sessions > MAX_LOST_SESSIONS {
            self.lost_sessions = 0;
            let why = format!(
                "the remote MCP server `{}` lost {MAX_LOST_SESSIONS} new sessions in a row, answering nothing in them",
                self.name
            );
            tracing::warn!(server = %self.name, "{why}");
            for line in std::mem::take(&mut self.held) {
                let id = request_id(&line);
                self.fail(id.as_ref(), &why);
            }
            // So are those still out in the lost session: their 404s
            // would start it all again.
            let out: Vec<ExchangeId> = self
                .exchanges
                .iter()
                .filter(|(_, e)| {
                    matches!(
                        e.kind,
                        Kind::Post {
                            session: Some(_),
                            replay: false,
                            ..
                        }
                    )
                })
                .map(|(&id, _)| id)
                .collect();
            for id in out {
                if let Some(Exchange {
                    kind: Kind::Post { id: asked, .. },
                    ..
                }) = self.exchanges.remove(&id)
                {
                    self.out.push_back(UpstreamOutput::Abort(id));
                    self.fail(asked.as_ref(), &why);
                }
            }
            return;
        }
        tracing::info!(server = %self.name, "the remote MCP server lost its session: starting a new one");
        self.session = None;
        self.version = None;
        if let Some(listen) = self.listening.take() {
            self.exchanges.remove(&listen.id);
            self.out.push_back(UpstreamOutput::Abort(listen.id));
        }
        let Some(initialize) = self.initialize.clone() else {
            return;
        };
        self.reinitializing = true;
        let outline = Outline::of(&initialize).unwrap_or_default();
        self.post(initialize, outline, true);
    }

    /// The replayed `initialize` was answered: the session's
    /// `notifications/initialized`, then what waited.
    fn reinitialized(&mut self, now: Instant) {
        self.reinitializing = false;
        if let Some(line) = self.initialized.clone() {
            let outline = Outline::of(&line).unwrap_or_default();
            self.post(line, outline, false);
        }
        self.release(now);
    }

    /// Sends what was held, in order (what must wait again is held again).
    fn release(&mut self, now: Instant) {
        let held = std::mem::take(&mut self.held);
        for line in held {
            self.send(line, now);
        }
    }

    /// A legacy event stream named its endpoint: what waited is posted.
    fn endpoint(&mut self, id: ExchangeId, data: &str) {
        let Protocol::Legacy { stream, endpoint } = &mut self.protocol else {
            return;
        };
        if *stream != id {
            return;
        }
        match self.remote.url.join(data.trim()) {
            Ok(url) if url.same_origin(&self.remote.url) => {
                *endpoint = Some(url);
                let held = std::mem::take(&mut self.held);
                for line in held {
                    let outline = Outline::of(&line).unwrap_or_default();
                    self.post(line, outline, false);
                }
            }
            _ => {
                let why = format!(
                    "the remote MCP server named an endpoint on another server ({}): refused",
                    crate::text::bounded(data, 200)
                );
                tracing::warn!(server = %self.name, "{why}");
                self.out.push_back(UpstreamOutput::Abort(id));
                self.ended(id, Some(why));
            }
        }
    }

    /// `initialize` over Streamable HTTP was refused as if the URL were
    /// not an MCP endpoint: perhaps a legacy server, whose event stream is
    /// opened and `initialize` posted where it says.
    fn streamable_refused(&mut self, id: ExchangeId, status: u16) {
        let Some(Exchange {
            kind: Kind::Post { line, .. },
            ..
        }) = self.exchanges.remove(&id)
        else {
            return;
        };
        tracing::info!(server = %self.name, status, "the remote MCP server refused Streamable HTTP: trying legacy SSE");
        self.out.push_back(UpstreamOutput::Abort(id));
        self.held.push_front(sent_line(&line));
        self.open_legacy();
    }

    /// A legacy stream was refused: no transport works.
    fn legacy_refused(&mut self, id: ExchangeId, status: u16) {
        self.out.push_back(UpstreamOutput::Abort(id));
        self.ended(
            id,
            Some(format!(
                "it answered HTTP {status} {} to an event stream as well",
                crate::http::reason(status)
            )),
        );
    }
}

/// A posted line, as it waits to be posted again: it went as the text it
/// was, so nothing is replaced.
fn sent_line(line: &Bytes) -> String {
    String::from_utf8_lossy(line).into_owned()
}

/// The id of a request line, if it is one.
fn request_id(line: &str) -> Option<Value> {
    Outline::of(line)?.id
}

/// The id a server's message answers, if it is an answer (a message with
/// no method); one with no id, or that is no JSON-RPC object, answers
/// `null`, which no request is.
fn answer_id(line: &str) -> Option<Value> {
    #[derive(serde::Deserialize)]
    struct Members<'a> {
        #[serde(default, borrow)]
        method: Option<&'a serde_json::value::RawValue>,
        #[serde(default)]
        id: Option<Value>,
    }
    if !mcp::is_object(line) {
        return Some(Value::Null);
    }
    match serde_json::from_str::<Members>(line) {
        Ok(Members {
            method: Some(_), ..
        }) => None,
        Ok(Members { id, .. }) => Some(id.unwrap_or(Value::Null)),
        Err(_) => Some(Value::Null),
    }
}

#[cfg(test)]
mod tests;
