//! `agent exec` and `agent acp`: the core's agent in one task (what each
//! input does is [`crate::agent::exec`]'s), a task reading the link, and for each
//! run a task reading its stdout (then reaping it) plus one writing its
//! stdin and one reading its stderr. When runs are given the editor's
//! tools, a task accepts their relays' connections, and two per connection
//! read and write it.

use std::path::Path;
use std::time::Instant;

use async_channel::{Receiver, Sender};
use futures_lite::future::FutureExt;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use mcp_provider_core::agent::exec::link::{LinkId, OUTBOX};
use mcp_provider_core::agent::process::{RunId, Stdin};

use super::clock::sleep;
use super::remote::{first_link, next_input, next_link, open_link, Waited, Ws};
use super::{spawn_joined, until, Executor};
use crate::agent::dial::LinkEnd;
use crate::agent::exec::{Exec, Outbox, Queued, RemoteExec, DRAIN_POLL, EXEC_INPUTS};
use crate::process::{Groups, NotStarted, Tail, PIPE_READ_CHUNK};
use crate::serve::accept;
use crate::{RunError, Terminal};

/// A relay's connection or a kept stdin: its outbox, which its writer
/// empties, the bytes it holds, and what its writer (and a connection's
/// reader) stop at (when dropped).
pub struct Writer {
    outbox: Sender<String>,
    queued: Queued,
    _stop: Sender<()>,
}

impl Outbox for Writer {
    fn offer(&self, line: String) -> bool {
        self.queued.admit(line.len()) && self.outbox.try_send(line).is_ok()
    }

    fn close(self) {
        // Dropped here: its stop channel closes, and its reader and writer
        // end at once, whatever they wait on.
    }

    fn queued(&self) -> &Queued {
        &self.queued
    }
}

/// What the agent's task waits for.
type Input = crate::agent::exec::Input<Writer>;

/// Connects to a provider and runs the plan's command per request. When
/// the link ends, the runs it asked for are killed and the provider is
/// dialed again until it is back (unless `--once`); every run still alive
/// at the end is killed.
pub async fn run_remote<E: Executor>(
    remote: &RemoteExec,
    terminal: Terminal,
) -> Result<(), RunError> {
    let mut ws = first_link::<E>(&remote.link).await?;
    let groups = Groups::default();
    groups
        .kill_on_signal()
        .map_err(RunError::cannot("watch for signals"))?;
    let (tx, rx) = async_channel::bounded(EXEC_INPUTS);
    if let Some(socket) = &remote.tool_socket {
        accept_relays::<E>(socket, &tx)?;
    }
    let mut exec = Exec::new(remote);
    let outcome = loop {
        let end =
            serve_link::<E>(remote, &groups, (&tx, &rx), &mut exec, ws, terminal.notice).await;
        ws = match next_link::<E>(&remote.link, end, terminal.say).await {
            Ok(ws) => ws,
            Err(stop) => break stop.outcome().map_err(RunError::from),
        };
    };
    groups.kill_all();
    outcome
}

/// Serves one link until it ends; the agent's runs go on between links.
async fn serve_link<E: Executor>(
    remote: &RemoteExec,
    groups: &Groups,
    (tx, rx): (&Sender<Input>, &Receiver<Input>),
    exec: &mut Exec<Writer>,
    ws: Ws<E>,
    notice: fn(&str),
) -> LinkEnd {
    let number = exec.link;
    let (mut sender, _link) =
        open_link::<E, _>(ws, tx.clone(), move |got| Input::Link(number, got), notice);
    let start = |run, command, stdin| start::<E>(groups, tx, run, command, stdin);
    loop {
        exec.prepare(remote, groups, start);
        sender
            .send_all(std::iter::from_fn(|| exec.agent.poll_transmit()))
            .await;
        let input = match next_input::<E, _>(rx, exec.poll_timeout()).await {
            Waited::Input(input) => Some(input),
            // Unreachable while this task holds a sender.
            Waited::Closed => return LinkEnd::Closed(None),
            Waited::Due => None,
        };
        if let Some(end) = exec.handle(input, remote, groups) {
            exec.prepare(remote, groups, start);
            return sender.end(end);
        }
    }
}

/// Listens for runs' relays on `socket`: each connection's bytes come in
/// as inputs, after its opening and before its end. A failed accept is
/// waited out (see [`accept`]): later runs still reach the editor's tools.
fn accept_relays<E: Executor>(socket: &Path, tx: &Sender<Input>) -> Result<(), RunError> {
    let listener = E::bind_unix(socket)
        .map_err(RunError::cannot(format!("listen on {}", socket.display())))?;
    let tx = tx.clone();
    E::spawn(async move {
        let mut next = 0;
        let mut failures = accept::Failures::default();
        loop {
            let accepted = || E::accept_unix(&listener);
            let stream = accept::next(accepted, sleep, &mut failures).await;
            let id = LinkId(next);
            next += 1;
            let (reader, writer) = futures_lite::io::split(stream);
            let (relay, stopped) = open_outbox::<E>(writer);
            if tx.send(Input::RelayOpened(id, relay)).await.is_err() {
                break;
            }
            E::spawn(read_relay(id, reader, stopped, tx.clone()));
        }
    });
    Ok(())
}

/// An outbox with its writer started: it writes the outbox to `writer`
/// until either ends, or the outbox is closed; what a reader of the same
/// connection stops at comes with it.
fn open_outbox<E: Executor>(
    mut writer: impl AsyncWrite + Unpin + Send + 'static,
) -> (Writer, Receiver<()>) {
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let stop_writing = stopped.clone();
    let (outbox, lines) = async_channel::bounded::<String>(OUTBOX);
    let queued = Queued::default();
    let written = queued.clone();
    let write = async move {
        let _writing = written.writing();
        while let Ok(line) = lines.recv().await {
            if writer.write_all(line.as_bytes()).await.is_err() {
                break;
            }
            written.written(line.len());
        }
        let _ = writer.close().await;
    };
    E::spawn(write.or(async move {
        let _ = stop_writing.recv().await;
    }));
    let outbox = Writer {
        outbox,
        queued,
        _stop: stop,
    };
    (outbox, stopped)
}

/// Reads a relay's connection until it ends or its [`Writer`] is gone: its
/// bytes, then its end, come in as inputs.
async fn read_relay(
    id: LinkId,
    mut reader: impl AsyncRead + Unpin,
    stopped: Receiver<()>,
    tx: Sender<Input>,
) {
    let mut buf = vec![0; PIPE_READ_CHUNK];
    let read = async {
        while let Ok(n @ 1..) = reader.read(&mut buf).await {
            let bytes = buf.get(..n).unwrap_or_default().to_vec();
            if tx.send(Input::Relay(id, bytes)).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Input::RelayClosed(id)).await;
    };
    read.or(async {
        let _ = stopped.recv().await;
    })
    .await;
}

/// Starts one run, and gives back its stdin when kept open; its exit
/// comes back as an input.
fn start<E: Executor>(
    groups: &Groups,
    tx: &Sender<Input>,
    run: RunId,
    command: std::process::Command,
    stdin: Stdin,
) -> Result<Option<Writer>, NotStarted> {
    let child = E::spawn_child(command)?;
    groups.insert(run, child.pid);
    let kept = match (child.stdin, stdin) {
        (Some(pipe), Stdin::Open) => Some(open_outbox::<E>(pipe).0),
        (Some(mut pipe), Stdin::Once(bytes)) => {
            // Its own task: a CLI may print before it has read all of a
            // long prompt, and must not wait on us while we wait on it.
            E::spawn(async move {
                let _ = pipe.write_all(&bytes).await;
            });
            None
        }
        (None, _) => None,
    };
    let stderr = child.stderr.map(|mut err| {
        spawn_joined::<E, _>(async move {
            let mut tail = Tail::default();
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf).await {
                tail.push(buf.get(..n).unwrap_or_default());
            }
            tail
        })
    });
    let (mut stdout, exit) = (child.stdout, child.exit);
    let (groups, tx) = (groups.clone(), tx.clone());
    let stdin_held = kept.as_ref().map(|w| w.queued.clone());
    E::spawn(async move {
        if let Some(out) = stdout.as_mut() {
            let mut buf = vec![0; PIPE_READ_CHUNK];
            loop {
                // While its stdin is full, it is not read: it waits for
                // the process to read what it was sent.
                if stdin_held.as_ref().is_some_and(Queued::full) {
                    while !stdin_held.as_ref().is_none_or(Queued::drained) {
                        sleep(DRAIN_POLL).await;
                    }
                }
                let Ok(n @ 1..) = out.read(&mut buf).await else {
                    break;
                };
                let bytes = buf.get(..n).unwrap_or_default().to_vec();
                if tx.send(Input::Stdout(run, bytes)).await.is_err() {
                    break;
                }
            }
        }
        drop(stdout);
        // The executor reaps the leader as it reports the exit, so its
        // group is killed just after: its pid stays taken while the group
        // has members, and a kill that finds none does nothing.
        let code = exit.await;
        let ended = groups.ended(run, Instant::now());
        let stderr = match stderr {
            Some(task) => {
                let late = async {
                    until(Some(ended.stderr_by())).await;
                    None
                };
                task.or(late).await
            }
            None => None,
        };
        let _ = tx.send(Input::ended(ended, code, stderr)).await;
    });
    Ok(kept)
}
