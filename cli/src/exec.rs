//! `agent exec`'s command line: which CLI to run per request, and how.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use mcp_provider_core::agent::exec::offer;
use mcp_provider_core::agent::exec::preset::{Format, Preset};
use mcp_provider_core::agent::exec::tool_search::{ToolSearch, DEFAULT_THRESHOLD};
use mcp_provider_core::agent::exec::ExecPlan;
use mcp_provider_kit::agent::relay::{self, ToolDir};

use crate::bad_args::BadArgs;

#[derive(Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub link: crate::dial::LinkArgs,
    /// A known CLI: claude, qwen, gemini, codex or cursor-agent. Its
    /// headless streaming flags are added and its output is parsed;
    /// arguments after `--` are added to its command line.
    #[arg(long, value_parser = Preset::ALL.map(Preset::name))]
    preset: Option<String>,
    /// The model name editors ask for (default: the preset's name, else
    /// the command's).
    #[arg(long)]
    model: Option<String>,
    /// The longest one request may take, waiting for a free slot included;
    /// past it the run is killed and the editor gets a timeout error.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Processes at once.
    #[arg(long, default_value_t = 4)]
    max_running: usize,
    /// Requests waiting for a free slot; more are refused (503, retry).
    #[arg(long, default_value_t = 16)]
    max_queued: usize,
    /// Working directory for the runs (a resumed CLI session is looked
    /// for there too).
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// An `MCP_PROVIDER_*` variable the runs get all the same (repeatable):
    /// by default they get none, the API key and bridge token included.
    #[arg(long, value_name = "NAME")]
    pass_env: Vec<String>,
    /// Conversations remembered so that a chat continuing one resumes the
    /// CLI's own session (claude, qwen, gemini, codex) with only the new
    /// message; 0 renders every chat whole.
    #[arg(long, default_value_t = 256)]
    conversations: usize,
    /// How long a conversation is remembered after its last answer.
    #[arg(long, default_value_t = 3600)]
    conversation_ttl_secs: u64,
    /// How long a run that called the editor's tools waits for the
    /// editor's results (its next request) before it is ended.
    #[arg(long, default_value_t = 300)]
    tool_wait_secs: u64,
    /// Keep the CLI's own tools (shell, file edits…) on beside the
    /// editor's; by default only the editor's tools are offered.
    #[arg(long)]
    cli_tools: bool,
    #[command(flatten)]
    pub search: SearchArgs,
    /// The command (with a preset: extra arguments). `{prompt}` in an
    /// argument is replaced by the prompt; otherwise the prompt goes to
    /// stdin. Without a preset, stdout is the answer, as it is printed.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

impl ExecArgs {
    /// The plan, or why the arguments do not make one.
    pub fn plan(&self) -> Result<ExecPlan, BadArgs> {
        let preset = self.preset.as_deref().and_then(Preset::from_name);
        let (command, format, default_model) = match preset {
            Some(preset) => (
                preset.command(&self.command),
                preset.format(),
                preset.name().to_owned(),
            ),
            None => {
                let program = self.command.first().ok_or(BadArgs::NoCommand(
                    "agent exec needs --preset NAME or a command after `--`, e.g. `agent exec -- cat`",
                ))?;
                let name = program.rsplit('/').next().unwrap_or(program).to_owned();
                (self.command.clone(), Format::Plain, name)
            }
        };
        if self.max_running == 0 {
            return Err(BadArgs::Zero("--max-running"));
        }
        if self.timeout_secs == 0 {
            return Err(BadArgs::Zero("--timeout-secs"));
        }
        Ok(ExecPlan {
            model: self.model.clone().unwrap_or(default_model),
            command,
            format,
            timeout: Duration::from_secs(self.timeout_secs),
            max_running: self.max_running,
            max_queued: self.max_queued,
            resume: preset.and_then(|p| p.resume_command(&self.command)),
            conversations: self.conversations,
            conversation_ttl: Duration::from_secs(self.conversation_ttl_secs),
            preset,
            tools: None,
        })
    }

    /// The tool link for a plan whose CLI can be given the editor's tools
    /// (set in the plan), and the directory to keep while it serves.
    pub fn tools(&self, plan: &mut ExecPlan) -> Result<Option<ToolDir>, BadArgs> {
        if !plan.preset.is_some_and(offer::takes_tools) {
            return Ok(None);
        }
        if self.tool_wait_secs == 0 {
            return Err(BadArgs::Zero("--tool-wait-secs"));
        }
        let wait = Duration::from_secs(self.tool_wait_secs);
        let (mut link, dir) = relay::prepare(wait, self.cli_tools)
            .map_err(|why| BadArgs::ToolLink(why.to_string()))?;
        link.search = self.search.mode();
        plan.tools = Some(link);
        Ok(Some(dir))
    }

    /// Whether the runs can start: the working directory exists and the
    /// program is found (on `PATH` for a bare name, else from the working
    /// directory) and executable. Checked once at start, so a missing CLI
    /// is a usage error naming how to install it rather than a "serving"
    /// agent whose every answer fails; one that disappears later still
    /// fails its request with the reason.
    pub fn check_runnable(&self, plan: &ExecPlan) -> Result<(), BadArgs> {
        let here = match &self.cwd {
            Some(dir) if !dir.is_dir() => return Err(BadArgs::NoSuchDirectory(dir.clone())),
            Some(dir) => dir.clone(),
            None => std::env::current_dir().map_err(BadArgs::NoWorkingDirectory)?,
        };
        let Some(program) = plan.command.first() else {
            return Ok(());
        };
        if find_program(program, &here).is_some() {
            return Ok(());
        }
        let preset = self.preset.as_deref().and_then(Preset::from_name);
        let program = program.clone();
        Err(match preset {
            Some(preset) => BadArgs::NotInstalled {
                preset: preset.name(),
                program,
                install: preset.install(),
                or: ", or pass --preset for a CLI you have",
            },
            None if program.contains('/') => BadArgs::NotExecutable(program),
            None => BadArgs::NotFound {
                program,
                on: " on PATH",
            },
        })
    }

    pub fn cwd(&self) -> Option<PathBuf> {
        self.cwd.clone()
    }

    pub fn pass_env(&self) -> Vec<String> {
        self.pass_env.clone()
    }
}

/// Where `program` would be run from: a name with a `/` is a path (from
/// `dir` when relative), a bare name is looked up on `PATH` as `exec` does.
pub(crate) fn find_program(program: &str, dir: &Path) -> Option<PathBuf> {
    let executable = |path: &Path| {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = dir.join(program);
        return executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| dir.join(d).join(program))
        .find(|p| executable(p))
}

/// How many of the editor's tools an agent is shown whole: `agent exec`'s
/// and `agent acp`'s.
#[derive(Args)]
pub struct SearchArgs {
    /// Offer the editor's tools to the agent behind two tools of the relay,
    /// `search_tools` and `call_tool` (plus those it found), rather than
    /// listed whole: on, off, or auto (when a request has more than
    /// --tool-search-threshold tools).
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    tool_search: String,
    /// With `--tool-search auto`: the most tools listed whole.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    tool_search_threshold: usize,
}

impl SearchArgs {
    pub fn mode(&self) -> ToolSearch {
        match self.tool_search.as_str() {
            "on" => ToolSearch::On,
            "off" => ToolSearch::Off,
            _ => ToolSearch::Above(self.tool_search_threshold),
        }
    }
}
