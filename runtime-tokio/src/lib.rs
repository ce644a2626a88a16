//! MCP Local Provider on the tokio runtime: the `mcp-provider-tokio`
//! binary, and the provider as a library for a tokio application.
//!
//! The driver only carries bytes and time between tokio's sockets, tasks
//! and timers and the core; every policy (deadlines, caps, backoff,
//! pacing, dispatch) comes from `mcp-provider-core` and `mcp-provider-kit`,
//! and none may be added here.
//!
//! To embed the provider, start a [`Provider`] on the application's runtime,
//! answer editors with an [`Agent`] ([`Provider::add_agent`]), and serve a
//! listener with [`Provider::serve_on`]: the provider's own server, with
//! its caps, where a function of the application answers the requests
//! that are its own. An application that accepts connections itself hands
//! the provider its own with [`Provider::serve`]. The crate's
//! `examples/embed.rs` is a whole application. Build with
//! `default-features = false` to leave the command line out.

mod child;
mod echo;
mod embed;
mod exec;
mod host;
mod remote;
mod server;

pub use embed::{Agent, Config, HttpRequest, HttpResponse, Message, Provider, Reply, Request};

use mcp_provider_kit::exec::RemoteExec;
use mcp_provider_kit::{Launch, RemoteEcho, RemoteHost, Runtime};

/// The tokio runtime, as the command line runs it.
pub struct Tokio;

impl Runtime for Tokio {
    const NAME: &'static str = "mcp-provider-tokio";
    const RUNTIME: &'static str = "tokio";
    /// A connection costs a task and its buffers: a few KiB.
    const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
    /// A connection is one socket.
    const FILES_PER_CONNECTION: usize = 1;

    fn serve(launch: Launch, ready: &dyn Fn()) -> Result<(), String> {
        runtime(launch.threads)?.block_on(async {
            let shared = server::start(launch.config, launch.audit);
            server::serve(&shared, launch.listeners, launch.limits).map_err(|e| e.to_string())?;
            let handle = tokio::runtime::Handle::current();
            launch.bridge.set_stdout_reader(Box::new(move |pipe, feed| {
                child::read_stdout(&handle, pipe, feed)
            }));
            shared.attach_bridge(launch.bridge);
            if let Some((url, token)) = launch.agent_hub {
                tokio::spawn(server::dial_hub(shared.clone(), url, token));
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
        runtime(1)?.block_on(echo::run_remote(&remote))
    }

    fn agent_exec(remote: RemoteExec) -> Result<(), String> {
        runtime(1)?.block_on(exec::run_remote(&remote))
    }

    fn agent_mcp(remote: RemoteHost) -> Result<(), String> {
        runtime(1)?.block_on(host::run_remote(&remote))
    }
}

/// A multi-threaded runtime with `threads` workers (0: one per core).
fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    builder
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))
}
