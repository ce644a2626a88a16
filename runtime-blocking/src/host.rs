//! `agent mcp` on threads: the core's host agent on this thread, one thread
//! reading each link and one reading the host's stdin; answers go to stdout.

use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Instant;

use mcp_provider_core::agent::host::HostAgent;
use mcp_provider_kit::dial::{FromLink, LinkEnd};
use mcp_provider_kit::RemoteHost;

use crate::echo::wait;
use crate::link::{first_link, next_link, open_link, Ws};

/// What the agent's thread waits for.
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
pub fn run_remote(remote: &RemoteHost) -> Result<(), String> {
    let mut ws = first_link(&remote.link)?;
    let (tx, rx) = mpsc::sync_channel(64);
    let host_tx = tx.clone();
    std::thread::Builder::new()
        .name("mcp-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0; 64 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let bytes = buf.get(..n).unwrap_or_default().to_vec();
                        if host_tx.send(Input::Host(bytes)).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = host_tx.send(Input::HostClosed);
        })
        .map_err(|e| format!("cannot start the stdin thread: {e}"))?;

    let mut agent = HostAgent::new(remote.plan.clone());
    let mut number = 0;
    loop {
        let end = match serve_link(&mut agent, (&tx, &rx), ws, number)? {
            Ended::Host => return Ok(()),
            Ended::Link(end) => end,
        };
        agent.link_lost();
        ws = match next_link(&remote.link, end, mcp_provider_kit::say_on_stderr) {
            Ok(ws) => ws,
            Err(outcome) => return outcome,
        };
        number += 1;
    }
}

/// Serves one link until it ends or the host leaves.
fn serve_link(
    agent: &mut HostAgent,
    (tx, rx): (&SyncSender<Input>, &Receiver<Input>),
    ws: Ws,
    number: u64,
) -> Result<Ended, String> {
    let mut sender = open_link(
        ws,
        tx.clone(),
        move |got| Input::Link(number, got),
        mcp_provider_kit::print_link_notice_on_stderr,
    )?;
    let mut stdout = std::io::stdout().lock();
    loop {
        while let Some(line) = agent.poll_host() {
            if writeln!(stdout, "{line}")
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return Ok(Ended::Host);
            }
        }
        sender.send_all(std::iter::from_fn(|| agent.poll_provider()));
        match wait(rx, agent.poll_timeout()) {
            Ok(Some(Input::Host(bytes))) => agent.handle_host_bytes(&bytes, Instant::now()),
            Ok(Some(Input::Link(n, FromLink::Frame(frame)))) if n == number => {
                agent.handle_provider_message(&frame)
            }
            Ok(Some(Input::Link(n, FromLink::Closed(end)))) if n == number => {
                return Ok(Ended::Link(sender.end(end)));
            }
            Ok(Some(Input::Link(..))) => {}
            Ok(Some(Input::HostClosed)) | Err(_) => return Ok(Ended::Host),
            Ok(None) => agent.handle_timeout(Instant::now()),
        }
    }
}
