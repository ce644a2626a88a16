//! Running the core's echo agent on a thread: in-process beside the
//! server, or as a separate process over the real agent link.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Instant;

use mcp_provider_core::agent::echo::{self, EchoAgent};
use mcp_provider_kit::agent::dial::LinkEnd;
use mcp_provider_kit::serve::in_process::InProcess;
use mcp_provider_kit::{EchoAgentPlan, RemoteEcho, RunError, Terminal};
use tungstenite::{Error as WsError, Message};

use crate::link::{self, first_link, next_link, Ws};
use crate::shared::Shared;

/// What the agent's thread found when it looked for a provider frame.
enum Incoming {
    Frame(String),
    /// Nothing before the agent's next paced frame is due.
    Nothing,
    Closed,
}

/// Waits on `rx` until `until` (or for good).
pub(crate) fn wait<T>(
    rx: &Receiver<T>,
    until: Option<Instant>,
) -> Result<Option<T>, RecvTimeoutError> {
    let got = match until {
        Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
    };
    match got {
        Ok(got) => Ok(Some(got)),
        Err(RecvTimeoutError::Timeout) => Ok(None),
        Err(closed) => Err(closed),
    }
}

/// Drives `agent`: provider frames in (from `incoming`, which waits at
/// most until the time it is given), due answer frames out through `send`
/// a batch at a time. Between batches it reads what the provider sent, so
/// a `pause` for a slow editor takes effect at once. Ends when `incoming`
/// closes or `send` fails.
fn play(
    mut agent: EchoAgent,
    mut incoming: impl FnMut(Option<Instant>) -> Incoming,
    mut send: impl FnMut(Vec<String>) -> bool,
) -> EchoAgent {
    loop {
        let frames = agent.poll_batch(Instant::now());
        if !frames.is_empty() && !send(frames) {
            return agent;
        }
        match incoming(agent.poll_timeout()) {
            Incoming::Frame(frame) => agent.handle_message(&frame, Instant::now()),
            Incoming::Nothing => {}
            Incoming::Closed => return agent,
        }
    }
}

/// Attaches an echo agent to the provider in memory, on its own thread.
pub fn spawn_in_process(shared: &Shared, plan: &EchoAgentPlan) -> std::io::Result<()> {
    let (mut link, to) = InProcess::attach(shared, mcp_provider_kit::ECHO_AGENT);
    let agent = EchoAgent::new(&plan.model, echo::BUILT_IN, plan.chunk_delay);
    let incoming = move |until: Option<Instant>| loop {
        if let Some(frame) = link.next_frame() {
            return Incoming::Frame(frame);
        }
        match wait(link.waiter(), until) {
            Ok(Some(())) => {}
            Ok(None) => return Incoming::Nothing,
            Err(_) => return Incoming::Closed,
        }
    };
    let send = move |frames: Vec<String>| {
        to.send(&frames);
        true
    };
    std::thread::Builder::new()
        .name("echo-agent".into())
        .spawn(move || play(agent, incoming, send))?;
    Ok(())
}

/// Connects to a provider as an external echo agent and serves, dialing
/// again when the link ends until the provider is back (unless `--once`).
pub fn run_remote(remote: &RemoteEcho, terminal: Terminal) -> Result<(), RunError> {
    let mut ws = first_link(&remote.link)?;
    let mut agent = EchoAgent::new(&remote.agent.model, echo::REMOTE, remote.agent.chunk_delay);
    loop {
        let end;
        (agent, end) = serve_link(agent, ws, terminal.notice)?;
        agent.link_lost();
        ws = match next_link(&remote.link, end, terminal.say) {
            Ok(ws) => ws,
            Err(stop) => return Ok(stop.outcome()?),
        };
    }
}

/// Serves one link until it ends; the agent comes back for the next.
fn serve_link(
    agent: EchoAgent,
    (mut reader, mut writer): Ws,
    notice: fn(&str),
) -> Result<(EchoAgent, LinkEnd), RunError> {
    let (tx, rx) = mpsc::channel::<String>();
    let player = std::thread::Builder::new()
        .name("echo-agent".into())
        .spawn(move || {
            let incoming = |until| match wait(&rx, until) {
                Ok(Some(frame)) => Incoming::Frame(frame),
                Ok(None) => Incoming::Nothing,
                Err(_) => Incoming::Closed,
            };
            let mut failed = None;
            let agent = play(agent, incoming, |frames| {
                for frame in frames {
                    if let Err(e) = writer.send(Message::text(frame)) {
                        failed = Some(link::failed(&writer, &e));
                        return false;
                    }
                }
                true
            });
            (agent, failed)
        })
        .map_err(RunError::cannot("start the agent thread"))?;
    let end = loop {
        match reader.read() {
            Ok(Message::Text(text)) => {
                notice(text.as_str());
                if tx.send(text.as_str().to_owned()).is_err() {
                    // The player stopped: it could not write to the link.
                    break LinkEnd::Closed(None);
                }
            }
            Ok(Message::Close(frame)) => break LinkEnd::from_close(frame.as_ref()),
            Ok(_) => {}
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => break LinkEnd::Closed(None),
            Err(e) => break link::failed(&reader, &e),
        }
    };
    drop(tx);
    let (agent, failed) = player
        .join()
        .map_err(|_| RunError::Broken("the echo agent's thread panicked"))?;
    Ok((agent, failed.unwrap_or(end)))
}
