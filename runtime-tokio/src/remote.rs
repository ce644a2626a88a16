//! What the agents that dial a provider (`agent echo`, `agent exec`,
//! `agent mcp`) share: the task that follows the link, and dialing again
//! when it ends.

use std::time::Instant;

use async_tungstenite::tokio::TokioAdapter;
use mcp_provider_kit::dial::{DialError, FromLink, Link, LinkEnd, Redial};
use mcp_provider_kit::task_link;
use tokio::net::TcpStream;
use tokio::sync::mpsc::{Receiver, Sender};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout_at};

use crate::server::dial;
pub use crate::server::Ws;

/// The sending half of a link.
pub type LinkSender = task_link::LinkSender<TokioAdapter<TcpStream>>;

/// What waiting for an agent's next input found.
pub enum Waited<I> {
    Input(I),
    /// Every sender is gone.
    Closed,
    /// The agent's deadline came first.
    Due,
}

/// The next input from `rx`, or [`Waited::Due`] at `deadline`.
pub async fn next_input<I>(rx: &mut Receiver<I>, deadline: Option<Instant>) -> Waited<I> {
    let input = match deadline {
        Some(at) => match timeout_at(at.into(), rx.recv()).await {
            Ok(input) => input,
            Err(_) => return Waited::Due,
        },
        None => rx.recv().await,
    };
    input.map_or(Waited::Closed, Waited::Input)
}

/// Serves a new link: its frames, then how it ended, go to `tx` (through
/// `wrap`, after `notice` saw each) from a task that the returned guard
/// stops when dropped; the link's sending half comes back.
pub fn open_link<I: Send + 'static>(
    ws: Ws,
    tx: Sender<I>,
    wrap: impl Fn(FromLink) -> I + Send + 'static,
    notice: fn(&str),
) -> (LinkSender, Following) {
    let (ws_tx, ws_rx) = ws.split();
    let pass = move |got| {
        let tx = tx.clone();
        let input = wrap(got);
        async move { tx.send(input).await.is_ok() }
    };
    let follower = tokio::spawn(task_link::follow(ws_rx, notice, pass));
    (LinkSender::new(ws_tx), Following(follower))
}

/// The task following a link; stopped when dropped, as a smol task is.
pub struct Following(JoinHandle<()>);

impl Drop for Following {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The first link: a provider that cannot be reached at start is an error
/// to show at once (a wrong URL or token), not a reason to wait.
pub async fn first_link(link: &Link) -> Result<Ws, String> {
    dial(&link.url, &link.token)
        .await
        .map_err(DialError::message)
}

/// After a link ended: the next one, dialed with backoff until the
/// provider is back — or the outcome to stop with (see [`Redial`]).
pub async fn next_link(
    link: &Link,
    end: LinkEnd,
    tell: fn(&str),
) -> Result<Ws, Result<(), String>> {
    let mut redial = Redial::after(link, end, tell)?;
    loop {
        sleep(redial.wait()).await;
        match dial(&link.url, &link.token).await {
            Ok(ws) => return Ok(ws),
            Err(e) => redial.failed(e)?,
        }
    }
}
