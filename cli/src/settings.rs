//! Settings from a TOML file, `MCP_PROVIDER_*` environment variables and
//! `--set key=value` flags (later wins), turned into the core's `Config`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mcp_provider_core::{Approval, Config};
use serde::Deserialize;

/// Every key a config file may hold; env var `MCP_PROVIDER_<KEY>` and
/// `--set key=value` name the same keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "default_listen", deserialize_with = "one_or_many")]
    pub listen: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub api_key: Vec<String>,
    #[serde(default)]
    pub bridge_token: Option<String>,
    /// An agent hub to dial out to (`ws://…`); it speaks the agent link
    /// protocol as an agent would.
    #[serde(default)]
    pub agent_hub: Option<String>,
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
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    #[serde(default = "default_stream_idle")]
    pub stream_idle_timeout_secs: u64,
    #[serde(default = "default_keepalive")]
    pub keepalive_ms: u64,
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
    /// requests get 503.
    #[serde(default = "default_max_queued")]
    pub max_queued_bytes: usize,
    /// Open connections past this are answered 503 and closed; each
    /// runtime has its own default.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// A connection must send a whole request within this long of going
    /// idle (opening, or its last answer ending), or it is closed.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_secs: u64,
    /// Threads running the async runtime's tasks (`mcp-provider` only; the
    /// blocking build has a thread per connection); 0 means one per core.
    /// One by default: a second thread lifts throughput with many streams
    /// but puts a cross-thread wake-up on the way of each first chunk.
    #[serde(default = "default_threads")]
    pub threads: usize,
    #[serde(default)]
    pub requests_per_minute: u64,
    #[serde(default)]
    pub tokens_per_minute: u64,
    #[serde(default, deserialize_with = "one_or_many")]
    pub allowed_hosts: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub cors_origins: Vec<String>,
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

fn default_threads() -> usize {
    1
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
#[derive(Debug)]
pub struct BadSettings(pub String);

impl std::fmt::Display for BadSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value from the environment or a flag: TOML syntax if it parses
/// (numbers, booleans, arrays), else the plain string.
fn loose_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

impl Settings {
    /// Merges file, environment and `overrides` (`key=value`).
    pub fn load(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<Settings, BadSettings> {
        let mut table: BTreeMap<String, toml::Value> = BTreeMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| BadSettings(format!("cannot read config {}: {e}", path.display())))?;
            let parsed: toml::Table = toml::from_str(&text)
                .map_err(|e| BadSettings(format!("config {}: {e}", path.display())))?;
            table.extend(parsed);
        }
        for (name, value) in env {
            if let Some(key) = name.strip_prefix("MCP_PROVIDER_") {
                table.insert(key.to_ascii_lowercase(), loose_value(&value));
            }
        }
        for item in overrides {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| BadSettings(format!("--set expects key=value, got `{item}`")))?;
            table.insert(key.trim().to_owned(), loose_value(value.trim()));
        }
        // Parsing from text (not from the table) makes errors quote the
        // offending `key = value` line.
        let table: toml::Table = table.into_iter().collect();
        let text = toml::to_string(&table).map_err(|e| BadSettings(format!("bad setting: {e}")))?;
        let settings: Settings =
            toml::from_str(&text).map_err(|e| BadSettings(format!("bad setting: {e}")))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), BadSettings> {
        self.listen_addrs()?;
        if !matches!(self.approval.as_str(), "auto" | "manual") {
            return Err(BadSettings(format!(
                "bad setting `approval`: expected auto or manual, got `{}`",
                self.approval
            )));
        }
        Ok(())
    }

    pub fn listen_addrs(&self) -> Result<Vec<SocketAddr>, BadSettings> {
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

    /// The core's configuration, with the secrets given.
    pub fn core_config(&self, api_keys: &[String], bridge_token: &str, id_seed: u64) -> Config {
        let keys: Vec<&str> = api_keys.iter().map(String::as_str).collect();
        let mut c = Config::new(&keys, bridge_token);
        c.require_api_key = self.require_api_key;
        c.approval = if self.approval == "manual" {
            Approval::Manual
        } else {
            Approval::Auto
        };
        c.http.max_body = self.max_body_bytes;
        c.http.max_head = self.max_header_bytes;
        c.request.max_messages = self.max_messages;
        c.request.max_message_bytes = self.max_message_bytes;
        c.request.max_tokens = self.max_tokens;
        c.request_timeout = Duration::from_secs(self.request_timeout_secs);
        c.stream_idle_timeout = Duration::from_secs(self.stream_idle_timeout_secs);
        c.keepalive_interval = Duration::from_millis(self.keepalive_ms.max(1));
        c.session_ttl = Duration::from_secs(self.session_ttl_secs);
        c.max_sessions = self.max_sessions;
        c.session_grace = Duration::from_secs(self.session_grace_secs);
        c.max_output_bytes = self.max_output_bytes;
        c.max_queued_bytes = self.max_queued_bytes;
        c.requests_per_minute = self.requests_per_minute;
        c.tokens_per_minute = self.tokens_per_minute;
        c.allowed_hosts = self.allowed_hosts.clone();
        c.cors_origins = self.cors_origins.clone();
        c.id_seed = id_seed;
        c
    }

    /// The effective settings as TOML, secrets masked.
    pub fn masked(&self, default_max_connections: usize) -> String {
        let mask = |s: &str| format!("{}…", s.chars().take(4).collect::<String>());
        let keys: Vec<String> = self.api_key.iter().map(|k| mask(k)).collect();
        format!(
            "listen = {:?}\napi_key = {:?}\nbridge_token = {:?}\nagent_hub = {:?}\necho_agent = {}\nrequire_api_key = {}\napproval = {:?}\n\
             max_body_bytes = {}\nmax_header_bytes = {}\nmax_messages = {}\nmax_message_bytes = {}\nmax_tokens = {}\n\
             request_timeout_secs = {}\nstream_idle_timeout_secs = {}\nkeepalive_ms = {}\nsession_ttl_secs = {}\n\
             max_sessions = {}\nsession_grace_secs = {}\nmax_output_bytes = {}\nmax_queued_bytes = {}\nmax_connections = {}\nread_timeout_secs = {}\nthreads = {}\nrequests_per_minute = {}\ntokens_per_minute = {}\nallowed_hosts = {:?}\ncors_origins = {:?}\n",
            self.listen,
            keys,
            self.bridge_token.as_deref().map(mask).unwrap_or_default(),
            self.agent_hub.as_deref().unwrap_or_default(),
            self.echo_agent,
            self.require_api_key,
            self.approval,
            self.max_body_bytes,
            self.max_header_bytes,
            self.max_messages,
            self.max_message_bytes,
            self.max_tokens,
            self.request_timeout_secs,
            self.stream_idle_timeout_secs,
            self.keepalive_ms,
            self.session_ttl_secs,
            self.max_sessions,
            self.session_grace_secs,
            self.max_output_bytes,
            self.max_queued_bytes,
            self.max_connections.unwrap_or(default_max_connections),
            self.read_timeout_secs,
            self.threads,
            self.requests_per_minute,
            self.tokens_per_minute,
            self.allowed_hosts,
            self.cors_origins,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)], sets: &[&str]) -> Result<Settings, BadSettings> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Settings::load(None, env, &sets)
    }

    #[test]
    fn env_then_flags_override_defaults() {
        let s = load(
            &[
                ("MCP_PROVIDER_API_KEY", "a,b"),
                ("MCP_PROVIDER_REQUESTS_PER_MINUTE", "5"),
                ("HOME", "/x"),
            ],
            &["requests_per_minute=7", "listen=127.0.0.1:0"],
        )
        .unwrap();
        assert_eq!(s.api_key, ["a", "b"]);
        assert_eq!(s.requests_per_minute, 7);
        assert_eq!(s.listen, ["127.0.0.1:0"]);
        assert!(s.echo_agent);
    }

    #[test]
    fn bad_keys_and_values_name_the_key() {
        assert!(load(&[("MCP_PROVIDER_NOPE", "1")], &[])
            .unwrap_err()
            .0
            .contains("nope"));
        assert!(load(&[], &["max_tokens=lots"])
            .unwrap_err()
            .0
            .contains("max_tokens"));
        assert!(load(&[], &["listen=here"])
            .unwrap_err()
            .0
            .contains("listen"));
    }
}
