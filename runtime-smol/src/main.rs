//! `mcp-provider`: MCP Local Provider on the smol runtime.

mod echo;
mod server;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use settings::Settings;

#[derive(Parser)]
#[command(
    name = "mcp-provider",
    version,
    about = "Use an agent as a local LLM: OpenAI and Ollama APIs served by agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the OpenAI and Ollama APIs (and the agent link on /v1/agent).
    Serve {
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
        /// Print the effective configuration (secrets masked) and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// Run a built-in agent against a provider.
    Agent {
        #[command(subcommand)]
        agent: AgentCommand,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Answer with the last user message, one word per chunk.
    Echo {
        #[arg(long, default_value = "ws://127.0.0.1:8788/v1/agent")]
        url: String,
        /// Bridge token (default: $MCP_PROVIDER_BRIDGE_TOKEN).
        #[arg(long, env = "MCP_PROVIDER_BRIDGE_TOKEN", hide_env_values = true)]
        token: String,
        #[arg(long, default_value = "echo")]
        model: String,
        /// Pause between chunks.
        #[arg(long, default_value_t = 0)]
        chunk_delay_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match cli.command {
        Command::Serve {
            listen,
            config,
            no_echo_agent,
            mut set,
            print_config,
        } => {
            if !listen.is_empty() {
                set.push(format!("listen={}", listen.join(",")));
            }
            if no_echo_agent {
                set.push("echo_agent=false".to_owned());
            }
            match Settings::load(config.as_deref(), std::env::vars(), &set) {
                Ok(settings) if print_config => {
                    print!("{}", settings.masked());
                    ExitCode::SUCCESS
                }
                Ok(settings) => serve(settings),
                Err(e) => {
                    eprintln!("mcp-provider: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Agent {
            agent:
                AgentCommand::Echo {
                    url,
                    token,
                    model,
                    chunk_delay_ms,
                },
        } => {
            let delay = (chunk_delay_ms > 0).then(|| Duration::from_millis(chunk_delay_ms));
            match smol::block_on(echo::run_remote(&url, &token, &model, delay)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mcp-provider: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// A secret for keys not configured, from random bytes.
fn secret(prefix: &str, random: &[u8]) -> String {
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

fn serve(settings: Settings) -> ExitCode {
    // 18 bytes for each generated secret, 8 for the id seed.
    let mut random = [0u8; 44];
    if let Err(e) = getrandom::fill(&mut random) {
        eprintln!("mcp-provider: no OS random source: {e}");
        return ExitCode::FAILURE;
    }
    let mut notes = Vec::new();
    let api_keys = if settings.api_key.is_empty() {
        let key = secret("sk-local-", &random[..18]);
        notes.push(format!("  API key (generated):      {key}"));
        vec![key]
    } else {
        settings.api_key.clone()
    };
    let bridge_token = match &settings.bridge_token {
        Some(t) => t.clone(),
        None => {
            let token = secret("bt-", &random[18..36]);
            notes.push(format!("  Bridge token (generated): {token}"));
            token
        }
    };
    let addrs = match settings.listen_addrs() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mcp-provider: {e}");
            return ExitCode::from(2);
        }
    };
    let listeners = match server::bind(&addrs) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mcp-provider: cannot listen on {:?}: {e}", settings.listen);
            return ExitCode::FAILURE;
        }
    };
    let bound: Vec<String> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&random[36..]);
    let config = settings.core_config(&api_keys, &bridge_token, u64::from_le_bytes(seed));
    smol::block_on(async {
        let shared = match server::serve(config, listeners).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("mcp-provider: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(url) = &settings.agent_hub {
            smol::spawn(server::dial_hub(
                shared.clone(),
                url.clone(),
                bridge_token.clone(),
            ))
            .detach();
        }
        if settings.echo_agent {
            let delay = (settings.echo_chunk_delay_ms > 0)
                .then(|| Duration::from_millis(settings.echo_chunk_delay_ms));
            echo::spawn_in_process(&shared, "echo", delay);
        }
        for addr in &bound {
            println!("MCP Local Provider listening on http://{addr}");
        }
        let first = &bound[0];
        println!("  OpenAI base URL:  http://{first}/v1");
        println!("  Ollama base URL:  http://{first}");
        println!("  Agent link:       ws://{first}/v1/agent");
        for note in &notes {
            println!("{note}");
        }
        if settings.echo_agent {
            println!("  Model `echo` is served by the built-in echo agent.");
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::future::pending::<ExitCode>().await
    })
}
