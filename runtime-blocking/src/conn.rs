//! Editor connections: threads waiting in `accept` on each listener (the
//! one that accepts a connection reads it, another already waits for the
//! next), and for each connection a reader thread (socket → the core's HTTP
//! reader → the provider) and a writer thread (mailbox → encoded responses
//! → socket).
//!
//! Two threads because a blocking socket cannot wait for the client and for
//! the provider at once: the reader notices an editor hanging up mid-stream
//! at once (its request is cancelled), while the writer blocks only on its
//! own client. A connection that upgrades to WebSocket keeps both threads
//! as the agent link's reader and writer.
//!
//! Most answers never wake the writer: the thread that posts them (the
//! reader, an agent link's reader, a bridged child's reader) writes them
//! itself when the writer is not busy and the socket takes them whole at
//! once ([`Conn::write_through`]); an agent link's frames likewise
//! ([`LinkThrough`]). The writer is woken for the rest: a client slow to
//! read, a WebSocket upgrade, pipelined requests.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mcp_provider_core::backlog::Backlog;
use mcp_provider_core::http::ServerConn;
use mcp_provider_core::stream::Answering;
use mcp_provider_core::time::later;
use mcp_provider_core::{too_many_connections, ConnId, Output, Upgrade};
use mcp_provider_kit::agent::dial::accept_head;
use mcp_provider_kit::outbound::upstream::threads::carrying_here;
use mcp_provider_kit::serve::accept;
use mcp_provider_kit::serve::admission::{
    self, Admission, Admitted, Reclaim, REFUSALS_HELD, REFUSAL_HOLD,
};
use mcp_provider_kit::serve::hub::Peer;
use mcp_provider_kit::serve::mailbox::Taker;
use mcp_provider_kit::ConnLimits;
use tungstenite::protocol::Role;
use tungstenite::WebSocket;

use crate::link::{self, LinkHalf, LinkMail, LinkOut, LinkThrough};
use crate::now::send_now;
use crate::pool::{Done, Pool, MAX_IDLE};
use crate::shared::{Mail, Shared};

/// Stack of a reader thread: it runs the provider (JSON parsing included).
const READER_STACK: usize = 1024 * 1024;
/// Stack of a writer thread: it only encodes and writes.
pub const WRITER_STACK: usize = 128 * 1024;

/// The connections' reader threads, kept for the next connection: as many
/// as a pool keeps, counting those waiting in `accept`.
static READERS: Pool = Pool::new("conn-reader", READER_STACK, MAX_IDLE - ACCEPTING);
/// Their writer threads, likewise.
static WRITERS: Pool = Pool::new("conn-writer", WRITER_STACK, MAX_IDLE);

/// What the reader and writer threads of one connection share.
struct ConnState {
    http: ServerConn,
    /// Set by the writer once it accepted a WebSocket upgrade: the bytes
    /// read past the upgrade request, and the link's reading half.
    upgraded: Option<(Bytes, LinkHalf, Peer)>,
    /// Set once the writer stopped: nothing more will be written.
    writer_done: bool,
    /// The reader waits for the writer (see [`Conn::wait_while`]).
    reader_waits: bool,
    /// The connection's place under the cap, until it ends.
    open: Option<Admitted>,
}

/// What the writer thread and the threads writing through share: whoever
/// holds it carries the mailbox's outputs out, in order.
struct WriteSide {
    /// Outputs taken from the mailbox and not yet encoded.
    outputs: VecDeque<Output>,
    /// Encoded and not yet written: what a write-through could not write.
    out: BytesMut,
    /// The answer in progress, written by whichever thread encodes.
    answering: Answering,
    /// The backlog bytes of the outputs in `out`.
    carried: usize,
    /// Other threads may write: not once the writer stopped or the
    /// connection became a WebSocket.
    through: bool,
    /// Once the connection is a WebSocket, how other threads write its
    /// frames.
    link: Option<LinkThrough>,
}

/// What encoding a batch of outputs came to.
enum Batch {
    /// HTTP bytes to write, and the connection's state after them.
    Http {
        idle: bool,
        close: bool,
        /// Bytes of a next request are buffered, or the peer shut its
        /// side: once idle, a pump is due to hand on the next request or
        /// to find the connection done.
        pump_due: bool,
    },
    /// A WebSocket upgrade to accept once the bytes before it are written.
    Upgrade(Upgrade),
}

#[derive(Clone)]
struct Conn {
    id: ConnId,
    shared: Shared,
    state: Arc<(Mutex<ConnState>, Condvar)>,
    side: Arc<Mutex<WriteSide>>,
    mail: Taker,
    backlog: Backlog,
    stream: Arc<TcpStream>,
    /// Shuts `stream`, for a new connection at the cap while this one
    /// waits for its client.
    reclaim: Reclaim,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn side(&self) -> MutexGuard<'_, WriteSide> {
        // Encoding or writing cannot leave the side half-changed.
        self.side.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the reader waiting for the writer (a response ended, an
    /// upgrade was accepted, the writer stopped).
    fn notify(&self) {
        self.state.1.notify_all();
    }

    /// Encodes the outputs `side` holds after what it already encoded, up
    /// to an upgrade.
    fn encode(&self, side: &mut WriteSide) -> Batch {
        let mut state = self.lock();
        while let Some(output) = side.outputs.pop_front() {
            side.carried += output.backlog_bytes();
            let answering = &mut side.answering;
            if let Some(upgrade) = output.encode_http(&mut state.http, answering, &mut side.out) {
                return Batch::Upgrade(upgrade);
            }
        }
        // Written in a moment: an answer that ended starts the idle
        // deadline now.
        state.http.handle_written(Instant::now());
        Batch::Http {
            idle: state.http.is_idle(),
            close: state.http.wants_close(),
            pump_due: state.http.buffered() > 0 || !state.http.wants_read(),
        }
    }

    /// Writes the mailbox's outputs on the calling thread, if the writer
    /// is not busy and the socket takes them whole without waiting.
    /// Returns whether that left nothing for the writer thread to do.
    fn write_through(&self) -> bool {
        let Ok(mut side) = self.side.try_lock() else {
            return false;
        };
        if let Some(link) = &side.link {
            return link.write();
        }
        if !side.through || !side.out.is_empty() || !side.outputs.is_empty() {
            return false;
        }
        self.mail.take(&mut side.outputs);
        if side.outputs.iter().any(Output::is_upgrade) {
            return false;
        }
        let Batch::Http {
            idle,
            close,
            pump_due,
        } = self.encode(&mut side)
        else {
            return false;
        };
        match send_now(&self.stream, &side.out) {
            Ok(n) if n == side.out.len() => side.out.clear(),
            Ok(n) => {
                let _ = side.out.split_to(n);
                return false;
            }
            Err(_) => return false,
        }
        let carried = std::mem::take(&mut side.carried);
        drop(side);
        self.shared.written(self.id, &self.backlog, carried);
        if idle {
            self.idle_if_waiting();
            if self.lock().reader_waits {
                self.notify();
            }
        }
        // Closing, and pumping, are the writer's.
        !(close || (idle && pump_due))
    }

    /// Makes the connection reclaimable if it waits for its client with
    /// everything written; a writer busy now does this once it is done.
    fn idle_if_waiting(&self) {
        let Ok(side) = self.side.try_lock() else {
            return;
        };
        if !side.out.is_empty() || !side.outputs.is_empty() {
            return;
        }
        let mut state = self.lock();
        if admission::waiting(&state.http) {
            if let Some(open) = &mut state.open {
                open.idle(&self.reclaim, Instant::now());
            }
        }
    }

    /// Waits, up to `limit`, while `blocked` holds.
    fn wait_while<'a>(
        &'a self,
        mut state: MutexGuard<'a, ConnState>,
        limit: Duration,
        blocked: impl Fn(&ConnState) -> bool,
    ) -> MutexGuard<'a, ConnState> {
        let deadline = later(Instant::now(), limit);
        while blocked(&state) && !state.writer_done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state.reader_waits = true;
            state = match self.state.1.wait_timeout(state, left) {
                Ok((s, _)) => s,
                Err(e) => e.into_inner().0,
            };
        }
        state.reader_waits = false;
        state
    }

    /// Hands the provider every request the HTTP reader has ready (one at
    /// a time: the next once the previous was answered). Returns whether a
    /// WebSocket upgrade was handed on, and any interim answer
    /// (`100 Continue`) to write.
    fn pump(&self) -> (bool, Option<Bytes>) {
        let pumped = self
            .shared
            .pump(self.id, || self.lock().http.poll_request());
        let interim = match pumped.handled {
            true => None,
            false => self.lock().http.poll_interim(),
        };
        (pumped.upgrade, interim)
    }
}

/// Accepts connections on `listener` until the process ends. The thread
/// that accepts a connection serves it itself, so a new connection's first
/// request waits on no other thread's wake-up; while it does, another
/// thread waits in `accept` already (several may: the kernel gives each
/// connection to one of them), and when none would be left it first hands
/// accepting on to a kept thread. A thread whose connection ended goes
/// back to accepting while fewer than [`ACCEPTING`] do. Refusals are
/// handed to a thread of their own, so accepting never waits on a client.
pub fn accept_loop(shared: Shared, listener: TcpListener, limits: ConnLimits) -> io::Result<()> {
    let acceptor = Acceptor {
        shared,
        listener: Arc::new(listener),
        limits,
        admission: Admission::new(limits.max_connections),
        refuse: Refuser::start()?,
        accepting: Arc::new(AtomicUsize::new(0)),
    };
    READERS.run(move || acceptor.run())?;
    Ok(())
}

/// Threads kept waiting in `accept` once their connections ended, so that
/// connections coming while others are served (an editor opens its next
/// stream as soon as the last one's head came) find one there, and no
/// thread is woken to take over accepting.
const ACCEPTING: usize = 4;

/// What the threads accepting connections share.
#[derive(Clone)]
struct Acceptor {
    shared: Shared,
    listener: Arc<TcpListener>,
    limits: ConnLimits,
    admission: Admission,
    refuse: Refuser,
    /// Threads in (or about to call) `accept`.
    accepting: Arc<AtomicUsize>,
}

impl Acceptor {
    /// Accepts a connection and serves it here, handing accepting on first
    /// when no other thread is left accepting, then accepts again unless
    /// [`ACCEPTING`] threads do. A thread that cannot hand on keeps
    /// accepting, and its connections are served on threads of their own.
    fn run(self) {
        let mut failures = accept::Failures::default();
        if !self.join_accepting() {
            // Others went back to accepting since this thread was asked.
            return;
        }
        loop {
            let (stream, admitted, others) = self.next(&mut failures);
            if others == 0 {
                let next = self.clone();
                if let Err(e) = READERS.run(move || next.run()) {
                    tracing::warn!("cannot start an accepting thread: {e}");
                    self.accepting.fetch_add(1, Ordering::SeqCst);
                    self.serve_elsewhere(stream, admitted);
                    continue;
                }
            }
            connection(&self.shared, stream, self.limits, admitted);
            if !self.join_accepting() {
                return;
            }
        }
    }

    /// Counts this thread among those accepting, unless [`ACCEPTING`]
    /// already are (then it is not needed there).
    fn join_accepting(&self) -> bool {
        let join = |n: usize| (n < ACCEPTING).then_some(n + 1);
        self.accepting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, join)
            .is_ok()
    }

    /// The next connection admitted (others are refused), and how many
    /// other threads are left accepting. The calling thread counts as
    /// accepting until it returns.
    fn next(&self, failures: &mut accept::Failures) -> (TcpStream, Admitted, usize) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) => {
                    std::thread::sleep(failures.failed(&e, Instant::now()));
                    continue;
                }
            };
            let Some(admitted) = self.admission.admit(Instant::now()) else {
                self.refuse.refuse(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let others = self
                .accepting
                .fetch_sub(1, Ordering::SeqCst)
                .saturating_sub(1);
            return (stream, admitted, others);
        }
    }

    /// Serves `stream` on a thread of its own, or refuses it if none can
    /// start.
    fn serve_elsewhere(&self, stream: TcpStream, admitted: Admitted) {
        let (shared, limits) = (self.shared.clone(), self.limits);
        // The stream moves into the thread; keep a handle to refuse it if
        // the thread cannot start.
        let spare = stream.try_clone();
        let started = READERS.run(move || connection(&shared, stream, limits, admitted));
        if let Err(e) = started {
            tracing::warn!("cannot start a connection thread: {e}");
            if let Ok(stream) = spare {
                self.refuse.refuse(stream);
            }
        }
    }
}

/// Answers 503 to connections that will not be served, on one thread: each
/// is written its answer without blocking, then held briefly while what it
/// sent is read, so closing does not reset it before it reads the answer.
#[derive(Clone)]
struct Refuser(SyncSender<TcpStream>);

impl Refuser {
    fn start() -> io::Result<Refuser> {
        let (tx, rx) = mpsc::sync_channel::<TcpStream>(REFUSALS_HELD);
        std::thread::Builder::new()
            .name("refuse".into())
            .stack_size(WRITER_STACK)
            .spawn(move || {
                let mut held: Vec<(TcpStream, Instant)> = Vec::new();
                let answer = too_many_connections();
                loop {
                    let next = match held.is_empty() {
                        true => rx.recv().ok(),
                        false => rx.recv_timeout(Duration::from_millis(20)).ok(),
                    };
                    if let Some(mut stream) = next {
                        let _ = stream.set_nonblocking(true);
                        let _ = stream.write(&answer);
                        let _ = stream.shutdown(Shutdown::Write);
                        held.push((stream, Instant::now() + REFUSAL_HOLD));
                    }
                    let mut sink = [0u8; 4096];
                    held.retain_mut(|(stream, until)| {
                        let drained = matches!(stream.read(&mut sink), Ok(0));
                        !drained && Instant::now() < *until
                    });
                }
            })?;
        Ok(Refuser(tx))
    }

    fn refuse(&self, stream: TcpStream) {
        // Full: the stream is dropped, which closes it.
        let _ = self.0.try_send(stream);
    }
}

/// One editor connection, on its reader thread, counted under the cap as
/// `open`.
fn connection(shared: &Shared, stream: TcpStream, limits: ConnLimits, open: Admitted) {
    let read_timeout = limits.read_timeout;
    let (attached, mail, backlog) = shared.connect();
    let Ok(out) = stream.try_clone() else {
        return;
    };
    let _ = out.set_write_timeout(Some(read_timeout));
    let out = Arc::new(out);
    let shut = out.clone();
    let reclaim: Reclaim = Arc::new(move || {
        let _ = shut.shutdown(Shutdown::Both);
    });
    let conn = Conn {
        id: attached.id,
        shared: shared.clone(),
        state: Arc::new((
            Mutex::new(ConnState {
                http: ServerConn::new(limits.http, Instant::now()),
                upgraded: None,
                writer_done: false,
                reader_waits: false,
                open: Some(open),
            }),
            Condvar::new(),
        )),
        side: Arc::new(Mutex::new(WriteSide {
            outputs: VecDeque::new(),
            out: BytesMut::new(),
            answering: Answering::default(),
            carried: 0,
            through: true,
            link: None,
        })),
        mail: mail.taker(),
        backlog,
        stream: out,
        reclaim,
    };
    let writer = Arc::new_cyclic(|lazy: &Weak<Mutex<Writer>>| {
        let (through, lazy) = (conn.clone(), lazy.clone());
        mail.waiter().write_through(Box::new(move || {
            through.write_through() || {
                if let Some(writer) = lazy.upgrade() {
                    Writer::start(&writer);
                }
                false
            }
        }));
        Mutex::new(Writer::Idle(conn.clone(), mail))
    });
    if let Some((leftover, half, peer)) = read_loop(&conn, stream, read_timeout) {
        let ws = WebSocket::from_partially_read(
            half,
            leftover.to_vec(),
            Role::Server,
            Some(mcp_provider_kit::serve::ws::config()),
        );
        link::read_frames(shared, conn.id, ws, peer);
    }
    conn.lock().open = None;
    drop(attached);
    Writer::end(&writer);
}

/// A connection's writer thread. It is started the first time a
/// write-through leaves it something to do (a slow reader, an upgrade, a
/// pipelined request, a close), so most connections never start one, and
/// a new connection's first answer waits on no thread start.
enum Writer {
    /// Not needed yet: what it will run with.
    Idle(Conn, Mail),
    Running(Done),
    /// The connection ended (or the writer could not start).
    Ended,
}

fn lock_writer(writer: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    // Swapping the state cannot panic halfway.
    writer.lock().unwrap_or_else(|e| e.into_inner())
}

impl Writer {
    /// Starts the writer thread if it is not running yet. One that cannot
    /// start ends the connection, as a writer that stopped would.
    fn start(writer: &Mutex<Writer>) {
        let mut writer = lock_writer(writer);
        let Writer::Idle(conn, mail) = std::mem::replace(&mut *writer, Writer::Ended) else {
            return;
        };
        let failed = conn.clone();
        match WRITERS.run(move || write_loop(&conn, &mail)) {
            Ok(done) => *writer = Writer::Running(done),
            Err(e) => {
                tracing::warn!("cannot start a connection writer: {e}");
                drop(WriterDone(&failed));
            }
        }
    }

    /// No writer starts from now on; waits for the one that did.
    fn end(writer: &Mutex<Writer>) {
        let ended = std::mem::replace(&mut *lock_writer(writer), Writer::Ended);
        if let Writer::Running(done) = ended {
            done.wait();
        }
    }
}

/// Reads requests until the connection ends, times out idle, or becomes an
/// agent link (then returns what the link reads from).
fn read_loop(
    conn: &Conn,
    mut stream: TcpStream,
    read_timeout: Duration,
) -> Option<(Bytes, LinkHalf, Peer)> {
    let mut buf = vec![0u8; mcp_provider_kit::READ_BUFFER];
    let mut timeout = ReadTimeout::default();
    let upgraded = loop {
        // A full pipeline is not read until the response in progress ends;
        // its peer then waits on TCP.
        let state = conn.wait_while(conn.lock(), read_timeout, |s| !s.http.wants_read());
        // An idle connection has what is left of its deadline to send a
        // whole request; one being answered just keeps listening.
        let wait = match state.http.poll_timeout() {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => read_timeout,
        };
        drop(state);
        conn.idle_if_waiting();
        timeout.set(&stream, wait);
        let read = stream.read(&mut buf);
        let mut state = conn.lock();
        if let Some(taken) = take_upgrade(&mut state, &read, &buf) {
            let _ = stream.set_read_timeout(None);
            break Some(taken);
        }
        match read {
            Ok(0) => {
                // The peer shut its side: what it sent in full is still
                // answered, then the connection closes.
                state.http.handle_eof();
                drop(state);
                conn.pump();
                conn.shared.peer_shut(conn.id);
                // However long the answers take: the idle timeout is for
                // peers that send nothing, and this one is done sending.
                let mut state = conn.lock();
                while !state.http.wants_close() && !state.writer_done {
                    state = conn.wait_while(state, read_timeout, |s| !s.http.wants_close());
                }
                drop(state);
                break None;
            }
            Ok(n) => {
                if state.open.as_mut().is_some_and(|open| !open.busy()) {
                    // Reclaimed as the request came: it is for a
                    // connection that is closing.
                    break None;
                }
                state.http.handle_data(&buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                timeout.expired();
                if state
                    .http
                    .poll_timeout()
                    .is_some_and(|at| at <= Instant::now())
                {
                    break None;
                }
                continue;
            }
            // A signal landed on this thread (a reload's SIGHUP, a
            // debugger attaching): a socket with a read timeout is not
            // restarted by the kernel, so the read is made again here.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break None,
        }
        drop(state);
        // This thread would only wait for the answer: it makes a remote
        // server's exchange itself, and is back to its client soon enough
        // to notice it leave.
        let (upgrade, interim) = carrying_here(|| conn.pump());
        if let Some(interim) = interim {
            if stream.write_all(&interim).is_err() {
                break None;
            }
        }
        if upgrade {
            // The agent may have sent its first frame with the upgrade
            // request: wait for the writer's verdict instead of a read.
            let mut state = conn.wait_while(conn.lock(), read_timeout, |s| {
                s.upgraded.is_none() && !s.http.is_idle()
            });
            if let Some(upgraded) = state.upgraded.take() {
                let _ = stream.set_read_timeout(None);
                break Some(upgraded);
            }
        }
    };
    if upgraded.is_none() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    upgraded
}

/// The socket's read timeout, changed only when a read must end sooner
/// than it would: each change is a system call, and the wait before every
/// read is a little shorter than the one before.
#[derive(Default)]
struct ReadTimeout {
    set: Option<Duration>,
}

impl ReadTimeout {
    /// Makes the next read end within about `wait`: the timeout already
    /// set is kept while it is within a sixteenth of `wait` either way (at
    /// most that late; the caller checks its deadline again when it ends
    /// early), so a request's answer keeps its idle wait's timeout.
    fn set(&mut self, stream: &TcpStream, wait: Duration) {
        let wait = wait.max(Duration::from_millis(1));
        let near = |set: Duration| set.abs_diff(wait) <= wait / 16;
        if self.set.is_some_and(near) {
            return;
        }
        if stream.set_read_timeout(Some(wait)).is_ok() {
            self.set = Some(wait);
        }
    }

    /// A read timed out: the next wait is set afresh.
    fn expired(&mut self) {
        self.set = None;
    }
}

/// The link's reading half, once the writer accepted an upgrade, with
/// what was read past the request (including this read).
fn take_upgrade(
    state: &mut ConnState,
    read: &io::Result<usize>,
    buf: &[u8],
) -> Option<(Bytes, LinkHalf, Peer)> {
    let (mut leftover, half, peer) = state.upgraded.take()?;
    if let Ok(n) = read {
        leftover = [&leftover[..], buf.get(..*n).unwrap_or_default()]
            .concat()
            .into();
    }
    Some((leftover, half, peer))
}

/// Writes what the provider answers, when rung for what the threads
/// writing through left, until the connection ends; after an accepted
/// upgrade, goes on as the agent link's writer.
fn write_loop(conn: &Conn, mail: &Mail) {
    // However this thread ends (a panic included), the reader is woken and
    // the socket shut.
    let _done = WriterDone(conn);
    let mut stream = &*conn.stream;
    while mail.waiter().recv().is_ok() {
        let mut side = conn.side();
        mail.take(&mut side.outputs);
        let (idle, close) = match conn.encode(&mut side) {
            Batch::Http { idle, close, .. } => (idle, close),
            Batch::Upgrade(upgrade) => {
                side.through = false;
                let out = std::mem::take(&mut side.out);
                let link = LinkMail {
                    mail,
                    backlog: &conn.backlog,
                    out: LinkOut::new(std::mem::take(&mut side.outputs)),
                };
                drop(side);
                return accept_upgrade(conn, stream, &upgrade, out, link);
            }
        };
        let written = stream.write_all(&side.out).is_ok();
        side.out.clear();
        let carried = std::mem::take(&mut side.carried);
        drop(side);
        if !written || close {
            break;
        }
        conn.shared.written(conn.id, &conn.backlog, carried);
        if idle {
            // Pipelined requests may be waiting for this answer to end,
            // and the reader for room in the pipeline (or, after EOF, for
            // the word to close).
            let (_, interim) = conn.pump();
            conn.idle_if_waiting();
            conn.notify();
            if let Some(interim) = interim {
                if stream.write_all(&interim).is_err() {
                    break;
                }
            }
        }
    }
}

/// Marks the writer stopped and shuts the socket when dropped.
struct WriterDone<'a>(&'a Conn);

impl Drop for WriterDone<'_> {
    fn drop(&mut self) {
        let mut side = self.0.side();
        side.through = false;
        side.link = None;
        drop(side);
        self.0.lock().writer_done = true;
        self.0.notify();
        let _ = self.0.stream.shutdown(Shutdown::Both);
    }
}

/// Accepts a WebSocket upgrade: hands the reader its half of the link (and
/// the bytes read past the request) before answering 101, then writes the
/// link's frames.
fn accept_upgrade(
    conn: &Conn,
    mut stream: &TcpStream,
    upgrade: &Upgrade,
    mut out: BytesMut,
    link: LinkMail,
) {
    if let Ok((read_half, write_half)) = LinkHalf::pair(stream) {
        let mut state = conn.lock();
        let leftover = state.http.take_upgrade_bytes();
        state.upgraded = Some((leftover, read_half, Peer::from(upgrade)));
        drop(state);
        conn.notify();
        out.extend_from_slice(&accept_head(upgrade));
        if stream.write_all(&out).is_ok() {
            // Frames may go out now that the 101 has.
            let owner = (conn.shared.clone(), conn.id, conn.backlog.clone());
            if let Ok(through) = write_half.through(link.out.clone(), conn.mail.clone(), owner) {
                conn.side().link = Some(through);
            }
            link::write_frames(
                &conn.shared,
                conn.id,
                link,
                WebSocket::from_raw_socket(
                    write_half,
                    Role::Server,
                    Some(mcp_provider_kit::serve::ws::config()),
                ),
            );
        }
    }
}
