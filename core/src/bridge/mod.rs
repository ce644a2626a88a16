//! One bridged stdio MCP server: the child process's lifecycle and the many
//! network clients that share it, as a sans-IO state machine.
//!
//! A child process is just another peer. [`BridgedServer`] is fed what the
//! outside world saw — a client's JSON-RPC message, one line of the child's
//! stdout, the child's exit, the time — and answers with
//! [`BridgeOutput`]s to carry out: spawn the child, write a line to its
//! stdin, close that stdin, signal its process group, send a message to a
//! client. The driver owns the process, its pipes and the client
//! connections and does nothing else; every policy lives here:
//!
//! * **lazy start and one handshake**: the first client request spawns the
//!   child; the bridge sends its own `initialize` (or, to a child of the
//!   stateless generation, `server/discover`), caches the result and
//!   answers every client's `initialize` from that cache;
//! * **generations**: each request and result is translated between the
//!   client's protocol generation and the child's (`generation`);
//! * **routing**: client request ids, progress tokens and the ids of the
//!   child's own requests (sampling, roots, elicitation) are remapped, so
//!   each answer and notification reaches only the client it belongs to;
//! * **supervision**: restart on crash with doubling backoff, a health
//!   `ping`, a kill for a child that stops answering, idle shutdown, and
//!   close stdin → SIGTERM → SIGKILL when stopping. Every call the child
//!   will never answer is answered with a JSON-RPC error, never left
//!   hanging.
//!
//! Nothing here opens a pipe, starts a process or reads a clock: time comes
//! in as an `Instant`; [`BridgedServer::poll_timeout`] says when to call
//! [`BridgedServer::handle_timeout`] next, and a call that comes early does
//! nothing. After every input, drain [`BridgedServer::poll_output`]; the
//! output queue only ever holds what the last inputs produced.
//!
//! With [`Share::PerSession`] the driver keeps one [`BridgedServer`] per
//! client session instead of one for all; the machine is the same.
//!
//! ```no_run
//! use std::time::Instant;
//! use mcp_provider_core::bridge::{BridgeOutput, BridgedServer, Limits, ServerSpec, StopSignal};
//! use mcp_provider_core::mcp;
//!
//! let spec = ServerSpec::new("files", vec!["mcp-server-files".into(), "/srv".into()]);
//! let mut bridge = BridgedServer::new(spec, Limits::default(), Instant::now());
//! let client = bridge.open_client(Instant::now());
//! # let line_from_client = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
//! # let lines_from_child: Vec<String> = Vec::new();
//! # let child_exited = false;
//! # let last_stderr_lines = "";
//! # fn spawn(_: &[String], _: &[(String, String)], _: Option<&str>) -> Result<(), String> { Ok(()) }
//! loop {
//!     // 1. Input (a real driver waits for one of these, or for the timer).
//!     match mcp::parse(line_from_client) {
//!         Ok(message) => bridge.handle_client_message(client, message, Instant::now()),
//!         Err(invalid) => { /* answer the client with invalid.reply() */ }
//!     }
//!     for line in &lines_from_child {
//!         bridge.handle_child_line(line, Instant::now());
//!     }
//!     if child_exited {
//!         bridge.handle_child_exit(last_stderr_lines, Instant::now());
//!     }
//!     if bridge.poll_timeout().is_some_and(|t| t <= Instant::now()) {
//!         bridge.handle_timeout(Instant::now());
//!     }
//!     // 2. Output, until there is none.
//!     while let Some(output) = bridge.poll_output() {
//!         match output {
//!             BridgeOutput::Spawn { command, env, cwd } => {
//!                 // In a process group of its own, stdin and stdout piped.
//!                 match spawn(&command, &env, cwd.as_deref()) {
//!                     Ok(()) => bridge.handle_spawned(Instant::now()),
//!                     Err(e) => bridge.handle_spawn_failed(&e, Instant::now()),
//!                 }
//!             }
//!             BridgeOutput::Connect { .. } => { /* a remote server: see `upstream` */ }
//!             BridgeOutput::ToChild { line: _, .. } => { /* write the line and "\n" to stdin */ }
//!             BridgeOutput::CloseStdin => { /* drop the child's stdin */ }
//!             BridgeOutput::Signal(StopSignal::Term) => { /* kill(-pgid, SIGTERM) */ }
//!             BridgeOutput::Signal(StopSignal::Kill) => { /* kill(-pgid, SIGKILL) */ }
//!             BridgeOutput::ToClient { client: _, message: _, .. } => { /* send to that client */ }
//!         }
//!     }
//! }
//! ```
//!
//! [`BridgedServer`]: crate::bridge::BridgedServer
//! [`BridgedServer::poll_timeout`]: crate::bridge::BridgedServer::poll_timeout
//! [`BridgedServer::handle_timeout`]: crate::bridge::BridgedServer::handle_timeout
//! [`BridgedServer::poll_output`]: crate::bridge::BridgedServer::poll_output
//! [`BridgeOutput`]: crate::bridge::BridgeOutput
//! [`Share::PerSession`]: crate::bridge::Share::PerSession

use std::time::Duration;

pub(crate) mod common;
pub mod filter;
mod generation;
mod kept;
mod lazy;
mod listen;
mod logging;

mod mux;
mod parked;
pub(crate) mod registry;
mod relisten;
mod report;
mod rest;
#[cfg(test)]
pub(crate) mod rig;
pub(crate) mod routes;
mod server;
mod session;
mod socket;
mod stateless;
mod streamable;
mod supervisor;
#[cfg(test)]
mod tests;
pub(crate) mod traced;
pub(crate) mod verbatim;

pub use kept::{HELD_PER_SESSION, KEPT_BYTES, KEPT_BYTES_PER_SESSION};
pub use lazy::{kept_file, LastRun, MAX_KEPT_RUN};
pub(crate) use registry::BRIDGE;
pub(crate) use registry::{Event, Queued, Registry};
pub use registry::{Routed, KEEPALIVE, MAX_CHILDREN};
pub use report::{RemoteFigures, Report, SearchFigures, SearchSeen, ServerFigures};
#[cfg(test)]
pub(crate) use routes::every_route;
pub use routes::{guard, Found, TEST_PAGE};
pub use server::BridgedServer;
pub use socket::{SocketFrame, MAX_BATCH};

/// JSON-RPC's "server error" code: the bridged server exited, hung, was
/// stopped, gave up, or has too much in flight.
pub const SERVER_ERROR: i64 = -32000;
/// JSON-RPC's "internal error" code: sent to the child when no client can
/// answer its request.
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP's "request timeout" code (the SDKs' `RequestTimeout`): a call to a
/// remote server showed neither its answer nor progress in time.
pub const REQUEST_TIMEOUT: i64 = -32001;

/// One child (running or startable): an index into
/// [`Bridge`](crate::gateway::Bridge)'s children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildId(pub usize);

/// One client of a bridged server (a network session), numbered by the
/// bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// Whether clients share one child or each session gets its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Share {
    /// One child for every client: one [`BridgedServer`].
    #[default]
    Shared,
    /// One child per client session: one [`BridgedServer`] each.
    PerSession,
}

/// Why a server name cannot be used, if it cannot: it is one segment of
/// the URL `/mcp/NAME`, so letters, digits, `-`, `_` and `.`, and not a
/// dot segment (which a canonical path never keeps).
pub fn bad_server_name(name: &str) -> Option<&'static str> {
    let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let usable = !name.is_empty() && name.chars().all(fits) && name != "." && name != "..";
    (!usable).then_some(
        "a name is letters, digits, `-`, `_` and `.`, and not `.` or `..` (it is part of the URL /mcp/NAME)",
    )
}

/// What to run and how to treat it: one `[[bridge.servers]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    /// Names the server in paths and in every error a client sees.
    pub name: String,
    /// The argv; `[0]` is the program. Empty for a remote server.
    pub command: Vec<String>,
    /// A remote server, reached over HTTP instead of run: the bridge
    /// speaks to it through an [`Upstream`](crate::upstream::Upstream) as
    /// it would to a child's stdio.
    pub remote: Option<crate::upstream::Remote>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub share: Share,
    /// Consecutive failed runs (crash, hang, failed spawn or handshake)
    /// after which the bridge gives up until a new client opens (0 counts
    /// as 1: no restart).
    pub max_restarts: u32,
    /// Stop the child after this long with no client and nothing in
    /// flight; `None` keeps it running.
    pub idle_timeout: Option<Duration>,
    /// The tools its clients may see and call.
    pub tools: filter::ToolFilter,
    /// Beginnings of the resource URIs that are this server's on the
    /// aggregate endpoint `/mcp`: a read of a URI that starts with one
    /// goes here, whatever another server lists (empty: its listings and
    /// templates say which are its, see `aggregate`).
    pub resources: Vec<String>,
    /// What its tools and prompts are named under on the aggregate
    /// endpoint `/mcp` instead of its name: `gh` lists `gh__create_issue`;
    /// empty lists them bare (see `gateway::aggregate::names`). `None`:
    /// its name.
    pub prefix: Option<String>,
}

impl ServerSpec {
    /// A shared server, five failed runs before giving up, never stopped
    /// for idleness.
    pub fn new(name: impl Into<String>, command: Vec<String>) -> Self {
        ServerSpec {
            name: name.into(),
            command,
            remote: None,
            env: Vec::new(),
            cwd: None,
            share: Share::Shared,
            max_restarts: 5,
            idle_timeout: None,
            tools: filter::ToolFilter::default(),
            resources: Vec::new(),
            prefix: None,
        }
    }
}

/// Timing and size limits of the process manager.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// How often a running child gets a health `ping`.
    pub ping_interval: Duration,
    /// How long a call may wait with no line at all from the child before
    /// the child is asked with a `ping`; and how long that ping (or a
    /// health ping) may wait before the child counts as hung and is killed.
    pub ping_timeout: Duration,
    /// How long the bridge's `initialize` may wait for its answer.
    pub startup_timeout: Duration,
    /// The wait between close stdin, SIGTERM and SIGKILL when stopping.
    pub stop_grace: Duration,
    /// The wait before the first restart, doubling per consecutive
    /// failure…
    pub backoff_initial: Duration,
    /// …up to this.
    pub backoff_max: Duration,
    /// A run that was up this long after its handshake forgets earlier
    /// failures (one stuck in its handshake never does).
    pub healthy_after: Duration,
    /// Client calls sent or queued at once; past it a call is answered
    /// with an error at once. Also bounds the child's requests waiting for
    /// clients and the resources subscribed to.
    pub max_in_flight: usize,
    /// Sessions open at once, all servers together (the bridge's, not a
    /// child's). At the cap the least recently used session with no stream
    /// open and nothing in flight ends to make room; a new client is
    /// refused only when every session is busy.
    pub max_sessions: usize,
    /// A session with no stream open and no request for this long ends
    /// (clients seldom `DELETE` theirs).
    pub session_idle: Duration,
    /// How long a call to a remote server may go with neither its answer
    /// nor progress (`notifications/progress` for its token) before its
    /// client gets a timeout error and the server is told the call is
    /// cancelled. A remote server that answers pings and never the call
    /// would otherwise keep it, and what it holds, for good.
    pub call_timeout: Duration,
    /// Servers are lazy: each one's lists are kept from its last run and
    /// answered from while its child is stopped, so listing starts no
    /// child (see `lazy`).
    pub lazy: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(10),
            startup_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(2),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            healthy_after: Duration::from_secs(30),
            max_in_flight: 1024,
            max_sessions: 1024,
            session_idle: Duration::from_secs(3600),
            call_timeout: Duration::from_secs(600),
            lazy: false,
        }
    }
}

/// The signal for the child's process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Kill,
}

/// What the driver must do next, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum BridgeOutput {
    /// Start the child (the driver puts it in a process group of its own),
    /// then call [`BridgedServer::handle_spawned`] or
    /// [`BridgedServer::handle_spawn_failed`].
    Spawn {
        command: Vec<String>,
        env: Vec<(String, String)>,
        cwd: Option<String>,
    },
    /// Reach a remote server instead of starting a child: the driver runs
    /// an [`Upstream`](crate::upstream::Upstream) for it, then calls
    /// [`BridgedServer::handle_spawned`]. What it is then told of the child
    /// goes to the upstream: a line is a message to send, closing stdin or
    /// a signal ends it; the upstream's messages are the child's lines,
    /// and its end ([`UpstreamOutput::Gone`](crate::upstream::UpstreamOutput::Gone),
    /// or being ended) the child's exit.
    Connect {
        /// The server's name, for its errors and logs.
        name: String,
        remote: Box<crate::upstream::Remote>,
    },
    /// One JSON-RPC message for the child's stdin (the driver adds the
    /// newline), or for a remote server's client, which posts it as its
    /// `outline` says.
    ToChild {
        line: String,
        outline: crate::upstream::Outline,
    },
    /// Close the child's stdin (first step of stopping it).
    CloseStdin,
    /// Signal the child's whole process group.
    Signal(StopSignal),
    /// One JSON-RPC message (a serialized object) for a client.
    /// `answers`: for an answer, the id of the client's request it answers,
    /// as JSON text, so whoever routes it need not read the message again.
    ToClient {
        client: ClientId,
        message: String,
        answers: Option<String>,
    },
}

/// Where the child is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildState {
    /// No child; the next client request starts one.
    Stopped,
    /// Spawned (or being spawned), `initialize` not answered yet.
    Starting,
    Running,
    /// Being shut down: stdin closed, signals to follow.
    Stopping,
    /// It crashed or hung: waiting for it to die or for the backoff.
    Restarting,
    /// It failed too often in a row: calls get errors until a new client
    /// opens.
    Failed,
}
