//! `agent mcp` on threads: the core's host agent on this thread, one thread
//! reading the link and one reading the host's stdin; answers go to stdout.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Instant;

use mcp_provider_cli::RemoteHost;
use mcp_provider_core::agent::host::HostAgent;
use tungstenite::Message;

use crate::echo::wait;
use crate::link::{follow_remote, FromLink};

/// What the agent's thread waits for.
enum Input {
    Link(FromLink),
    Host(Vec<u8>),
    HostClosed,
}

/// Serves the MCP host on stdin/stdout until it closes stdin or the link
/// closes.
pub fn run_remote(remote: &RemoteHost) -> Result<(), String> {
    let (reader, mut writer) = crate::link::dial(&remote.url, &remote.token)?;
    let (tx, rx) = mpsc::sync_channel(64);
    let link_tx = tx.clone();
    follow_remote(reader, move |got| {
        if let FromLink::Frame(frame) = &got {
            if let Some(notice) = mcp_provider_cli::link_notice(frame) {
                eprintln!("{notice}");
            }
        }
        link_tx.send(Input::Link(got)).is_ok()
    })?;
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
                        if tx.send(Input::Host(bytes)).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(Input::HostClosed);
        })
        .map_err(|e| format!("cannot start the stdin thread: {e}"))?;

    let mut agent = HostAgent::new(remote.plan.clone());
    let mut stdout = std::io::stdout().lock();
    loop {
        while let Some(line) = agent.poll_host() {
            if writeln!(stdout, "{line}")
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return Ok(());
            }
        }
        while let Some(frame) = agent.poll_provider() {
            writer
                .send(Message::text(frame))
                .map_err(|e| format!("agent link failed: {e}"))?;
        }
        match wait(&rx, agent.poll_timeout()) {
            Ok(Some(Input::Host(bytes))) => agent.handle_host_bytes(&bytes, Instant::now()),
            Ok(Some(Input::Link(FromLink::Frame(frame)))) => agent.handle_provider_message(&frame),
            Ok(Some(Input::Link(FromLink::Closed(result)))) => return result,
            Ok(Some(Input::HostClosed)) | Err(_) => return Ok(()),
            Ok(None) => agent.handle_timeout(Instant::now()),
        }
    }
}
