//! Editor connections: an accept thread per listener, and for each
//! connection a reader thread (socket → the core's HTTP reader → the
//! provider) and a writer thread (mailbox → encoded responses → socket).
//!
//! Two threads because a blocking socket cannot wait for the client and for
//! the provider at once: the reader notices an editor hanging up mid-stream
//! at once (its request is cancelled), while the writer blocks only on its
//! own client. A connection that upgrades to WebSocket keeps both threads
//! as the agent link's reader and writer.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mcp_provider_cli::ConnLimits;
use mcp_provider_core::http::{websocket_accept, ServerConn};
use mcp_provider_core::{too_many_connections, ConnId, Output};
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::Role;
use tungstenite::WebSocket;

use crate::link::{self, LinkHalf};
use crate::shared::{Mailbox, Shared};

/// Stack of a reader thread: it runs the provider (JSON parsing included).
const READER_STACK: usize = 1024 * 1024;
/// Stack of a writer thread: it only encodes and writes.
pub const WRITER_STACK: usize = 128 * 1024;

/// What the reader and writer threads of one connection share.
struct ConnState {
    http: ServerConn,
    /// When the connection last had no request being answered.
    idle_since: Instant,
    /// Set by the writer once it accepted a WebSocket upgrade: the bytes
    /// read past the upgrade request, and the link's reading half.
    upgraded: Option<(Bytes, LinkHalf)>,
}

#[derive(Clone)]
struct Conn {
    id: ConnId,
    shared: Shared,
    state: Arc<Mutex<ConnState>>,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands the provider every request the HTTP reader has ready (one at
    /// a time: the next once the previous was answered).
    fn pump(&self) {
        loop {
            let next = self.lock().http.poll_request();
            match next {
                Ok(Some(request)) => self
                    .shared
                    .with(|p, now| p.handle_request(self.id, request, now)),
                Ok(None) => break,
                Err(e) => {
                    self.shared.with(|p, _| p.handle_http_error(self.id, &e));
                    break;
                }
            }
        }
    }
}

/// Accepts connections on `listener` until the process ends.
pub fn accept_loop(shared: &Shared, listener: &TcpListener, limits: ConnLimits) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= limits.max_connections {
            refuse(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        open.fetch_add(1, Ordering::Relaxed);
        let guard = OpenGuard(open.clone());
        let shared = shared.clone();
        // The stream moves into the thread; keep a handle to refuse it if
        // the thread cannot start.
        let spare = stream.try_clone();
        let spawned = std::thread::Builder::new()
            .name("conn-reader".into())
            .stack_size(READER_STACK)
            .spawn(move || {
                let _guard = guard;
                connection(&shared, stream, limits);
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a connection thread: {e}");
            if let Ok(stream) = spare {
                refuse(stream);
            }
        }
    }
}

/// Counts a connection as open until dropped.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers 503 to a connection that will not be served, reading what it
/// sent (briefly) so closing does not reset it before it reads the answer.
fn refuse(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = stream.write_all(&too_many_connections());
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = stream.read(&mut [0u8; 4096]);
}

/// One editor connection, on its reader thread.
fn connection(shared: &Shared, stream: TcpStream, limits: ConnLimits) {
    let read_timeout = limits.read_timeout;
    let (id, mail) = shared.connect();
    let conn = Conn {
        id,
        shared: shared.clone(),
        state: Arc::new(Mutex::new(ConnState {
            http: ServerConn::new(limits.http),
            idle_since: Instant::now(),
            upgraded: None,
        })),
    };
    let writer = stream.try_clone().and_then(|out| {
        let _ = out.set_write_timeout(Some(read_timeout));
        let conn = conn.clone();
        std::thread::Builder::new()
            .name("conn-writer".into())
            .stack_size(WRITER_STACK)
            .spawn(move || write_loop(&conn, out, &mail))
    });
    let writer = match writer {
        Ok(handle) => handle,
        Err(e) => {
            tracing::warn!("cannot start a connection writer: {e}");
            shared.disconnect(id);
            refuse(stream);
            return;
        }
    };
    if let Some((leftover, half)) = read_loop(&conn, stream, read_timeout) {
        let ws = WebSocket::from_partially_read(half, leftover.to_vec(), Role::Server, None);
        link::read_frames(shared, id, ws);
    }
    shared.disconnect(id);
    let _ = writer.join();
}

/// Reads requests until the connection ends, times out idle, or becomes an
/// agent link (then returns what the link reads from).
fn read_loop(
    conn: &Conn,
    mut stream: TcpStream,
    read_timeout: Duration,
) -> Option<(Bytes, LinkHalf)> {
    let mut buf = vec![0u8; mcp_provider_cli::READ_BUFFER];
    let upgraded = loop {
        // An idle connection has what is left of its deadline to send a
        // whole request; one being answered just keeps listening.
        let wait = {
            let state = conn.lock();
            match state.http.is_idle() {
                true => read_timeout.saturating_sub(state.idle_since.elapsed()),
                false => read_timeout,
            }
        };
        let _ = stream.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        let read = stream.read(&mut buf);
        let mut state = conn.lock();
        if let Some((mut leftover, half)) = state.upgraded.take() {
            let _ = stream.set_read_timeout(None);
            if let Ok(n) = read {
                leftover = [&leftover[..], &buf[..n]].concat().into();
            }
            break Some((leftover, half));
        }
        match read {
            Ok(0) => break None,
            Ok(n) => state.http.handle_data(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if state.http.is_idle() && state.idle_since.elapsed() >= read_timeout {
                    break None;
                }
                continue;
            }
            Err(_) => break None,
        }
        drop(state);
        conn.pump();
    };
    if upgraded.is_none() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    upgraded
}

/// Writes what the provider answers until the connection ends; after an
/// accepted upgrade, goes on as the agent link's writer.
fn write_loop(conn: &Conn, mut stream: TcpStream, mail: &Mailbox) {
    let mut out = BytesMut::new();
    while let Ok(first) = mail.recv() {
        let mut state = conn.lock();
        for output in std::iter::once(first).chain(mail.try_iter()) {
            match output {
                Output::Respond { response, .. } => state.http.encode_response(&response, &mut out),
                Output::Data { data, .. } => state.http.encode_data(&data, &mut out),
                Output::End { .. } => state.http.encode_end(&mut out),
                Output::AcceptAgent { key, .. } => {
                    return accept_agent(state, stream, &key, out, mail);
                }
                Output::ToAgent { .. } | Output::CloseAgent { .. } => {}
            }
        }
        let idle = state.http.is_idle();
        if idle {
            state.idle_since = Instant::now();
        }
        let close = state.http.wants_close();
        drop(state);
        if stream.write_all(&out).is_err() || close {
            break;
        }
        out.clear();
        if idle {
            // Pipelined requests may be waiting for this answer to end.
            conn.pump();
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Accepts a WebSocket upgrade: hands the reader its half of the link (and
/// the bytes read past the request) before answering 101, then writes the
/// link's frames.
fn accept_agent(
    mut state: MutexGuard<'_, ConnState>,
    mut stream: TcpStream,
    key: &str,
    mut out: BytesMut,
    mail: &Mailbox,
) {
    if let Ok((read_half, write_half)) = LinkHalf::pair(&stream) {
        let leftover = state.http.take_upgrade_bytes();
        state.upgraded = Some((leftover, read_half));
        drop(state);
        out.extend_from_slice(&websocket_accept(&derive_accept_key(key.as_bytes())));
        if stream.write_all(&out).is_ok() {
            link::write_frames(
                mail,
                WebSocket::from_raw_socket(write_half, Role::Server, None),
            );
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}
