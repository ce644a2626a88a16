//! `agent mcp` on threads: the core's host agent on this thread (what each
//! input does is the kit's), one thread reading each link and one reading
//! the host's stdin; answers go to stdout.

use std::io::Write;
use std::sync::mpsc::{self, Receiver, SyncSender};

use mcp_provider_kit::agent::host::{read_stdin, Ended, Host, Input, HOST_INPUTS};
use mcp_provider_kit::{RemoteHost, RunError, Terminal};

use crate::echo::wait;
use crate::link::{first_link, next_link, open_link, Ws};

/// Serves the MCP host on stdin/stdout until it closes stdin. When the
/// link ends, the provider is dialed again until it is back (unless
/// `--once`), and the host's session carries on.
pub fn run_remote(remote: &RemoteHost, terminal: Terminal) -> Result<(), RunError> {
    let mut ws = first_link(&remote.link)?;
    let (tx, rx) = mpsc::sync_channel(HOST_INPUTS);
    let host_tx = tx.clone();
    read_stdin(move |input| host_tx.send(input).is_ok())?;
    let mut host = Host::new(remote);
    loop {
        let end = match serve_link(&mut host, (&tx, &rx), ws, terminal.notice)? {
            Ended::Host => return Ok(()),
            Ended::Link(end) => end,
        };
        ws = match next_link(&remote.link, end, terminal.say) {
            Ok(ws) => ws,
            Err(stop) => return Ok(stop.outcome()?),
        };
    }
}

/// Serves one link until it ends or the host leaves.
fn serve_link(
    host: &mut Host,
    (tx, rx): (&SyncSender<Input>, &Receiver<Input>),
    ws: Ws,
    notice: fn(&str),
) -> Result<Ended, RunError> {
    let number = host.link;
    let mut sender = open_link(ws, tx.clone(), move |got| Input::Link(number, got), notice)?;
    let mut stdout = std::io::stdout().lock();
    loop {
        while let Some(line) = host.agent.poll_host() {
            if writeln!(stdout, "{line}")
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return Ok(Ended::Host);
            }
        }
        sender.send_all(std::iter::from_fn(|| host.agent.poll_provider()));
        let input = match wait(rx, host.agent.poll_timeout()) {
            Ok(input) => input,
            // Unreachable while this thread holds a sender.
            Err(_) => Some(Input::HostClosed),
        };
        match host.handle(input) {
            Some(Ended::Link(end)) => return Ok(Ended::Link(sender.end(end))),
            Some(Ended::Host) => return Ok(Ended::Host),
            None => {}
        }
    }
}
