//! `agent acp`'s command line: which ACP agent to keep running, and the
//! limits of its sessions.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use mcp_provider_core::agent::acp::permission::Policy;
use mcp_provider_core::agent::acp::preset::{self, OwnToolsOff, Preset, PRESETS};
use mcp_provider_core::agent::acp::{AcpPlan, EditorTools};

use mcp_provider_kit::agent::relay::{self, ToolDir};

use crate::bad_args::BadArgs;
use crate::exec::find_program;

#[derive(Args)]
pub struct AcpArgs {
    #[command(flatten)]
    pub link: crate::dial::LinkArgs,
    /// A known ACP agent: claude, codex, gemini, qwen, opencode, goose or
    /// cursor-agent. Arguments after `--` are added to its command line.
    #[arg(long, value_parser = PRESETS.iter().map(|p| p.name).collect::<Vec<_>>())]
    preset: Option<String>,
    /// The model name editors ask for (default: the preset's name, else
    /// the command's).
    #[arg(long)]
    model: Option<String>,
    /// The longest one turn may take, waiting for the agent included; past
    /// it the turn is cancelled and the editor gets a timeout error.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// The longest the agent may take to start (answer `initialize`).
    #[arg(long, default_value_t = 60)]
    start_timeout_secs: u64,
    /// Sessions (conversations) kept at once in one agent process; past it
    /// the least recently used idle one is closed.
    #[arg(long, default_value_t = 32)]
    max_sessions: usize,
    /// Agent processes at once: another starts when every session of those
    /// running is busy, and ends once its sessions are gone.
    #[arg(long, default_value_t = 1)]
    max_processes: usize,
    /// How long an idle session is kept.
    #[arg(long, default_value_t = 3600)]
    session_idle_secs: u64,
    /// Requests waiting for the agent or a free session; more are refused
    /// (503, retry).
    #[arg(long, default_value_t = 64)]
    max_queued: usize,
    /// Which of its own tools the agent may run when it asks: never,
    /// read-only (reading and searching), always, or ask (the user allows
    /// or rejects each call on the server's dashboard).
    #[arg(long, default_value = "never", value_parser = ["never", "read-only", "always", "ask"])]
    allow_own_tools: String,
    /// With `--allow-own-tools ask`: how long a question waits for the
    /// user before the call is rejected.
    #[arg(long, default_value_t = 60)]
    ask_timeout_secs: u64,
    /// Do not show the agent's own tool calls and plan as reasoning.
    #[arg(long)]
    hide_tools: bool,
    /// How the editor's tools reach the agent: as its session's MCP server
    /// (mcp), as text in the prompt with calls read back from the answer
    /// (text), or auto: MCP, unless the agent's first session does not list
    /// the tools of the MCP server it is given.
    #[arg(long, default_value = "auto", value_parser = ["auto", "mcp", "text"])]
    editor_tools: String,
    /// How long a turn that called the editor's tools waits for the
    /// editor's results (its next request) before it is ended.
    #[arg(long, default_value_t = 300)]
    tool_wait_secs: u64,
    #[command(flatten)]
    search: crate::exec::SearchArgs,
    /// The agent's working directory, and its sessions'.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// An `MCP_PROVIDER_*` variable the agent gets all the same
    /// (repeatable): by default it gets none.
    #[arg(long, value_name = "NAME")]
    pass_env: Vec<String>,
    /// The command that starts the agent speaking ACP on stdio (with a
    /// preset: extra arguments).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

impl AcpArgs {
    fn preset(&self) -> Option<&'static Preset> {
        self.preset.as_deref().and_then(preset::named)
    }

    /// The plan, or why the arguments do not make one: the agent must be
    /// found now, so a missing one is a usage error naming how to install
    /// it, not a "serving" agent whose every answer fails.
    pub fn plan(&self) -> Result<AcpPlan, BadArgs> {
        let preset = self.preset();
        let policy = match Policy::from_name(&self.allow_own_tools).unwrap_or_default() {
            Policy::Ask { .. } if self.ask_timeout_secs == 0 => {
                return Err(BadArgs::Zero("--ask-timeout-secs"));
            }
            Policy::Ask { .. } => Policy::Ask {
                timeout: Duration::from_secs(self.ask_timeout_secs),
            },
            policy => policy,
        };
        let (command, default_model) = match preset {
            Some(preset) => {
                let mut command: Vec<String> =
                    preset.command.iter().map(|a| (*a).to_owned()).collect();
                if let (OwnToolsOff::Args(args), Policy::Never) = (preset.own_tools_off, policy) {
                    command.extend(args());
                }
                command.extend(self.command.iter().cloned());
                (command, preset.name.to_owned())
            }
            None => {
                let program = self.command.first().ok_or(BadArgs::NoCommand(
                    "agent acp needs --preset NAME or a command after `--`, e.g. `agent acp -- gemini --acp`",
                ))?;
                let name = program.rsplit('/').next().unwrap_or(program).to_owned();
                (self.command.clone(), name)
            }
        };
        if self.timeout_secs == 0 || self.start_timeout_secs == 0 {
            return Err(BadArgs::Zero("--timeout-secs and --start-timeout-secs"));
        }
        if self.max_sessions == 0 || self.max_processes == 0 {
            return Err(BadArgs::Zero("--max-sessions and --max-processes"));
        }
        let cwd = match &self.cwd {
            Some(dir) if !dir.is_dir() => return Err(BadArgs::NoSuchDirectory(dir.clone())),
            Some(dir) => std::path::absolute(dir).map_err(BadArgs::Cwd)?,
            None => std::env::current_dir().map_err(BadArgs::NoWorkingDirectory)?,
        };
        let program = command.first().map(String::as_str).unwrap_or_default();
        if find_program(program, &cwd).is_none() {
            let program = program.to_owned();
            return Err(match preset {
                Some(preset) => BadArgs::NotInstalled {
                    preset: preset.name,
                    program,
                    install: preset.install,
                    or: "",
                },
                None => BadArgs::NotFound { program, on: "" },
            });
        }
        let env = preset
            .map(|p| {
                p.env
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(AcpPlan {
            model: self.model.clone().unwrap_or(default_model),
            command,
            env,
            cwd: cwd.to_string_lossy().into_owned(),
            timeout: Duration::from_secs(self.timeout_secs),
            start_timeout: Duration::from_secs(self.start_timeout_secs),
            max_sessions: self.max_sessions,
            max_processes: self.max_processes,
            idle: Duration::from_secs(self.session_idle_secs),
            max_queued: self.max_queued,
            policy,
            show_tools: !self.hide_tools,
            login: preset.map(|p| p.login.to_owned()),
            tools: None,
            editor_tools: match self.editor_tools.as_str() {
                "mcp" => EditorTools::Mcp,
                "text" => EditorTools::Text,
                _ => EditorTools::Auto,
            },
            shared_servers: preset.is_some_and(|p| p.shared_servers),
            spare_when_idle: preset.is_some_and(|p| p.spare_when_idle),
            own_tools_off: match preset.map(|p| p.own_tools_off) {
                Some(OwnToolsOff::Meta(meta)) => serde_json::from_str(meta).ok(),
                _ => None,
            },
        })
    }

    /// The tool link sessions reach the editor's tools by (set in the
    /// plan), and the directory to keep while it serves.
    pub fn tools(&self, plan: &mut AcpPlan) -> Result<ToolDir, BadArgs> {
        if self.tool_wait_secs == 0 {
            return Err(BadArgs::Zero("--tool-wait-secs"));
        }
        let wait = Duration::from_secs(self.tool_wait_secs);
        let (mut link, dir) =
            relay::prepare(wait, false).map_err(|why| BadArgs::ToolLink(why.to_string()))?;
        link.search = self.search.mode();
        plan.tools = Some(link);
        Ok(dir)
    }

    pub fn cwd(&self) -> Option<PathBuf> {
        self.cwd.clone()
    }

    pub fn pass_env(&self) -> Vec<String> {
        self.pass_env.clone()
    }
}
