//! The `[bridge]` table: how many MCP sessions stay open, how `/mcp`
//! names each server's tools, and which stdio servers are bridged (from
//! the config, `--server` flags and `mcpServers` JSON files).

use std::time::Duration;

use mcp_provider_core::bridge::Limits as BridgeLimits;
use mcp_provider_core::gateway::aggregate::names::{
    self as aggregate_names, Names as AggregateNames,
};
use mcp_provider_core::gateway::aggregate::search::{
    self as tool_search, Mode as ToolSearchMode, ToolSearch,
};
use serde::{Deserialize, Serialize};

use super::{BadSettings, BridgeServer};

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
    /// How long a child has to answer the bridge's `initialize` (a server
    /// run with `npx` may download itself first).
    #[serde(default = "default_bridge_startup_timeout")]
    pub startup_timeout_secs: u64,
    /// How long a child may leave a call with no line at all before it is
    /// pinged, and that ping unanswered before the child counts as hung.
    #[serde(default = "default_bridge_ping_timeout")]
    pub ping_timeout_secs: u64,
    /// What joins a server's name and its tool's on `/mcp`
    /// (`files__read_file`).
    #[serde(default = "default_aggregate_separator")]
    pub aggregate_separator: String,
    /// The longest tool or prompt name on `/mcp`: a longer one is
    /// shortened (a head and a hash of the whole name).
    #[serde(default = "default_max_name_len")]
    pub max_name_len: usize,
    /// Whether `/mcp` lists every tool (`off`), or lists `search_tools`
    /// and `call_tool` with the tools each session found (`on`), or does
    /// so once it would list more than `tool_search_threshold` (`auto`).
    #[serde(default)]
    pub tool_search: ToolSearchMode,
    /// In `auto` mode, the most tools `/mcp` lists whole.
    #[serde(default = "default_tool_search_threshold")]
    pub tool_search_threshold: usize,
    /// Keep each server's listings from its last run and answer listings
    /// from them while its child is stopped: a child starts only when
    /// one of its tools is called (or another request needs it).
    #[serde(default)]
    pub lazy: bool,
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
            startup_timeout_secs: default_bridge_startup_timeout(),
            ping_timeout_secs: default_bridge_ping_timeout(),
            aggregate_separator: default_aggregate_separator(),
            max_name_len: default_max_name_len(),
            tool_search: ToolSearchMode::default(),
            tool_search_threshold: default_tool_search_threshold(),
            lazy: false,
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

fn default_bridge_startup_timeout() -> u64 {
    BridgeLimits::default().startup_timeout.as_secs()
}

fn default_bridge_ping_timeout() -> u64 {
    BridgeLimits::default().ping_timeout.as_secs()
}

fn default_aggregate_separator() -> String {
    aggregate_names::DEFAULT_SEPARATOR.to_owned()
}

fn default_max_name_len() -> usize {
    aggregate_names::DEFAULT_MAX_LEN
}

fn default_tool_search_threshold() -> usize {
    tool_search::DEFAULT_THRESHOLD
}

impl BridgeSettings {
    /// Its keys that hold a plain value (an environment variable can set
    /// them; `bridge_token` is a key of the top level).
    pub(super) const PLAIN_KEYS: [&str; 9] = [
        "max_sessions",
        "session_idle_secs",
        "startup_timeout_secs",
        "ping_timeout_secs",
        "aggregate_separator",
        "max_name_len",
        "tool_search",
        "tool_search_threshold",
        "lazy",
    ];

    pub(super) fn is_empty(&self) -> bool {
        *self == BridgeSettings::default()
    }

    /// Every server to bridge: the configured ones, then those of the
    /// `mcp_json` files.
    pub fn all_servers(&self) -> impl Iterator<Item = &BridgeServer> {
        self.servers.iter().chain(&self.from_json)
    }

    /// How `/mcp` names each server's tools and prompts (the separator and
    /// the longest name are checked when the settings load).
    pub fn names(&self) -> AggregateNames {
        let names = AggregateNames::new(&self.aggregate_separator).unwrap_or_default();
        names
            .clone()
            .with_max_len(self.max_name_len)
            .unwrap_or(names)
    }

    /// Whether `/mcp` lists its tools or offers to search them.
    pub fn tool_search(&self) -> ToolSearch {
        ToolSearch {
            mode: self.tool_search,
            threshold: self.tool_search_threshold,
        }
    }

    /// The core's limits for the bridge, these settings in them.
    pub fn limits(&self) -> BridgeLimits {
        BridgeLimits {
            max_sessions: self.max_sessions,
            session_idle: Duration::from_secs(self.session_idle_secs),
            startup_timeout: Duration::from_secs(self.startup_timeout_secs),
            ping_timeout: Duration::from_secs(self.ping_timeout_secs),
            lazy: self.lazy,
            ..BridgeLimits::default()
        }
    }

    /// Checks the table's limits and every server, naming the bad key.
    pub(super) fn validate(&self) -> Result<(), BadSettings> {
        for (key, value) in [
            ("max_sessions", self.max_sessions as u64),
            ("startup_timeout_secs", self.startup_timeout_secs),
            ("ping_timeout_secs", self.ping_timeout_secs),
        ] {
            if value == 0 {
                return Err(BadSettings(format!(
                    "bad setting `bridge.{key}`: it must be at least 1"
                )));
            }
        }
        if let Some(why) = aggregate_names::bad_separator(&self.aggregate_separator) {
            return Err(BadSettings(format!(
                "bad setting `bridge.aggregate_separator`: {why}"
            )));
        }
        if let Some(why) = aggregate_names::bad_max_len(self.max_name_len) {
            return Err(BadSettings(format!(
                "bad setting `bridge.max_name_len`: {why}"
            )));
        }
        // What each server is named under on `/mcp`: its prefix, or its
        // name (for an empty prefix too, when a name meets another's).
        let mut prefixes = std::collections::BTreeMap::new();
        for server in self.all_servers() {
            server.validate()?;
            let mut own = vec![server.name.as_str()];
            if let Some(prefix) = server.prefix.as_deref().filter(|p| !p.is_empty()) {
                own = vec![prefix];
            }
            for prefix in own {
                if let Some(other) = prefixes.insert(prefix, server.name.as_str()) {
                    return Err(BadSettings(format!(
                        "bridge server `{}`: `{prefix}` is what server `{other}` is named under on /mcp already; give one of them another `prefix`",
                        server.name
                    )));
                }
            }
        }
        Ok(())
    }
}
