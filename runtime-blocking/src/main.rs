//! `mcp-provider-blocking`: MCP Local Provider on blocking sockets and OS
//! threads, with no async runtime: for minimal environments.

mod conn;
mod echo;
mod exec;
mod host;
mod link;
mod now;
mod pool;
mod shared;

use std::process::ExitCode;

use mcp_provider_kit::agent::exec::RemoteExec;
use mcp_provider_kit::{Launch, RemoteEcho, RemoteHost, RunError, Runtime, Terminal};
struct Blocking;

impl Runtime for Blocking {
    const NAME: &'static str = "mcp-provider-blocking";
    const RUNTIME: &'static str = "blocking";
    /// A connection costs a reader thread, and a writer thread once it
    /// needs one (a slow reader, an upgrade, pipelining).
    const DEFAULT_MAX_CONNECTIONS: usize = 2048;
    /// The socket and the writer's copy; an agent link adds its two halves.
    const FILES_PER_CONNECTION: usize = 4;

    fn serve(launch: Launch, ready: &dyn Fn()) -> Result<(), RunError> {
        let limits = launch.limits;
        let shared = shared::start(launch.config, launch.audit)?;
        if let Some(traces) = launch.traces {
            shared.set_traces(traces);
        }
        shared.attach_bridge(launch.bridge, None, None);
        for listener in launch.listeners {
            conn::accept_loop(shared.clone(), listener, limits)
                .map_err(RunError::cannot("start accepting connections"))?;
        }
        if let Some((url, token)) = launch.agent_hub {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("agent-hub".into())
                .spawn(move || link::dial_hub(&shared, &url, &token))
                .map_err(RunError::cannot("start the agent hub thread"))?;
        }
        if let Some(plan) = &launch.echo {
            echo::spawn_in_process(&shared, plan)
                .map_err(RunError::cannot("start the echo agent"))?;
        }
        mcp_provider_kit::serve::shutdown::watch(shared.clone())
            .map_err(RunError::cannot("watch for signals"))?;
        ready();
        // Connections are accepted and served on threads of their own
        // until a signal ends the process.
        loop {
            std::thread::park();
        }
    }

    fn agent_echo(remote: RemoteEcho, terminal: Terminal) -> Result<(), RunError> {
        echo::run_remote(&remote, terminal)
    }

    fn agent_exec(remote: RemoteExec, terminal: Terminal) -> Result<(), RunError> {
        exec::run_remote(&remote, terminal)
    }

    fn agent_mcp(remote: RemoteHost, terminal: Terminal) -> Result<(), RunError> {
        host::run_remote(&remote, terminal)
    }
}

fn main() -> ExitCode {
    mcp_provider_cli::main::<Blocking>()
}
