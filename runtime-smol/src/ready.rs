//! Waiting on the reactor with as few system calls as a wait needs.
//!
//! Each reactor wait costs several system calls, and so does each timer
//! armed or each read that finds nothing. A connection that answers a
//! request, and a child's stdout between two answers, wait far more often
//! than they find data already there, so they wait for readiness first and
//! read once, and a connection's idle deadline keeps one timer that moves
//! only when it must fire earlier.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Instant;

use smol::{Async, Timer};

/// Reads a source, trying the read at once only when the last one may have
/// left more behind (it filled the buffer); otherwise it waits for the
/// reactor to say there is something to read.
pub struct ReadReady<T> {
    source: Arc<Async<T>>,
    drained: bool,
}

impl<T> ReadReady<T>
where
    for<'a> &'a T: Read,
{
    pub fn new(source: Arc<Async<T>>) -> Self {
        ReadReady {
            source,
            drained: false,
        }
    }

    /// The next read waits for the reactor to say the source is readable,
    /// even if the last one filled the buffer.
    pub fn wait_next(&mut self) {
        self.drained = true;
    }

    /// Reads into `buf`: `Ok(0)` once the source ended.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.drained {
            // Not `readable()`: its waker leaves the source when a wait is
            // dropped (a connection's loop drops one whenever mail comes
            // first), and the next wait registers it again with a system
            // call. This one stays until the source is ready.
            std::future::poll_fn(|cx| self.source.poll_readable(cx)).await?;
        }
        let read = self.source.read_with(|io| (&*io).read(buf)).await;
        self.drained = matches!(read, Ok(n) if n < buf.len());
        read
    }
}

/// A connection's idle deadline. A later deadline does not move the timer:
/// when the earlier one fires, the caller checks the deadline it has now
/// and waits again if it moved on.
pub struct IdleTimer {
    timer: Timer,
    armed: Option<Instant>,
}

impl IdleTimer {
    pub fn new() -> Self {
        IdleTimer {
            timer: Timer::never(),
            armed: None,
        }
    }

    /// Makes sure the timer fires no later than `deadline`.
    pub fn arm(&mut self, deadline: Option<Instant>) {
        match (deadline, self.armed) {
            (Some(at), Some(armed)) if armed <= at => {}
            (Some(at), _) => {
                self.timer.set_at(at);
                self.armed = Some(at);
            }
            (None, _) => {}
        }
    }

    /// Resolves when the armed time passes (never if none is armed).
    pub async fn fired(&mut self) {
        (&mut self.timer).await;
        self.armed = None;
    }
}
