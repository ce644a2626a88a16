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
//! connection keeps the provider in a [`switchboard::Switchboard`], which
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

pub mod agent;
pub mod answer;
pub mod api;
pub mod audit;
pub mod auth;
pub mod backlog;
pub mod backoff;
pub mod base64;
/// Bridged stdio MCP servers: one child process served to many clients
/// (the process manager, the sessions, one module per transport).
pub mod bridge;
pub mod config;
pub mod error;
#[cfg(fuzzing)]
pub mod fuzzing;
/// Many bridged servers behind one address: the aggregate endpoint,
/// listings of every server, OpenAPI, reconfiguration. Uses `bridge`,
/// which never uses it.
pub mod gateway;
pub mod http;
pub mod limiter;
pub mod lines;
pub mod mcp;
pub mod metrics;
pub mod oauth;
pub mod reassembly;
pub mod search;
pub mod session;
#[cfg(any(test, fuzzing))]
pub mod simulation;
pub mod switchboard;
pub mod telemetry;
pub mod text;
pub mod time;
pub mod tokens;
pub mod upstream;

mod idmap;
mod provider;
pub mod store;
pub mod stream;

pub use config::{Approval, Config};
pub use error::{ApiError, Dialect};
pub use provider::{too_many_connections, ConnId, Output, Provider, RequestId, Stats, Upgrade};
