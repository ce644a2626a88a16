//! Running the core's echo agent on a thread: in-process beside the
//! server, or as a separate process over the real agent link.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Instant;

use mcp_provider_cli::{EchoAgentPlan, RemoteEcho};
use mcp_provider_core::agent::echo::{EchoAgent, BATCH};
use mcp_provider_core::Output;
use tungstenite::Message;

use crate::shared::Shared;

/// Drives `agent`: provider frames (picked out of `incoming` by `text`)
/// in, due answer frames out through `send` a batch at a time, sleeping
/// until the next paced frame. Between batches it reads what the provider
/// sent, so a `pause` for a slow editor takes effect at once. Ends when
/// `incoming` closes or `send` fails.
fn play<T>(
    mut agent: EchoAgent,
    incoming: &Receiver<T>,
    mut text: impl FnMut(T) -> Option<String>,
    mut send: impl FnMut(Vec<String>) -> bool,
) {
    loop {
        let now = Instant::now();
        let frames: Vec<String> = std::iter::from_fn(|| agent.poll_transmit(now))
            .take(BATCH)
            .collect();
        if !frames.is_empty() && !send(frames) {
            return;
        }
        let message = match agent.poll_timeout() {
            Some(at) => match incoming.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            },
            None => match incoming.recv() {
                Ok(m) => m,
                Err(_) => return,
            },
        };
        if let Some(message) = text(message) {
            agent.handle_message(&message, Instant::now());
        }
    }
}

/// Attaches an echo agent to the provider in memory, on its own thread.
pub fn spawn_in_process(shared: &Shared, plan: &EchoAgentPlan) -> std::io::Result<()> {
    let (attached, mail, backlog) = shared.connect();
    let id = attached.id;
    shared.with(|p, _| p.open_agent(id));
    let agent = EchoAgent::new(&plan.model, "echo-in-process", plan.chunk_delay);
    let reader = shared.clone();
    let text = move |output: Output| {
        reader.written(id, &backlog, output.backlog_bytes());
        match output {
            Output::ToAgent { text, .. } => Some(text),
            _ => None,
        }
    };
    let shared = shared.clone();
    let send = move |frames: Vec<String>| {
        shared.with(|p, now| {
            for frame in &frames {
                p.handle_agent_text(id, frame, now);
            }
        });
        true
    };
    std::thread::Builder::new()
        .name("echo-agent".into())
        .spawn(move || {
            play(agent, &mail, text, send);
            drop(attached);
        })?;
    Ok(())
}

/// Connects to a provider as an external echo agent and serves until the
/// link closes.
pub fn run_remote(remote: &RemoteEcho) -> Result<(), String> {
    let (mut reader, mut writer) = crate::link::dial(&remote.url, &remote.token)?;
    let (tx, rx) = mpsc::channel::<String>();
    let agent = EchoAgent::new(&remote.agent.model, "echo", remote.agent.chunk_delay);
    let player = std::thread::Builder::new()
        .name("echo-agent".into())
        .spawn(move || {
            play(agent, &rx, Some, |frames| {
                frames
                    .into_iter()
                    .all(|frame| writer.send(Message::text(frame)).is_ok())
            })
        })
        .map_err(|e| format!("cannot start the agent thread: {e}"))?;
    let result = loop {
        match reader.read() {
            Ok(Message::Text(text)) => {
                if tx.send(text.as_str().to_owned()).is_err() {
                    break Err("the agent stopped answering".to_owned());
                }
            }
            Ok(Message::Close(_)) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(format!("agent link failed: {e}")),
        }
    };
    drop(tx);
    let _ = player.join();
    result
}
