//! How each CLI is given the editor's tools: the MCP server to start (the
//! relay, see [`super::link`]), its own tools off unless asked, and its
//! wait for a tool's result long enough for the editor's.

use std::time::Duration;

use serde_json::json;

use super::preset::Preset;
use super::tools::SERVER;

/// What a run with the editor's tools adds to its CLI's start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launch {
    /// Arguments after the program's name.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// What is the same for every run.
pub struct Setup<'a> {
    /// The relay's command line, the run's secret last.
    pub relay: &'a [String],
    /// How long the editor may take with a result.
    pub wait: Duration,
    /// Keep the CLI's own tools beside the editor's.
    pub cli_tools: bool,
}

/// Past the editor's deadline, so the CLI never gives up on a call first.
const MARGIN: Duration = Duration::from_secs(60);

/// Whether `preset`'s CLI can be given the editor's tools; a request to
/// one that cannot has them in its prompt only.
pub fn takes_tools(preset: Preset) -> bool {
    matches!(preset, Preset::Claude)
}

/// How `preset` gets the editor's tools; `None` for a CLI that cannot.
pub fn launch(preset: Preset, setup: &Setup) -> Option<Launch> {
    let (command, args) = setup.relay.split_first()?;
    let wait = setup.wait + MARGIN;
    match preset {
        // `--mcp-config` takes JSON text; `--strict-mcp-config` leaves out
        // the user's own servers; `--allowedTools mcp__editor` lets every
        // tool of the server run without a permission prompt (none can be
        // answered headless); `--tools ""` turns off every built-in tool.
        // MCP_TOOL_TIMEOUT is claude's wait for a tool's result, in ms;
        // ENABLE_TOOL_SEARCH=false sends the tools whole in every request
        // (deferred, they would need claude's own ToolSearch tool, which is
        // off, and come with a placeholder tool of its own).
        Preset::Claude => {
            let config = json!({"mcpServers": {SERVER: {
                "type": "stdio", "command": command, "args": args}}});
            let mut flags = vec![
                "--mcp-config".to_owned(),
                config.to_string(),
                "--strict-mcp-config".to_owned(),
                "--allowedTools".to_owned(),
                format!("mcp__{SERVER}"),
            ];
            if !setup.cli_tools {
                flags.extend(["--tools".to_owned(), String::new()]);
            }
            Some(Launch {
                args: flags,
                env: vec![
                    ("MCP_TOOL_TIMEOUT".to_owned(), wait.as_millis().to_string()),
                    ("ENABLE_TOOL_SEARCH".to_owned(), "false".to_owned()),
                ],
            })
        }
        Preset::Qwen | Preset::Gemini | Preset::Codex | Preset::CursorAgent => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn launched(preset: Preset, cli_tools: bool) -> Option<Launch> {
        let relay = ["/bin/mcp-provider", "__relay", "/tmp/x/link.sock", "s3cret"];
        let relay = relay.map(str::to_owned).to_vec();
        let setup = Setup {
            relay: &relay,
            wait: Duration::from_secs(300),
            cli_tools,
        };
        launch(preset, &setup)
    }

    #[test]
    fn claude_gets_only_the_relay_and_no_tools_of_its_own() {
        let launch = launched(Preset::Claude, false).unwrap();
        let config: Value = serde_json::from_str(&launch.args[1]).unwrap();
        assert_eq!(
            config["mcpServers"]["editor"]["command"],
            "/bin/mcp-provider"
        );
        assert_eq!(
            config["mcpServers"]["editor"]["args"],
            json!(["__relay", "/tmp/x/link.sock", "s3cret"])
        );
        assert_eq!(
            launch.args[2..],
            [
                "--strict-mcp-config",
                "--allowedTools",
                "mcp__editor",
                "--tools",
                ""
            ]
        );
        assert_eq!(launch.env[0], ("MCP_TOOL_TIMEOUT".into(), "360000".into()));
        assert_eq!(launch.env[1], ("ENABLE_TOOL_SEARCH".into(), "false".into()));
        let keeping = launched(Preset::Claude, true).unwrap();
        assert!(!keeping.args.iter().any(|a| a == "--tools"));
        assert_eq!(launched(Preset::CursorAgent, false), None);
    }
}
