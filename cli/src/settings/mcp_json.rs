//! The `mcpServers` JSON that MCP clients already keep — Claude Desktop's
//! `claude_desktop_config.json`, Claude Code's `.mcp.json`, Cursor's
//! `mcp.json`, and VS Code's `mcp.json` (under `servers`) — read as bridge
//! servers, so a developer's servers are configured once.
//!
//! Each entry's `command`, `args`, `env` and `cwd` are taken — or for a
//! remote server (`type` `http`/`streamable-http`/`sse`, or a `url`) its
//! `url` and `headers` — and this bridge's own `prefix` (what its tools
//! are named under on `/mcp`; clients ignore keys they do not know); a
//! `disabled` one is skipped with a note saying why; keys this bridge
//! does not use are named once per file in a warning. A file that cannot be read as this format is a
//! usage error naming the file, and the entry when one is at fault.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::error::Category;
use serde_json::{Map, Value};

use super::{BadSettings, BridgeServer};

/// What is wrong with one entry of a file (the caller names the file and
/// the entry).
#[derive(Debug, thiserror::Error)]
enum BadEntry {
    #[error("is not an object")]
    NotAnObject,
    #[error("its name cannot be a path segment: {0}")]
    Name(&'static str),
    /// A key that must be a string, not empty: `url`, `command`.
    #[error("`{0}` is missing or not a string")]
    Missing(&'static str),
    /// A key that must be an object of strings: `headers`, `env`.
    #[error("`{0}` is not an object of strings")]
    NotStrings(&'static str),
    /// A key that must be an array of strings: `args`.
    #[error("`{0}` is not an array of strings")]
    NotList(&'static str),
    /// A key that must be a string: `prefix`, `cwd`.
    #[error("`{0}` is not a string")]
    NotString(&'static str),
}

/// The keys of an entry that are read; any other is named in a warning.
const KNOWN: [&str; 9] = [
    "command", "args", "env", "cwd", "disabled", "type", "url", "headers", "prefix",
];

/// The two keys a file may keep its servers under.
#[derive(serde::Deserialize)]
struct Keyed {
    #[serde(rename = "mcpServers")]
    mcp_servers: Option<Members>,
    servers: Option<Members>,
}

/// An object's members in the order written, a name written twice kept
/// twice: read as a map, a JSON object keeps only the last of the two,
/// and a server would be dropped without a word.
struct Members(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of servers")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// What a file holds: its stdio servers, and a note for each entry
/// skipped or key ignored.
pub struct McpJson {
    pub servers: Vec<BridgeServer>,
    pub notes: Vec<String>,
}

/// Reads `path`.
pub fn read(path: &Path) -> Result<McpJson, BadSettings> {
    let file = path.display();
    let text = super::file::read_file(path, "the MCP servers file")?;
    let value: Keyed = serde_json::from_str(&text).map_err(|e| {
        // The file was read: say whether its JSON is broken or its shape.
        let what = match e.classify() {
            Category::Syntax | Category::Eof => "is not valid JSON",
            Category::Data | Category::Io => "is not an MCP servers file",
        };
        BadSettings(format!("the MCP servers file {file} {what}: {e}"))
    })?;
    let entries = value.mcp_servers.or(value.servers).ok_or_else(|| {
        BadSettings(format!(
            "the MCP servers file {file} has no `mcpServers` (or `servers`) object"
        ))
    })?;
    let mut seen = std::collections::HashSet::new();
    if let Some((name, _)) = entries.0.iter().find(|(name, _)| !seen.insert(name)) {
        return Err(BadSettings(format!(
            "the MCP servers file {file}, server `{name}`: named twice in the file"
        )));
    }
    let mut found = McpJson {
        servers: Vec::new(),
        notes: Vec::new(),
    };
    let mut ignored = BTreeMap::new();
    for (name, entry) in &entries.0 {
        let bad = |why: BadEntry| {
            BadSettings(format!(
                "the MCP servers file {file}, server `{name}`: {why}"
            ))
        };
        let entry = entry
            .as_object()
            .ok_or_else(|| bad(BadEntry::NotAnObject))?;
        for key in entry.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
            ignored.insert(key.clone(), ());
        }
        if entry.get("disabled").and_then(Value::as_bool) == Some(true) {
            found.notes.push(format!(
                "{file}: server `{name}` is disabled there: not bridged"
            ));
            continue;
        }
        let remote = matches!(
            entry.get("type").and_then(Value::as_str),
            Some("http" | "sse" | "streamable-http")
        ) || entry.contains_key("url");
        let server = if remote {
            remote_server(name, entry)
        } else {
            server(name, entry)
        };
        found.servers.push(server.map_err(bad)?);
    }
    if !ignored.is_empty() {
        let keys: Vec<&str> = ignored.keys().map(String::as_str).collect();
        found.notes.push(format!(
            "{file}: keys not used here were ignored: {}",
            keys.join(", ")
        ));
    }
    Ok(found)
}

/// One remote entry as a bridge server: its `url`, `headers` and `type`.
fn remote_server(name: &str, entry: &Map<String, Value>) -> Result<BridgeServer, BadEntry> {
    if let Some(why) = mcp_provider_core::bridge::bad_server_name(name) {
        return Err(BadEntry::Name(why));
    }
    let url = match entry.get("url") {
        Some(Value::String(url)) if !url.is_empty() => url.clone(),
        _ => return Err(BadEntry::Missing("url")),
    };
    let mut server = BridgeServer::from_url(name, url);
    server.headers = strings_by_name(entry, "headers")?;
    if entry.get("type").and_then(Value::as_str) == Some("sse") {
        server.transport = Some("sse".into());
    }
    server.prefix = prefix(entry)?;
    Ok(server)
}

/// The bridge's own `prefix` key of an entry.
fn prefix(entry: &Map<String, Value>) -> Result<Option<String>, BadEntry> {
    string(entry, "prefix")
}

/// The string at `key` of an entry, if any.
fn string(entry: &Map<String, Value>, key: &'static str) -> Result<Option<String>, BadEntry> {
    match entry.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(BadEntry::NotString(key)),
    }
}

/// The object of strings at `key` of an entry (none: empty).
fn strings_by_name(
    entry: &Map<String, Value>,
    key: &'static str,
) -> Result<BTreeMap<String, String>, BadEntry> {
    match entry.get(key) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(fields)) => fields
            .iter()
            .map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect::<Option<_>>()
            .ok_or(BadEntry::NotStrings(key)),
        Some(_) => Err(BadEntry::NotStrings(key)),
    }
}

/// The array of strings at `key` of an entry (none: empty).
fn strings(entry: &Map<String, Value>, key: &'static str) -> Result<Vec<String>, BadEntry> {
    match entry.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or(BadEntry::NotList(key)),
        Some(_) => Err(BadEntry::NotList(key)),
    }
}

/// One stdio entry as a bridge server (the bridge's own defaults for the
/// rest: shared, restarted on a crash).
fn server(name: &str, entry: &Map<String, Value>) -> Result<BridgeServer, BadEntry> {
    if let Some(why) = mcp_provider_core::bridge::bad_server_name(name) {
        return Err(BadEntry::Name(why));
    }
    let command = match entry.get("command") {
        Some(Value::String(command)) if !command.is_empty() => command.clone(),
        _ => return Err(BadEntry::Missing("command")),
    };
    let env = strings_by_name(entry, "env")?;
    let cwd = string(entry, "cwd")?;
    let mut server = BridgeServer::from_command(name, command, strings(entry, "args")?);
    server.env = env;
    server.cwd = cwd;
    server.prefix = prefix(entry)?;
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> Result<McpJson, BadSettings> {
        let dir =
            std::env::temp_dir().join(format!("mcp-json-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mcp.json");
        std::fs::write(&path, text).unwrap();
        read(&path)
    }

    #[test]
    fn a_prefix_beside_the_command_is_taken() {
        let found = read_text(
            r#"{"mcpServers": {
                "github": {"command": "gh-mcp", "prefix": "gh"},
                "files": {"command": "fs-mcp", "prefix": ""},
                "git": {"command": "git-mcp"}}}"#,
        )
        .unwrap();
        let prefixes: Vec<Option<&str>> =
            found.servers.iter().map(|s| s.prefix.as_deref()).collect();
        assert_eq!(prefixes, [Some("gh"), Some(""), None]);
        assert!(found.notes.is_empty(), "{:?}", found.notes);
        let bad = read_text(r#"{"mcpServers": {"a": {"command": "x", "prefix": 1}}}"#);
        assert!(bad.err().unwrap().0.contains("`prefix`"));
    }

    #[test]
    fn claude_desktops_file_with_a_disabled_and_a_remote_server() {
        let found = read_text(
            r#"{"mcpServers": {
                "files": {"command": "npx", "args": ["-y", "server-filesystem", "/tmp"], "env": {"A": "1"}, "autoApprove": []},
                "off": {"command": "x", "disabled": true},
                "remote": {"type": "http", "url": "https://example.com/mcp"}}}"#,
        )
        .unwrap();
        let names: Vec<&str> = found.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["files", "remote"]);
        assert_eq!(
            found.servers[1].url.as_deref(),
            Some("https://example.com/mcp")
        );
        assert_eq!(found.servers[0].args, ["-y", "server-filesystem", "/tmp"]);
        assert_eq!(found.servers[0].env["A"], "1");
        let notes = found.notes.join("\n");
        assert!(
            notes.contains("`off` is disabled") && !notes.contains("`remote`"),
            "{notes}"
        );
        assert!(
            notes.contains("keys not used here were ignored: autoApprove"),
            "{notes}"
        );
    }

    #[test]
    fn vs_codes_servers_key_and_the_errors_that_name_the_entry() {
        let found = read_text(r#"{"servers": {"git": {"type": "stdio", "command": "uvx", "args": ["mcp-server-git"]}}}"#).unwrap();
        assert_eq!(found.servers[0].command, "uvx");
        for (text, said) in [
            (
                r#"{"mcpServers": {"bad": {"command": "x", "args": "y"}}}"#,
                "server `bad`: `args` is not an array of strings",
            ),
            (
                r#"{"mcpServers": {"a/b": {"command": "x"}}}"#,
                "server `a/b`: its name cannot be",
            ),
            (
                r#"{"mcpServers": {"none": {}}}"#,
                "server `none`: `command` is missing",
            ),
            (r#"{"other": {}}"#, "has no `mcpServers`"),
            (
                r#"{"mcpServers": {"a": {"command": "x"}, "a": {"command": "y"}}}"#,
                "server `a`: named twice in the file",
            ),
            (
                r#"{"mcpServers": ["a"]}"#,
                "is not an MCP servers file: invalid type: sequence, expected an object of servers",
            ),
            (
                "not json",
                "is not valid JSON: expected ident at line 1 column 2",
            ),
            (
                "{\"mcpServers\": {\n  \"a\": {\"command\": \"x\",}\n}}",
                "is not valid JSON: trailing comma at line 2 column 24",
            ),
        ] {
            let error = read_text(text).err().unwrap().0;
            assert!(
                error.contains(said) && error.contains("mcp.json"),
                "{error}"
            );
        }
    }
}
