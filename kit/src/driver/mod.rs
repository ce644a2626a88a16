//! The async driver, written once for every async executor: the server's
//! accept loop and its connections, the agent link, the remote-provider
//! client that `agent echo`, `agent exec` and `agent mcp` dial with, the
//! echo agent, `agent exec`'s runs and tool relays, `agent mcp`'s host,
//! the bridge's children and remote servers, and agents written in an
//! embedding application.
//!
//! Nothing here names an executor. A runtime says how it spawns and
//! yields, and what its sockets, pipes and child processes are, by
//! implementing [`Executor`] (the smol and tokio crates are each that and
//! their `main`); every future here runs on whichever executor polls it.
//! Only with the `async` feature: the blocking runtime has threads, and no
//! async crate in its tree.

pub mod app;
pub mod bell;
pub mod child;
pub mod clock;
pub mod echo;
pub mod exec;
pub mod host;
pub mod launch;
pub mod link;
pub mod remote;
pub mod server;
pub mod upstream;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::path::Path;
use std::pin::Pin;
use std::process::{ChildStdout, Command};
use std::time::Instant;

use futures_lite::io::{AsyncRead, AsyncWrite};

/// A future boxed, for what is made once per child or link.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the driver needs of an executor: tasks, sockets, pipes and child
/// processes (its timers are the kit's own, [`clock`]). Every method is
/// called from within the executor's context (a task, or the future the
/// runtime blocks on).
pub trait Executor: Sized + Send + Sync + 'static {
    /// A TCP connection, `TCP_NODELAY` set.
    type Tcp: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A listening TCP socket.
    type TcpListener: Send + Sync + 'static;
    /// A Unix socket's connection.
    type Unix: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A listening Unix socket.
    type UnixListener: Send + Sync + 'static;
    /// A pipe read: a child's stdout or stderr.
    type PipeReader: AsyncRead + Unpin + Send + 'static;
    /// A pipe written: a child's stdin.
    type PipeWriter: AsyncWrite + Unpin + Send + 'static;
    /// This process's stdout.
    type Stdout: AsyncWrite + Unpin + Send + 'static;

    /// Runs `task` on its own until it ends.
    fn spawn(task: impl Future<Output = ()> + Send + 'static);

    /// Lets the executor's other tasks run, and its I/O be polled, before
    /// this task goes on: each executor has its own way, and a plain
    /// self-wake does not reach the back of every executor's queue.
    fn yield_now() -> impl Future<Output = ()> + Send;

    /// Serves `listener`, bound and listening already.
    fn listen(listener: TcpListener) -> io::Result<Self::TcpListener>;
    /// The next connection `listener` accepts.
    fn accept(listener: &Self::TcpListener) -> impl Future<Output = io::Result<Self::Tcp>> + Send;
    /// Connects to `host`:`port`.
    fn connect(host: &str, port: u16) -> impl Future<Output = io::Result<Self::Tcp>> + Send;

    /// Listens on the Unix socket at `path`.
    fn bind_unix(path: &Path) -> io::Result<Self::UnixListener>;
    /// The next connection `listener` accepts.
    fn accept_unix(
        listener: &Self::UnixListener,
    ) -> impl Future<Output = io::Result<Self::Unix>> + Send;

    /// Starts `command` with its three pipes.
    fn spawn_child(command: Command) -> io::Result<Child<Self>>;
    /// A child's stdout the bridge started, read here.
    fn pipe(pipe: ChildStdout) -> io::Result<Self::PipeReader>;
    /// This process's stdout.
    fn stdout() -> Self::Stdout;
}

/// A child process started by [`Executor::spawn_child`].
pub struct Child<E: Executor> {
    pub pid: u32,
    pub stdin: Option<E::PipeWriter>,
    pub stdout: Option<E::PipeReader>,
    pub stderr: Option<E::PipeReader>,
    /// Resolves to the exit code once the child ended (`None` when a
    /// signal ended it).
    pub exit: BoxFuture<Option<i32>>,
}

/// Runs `task` on its own; the returned future resolves to its output,
/// or to `None` if it never gave one (it panicked).
pub fn spawn_joined<E: Executor, T: Send + 'static>(
    task: impl Future<Output = T> + Send + 'static,
) -> impl Future<Output = Option<T>> + Send {
    let (done, joined) = async_channel::bounded(1);
    E::spawn(async move {
        let _ = done.send(task.await).await;
    });
    async move { joined.recv().await.ok() }
}

/// Resolves at `deadline`, or never without one.
pub async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => {
            clock::Timer::at(at).await;
        }
        None => std::future::pending().await,
    }
}
