//! The agents known to speak ACP: for each, the line that starts it, what
//! it needs set to run headless, and the command that logs it in (what an
//! editor is told when the agent says it needs a login). A row each, not a
//! parser: every agent speaks the same protocol.

use crate::agent::exec::offer::QWEN_OFF;
use crate::agent::exec::preset::{GEMINI_ONE_PROCESS, QWEN_ONE_PROCESS};
use crate::agent::exec::SERVER;

/// A known ACP agent.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    /// The command that starts it speaking ACP on stdio.
    pub command: &'static [&'static str],
    /// Variables it needs beside the inherited ones.
    pub env: &'static [(&'static str, &'static str)],
    /// What logs it in, for an agent that says it needs a login.
    pub login: &'static str,
    /// How to install it.
    pub install: &'static str,
    /// How its own tools are turned off, so its model sees only the
    /// editor's (when it may not run its own anyway).
    pub own_tools_off: OwnToolsOff,
    /// It keeps its sessions' MCP servers by name for its whole working
    /// directory (the last session's relay answers every session's calls).
    pub shared_servers: bool,
    /// It locks a store its processes share while it opens a session, and
    /// a process killed meanwhile leaves the next unable to start for a
    /// minute (qwen-code's extension store): its spare session is opened
    /// only while its process runs no turn, when it is not likely killed.
    pub spare_when_idle: bool,
}

/// How an agent's own tools are turned off.
#[derive(Debug, Clone, Copy)]
pub enum OwnToolsOff {
    /// It cannot be told: its permission requests are rejected instead.
    No,
    /// The `_meta` of a `session/new` (JSON).
    Meta(&'static str),
    /// Arguments added to its command line.
    Args(fn() -> Vec<String>),
}

/// qwen-code's arguments: only the editor's MCP server's tools are
/// registered, and its remaining own tools and tool search (which would
/// hide MCP tools behind a search) are excluded.
fn qwen_own_tools_off() -> Vec<String> {
    let mut args = vec!["--core-tools".to_owned(), format!("mcp__{SERVER}")];
    args.push("--exclude-tools".to_owned());
    args.extend(QWEN_OFF.map(str::to_owned));
    args
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "claude",
        command: &["claude-agent-acp"],
        // As root it refuses every session unless told it is sandboxed.
        // Without tool search, MCP tools are sent whole in every request
        // (deferred, they would come with a placeholder tool of its own).
        env: &[("IS_SANDBOX", "1"), ("ENABLE_TOOL_SEARCH", "false")],
        login: "claude /login (or set ANTHROPIC_API_KEY)",
        install: "npm install -g @zed-industries/claude-agent-acp @anthropic-ai/claude-code",
        own_tools_off: OwnToolsOff::Meta(r#"{"disableBuiltInTools": true}"#),
        shared_servers: false,
        spare_when_idle: false,
    },
    Preset {
        name: "codex",
        command: &["codex-acp"],
        env: &[],
        login: "codex login (or set OPENAI_API_KEY)",
        install: "npm install -g @zed-industries/codex-acp",
        own_tools_off: OwnToolsOff::No,
        shared_servers: false,
        spare_when_idle: false,
    },
    Preset {
        name: "gemini",
        command: &["gemini", "--acp"],
        env: &[GEMINI_ONE_PROCESS],
        login: "gemini, then choose a login (or set GEMINI_API_KEY)",
        install: "npm install -g @google/gemini-cli",
        own_tools_off: OwnToolsOff::No,
        shared_servers: false,
        spare_when_idle: false,
    },
    Preset {
        name: "qwen",
        command: &["qwen", "--acp"],
        env: &[QWEN_ONE_PROCESS],
        login: "qwen, then /auth (or set OPENAI_API_KEY with --auth-type openai)",
        install: "npm install -g @qwen-code/qwen-code",
        own_tools_off: OwnToolsOff::Args(qwen_own_tools_off),
        shared_servers: false,
        spare_when_idle: true,
    },
    Preset {
        name: "opencode",
        command: &["opencode", "acp"],
        env: &[],
        login: "opencode auth login",
        install: "npm install -g opencode-ai",
        own_tools_off: OwnToolsOff::No,
        shared_servers: true,
        spare_when_idle: false,
    },
    Preset {
        name: "goose",
        command: &["goose", "acp"],
        env: &[],
        login: "goose configure",
        install: "see https://block.github.io/goose/",
        own_tools_off: OwnToolsOff::No,
        shared_servers: false,
        spare_when_idle: false,
    },
    Preset {
        name: "cursor-agent",
        command: &["cursor-agent", "acp"],
        env: &[],
        login: "cursor-agent login",
        install: "curl https://cursor.com/install -fsS | bash",
        own_tools_off: OwnToolsOff::No,
        shared_servers: false,
        spare_when_idle: false,
    },
];

/// The preset of this name.
pub fn named(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The names of every preset, for a usage message.
pub fn names() -> String {
    PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_found_by_its_name_and_starts_a_command() {
        for preset in PRESETS {
            assert_eq!(named(preset.name).map(|p| p.name), Some(preset.name));
            assert!(!preset.command.is_empty());
            match preset.own_tools_off {
                OwnToolsOff::Meta(meta) => {
                    assert!(serde_json::from_str::<serde_json::Value>(meta).is_ok())
                }
                OwnToolsOff::Args(args) => assert!(args().contains(&"--core-tools".to_owned())),
                OwnToolsOff::No => {}
            }
        }
        assert!(named("nope").is_none());
        assert!(names().starts_with("claude, codex"));
    }
}
