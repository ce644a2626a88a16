//! Starting the bridge's children: a process in a group of its own, with
//! a thread per pipe and one waiting for its exit (its stdout read by the
//! runtime's reactor instead when it has one: [`super::ReadStdout`]).

use std::io::Read;
use std::process::{Child, ChildStdout};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

use mcp_provider_core::bridge::ChildId;
use mcp_provider_core::mcp;
use mcp_provider_core::upstream::Remote;
use mcp_provider_core::{Line, LineBuffer};

use super::children::Running;
use super::Bridged;
use crate::process::child_stdin::Stdin;
use crate::process::{self, wait_unreaped, watchdog, EmptyCommand, PIPE_READ_CHUNK, STDERR_WAIT};

/// The last lines of a child's stderr given in the clients' error when it
/// exits (from its last [`process::Tail`] of bytes).
const STDERR_LINES: usize = 3;

/// Why a child process could not start.
#[derive(Debug, thiserror::Error)]
pub(super) enum SpawnError {
    #[error(transparent)]
    Empty(#[from] EmptyCommand),
    #[error("its working directory `{0}` does not exist")]
    NoDirectory(String),
    #[error("its command `{0}` is not found (not on PATH, or no such file)")]
    NotFound(String),
    #[error("its command `{0}` cannot be run (permission denied)")]
    NotPermitted(String),
    #[error("its command `{program}` could not be run: {source}")]
    NotRun {
        program: String,
        source: std::io::Error,
    },
    #[error("its stdin could not be opened")]
    NoStdin,
    #[error("no thread could be started for it")]
    NoThread,
}

/// A child to start: a process, or a remote server's client.
pub(super) enum Start {
    Process(Vec<String>, Vec<(String, String)>, Option<String>),
    Remote(String, Box<Remote>),
}

impl Bridged {
    /// Tells the bridge how starting `child` as `command` went.
    pub(super) fn spawned(
        self: &Arc<Self>,
        child: ChildId,
        command: &[String],
        started: Result<(), SpawnError>,
    ) {
        match started {
            Ok(()) => self.with(|b, now| b.handle_spawned(child, now)),
            Err(e) => {
                tracing::warn!(
                    "the MCP server `{}` could not start: {e}",
                    command.join(" ")
                );
                let why = e.to_string();
                self.with(|b, now| b.handle_spawn_failed(child, &why, now));
            }
        }
    }

    /// Starts a child in a process group of its own, with a thread per
    /// pipe and one waiting for its exit.
    pub(super) fn spawn(
        self: &Arc<Self>,
        child: ChildId,
        argv: &[String],
        env: &[(String, String)],
        cwd: Option<&str>,
    ) -> Result<(), SpawnError> {
        let mut command = process::command(argv, cwd.map(std::path::Path::new), &[])?;
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let mut process = command.spawn().map_err(|e| start_failure(argv, cwd, e))?;
        let pgid = process.id();
        let (stdin, stdout, stderr) = (
            process.stdin.take(),
            process.stdout.take(),
            process.stderr.take(),
        );
        let stdin = match stdin.map(Stdin::new) {
            Some(Ok(stdin)) => Arc::new(stdin),
            _ => {
                process::kill_group(pgid);
                return Err(SpawnError::NoStdin);
            }
        };
        let writer = stdin.clone();
        watchdog::watch(pgid);
        self.children
            .insert(child, Running::Process { stdin, pgid });
        let name = argv.first().cloned().unwrap_or_default();
        let feed = StdoutFeed {
            bridged: self.clone(),
            child,
            lines: LineBuffer::new(mcp::MAX_LINE),
        };
        let reading = match (stdout, self.read_stdout()) {
            (Some(pipe), Some(read)) => read(pipe, feed),
            (Some(pipe), None) => {
                thread("bridge-stdout", move || read_blocking(pipe, feed)).map(drop)
            }
            (None, _) => Ok(()),
        };
        let (said_tx, said) = std::sync::mpsc::sync_channel(1);
        let threads = [
            Some(thread("bridge-stdin", move || writer.drain())),
            stderr.map(|pipe| thread("bridge-stderr", move || log_stderr(&name, pipe, said_tx))),
        ];
        let me = self.clone();
        let waited = thread("bridge-wait", move || me.wait(child, process, said));
        if reading.is_err()
            || threads
                .iter()
                .flatten()
                .chain([&waited])
                .any(Result::is_err)
        {
            process::kill_group(pgid);
            return Err(SpawnError::NoThread);
        }
        Ok(())
    }

    fn wait(self: Arc<Self>, child: ChildId, mut process: Child, said: Receiver<String>) {
        // Wait for the exit without reaping, so the group id cannot be
        // reused yet: whatever the group leader left behind (the children
        // of an `sh -c`) goes with it.
        wait_unreaped(process.id());
        self.children.exited(child);
        let status = process.wait();
        tracing::info!("an MCP server exited ({status:?})");
        // Its stderr ends with it (the group is gone), unless something
        // outside the group holds the pipe: then it is not waited for.
        let said = said.recv_timeout(STDERR_WAIT).unwrap_or_default();
        self.with(|b, now| b.handle_child_exit(child, &said, now));
    }
}

/// One child's stdout as the bridge takes it: bytes in, whole lines to the
/// bridge, every line of one read under one lock.
pub struct StdoutFeed {
    bridged: Arc<Bridged>,
    child: ChildId,
    lines: LineBuffer,
}

impl StdoutFeed {
    pub fn push(&mut self, bytes: &[u8]) {
        let lines = self.lines.push(bytes);
        let mut texts = lines
            .iter()
            .filter_map(|line| match line {
                Line::Text(text) => Some(text),
                Line::TooLong => {
                    tracing::warn!(
                        "an MCP server printed a line longer than {} bytes: dropped",
                        mcp::MAX_LINE
                    );
                    None
                }
            })
            .peekable();
        if texts.peek().is_some() {
            let child = self.child;
            self.bridged.with(|b, now| {
                for text in texts {
                    b.handle_child_line(child, text, now);
                }
            });
        }
    }
}

/// Reads a child's stdout on a thread of its own, until it ends.
fn read_blocking(mut pipe: ChildStdout, mut feed: StdoutFeed) {
    let mut buf = vec![0u8; PIPE_READ_CHUNK];
    while let Ok(n @ 1..) = pipe.read(&mut buf) {
        feed.push(buf.get(..n).unwrap_or_default());
    }
}

pub(super) fn thread(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f)
}

/// A child's stderr, a line at a time, to the log; at its end, its last
/// lines to `said` (for the clients' error when the child exited).
fn log_stderr(name: &str, mut pipe: impl Read, said: SyncSender<String>) {
    let mut lines = LineBuffer::new(8 * 1024);
    let mut tail = process::Tail::default();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = pipe.read(&mut buf) {
        let bytes = buf.get(..n).unwrap_or_default();
        tail.push(bytes);
        for line in lines.push(bytes) {
            if let Line::Text(text) = line {
                tracing::info!(target: "mcp_server", "{name}: {text}");
            }
        }
    }
    let text = tail.text();
    let last: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = last.len().saturating_sub(STDERR_LINES);
    let _ = said.try_send(last.get(from..).unwrap_or_default().join(" | "));
}

/// Why a child could not start, saying which part failed: a working
/// directory that does not exist reads "No such file or directory" just as
/// a missing program does.
fn start_failure(argv: &[String], cwd: Option<&str>, e: std::io::Error) -> SpawnError {
    if let Some(dir) = cwd.filter(|dir| !std::path::Path::new(dir).is_dir()) {
        return SpawnError::NoDirectory(dir.to_owned());
    }
    let program = argv.first().map_or("", String::as_str).to_owned();
    match e.kind() {
        std::io::ErrorKind::NotFound => SpawnError::NotFound(program),
        std::io::ErrorKind::PermissionDenied => SpawnError::NotPermitted(program),
        _ => SpawnError::NotRun { program, source: e },
    }
}
