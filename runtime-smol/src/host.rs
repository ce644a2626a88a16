//! `agent mcp` on smol: the core's host agent in one task, a task following
//! the link and one reading the host's stdin; answers go to stdout.

use std::time::Instant;

use async_tungstenite::tungstenite::Message;
use mcp_provider_cli::RemoteHost;
use mcp_provider_core::agent::host::HostAgent;
use smol::channel;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Unblock;

use crate::remote::{follow_remote, next_input, FromLink, Waited};

/// What the agent's task waits for.
enum Input {
    Link(FromLink),
    Host(Vec<u8>),
    HostClosed,
}

/// The link's notices go to stderr: stdout carries MCP messages.
fn notice_to_stderr(frame: &str) {
    if let Some(notice) = mcp_provider_cli::link_notice(frame) {
        eprintln!("{notice}");
    }
}

/// Serves the MCP host on stdin/stdout until it closes stdin or the link
/// closes.
pub async fn run_remote(remote: &RemoteHost) -> Result<(), String> {
    let ws = crate::server::dial(&remote.url, &remote.token).await?;
    let (mut ws_tx, ws_rx) = ws.split();
    let (tx, rx) = channel::bounded(64);
    let _link = follow_remote(ws_rx, tx.clone(), Input::Link, notice_to_stderr);
    let _stdin = smol::spawn(async move {
        let mut stdin = Unblock::new(std::io::stdin());
        let mut buf = vec![0; 64 * 1024];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let bytes = buf.get(..n).unwrap_or_default().to_vec();
                    if tx.send(Input::Host(bytes)).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(Input::HostClosed).await;
    });

    let mut agent = HostAgent::new(remote.plan.clone());
    let mut stdout = Unblock::new(std::io::stdout());
    loop {
        while let Some(mut line) = agent.poll_host() {
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                return Ok(());
            }
        }
        while let Some(frame) = agent.poll_provider() {
            ws_tx
                .send(Message::text(frame))
                .await
                .map_err(|e| format!("agent link failed: {e}"))?;
        }
        match next_input(&rx, agent.poll_timeout()).await {
            Waited::Input(Input::Host(bytes)) => agent.handle_host_bytes(&bytes, Instant::now()),
            Waited::Input(Input::Link(FromLink::Frame(frame))) => {
                agent.handle_provider_message(&frame)
            }
            Waited::Input(Input::Link(FromLink::Closed(result))) => return result,
            Waited::Input(Input::HostClosed) | Waited::Closed => return Ok(()),
            Waited::Due => agent.handle_timeout(Instant::now()),
        }
    }
}
