//! The agent link over async-tungstenite: the bell that wakes a
//! connection's task, an upgraded link served (its socket not read while a
//! write to it waits, [`Backpressure`]), and the two halves of a link an
//! agent dialed.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::Role;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use futures_lite::future::{poll_once, FutureExt};
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::StreamExt;
use mcp_provider_core::agent::close::LinkClose;
use mcp_provider_core::backlog::Backlog;
use mcp_provider_core::{ConnId, Output};

pub use super::bell::TaskBell;
use super::clock::sleep;
use super::Executor;
use crate::agent::dial::{link_failed, FromLink, LinkEnd};
use crate::serve::burst::Burst;
use crate::serve::hub::{Hub, Peer};
use crate::serve::link_writes::LinkWrites;
use crate::serve::mailbox::{Bells, Inbox};
use crate::serve::ws;
use crate::{RING_EVERY, YIELD_EVERY};

/// The longest a link the peer broke waits for its close frame to go.
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A connection's mailbox, as its task reads it.
pub type Mail = Inbox<TaskBell>;

/// The provider shared by every task.
pub type Shared = Arc<Hub<TaskBell>>;

/// A link's socket that is not read while a write to it waits: tungstenite
/// answers every ping it reads with a pong and goes on reading while the
/// pong cannot be written, so a peer that pings and never reads would
/// have its pongs pile up in the server's memory. Here the next frame is
/// read only once what waited was written (pongs still owed are one, the
/// last ping's, as tungstenite keeps them): a peer that does not read
/// waits on TCP, as the blocking runtime's does, and [`serve`] ends its
/// link once a write has waited longer than the link's stall limit.
pub struct Backpressure<S> {
    inner: S,
    stall: Arc<Stall>,
    /// The reader told to wait for a write: woken once it went through.
    reader: Option<Waker>,
}

/// Whether a write to a link waits for its peer to read, shared with the
/// link's reader.
pub struct Stall {
    waiting: AtomicBool,
    /// How many writes went through after waiting.
    through: AtomicU64,
    /// How long a write may wait before the link ends.
    limit: Duration,
}

impl<S> Backpressure<S> {
    /// `inner`, whose writes may wait `limit` for the peer to read.
    pub fn new(inner: S, limit: Duration) -> Self {
        let stall = Stall {
            waiting: AtomicBool::new(false),
            through: AtomicU64::new(0),
            limit,
        };
        Backpressure {
            inner,
            stall: Arc::new(stall),
            reader: None,
        }
    }

    /// Notes how a write went: one that must wait stops reads until one
    /// goes through.
    fn wrote<T>(&mut self, done: Poll<T>) -> Poll<T> {
        if done.is_pending() {
            self.stall.waiting.store(true, Ordering::Release);
        } else if self.stall.waiting.swap(false, Ordering::AcqRel) {
            self.stall.through.fetch_add(1, Ordering::Release);
            if let Some(reader) = self.reader.take() {
                reader.wake();
            }
        }
        done
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Backpressure<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.stall.waiting.load(Ordering::Acquire) {
            self.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Backpressure<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let done = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(done)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let done = Pin::new(&mut self.inner).poll_flush(cx);
        self.wrote(done)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

impl Stall {
    /// Waits for `next`, but while a write waits for the peer to read, no
    /// longer than the limit from then: `None` once a write has waited
    /// that long.
    async fn bound<T>(&self, next: impl Future<Output = T>) -> Option<T> {
        let mut next = pin!(next);
        loop {
            if !self.waiting.load(Ordering::Acquire) {
                return Some(next.await);
            }
            let through = self.through.load(Ordering::Acquire);
            let waited = async {
                sleep(self.limit).await;
                None
            };
            match async { Some(next.as_mut().await) }.or(waited).await {
                Some(next) => return Some(next),
                None if self.waiting.load(Ordering::Acquire)
                    && self.through.load(Ordering::Acquire) == through =>
                {
                    return None
                }
                // A write went through meanwhile: wait afresh.
                None => {}
            }
        }
    }
}

/// Takes over an upgraded connection (`leftover`: what was read past the
/// upgrade request) as the server's end of a link whose writes may wait
/// `stall` for the peer to read.
pub async fn accept<S>(
    stream: S,
    leftover: Vec<u8>,
    stall: Duration,
) -> WebSocketStream<Backpressure<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let stream = Backpressure::new(stream, stall);
    WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(ws::config())).await
}

/// An upgraded agent link (or a client of the bridge's WebSocket): frames
/// in to the provider (or the bridge), mail out as frames (starting with
/// any already taken out of the mailbox). Ends when either side closes; a
/// link the peer broke, or left a write unread past its stall limit, is
/// closed with the code that says how, waiting [`CLOSE_WAIT`] at most.
pub async fn serve<E: Executor, S>(
    shared: &Shared,
    id: ConnId,
    ws: WebSocketStream<Backpressure<S>>,
    (mail, mut outputs): (Mail, VecDeque<Output>),
    backlog: &Backlog,
    peer: Peer,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let stall = ws.get_ref().stall.clone();
    let (mut tx, mut rx) = ws.split();
    let reader = async {
        // A burst of frames that arrived together is handed to the provider
        // at once, and the editors it posted to are woken once, when the
        // link has nothing more to read at once (or after a batch).
        let mut bells = Bells::default();
        let mut burst = Burst::default();
        let mut frames = 0;
        let mut unyielded = 0;
        let fault = loop {
            let next = match poll_once(rx.next()).await {
                Some(next) if frames < RING_EVERY && !burst.is_full() => next,
                ready => {
                    shared.hand_over(id, &mut burst, &mut bells);
                    frames = 0;
                    match ready {
                        Some(next) => {
                            // A link that always has more to read must not
                            // keep the editors' tasks from writing what it
                            // posted.
                            unyielded += 1;
                            if unyielded >= YIELD_EVERY {
                                unyielded = 0;
                                E::yield_now().await;
                            }
                            next
                        }
                        None => {
                            // While the link waits, the editors write: the
                            // next streak of bursts counts from none.
                            unyielded = 0;
                            match stall.bound(rx.next()).await {
                                Some(next) => next,
                                None => break Some(LinkClose::TooSlow),
                            }
                        }
                    }
                }
            };
            frames += 1;
            match next {
                Some(Ok(Message::Text(text))) if peer == Peer::BridgeClient => {
                    shared.socket_text(id, text.as_str());
                }
                Some(Ok(Message::Text(text))) => burst.push(text.as_str()),
                Some(Ok(Message::Binary(_))) => break Some(LinkClose::Binary),
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Ok(_)) => {}
                Some(Err(e)) => break ws::fault(&e),
            }
        };
        // What arrived before the end still counts.
        shared.hand_over(id, &mut burst, &mut bells);
        fault
    };
    let writer = async {
        loop {
            let writes = LinkWrites::take(&mut outputs);
            let mut open = true;
            for text in writes.texts {
                open = tx.send(Message::text(text)).await.is_ok();
                if !open {
                    break;
                }
            }
            if let Some(why) = writes.close.filter(|_| open) {
                let _ = tx.send(Message::Close(Some(ws::close_frame(why)))).await;
            }
            open &= writes.close.is_none();
            shared.written(id, backlog, writes.bytes);
            if !open || mail.waiter().recv().await.is_err() {
                break;
            }
            mail.take(&mut outputs);
        }
        None
    };
    if let Some(why) = reader.or(writer).await {
        let close = async {
            let _ = tx.send(Message::Close(Some(ws::close_frame(why)))).await;
        };
        close
            .or(async {
                sleep(CLOSE_WAIT).await;
            })
            .await;
    }
}

/// The sending half of a link an agent dialed, remembering its first
/// failure: a link that cannot be written to is dead (its reader says so
/// shortly), what the agent makes until then is dropped, and the failure
/// is how it ended.
pub struct LinkSender<S> {
    tx: WebSocketSender<S>,
    failed: Option<LinkEnd>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> LinkSender<S> {
    pub fn new(tx: WebSocketSender<S>) -> Self {
        LinkSender { tx, failed: None }
    }

    /// Sends `frames`, in order, while the link takes them.
    pub async fn send_all(&mut self, frames: impl Iterator<Item = String>) {
        for frame in frames {
            if self.failed.is_none() {
                if let Err(e) = self.tx.send(Message::text(frame)).await {
                    self.failed = Some(link_failed(&e, None));
                }
            }
        }
    }

    /// How the link ended: its first failed write, else what its reader saw.
    pub fn end(self, end: LinkEnd) -> LinkEnd {
        self.failed.unwrap_or(end)
    }
}

/// Follows the frames of a link an agent dialed: each text frame (after
/// `notice` saw it), then how the link ended, goes to `pass`, until `pass`
/// says nobody listens.
pub async fn follow<S, P>(
    mut frames: WebSocketReceiver<S>,
    notice: fn(&str),
    mut pass: impl FnMut(FromLink) -> P,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    P: Future<Output = bool>,
{
    let end = loop {
        match frames.next().await {
            Some(Ok(Message::Text(text))) => {
                notice(text.as_str());
                if !pass(FromLink::Frame(text.as_str().to_owned())).await {
                    return;
                }
            }
            Some(Ok(Message::Close(frame))) => break LinkEnd::from_close(frame.as_ref()),
            None => break LinkEnd::Closed(None),
            Some(Ok(_)) => {}
            Some(Err(e)) => break link_failed(&e, None),
        }
    };
    pass(FromLink::Closed(end)).await;
}
