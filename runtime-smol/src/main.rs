//! `mcp-provider`: MCP Local Provider on smol — the kit's async driver,
//! its tasks (smol's `async-task`) on one queue ([`tasks`]) run by the
//! thread that waits for its sockets and pipes in a reactor of its own
//! ([`reactor`], [`ready`]); smol's reactor resolves and connects, and
//! serves child processes' exits and Unix sockets; timers are the kit's
//! timer thread's.

mod reactor;
mod ready;
mod tasks;

use std::fs::File;
use std::future::Future;
use std::io;
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{ChildStdout, Command, ExitCode, Stdio};
use std::sync::Arc;

use mcp_provider_kit::driver::launch::{Async as AsyncRuntime, Launcher};
use mcp_provider_kit::driver::{Child, Executor};
use mcp_provider_kit::outbound::keepalive::keep_alive;
use mcp_provider_kit::RunError;
use smol::net::unix::{UnixListener, UnixStream};
use smol::{Async, Unblock};

use crate::reactor::Reactor;
use crate::ready::Ready;

/// The task queue, the reactor, smol for the rest.
struct Smol;

impl Executor for Smol {
    type Tcp = Ready<TcpStream>;
    type TcpListener = Ready<std::net::TcpListener>;
    type Unix = UnixStream;
    type UnixListener = UnixListener;
    type PipeReader = Ready<File>;
    type PipeWriter = Ready<File>;
    type Stdout = Unblock<io::Stdout>;

    fn spawn(task: impl Future<Output = ()> + Send + 'static) {
        tasks::spawn(task);
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        smol::future::yield_now()
    }

    fn listen(listener: std::net::TcpListener) -> io::Result<Self::TcpListener> {
        Ready::socket(listener)
    }

    async fn accept(listener: &Self::TcpListener) -> io::Result<Self::Tcp> {
        listener.accept().await
    }

    /// Connected by smol (its resolver and its reactor), then moved onto
    /// the executor thread's reactor.
    async fn connect(host: &str, port: u16) -> io::Result<Self::Tcp> {
        let stream = smol::net::TcpStream::connect((host, port)).await?;
        keep_alive(&stream)?;
        let _ = stream.set_nodelay(true);
        let stream = Arc::<Async<TcpStream>>::from(stream);
        let stream = Arc::into_inner(stream)
            .ok_or_else(|| io::Error::other("the connection is still shared"))?;
        Ready::socket(stream.into_inner()?)
    }

    fn bind_unix(path: &Path) -> io::Result<UnixListener> {
        UnixListener::bind(path)
    }

    async fn accept_unix(listener: &UnixListener) -> io::Result<UnixStream> {
        Ok(listener.accept().await?.0)
    }

    fn spawn_child(command: Command) -> io::Result<Child<Self>> {
        let mut child = smol::process::Command::from(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let pid = child.id();
        let stdin = child.stdin.take().map(owned).transpose()?;
        let stdout = child.stdout.take().map(owned).transpose()?;
        let stderr = child.stderr.take().map(owned).transpose()?;
        let exit = Box::pin(async move { child.status().await.ok().and_then(|s| s.code()) });
        Ok(Child {
            pid,
            stdin,
            stdout,
            stderr,
            exit,
        })
    }

    fn pipe(pipe: ChildStdout) -> io::Result<Ready<File>> {
        self::pipe(pipe.into())
    }

    fn stdout() -> Self::Stdout {
        Unblock::new(io::stdout())
    }
}

impl Launcher for Smol {
    const NAME: &'static str = "mcp-provider";
    const RUNTIME: &'static str = "smol";

    /// The driver runs on this thread, which also waits in the reactor
    /// when no task is ready (so a socket's readiness wakes its task with
    /// no hand-over between threads), and on `threads - 1` more (0: one
    /// per core), which sleep when no task is ready.
    fn block_on<T>(
        threads: usize,
        main: impl Future<Output = Result<T, RunError>>,
    ) -> Result<T, RunError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = if threads == 0 { cores } else { threads };
        let reactor = Reactor::get().map_err(RunError::cannot("start the reactor"))?;
        for n in 1..threads {
            std::thread::Builder::new()
                .name(format!("smol-{n}"))
                .spawn(|| tasks::block_on(std::future::pending::<()>(), None))
                .map_err(RunError::cannot("start an executor thread"))?;
        }
        tasks::block_on(main, Some(reactor))
    }
}

/// A pipe smol started a child with, taken from its reactor for ours.
fn owned(pipe: impl TryInto<OwnedFd, Error = io::Error>) -> io::Result<Ready<File>> {
    self::pipe(pipe.try_into()?)
}

/// A pipe of a child's, as a file the reactor watches.
fn pipe(pipe: OwnedFd) -> io::Result<Ready<File>> {
    Ready::pipe(File::from(pipe))
}

fn main() -> ExitCode {
    mcp_provider_cli::main::<AsyncRuntime<Smol>>()
}
