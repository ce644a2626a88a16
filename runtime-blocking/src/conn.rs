//! Editor connections: an accept thread per listener, and for each
//! connection a reader thread (socket → the core's HTTP reader → the
//! provider) and a writer thread (mailbox → encoded responses → socket).
//!
//! Two threads because a blocking socket cannot wait for the client and for
//! the provider at once: the reader notices an editor hanging up mid-stream
//! at once (its request is cancelled), while the writer blocks only on its
//! own client. A connection that upgrades to WebSocket keeps both threads
//! as the agent link's reader and writer.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mcp_provider_cli::admission::{Admission, REFUSALS_HELD, REFUSAL_HOLD};
use mcp_provider_cli::dial::accept_head;
use mcp_provider_cli::hub::Peer;
use mcp_provider_cli::ConnLimits;
use mcp_provider_core::backlog::Backlog;
use mcp_provider_core::http::ServerConn;
use mcp_provider_core::{too_many_connections, ConnId, Upgrade};
use tungstenite::protocol::Role;
use tungstenite::WebSocket;

use crate::link::{self, LinkHalf, LinkMail};
use crate::shared::{Mail, Shared};

/// Stack of a reader thread: it runs the provider (JSON parsing included).
const READER_STACK: usize = 1024 * 1024;
/// Stack of a writer thread: it only encodes and writes.
pub const WRITER_STACK: usize = 128 * 1024;

/// What the reader and writer threads of one connection share.
struct ConnState {
    http: ServerConn,
    /// Set by the writer once it accepted a WebSocket upgrade: the bytes
    /// read past the upgrade request, and the link's reading half.
    upgraded: Option<(Bytes, LinkHalf, Peer)>,
    /// Set once the writer stopped: nothing more will be written.
    writer_done: bool,
}

#[derive(Clone)]
struct Conn {
    id: ConnId,
    shared: Shared,
    state: Arc<(Mutex<ConnState>, Condvar)>,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the reader waiting for the writer (a response ended, an
    /// upgrade was accepted, the writer stopped).
    fn notify(&self) {
        self.state.1.notify_all();
    }

    /// Waits, up to `limit`, while `blocked` holds.
    fn wait_while<'a>(
        &'a self,
        mut state: MutexGuard<'a, ConnState>,
        limit: Duration,
        blocked: impl Fn(&ConnState) -> bool,
    ) -> MutexGuard<'a, ConnState> {
        let deadline = Instant::now() + limit;
        while blocked(&state) && !state.writer_done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = match self.state.1.wait_timeout(state, left) {
                Ok((s, _)) => s,
                Err(e) => e.into_inner().0,
            };
        }
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

/// Accepts connections on `listener` until the process ends. Refusals
/// are handed to a thread of their own, so the accept loop never waits on
/// a client.
pub fn accept_loop(shared: &Shared, listener: &TcpListener, limits: ConnLimits) {
    let admission = Admission::new(limits.max_connections);
    let refuse = match Refuser::start() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the refusal thread: {e}");
            return;
        }
    };
    let mut last_warning: Option<Instant> = None;
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!("accept failed: {e}");
                    last_warning = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Some(admitted) = admission.admit() else {
            refuse.refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        // The stream moves into the thread; keep a handle to refuse it if
        // the thread cannot start.
        let spare = stream.try_clone();
        let spawned = std::thread::Builder::new()
            .name("conn-reader".into())
            .stack_size(READER_STACK)
            .spawn(move || {
                let _open = admitted;
                connection(&shared, stream, limits);
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a connection thread: {e}");
            if let Ok(stream) = spare {
                refuse.refuse(stream);
            }
        }
    }
}

/// Answers 503 to connections that will not be served, on one thread: each
/// is written its answer without blocking, then held briefly while what it
/// sent is read, so closing does not reset it before it reads the answer.
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

/// One editor connection, on its reader thread.
fn connection(shared: &Shared, stream: TcpStream, limits: ConnLimits) {
    let read_timeout = limits.read_timeout;
    let (attached, mail, backlog) = shared.connect();
    let conn = Conn {
        id: attached.id,
        shared: shared.clone(),
        state: Arc::new((
            Mutex::new(ConnState {
                http: ServerConn::new(limits.http, Instant::now()),
                upgraded: None,
                writer_done: false,
            }),
            Condvar::new(),
        )),
    };
    let writer = stream.try_clone().and_then(|out| {
        let _ = out.set_write_timeout(Some(read_timeout));
        let conn = conn.clone();
        std::thread::Builder::new()
            .name("conn-writer".into())
            .stack_size(WRITER_STACK)
            .spawn(move || write_loop(&conn, out, &mail, &backlog))
    });
    let writer = match writer {
        Ok(handle) => handle,
        Err(e) => {
            tracing::warn!("cannot start a connection writer: {e}");
            drop(attached);
            return;
        }
    };
    if let Some((leftover, half, peer)) = read_loop(&conn, stream, read_timeout) {
        let ws = WebSocket::from_partially_read(
            half,
            leftover.to_vec(),
            Role::Server,
            Some(link::config()),
        );
        link::read_frames(shared, conn.id, ws, peer);
    }
    drop(attached);
    let _ = writer.join();
}

/// Reads requests until the connection ends, times out idle, or becomes an
/// agent link (then returns what the link reads from).
fn read_loop(
    conn: &Conn,
    mut stream: TcpStream,
    read_timeout: Duration,
) -> Option<(Bytes, LinkHalf, Peer)> {
    let mut buf = vec![0u8; mcp_provider_cli::READ_BUFFER];
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
        let _ = stream.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
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
                // However long the answers take: the idle timeout is for
                // peers that send nothing, and this one is done sending.
                let mut state = conn.lock();
                while !state.http.wants_close() && !state.writer_done {
                    state = conn.wait_while(state, read_timeout, |s| !s.http.wants_close());
                }
                drop(state);
                break None;
            }
            Ok(n) => state.http.handle_data(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if state
                    .http
                    .poll_timeout()
                    .is_some_and(|at| at <= Instant::now())
                {
                    break None;
                }
                continue;
            }
            Err(_) => break None,
        }
        drop(state);
        let (upgrade, interim) = conn.pump();
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

/// Writes what the provider answers until the connection ends; after an
/// accepted upgrade, goes on as the agent link's writer.
fn write_loop(conn: &Conn, stream: TcpStream, mail: &Mail, backlog: &Backlog) {
    // However this thread ends (a panic included), the reader is woken and
    // the socket shut.
    let done = WriterDone { conn, stream };
    let mut out = BytesMut::new();
    let mut outputs = VecDeque::new();
    while mail.waiter().recv().is_ok() {
        mail.take(&mut outputs);
        let mut state = conn.lock();
        let mut carried = 0;
        while let Some(output) = outputs.pop_front() {
            carried += output.backlog_bytes();
            if let Some(upgrade) = output.encode_http(&mut state.http, &mut out) {
                let link = LinkMail {
                    mail,
                    backlog,
                    queued: outputs,
                };
                return accept_upgrade(conn, state, &done.stream, &upgrade, out, link);
            }
        }
        // Written in a moment: an answer that ended starts the idle
        // deadline now.
        state.http.handle_written(Instant::now());
        let idle = state.http.is_idle();
        let close = state.http.wants_close();
        drop(state);
        if (&done.stream).write_all(&out).is_err() || close {
            break;
        }
        out.clear();
        conn.shared.written(conn.id, backlog, carried);
        if idle {
            // Pipelined requests may be waiting for this answer to end,
            // and the reader for room in the pipeline (or, after EOF, for
            // the word to close).
            let (_, interim) = conn.pump();
            conn.notify();
            if let Some(interim) = interim {
                if (&done.stream).write_all(&interim).is_err() {
                    break;
                }
            }
        }
    }
}

/// Marks the writer stopped and shuts the socket when dropped.
struct WriterDone<'a> {
    conn: &'a Conn,
    stream: TcpStream,
}

impl Drop for WriterDone<'_> {
    fn drop(&mut self) {
        self.conn.lock().writer_done = true;
        self.conn.notify();
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Accepts a WebSocket upgrade: hands the reader its half of the link (and
/// the bytes read past the request) before answering 101, then writes the
/// link's frames.
fn accept_upgrade(
    conn: &Conn,
    mut state: MutexGuard<'_, ConnState>,
    mut stream: &TcpStream,
    upgrade: &Upgrade,
    mut out: BytesMut,
    link: LinkMail,
) {
    if let Ok((read_half, write_half)) = LinkHalf::pair(stream) {
        let leftover = state.http.take_upgrade_bytes();
        state.upgraded = Some((leftover, read_half, Peer::from(upgrade)));
        drop(state);
        conn.notify();
        out.extend_from_slice(&accept_head(upgrade));
        if stream.write_all(&out).is_ok() {
            link::write_frames(
                &conn.shared,
                conn.id,
                link,
                WebSocket::from_raw_socket(write_half, Role::Server, Some(link::config())),
            );
        }
    }
}
