//! An executor as the command line runs it: serving on the bound
//! listeners, and the built-in agents against a remote provider. A runtime
//! crate implements [`Launcher`] for its executor, and its binary runs
//! [`Async`] of it.

use std::future::Future;
use std::marker::PhantomData;

use super::upstream::{self, Spawn};
use super::{child, clock, echo, exec, host, server, Executor};
use crate::agent::exec::RemoteExec;
use crate::bridge::ReadStdout;
use crate::{Launch, RemoteEcho, RemoteHost, RunError, Runtime, Terminal};
use std::sync::Arc;

/// An executor that can run the driver to its end.
pub trait Launcher: Executor {
    /// The binary's name, for `--help` and messages.
    const NAME: &'static str;
    /// The executor's name, in the banner.
    const RUNTIME: &'static str;

    /// Runs `main` to its end on `threads` worker threads (0: one per
    /// core).
    fn block_on<T>(
        threads: usize,
        main: impl Future<Output = Result<T, RunError>>,
    ) -> Result<T, RunError>;

    /// How the bridge reads its children's stdout. The bridge calls it
    /// from threads of its own: an executor whose tasks can only be
    /// spawned from within it says how to get there.
    fn stdout_reader() -> ReadStdout {
        Box::new(child::read_stdout::<Self>)
    }

    /// How tasks are spawned from the bridge's threads (the remote
    /// servers' exchanges), as for [`Launcher::stdout_reader`].
    fn spawner() -> Spawn {
        Arc::new(|task| Self::spawn(task))
    }
}

/// The command line's [`Runtime`] on the executor `E`.
pub struct Async<E>(PhantomData<E>);

impl<E: Launcher> Runtime for Async<E> {
    const NAME: &'static str = E::NAME;
    const RUNTIME: &'static str = E::RUNTIME;
    /// A connection costs a task and its buffers: a few KiB.
    const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
    /// A connection is one socket.
    const FILES_PER_CONNECTION: usize = 1;

    fn serve(launch: Launch, ready: &dyn Fn()) -> Result<(), RunError> {
        let threads = launch.threads;
        block_on::<E, _>(threads, async {
            let shared = server::start::<E>(launch.config, launch.audit);
            if let Some(traces) = launch.traces {
                shared.set_traces(traces);
            }
            server::serve::<E>(&shared, launch.listeners, launch.limits)?;
            shared.attach_bridge(
                launch.bridge,
                Some(E::stdout_reader()),
                Some(upstream::carriers::<E>(E::spawner())),
            );
            if let Some((url, token)) = launch.agent_hub {
                E::spawn(server::dial_hub::<E>(shared.clone(), url, token));
            }
            if let Some(plan) = &launch.echo {
                echo::spawn_in_process::<E>(&shared, plan);
            }
            crate::serve::shutdown::watch(shared.clone())
                .map_err(RunError::cannot("watch for signals"))?;
            ready();
            std::future::pending().await
        })
    }

    fn agent_echo(remote: RemoteEcho, terminal: Terminal) -> Result<(), RunError> {
        block_on::<E, _>(1, echo::run_remote::<E>(&remote, terminal))
    }

    fn agent_exec(remote: RemoteExec, terminal: Terminal) -> Result<(), RunError> {
        block_on::<E, _>(1, exec::run_remote::<E>(&remote, terminal))
    }

    fn agent_mcp(remote: RemoteHost, terminal: Terminal) -> Result<(), RunError> {
        block_on::<E, _>(1, host::run_remote::<E>(&remote, terminal))
    }
}

/// Runs `main` on `E`, the kit's timer thread started first: a runtime
/// that cannot keep time fails here, before it serves.
fn block_on<E: Launcher, T>(
    threads: usize,
    main: impl Future<Output = Result<T, RunError>>,
) -> Result<T, RunError> {
    clock::start().map_err(RunError::cannot("start the timer thread"))?;
    E::block_on(threads, main)
}
