//! The command line of MCP Local Provider, every runtime's `main` (SPEC
//! §9): flags, settings files, generated secrets and the start-up banner.
//!
//! It must hold nothing a runtime calls while it serves: that is the kit
//! (`mcp-provider-kit`), whose [`Runtime`] a runtime implements — serving
//! on listeners that are already bound, and running the built-in agents
//! against a remote provider — so that its `main` is one call to [`main`].
//! Everything a user types or reads at start-up is therefore the same for
//! every binary. Besides the commands, [`main`] runs the two processes a
//! binary starts of itself: the watchdog of its children's process groups
//! and the relay that carries a CLI's MCP lines to `agent exec`.

mod acp;
mod dial;
mod exec;
mod fds;
mod login;
mod mcp_json;
mod relay;
mod reload;
mod secrets;
mod settings;
mod watchdog;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use mcp_provider_core::http::Limits;
use mcp_provider_kit::exec::{Plan, RemoteExec};
use mcp_provider_kit::oauth::{OAuthCredentials, Store};
use mcp_provider_kit::relay::ToolDir;
use mcp_provider_kit::telemetry::Traces;
use mcp_provider_kit::{
    audit, bridge, ConnLimits, EchoAgentPlan, Launch, RemoteEcho, RemoteHost, Runtime, AGENT_HUB,
    ECHO_AGENT,
};

use settings::sources::{Added, Source};
use settings::Settings;

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
        .is_some_and(|arg| arg == mcp_provider_kit::watchdog::ARG)
    {
        return watchdog::run();
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == mcp_provider_kit::relay::ARG)
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
        Command::Agent {
            agent: AgentCommand::Acp(args),
        } => agent_acp::<R>(&args),
        Command::Login(args) => login::login(args),
        Command::Logout(args) => login::logout(args),
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
    R::agent_exec(RemoteExec {
        link,
        plan: Plan::Exec(plan),
        cwd: args.cwd(),
        pass_env: args.pass_env(),
        tool_socket: tool_dir.as_ref().map(ToolDir::socket),
        run_homes: tool_dir.as_ref().map(ToolDir::homes),
    })
    .map_err(Failure::Runtime)
}

/// `agent acp`: the plan, then the agent kept running (started with the
/// first request).
fn agent_acp<R: Runtime>(args: &acp::AcpArgs) -> Result<(), Failure> {
    let mut plan = args.plan().map_err(Failure::Usage)?;
    let link = args.link.clone().resolve().map_err(Failure::Usage)?;
    let tool_dir = args.tools(&mut plan).map_err(Failure::Usage)?;
    println!(
        "Connecting to {} to serve model `{}` with `{}` over ACP…",
        link.url,
        plan.model,
        plan.command.join(" ")
    );
    R::agent_exec(RemoteExec {
        link,
        plan: Plan::Acp(plan),
        cwd: args.cwd(),
        pass_env: args.pass_env(),
        tool_socket: Some(tool_dir.socket()),
        run_homes: None,
    })
    .map_err(Failure::Runtime)
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
pub(crate) enum Failure {
    Usage(String),
    Runtime(String),
}

/// Serves with `settings`, read from `source` (and read again from it
/// when its files change, or on SIGHUP: see `reload`).
fn serve<R: Runtime>(settings: Settings, source: Source) -> Result<(), Failure> {
    // 36 bytes for the secrets that may be generated, 8 for the id seed,
    // 32 for the core's own secret key, 32 for the bridge's session ids,
    // 8 for the bridge's trace ids.
    let mut random = [0u8; 116];
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
    bridge_seed.copy_from_slice(&random[76..108]);
    let mut trace_seed = [0u8; 8];
    trace_seed.copy_from_slice(&random[108..]);
    let traces = match settings
        .telemetry
        .export()
        .map_err(|e| Failure::Usage(e.to_string()))?
    {
        Some(export) => Some(
            Traces::start(export)
                .map_err(|e| Failure::Runtime(format!("cannot start the trace exporter: {e}")))?,
        ),
        None => None,
    };
    let bridged: Vec<String> = settings
        .bridge
        .all_servers()
        .map(|s| s.name.clone())
        .collect();
    // Always there: servers may be added at run time (`/integrations`).
    let bridge = bridge::Bridged::start_traced(
        settings.bridge.all_servers().map(|s| s.spec()).collect(),
        settings.bridge_limits(),
        bridge_seed,
        traces
            .clone()
            .map(|traces| (traces, u64::from_le_bytes(trace_seed))),
    );
    bridge.set_names(settings.bridge.names());
    bridge.set_tool_search(settings.bridge.tool_search());
    let credentials = OAuthCredentials::new(Store::default_location(), login::servers(&settings));
    bridge.set_credentials(credentials.clone());
    reload::watch(bridge.clone(), credentials, source, settings.clone())
        .map_err(|e| Failure::Runtime(format!("cannot watch the configuration: {e}")))?;
    let echo = settings.echo_agent.then(|| EchoAgentPlan {
        model: "echo".to_owned(),
        chunk_delay: Duration::from_millis(settings.echo_chunk_delay_ms),
    });
    let mut config = settings.core_config(&api_keys, &bridge_token, u64::from_le_bytes(seed));
    config.secret = core_secret;
    config.trace = traces.as_ref().map(|traces| traces.sampler());
    config.trace_content = traces.as_ref().is_some_and(|t| t.captures_content());
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
        traces,
    };
    let banner = || {
        for addr in &bound {
            println!(
                "MCP Local Provider ({} runtime) listening on http://{addr}",
                R::RUNTIME
            );
        }
        // The settings name at least one address; none is known only if
        // no bound listener could tell its own, and then there are no URLs
        // to give.
        if let Some(first) = bound.first() {
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
