//! `agent exec` on tokio: the core's exec agent in one task, a task reading
//! the link, and for each run a task reading its stdout (then reaping it)
//! plus one writing its stdin and one reading its stderr. When runs are
//! given the editor's tools, a task accepts their relays' connections, and
//! two per connection read and write it.

use std::path::Path;
use std::process::Stdio;

use mcp_provider_core::agent::exec::link::{LinkId, OUTBOX};
use mcp_provider_core::agent::exec::{Exit, RunId};
use mcp_provider_kit::dial::LinkEnd;
use mcp_provider_kit::exec::{Exec, Queued, RemoteExec, INPUTS};
use mcp_provider_kit::process::{self, Groups, Tail, READ_CHUNK};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc::{self, Receiver, Sender};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::remote::{first_link, next_input, next_link, open_link, Waited, Ws};

/// A relay's connection: its outbox, which its writer empties, the bytes
/// it holds, the writer, and what its reader stops at (when dropped), to end it.
pub struct Relay {
    outbox: Sender<String>,
    queued: Queued,
    writer: JoinHandle<()>,
    _stop: oneshot::Sender<()>,
}

impl mcp_provider_kit::exec::Relay for Relay {
    fn offer(&self, line: String) -> bool {
        self.queued.admit(line.len()) && self.outbox.try_send(line).is_ok()
    }

    fn close(self) {
        self.writer.abort();
    }
}

/// What the agent's task waits for.
type Input = mcp_provider_kit::exec::Input<Relay>;

/// Connects to a provider and runs the plan's command per request. When
/// the link ends, the runs it asked for are killed and the provider is
/// dialed again until it is back (unless `--once`); every run still alive
/// at the end is killed.
pub async fn run_remote(remote: &RemoteExec) -> Result<(), String> {
    let mut ws = first_link(&remote.link).await?;
    let groups = Groups::default();
    groups
        .kill_on_signal()
        .map_err(|e| format!("cannot watch for signals: {e}"))?;
    let (tx, mut rx) = mpsc::channel(INPUTS);
    if let Some(socket) = &remote.tool_socket {
        accept_relays(socket, &tx)?;
    }
    let mut exec = Exec::new(remote);
    let outcome = loop {
        let end = serve_link(remote, &groups, (&tx, &mut rx), &mut exec, ws).await;
        ws = match next_link(&remote.link, end, mcp_provider_kit::say).await {
            Ok(ws) => ws,
            Err(outcome) => break outcome,
        };
    };
    groups.kill_all();
    outcome
}

/// Serves one link until it ends; the agent's runs go on between links.
async fn serve_link(
    remote: &RemoteExec,
    groups: &Groups,
    (tx, rx): (&Sender<Input>, &mut Receiver<Input>),
    exec: &mut Exec<Relay>,
    ws: Ws,
) -> LinkEnd {
    let number = exec.link;
    let (mut sender, _link) = open_link(
        ws,
        tx.clone(),
        move |got| Input::Link(number, got),
        mcp_provider_kit::print_link_notice,
    );
    loop {
        carry_out(remote, groups, tx, exec);
        exec.write_relays();
        sender
            .send_all(std::iter::from_fn(|| exec.agent.poll_transmit()))
            .await;
        let input = match next_input(rx, exec.agent.poll_timeout()).await {
            Waited::Input(input) => Some(input),
            // Unreachable while this task holds a sender.
            Waited::Closed => return LinkEnd::Closed(None),
            Waited::Due => None,
        };
        if let Some(end) = exec.handle(input, remote, groups) {
            carry_out(remote, groups, tx, exec);
            return sender.end(end);
        }
    }
}

/// Starts and kills the runs the agent asks for.
fn carry_out(remote: &RemoteExec, groups: &Groups, tx: &Sender<Input>, exec: &mut Exec<Relay>) {
    process::carry_out(&mut exec.agent, groups, remote, |run, command, stdin| {
        start(groups, tx, run, command, stdin)
    });
}

/// Listens for runs' relays on `socket`: each connection's bytes come in
/// as inputs, after its opening and before its end.
fn accept_relays(socket: &Path, tx: &Sender<Input>) -> Result<(), String> {
    let listener = UnixListener::bind(socket)
        .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    let tx = tx.clone();
    tokio::spawn(async move {
        let mut next = 0;
        while let Ok((stream, _)) = listener.accept().await {
            let id = LinkId(next);
            next += 1;
            let (relay, reader, stop) = open_relay(stream);
            if tx.send(Input::RelayOpened(id, relay)).await.is_err() {
                break;
            }
            tokio::spawn(read_relay(id, reader, stop, tx.clone()));
        }
    });
    Ok(())
}

/// A relay's connection with its writer started (it writes the outbox
/// until either ends), its read half, and what its reader stops at.
fn open_relay(stream: UnixStream) -> (Relay, OwnedReadHalf, oneshot::Receiver<()>) {
    let (outbox, mut lines) = mpsc::channel::<String>(OUTBOX);
    let queued = Queued::default();
    let (reader, mut writer) = stream.into_split();
    let written = queued.clone();
    let writer = tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            if writer.write_all(line.as_bytes()).await.is_err() {
                break;
            }
            written.written(line.len());
        }
    });
    let (stop, stopped) = oneshot::channel();
    let relay = Relay {
        outbox,
        queued,
        writer,
        _stop: stop,
    };
    (relay, reader, stopped)
}

/// Reads a relay's connection until it ends or its [`Relay`] is gone: its
/// bytes, then its end, come in as inputs.
async fn read_relay(
    id: LinkId,
    mut reader: OwnedReadHalf,
    mut stopped: oneshot::Receiver<()>,
    tx: Sender<Input>,
) {
    let mut buf = vec![0; READ_CHUNK];
    loop {
        let n = tokio::select! {
            read = reader.read(&mut buf) => read.unwrap_or(0),
            _ = &mut stopped => return,
        };
        let Some(bytes) = buf.get(..n).filter(|b| !b.is_empty()) else {
            break;
        };
        if tx.send(Input::Relay(id, bytes.to_vec())).await.is_err() {
            return;
        }
    }
    let _ = tx.send(Input::RelayClosed(id)).await;
}

/// Starts one run; its exit comes back as an input.
fn start(
    groups: &Groups,
    tx: &Sender<Input>,
    run: RunId,
    command: std::process::Command,
    stdin: Vec<u8>,
) -> Result<(), String> {
    let mut child = tokio::process::Command::from(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(pid) = child.id() {
        groups.insert(run, pid);
    }
    if let Some(mut pipe) = child.stdin.take() {
        // Its own task: a CLI may print before it has read all of a long
        // prompt, and must not wait on us while we wait on it.
        tokio::spawn(async move {
            let _ = pipe.write_all(&stdin).await;
        });
    }
    let stderr = child.stderr.take().map(|mut err| {
        tokio::spawn(async move {
            let mut tail = Tail::default();
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf).await {
                tail.push(buf.get(..n).unwrap_or_default());
            }
            tail
        })
    });
    let mut stdout = child.stdout.take();
    let (groups, tx) = (groups.clone(), tx.clone());
    tokio::spawn(async move {
        if let Some(out) = stdout.as_mut() {
            let mut buf = vec![0; READ_CHUNK];
            while let Ok(n @ 1..) = out.read(&mut buf).await {
                let bytes = buf.get(..n).unwrap_or_default().to_vec();
                if tx.send(Input::Stdout(run, bytes)).await.is_err() {
                    break;
                }
            }
        }
        drop(stdout);
        let code = child.wait().await.ok().and_then(|s| s.code());
        groups.remove(run);
        let stderr = match stderr {
            Some(task) => task.await.map(|tail| tail.text()).unwrap_or_default(),
            None => String::new(),
        };
        let _ = tx
            .send(Input::Exit(run, Exit::Exited { code, stderr }))
            .await;
    });
    Ok(())
}
