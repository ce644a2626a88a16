//! What the agents that dial a provider (`agent echo`, `agent exec`,
//! `agent mcp`) share: the task that follows the link, and dialing again
//! when it ends.

use std::time::Instant;

use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketSender;
use futures_lite::StreamExt;
use mcp_provider_kit::dial::{DialError, FromLink, Link, LinkEnd, Redial};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{Receiver, Sender};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout_at};

use crate::server::dial;
pub use crate::server::Ws;

/// The sending half of a link, remembering its first failure: a link that
/// cannot be written to is dead (its reader says so shortly), what the
/// agent makes until then is dropped, and the failure is how it ended.
pub struct LinkSender {
    tx: WebSocketSender<TokioAdapter<TcpStream>>,
    failed: Option<String>,
}

impl LinkSender {
    /// Sends `frames`, in order, while the link takes them.
    pub async fn send_all(&mut self, frames: impl Iterator<Item = String>) {
        for frame in frames {
            if self.failed.is_none() {
                if let Err(e) = self.tx.send(Message::text(frame)).await {
                    self.failed = Some(format!("agent link failed: {e}"));
                }
            }
        }
    }

    /// How the link ended: its first failed write, else what its reader saw.
    pub fn end(self, end: LinkEnd) -> LinkEnd {
        self.failed.map_or(end, LinkEnd::Failed)
    }
}

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
    let (ws_tx, mut frames) = ws.split();
    let follower = tokio::spawn(async move {
        let end = loop {
            match frames.next().await {
                Some(Ok(Message::Text(text))) => {
                    notice(text.as_str());
                    let frame = FromLink::Frame(text.as_str().to_owned());
                    if tx.send(wrap(frame)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(frame))) => break LinkEnd::from_close(frame.as_ref()),
                None => break LinkEnd::Closed(None),
                Some(Ok(_)) => {}
                Some(Err(e)) => break LinkEnd::Failed(format!("agent link failed: {e}")),
            }
        };
        let _ = tx.send(wrap(FromLink::Closed(end))).await;
    });
    let sender = LinkSender {
        tx: ws_tx,
        failed: None,
    };
    (sender, Following(follower))
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
