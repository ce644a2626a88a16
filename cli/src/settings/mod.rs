//! Settings from a TOML file, `MCP_PROVIDER_*` environment variables and
//! `--set key=value` flags (later wins), turned into the core's `Config`.
//!
//! This file holds the top-level keys (one flat table: listening, limits,
//! keys and rate limits, agents, the audit log), their defaults and
//! checks; the `[bridge]` table and its servers (a remote one's OAuth
//! keys apart), the merging of the sources, the `mcpServers` files and the
//! capped read of any settings file, the core's `Config` and the printed
//! configuration each have a module of their own.

use std::net::SocketAddr;
use std::path::PathBuf;

use mcp_provider_kit::agent::dial::default_secrets_file;
use serde::{Deserialize, Serialize};

mod bridge;
mod bridge_server;
mod core_config;
mod file;
mod masked;
mod mcp_json;
mod server_oauth;
pub mod sources;
mod telemetry;

pub use bridge::BridgeSettings;
pub use bridge_server::BridgeServer;
pub use telemetry::TelemetrySettings;

/// Every key a config file may hold; env var `MCP_PROVIDER_<KEY>` and
/// `--set key=value` name the same keys.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "default_listen", deserialize_with = "one_or_many")]
    pub listen: Vec<String>,
    /// Secrets are never printed back (see [`Settings::masked`]).
    #[serde(default, deserialize_with = "one_or_many", skip_serializing)]
    pub api_key: Vec<String>,
    #[serde(default, skip_serializing)]
    pub bridge_token: Option<String>,
    /// Where generated secrets are kept between runs, as `export` lines a
    /// shell can source; empty: neither read nor written.
    #[serde(default = "default_secrets_file")]
    pub secrets_file: String,
    /// An agent hub to dial out to (`ws://…`); it speaks the agent link
    /// protocol as an agent would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_hub: Option<String>,
    /// A file to append the audit trail to (JSON lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<PathBuf>,
    /// The audit log is rotated past this size (three old files are kept).
    #[serde(default = "default_audit_max")]
    pub audit_log_max_bytes: u64,
    #[serde(default = "yes")]
    pub echo_agent: bool,
    #[serde(default)]
    pub echo_chunk_delay_ms: u64,
    #[serde(default = "yes")]
    pub require_api_key: bool,
    #[serde(default = "auto")]
    pub approval: String,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_max_header")]
    pub max_header_bytes: usize,
    #[serde(default = "default_max_messages")]
    pub max_messages: usize,
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u64,
    /// How long a model request that is not streamed may take; also how
    /// long a bridged remote MCP server's call may go with neither its
    /// answer nor progress.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    #[serde(default = "default_stream_idle")]
    pub stream_idle_timeout_secs: u64,
    #[serde(default = "default_keepalive")]
    pub keepalive_ms: u64,
    /// How often each agent link is pinged; an agent that hears nothing
    /// for three of them takes the provider as gone and dials again.
    #[serde(default = "default_agent_ping")]
    pub agent_ping_secs: u64,
    #[serde(default = "default_ttl")]
    pub session_ttl_secs: u64,
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// How long a dropped agent's session stays resumable before it is
    /// freed (and stops counting against `max_sessions`).
    #[serde(default = "default_session_grace")]
    pub session_grace_secs: u64,
    /// Bytes one answer may hold for a slow editor (or gather as a whole
    /// answer) before it ends with an error.
    #[serde(default = "default_max_output")]
    pub max_output_bytes: usize,
    /// Bytes waiting for all connections together before new model
    /// requests get 503 and streams whose editors fell behind end.
    #[serde(default = "default_max_queued")]
    pub max_queued_bytes: usize,
    /// Open connections past this are answered 503 and closed; each
    /// runtime has its own default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// A connection must send a whole request within this long of going
    /// idle (opening, or its last answer ending), or it is closed.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_secs: u64,
    /// Threads running an async runtime's tasks (smol and tokio; the
    /// blocking build has a thread per connection); 0 means one per core.
    /// One by default: a second thread lifts throughput with many streams
    /// but puts a cross-thread wake-up on the way of each first chunk.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Bytes the Responses API's stored responses may hold together
    /// (the oldest finished one goes first).
    #[serde(default = "default_store_bytes")]
    pub responses_store_bytes: usize,
    /// How long a stored response is kept.
    #[serde(default = "default_store_secs")]
    pub responses_store_secs: u64,
    /// Background responses running at once; past it, new ones get 429.
    #[serde(default = "default_max_background")]
    pub max_background_responses: usize,
    #[serde(default)]
    pub requests_per_minute: u64,
    #[serde(default)]
    pub tokens_per_minute: u64,
    #[serde(default, deserialize_with = "one_or_many")]
    pub allowed_hosts: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub cors_origins: Vec<String>,
    /// Where traces are exported (`[telemetry]`, or the OpenTelemetry
    /// variables).
    #[serde(default, skip_serializing_if = "TelemetrySettings::is_default")]
    pub telemetry: TelemetrySettings,
    /// Stdio MCP servers bridged to network clients (`[[bridge.servers]]`).
    /// Last: TOML writes tables after plain keys.
    #[serde(default, skip_serializing_if = "BridgeSettings::is_empty")]
    pub bridge: BridgeSettings,
}

fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:8788".to_owned()]
}
fn yes() -> bool {
    true
}
fn auto() -> String {
    "auto".to_owned()
}
fn default_max_body() -> usize {
    4 * 1024 * 1024
}
fn default_max_header() -> usize {
    16 * 1024
}
fn default_max_messages() -> usize {
    2000
}
fn default_max_message() -> usize {
    1024 * 1024
}
fn default_max_tokens() -> u64 {
    1_000_000
}
fn default_request_timeout() -> u64 {
    600
}
fn default_stream_idle() -> u64 {
    300
}
fn default_keepalive() -> u64 {
    1000
}
fn default_agent_ping() -> u64 {
    30
}
fn default_ttl() -> u64 {
    3600
}
fn default_max_sessions() -> usize {
    1000
}
fn default_session_grace() -> u64 {
    300
}
fn default_max_output() -> usize {
    16 * 1024 * 1024
}
fn default_max_queued() -> usize {
    256 * 1024 * 1024
}
fn default_read_timeout() -> u64 {
    60
}
fn default_store_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_store_secs() -> u64 {
    24 * 3600
}
fn default_max_background() -> usize {
    32
}

fn default_threads() -> usize {
    1
}
fn default_audit_max() -> u64 {
    10 * 1024 * 1024
}

/// A string holding a comma-separated list, or a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

/// A settings error: exit code 2, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadSettings(pub String);

impl Settings {
    /// The core's limits for the bridge: the `[bridge]` table's, and
    /// `request_timeout_secs` as how long a remote server's call may go
    /// with neither its answer nor progress.
    pub fn bridge_limits(&self) -> mcp_provider_core::bridge::Limits {
        mcp_provider_core::bridge::Limits {
            call_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
            ..self.bridge.limits()
        }
    }

    /// Whether settings other than the bridge's (its servers, files and
    /// limits) differ: those are read at start only.
    pub fn differs_beyond_the_bridge(&self, other: &Settings) -> bool {
        let without_bridge = |s: &Settings| Settings {
            bridge: BridgeSettings::default(),
            ..s.clone()
        };
        without_bridge(self) != without_bridge(other)
    }

    fn validate(&self) -> Result<(), BadSettings> {
        self.listen_addrs()?;
        self.bridge.validate()?;
        self.telemetry.export()?;
        if !matches!(self.approval.as_str(), "auto" | "manual") {
            return Err(BadSettings(format!(
                "bad setting `approval`: expected auto or manual, got `{}`",
                self.approval
            )));
        }
        Ok(())
    }

    /// The addresses to listen on: at least one, since a server bound
    /// nowhere would wait for clients that can never reach it.
    pub fn listen_addrs(&self) -> Result<Vec<SocketAddr>, BadSettings> {
        if self.listen.is_empty() {
            return Err(BadSettings(
                "bad setting `listen`: no address to listen on; give one like 127.0.0.1:8788"
                    .to_owned(),
            ));
        }
        self.listen
            .iter()
            .map(|a| {
                a.parse().map_err(|_| {
                    BadSettings(format!(
                        "bad setting `listen`: `{a}` is not an address like 127.0.0.1:8788"
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
