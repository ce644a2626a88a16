//! `mcp-provider`: MCP Local Provider on the smol runtime.

mod child;
mod echo;
mod exec;
mod host;
mod ready;
mod remote;
mod server;

use std::process::ExitCode;

use mcp_provider_kit::exec::RemoteExec;
use mcp_provider_kit::{Launch, RemoteEcho, RemoteHost, Runtime};

struct Smol;

impl Runtime for Smol {
    const NAME: &'static str = "mcp-provider";
    const RUNTIME: &'static str = "smol";
    /// A connection costs a task and its buffers: a few KiB.
    const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
    /// A connection is one socket.
    const FILES_PER_CONNECTION: usize = 1;

    fn serve(launch: Launch, ready: &dyn Fn()) -> Result<(), String> {
        set_threads(launch.threads);
        smol::block_on(async {
            let shared =
                server::serve(launch.config, launch.audit, launch.listeners, launch.limits)
                    .map_err(|e| e.to_string())?;
            launch
                .bridge
                .set_stdout_reader(Box::new(child::read_stdout));
            shared.attach_bridge(launch.bridge);
            if let Some((url, token)) = launch.agent_hub {
                smol::spawn(server::dial_hub(shared.clone(), url, token)).detach();
            }
            if let Some(plan) = &launch.echo {
                echo::spawn_in_process(&shared, plan);
            }
            mcp_provider_kit::shutdown::watch(shared.clone())
                .map_err(|e| format!("cannot watch for signals: {e}"))?;
            ready();
            std::future::pending().await
        })
    }

    fn agent_echo(remote: RemoteEcho) -> Result<(), String> {
        smol::block_on(echo::run_remote(&remote))
    }

    fn agent_exec(remote: RemoteExec) -> Result<(), String> {
        smol::block_on(exec::run_remote(&remote))
    }

    fn agent_mcp(remote: RemoteHost) -> Result<(), String> {
        smol::block_on(host::run_remote(&remote))
    }
}

/// smol's executor runs its tasks on `SMOL_THREADS` threads: the `threads`
/// setting (0: one per core) decides, unless the variable is set already.
/// Set before the first task is spawned, while no other thread reads the
/// environment.
fn set_threads(threads: usize) {
    if std::env::var_os("SMOL_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = if threads == 0 { cores } else { threads };
        std::env::set_var("SMOL_THREADS", threads.to_string());
    }
}

fn main() -> ExitCode {
    mcp_provider_cli::main::<Smol>()
}
