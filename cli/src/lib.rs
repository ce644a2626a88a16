//! The command line both runtimes share (SPEC §9): flags, settings,
//! generated secrets and the start-up banner.
//!
//! A runtime implements [`Runtime`] — serving on listeners that are already
//! bound, and running the echo agent against a remote provider — and its
//! `main` is one call to [`main`]. Everything a user types or reads at
//! start-up is therefore the same for both binaries.

pub mod admission;
pub mod audit;
pub mod bridge;
pub mod burst;
mod child_stdin;
pub mod dial;
pub mod exec;
mod fds;
pub mod hub;
pub mod link_writes;
pub mod mailbox;
mod mcp_json;
pub mod process;
pub mod relay;
mod reload;
mod run_home;
mod secrets;
mod settings;
pub mod shutdown;
mod watchdog;
pub mod ws;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use mcp_provider_core::http::Limits;
use mcp_provider_core::Config;

use settings::Settings;

/// What a runtime serves with.
pub struct Launch {
    pub config: Config,
    /// Bound and listening; port 0 has been resolved.
    pub listeners: Vec<TcpListener>,
    /// The built-in echo agent to attach in-process, if enabled.
    pub echo: Option<EchoAgentPlan>,
    /// An agent hub to dial out to: (URL, bridge token).
    pub agent_hub: Option<(String, String)>,
    pub limits: ConnLimits,
    /// Threads for an async runtime's tasks; 0: one per core.
    pub threads: usize,
    /// The audit log, when one is configured.
    pub audit: Option<audit::AuditSink>,
    /// The MCP bridge (its servers may be none yet): attach it to the hub.
    pub bridge: std::sync::Arc<bridge::Bridged>,
}

/// Bytes a connection reads from its socket at a time. Requests are small,
/// and the buffer lives as long as the connection: at 10,000 open streams a
/// 16 KiB one was a third of the server's memory.
pub const READ_BUFFER: usize = 4 * 1024;

/// Agent frames a link handles before it wakes the editors they posted to,
/// even while more frames are waiting: bounds the delay a burst adds to
/// the first chunks in it (a frame costs about a microsecond, so well
/// under a millisecond) while letting each editor's writer find a run of
/// chunks to write with one system call.
pub const RING_EVERY: usize = 512;

/// Bytes of agent frames a link reads ahead before it hands them to the
/// provider, under one lock: a burst of frames takes the lock (and reads
/// the clock) once, not once a frame, while what a link holds unhandled,
/// and how long one burst keeps the provider from every other connection,
/// stay small.
pub const BURST_BYTES: usize = 64 * 1024;

/// What `/health/deep` calls the built-in echo agent.
pub const ECHO_AGENT: &str = "echo agent";

/// What `/health/deep` calls the link to a configured `agent_hub`.
pub const AGENT_HUB: &str = "agent hub";

/// Caps every driver applies to editor connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections past this many are answered 503 and closed.
    pub max_connections: usize,
    /// How long an idle connection may take to send a whole request.
    pub read_timeout: Duration,
    /// The core's caps on a request's head and body, for its HTTP reader.
    pub http: Limits,
}

/// The echo agent to run: which model it serves and the pause between
/// its chunks.
#[derive(Debug, Clone)]
pub struct EchoAgentPlan {
    pub model: String,
    pub chunk_delay: Duration,
}

/// An MCP host's agent serving as the model: `mcp-provider agent mcp`.
#[derive(Debug, Clone)]
pub struct RemoteHost {
    pub link: dial::Link,
    pub plan: mcp_provider_core::agent::host::HostPlan,
}

/// The echo agent dialing a provider: `mcp-provider agent echo`.
#[derive(Debug, Clone)]
pub struct RemoteEcho {
    pub link: dial::Link,
    pub agent: EchoAgentPlan,
}

/// A driver of the core: the smol one or the blocking one.
pub trait Runtime {
    /// The binary's name, for `--help` and messages.
    const NAME: &'static str;
    /// What drives the core (`smol`, `blocking`), named in the banner so a
    /// user running both binaries can tell them apart.
    const RUNTIME: &'static str;
    /// Open connections allowed when `max_connections` is not set.
    const DEFAULT_MAX_CONNECTIONS: usize;
    /// Open files one connection holds at most (the connection cap is
    /// kept within the process's limit on open files).
    const FILES_PER_CONNECTION: usize;

    /// Serves until the process ends. `ready` is called once requests are
    /// served (the echo agent, if any, attached); it prints the banner.
    fn serve(launch: Launch, ready: &dyn Fn()) -> Result<(), String>;

    /// Runs the echo agent over a WebSocket until the link closes.
    fn agent_echo(remote: RemoteEcho) -> Result<(), String>;

    /// Runs a CLI agent per request over a WebSocket until the link closes.
    fn agent_exec(remote: exec::RemoteExec) -> Result<(), String>;

    /// Serves an MCP host on stdin/stdout, its agent answering editors'
    /// requests, until the host or the link closes.
    fn agent_mcp(remote: RemoteHost) -> Result<(), String>;
}

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
}

/// The flags `serve` and `bridge` share.
#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; repeat for more (default 127.0.0.1:8788).
    #[arg(long)]
    listen: Vec<String>,
    /// TOML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Do not start the built-in echo agent.
    #[arg(long)]
    no_echo_agent: bool,
    /// Override any config key: --set requests_per_minute=60
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A stdio MCP server to bridge at /mcp/NAME; COMMAND is split like a
    /// shell would (quotes honoured, no shell run). Repeat for more.
    #[arg(long = "server", value_name = "NAME=COMMAND")]
    server: Vec<String>,
    /// An `mcpServers` JSON file (Claude Desktop's, Claude Code's
    /// `.mcp.json`, Cursor's or VS Code's `mcp.json`) whose servers to
    /// bridge too. Repeat for more.
    #[arg(long = "mcp-json", value_name = "FILE")]
    mcp_json: Vec<String>,
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
        .is_some_and(|arg| arg == watchdog::ARG)
    {
        return watchdog::run();
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == relay::ARG)
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
        } => match link.resolve() {
            Ok(link) => {
                println!(
                    "Connecting to {} as an echo agent for model `{model}`…",
                    link.url
                );
                R::agent_echo(RemoteEcho {
                    link,
                    agent: EchoAgentPlan {
                        model,
                        chunk_delay: Duration::from_millis(chunk_delay_ms),
                    },
                })
                .map_err(Failure::Runtime)
            }
            Err(e) => Err(Failure::Usage(e)),
        },
        Command::Agent {
            agent:
                AgentCommand::Mcp {
                    link,
                    model,
                    sampling,
                },
        } => match link.resolve() {
            Ok(link) => {
                // stdout carries the MCP messages: everything else is for stderr.
                eprintln!(
                    "Connecting to {} to serve model `{model}` through this MCP host…",
                    link.url
                );
                R::agent_mcp(RemoteHost {
                    link,
                    plan: mcp_provider_core::agent::host::HostPlan { model, sampling },
                })
                .map_err(Failure::Runtime)
            }
            Err(e) => Err(Failure::Usage(e)),
        },
        Command::Agent {
            agent: AgentCommand::Exec(args),
        } => agent_exec::<R>(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("{}: {e}", R::NAME);
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("{}: {e}", R::NAME);
            ExitCode::FAILURE
        }
    }
}

/// `agent exec`: the plan, the tool link when its CLI can take the
/// editor's tools (its directory kept until the agent ends), then the runs.
fn agent_exec<R: Runtime>(args: &exec::ExecArgs) -> Result<(), Failure> {
    let mut plan = args
        .plan()
        .and_then(|plan| args.check_runnable(&plan).map(|()| plan))
        .map_err(Failure::Usage)?;
    let link = args.link.clone().resolve().map_err(Failure::Usage)?;
    let tool_dir = args.tools(&mut plan).map_err(Failure::Usage)?;
    println!(
        "Connecting to {} to serve model `{}` by running `{}` per request…",
        link.url,
        plan.model,
        plan.command.join(" ")
    );
    R::agent_exec(exec::RemoteExec {
        link,
        plan,
        cwd: args.cwd(),
        pass_env: args.pass_env(),
        tool_socket: tool_dir.as_ref().map(relay::ToolDir::socket),
        run_homes: tool_dir.as_ref().map(relay::ToolDir::homes),
    })
    .map_err(Failure::Runtime)
}

/// `serve`, or `bridge` (the same without the echo agent).
fn serve_command<R: Runtime>(args: ServeArgs, bridge_only: bool) -> Result<(), Failure> {
    let ServeArgs {
        listen,
        config,
        no_echo_agent,
        mut set,
        server,
        mcp_json,
        print_config,
    } = args;
    if !listen.is_empty() {
        set.push(format!("listen={}", listen.join(",")));
    }
    if no_echo_agent || bridge_only {
        set.push("echo_agent=false".to_owned());
    }
    let source = settings::Source {
        file: config,
        env: std::env::vars().collect(),
        overrides: set,
        added: settings::Added {
            servers: server,
            mcp_json,
        },
    };
    let settings = source.load().map_err(|e| Failure::Usage(e.to_string()))?;
    for note in &settings.bridge.notes {
        tracing::warn!("{note}");
    }
    if print_config {
        print!("{}", settings.masked(R::DEFAULT_MAX_CONNECTIONS));
        return Ok(());
    }
    serve::<R>(settings, source)
}

/// Banner lines about generated secrets: the values, where they are kept
/// and how a shell picks them up.
fn secret_notes(filled: &secrets::Filled) -> Vec<String> {
    let how = if filled.new { "generated" } else { "kept" };
    let mut notes = Vec::new();
    if let Some(key) = &filled.api_key {
        notes.push(format!("  API key ({how}):      {key}"));
    }
    if let Some(token) = &filled.bridge_token {
        notes.push(format!("  Bridge token ({how}): {token}"));
    }
    if let (Some(file), false) = (&filled.file, notes.is_empty()) {
        notes.push(format!(
            "  Secrets kept in {}: `. {}` sets {} in a shell",
            file.display(),
            file.display(),
            [
                filled.api_key.as_ref().map(|_| secrets::API_KEY_VAR),
                filled
                    .bridge_token
                    .as_ref()
                    .map(|_| secrets::BRIDGE_TOKEN_VAR),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and ")
        ));
    }
    notes
}

/// What an agent process tells its user about a frame from the provider:
/// that it registered (and whether it waits for approval), session
/// events, errors. Other frames (requests, pings) say nothing.
pub fn link_notice(frame: &str) -> Option<String> {
    // Notices are small; a large frame is a request.
    if frame.len() > 4096 {
        return None;
    }
    let m: serde_json::Value = serde_json::from_str(frame).ok()?;
    let session = m["session_id"].as_str().unwrap_or("?");
    let line = match m["type"].as_str()? {
        "registered" => match m["status"].as_str() {
            Some("active") => format!("Connected: session {session} is active; serving requests (Ctrl-C to stop)."),
            Some("pending") => format!(
                "Connected: session {session} waits for approval (dashboard, or POST /control/approve)."
            ),
            Some(other) => format!("Connected: session {session} is {other}."),
            None => return None,
        },
        "approved" => format!("Session {session} approved: serving requests."),
        "revoked" => format!("Session {session} was revoked."),
        "expired" => format!("Session {session} expired."),
        "error" => format!(
            "The provider says: {}",
            m["error"]["message"].as_str().unwrap_or("an error")
        ),
        _ => return None,
    };
    Some(line)
}

/// Prints a line for the user of an agent process, at once.
pub fn say(line: &str) {
    use std::io::Write;
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// Prints a line for the user of `agent mcp`, whose stdout carries MCP
/// messages.
pub fn say_on_stderr(line: &str) {
    eprintln!("{line}");
}

/// Prints a [`link_notice`] for `frame`, if it has one.
pub fn print_link_notice(frame: &str) {
    if let Some(line) = link_notice(frame) {
        say(&line);
    }
}

/// [`print_link_notice`] for `agent mcp`, whose stdout carries MCP
/// messages.
pub fn print_link_notice_on_stderr(frame: &str) {
    if let Some(line) = link_notice(frame) {
        say_on_stderr(&line);
    }
}

/// Why `addr` cannot be listened on, and what to do about a taken port.
fn cannot_listen(addr: &std::net::SocketAddr, e: &std::io::Error) -> String {
    let mut message = format!("cannot listen on {addr}: {e}");
    if e.kind() == std::io::ErrorKind::AddrInUse {
        message.push_str(&format!(
            ". Another program has port {}: an mcp-provider already running (or Ollama, on 11434)? \
             Stop it, or pass --listen with another address (e.g. --listen 127.0.0.1:8790)",
            addr.port()
        ));
    }
    message
}

/// Why the program stopped: exit code 2 or 1.
enum Failure {
    Usage(String),
    Runtime(String),
}

/// Serves with `settings`, read from `source` (and read again from it
/// when its files change, or on SIGHUP: see `reload`).
fn serve<R: Runtime>(settings: Settings, source: settings::Source) -> Result<(), Failure> {
    // 36 bytes for the secrets that may be generated, 8 for the id seed,
    // 32 for the core's own secret key, 32 for the bridge's session ids.
    let mut random = [0u8; 108];
    getrandom::fill(&mut random)
        .map_err(|e| Failure::Runtime(format!("no OS random source: {e}")))?;
    let mut fresh = [0u8; 36];
    fresh.copy_from_slice(&random[..36]);
    let filled = secrets::fill(
        &settings.secrets_file,
        settings.api_key.is_empty(),
        settings.bridge_token.is_none(),
        &fresh,
    )
    .map_err(Failure::Runtime)?;
    let notes = secret_notes(&filled);
    let api_keys = match &filled.api_key {
        Some(key) => vec![key.clone()],
        None => settings.api_key.clone(),
    };
    let bridge_token = filled
        .bridge_token
        .clone()
        .or_else(|| settings.bridge_token.clone())
        .unwrap_or_default();
    let addrs = settings
        .listen_addrs()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let listeners = addrs
        .iter()
        .map(|addr| TcpListener::bind(addr).map_err(|e| Failure::Runtime(cannot_listen(addr, &e))))
        .collect::<Result<Vec<_>, _>>()?;
    let bound: Vec<String> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&random[36..44]);
    let mut core_secret = [0u8; 32];
    core_secret.copy_from_slice(&random[44..76]);
    let mut bridge_seed = [0u8; 32];
    bridge_seed.copy_from_slice(&random[76..]);
    let bridged: Vec<String> = settings
        .bridge
        .all_servers()
        .map(|s| s.name.clone())
        .collect();
    // Always there: servers may be added at run time (`/integrations`).
    let bridge = bridge::Bridged::start(
        settings.bridge.all_servers().map(|s| s.spec()).collect(),
        settings.bridge.limits(),
        bridge_seed,
    );
    bridge.set_names(settings.bridge.names());
    reload::watch(bridge.clone(), source, settings.clone())
        .map_err(|e| Failure::Runtime(format!("cannot watch the configuration: {e}")))?;
    let echo = settings.echo_agent.then(|| EchoAgentPlan {
        model: "echo".to_owned(),
        chunk_delay: Duration::from_millis(settings.echo_chunk_delay_ms),
    });
    let mut config = settings.core_config(&api_keys, &bridge_token, u64::from_le_bytes(seed));
    config.secret = core_secret;
    let audit = match &settings.audit_log {
        Some(path) => {
            let sink = audit::AuditSink::open(path, settings.audit_log_max_bytes).map_err(|e| {
                Failure::Runtime(format!("cannot open audit log {}: {e}", path.display()))
            })?;
            config.audit = true;
            Some(sink)
        }
        None => None,
    };
    if echo.is_some() {
        config.expected_agents.push(ECHO_AGENT.to_owned());
    }
    if settings.agent_hub.is_some() {
        config.expected_agents.push(AGENT_HUB.to_owned());
    }
    let wanted = settings
        .max_connections
        .unwrap_or(R::DEFAULT_MAX_CONNECTIONS);
    let max_connections = match fds::raise_limit() {
        Some(files) => {
            let fits = fds::connections_within(files, R::FILES_PER_CONNECTION);
            if fits < wanted {
                tracing::warn!(
                    "max_connections lowered from {wanted} to {fits}: the limit on open files is {files}"
                );
            }
            wanted.min(fits).max(1)
        }
        None => wanted,
    };
    let read_timeout = Duration::from_secs(settings.read_timeout_secs.max(1));
    let limits = ConnLimits {
        max_connections,
        read_timeout,
        http: Limits {
            idle_timeout: read_timeout,
            ..config.http
        },
    };
    let launch = Launch {
        config,
        listeners,
        echo,
        agent_hub: settings.agent_hub.clone().map(|url| (url, bridge_token)),
        limits,
        threads: settings.threads,
        audit,
        bridge,
    };
    let banner = || {
        for addr in &bound {
            println!(
                "MCP Local Provider ({} runtime) listening on http://{addr}",
                R::RUNTIME
            );
        }
        let first = &bound[0];
        println!("  OpenAI base URL:  http://{first}/v1");
        println!("  Ollama base URL:  http://{first}");
        println!("  Anthropic base URL: http://{first}");
        println!("  Agent link:       ws://{first}/v1/agent");
        println!(
            "  Dashboard:        http://{first}/ (in a browser; sign in with the bridge token)"
        );
        for name in &bridged {
            println!("  MCP server `{name}`: http://{first}/mcp/{name} (Streamable HTTP; the API key as Bearer)");
        }
        for note in &notes {
            println!("{note}");
        }
        if settings.echo_agent {
            println!("  Model `echo` is served by the built-in echo agent.");
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
    };
    R::serve(launch, &banner).map_err(Failure::Runtime)
}
