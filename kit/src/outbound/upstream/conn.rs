//! A connection to a remote HTTP server: dialed (over TLS for `https`),
//! a request written, its response read into the core's
//! [`ResponseReader`], and kept for the next request when the response
//! allows.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_provider_core::http::{Outgoing, ResponseError, ResponseEvent, ResponseReader, Url};
use mcp_provider_core::time::later;
use mcp_provider_core::upstream::ExchangeId;

use crate::outbound::keepalive::keep_alive;
use crate::outbound::tls;

/// How long dialing one address of a remote server may take, its TLS
/// handshake included.
pub const UPSTREAM_DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// What one read of a remote server's socket asks for.
pub const UPSTREAM_READ_CHUNK: usize = 8 * 1024;

/// A dial, its TLS handshake included, that took longer than
/// [`UPSTREAM_DIAL_TIMEOUT`].
pub fn dial_late(url: &Url) -> Failed {
    Failed::Dial(format!(
        "{} cannot be reached (no connection within {} s)",
        url.authority(),
        UPSTREAM_DIAL_TIMEOUT.as_secs()
    ))
}

/// Cuts a connection once its time is up, unless dropped first.
pub struct Deadline {
    /// Dropped with the deadline: wakes its thread to end.
    _armed: mpsc::Sender<()>,
    passed: Arc<AtomicBool>,
}

impl Deadline {
    pub fn arm(socket: Arc<TcpStream>, timeout: Duration) -> Deadline {
        let (armed, wait) = mpsc::channel::<()>();
        let passed = Arc::new(AtomicBool::new(false));
        let flag = passed.clone();
        let spawned = std::thread::Builder::new()
            .name("conn-deadline".into())
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = wait.recv_timeout(timeout) {
                    flag.store(true, Ordering::SeqCst);
                    Conn::cut(&socket);
                }
            });
        if spawned.is_err() {
            // Its reads end only as its socket's timeouts allow.
            tracing::debug!("no thread for a connection's deadline");
        }
        Deadline {
            _armed: armed,
            passed,
        }
    }

    /// Whether the time was up (and the connection cut).
    pub fn passed(&self) -> bool {
        self.passed.load(Ordering::SeqCst)
    }
}

/// Anything a request can go over: a socket, or TLS on one.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One open connection.
pub struct Conn {
    stream: Box<dyn Stream>,
    /// The socket under it, to cut it from another thread.
    socket: Arc<TcpStream>,
    /// Where each read lands, kept for the connection's next exchange.
    buf: Vec<u8>,
    /// The URL it was dialed for: its origin (scheme, host, port) is the
    /// server it is connected to.
    dialed: Url,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum Failed {
    /// No connection could be made (name, refusal, TLS handshake).
    Dial(String),
    /// The connection broke, or the response could not be read.
    Broken(String),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Dial(why) | Failed::Broken(why) => f.write_str(why),
        }
    }
}

impl Conn {
    /// Dials `url`'s server: each address its name resolves to in turn,
    /// then TLS for `https` (trusting `ca_file`'s roots, if given), each
    /// address and its handshake within [`UPSTREAM_DIAL_TIMEOUT`].
    pub fn dial(url: &Url, ca_file: Option<&str>) -> Result<Conn, Failed> {
        Conn::dial_within(url, ca_file, UPSTREAM_DIAL_TIMEOUT)
    }

    /// [`Conn::dial`], each address given `limit` (not zero) to connect
    /// and finish its handshake.
    pub fn dial_within(url: &Url, ca_file: Option<&str>, limit: Duration) -> Result<Conn, Failed> {
        let addrs = (url.host(), url.port())
            .to_socket_addrs()
            .map_err(|e| Failed::Dial(format!("{} cannot be resolved: {e}", url.host())))?;
        let mut last = None;
        for addr in addrs {
            let deadline = later(Instant::now(), limit);
            match TcpStream::connect_timeout(&addr, limit) {
                Ok(socket) => {
                    let _ = socket.set_nodelay(true);
                    keep_alive(&socket).map_err(|e| Failed::Dial(e.to_string()))?;
                    let stream: Box<dyn Stream> =
                        if url.is_secure() {
                            let config = tls::client_config(ca_file)
                                .map_err(|e| Failed::Dial(e.to_string()))?;
                            let tcp = socket
                                .try_clone()
                                .map_err(|e| Failed::Dial(e.to_string()))?;
                            Box::new(tls::connect(tcp, url.host(), config, deadline).map_err(
                                |e| Failed::Dial(format!("TLS with {}: {e}", url.authority())),
                            )?)
                        } else {
                            Box::new(
                                socket
                                    .try_clone()
                                    .map_err(|e| Failed::Dial(e.to_string()))?,
                            )
                        };
                    return Ok(Conn {
                        stream,
                        socket: Arc::new(socket),
                        buf: vec![0u8; UPSTREAM_READ_CHUNK],
                        dialed: url.clone(),
                    });
                }
                Err(e) => last = Some(format!("{addr}: {e}")),
            }
        }
        Err(Failed::Dial(format!(
            "{} cannot be reached ({})",
            url.authority(),
            last.unwrap_or_else(|| "no address".to_owned())
        )))
    }

    /// Whether this connection goes to `url`'s server.
    pub fn serves(&self, url: &Url) -> bool {
        self.dialed.same_origin(url)
    }

    /// A handle that cuts the connection from another thread.
    pub fn cutter(&self) -> Arc<TcpStream> {
        self.socket.clone()
    }

    /// Sends `request` and reads its response, handing each piece to
    /// `on` as it arrives (`on` returns false to stop reading). Returns
    /// whether the connection may carry another request, and how many
    /// response bytes were read (none on a kept connection the server had
    /// closed: worth one more try on a new one).
    pub fn exchange(
        &mut self,
        request: &Outgoing,
        max_body: usize,
        on: impl FnMut(Events<'_>) -> bool,
    ) -> Result<bool, (Failed, usize)> {
        let mut reading = self.send(request, max_body)?;
        self.read_rest(&mut reading, on)
    }

    /// Sends `request`: its response is read with [`Conn::read_for`] or
    /// [`Conn::read_rest`].
    pub fn send(
        &mut self,
        request: &Outgoing,
        max_body: usize,
    ) -> Result<Reading, (Failed, usize)> {
        self.stream
            .write_all(&request.encode())
            .and_then(|()| self.stream.flush())
            .map_err(|e| (Failed::Broken(e.to_string()), 0))?;
        Ok(Reading::new(request, max_body))
    }

    /// Reads `reading`'s response to its end, as [`Conn::exchange`] does.
    pub fn read_rest(
        &mut self,
        reading: &mut Reading,
        mut on: impl FnMut(Events<'_>) -> bool,
    ) -> Result<bool, (Failed, usize)> {
        loop {
            if let Some(reusable) = self.read_response(reading, &mut on, false)? {
                return Ok(reusable);
            }
        }
    }

    /// Reads `reading`'s response until it ends, or until nothing came
    /// for `patience`: then `None`, and the rest may be read later, by
    /// any thread.
    pub fn read_for(
        &mut self,
        reading: &mut Reading,
        mut on: impl FnMut(Events<'_>) -> bool,
        patience: Duration,
    ) -> Result<Option<bool>, (Failed, usize)> {
        let read = match self.socket.set_read_timeout(Some(patience)) {
            Ok(()) => self.read_response(reading, &mut on, true),
            Err(_) => self.read_rest(reading, on).map(Some),
        };
        let _ = self.socket.set_read_timeout(None);
        read
    }

    /// Reads until the response ends (whether the connection may carry
    /// another request), or, if `patient`, until a read times out
    /// (`None`).
    fn read_response(
        &mut self,
        reading: &mut Reading,
        on: &mut impl FnMut(Events<'_>) -> bool,
        patient: bool,
    ) -> Result<Option<bool>, (Failed, usize)> {
        loop {
            let n = match self.stream.read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if patient
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(reading.broken(&e)),
            };
            let took = reading.took(self.buf.get(..n).unwrap_or_default())?;
            if took.events.len() > 0 && !on(took.events) {
                return Ok(Some(false));
            }
            if let Some(reusable) = took.ended {
                return Ok(Some(reusable));
            }
        }
    }

    /// Ends the connection, whoever is reading it.
    pub fn cut(socket: &TcpStream) {
        let _ = socket.shutdown(Shutdown::Both);
    }
}

/// A connection is cut by ending it: it carries one exchange at a time.
impl super::Cutter for TcpStream {
    fn cut(&self, _: ExchangeId) {
        Conn::cut(self);
    }
}

/// A response being read, whatever carries it: each read's bytes in,
/// its pieces out.
pub struct Reading {
    reader: ResponseReader,
    /// Response bytes read so far.
    read: usize,
    /// The pieces of the read last taken; one list for the response.
    events: Vec<ResponseEvent>,
}

/// The most response pieces whose room a connection keeps from one
/// response to the next: a read makes a few.
const KEPT_EVENTS: usize = 16;

/// The pieces of one read, handed to whoever carries them on.
pub type Events<'a> = std::vec::Drain<'a, ResponseEvent>;

/// What one read gave.
pub struct Took<'a> {
    pub events: Events<'a>,
    /// Set once the response ended: whether the connection may carry
    /// another request.
    pub ended: Option<bool>,
}

impl Reading {
    pub fn new(request: &Outgoing, max_body: usize) -> Reading {
        Reading::reusing(request, max_body, Vec::new())
    }

    /// As [`Reading::new`], taking the pieces into `events`, a list
    /// a connection keeps from one response to the next (see
    /// [`Reading::into_events`]): one allocation less per exchange.
    pub fn reusing(request: &Outgoing, max_body: usize, mut events: Vec<ResponseEvent>) -> Reading {
        events.clear();
        Reading {
            reader: ResponseReader::new(request.method, max_body),
            read: 0,
            events,
        }
    }

    /// The list the pieces were taken into, emptied, for the next
    /// response (a list a burst of small chunks grew is let go).
    pub fn into_events(mut self) -> Vec<ResponseEvent> {
        if self.events.capacity() > KEPT_EVENTS {
            return Vec::new();
        }
        self.events.clear();
        self.events
    }

    /// The bytes of one read (none: the connection closed).
    pub fn took(&mut self, data: &[u8]) -> Result<Took<'_>, (Failed, usize)> {
        self.read += data.len();
        self.events.clear();
        match data {
            [] => self.reader.eof(&mut self.events),
            data => self.reader.push(data, &mut self.events),
        }
        .map_err(|e: ResponseError| (Failed::Broken(e.to_string()), self.read))?;
        let ended = self
            .events
            .contains(&ResponseEvent::End)
            .then(|| self.reader.reusable());
        if ended.is_none() && data.is_empty() {
            return Err((
                Failed::Broken("the connection closed".to_owned()),
                self.read,
            ));
        }
        Ok(Took {
            events: self.events.drain(..),
            ended,
        })
    }

    /// The connection broke while reading.
    pub fn broken(&self, e: &std::io::Error) -> (Failed, usize) {
        (Failed::Broken(e.to_string()), self.read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server that writes its answer's head, then its body 200 ms
    /// later: a read with 20 ms of patience gives the head and waits out;
    /// the rest is read later, to the end, on the same connection.
    #[test]
    fn a_read_with_patience_leaves_a_slow_answer_to_be_read_later() {
        use std::io::{BufRead, BufReader};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/mcp", listener.local_addr().unwrap())).unwrap();
        let server = std::thread::spawn(move || {
            let (socket, _) = listener.accept().unwrap();
            let mut lines = BufReader::new(socket.try_clone().unwrap());
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let mut socket = socket;
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n")
                .unwrap();
            std::thread::sleep(Duration::from_millis(200));
            socket.write_all(b"{}").unwrap();
            socket
        });
        let mut conn = Conn::dial(&url, None).unwrap();
        let request = Outgoing::new("GET", url);
        let mut reading = conn.send(&request, 1024).unwrap();
        let mut seen = Vec::new();
        let started = Instant::now();
        let first = conn.read_for(
            &mut reading,
            |e| {
                seen.extend(e);
                true
            },
            Duration::from_millis(20),
        );
        assert!(matches!(first, Ok(None)), "{first:?}");
        assert!(started.elapsed() < Duration::from_millis(180));
        assert!(
            matches!(seen.as_slice(), [ResponseEvent::Head(_)]),
            "{seen:?}"
        );
        let rest = conn.read_rest(&mut reading, |e| {
            seen.extend(e);
            true
        });
        assert!(matches!(rest, Ok(true)), "{rest:?}");
        assert!(matches!(seen.last(), Some(ResponseEvent::End)), "{seen:?}");
        drop(server.join());
    }

    /// An `https` server that takes the connection and never speaks TLS:
    /// the dial fails at its limit, saying with whom.
    #[test]
    fn a_server_that_never_speaks_tls_fails_the_dial_in_time() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let url = Url::parse(&format!("https://{addr}/mcp")).unwrap();
        let held = std::thread::spawn(move || listener.accept().map(|(socket, _)| socket));
        let failed = Conn::dial_within(&url, None, Duration::from_millis(200)).err();
        let Some(Failed::Dial(why)) = failed else {
            panic!("the dial did not fail as a dial");
        };
        assert!(why.contains(&format!("TLS with {addr}")), "{why}");
        assert!(why.contains("in time"), "{why}");
        drop(held.join());
    }
}
