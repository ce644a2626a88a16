//! `agent mcp` on tokio: the core's host agent in one task, a task following
//! each link and one reading the host's stdin; answers go to stdout.

use std::time::Instant;

use mcp_provider_core::agent::host::HostAgent;
use mcp_provider_kit::dial::{FromLink, LinkEnd};
use mcp_provider_kit::RemoteHost;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Stdout};
use tokio::sync::mpsc::{self, Receiver, Sender};

use crate::remote::{first_link, next_input, next_link, open_link, Waited, Ws};

/// What the agent's task waits for.
enum Input {
    /// From the link of this number (see `agent exec`'s).
    Link(u64, FromLink),
    Host(Vec<u8>),
    HostClosed,
}

/// How serving one link ended.
enum Ended {
    Link(LinkEnd),
    /// The host closed stdin or stdout: `agent mcp` is done.
    Host,
}

/// Serves the MCP host on stdin/stdout until it closes stdin. When the
/// link ends, the provider is dialed again until it is back (unless
/// `--once`), and the host's session carries on.
pub async fn run_remote(remote: &RemoteHost) -> Result<(), String> {
    let mut ws = first_link(&remote.link).await?;
    let (tx, mut rx) = mpsc::channel(64);
    let host_tx = tx.clone();
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = stdin.read(&mut buf).await {
            let bytes = buf.get(..n).unwrap_or_default().to_vec();
            if host_tx.send(Input::Host(bytes)).await.is_err() {
                return;
            }
        }
        let _ = host_tx.send(Input::HostClosed).await;
    });

    let mut agent = HostAgent::new(remote.plan.clone());
    let mut stdout = tokio::io::stdout();
    let mut number = 0;
    loop {
        let end = match serve_link(&mut agent, &mut stdout, (&tx, &mut rx), ws, number).await {
            Ended::Host => return Ok(()),
            Ended::Link(end) => end,
        };
        agent.link_lost();
        ws = match next_link(&remote.link, end, mcp_provider_kit::say_on_stderr).await {
            Ok(ws) => ws,
            Err(outcome) => return outcome,
        };
        number += 1;
    }
}

/// Serves one link until it ends or the host leaves.
async fn serve_link(
    agent: &mut HostAgent,
    stdout: &mut Stdout,
    (tx, rx): (&Sender<Input>, &mut Receiver<Input>),
    ws: Ws,
    number: u64,
) -> Ended {
    let (mut sender, _link) = open_link(
        ws,
        tx.clone(),
        move |got| Input::Link(number, got),
        mcp_provider_kit::print_link_notice_on_stderr,
    );
    loop {
        while let Some(mut line) = agent.poll_host() {
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                return Ended::Host;
            }
        }
        sender
            .send_all(std::iter::from_fn(|| agent.poll_provider()))
            .await;
        match next_input(rx, agent.poll_timeout()).await {
            Waited::Input(Input::Host(bytes)) => agent.handle_host_bytes(&bytes, Instant::now()),
            Waited::Input(Input::Link(n, FromLink::Frame(frame))) if n == number => {
                agent.handle_provider_message(&frame)
            }
            Waited::Input(Input::Link(n, FromLink::Closed(end))) if n == number => {
                return Ended::Link(sender.end(end));
            }
            Waited::Input(Input::Link(..)) => {}
            Waited::Input(Input::HostClosed) | Waited::Closed => return Ended::Host,
            Waited::Due => agent.handle_timeout(Instant::now()),
        }
    }
}
