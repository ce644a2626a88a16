//! The sans-IO core of MCP Local Provider.
//!
//! Editors speak the OpenAI or Ollama HTTP API to the provider; agents
//! answer over the agent link (JSON messages over WebSocket). This crate is
//! everything in between, as pure state machines:
//!
//! * no sockets, no threads, no clock reads, no `std::process`;
//! * bytes come in as arguments ([`http::ServerConn::handle_data`],
//!   [`Provider::handle_agent_text`]) and go out as values ([`Output`]);
//! * time comes in as an `Instant` argument; [`Provider::poll_timeout`]
//!   says when to call [`Provider::handle_timeout`] next, and a call that
//!   comes early does nothing.
//!
//! A driver owns the sockets. For each editor connection it keeps a
//! [`http::ServerConn`] that turns bytes into [`http::Request`]s and
//! encodes responses, and a [`stream::Answering`] that writes the answer
//! in progress in its API's shape; one shared [`Provider`] holds sessions,
//! routing and the order of every answer's pieces. After every input, drain
//! [`Provider::poll_output`] and carry each [`Output`] out: write to the
//! connection it names, send the agent a frame, accept a WebSocket upgrade.
//! An answer names its request ([`RequestId`]: the connection and the
//! request's number on it), and the connection writes only what is
//! addressed to the request it is answering, so nothing that comes late
//! for one request lands in the next one's answer. A driver with a task or thread per
//! connection keeps the provider in a [`Switchboard`], which
//! posts each output to its connection's mailbox and counts the bytes in
//! that connection's [`backlog::Backlog`]; the connection's writer reports
//! what it wrote ([`backlog::Backlog::written`]) and, when that says a high
//! backlog drained, calls [`Provider::handle_drained`]. That is how memory
//! stays bounded when a peer reads slowly: the provider pauses the answer
//! at its agent, caps it, or stops routing to a link that does not read.
//!
//! Agent frames are best parsed on the link's own task or thread
//! ([`agent::message::FromAgent::parse`], then
//! [`Provider::handle_agent_message`]), so a large frame never holds the
//! provider while it is read.
//!
//! What an embedder sees: the types above at the crate root, beside the
//! small parts a driver needs ([`Switchboard`], [`TokenBucket`],
//! [`Reassembler`], [`LineBuffer`], [`Backoff`], [`Config`] and its
//! limits), and these modules, each a subsystem a driver runs:
//!
//! * [`http`]: HTTP/1.1 framing, both sides, and URLs;
//! * [`stream`]: an editor connection's half of an answer;
//! * [`backlog`]: the bytes a connection has waiting, and the levels that
//!   pause, resume or cut it;
//! * [`agent`]: the agent link's messages and the agents the provider runs
//!   itself (echo, exec, ACP, app, host);
//! * [`mcp`]: MCP's JSON-RPC messages, as a bridged server reads them;
//! * [`bridge`] and [`gateway`]: bridged stdio MCP servers, one and many
//!   ([`gateway::Bridge`]);
//! * [`upstream`] and [`oauth`]: remote MCP servers and logging in to them;
//! * [`search`]: the tool search index;
//! * [`telemetry`]: spans and their OTLP encoding;
//! * [`time`]: the clock arithmetic and formats the drivers share.
//!
//! Everything else (the editor APIs' translation, sessions, routing,
//! authentication, metrics, the audit trail) is reached through
//! [`Provider`] and stays private, so it can change without breaking an
//! embedder.
//!
//! ```no_run
//! use std::time::{Instant, SystemTime};
//! use bytes::BytesMut;
//! use mcp_provider_core::{http::ServerConn, stream::Answering, Config, ConnId, Output, Provider};
//!
//! let mut provider = Provider::new(Config::new(&["key"], "token"), Instant::now(), SystemTime::now());
//! let conn = ConnId(1);
//! let mut http = ServerConn::new(provider.http_limits(), Instant::now());
//! let mut answering = Answering::default();
//! # let bytes_from_socket: &[u8] = b"";
//! # fn write_to_socket(_: &[u8]) {}
//! loop {
//!     // 1. Bytes from the socket (a real driver waits for them, or for the timer).
//!     http.handle_data(bytes_from_socket);
//!     match http.poll_request() {
//!         Ok(Some(request)) => provider.handle_request(conn, request, Instant::now()),
//!         Ok(None) => {}
//!         Err(e) => provider.handle_http_error(conn, &e),
//!     }
//!     // 2. Time.
//!     if provider.poll_timeout().is_some_and(|t| t <= Instant::now()) {
//!         provider.handle_timeout(Instant::now());
//!     }
//!     // 3. Output, until there is none.
//!     let mut out = BytesMut::new();
//!     while let Some(output) = provider.poll_output() {
//!         if let Some(upgrade) = output.encode_http(&mut http, &mut answering, &mut out) {
//!             // The connection is a WebSocket from now on (answer `101`).
//!         }
//!         // Outputs for agent links (`Output::into_link`) encode nothing here.
//!     }
//!     write_to_socket(&out);
//! }
//! ```

// Everything here is safe Rust: what a peer sends cannot reach memory it
// should not, and the fuzz targets need no memory sanitizer.
#![forbid(unsafe_code)]

pub mod agent;
mod answer;
mod api;
mod audit;
mod auth;
pub mod backlog;
mod backoff;
mod base64;
/// Bridged stdio MCP servers: one child process served to many clients
/// (the process manager, the sessions, one module per transport).
pub mod bridge;
mod config;
mod digits;
mod error;
#[cfg(fuzzing)]
pub mod fuzzing;
/// Many bridged servers behind one address: the aggregate endpoint,
/// listings of every server, OpenAPI, reconfiguration. Uses `bridge`,
/// which never uses it.
pub mod gateway;
pub mod http;
mod idmap;
mod limiter;
mod lines;
pub mod mcp;
mod members;
mod metrics;
pub mod oauth;
mod provider;
mod reassembly;
pub mod search;
mod session;
#[cfg(any(test, fuzzing))]
mod simulation;
mod store;
pub mod stream;
mod swar;
mod switchboard;
pub mod telemetry;
mod text;
pub mod time;
mod tokens;
pub mod upstream;

pub use api::RequestLimits;
pub use backoff::{Backoff, Doubling};
pub use config::{Approval, Config};
pub use error::{ApiError, Dialect};
pub use idmap::IdMap;
pub use limiter::TokenBucket;
pub use lines::{Line, LineBuffer};
pub use provider::{too_many_connections, ConnId, Output, Provider, RequestId, Stats, Upgrade};
pub use reassembly::{Pushed, Reassembler, ReassemblyError};
pub use store::StoreLimits;
pub use switchboard::Switchboard;
