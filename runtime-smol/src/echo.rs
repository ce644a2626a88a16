//! Running the core's echo agent: in-process beside the server, or as a
//! separate process over the real agent link.

use std::time::Instant;

use async_tungstenite::tungstenite::Message;
use mcp_provider_cli::{EchoAgentPlan, RemoteEcho};
use mcp_provider_core::agent::echo::EchoAgent;
use mcp_provider_core::Output;
use smol::channel::{self, Receiver};
use smol::future::FutureExt;
use smol::stream::StreamExt;

use crate::server::Shared;

/// Drives `agent`: provider frames from `incoming` in, each batch of due
/// answer frames out through `send`, sleeping until the next paced frame.
async fn play(mut agent: EchoAgent, incoming: Receiver<String>, send: impl Fn(Vec<String>)) {
    loop {
        let now = Instant::now();
        let frames: Vec<String> = std::iter::from_fn(|| agent.poll_transmit(now)).collect();
        if !frames.is_empty() {
            send(frames);
        }
        let next = agent.poll_timeout();
        let message = async { Some(incoming.recv().await) }
            .or(async {
                match next {
                    Some(at) => {
                        smol::Timer::at(at).await;
                        None
                    }
                    None => std::future::pending().await,
                }
            })
            .await;
        match message {
            Some(Ok(text)) => agent.handle_message(&text, Instant::now()),
            Some(Err(_)) => return,
            None => {}
        }
    }
}

/// Attaches an echo agent to the provider in memory.
pub fn spawn_in_process(shared: &Shared, plan: &EchoAgentPlan) {
    let (id, mail) = shared.connect();
    shared.with(|p, _| p.open_agent(id));
    let (tx, rx) = channel::unbounded();
    smol::spawn(async move {
        while let Ok(output) = mail.recv().await {
            if let Output::ToAgent { text, .. } = output {
                if tx.send(text).await.is_err() {
                    break;
                }
            }
        }
    })
    .detach();
    let shared = shared.clone();
    let send = move |frames: Vec<String>| {
        shared.with(|p, now| {
            for frame in &frames {
                p.handle_agent_text(id, frame, now);
            }
        })
    };
    let agent = EchoAgent::new(&plan.model, "echo-in-process", plan.chunk_delay);
    smol::spawn(play(agent, rx, send)).detach();
}

/// Connects to a provider as an external echo agent and serves until the
/// link closes.
pub async fn run_remote(remote: &RemoteEcho) -> Result<(), String> {
    let ws = crate::server::dial(&remote.url, &remote.token).await?;
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (out_tx, out_rx) = channel::unbounded::<Vec<String>>();
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
    let agent = EchoAgent::new(&remote.agent.model, "echo", remote.agent.chunk_delay);
    let agent = smol::spawn(play(agent, in_rx, send));
    let mut result = Ok(());
    while let Some(frame) = ws_rx.next().await {
        match frame {
            Ok(Message::Text(text)) => {
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
