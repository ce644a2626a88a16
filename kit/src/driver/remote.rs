//! What the agents that dial a provider (`agent echo`, `agent exec`,
//! `agent mcp`) share: dialing, the task that follows the link, waiting
//! for the agent's next input, and dialing again when the link ends.

use std::time::Instant;

use async_channel::{Receiver, Sender};
use async_tungstenite::WebSocketStream;
use futures_lite::future::FutureExt;

use super::link::{self, LinkSender};
use super::{server, until, Executor};
use crate::dial::{DialError, FromLink, Link, LinkEnd, Redial};

/// A link to a provider.
pub type Ws<E> = WebSocketStream<<E as Executor>::Tcp>;

/// What waiting for an agent's next input found.
pub enum Waited<I> {
    Input(I),
    /// Every sender is gone.
    Closed,
    /// The agent's deadline came first.
    Due,
}

/// The next input from `rx`, or [`Waited::Due`] at `deadline`.
pub async fn next_input<E: Executor, I>(rx: &Receiver<I>, deadline: Option<Instant>) -> Waited<I> {
    let input = async {
        match rx.recv().await {
            Ok(input) => Waited::Input(input),
            Err(_) => Waited::Closed,
        }
    };
    input
        .or(async {
            until::<E>(deadline).await;
            Waited::Due
        })
        .await
}

/// The task following a link: it stops when this is dropped.
pub struct Following {
    _stop: Sender<()>,
}

/// Serves a new link: its frames, then how it ended, go to `tx` (through
/// `wrap`, after `notice` saw each) from a task that lives as long as the
/// returned [`Following`]; the link's sending half comes back.
pub fn open_link<E: Executor, I: Send + 'static>(
    ws: Ws<E>,
    tx: Sender<I>,
    wrap: impl Fn(FromLink) -> I + Send + 'static,
    notice: fn(&str),
) -> (LinkSender<E::Tcp>, Following) {
    let (ws_tx, ws_rx) = ws.split();
    let pass = move |got| {
        let (tx, input) = (tx.clone(), wrap(got));
        async move { tx.send(input).await.is_ok() }
    };
    let (stop, stopped) = async_channel::bounded::<()>(1);
    E::spawn(link::follow(ws_rx, notice, pass).or(async move {
        let _ = stopped.recv().await;
    }));
    (LinkSender::new(ws_tx), Following { _stop: stop })
}

/// The first link: a provider that cannot be reached at start is an error
/// to show at once (a wrong URL or token), not a reason to wait.
pub async fn first_link<E: Executor>(link: &Link) -> Result<Ws<E>, String> {
    server::dial::<E, _>(&link.url, &link.token, |tcp| tcp)
        .await
        .map_err(DialError::message)
}

/// After a link ended: the next one, dialed with backoff until the
/// provider is back — or the outcome to stop with (see [`Redial`]).
pub async fn next_link<E: Executor>(
    link: &Link,
    end: LinkEnd,
    tell: fn(&str),
) -> Result<Ws<E>, Result<(), String>> {
    let mut redial = Redial::after(link, end, tell)?;
    loop {
        E::sleep(redial.wait()).await;
        match server::dial::<E, _>(&link.url, &link.token, |tcp| tcp).await {
            Ok(ws) => return Ok(ws),
            Err(e) => redial.failed(e)?,
        }
    }
}
