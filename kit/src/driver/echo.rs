//! Running the core's echo agent: in-process beside the server, or as a
//! separate process over the real agent link.

use std::time::Instant;

use async_tungstenite::tungstenite::Message;
use futures_lite::future::FutureExt;
use futures_lite::StreamExt;
use mcp_provider_core::agent::echo::{self, EchoAgent};

use super::link::Shared;
use super::remote::{first_link, next_link, Ws};
use super::{spawn_joined, until, Executor};
use crate::agent::dial::{link_failed, LinkEnd};
use crate::serve::in_process::InProcess;
use crate::{EchoAgentPlan, RemoteEcho, RunError, Terminal};

/// Drives `agent`: provider frames from `incoming` in (`None` ends it and
/// gives the agent back), due answer frames out through `send` a batch at
/// a time, sleeping until the next paced frame. Between batches it reads
/// what the provider sent, so a `pause` for a slow editor takes effect at
/// once.
async fn play<E, F, S>(mut agent: EchoAgent, mut incoming: F, send: S) -> EchoAgent
where
    E: Executor,
    F: AsyncFnMut() -> Option<String>,
    S: AsyncFn(Vec<String>),
{
    loop {
        let frames = agent.poll_batch(Instant::now());
        if !frames.is_empty() {
            send(frames).await;
            E::yield_now().await;
        }
        let next = agent.poll_timeout();
        let message = async { Some(incoming().await) }
            .or(async {
                until(next).await;
                None
            })
            .await;
        match message {
            Some(Some(text)) => agent.handle_message(&text, Instant::now()),
            Some(None) => return agent,
            None => {}
        }
    }
}

/// Attaches an echo agent to the provider in memory.
pub fn spawn_in_process<E: Executor>(shared: &Shared, plan: &EchoAgentPlan) {
    let (mut link, to) = InProcess::attach(shared, crate::ECHO_AGENT);
    let incoming = async move || loop {
        if let Some(frame) = link.next_frame() {
            return Some(frame);
        }
        link.waiter().recv().await.ok()?;
    };
    let send = async move |frames: Vec<String>| to.send(&frames);
    let agent = EchoAgent::new(&plan.model, echo::BUILT_IN, plan.chunk_delay);
    E::spawn(async move {
        play::<E, _, _>(agent, incoming, send).await;
    });
}

/// Connects to a provider as an external echo agent and serves, dialing
/// again when the link ends until the provider is back (unless `--once`).
pub async fn run_remote<E: Executor>(
    remote: &RemoteEcho,
    terminal: Terminal,
) -> Result<(), RunError> {
    let mut ws = first_link::<E>(&remote.link).await?;
    let mut agent = EchoAgent::new(&remote.agent.model, echo::REMOTE, remote.agent.chunk_delay);
    loop {
        let end;
        (agent, end) = serve_link::<E>(agent, ws, terminal.notice).await?;
        agent.link_lost();
        ws = match next_link::<E>(&remote.link, end, terminal.say).await {
            Ok(ws) => ws,
            Err(stop) => return Ok(stop.outcome()?),
        };
    }
}

/// Serves one link until it ends; the agent comes back for the next.
async fn serve_link<E: Executor>(
    agent: EchoAgent,
    ws: Ws<E>,
    notice: fn(&str),
) -> Result<(EchoAgent, LinkEnd), RunError> {
    let (mut ws_tx, mut ws_rx) = ws.split();
    // Bounded: the agent makes frames only as fast as the link takes them.
    let (out_tx, out_rx) = async_channel::bounded::<Vec<String>>(4);
    let writer = spawn_joined::<E, _>(async move {
        while let Ok(frames) = out_rx.recv().await {
            for frame in frames {
                if let Err(e) = ws_tx.send(Message::text(frame)).await {
                    return Some(link_failed(&e, None));
                }
            }
        }
        None
    });
    // Unbounded: the link is read whatever the agent is doing. A provider
    // reads no more of a link while a write to it waits, so a reader that
    // waited for the agent, while the agent waited to send, would wait on
    // the provider waiting on it. What the provider sends an agent is its
    // requests and pauses: little.
    let (in_tx, in_rx) = async_channel::unbounded();
    let send = async move |frames: Vec<String>| {
        let _ = out_tx.send(frames).await;
    };
    let incoming = async move || in_rx.recv().await.ok();
    let player = spawn_joined::<E, _>(play::<E, _, _>(agent, incoming, send));
    let end = loop {
        match ws_rx.next().await {
            Some(Ok(Message::Text(text))) => {
                notice(text.as_str());
                let _ = in_tx.send(text.as_str().to_owned()).await;
            }
            Some(Ok(Message::Close(frame))) => break LinkEnd::from_close(frame.as_ref()),
            None => break LinkEnd::Closed(None),
            Some(Ok(_)) => {}
            Some(Err(e)) => break link_failed(&e, None),
        }
    };
    drop(in_tx);
    let agent = player
        .await
        .ok_or(RunError::Broken("the echo agent failed"))?;
    let failed = writer.await.flatten();
    Ok((agent, failed.unwrap_or(end)))
}
