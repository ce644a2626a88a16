//! Settings from a TOML file, `MCP_PROVIDER_*` environment variables and
//! `--set key=value` flags (later wins), turned into the core's `Config`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mcp_provider_core::bridge::filter::ToolFilter;
use mcp_provider_core::bridge::{Limits as BridgeLimits, ServerSpec, Share};
use mcp_provider_core::gateway::aggregate::names::{
    self as aggregate_names, Names as AggregateNames,
};
use mcp_provider_core::{Approval, Config};
use mcp_provider_kit::dial::default_secrets_file;
use serde::{Deserialize, Serialize};

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
    /// Stdio MCP servers bridged to network clients (`[[bridge.servers]]`).
    /// Last: TOML writes tables after plain keys.
    #[serde(default, skip_serializing_if = "BridgeSettings::is_empty")]
    pub bridge: BridgeSettings,
}

/// The `[bridge]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSettings {
    /// MCP sessions open at once, all servers together; at the cap the
    /// least recently used idle one ends to make room.
    #[serde(default = "default_bridge_sessions")]
    pub max_sessions: usize,
    /// A session with no stream open and no request for this long ends.
    #[serde(default = "default_bridge_session_idle")]
    pub session_idle_secs: u64,
    /// What joins a server's name and its tool's on `/mcp`
    /// (`files__read_file`).
    #[serde(default = "default_aggregate_separator")]
    pub aggregate_separator: String,
    /// `mcpServers` JSON files (Claude Desktop, Claude Code, Cursor, VS
    /// Code) whose servers are bridged too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_json: Vec<String>,
    #[serde(default)]
    pub servers: Vec<BridgeServer>,
    /// The servers those files hold, read at load (a printed
    /// configuration names the files, not what was in them).
    #[serde(skip)]
    pub from_json: Vec<BridgeServer>,
    /// What reading those files noted (entries skipped, keys ignored),
    /// for the log: a reload logs only what it did not note before.
    #[serde(skip)]
    pub notes: Vec<String>,
}

impl Default for BridgeSettings {
    fn default() -> Self {
        BridgeSettings {
            max_sessions: default_bridge_sessions(),
            session_idle_secs: default_bridge_session_idle(),
            aggregate_separator: default_aggregate_separator(),
            mcp_json: Vec::new(),
            servers: Vec::new(),
            from_json: Vec::new(),
            notes: Vec::new(),
        }
    }
}

fn default_bridge_sessions() -> usize {
    BridgeLimits::default().max_sessions
}

fn default_bridge_session_idle() -> u64 {
    BridgeLimits::default().session_idle.as_secs()
}

fn default_aggregate_separator() -> String {
    aggregate_names::DEFAULT_SEPARATOR.to_owned()
}

impl BridgeSettings {
    /// Its keys that hold a plain value (an environment variable can set
    /// them; `bridge_token` is a key of the top level).
    const PLAIN_KEYS: [&str; 3] = ["max_sessions", "session_idle_secs", "aggregate_separator"];

    fn is_empty(&self) -> bool {
        *self == BridgeSettings::default()
    }

    /// Every server to bridge: the configured ones, then those of the
    /// `mcp_json` files.
    pub fn all_servers(&self) -> impl Iterator<Item = &BridgeServer> {
        self.servers.iter().chain(&self.from_json)
    }

    /// How `/mcp` names each server's tools and prompts (the separator is
    /// checked when the settings load).
    pub fn names(&self) -> AggregateNames {
        AggregateNames::new(&self.aggregate_separator).unwrap_or_default()
    }

    /// The core's limits for the bridge, these settings in them.
    pub fn limits(&self) -> BridgeLimits {
        BridgeLimits {
            max_sessions: self.max_sessions,
            session_idle: Duration::from_secs(self.session_idle_secs),
            ..BridgeLimits::default()
        }
    }
}

/// One `[[bridge.servers]]` entry: a stdio MCP server served at
/// `/mcp/{name}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeServer {
    pub name: String,
    pub command: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// `shared`: one child for every client; `per-session`: one each.
    #[serde(default = "shared")]
    pub share: String,
    /// `on-crash`: restarted, with backoff, up to `max_restarts` failures
    /// in a row; `never`.
    #[serde(default = "on_crash")]
    pub restart: String,
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    /// Stop the child after this long unused (0: never); the next request
    /// starts it again.
    #[serde(default)]
    pub idle_timeout_secs: u64,
    /// Only these tools (names or globs, `*` and `?`); empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Never these tools (names or globs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_tools: Vec<String>,
    /// Beginnings of resource URIs that are this server's on `/mcp`,
    /// whatever another server lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
}

fn shared() -> String {
    "shared".to_owned()
}
fn on_crash() -> String {
    "on-crash".to_owned()
}
fn default_max_restarts() -> u32 {
    5
}

impl BridgeServer {
    /// `NAME=COMMAND` as `--server` takes it: COMMAND split like a shell
    /// would (quotes honoured), no shell run.
    pub fn from_flag(flag: &str) -> Result<BridgeServer, BadSettings> {
        let bad = |why: &str| BadSettings(format!("--server {flag}: {why}"));
        let (name, command) = flag
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=COMMAND"))?;
        let words = shlex::split(command).ok_or_else(|| bad("unbalanced quotes in COMMAND"))?;
        let (program, args) = words.split_first().ok_or_else(|| bad("COMMAND is empty"))?;
        Ok(BridgeServer::from_command(
            name.trim(),
            program.clone(),
            args.to_vec(),
        ))
    }

    /// A server running `command` with `args`, every other setting its
    /// default.
    pub fn from_command(name: &str, command: String, args: Vec<String>) -> BridgeServer {
        BridgeServer {
            name: name.to_owned(),
            command,
            args,
            env: BTreeMap::new(),
            cwd: None,
            share: shared(),
            restart: on_crash(),
            max_restarts: default_max_restarts(),
            idle_timeout_secs: 0,
            tools: Vec::new(),
            exclude_tools: Vec::new(),
            resources: Vec::new(),
        }
    }

    /// What the core runs.
    pub fn spec(&self) -> ServerSpec {
        let mut spec = ServerSpec::new(
            self.name.clone(),
            std::iter::once(self.command.clone())
                .chain(self.args.iter().cloned())
                .collect(),
        );
        spec.env = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        spec.cwd = self.cwd.clone();
        spec.share = if self.share == "per-session" {
            Share::PerSession
        } else {
            Share::Shared
        };
        spec.max_restarts = if self.restart == "never" {
            0
        } else {
            self.max_restarts
        };
        spec.idle_timeout =
            (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs));
        spec.tools = ToolFilter {
            allow: self.tools.clone(),
            exclude: self.exclude_tools.clone(),
        };
        spec.resources = self.resources.clone();
        spec
    }

    fn validate(&self) -> Result<(), BadSettings> {
        let bad = |why: String| Err(BadSettings(format!("bridge server `{}`: {why}", self.name)));
        if let Some(why) = mcp_provider_core::bridge::bad_server_name(&self.name) {
            return bad(why.into());
        }
        if !matches!(self.share.as_str(), "shared" | "per-session") {
            return bad(format!(
                "`share` is shared or per-session, not `{}`",
                self.share
            ));
        }
        if !matches!(self.restart.as_str(), "on-crash" | "never") {
            return bad(format!(
                "`restart` is on-crash or never, not `{}`",
                self.restart
            ));
        }
        if self.resources.iter().any(String::is_empty) {
            return bad("`resources` are URI beginnings, none of them empty".into());
        }
        Ok(())
    }
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

/// Variables of ours that the agents read, not the server: a shell that
/// exports them for its agents can still start `serve`.
const AGENTS_VARIABLES: [&str; 1] = ["MCP_PROVIDER_URL"];

/// Settings by key, each with where it came from.
type Sources = BTreeMap<String, (toml::Value, String)>;

/// Sets `key` to `value`; a dotted key (`bridge.max_sessions`) is a key of
/// a table, set in it with the rest of the table as it was.
fn set_key(table: &mut Sources, key: &str, value: toml::Value, source: String) {
    match key.split_once('.') {
        Some((outer, inner)) => {
            let mut inside = match table.remove(outer) {
                Some((toml::Value::Table(t), _)) => t,
                _ => toml::Table::new(),
            };
            inside.insert(inner.to_owned(), value);
            table.insert(outer.to_owned(), (toml::Value::Table(inside), source));
        }
        None => {
            table.insert(key.to_owned(), (value, source));
        }
    }
}

/// Bridge servers given on the command line, added to the configured
/// ones: `--server NAME=COMMAND` and `--mcp-json FILE`.
#[derive(Debug, Clone, Default)]
pub struct Added {
    pub servers: Vec<String>,
    pub mcp_json: Vec<String>,
}

/// The largest config or `mcpServers` file read: far past any real one
/// (Claude Code's `~/.claude.json` keeps history beside its servers),
/// while a wrong path to something huge is refused, not read whole.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The text of a settings file, at most [`MAX_FILE_BYTES`]; the error
/// says which file (`what`) and why.
pub fn read_file(path: &Path, what: &str) -> Result<String, BadSettings> {
    use std::io::Read as _;
    let cannot =
        |e: std::io::Error| BadSettings(format!("cannot read {what} {}: {e}", path.display()));
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(cannot)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(BadSettings(format!(
            "cannot read {what} {}: it is larger than {} MiB",
            path.display(),
            MAX_FILE_BYTES / (1024 * 1024)
        )));
    }
    Ok(text)
}

/// Where the settings come from, kept to read them again when they
/// change: the config file, the environment as it was at start, the
/// `--set` flags, and the servers and files given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub file: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub overrides: Vec<String>,
    pub added: Added,
}

impl Source {
    /// The settings as they read now ([`Settings::load`]).
    pub fn load(&self) -> Result<Settings, BadSettings> {
        Settings::load(
            self.file.as_deref(),
            self.env.iter().cloned(),
            &self.overrides,
            &self.added,
        )
    }

    /// The files whose change changes `settings`: the config file, and
    /// the `mcpServers` files they name.
    pub fn files(&self, settings: &Settings) -> Vec<PathBuf> {
        self.file
            .iter()
            .cloned()
            .chain(settings.bridge.mcp_json.iter().map(PathBuf::from))
            .collect()
    }
}

/// Bridge servers by name, each with where it was configured: a second
/// one of a name is refused, naming both places.
#[derive(Default)]
struct Names(BTreeMap<String, String>);

impl Names {
    fn claim(&mut self, server: &BridgeServer, place: &str) -> Result<(), BadSettings> {
        match self.0.get(&server.name) {
            Some(other) => Err(BadSettings(format!(
                "{place}, server `{}`: two servers have this name (the other one: {other})",
                server.name
            ))),
            None => {
                self.0.insert(server.name.clone(), place.to_owned());
                Ok(())
            }
        }
    }
}

impl Settings {
    /// Merges file, environment and `overrides` (`key=value`), then the
    /// `added` servers. A bad value is reported with where it came from:
    /// the file, the variable or the flag.
    pub fn load(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
        overrides: &[String],
        added: &Added,
    ) -> Result<Settings, BadSettings> {
        let mut table = Sources::new();
        if let Some(path) = file {
            let text = read_file(path, "config")?;
            let parsed: toml::Table = toml::from_str(&text)
                .map_err(|e| BadSettings(format!("config {}: {e}", path.display())))?;
            for (key, value) in parsed {
                let source = format!("config {}, key `{key}`", path.display());
                table.insert(key, (value, source));
            }
        }
        for (name, value) in env {
            if AGENTS_VARIABLES.contains(&name.as_str()) {
                continue;
            }
            if let Some(key) = name.strip_prefix("MCP_PROVIDER_") {
                let source = format!("environment variable {name}");
                let key = key.to_ascii_lowercase();
                // `MCP_PROVIDER_BRIDGE_MAX_SESSIONS` is `bridge.max_sessions`.
                let key = match key.strip_prefix("bridge_") {
                    Some(inner) if BridgeSettings::PLAIN_KEYS.contains(&inner) => {
                        format!("bridge.{inner}")
                    }
                    _ => key,
                };
                set_key(&mut table, &key, loose_value(&value), source);
            }
        }
        for item in overrides {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| BadSettings(format!("--set expects key=value, got `{item}`")))?;
            let key = key.trim().to_owned();
            let source = format!("--set {key}=…");
            set_key(&mut table, &key, loose_value(value.trim()), source);
        }
        // Each key alone first (every other key has a default), so an
        // error names the one place it came from.
        for (key, (value, source)) in &table {
            let mut one = toml::Table::new();
            one.insert(key.clone(), value.clone());
            toml::Value::Table(one)
                .try_into::<Settings>()
                .map_err(|e| BadSettings(format!("{source}: {}", e.message())))?;
        }
        let all: toml::Table = table.into_iter().map(|(k, (v, _))| (k, v)).collect();
        let mut settings: Settings = toml::Value::Table(all)
            .try_into()
            .map_err(|e| BadSettings(format!("bad settings: {}", e.message())))?;
        let mut names = Names::default();
        let configured = file.map_or_else(
            || "the settings".to_owned(),
            |path| format!("config {}", path.display()),
        );
        for server in &settings.bridge.servers {
            names.claim(server, &configured)?;
        }
        for flag in &added.servers {
            let server = BridgeServer::from_flag(flag)?;
            names.claim(&server, &format!("--server {}=…", server.name))?;
            settings.bridge.servers.push(server);
        }
        // Printed back, the configuration names the flag's files too.
        settings
            .bridge
            .mcp_json
            .extend(added.mcp_json.iter().cloned());
        for file in &settings.bridge.mcp_json {
            let found = crate::mcp_json::read(Path::new(file))?;
            for server in &found.servers {
                names.claim(server, &format!("the MCP servers file {file}"))?;
            }
            settings.bridge.notes.extend(found.notes);
            settings.bridge.from_json.extend(found.servers);
        }
        settings.validate()?;
        Ok(settings)
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
        if self.bridge.max_sessions == 0 {
            return Err(BadSettings(
                "bad setting `bridge.max_sessions`: it must be at least 1".to_owned(),
            ));
        }
        if let Some(why) = aggregate_names::bad_separator(&self.bridge.aggregate_separator) {
            return Err(BadSettings(format!(
                "bad setting `bridge.aggregate_separator`: {why}"
            )));
        }
        for server in self.bridge.all_servers() {
            server.validate()?;
        }
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
        let file = match self.secrets_file.as_str() {
            "" => String::new(),
            file => format!(" ({file})"),
        };
        c.credentials_hint = format!(
            "The API key and the bridge token are printed when the server starts; \
             unless configured, they are kept in its secrets file{file} as {} and {}.",
            crate::secrets::API_KEY_VAR,
            crate::secrets::BRIDGE_TOKEN_VAR,
        );
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

    /// The effective settings as a config file `--config` reads back:
    /// every key with its value, secrets and unset keys as comments (a
    /// secret's value is never shown).
    pub fn masked(&self, default_max_connections: usize) -> String {
        let mut shown = self.clone();
        shown.max_connections = Some(self.max_connections.unwrap_or(default_max_connections));
        let mut out = String::from("# MCP Local Provider: effective configuration\n");
        let secret = |set: bool, name: &str, var: &str| {
            if set {
                format!("# {name}: set (hidden); give it with {var} or in a config file\n")
            } else if self.secrets_file.is_empty() {
                format!("# {name}: generated at start-up\n")
            } else {
                format!(
                    "# {name}: generated at start-up, kept in {}\n",
                    self.secrets_file
                )
            }
        };
        out.push_str(&secret(
            !self.api_key.is_empty(),
            "api_key",
            "MCP_PROVIDER_API_KEY",
        ));
        out.push_str(&secret(
            self.bridge_token.is_some(),
            "bridge_token",
            "MCP_PROVIDER_BRIDGE_TOKEN",
        ));
        if self.agent_hub.is_none() {
            out.push_str("# agent_hub: not set (ws://… of a hub to dial out to)\n");
        }
        if self.audit_log.is_none() {
            out.push_str("# audit_log: not set (a file for the audit trail)\n");
        }
        match toml::to_string(&shown) {
            Ok(text) => out.push_str(&text),
            Err(e) => {
                let _ = writeln!(out, "# cannot show the settings: {e}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)], sets: &[&str]) -> Result<Settings, BadSettings> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Settings::load(None, env, &sets, &Added::default())
    }

    #[test]
    fn a_table_key_is_set_with_a_dotted_name() {
        let s = load(
            &[("MCP_PROVIDER_BRIDGE_SESSION_IDLE_SECS", "60")],
            &["bridge.max_sessions=5000"],
        )
        .unwrap();
        assert_eq!(s.bridge.limits().max_sessions, 5000);
        assert_eq!(s.bridge.limits().session_idle, Duration::from_secs(60));
        assert!(s.bridge.servers.is_empty());
        let zero = load(&[], &["bridge.max_sessions=0"]).unwrap_err().0;
        assert!(zero.contains("bridge.max_sessions"), "{zero}");
        let unknown = load(&[], &["bridge.nope=1"]).unwrap_err().0;
        assert!(
            unknown.contains("--set bridge.nope") && unknown.contains("nope"),
            "{unknown}"
        );
    }

    #[test]
    fn env_then_flags_override_defaults() {
        let s = load(
            &[
                ("MCP_PROVIDER_API_KEY", "a,b"),
                ("MCP_PROVIDER_REQUESTS_PER_MINUTE", "5"),
                ("HOME", "/x"),
                ("MCP_PROVIDER_URL", "ws://127.0.0.1:9/v1/agent"),
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
        let flag = load(&[], &["max_tokens=abc"]).unwrap_err().0;
        assert!(
            flag.starts_with("--set max_tokens=…: invalid type"),
            "{flag}"
        );
        let var = load(&[("MCP_PROVIDER_MAX_TOKENS", "abc")], &[])
            .unwrap_err()
            .0;
        assert!(
            var.starts_with("environment variable MCP_PROVIDER_MAX_TOKENS: invalid type"),
            "{var}"
        );
        assert!(!var.contains("line"), "{var}");
    }

    #[test]
    fn printed_config_reads_back_as_the_same_settings_without_secrets() {
        let s = load(
            &[
                ("MCP_PROVIDER_API_KEY", "sk-secret-1"),
                ("MCP_PROVIDER_BRIDGE_TOKEN", "bt-secret"),
            ],
            &[
                "echo_chunk_delay_ms=5",
                "requests_per_minute=9",
                "cors_origins=http://a.test",
            ],
        )
        .unwrap();
        let printed = s.masked(77);
        assert!(
            !printed.contains("sk-secret") && !printed.contains("bt-secret"),
            "{printed}"
        );
        assert!(printed.contains("echo_chunk_delay_ms = 5"), "{printed}");
        assert!(printed.contains("# api_key: set (hidden)"), "{printed}");
        let dir = std::env::temp_dir().join(format!("settings-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("printed.toml");
        std::fs::write(&file, &printed).unwrap();
        let back = Settings::load(Some(&file), std::iter::empty(), &[], &Added::default()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let expected = Settings {
            api_key: Vec::new(),
            bridge_token: None,
            max_connections: Some(77),
            ..s
        };
        assert_eq!(back, expected);
    }

    fn with_servers(flags: &[String]) -> Added {
        Added {
            servers: flags.to_vec(),
            ..Added::default()
        }
    }

    #[test]
    fn servers_come_from_flags_split_like_a_shell_and_print_back() {
        let flags = [
            r#"files=npx -y "@scope/server files" '/tmp/a b'"#.to_owned(),
            "git=uvx mcp-server-git".to_owned(),
        ];
        let s = Settings::load(None, std::iter::empty(), &[], &with_servers(&flags)).unwrap();
        let [files, git] = &s.bridge.servers[..] else {
            panic!("{:?}", s.bridge.servers)
        };
        assert_eq!(files.name, "files");
        assert_eq!(files.command, "npx");
        assert_eq!(files.args, ["-y", "@scope/server files", "/tmp/a b"]);
        assert_eq!(git.spec().command, ["uvx", "mcp-server-git"]);
        assert_eq!(git.spec().share, Share::Shared);

        let printed = s.masked(7);
        assert!(printed.contains("[[bridge.servers]]"), "{printed}");
        let dir = std::env::temp_dir().join(format!("bridge-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("printed.toml");
        std::fs::write(&file, &printed).unwrap();
        let back = Settings::load(Some(&file), std::iter::empty(), &[], &Added::default()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(back.bridge, s.bridge);
    }

    #[test]
    fn bad_servers_are_named() {
        let load = |flags: &[&str]| {
            let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
            Settings::load(None, std::iter::empty(), &[], &with_servers(&flags))
                .unwrap_err()
                .0
        };
        assert!(load(&["nocommand"]).contains("NAME=COMMAND"));
        assert!(load(&["x=echo 'open"]).contains("quotes"));
        assert!(load(&["a/b=cat"]).contains("`a/b`"));
        assert!(load(&["x=cat", "x=cat"]).contains("two servers"));
        let dir = std::env::temp_dir().join(format!("bridge-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        let error = |entry: &str| {
            std::fs::write(&file, format!("[[bridge.servers]]\n{entry}")).unwrap();
            Settings::load(Some(&file), std::iter::empty(), &[], &Added::default())
                .unwrap_err()
                .0
        };
        let share = error("name = \"x\"\ncommand = \"cat\"\nshare = \"sometimes\"\n");
        let resources = error("name = \"x\"\ncommand = \"cat\"\nresources = [\"\"]\n");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(share.contains("share"), "{share}");
        assert!(resources.contains("`resources`"), "{resources}");
    }
}
