//! What the agents that dial a provider (`agent echo`, `agent exec`,
//! `agent mcp`) share: dialing, a link that ends when the provider goes
//! silent, the task that follows the link, waiting for the agent's next
//! input, and dialing again when the link ends.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use async_tungstenite::WebSocketStream;
use futures_lite::future::FutureExt;
use futures_lite::io::{AsyncRead, AsyncWrite};
use mcp_provider_core::time::later;

use super::clock::{sleep, Timer};
use super::link::{self, LinkSender};
use super::{server, until, Executor};
use crate::agent::dial::{
    DialError, FromLink, Link, LinkEnd, LinkStopped, Redial, Silent, Stop, LINK_DIAL_TIMEOUT,
};

/// A link to a provider.
pub type Ws<E> = WebSocketStream<Quiet<E>>;

/// A provider's link that fails once the provider goes silent: a read
/// that gets no byte for `limit` after the last one, or a write that
/// waits `limit` for the provider to read, fails with `TimedOut` (see
/// [`crate::agent::dial::silence_limit`]). The blocking runtime gets the same
/// from its socket's timeouts.
pub struct Quiet<E: Executor> {
    inner: E::Tcp,
    /// None until the handshake told it (the dial has a deadline of its
    /// own).
    limit: Option<Duration>,
    /// When the last byte was read.
    heard: Instant,
    /// Set while a read waits: when it has waited too long.
    read_timer: Option<Timer>,
    /// Set while a write waits.
    write_timer: Option<Timer>,
}

impl<E: Executor> Quiet<E> {
    /// `inner`, as yet without a limit.
    fn new(inner: E::Tcp) -> Self {
        Quiet {
            inner,
            limit: None,
            heard: Instant::now(),
            read_timer: None,
            write_timer: None,
        }
    }

    /// From now on, silent for at most `limit`.
    fn set_limit(&mut self, limit: Duration) {
        self.limit = Some(limit);
        self.read_timer = None;
        self.write_timer = None;
    }

    /// A waiting read or write that began `since` (asked only when its
    /// timer is set, the first time it waits): whether it waited past the
    /// limit, and then the error it fails with.
    fn waited(
        timer: &mut Option<Timer>,
        since: impl FnOnce() -> Instant,
        limit: Option<Duration>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Error> {
        let Some(limit) = limit else {
            return Poll::Pending;
        };
        let timer = timer.get_or_insert_with(|| Timer::at(later(since(), limit)));
        Pin::new(timer)
            .poll(cx)
            .map(|_| io::Error::new(io::ErrorKind::TimedOut, Silent(limit)))
    }
}

impl<E: Executor> AsyncRead for Quiet<E> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(read) => {
                this.heard = Instant::now();
                this.read_timer = None;
                Poll::Ready(read)
            }
            Poll::Pending => {
                Self::waited(&mut this.read_timer, || this.heard, this.limit, cx).map(Err)
            }
        }
    }
}

impl<E: Executor> AsyncWrite for Quiet<E> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(written) => {
                this.write_timer = None;
                Poll::Ready(written)
            }
            Poll::Pending => {
                Self::waited(&mut this.write_timer, Instant::now, this.limit, cx).map(Err)
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Dials the provider of `link`: connected and the handshake done within
/// [`LINK_DIAL_TIMEOUT`], then silent for no longer than the provider's `101`
/// allows.
async fn dial<E: Executor>(link: &Link) -> Result<Ws<E>, DialError> {
    let dialing = async {
        let (mut ws, limit) = server::dial::<E, _>(&link.url, &link.token, Quiet::<E>::new).await?;
        ws.get_mut().set_limit(limit);
        Ok(ws)
    };
    dialing
        .or(async {
            sleep(LINK_DIAL_TIMEOUT).await;
            Err(DialError::Unreachable(format!(
                "{} did not answer within {} s",
                link.url,
                LINK_DIAL_TIMEOUT.as_secs()
            )))
        })
        .await
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
pub async fn next_input<E: Executor, I>(rx: &Receiver<I>, deadline: Option<Instant>) -> Waited<I> {
    let input = async {
        match rx.recv().await {
            Ok(input) => Waited::Input(input),
            Err(_) => Waited::Closed,
        }
    };
    input
        .or(async {
            until(deadline).await;
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
) -> (LinkSender<Quiet<E>>, Following) {
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
pub async fn first_link<E: Executor>(link: &Link) -> Result<Ws<E>, LinkStopped> {
    Ok(dial::<E>(link).await?)
}

/// After a link ended: the next one, dialed with backoff until the
/// provider is back — or why to stop (see [`Redial`]).
pub async fn next_link<E: Executor>(
    link: &Link,
    end: LinkEnd,
    tell: fn(&str),
) -> Result<Ws<E>, Stop> {
    let mut redial = Redial::after(link, end, tell)?;
    loop {
        sleep(redial.wait()).await;
        match dial::<E>(link).await {
            Ok(ws) => return Ok(ws),
            Err(e) => redial.failed(e)?,
        }
    }
}
