//! Where settings come from and how they merge: the config file, then
//! `MCP_PROVIDER_*` environment variables, then `--set key=value` flags
//! (later wins), then the servers and `mcpServers` files given on the
//! command line. Each value keeps its source so an error names it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::file::read_file;
use super::telemetry::{otel_value, OTEL_VARIABLES};
use super::{BadSettings, BridgeServer, BridgeSettings, Settings};

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
        let mut otel = BTreeMap::new();
        for (name, value) in env {
            if AGENTS_VARIABLES.contains(&name.as_str()) {
                continue;
            }
            if OTEL_VARIABLES.iter().any(|(var, _)| *var == name) {
                otel.insert(name, value);
                continue;
            }
            if let Some(key) = name.strip_prefix("MCP_PROVIDER_") {
                let source = format!("environment variable {name}");
                let key = key.to_ascii_lowercase();
                // `MCP_PROVIDER_BRIDGE_MAX_SESSIONS` is `bridge.max_sessions`,
                // `MCP_PROVIDER_TELEMETRY_ENDPOINT` `telemetry.endpoint`.
                let key = match (key.strip_prefix("bridge_"), key.strip_prefix("telemetry_")) {
                    (Some(inner), _) if BridgeSettings::PLAIN_KEYS.contains(&inner) => {
                        format!("bridge.{inner}")
                    }
                    (_, Some(inner)) => format!("telemetry.{inner}"),
                    _ => key,
                };
                set_key(&mut table, &key, loose_value(&value), source);
            }
        }
        // The OpenTelemetry variables, in their order (an empty one is
        // unset, as the specification says).
        for (var, key) in OTEL_VARIABLES {
            if let Some(value) = otel.get(var).filter(|v| !v.trim().is_empty()) {
                let source = format!("environment variable {var}");
                set_key(
                    &mut table,
                    &format!("telemetry.{key}"),
                    otel_value(key, value),
                    source,
                );
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
            let found = super::mcp_json::read(Path::new(file))?;
            for server in &found.servers {
                names.claim(server, &format!("the MCP servers file {file}"))?;
            }
            settings.bridge.notes.extend(found.notes);
            settings.bridge.from_json.extend(found.servers);
        }
        settings.validate()?;
        Ok(settings)
    }
}
