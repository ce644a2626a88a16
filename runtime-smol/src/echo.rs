//! Running the core's echo agent: in-process beside the server, or as a
//! separate process over the real agent link.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use mcp_provider_core::agent::echo::{EchoAgent, Incoming};
use smol::channel::{self, Receiver, Sender};
use smol::stream::StreamExt;

use crate::server::{Shared, ToConn};

/// Plays the echo agent on `incoming` frames; `send` carries each answer
/// frame to the provider. With a delay, each request streams in its own
/// task so slow streams do not queue behind each other, and a `cancel`
/// stops a stream between chunks.
async fn play(
    agent: EchoAgent,
    incoming: Receiver<String>,
    send: impl Fn(Vec<String>) + Clone + Send + 'static,
    delay: Option<Duration>,
) {
    let cancelled: Arc<Mutex<HashSet<String>>> = Arc::default();
    send(vec![agent.register()]);
    while let Ok(text) = incoming.recv().await {
        let mut frames = Vec::new();
        let id = match agent.handle_message(&text, &mut frames) {
            // Only paced answers are still running when a cancel comes.
            Incoming::Cancel(id) if delay.is_some() => {
                cancelled
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id);
                continue;
            }
            Incoming::Cancel(_) => continue,
            Incoming::Invoke(id) => Some(id),
            Incoming::Other => None,
        };
        match delay {
            None => send(frames),
            Some(delay) => {
                let send = send.clone();
                let cancelled = cancelled.clone();
                smol::spawn(async move {
                    for frame in frames {
                        smol::Timer::after(delay).await;
                        if id.as_ref().is_some_and(|id| {
                            cancelled
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .remove(id)
                        }) {
                            return;
                        }
                        send(vec![frame]);
                    }
                })
                .detach();
            }
        }
    }
}

/// Attaches an echo agent to the provider in memory.
pub fn spawn_in_process(shared: &Shared, model: &str, delay: Option<Duration>) {
    let (id, mail) = shared.connect();
    shared.with(|p, _| p.open_agent(id));
    let (tx, rx) = channel::unbounded();
    smol::spawn(async move {
        while let Ok(msg) = mail.recv().await {
            if let ToConn::Agent(text) = msg {
                if tx.send(text).await.is_err() {
                    break;
                }
            }
        }
    })
    .detach();
    let shared2 = shared.clone();
    let send = move |frames: Vec<String>| {
        shared2.with(|p, now| {
            for frame in &frames {
                p.handle_agent_text(id, frame, now);
            }
        })
    };
    smol::spawn(play(
        EchoAgent::new(model, "echo-in-process"),
        rx,
        send,
        delay,
    ))
    .detach();
}

/// Connects to a provider as an external echo agent and serves until the
/// link closes.
pub async fn run_remote(
    url: &str,
    token: &str,
    model: &str,
    delay: Option<Duration>,
) -> Result<(), String> {
    let ws = crate::server::dial(url, token).await?;
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (out_tx, out_rx): (Sender<Vec<String>>, Receiver<Vec<String>>) = channel::unbounded();
    let writer = smol::spawn(async move {
        while let Ok(frames) = out_rx.recv().await {
            for frame in frames {
                if ws_tx.send(Message::text(frame)).await.is_err() {
                    return;
                }
            }
        }
    });
    let (in_tx, in_rx) = channel::unbounded();
    let send = move |frames: Vec<String>| {
        let _ = out_tx.try_send(frames);
    };
    let agent = smol::spawn(play(EchoAgent::new(model, "echo"), in_rx, send, delay));
    let mut result = Ok(());
    while let Some(frame) = ws_rx.next().await {
        match frame {
            Ok(Message::Text(text)) => {
                tracing::debug!("from provider: {}", text.as_str());
                let _ = in_tx.send(text.as_str().to_owned()).await;
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(e) => {
                result = Err(format!("agent link failed: {e}"));
                break;
            }
        }
    }
    drop(agent);
    drop(writer);
    result
}
