//! The runtime kit of MCP Local Provider: what every driver of the core
//! shares that is not the command line.
//!
//! It must not parse flags or settings files (no clap, no toml): that is
//! `mcp-provider-cli`. A runtime implements [`Runtime`] — serving on
//! listeners that are already bound ([`Launch`]), and running the built-in
//! agents against a remote provider — with the parts here: the server's
//! fan-out ([`serve`]: the hub that keeps the core's provider under one
//! lock, mailboxes, admission, shutdown, the audit log), the MCP
//! [`bridge`]'s child processes, child [`process`] groups, the agents'
//! processes ([`agent`]: dialing a link, `agent exec`, `agent mcp`),
//! [`outbound`] HTTP (remote MCP servers, TLS, OAuth) and [`telemetry`].
//! With the `async` feature, the async `driver` module, written once for every
//! async executor: a runtime on one implements its `Executor`.

pub mod agent;
pub mod bridge;
#[cfg(feature = "async")]
pub mod driver;
mod few;
pub mod outbound;
mod private_file;
pub mod process;
pub mod serve;
pub mod telemetry;

use std::net::TcpListener;
use std::time::Duration;

use mcp_provider_core::http::Limits;
use mcp_provider_core::Config;

/// What a runtime serves with.
pub struct Launch {
    pub config: Config,
    /// Bound and listening; port 0 has been resolved.
    pub listeners: Vec<TcpListener>,
    /// The built-in echo agent to attach in-process, if enabled.
    pub echo: Option<EchoAgentPlan>,
    /// An agent hub to dial out to: (URL, bridge token).
    pub agent_hub: Option<(String, String)>,
    pub limits: ConnLimits,
    /// Threads for an async runtime's tasks; 0: one per core.
    pub threads: usize,
    /// The audit log, when one is configured.
    pub audit: Option<serve::audit::AuditSink>,
    /// The MCP bridge (its servers may be none yet): attach it to the hub.
    pub bridge: std::sync::Arc<bridge::Bridged>,
    /// Where spans are exported, when traces are (the bridge already
    /// exports its own): hand it to the hub.
    pub traces: Option<std::sync::Arc<telemetry::Traces>>,
}

/// Bytes a connection reads from its socket at a time. Requests are small,
/// and the buffer lives as long as the connection: at 10,000 open streams a
/// 16 KiB one was a third of the server's memory.
pub const READ_BUFFER: usize = 4 * 1024;

/// Agent frames a link handles before it wakes the editors they posted to,
/// even while more frames are waiting: bounds the delay a burst adds to
/// the first chunks in it (a frame costs about a microsecond, so well
/// under a millisecond) while letting each editor's writer find a run of
/// chunks to write with one system call.
pub const RING_EVERY: usize = 512;

/// Bursts a link that always has more to read hands over before its
/// editors write (the async runtimes yield to their tasks, the blocking
/// one wakes their threads): the editors then find two bursts'
/// chunks to write with one system call instead of one, which halves the
/// writes of a busy link (about a quarter of the server's time per chunk
/// on smol) for at most [`RING_EVERY`] frames more delay, about a
/// millisecond, and only while frames keep coming faster than they are
/// written.
pub const YIELD_EVERY: usize = 2;

/// Bytes of agent frames a link reads ahead before it hands them to the
/// provider, under one lock: a burst of frames takes the lock (and reads
/// the clock) once, not once a frame, while what a link holds unhandled,
/// and how long one burst keeps the provider from every other connection,
/// stay small.
pub const BURST_BYTES: usize = 64 * 1024;

/// What `/health/deep` calls the built-in echo agent.
pub const ECHO_AGENT: &str = "echo agent";

/// What `/health/deep` calls the link to a configured `agent_hub`.
pub const AGENT_HUB: &str = "agent hub";

/// Caps every driver applies to editor connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections past this many are answered 503 and closed.
    pub max_connections: usize,
    /// How long an idle connection may take to send a whole request.
    pub read_timeout: Duration,
    /// The core's caps on a request's head and body, for its HTTP reader.
    pub http: Limits,
}

/// The echo agent to run: which model it serves and the pause between
/// its chunks.
#[derive(Debug, Clone)]
pub struct EchoAgentPlan {
    pub model: String,
    pub chunk_delay: Duration,
}

/// An MCP host's agent serving as the model: `mcp-provider agent mcp`.
#[derive(Debug, Clone)]
pub struct RemoteHost {
    pub link: agent::dial::Link,
    pub plan: mcp_provider_core::agent::host::HostPlan,
}

/// The echo agent dialing a provider: `mcp-provider agent echo`.
#[derive(Debug, Clone)]
pub struct RemoteEcho {
    pub link: agent::dial::Link,
    pub agent: EchoAgentPlan,
}

/// A driver of the core: the async driver on an executor
/// (`driver::launch::Async`), or the blocking one.
pub trait Runtime {
    /// The binary's name, for `--help` and messages.
    const NAME: &'static str;
    /// What drives the core (`smol`, `blocking`), named in the banner so a
    /// user running both binaries can tell them apart.
    const RUNTIME: &'static str;
    /// Open connections allowed when `max_connections` is not set.
    const DEFAULT_MAX_CONNECTIONS: usize;
    /// Open files one connection holds at most (the connection cap is
    /// kept within the process's limit on open files).
    const FILES_PER_CONNECTION: usize;

    /// Serves until the process ends. `ready` is called once requests are
    /// served (the echo agent, if any, attached); it prints the banner.
    fn serve(launch: Launch, ready: &dyn Fn()) -> Result<(), RunError>;

    /// Runs the echo agent over a WebSocket until the link closes. Each
    /// agent tells its user what happens on its link on `terminal`.
    fn agent_echo(remote: RemoteEcho, terminal: Terminal) -> Result<(), RunError>;

    /// Runs a CLI agent per request over a WebSocket until the link closes.
    fn agent_exec(remote: agent::exec::RemoteExec, terminal: Terminal) -> Result<(), RunError>;

    /// Serves an MCP host on stdin/stdout, its agent answering editors'
    /// requests, until the host or the link closes.
    fn agent_mcp(remote: RemoteHost, terminal: Terminal) -> Result<(), RunError>;
}

/// How an agent process tells its user what happens on its link: the
/// command line's printing (on stderr for `agent mcp`, whose stdout
/// carries MCP messages).
#[derive(Debug, Clone, Copy)]
pub struct Terminal {
    /// Prints a line at once.
    pub say: fn(&str),
    /// Prints the [`link_notice`] of a frame from the provider, if it has
    /// one.
    pub notice: fn(&str),
}

/// Why a [`Runtime`] stopped: something it needed could not be had, or an
/// agent's link ended in a way that dialing again cannot mend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// What the system refused the runtime (a thread, a socket, the watch
    /// for signals), with what it was doing: "start the accept thread".
    #[error("cannot {doing}: {source}")]
    Cannot {
        doing: String,
        source: std::io::Error,
    },
    /// The provider could not start serving.
    #[error(transparent)]
    Serve(#[from] std::io::Error),
    /// The agent's provider refused it, or ended its link for a fault of
    /// the agent's.
    #[error(transparent)]
    Link(#[from] agent::dial::LinkStopped),
    /// A part of the agent's own ended before its link did.
    #[error("{0}")]
    Broken(&'static str),
}

impl RunError {
    /// What turns the I/O error of `doing` into a [`RunError::Cannot`].
    pub fn cannot(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
        let doing = doing.into();
        move |source| RunError::Cannot { doing, source }
    }
}

/// What an agent process tells its user about a frame from the provider:
/// that it registered (and whether it waits for approval), session
/// events, errors. Other frames (requests, pings) say nothing.
pub fn link_notice(frame: &str) -> Option<String> {
    use mcp_provider_core::agent::to_agent::ToAgent;
    // Notices are small; a large frame is a request.
    if frame.len() > 4096 {
        return None;
    }
    let of = |session: Option<String>| session.unwrap_or_else(|| "?".to_owned());
    let line = match ToAgent::parse(frame).ok()? {
        ToAgent::Registered {
            session_id, status, ..
        } => {
            let session = of(session_id);
            match status?.as_str() {
                "active" => format!("Connected: session {session} is active; serving requests (Ctrl-C to stop)."),
                "pending" => format!(
                    "Connected: session {session} waits for approval (dashboard, or POST /control/approve)."
                ),
                other => format!("Connected: session {session} is {other}."),
            }
        }
        ToAgent::Approved { session_id } => {
            format!("Session {} approved: serving requests.", of(session_id))
        }
        ToAgent::Revoked { session_id } => format!("Session {} was revoked.", of(session_id)),
        ToAgent::Expired { session_id } => format!("Session {} expired.", of(session_id)),
        ToAgent::Error { error, .. } => format!(
            "The provider says: {}",
            error.message.as_deref().unwrap_or("an error")
        ),
        _ => return None,
    };
    Some(line)
}
