//! One `[[bridge.servers]]` entry (or `--server NAME=COMMAND|URL` flag, or
//! `mcpServers` JSON entry): the command to run or the remote server's URL,
//! how it is shared and restarted, and which tools and resources it
//! offers; turned into the core's `ServerSpec`.

use std::collections::BTreeMap;
use std::time::Duration;

use mcp_provider_core::bridge::filter::ToolFilter;
use mcp_provider_core::bridge::{ServerSpec, Share};
use mcp_provider_core::http::{BadUrl, Url};
use mcp_provider_core::upstream::{Remote, Transport};
use serde::{Deserialize, Serialize};

use super::BadSettings;

/// One `[[bridge.servers]]` entry: a stdio MCP server (`command`) or a
/// remote one (`url`) served at `/mcp/{name}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeServer {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    /// A remote server's `http(s)://` URL, instead of a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Sent with every request to a remote server; `${VAR}` (or
    /// `${VAR:-default}`) is taken from the environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A remote server's transport: `http` (Streamable HTTP, falling back
    /// to legacy SSE) or `sse` (legacy only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// PEM roots trusted for this server's TLS instead of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// OAuth: a client registered with the server's authorization server
    /// beforehand (else one is registered, or a metadata document used);
    /// `${VAR}` is taken from the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// OAuth: that client's secret; `${VAR}` is taken from the
    /// environment. Never printed back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// OAuth: the scopes to ask for when the server does not say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// OAuth: the https URL of this client's metadata document, its
    /// client id where the authorization server takes such documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_metadata_url: Option<String>,
    /// OAuth: the loopback port the browser is sent back to (for an
    /// authorization server that wants the redirect URI exactly); any
    /// free one by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_port: Option<u16>,
    /// OAuth: whether the running server may open a browser for a login
    /// the server wants (`$BROWSER` set allows it too); else its clients
    /// are told to run `mcp-provider login NAME`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open_browser: bool,
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
    /// would (quotes honoured), no shell run; or `NAME=URL` for a remote
    /// server.
    pub fn from_flag(flag: &str) -> Result<BridgeServer, BadSettings> {
        let bad = |why: &str| BadSettings(format!("--server {flag}: {why}"));
        let (name, command) = flag
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=COMMAND or NAME=URL"))?;
        let command = command.trim();
        if command.starts_with("http://") || command.starts_with("https://") {
            return Ok(BridgeServer::from_url(name.trim(), command.to_owned()));
        }
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
            url: None,
            headers: BTreeMap::new(),
            transport: None,
            ca_file: None,
            client_id: None,
            client_secret: None,
            scopes: Vec::new(),
            client_metadata_url: None,
            redirect_port: None,
            open_browser: false,
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

    /// A remote server at `url`, every other setting its default.
    pub fn from_url(name: &str, url: String) -> BridgeServer {
        BridgeServer {
            url: Some(url),
            ..BridgeServer::from_command(name, String::new(), Vec::new())
        }
    }

    /// The remote server this entry names, its `${VAR}`s expanded.
    pub(super) fn remote(&self) -> Result<Option<Remote>, BadRemote> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let url = Url::parse(&expand(url)?)?;
        let mut remote = Remote::new(url);
        for (name, value) in &self.headers {
            let value = expand(value).map_err(|e| BadRemote::Header(name.clone(), e))?;
            remote.headers.push((name.to_ascii_lowercase(), value));
        }
        remote.transport = match self.transport.as_deref() {
            None | Some("http" | "streamable-http" | "streamable_http") => Transport::Auto,
            Some("sse") => Transport::Sse,
            Some(other) => return Err(BadRemote::Transport(other.to_owned())),
        };
        remote.ca_file = self.ca_file.clone();
        Ok(Some(remote))
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
        if let Ok(Some(remote)) = self.remote() {
            spec.command = Vec::new();
            spec.remote = Some(remote);
        }
        spec
    }

    pub(super) fn validate(&self) -> Result<(), BadSettings> {
        let bad = |why: String| Err(BadSettings(format!("bridge server `{}`: {why}", self.name)));
        if let Some(why) = mcp_provider_core::bridge::bad_server_name(&self.name) {
            return bad(why.into());
        }
        match (self.command.is_empty(), &self.url) {
            (true, None) => return bad("give it a `command` or a `url`".into()),
            (false, Some(_)) => return bad("give it a `command` or a `url`, not both".into()),
            _ => {}
        }
        if self.url.is_none()
            && (!self.headers.is_empty() || self.transport.is_some() || self.ca_file.is_some())
        {
            return bad(
                "`headers`, `transport` and `ca_file` are for a server with a `url`".into(),
            );
        }
        if let Err(why) = self.remote().map(drop).and_then(|()| self.check_oauth()) {
            return bad(why.to_string());
        }
        if let Some(file) = self
            .ca_file
            .as_deref()
            .filter(|f| !std::path::Path::new(f).is_file())
        {
            return bad(format!("`ca_file` `{file}` is not a file"));
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

/// What is wrong with a remote server's settings (the caller names the
/// server).
#[derive(Debug, thiserror::Error)]
pub(super) enum BadRemote {
    /// A `${VAR}` in the URL or `client_id` that cannot be expanded.
    #[error(transparent)]
    Unexpanded(#[from] Unexpanded),
    #[error(transparent)]
    Url(#[from] BadUrl),
    #[error("header `{0}`: {1}")]
    Header(String, Unexpanded),
    #[error("`transport` is http, streamable-http or sse, not `{0}`")]
    Transport(String),
    #[error("OAuth settings (`client_id`, `client_secret`, `scopes`, `client_metadata_url`, `redirect_port`, `open_browser`) are for a server with a `url`")]
    OAuthWithoutUrl,
    #[error("`client_id` is empty")]
    EmptyClientId,
    #[error("`client_secret`: {0}")]
    ClientSecret(Unexpanded),
    #[error("`client_secret` needs the `client_id` it belongs to")]
    SecretWithoutClientId,
    #[error("`scopes` are single words, one each in the list, not `{0}`")]
    Scope(String),
    #[error("`client_metadata_url`: {0}")]
    MetadataUrl(BadUrl),
    #[error("`client_metadata_url` is an https URL with a path (the client's metadata document), not `{0}`")]
    MetadataNotHttps(String),
}

/// Why a `${VAR}` cannot be expanded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unexpanded {
    /// The text, its `${` never closed.
    #[error("`${{` without its `}}` in `{0}`")]
    Unclosed(String),
    /// The variable, neither set nor given a default.
    #[error("the environment has no `{0}`")]
    Unset(String),
}

/// `text` with each `${VAR}` (or `${VAR:-default}`) replaced by the
/// environment's value, as `mcpServers` files write them.
pub(crate) fn expand(text: &str) -> Result<String, Unexpanded> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| Unexpanded::Unclosed(text.to_owned()))?;
        let (name, default) = match after[..end].split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (&after[..end], None),
        };
        match (std::env::var(name).ok().filter(|v| !v.is_empty()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(Unexpanded::Unset(name.to_owned())),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_flag_is_a_remote_server() {
        let server = BridgeServer::from_flag("gh=https://api.example.com/mcp").unwrap();
        server.validate().unwrap();
        let spec = server.spec();
        assert!(spec.command.is_empty());
        let remote = spec.remote.unwrap();
        assert_eq!(remote.url.to_string(), "https://api.example.com/mcp");
        assert_eq!(remote.transport, Transport::Auto);
    }

    #[test]
    fn headers_take_the_environment() {
        std::env::set_var("MCP_TEST_TOKEN_X", "s3cret");
        let mut server = BridgeServer::from_url("r", "http://127.0.0.1:9/mcp".into());
        server
            .headers
            .insert("Authorization".into(), "Bearer ${MCP_TEST_TOKEN_X}".into());
        server
            .headers
            .insert("X-Team".into(), "${MCP_TEST_UNSET_Y:-core}".into());
        let remote = server.spec().remote.unwrap();
        assert!(remote
            .headers
            .contains(&("authorization".into(), "Bearer s3cret".into())));
        assert!(remote.headers.contains(&("x-team".into(), "core".into())));
        server
            .headers
            .insert("X-Missing".into(), "${MCP_TEST_UNSET_Z}".into());
        let error = server.validate().unwrap_err().0;
        assert!(error.contains("MCP_TEST_UNSET_Z"), "{error}");
    }

    #[test]
    fn a_server_is_a_command_or_a_url() {
        let mut both = BridgeServer::from_url("r", "http://127.0.0.1:9/mcp".into());
        both.command = "node".into();
        assert!(both.validate().is_err());
        let mut neither = BridgeServer::from_url("r", "http://127.0.0.1:9/mcp".into());
        neither.url = None;
        assert!(neither.validate().is_err());
        let mut ftp = BridgeServer::from_url("r", "ftp://x/".into());
        assert!(ftp.validate().is_err());
        ftp.url = Some("http://127.0.0.1:9/".into());
        ftp.transport = Some("websocket".into());
        assert!(ftp.validate().is_err());
    }
}
