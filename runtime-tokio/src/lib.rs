//! MCP Local Provider on the tokio runtime: the `mcp-provider-tokio`
//! binary, and the provider as a library for a tokio application.
//!
//! The driver is the kit's, written once for every async executor
//! (`mcp_provider_kit::driver`), its timers the kit's own; this crate
//! says what tokio's tasks, sockets, pipes and child processes are
//! ([`Tokio`]), and adds the embedding API.
//!
//! To embed the provider, start a [`Provider`] on the application's runtime,
//! answer editors with an [`Agent`] ([`Provider::add_agent`]), and serve a
//! listener with [`Provider::serve_on`]: the provider's own server, with
//! its caps, where a function of the application answers the requests
//! that are its own. An application that accepts connections itself hands
//! the provider its own with [`Provider::serve`]. The crate's
//! `examples/embed.rs` is a whole application. Build with
//! `default-features = false` to leave the command line out.

mod embed;

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{ChildStdout, Command, Stdio};
use std::sync::Arc;

use async_tungstenite::tokio::TokioAdapter;
use mcp_provider_kit::bridge::ReadStdout;
use mcp_provider_kit::driver::launch::Launcher;
use mcp_provider_kit::driver::upstream::Spawn;
use mcp_provider_kit::driver::{child, Child, Executor};
use mcp_provider_kit::outbound::keepalive::keep_alive;
use mcp_provider_kit::RunError;
use tokio::net::unix::pipe;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

pub use embed::{Agent, Config, HttpRequest, HttpResponse, Message, Provider, Reply, Request};

/// The command line's runtime: the kit's driver on tokio.
pub type Runtime = mcp_provider_kit::driver::launch::Async<Tokio>;

/// tokio's tasks, sockets, pipes and child processes; its timers are the
/// kit's timer thread's.
pub struct Tokio;

impl Executor for Tokio {
    type Tcp = TokioAdapter<TcpStream>;
    type TcpListener = TcpListener;
    type Unix = TokioAdapter<UnixStream>;
    type UnixListener = UnixListener;
    type PipeReader = TokioAdapter<pipe::Receiver>;
    type PipeWriter = TokioAdapter<pipe::Sender>;
    type Stdout = TokioAdapter<tokio::io::Stdout>;

    fn spawn(task: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(task);
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        tokio::task::yield_now()
    }

    fn listen(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener)
    }

    async fn accept(listener: &TcpListener) -> io::Result<Self::Tcp> {
        Ok(socket(listener.accept().await?.0))
    }

    async fn connect(host: &str, port: u16) -> io::Result<Self::Tcp> {
        let stream = TcpStream::connect((host, port)).await?;
        keep_alive(&stream)?;
        Ok(socket(stream))
    }

    fn bind_unix(path: &Path) -> io::Result<UnixListener> {
        UnixListener::bind(path)
    }

    async fn accept_unix(listener: &UnixListener) -> io::Result<Self::Unix> {
        Ok(TokioAdapter::new(listener.accept().await?.0))
    }

    /// The child's exit is waited for on a thread of its own rather than
    /// by tokio's process driver, which would look for exited children
    /// each time a worker parks: a cost on every request, for the few
    /// moments a child ends.
    fn spawn_child(mut command: Command) -> io::Result<Child<Self>> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let pid = child.id();
        let pipes = child_pipes(&mut child);
        let (exited, exit) = tokio::sync::oneshot::channel();
        let waiter = std::thread::Builder::new()
            .name("child-exit".into())
            .spawn(move || {
                let _ = exited.send(child.wait().ok().and_then(|s| s.code()));
            });
        if let Err(e) = waiter {
            // The child cannot be waited for: it is not left running.
            mcp_provider_kit::process::kill_group(pid);
            return Err(e);
        }
        let (stdin, stdout, stderr) = pipes?;
        Ok(Child {
            pid,
            stdin,
            stdout,
            stderr,
            exit: Box::pin(async move { exit.await.ok().flatten() }),
        })
    }

    fn pipe(pipe: ChildStdout) -> io::Result<Self::PipeReader> {
        receiver(pipe.into())
    }

    fn stdout() -> Self::Stdout {
        TokioAdapter::new(tokio::io::stdout())
    }
}

impl Launcher for Tokio {
    const NAME: &'static str = "mcp-provider-tokio";
    const RUNTIME: &'static str = "tokio";

    /// A multi-threaded runtime with `threads` workers (0: one per core).
    /// With one, its current-thread scheduler was tried: a tools/call took
    /// 3% fewer instructions, but a hundred streams went 15% slower, the
    /// thread that blocks on `main` no longer sharing the work.
    fn block_on<T>(
        threads: usize,
        main: impl Future<Output = Result<T, RunError>>,
    ) -> Result<T, RunError> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if threads > 0 {
            builder.worker_threads(threads);
        }
        // Its I/O driver only: the timers are the kit's, and a time driver
        // with none set would still be walked at every park.
        builder
            .enable_io()
            .build()
            .map_err(RunError::cannot("start the tokio runtime"))?
            .block_on(main)
    }

    /// Children's stdout are read by tasks on this runtime, reached from
    /// the bridge's threads through its handle.
    fn stdout_reader() -> ReadStdout {
        let handle = tokio::runtime::Handle::current();
        Box::new(move |pipe, feed| {
            let _entered = handle.enter();
            child::read_stdout::<Tokio>(pipe, feed)
        })
    }

    fn spawner() -> Spawn {
        let handle = tokio::runtime::Handle::current();
        Arc::new(move |task| drop(handle.spawn(task)))
    }
}

/// A TCP connection, `TCP_NODELAY` set.
fn socket(stream: TcpStream) -> TokioAdapter<TcpStream> {
    let _ = stream.set_nodelay(true);
    TokioAdapter::new(stream)
}

/// A child's three pipes, taken from it onto tokio's reactor.
fn child_pipes(child: &mut std::process::Child) -> io::Result<ChildPipes> {
    let stdin = child
        .stdin
        .take()
        .map(|p| Ok::<_, io::Error>(TokioAdapter::new(pipe::Sender::from_owned_fd(p.into())?)));
    let stdout = child.stdout.take().map(|p| receiver(p.into()));
    let stderr = child.stderr.take().map(|p| receiver(p.into()));
    Ok((stdin.transpose()?, stdout.transpose()?, stderr.transpose()?))
}

/// A child's stdin, stdout and stderr on tokio's reactor.
type ChildPipes = (
    Option<TokioAdapter<pipe::Sender>>,
    Option<TokioAdapter<pipe::Receiver>>,
    Option<TokioAdapter<pipe::Receiver>>,
);

/// A pipe read on tokio's reactor.
fn receiver(fd: OwnedFd) -> io::Result<TokioAdapter<pipe::Receiver>> {
    Ok(TokioAdapter::new(pipe::Receiver::from_owned_fd(fd)?))
}
