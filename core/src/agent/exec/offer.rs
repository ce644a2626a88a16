//! How each CLI is given the editor's tools: the MCP server to start (the
//! relay, see [`super::link`]), its own tools off unless asked, and its
//! wait for a tool's result long enough for the editor's.

use std::time::Duration;

use serde_json::{json, Value};

use super::home::OwnHome;
use super::preset::Preset;
use super::SERVER;

/// What a run with the editor's tools adds to its CLI's start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launch {
    /// Arguments after the program's name.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// A home of the run's own, for a CLI configured only by its settings
    /// file.
    pub home: Option<OwnHome>,
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
    matches!(
        preset,
        Preset::Claude | Preset::Codex | Preset::Qwen | Preset::Gemini
    )
}

/// qwen-code's own tools that `--core-tools` leaves on, and its tool search
/// bridge (`tool_search`, `tool_call`): with the bridge off, MCP tools are
/// sent whole in every request instead of deferred behind it.
pub const QWEN_OFF: [&str; 13] = [
    "agent",
    "enter_worktree",
    "exit_worktree",
    "get_goal",
    "list_agents",
    "record_artifact",
    "report_findings",
    "send_message",
    "skill",
    "task_stop",
    "update_goal",
    "tool_search",
    "tool_call",
];

/// codex's settings that turn its own tools off: the shell (both kinds),
/// sub-agents, goals, image generation and viewing, web search, and its
/// questions to the user. Its three MCP resource tools stay (codex offers
/// them whenever an MCP server is configured, with no setting): they read
/// resources of the configured servers only, here the editor's, which has
/// none.
const CODEX_OFF: [&str; 8] = [
    "features.shell_tool=false",
    "features.unified_exec=false",
    "features.multi_agent=false",
    "features.goals=false",
    "features.image_generation=false",
    "features.view_image=false",
    "web_search=\"disabled\"",
    "tools.experimental_request_user_input.enabled=false",
];

/// A TOML basic string: JSON's string escapes are TOML's.
fn toml_string(text: &str) -> String {
    Value::from(text).to_string()
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
                home: None,
            })
        }
        // `-c mcp_servers={…}` sets the whole table, so the user's own
        // servers are left out; `default_tools_approval_mode = "approve"`
        // runs the server's tools without asking (headless, nobody could
        // answer); `tool_timeout_sec` is codex's wait for a tool's result.
        // The settings go before `exec` (codex's options for every
        // command), so a resumed run gets them too.
        Preset::Codex => {
            let args: Vec<String> = args.iter().map(|a| toml_string(a)).collect();
            let server = format!(
                "mcp_servers={{{SERVER}={{command={},args=[{}],tool_timeout_sec={},default_tools_approval_mode=\"approve\"}}}}",
                toml_string(command),
                args.join(","),
                wait.as_secs(),
            );
            let mut flags = vec!["-c".to_owned(), server];
            if !setup.cli_tools {
                for setting in CODEX_OFF {
                    flags.extend(["-c".to_owned(), setting.to_owned()]);
                }
            }
            Some(Launch {
                args: flags,
                env: Vec::new(),
                home: None,
            })
        }
        // `--mcp-config` takes JSON text; `--allowed-mcp-server-names
        // editor` leaves out the user's own servers; `trust: true` runs the
        // server's tools without a confirmation (none can be answered
        // headless); `timeout` (ms) and QWEN_CODE_MCP_TOOL_IDLE_TIMEOUT_MS
        // are qwen's waits for a tool's result. `--core-tools mcp__editor`
        // registers none of its file, shell and web tools, `--exclude-tools`
        // the rest of its own.
        Preset::Qwen => {
            let config = json!({"mcpServers": {SERVER: {
                "command": command, "args": args, "trust": true,
                "timeout": wait.as_millis() as u64}}});
            let mut flags = vec![
                "--mcp-config".to_owned(),
                config.to_string(),
                "--allowed-mcp-server-names".to_owned(),
                SERVER.to_owned(),
            ];
            if !setup.cli_tools {
                flags.extend(["--core-tools".to_owned(), format!("mcp__{SERVER}")]);
                flags.push("--exclude-tools".to_owned());
                flags.extend(QWEN_OFF.map(str::to_owned));
            }
            Some(Launch {
                args: flags,
                env: vec![(
                    "QWEN_CODE_MCP_TOOL_IDLE_TIMEOUT_MS".to_owned(),
                    wait.as_millis().to_string(),
                )],
                home: None,
            })
        }
        // gemini takes MCP servers from its settings files only, so the run
        // gets a home of its own (GEMINI_CLI_HOME) whose settings are the
        // user's with `mcpServers` replaced by the editor's alone (`trust`
        // runs its tools without a confirmation, none can be answered
        // headless; `timeout` is gemini's wait for a result, in ms), and
        // `--allowed-mcp-server-names editor` leaves out the servers of
        // extensions. `tools.core` lets only the editor's tools be offered
        // (it is an allowlist of tools, MCP ones included): none of
        // gemini's file, shell, web, plan, skill, topic or agent tools.
        // `tmp` (sessions, for resuming) and `history` are the user's.
        Preset::Gemini => {
            let mut overlay = json!({"mcpServers": {SERVER: {
                "command": command, "args": args, "trust": true,
                "timeout": wait.as_millis() as u64}}});
            if !setup.cli_tools {
                overlay["tools"] = json!({"core": [format!("mcp_{SERVER}_*")]});
            }
            Some(Launch {
                args: vec!["--allowed-mcp-server-names".to_owned(), SERVER.to_owned()],
                env: Vec::new(),
                home: Some(OwnHome {
                    var: "GEMINI_CLI_HOME",
                    dir: ".gemini",
                    settings: "settings.json",
                    shared: &["tmp", "history"],
                    overlay,
                    whole: &["mcpServers"],
                }),
            })
        }
        Preset::CursorAgent => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn qwen_gets_only_the_relay_trusted_and_no_tools_of_its_own() {
        let launch = launched(Preset::Qwen, false).unwrap();
        let config: Value = serde_json::from_str(&launch.args[1]).unwrap();
        let editor = &config["mcpServers"]["editor"];
        assert_eq!(editor["command"], "/bin/mcp-provider");
        assert_eq!(
            (&editor["trust"], &editor["timeout"]),
            (&json!(true), &json!(360000))
        );
        assert_eq!(
            launch.args[2..6],
            [
                "--allowed-mcp-server-names",
                "editor",
                "--core-tools",
                "mcp__editor"
            ]
        );
        assert_eq!(launch.args[6], "--exclude-tools");
        assert_eq!(launch.args[7..], QWEN_OFF);
        assert_eq!(launch.env[0].1, "360000");
        let keeping = launched(Preset::Qwen, true).unwrap();
        assert_eq!(keeping.args.len(), 4);
    }

    #[test]
    fn gemini_gets_a_home_whose_settings_hold_only_the_relay_trusted() {
        let launch = launched(Preset::Gemini, false).unwrap();
        assert_eq!(launch.args, ["--allowed-mcp-server-names", "editor"]);
        assert!(launch.env.is_empty());
        let home = launch.home.unwrap();
        assert_eq!((home.var, home.dir), ("GEMINI_CLI_HOME", ".gemini"));
        let user = r#"{"security": {"auth": {"selectedType": "gemini-api-key"}},
            "mcpServers": {"mine": {"command": "x"}}, "tools": {"core": ["shell"]}}"#;
        let settings = home.settings_for(Some(user));
        assert_eq!(
            settings["mcpServers"],
            json!({"editor": {
                "command": "/bin/mcp-provider",
                "args": ["__relay", "/tmp/x/link.sock", "s3cret"],
                "trust": true, "timeout": 360000}})
        );
        assert_eq!(settings["tools"]["core"], json!(["mcp_editor_*"]));
        assert_eq!(
            settings["security"]["auth"]["selectedType"],
            "gemini-api-key"
        );
        let keeping = launched(Preset::Gemini, true).unwrap().home.unwrap();
        assert_eq!(keeping.overlay.get("tools"), None);
        assert_eq!(
            keeping.settings_for(Some(user))["tools"]["core"],
            json!(["shell"])
        );
    }

    #[test]
    fn codex_gets_only_the_relay_as_its_mcp_servers_and_its_tools_off() {
        let launch = launched(Preset::Codex, false).unwrap();
        assert_eq!(launch.args[0], "-c");
        assert_eq!(
            launch.args[1],
            r#"mcp_servers={editor={command="/bin/mcp-provider",args=["__relay","/tmp/x/link.sock","s3cret"],tool_timeout_sec=360,default_tools_approval_mode="approve"}}"#
        );
        assert_eq!(launch.args.len(), 2 + 2 * CODEX_OFF.len());
        assert!(launch.args[2..].chunks(2).all(|pair| pair[0] == "-c"));
        assert!(launch.env.is_empty());
        let keeping = launched(Preset::Codex, true).unwrap();
        assert_eq!(keeping.args.len(), 2);
        assert_eq!(toml_string("a \"b\" \\ c"), r#""a \"b\" \\ c""#);
    }
}
