//! One `[[bridge.servers]]` entry (or `--server NAME=COMMAND` flag, or
//! `mcpServers` JSON entry): the command to run, how it is shared and
//! restarted, and which tools and resources it offers; turned into the
//! core's `ServerSpec`.

use std::collections::BTreeMap;
use std::time::Duration;

use mcp_provider_core::bridge::filter::ToolFilter;
use mcp_provider_core::bridge::{ServerSpec, Share};
use serde::{Deserialize, Serialize};

use super::BadSettings;

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
    /// What its tools and prompts are named under on `/mcp` instead of
    /// its name (`gh` → `gh__create_issue`); empty: bare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
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
            prefix: None,
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
        spec.prefix = self.prefix.clone();
        spec
    }

    pub(super) fn validate(&self) -> Result<(), BadSettings> {
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
        let prefix = self.prefix.as_deref().unwrap_or_default();
        if let Some(why) = mcp_provider_core::gateway::aggregate::names::bad_prefix(prefix) {
            return bad(format!("`prefix`: {why}"));
        }
        if self.resources.iter().any(String::is_empty) {
            return bad("`resources` are URI beginnings, none of them empty".into());
        }
        Ok(())
    }
}
