//! The command line of MCP Local Provider, every runtime's `main` (SPEC
//! §9): flags, settings files, generated secrets, the start-up banner and
//! the terminal an agent process prints on for its user.
//!
//! It must hold nothing a runtime calls while it serves, but for the
//! terminal it hands an agent (a [`Terminal`](mcp_provider_kit::Terminal)):
//! that is the kit
//! (`mcp-provider-kit`), whose [`Runtime`] a runtime implements — serving
//! on listeners that are already bound, and running the built-in agents
//! against a remote provider — so that its `main` is one call to [`main`].
//! Everything a user types or reads at start-up is therefore the same for
//! every binary. Besides the commands, [`main`] runs the two processes a
//! binary starts of itself: the watchdog of its children's process groups
//! and the relay that carries a CLI's MCP lines to `agent exec`.

mod acp;
mod agents;
mod bad_args;
mod banner;
mod dial;
mod exec;
mod failure;
mod fds;
mod login;
mod relay;
mod reload;
mod secrets;
mod serve;
mod settings;
mod terminal;
mod watchdog;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use mcp_provider_kit::Runtime;

use failure::Failure;
use settings::sources::{Added, Source};

#[derive(Parser)]
#[command(
    version,
    about = "Use an agent as a local LLM (OpenAI, Anthropic and Ollama APIs served by agents), and serve stdio MCP servers to network clients"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the OpenAI, Anthropic and Ollama APIs (and the agent link on
    /// /v1/agent), and the MCP bridge for any --server.
    Serve(ServeArgs),
    /// The MCP bridge alone: stdio MCP servers served to network clients at
    /// /mcp/NAME (no built-in echo agent).
    Bridge(ServeArgs),
    /// Run a built-in agent against a provider.
    Agent {
        #[command(subcommand)]
        agent: AgentCommand,
    },
    /// Log in to a remote MCP server that wants OAuth (in a browser), and
    /// keep its tokens for `serve` and `bridge`.
    Login(login::LoginArgs),
    /// Forget a remote MCP server's login.
    Logout(login::LogoutArgs),
}

/// Where the settings come from: the flags `serve`, `bridge`, `login` and
/// `logout` share.
#[derive(clap::Args)]
struct ConfigArgs {
    /// TOML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override any config key: --set requests_per_minute=60
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A stdio MCP server to bridge at /mcp/NAME; COMMAND is split like a
    /// shell would (quotes honoured, no shell run); or a remote one's
    /// URL. Repeat for more.
    #[arg(long = "server", value_name = "NAME=COMMAND|URL")]
    server: Vec<String>,
    /// An `mcpServers` JSON file (Claude Desktop's, Claude Code's
    /// `.mcp.json`, Cursor's or VS Code's `mcp.json`) whose servers to
    /// bridge too. Repeat for more.
    #[arg(long = "mcp-json", value_name = "FILE")]
    mcp_json: Vec<String>,
}

impl ConfigArgs {
    /// The settings' sources: these flags, `more` overrides after them,
    /// and the environment.
    fn source(self, more: Vec<String>) -> Source {
        let mut overrides = self.set;
        overrides.extend(more);
        Source {
            file: self.config,
            env: std::env::vars().collect(),
            overrides,
            added: Added {
                servers: self.server,
                mcp_json: self.mcp_json,
            },
        }
    }
}

/// The flags `serve` and `bridge` share.
#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; repeat for more (default 127.0.0.1:8788).
    #[arg(long)]
    listen: Vec<String>,
    #[command(flatten)]
    sources: ConfigArgs,
    /// Do not start the built-in echo agent.
    #[arg(long)]
    no_echo_agent: bool,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Answer with the last user message, one word per chunk.
    Echo {
        #[command(flatten)]
        link: dial::LinkArgs,
        #[arg(long, default_value = "echo")]
        model: String,
        /// Pause between chunks.
        #[arg(long, default_value_t = 0)]
        chunk_delay_ms: u64,
    },
    /// Run a CLI agent (claude, codex, qwen, gemini, cursor-agent, or any
    /// command) once per request and stream what it prints.
    Exec(exec::ExecArgs),
    /// Keep an agent that speaks the Agent Client Protocol running (claude,
    /// codex, gemini, qwen, opencode… or any command) and answer each
    /// editor conversation in a session of its own.
    Acp(acp::AcpArgs),
    /// A stdio MCP server for an MCP host (Claude Code, Cursor, VS Code…):
    /// the host's agent takes editors' requests with `next_request` and
    /// answers them with `respond`.
    Mcp {
        #[command(flatten)]
        link: dial::LinkArgs,
        #[arg(long, default_value = "mcp")]
        model: String,
        /// Forward each request to the host as `sampling/createMessage`
        /// when the host supports it (session-generation hosts only).
        #[arg(long)]
        sampling: bool,
    },
}

/// Colour in log lines only for a person at a terminal: a log file or
/// journal gets plain text, and `NO_COLOR` (set and not empty) turns it off.
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    std::io::stderr().is_terminal() && !no_color
}

/// The whole program of a runtime's binary.
pub fn main<R: Runtime>() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == mcp_provider_kit::process::watchdog::ARG)
    {
        return watchdog::run();
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == mcp_provider_kit::agent::relay::ARG)
    {
        return relay::run();
    }
    let matches = Cli::command().name(R::NAME).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let outcome = match cli.command {
        Command::Serve(args) => serve_command::<R>(args, false),
        Command::Bridge(args) => serve_command::<R>(args, true),
        Command::Agent {
            agent:
                AgentCommand::Echo {
                    link,
                    model,
                    chunk_delay_ms,
                },
        } => agents::echo::<R>(link, model, chunk_delay_ms),
        Command::Agent {
            agent:
                AgentCommand::Mcp {
                    link,
                    model,
                    sampling,
                },
        } => agents::mcp::<R>(link, model, sampling),
        Command::Agent {
            agent: AgentCommand::Exec(args),
        } => agents::exec::<R>(&args),
        Command::Agent {
            agent: AgentCommand::Acp(args),
        } => agents::acp::<R>(&args),
        Command::Login(args) => login::login(args).map_err(Failure::from),
        Command::Logout(args) => login::logout(args).map_err(Failure::from),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}: {failure}", R::NAME);
            failure.exit_code()
        }
    }
}

/// `serve`, or `bridge` (the same without the echo agent).
fn serve_command<R: Runtime>(args: ServeArgs, bridge_only: bool) -> Result<(), Failure> {
    let ServeArgs {
        listen,
        sources,
        no_echo_agent,
        print_config,
    } = args;
    let mut set = Vec::new();
    if !listen.is_empty() {
        set.push(format!("listen={}", listen.join(",")));
    }
    if no_echo_agent || bridge_only {
        set.push("echo_agent=false".to_owned());
    }
    let source = sources.source(set);
    let settings = source.load()?;
    for note in &settings.bridge.notes {
        tracing::warn!("{note}");
    }
    if print_config {
        print!("{}", settings.masked(R::DEFAULT_MAX_CONNECTIONS));
        return Ok(());
    }
    Ok(serve::serve::<R>(settings, source)?)
}
