//! WebSocket agent links on blocking sockets: one thread reads frames, one
//! writes them, each with its own tungstenite instance on a clone of the
//! same socket.
//!
//! Both instances write (the reader answers the peer's pings and close
//! itself), so every write goes through one lock: tungstenite hands a
//! whole buffer of complete frames to each `write`, and [`LinkHalf`] writes
//! it out entirely before letting the other half in, so frames never
//! interleave. A thread that posts to an accepted link writes its frames
//! itself, under the same lock, when the writer is idle and the socket
//! takes them at once ([`LinkThrough`]).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcp_provider_core::agent::close::LinkClose;
use mcp_provider_core::backlog::Backlog;
use mcp_provider_core::Backoff;
use mcp_provider_core::{ConnId, Output};
use mcp_provider_kit::agent::dial::{
    handshake_failed, link_failed, link_request, silence_limit, DialError, FromLink, Link, LinkEnd,
    LinkStopped, Redial, Stop, HUB_STALL, LINK_BACKOFF, LINK_DIAL_TIMEOUT,
};
use mcp_provider_kit::outbound::keepalive::keep_alive;
use mcp_provider_kit::serve::hub::Peer;
use mcp_provider_kit::serve::link_writes::LinkWrites;
use mcp_provider_kit::serve::ws;
use mcp_provider_kit::{RunError, YIELD_EVERY};
use tungstenite::protocol::Role;
use tungstenite::{Error as WsError, HandshakeError, Message, WebSocket};

use mcp_provider_kit::serve::burst::Burst;
use mcp_provider_kit::serve::mailbox::{Bells, Taker};

use crate::now::{recv_now, send_now};
use crate::shared::{Mail, Shared, ThreadBell};

/// One side of a link's socket; writes are whole and exclusive.
pub struct LinkHalf {
    stream: TcpStream,
    write_lock: Arc<Mutex<()>>,
    /// What the reading half has read but not yet acted on.
    pending: Pending,
}

/// Agent frames read but not yet handed to the provider, and the editors
/// the frames handed over posted to, not yet woken: both wait until the
/// next read from the socket would block, so a burst of frames takes the
/// provider's lock once and wakes each editor once.
#[derive(Default)]
struct Pending {
    burst: Burst,
    bells: Bells<ThreadBell>,
    /// Full bursts handed over since the editors were last woken.
    unrung: usize,
    /// The provider and the link's id, once the link is read.
    to: Option<(Shared, ConnId)>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.burst.is_empty() && self.bells.is_empty()
    }

    /// Hands the burst to the provider, then wakes the editors posted to.
    fn settle(&mut self) {
        self.unrung = 0;
        match &self.to {
            Some((shared, id)) => shared.hand_over(*id, &mut self.burst, &mut self.bells),
            None => self.bells.ring(),
        }
    }

    /// Hands a full burst to the provider while more frames wait: the
    /// editors are woken every [`YIELD_EVERY`] bursts, as the async
    /// runtimes let them run, so each writes that many bursts' chunks at
    /// once.
    fn settle_full(&mut self) {
        self.unrung += 1;
        match &self.to {
            Some((shared, id)) if self.unrung < YIELD_EVERY => {
                shared.take_over(*id, &mut self.burst, &mut self.bells)
            }
            _ => self.settle(),
        }
    }
}

impl LinkHalf {
    /// Two halves of `stream` sharing one write lock.
    pub fn pair(stream: &TcpStream) -> io::Result<(LinkHalf, LinkHalf)> {
        let write_lock = Arc::new(Mutex::new(()));
        let half = |stream| LinkHalf {
            stream,
            write_lock: write_lock.clone(),
            pending: Pending::default(),
        };
        Ok((half(stream.try_clone()?), half(stream.try_clone()?)))
    }

    /// A way for other threads to write this link's frames, beside its
    /// writer (`out`, shared with it).
    pub fn through(
        &self,
        out: Arc<Mutex<LinkOut>>,
        mail: Taker,
        (shared, id, backlog): (Shared, ConnId, Backlog),
    ) -> io::Result<LinkThrough> {
        Ok(LinkThrough {
            out,
            stream: self.stream.try_clone()?,
            write_lock: self.write_lock.clone(),
            mail,
            shared,
            id,
            backlog,
        })
    }
}

impl Read for LinkHalf {
    /// Reads what has arrived; only when nothing has (the read would
    /// wait) are the frames read so far handed to the provider and the
    /// editors they posted to woken.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.pending.is_empty() {
            match recv_now(&self.stream, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.pending.settle(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                done => return done,
            }
        }
        self.stream.read(buf)
    }
}

impl Write for LinkHalf {
    /// Writes all of `buf`, within the socket's write timeout in all: a
    /// peer that reads a trickle must not hold a write forever. One that
    /// waited past it fails as timed out, not as "would block": tungstenite
    /// would take that for a pong to retry later and read on, so a peer that
    /// pings and never reads would have its pongs pile up here.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let limit = self.stream.write_timeout().ok().flatten();
        let started = Instant::now();
        let mut rest = buf;
        while !rest.is_empty() {
            if limit.is_some_and(|limit| started.elapsed() >= limit) {
                return Err(io::ErrorKind::TimedOut.into());
            }
            match self.stream.write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::ErrorKind::TimedOut.into())
                }
                Err(e) => return Err(e),
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads an agent's frames into the provider (or a bridge client's into
/// the bridge) until the link closes; a link the peer broke is closed with
/// the code that says how.
pub fn read_frames(shared: &Shared, id: ConnId, mut ws: WebSocket<LinkHalf>, peer: Peer) {
    ws.get_mut().pending.to = Some((shared.clone(), id));
    let fault = loop {
        match ws.read() {
            Ok(Message::Text(text)) if peer == Peer::BridgeClient => {
                shared.socket_text(id, text.as_str());
            }
            Ok(Message::Text(text)) => {
                let pending = &mut ws.get_mut().pending;
                pending.burst.push(text.as_str());
                if pending.burst.is_full() {
                    pending.settle_full();
                }
            }
            Ok(Message::Binary(_)) => break Some(LinkClose::Binary),
            Ok(Message::Close(_)) => break None,
            Ok(_) => {}
            Err(e) => break ws::fault(&e),
        }
    };
    // What arrived before the end still counts.
    ws.get_mut().pending.settle();
    if let Some(why) = fault {
        let _ = ws
            .get_ref()
            .stream
            .set_write_timeout(Some(Duration::from_secs(1)));
        let _ = ws.close(Some(ws::close_frame(why)));
        let _ = ws.flush();
    }
    let _ = ws.get_ref().stream.shutdown(Shutdown::Both);
}

/// A link's mailbox, and what its writer and the threads writing through
/// share.
pub struct LinkMail<'a> {
    pub mail: &'a Mail,
    pub backlog: &'a Backlog,
    pub out: Arc<Mutex<LinkOut>>,
}

/// What an accepted link's writer thread and the threads writing through
/// share: whoever holds it writes the link's frames, so they go in order.
#[derive(Default)]
pub struct LinkOut {
    /// Outputs taken from the mailbox and not yet written.
    queued: VecDeque<Output>,
    /// Frames a thread writing through encoded and the socket did not take
    /// at once, and the backlog they carry: the writer sends them first.
    raw: Vec<u8>,
    raw_backlog: usize,
}

impl LinkOut {
    /// What the writer starts with: outputs taken before the link was.
    pub fn new(queued: VecDeque<Output>) -> Arc<Mutex<LinkOut>> {
        Arc::new(Mutex::new(LinkOut {
            queued,
            ..LinkOut::default()
        }))
    }
}

fn lock_out(out: &Mutex<LinkOut>) -> std::sync::MutexGuard<'_, LinkOut> {
    // Queueing and writing cannot leave it half-changed.
    out.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes the provider's messages for an agent until its mailbox closes or
/// the provider closes the link. Every message taken at once is queued,
/// then all are written together.
pub fn write_frames(shared: &Shared, id: ConnId, link: LinkMail, mut ws: WebSocket<LinkHalf>) {
    let LinkMail { mail, backlog, out } = link;
    loop {
        let mut held = lock_out(&out);
        let raw = std::mem::take(&mut held.raw);
        if !raw.is_empty() {
            if ws.get_mut().write(&raw).is_err() {
                break;
            }
            shared.written(id, backlog, std::mem::take(&mut held.raw_backlog));
        }
        mail.take(&mut held.queued);
        let writes = LinkWrites::take(&mut held.queued);
        let mut open = writes
            .texts
            .into_iter()
            .all(|text| ws.write(Message::text(text)).is_ok());
        if let Some(why) = writes.close.filter(|_| open) {
            let _ = ws.close(Some(ws::close_frame(why)));
        }
        let flushed = ws.flush().is_ok();
        drop(held);
        open &= writes.close.is_none() && flushed;
        shared.written(id, backlog, writes.bytes);
        if !open || mail.waiter().recv().is_err() {
            break;
        }
    }
    // Ends the reading half too, if it is still waiting for frames.
    let _ = ws.get_ref().stream.shutdown(Shutdown::Both);
}

/// Writes an accepted link's frames on the thread that posted them, when
/// the link's writer is not busy and the socket takes them at once: an
/// invocation then reaches its agent without waking the writer thread.
pub struct LinkThrough {
    out: Arc<Mutex<LinkOut>>,
    stream: TcpStream,
    write_lock: Arc<Mutex<()>>,
    mail: Taker,
    shared: Shared,
    id: ConnId,
    backlog: Backlog,
}

impl LinkThrough {
    /// Returns whether that left nothing for the writer thread to do.
    pub fn write(&self) -> bool {
        let Ok(mut held) = self.out.try_lock() else {
            return false;
        };
        if !held.raw.is_empty() || !held.queued.is_empty() {
            return false;
        }
        self.mail.take(&mut held.queued);
        if held
            .queued
            .iter()
            .any(|o| matches!(o, Output::CloseAgent { .. }))
        {
            // Closing is the writer's.
            return false;
        }
        let writes = LinkWrites::take(&mut held.queued);
        let mut raw = Vec::new();
        for text in &writes.texts {
            ws::encode_text(text, &mut raw);
        }
        let guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        match send_now(&self.stream, &raw) {
            Ok(n) if n == raw.len() => {}
            Ok(n) => {
                // A frame begun is finished before the other half may
                // write; a peer that does not take the rest in time is
                // too slow, and its link ends as the writer would end it.
                if (&self.stream)
                    .write_all(raw.get(n..).unwrap_or_default())
                    .is_err()
                {
                    let _ = self.stream.shutdown(Shutdown::Both);
                    return false;
                }
            }
            // Nothing went: the writer sends it (or finds the link broken).
            Err(_) => {
                drop(guard);
                held.raw = raw;
                held.raw_backlog = writes.bytes;
                return false;
            }
        }
        drop(guard);
        drop(held);
        self.shared.written(self.id, &self.backlog, writes.bytes);
        true
    }
}

/// Serves an established link: a writer thread for the mailbox, frames
/// read on this thread; returns once both have ended.
pub fn serve(shared: &Shared, reader: WebSocket<LinkHalf>, writer: WebSocket<LinkHalf>) {
    let (attached, mail, backlog) = shared.connect();
    let id = attached.id;
    shared.with(|p, _| p.open_agent(id, mcp_provider_kit::AGENT_HUB));
    let writer_shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("link-{}-writer", id.0))
        .stack_size(crate::conn::WRITER_STACK)
        .spawn(move || {
            let link = LinkMail {
                mail: &mail,
                backlog: &backlog,
                out: LinkOut::new(VecDeque::new()),
            };
            write_frames(&writer_shared, id, link, writer)
        });
    match spawned {
        Ok(handle) => {
            read_frames(shared, id, reader, Peer::Agent);
            drop(attached);
            let _ = handle.join();
        }
        Err(e) => tracing::warn!("cannot start a link writer thread: {e}"),
    }
}

/// Opens a WebSocket to `url` with the bridge token, as a client: the
/// reading instance (holding any bytes read past the handshake) and a
/// writing one, connected and the handshake done within [`LINK_DIAL_TIMEOUT`],
/// the socket then without timeouts; and how long the peer may stay
/// silent (see [`silence_limit`]).
pub fn dial(url: &str, token: &str) -> Result<(Ws, Duration), DialError> {
    let (request, host, port) =
        link_request(url, token).map_err(|e| DialError::Final(e.to_string()))?;
    let unreachable =
        |e: io::Error| DialError::Unreachable(format!("cannot connect to {url}: {e}"));
    let tcp = connect(&host, port).map_err(unreachable)?;
    let _ = tcp.set_nodelay(true);
    keep_alive(&tcp).map_err(unreachable)?;
    tcp.set_read_timeout(Some(LINK_DIAL_TIMEOUT))
        .and_then(|()| tcp.set_write_timeout(Some(LINK_DIAL_TIMEOUT)))
        .map_err(unreachable)?;
    let (read_half, write_half) = LinkHalf::pair(&tcp).map_err(unreachable)?;
    let (reader, response) = tungstenite::client(request, read_half).map_err(|e| match e {
        HandshakeError::Failure(e) => handshake_failed(url, e),
        HandshakeError::Interrupted(_) => DialError::Unreachable(format!(
            "{url} did not answer within {} s",
            LINK_DIAL_TIMEOUT.as_secs()
        )),
    })?;
    tcp.set_read_timeout(None)
        .and_then(|()| tcp.set_write_timeout(None))
        .map_err(unreachable)?;
    let writer = WebSocket::from_raw_socket(write_half, Role::Client, None);
    Ok(((reader, writer), silence_limit(&response)))
}

/// A TCP connection to `host`:`port`, trying each of its addresses for at
/// most [`LINK_DIAL_TIMEOUT`].
fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = None;
    for address in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&address, LINK_DIAL_TIMEOUT) {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
}

/// Dials the provider of `link`, its socket's reads and writes then
/// waiting no longer than the provider's silence may last: a provider
/// gone without closing ends the link (see [`silence_limit`]).
fn dial_provider(link: &Link) -> Result<Ws, DialError> {
    let ((reader, writer), limit) = dial(&link.url, &link.token)?;
    let stream = &reader.get_ref().stream;
    stream
        .set_read_timeout(Some(limit))
        .and_then(|()| stream.set_write_timeout(Some(limit)))
        .map_err(|e| DialError::Unreachable(format!("{}: {e}", link.url)))?;
    Ok((reader, writer))
}

/// How a link whose read or write failed with `e` ended, its socket's
/// timeout the silence it allows.
pub fn failed(ws: &WebSocket<LinkHalf>, e: &WsError) -> LinkEnd {
    link_failed(e, ws.get_ref().stream.read_timeout().ok().flatten())
}

/// A link to a provider: the reading instance and a writing one.
pub type Ws = (WebSocket<LinkHalf>, WebSocket<LinkHalf>);

/// The writing instance of a link, remembering its first failure: a link
/// that cannot be written to is dead (its reader says so shortly), what
/// the agent makes until then is dropped, and the failure is how it ended.
pub struct LinkSender {
    writer: WebSocket<LinkHalf>,
    failed: Option<LinkEnd>,
}

impl LinkSender {
    fn new(writer: WebSocket<LinkHalf>) -> Self {
        LinkSender {
            writer,
            failed: None,
        }
    }

    /// Sends `frames`, in order, while the link takes them.
    pub fn send_all(&mut self, frames: impl Iterator<Item = String>) {
        for frame in frames {
            if self.failed.is_none() {
                if let Err(e) = self.writer.send(Message::text(frame)) {
                    self.failed = Some(failed(&self.writer, &e));
                }
            }
        }
    }

    /// How the link ended: its first failed write, else what its reader saw.
    pub fn end(self, end: LinkEnd) -> LinkEnd {
        self.failed.unwrap_or(end)
    }
}

/// The first link: a provider that cannot be reached at start is an error
/// to show at once (a wrong URL or token), not a reason to wait.
pub fn first_link(link: &Link) -> Result<Ws, LinkStopped> {
    Ok(dial_provider(link)?)
}

/// After a link ended: the next one, dialed with backoff until the
/// provider is back — or why to stop (see [`Redial`]).
pub fn next_link(link: &Link, end: LinkEnd, tell: fn(&str)) -> Result<Ws, Stop> {
    let mut redial = Redial::after(link, end, tell)?;
    loop {
        std::thread::sleep(redial.wait());
        match dial_provider(link) {
            Ok(ws) => return Ok(ws),
            Err(e) => redial.failed(e)?,
        }
    }
}

/// Dials out to an agent hub and serves that connection as an agent link,
/// reconnecting with backoff (0.1 s doubling up to 30 s) whenever it drops.
pub fn dial_hub(shared: &Shared, url: &str, token: &str) {
    let mut backoff = Backoff::new(LINK_BACKOFF);
    loop {
        match serve_hub(shared, url, token, HUB_STALL, || backoff.reset()) {
            Ok(()) => tracing::warn!("agent hub {url} disconnected"),
            Err(e) => tracing::warn!("agent hub: {}", e.message()),
        }
        std::thread::sleep(backoff.next_wait());
    }
}

/// Dials an agent hub once (`connected` told when it answers) and serves
/// the link until it ends, a write that waited `stall` for the hub to read
/// ending it.
fn serve_hub(
    shared: &Shared,
    url: &str,
    token: &str,
    stall: Duration,
    connected: impl FnOnce(),
) -> Result<(), DialError> {
    // The hub is pinged by the provider, not the other way round: its
    // silence is no sign of anything.
    let ((reader, writer), _) = dial(url, token)?;
    tracing::info!("agent hub {url} connected");
    connected();
    // Both halves share the socket, and so its write timeout.
    reader
        .get_ref()
        .stream
        .set_write_timeout(Some(stall))
        .map_err(|e| DialError::Unreachable(format!("{url}: {e}")))?;
    serve(shared, reader, writer);
    Ok(())
}

/// Serves a new link: its frames, then how it ended, go to `tx` (through
/// `wrap`, after `notice` saw each) from a thread of their own; the link's
/// sending half comes back.
pub fn open_link<I: Send + 'static>(
    (reader, writer): Ws,
    tx: SyncSender<I>,
    wrap: impl Fn(FromLink) -> I + Send + 'static,
    notice: fn(&str),
) -> Result<LinkSender, RunError> {
    follow_remote(reader, move |got| {
        if let FromLink::Frame(frame) = &got {
            notice(frame);
        }
        tx.send(wrap(got)).is_ok()
    })?;
    Ok(LinkSender::new(writer))
}

/// Reads a remote agent's link on a thread of its own, passing each text
/// frame, then how the link ended, to `pass` (which returns false when
/// nobody listens any more).
fn follow_remote(
    mut reader: WebSocket<LinkHalf>,
    mut pass: impl FnMut(FromLink) -> bool + Send + 'static,
) -> Result<(), RunError> {
    std::thread::Builder::new()
        .name("agent-link".into())
        .spawn(move || {
            let end = loop {
                match reader.read() {
                    Ok(Message::Text(text)) => {
                        if !pass(FromLink::Frame(text.as_str().to_owned())) {
                            return;
                        }
                    }
                    Ok(Message::Close(frame)) => break LinkEnd::from_close(frame.as_ref()),
                    Ok(_) => {}
                    Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                        break LinkEnd::Closed(None)
                    }
                    Err(e) => break failed(&reader, &e),
                }
            };
            pass(FromLink::Closed(end));
        })
        .map(drop)
        .map_err(RunError::cannot("start the link thread"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_provider_core::Config;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A hub that pings and never reads what it is sent: once a pong has
    /// waited the stall limit to be written, the link ends (and the hub
    /// is dialed again).
    #[test]
    fn a_hub_that_stops_reading_loses_its_link() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}/v1/agent", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (socket, _) = listener.accept().unwrap();
            let mut hub = tungstenite::accept(socket).unwrap();
            let ping = vec![0u8; 125];
            // Until the provider gives the link up.
            while hub.send(Message::Ping(ping.clone().into())).is_ok() {}
        });
        let shared = crate::shared::start(Config::new(&["key"], "token"), None).unwrap();
        let (done, ended) = mpsc::channel();
        std::thread::spawn(move || {
            let served = serve_hub(&shared, &url, "token", Duration::from_millis(200), || {});
            let _ = done.send(served.is_ok());
        });
        assert_eq!(ended.recv_timeout(Duration::from_secs(30)), Ok(true));
    }
}
