//! `agent mcp`: the core's host agent in one task (what each input does is
//! [`crate::agent::host`]'s), a task following each link and a thread reading the
//! host's stdin; answers go to stdout.

use async_channel::{Receiver, Sender};
use futures_lite::io::AsyncWriteExt;

use super::remote::{first_link, next_input, next_link, open_link, Waited, Ws};
use super::Executor;
use crate::agent::host::{read_stdin, Ended, Host, Input, HOST_INPUTS};
use crate::{RemoteHost, RunError, Terminal};

/// Serves the MCP host on stdin/stdout until it closes stdin. When the
/// link ends, the provider is dialed again until it is back (unless
/// `--once`), and the host's session carries on.
pub async fn run_remote<E: Executor>(
    remote: &RemoteHost,
    terminal: Terminal,
) -> Result<(), RunError> {
    let mut ws = first_link::<E>(&remote.link).await?;
    let (tx, rx) = async_channel::bounded(HOST_INPUTS);
    let host_tx = tx.clone();
    read_stdin(move |input| host_tx.send_blocking(input).is_ok())?;
    let mut host = Host::new(remote);
    let mut stdout = E::stdout();
    loop {
        let end =
            match serve_link::<E>(&mut host, &mut stdout, (&tx, &rx), ws, terminal.notice).await {
                Ended::Host => return Ok(()),
                Ended::Link(end) => end,
            };
        ws = match next_link::<E>(&remote.link, end, terminal.say).await {
            Ok(ws) => ws,
            Err(stop) => return Ok(stop.outcome()?),
        };
    }
}

/// Serves one link until it ends or the host leaves.
async fn serve_link<E: Executor>(
    host: &mut Host,
    stdout: &mut E::Stdout,
    (tx, rx): (&Sender<Input>, &Receiver<Input>),
    ws: Ws<E>,
    notice: fn(&str),
) -> Ended {
    let number = host.link;
    let (mut sender, _link) =
        open_link::<E, _>(ws, tx.clone(), move |got| Input::Link(number, got), notice);
    loop {
        while let Some(mut line) = host.agent.poll_host() {
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                return Ended::Host;
            }
        }
        sender
            .send_all(std::iter::from_fn(|| host.agent.poll_provider()))
            .await;
        let input = match next_input::<E, _>(rx, host.agent.poll_timeout()).await {
            Waited::Input(input) => Some(input),
            // Unreachable while this task holds a sender.
            Waited::Closed => Some(Input::HostClosed),
            Waited::Due => None,
        };
        match host.handle(input) {
            Some(Ended::Link(end)) => return Ended::Link(sender.end(end)),
            Some(Ended::Host) => return Ended::Host,
            None => {}
        }
    }
}
