//! One HTTP request, whole: for the few requests that are not a remote MCP
//! server's messages (OAuth metadata, registration, tokens). Bounded in
//! size and time — the whole exchange, not each read, so a server that
//! trickles a byte at a time cannot hold it; redirects are not followed
//! (the caller decides).

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mcp_provider_core::http::{Outgoing, ResponseEvent, ResponseHead};

use crate::upstream::conn::Conn;

/// A response read whole.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub head: ResponseHead,
    pub body: Bytes,
}

/// Sends `request` on a new connection and reads its whole response, at
/// most `max_body` bytes of it, within `timeout` once connected.
pub fn fetch(
    request: &Outgoing,
    max_body: usize,
    timeout: Duration,
    ca_file: Option<&str>,
) -> Result<Fetched, String> {
    let mut conn = Conn::dial(&request.url, ca_file).map_err(|e| e.to_string())?;
    let deadline = conn.cutter().map(|socket| {
        let _ = socket.set_read_timeout(Some(timeout));
        let _ = socket.set_write_timeout(Some(timeout));
        Deadline::arm(socket, timeout)
    });
    let late = || {
        format!(
            "{}: no whole answer within {} s",
            request.url,
            timeout.as_secs()
        )
    };
    let mut head = None;
    let mut body = BytesMut::new();
    conn.exchange(request, max_body, |events| {
        for event in events {
            match event {
                ResponseEvent::Head(h) => head = Some(h),
                ResponseEvent::Data(data) => body.extend_from_slice(&data),
                ResponseEvent::End => {}
            }
        }
        true
    })
    .map_err(
        |(e, _)| match deadline.as_ref().is_some_and(Deadline::passed) {
            true => late(),
            false => format!("{}: {e}", request.url),
        },
    )?;
    let head = head.ok_or_else(|| format!("{}: no response", request.url))?;
    Ok(Fetched {
        head,
        body: body.freeze(),
    })
}

/// Cuts a connection once its time is up, unless dropped first.
struct Deadline {
    /// Dropped with the deadline: wakes its thread to end.
    _armed: mpsc::Sender<()>,
    passed: Arc<AtomicBool>,
}

impl Deadline {
    fn arm(socket: TcpStream, timeout: Duration) -> Deadline {
        let (armed, wait) = mpsc::channel::<()>();
        let passed = Arc::new(AtomicBool::new(false));
        let flag = passed.clone();
        let spawned = std::thread::Builder::new()
            .name("fetch-deadline".into())
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = wait.recv_timeout(timeout) {
                    flag.store(true, Ordering::SeqCst);
                    Conn::cut(&socket);
                }
            });
        if spawned.is_err() {
            // Each read is still bounded by the socket's timeout.
            tracing::debug!("no thread for a fetch's deadline");
        }
        Deadline {
            _armed: armed,
            passed,
        }
    }

    fn passed(&self) -> bool {
        self.passed.load(Ordering::SeqCst)
    }
}
