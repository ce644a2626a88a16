//! Everything the provider can be told, with the defaults a developer on
//! their own machine wants. Secrets are held as hashes only.

use std::time::Duration;

use crate::api::RequestLimits;
use crate::auth::SecretHash;
use crate::http::Limits;
use crate::store::StoreLimits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// An agent holding the bridge token is trusted at once.
    Auto,
    /// New sessions wait as `pending` until approved through the control API.
    Manual,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Keys editors must send as `Authorization: Bearer`.
    pub api_keys: Vec<SecretHash>,
    /// When false, editor routes are open (for clients that cannot send a key).
    pub require_api_key: bool,
    /// The token agents and the control API must send.
    pub bridge_token: SecretHash,
    /// Added to a wrong key's or token's 401: where the right one is
    /// (only the embedder knows; empty says nothing).
    pub credentials_hint: String,
    pub approval: Approval,
    pub http: Limits,
    pub request: RequestLimits,
    /// Total time for a non-streamed request.
    pub request_timeout: Duration,
    /// Longest silence from the agent within a stream.
    pub stream_idle_timeout: Duration,
    /// SSE comment sent when a stream has been quiet this long.
    pub keepalive_interval: Duration,
    /// How often agents get a `ping`.
    pub agent_ping_interval: Duration,
    pub session_ttl: Duration,
    pub max_session_ttl: Duration,
    pub max_sessions: usize,
    /// How long a session made by an agent stays resumable after its link
    /// closes; it is freed after that (it no longer counts against
    /// `max_sessions`). Sessions made through the control API are kept
    /// until their TTL.
    pub session_grace: Duration,
    /// Chunks held while waiting for a missing earlier one, per stream.
    pub max_held_chunks: usize,
    /// Bytes one answer may hold in memory: a stream's output its editor
    /// has not read yet, or a whole answer being gathered. Past it the
    /// answer ends with an error and the agent gets `cancel`.
    pub max_output_bytes: usize,
    /// Bytes waiting to be written to all connections together (editors
    /// and agent links); past it new model requests get 503.
    pub max_queued_bytes: usize,
    /// What the Responses API's store of responses keeps.
    pub store: StoreLimits,
    /// Background responses running at once; past it, 429.
    pub max_background: usize,
    /// 0 turns a limit off.
    pub requests_per_minute: u64,
    pub tokens_per_minute: u64,
    /// Host names accepted besides loopback ones (DNS-rebinding protection).
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed by CORS besides loopback ones.
    pub cors_origins: Vec<String>,
    /// Agents the driver attaches itself ([`crate::Provider::open_agent`]),
    /// by name: `/health/deep` reports 503 while one is not connected.
    pub expected_agents: Vec<String>,
    /// Keep an audit trail, one JSON line per event worth keeping, for the
    /// driver to write ([`Provider::poll_audit`](crate::Provider::poll_audit)).
    pub audit: bool,
    /// Record traces, deciding which by this sampler (`None`: no spans
    /// at all, see [`crate::telemetry`]).
    pub trace: Option<crate::telemetry::Sampler>,
    /// Traced model requests carry their prompts and answers (the GenAI
    /// conventions' content capture, off unless asked for).
    pub trace_content: bool,
    /// Mixed into generated ids so they differ between runs.
    pub id_seed: u64,
    /// A random key drawn at start-up that never leaves the core: resume
    /// tokens are keyed with it, so they cannot be recomputed from
    /// anything the provider shows (ids come from a generator that is not
    /// one-way).
    pub secret: [u8; 32],
}

impl Config {
    /// Defaults, with the two secrets given.
    pub fn new(api_keys: &[&str], bridge_token: &str) -> Self {
        Config {
            api_keys: api_keys.iter().map(|k| SecretHash::of(k)).collect(),
            require_api_key: true,
            bridge_token: SecretHash::of(bridge_token),
            credentials_hint: String::new(),
            approval: Approval::Auto,
            http: Limits::default(),
            request: RequestLimits::default(),
            request_timeout: Duration::from_secs(600),
            stream_idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(1),
            agent_ping_interval: Duration::from_secs(30),
            session_ttl: Duration::from_secs(3600),
            max_session_ttl: Duration::from_secs(30 * 24 * 3600),
            max_sessions: 1000,
            session_grace: Duration::from_secs(300),
            max_held_chunks: 1024,
            max_output_bytes: 16 * 1024 * 1024,
            max_queued_bytes: 256 * 1024 * 1024,
            store: StoreLimits::default(),
            max_background: 32,
            requests_per_minute: 0,
            tokens_per_minute: 0,
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            expected_agents: Vec::new(),
            audit: false,
            trace: None,
            trace_content: false,
            id_seed: 0,
            secret: [0; 32],
        }
    }
}
