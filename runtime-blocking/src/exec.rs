//! `agent exec` and `agent acp` on threads: the core's agent on this
//! thread, a thread reading the link, and for each run a thread reading its stdout (then
//! reaping it) plus one writing its stdin and one reading its stderr. When
//! runs are given the editor's tools, a thread accepts their relays'
//! connections, and two per connection read and write it.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{ChildStderr, Command};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Instant;

use mcp_provider_core::agent::exec::link::{LinkId, OUTBOX};
use mcp_provider_core::agent::process::{RunId, Stdin};
use mcp_provider_kit::agent::dial::LinkEnd;
use mcp_provider_kit::agent::exec::{Exec, Outbox, Queued, RemoteExec, DRAIN_POLL, EXEC_INPUTS};
use mcp_provider_kit::process::{wait_unreaped, Groups, NotStarted, Tail, PIPE_READ_CHUNK};
use mcp_provider_kit::serve::accept;
use mcp_provider_kit::{RunError, Terminal};

use crate::echo::wait;
use crate::link::{first_link, next_link, open_link, Ws};

/// A relay's connection or a kept stdin: its outbox, which its writer
/// empties, the bytes it holds, and a connection's stream, to end it (a
/// stdin's writer ends once its outbox is dropped).
pub struct Writer {
    outbox: SyncSender<String>,
    queued: Queued,
    stream: Option<UnixStream>,
}

impl Outbox for Writer {
    fn offer(&self, line: String) -> bool {
        self.queued.admit(line.len()) && self.outbox.try_send(line).is_ok()
    }

    fn close(self) {
        if let Some(stream) = &self.stream {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn queued(&self) -> &Queued {
        &self.queued
    }
}

/// What the agent's thread waits for.
type Input = mcp_provider_kit::agent::exec::Input<Writer>;

/// Connects to a provider and runs the plan's command per request. When
/// the link ends, the runs it asked for are killed and the provider is
/// dialed again until it is back (unless `--once`); every run still alive
/// at the end is killed.
pub fn run_remote(remote: &RemoteExec, terminal: Terminal) -> Result<(), RunError> {
    let mut ws = first_link(&remote.link)?;
    let groups = Groups::default();
    groups
        .kill_on_signal()
        .map_err(RunError::cannot("watch for signals"))?;
    let (tx, rx) = mpsc::sync_channel(EXEC_INPUTS);
    if let Some(socket) = &remote.tool_socket {
        accept_relays(socket, &tx)?;
    }
    let mut exec = Exec::new(remote);
    let outcome = loop {
        let end = match serve_link(remote, &groups, (&tx, &rx), &mut exec, ws, terminal.notice) {
            Ok(end) => end,
            Err(e) => break Err(e),
        };
        ws = match next_link(&remote.link, end, terminal.say) {
            Ok(ws) => ws,
            Err(stop) => break stop.outcome().map_err(RunError::from),
        };
    };
    groups.kill_all();
    outcome
}

/// Serves one link until it ends; the agent's runs go on between links.
fn serve_link(
    remote: &RemoteExec,
    groups: &Groups,
    (tx, rx): (&SyncSender<Input>, &Receiver<Input>),
    exec: &mut Exec<Writer>,
    ws: Ws,
    notice: fn(&str),
) -> Result<LinkEnd, RunError> {
    let number = exec.link;
    let mut sender = open_link(ws, tx.clone(), move |got| Input::Link(number, got), notice)?;
    let start = |run, command, stdin| start(groups, tx, run, command, stdin);
    loop {
        exec.prepare(remote, groups, start);
        sender.send_all(std::iter::from_fn(|| exec.agent.poll_transmit()));
        let input = match wait(rx, exec.poll_timeout()) {
            Ok(input) => input,
            // Unreachable while this thread holds a sender.
            Err(_) => return Ok(LinkEnd::Closed(None)),
        };
        if let Some(end) = exec.handle(input, remote, groups) {
            exec.prepare(remote, groups, start);
            return Ok(sender.end(end));
        }
    }
}

/// Listens for runs' relays on `socket`: each connection's bytes come in
/// as inputs, after its opening and before its end. A failed accept is
/// waited out (see [`accept`]), neither spun on nor the listener's end.
fn accept_relays(socket: &Path, tx: &SyncSender<Input>) -> Result<(), RunError> {
    let listener = UnixListener::bind(socket)
        .map_err(RunError::cannot(format!("listen on {}", socket.display())))?;
    let tx = tx.clone();
    let accept = move || {
        let mut failures = accept::Failures::default();
        for (next, stream) in (0..).zip(listener.incoming()) {
            let id = LinkId(next);
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) => {
                    std::thread::sleep(failures.failed(&e, Instant::now()));
                    continue;
                }
            };
            let Some((relay, reader)) = open_relay(stream) else {
                continue;
            };
            if tx.send(Input::RelayOpened(id, relay)).is_err() {
                return;
            }
            let tx = tx.clone();
            let _ = std::thread::Builder::new()
                .name("exec-relay-in".into())
                .spawn(move || read_relay(id, reader, &tx));
        }
    };
    std::thread::Builder::new()
        .name("exec-relays".into())
        .spawn(accept)
        .map_err(RunError::cannot("start a thread"))?;
    Ok(())
}

/// A relay's connection with its writer started (it writes the outbox
/// until either ends), and the stream to read; `None` (the connection
/// dropped) when the writer could not start.
fn open_relay(stream: UnixStream) -> Option<(Writer, UnixStream)> {
    let writer = stream.try_clone().ok()?;
    let mut relay = open_outbox(writer, "exec-relay-out", |w| {
        let _ = w.shutdown(Shutdown::Both);
    })?;
    relay.stream = Some(stream.try_clone().ok()?);
    Some((relay, stream))
}

/// An outbox with a thread writing it to `writer` until either ends, then
/// calling `end` on it; `None` when the thread could not start.
fn open_outbox<W: Write + Send + 'static>(
    mut writer: W,
    name: &str,
    end: impl FnOnce(&mut W) + Send + 'static,
) -> Option<Writer> {
    let (outbox, lines) = mpsc::sync_channel::<String>(OUTBOX);
    let queued = Queued::default();
    let written = queued.clone();
    let write = move || {
        let _writing = written.writing();
        for line in lines {
            if writer.write_all(line.as_bytes()).is_err() {
                break;
            }
            written.written(line.len());
        }
        end(&mut writer);
    };
    std::thread::Builder::new()
        .name(name.into())
        .spawn(write)
        .ok()?;
    Some(Writer {
        outbox,
        queued,
        stream: None,
    })
}

/// Reads a relay's connection: its bytes, then its end, come in as inputs.
fn read_relay(id: LinkId, mut stream: UnixStream, tx: &SyncSender<Input>) {
    let mut buf = vec![0; PIPE_READ_CHUNK];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        let bytes = buf.get(..n).unwrap_or_default().to_vec();
        if tx.send(Input::Relay(id, bytes)).is_err() {
            return;
        }
    }
    let _ = tx.send(Input::RelayClosed(id));
}

/// Starts one run, and gives back its stdin when kept open; its exit
/// comes back as an input.
fn start(
    groups: &Groups,
    tx: &SyncSender<Input>,
    run: RunId,
    mut command: Command,
    stdin: Stdin,
) -> Result<Option<Writer>, NotStarted> {
    let mut child = command.spawn()?;
    groups.insert(run, child.id());
    let kept = match (child.stdin.take(), stdin) {
        (Some(pipe), Stdin::Open) => open_outbox(pipe, "exec-stdin", |_| {}),
        (Some(mut pipe), Stdin::Once(bytes)) => {
            // Its own thread: a CLI may print before it has read all of a
            // long prompt, and must not wait on us while we wait on it.
            let _ = std::thread::Builder::new()
                .name("exec-stdin".into())
                .spawn(move || {
                    let _ = pipe.write_all(&bytes);
                });
            None
        }
        (None, _) => None,
    };
    let stderr = child.stderr.take().and_then(read_tail);
    let mut stdout = child.stdout.take();
    let (run_groups, run_tx) = (groups.clone(), tx.clone());
    let stdin_held = kept.as_ref().map(|w| w.queued.clone());
    let reader = std::thread::Builder::new()
        .name("exec-run".into())
        .spawn(move || {
            if let Some(out) = stdout.as_mut() {
                let mut buf = vec![0; PIPE_READ_CHUNK];
                loop {
                    // While its stdin is full, it is not read: it waits
                    // for the process to read what it was sent.
                    if stdin_held.as_ref().is_some_and(Queued::full) {
                        while !stdin_held.as_ref().is_none_or(Queued::drained) {
                            std::thread::sleep(DRAIN_POLL);
                        }
                    }
                    match out.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let bytes = buf.get(..n).unwrap_or_default().to_vec();
                            if run_tx.send(Input::Stdout(run, bytes)).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            drop(stdout);
            // Its group is killed before the leader is reaped, while its
            // id cannot have been taken by another process.
            wait_unreaped(child.id());
            let ended = run_groups.ended(run, Instant::now());
            let code = child.wait().ok().and_then(|s| s.code());
            let stderr = stderr.and_then(|tail| {
                let left = ended.stderr_by().saturating_duration_since(Instant::now());
                tail.recv_timeout(left).ok()
            });
            let _ = run_tx.send(Input::ended(ended, code, stderr));
        });
    if let Err(e) = reader {
        // The child went with the closure, unreaped: at least stop it.
        groups.kill(run);
        groups.remove(run);
        return Err(NotStarted::NoThread(e));
    }
    Ok(kept)
}

/// Reads a run's stderr to its end on a thread, keeping the last of it:
/// what it kept comes on the channel then, which the run's exit waits on
/// for a while only (see [`mcp_provider_kit::process::Ended`]).
fn read_tail(mut stderr: ChildStderr) -> Option<Receiver<Tail>> {
    let (done, tail) = mpsc::sync_channel(1);
    let read = move || {
        let mut tail = Tail::default();
        let mut buf = [0; 4096];
        while let Ok(n @ 1..) = stderr.read(&mut buf) {
            tail.push(buf.get(..n).unwrap_or_default());
        }
        let _ = done.send(tail);
    };
    std::thread::Builder::new()
        .name("exec-stderr".into())
        .spawn(read)
        .ok()?;
    Some(tail)
}
