//! `agent exec` on smol: the core's exec agent in one task, a task reading
//! the link, and for each run a task reading its stdout (then reaping it)
//! plus one writing its stdin and one reading its stderr. When runs are
//! given the editor's tools, a task accepts their relays' connections, and
//! one per connection reads it.

use std::collections::HashMap;
use std::net::Shutdown;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use mcp_provider_core::agent::exec::link::{LinkId, LinkOutput};
use mcp_provider_core::agent::exec::{ExecAgent, Exit, RunId};
use mcp_provider_kit::dial::{FromLink, LinkEnd};
use mcp_provider_kit::exec::RemoteExec;
use mcp_provider_kit::process::{self, Groups, Tail, READ_CHUNK};
use mcp_provider_kit::relay;
use smol::channel::{self, Receiver, Sender};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::unix::{UnixListener, UnixStream};

use crate::remote::{first_link, next_input, next_link, open_link, Waited, Ws};

/// What the agent's task waits for.
enum Input {
    /// From the link of this number: a later link's frames are told from
    /// an earlier one's stragglers.
    Link(u64, FromLink),
    Stdout(RunId, Vec<u8>),
    Exit(RunId, Exit),
    /// A relay connected: where its lines are written.
    RelayOpened(LinkId, UnixStream),
    Relay(LinkId, Vec<u8>),
    RelayClosed(LinkId),
}

/// Inputs waiting for the agent: a run's reader waits past this, so a CLI
/// that prints faster than the link takes its output is held back.
const INPUTS: usize = 256;

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
    let (tx, rx) = channel::bounded(INPUTS);
    if let Some(socket) = &remote.tool_socket {
        accept_relays(socket, &tx)?;
    }
    let mut agent = ExecAgent::new(remote.plan.clone(), "exec");
    let mut relays = HashMap::new();
    let mut number = 0;
    let outcome = loop {
        let inputs = (&tx, &rx);
        let end = serve_link(remote, &groups, inputs, &mut agent, &mut relays, ws, number).await;
        ws = match next_link(&remote.link, end, mcp_provider_kit::say).await {
            Ok(ws) => ws,
            Err(outcome) => break outcome,
        };
        number += 1;
    };
    groups.kill_all();
    outcome
}

/// Serves one link until it ends; the agent's runs go on between links.
async fn serve_link(
    remote: &RemoteExec,
    groups: &Groups,
    (tx, rx): (&Sender<Input>, &Receiver<Input>),
    agent: &mut ExecAgent,
    relays: &mut HashMap<LinkId, UnixStream>,
    ws: Ws,
    number: u64,
) -> LinkEnd {
    let (mut sender, _link) = open_link(
        ws,
        tx.clone(),
        move |got| Input::Link(number, got),
        mcp_provider_kit::print_link_notice,
    );
    loop {
        process::carry_out(agent, groups, remote, |run, command, stdin| {
            start(groups, tx, run, command, stdin)
        });
        write_relays(agent, relays).await;
        sender
            .send_all(std::iter::from_fn(|| agent.poll_transmit()))
            .await;
        match next_input(rx, agent.poll_timeout()).await {
            Waited::Input(Input::Link(n, FromLink::Frame(frame))) if n == number => {
                agent.handle_message(&frame, Instant::now())
            }
            Waited::Input(Input::Link(n, FromLink::Closed(end))) if n == number => {
                lost(remote, groups, tx, agent);
                return sender.end(end);
            }
            Waited::Input(Input::Link(..)) => {}
            Waited::Input(Input::Stdout(run, bytes)) => {
                agent.handle_stdout(run, &bytes, Instant::now())
            }
            Waited::Input(Input::RelayOpened(id, stream)) => {
                relays.insert(id, stream);
                // Counted from its opening, not its first bytes: one that
                // never speaks still holds a place under the agent's cap.
                agent.handle_link(id, &[], Instant::now());
            }
            Waited::Input(Input::Relay(id, bytes)) => agent.handle_link(id, &bytes, Instant::now()),
            Waited::Input(Input::RelayClosed(id)) => {
                relays.remove(&id);
                agent.handle_link_closed(id);
            }
            Waited::Input(Input::Exit(run, exit)) => {
                agent.handle_exit(run, exit, Instant::now());
                process::remove_gone_homes(remote, groups);
            }
            // Unreachable while this task holds a sender.
            Waited::Closed => return LinkEnd::Closed(None),
            Waited::Due => agent.handle_timeout(Instant::now()),
        }
    }
}

/// The link is gone: the runs it asked for are killed now, not when (or
/// if) the provider is back.
fn lost(remote: &RemoteExec, groups: &Groups, tx: &Sender<Input>, agent: &mut ExecAgent) {
    agent.link_lost();
    process::carry_out(agent, groups, remote, |run, command, stdin| {
        start(groups, tx, run, command, stdin)
    });
}

/// Listens for runs' relays on `socket`: each connection's bytes come in
/// as inputs, with its end.
fn accept_relays(socket: &Path, tx: &Sender<Input>) -> Result<(), String> {
    let listener = UnixListener::bind(socket)
        .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    let tx = tx.clone();
    smol::spawn(async move {
        let mut next = 0;
        while let Ok((stream, _)) = listener.accept().await {
            let id = LinkId(next);
            next += 1;
            if tx
                .send(Input::RelayOpened(id, stream.clone()))
                .await
                .is_err()
            {
                break;
            }
            let (tx, mut stream) = (tx.clone(), stream);
            smol::spawn(async move {
                let mut buf = vec![0; READ_CHUNK];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    let bytes = buf.get(..n).unwrap_or_default().to_vec();
                    if tx.send(Input::Relay(id, bytes)).await.is_err() {
                        return;
                    }
                }
                let _ = tx.send(Input::RelayClosed(id)).await;
            })
            .detach();
        }
    })
    .detach();
    Ok(())
}

/// Writes what the agent has for relays, and closes those it is done with.
async fn write_relays(agent: &mut ExecAgent, relays: &mut HashMap<LinkId, UnixStream>) {
    while let Some(output) = agent.poll_link() {
        match output {
            LinkOutput::Send(id, mut line) => {
                line.push('\n');
                let Some(stream) = relays.get_mut(&id) else {
                    continue;
                };
                let written = async { stream.write_all(line.as_bytes()).await.is_ok() };
                let too_long = async {
                    smol::Timer::after(relay::WRITE_TIMEOUT).await;
                    false
                };
                if !smol::future::or(written, too_long).await {
                    close_relay(relays, id);
                }
            }
            LinkOutput::Close(id) => close_relay(relays, id),
        }
    }
}

/// Closes a relay's connection: its reader then ends, and the agent hears
/// it closed.
fn close_relay(relays: &mut HashMap<LinkId, UnixStream>, id: LinkId) {
    if let Some(stream) = relays.remove(&id) {
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// Starts one run; its exit comes back as an input.
fn start(
    groups: &Groups,
    tx: &Sender<Input>,
    run: RunId,
    command: std::process::Command,
    stdin: Vec<u8>,
) -> Result<(), String> {
    let mut child = smol::process::Command::from(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    groups.insert(run, child.id());
    if let Some(mut pipe) = child.stdin.take() {
        // Its own task: a CLI may print before it has read all of a long
        // prompt, and must not wait on us while we wait on it.
        smol::spawn(async move {
            let _ = pipe.write_all(&stdin).await;
        })
        .detach();
    }
    let stderr = child.stderr.take().map(|mut err| {
        smol::spawn(async move {
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
    smol::spawn(async move {
        if let Some(out) = stdout.as_mut() {
            let mut buf = vec![0; READ_CHUNK];
            loop {
                match out.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let bytes = buf.get(..n).unwrap_or_default().to_vec();
                        if tx.send(Input::Stdout(run, bytes)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        drop(stdout);
        let code = child.status().await.ok().and_then(|s| s.code());
        groups.remove(run);
        let stderr = match stderr {
            Some(task) => task.await.text(),
            None => String::new(),
        };
        let _ = tx
            .send(Input::Exit(run, Exit::Exited { code, stderr }))
            .await;
    })
    .detach();
    Ok(())
}
