//! How many bytes wait to be written to each connection, shared between
//! the [`crate::switchboard::Switchboard`] (which counts what it posts) and
//! the connection's writer (which counts what it wrote).
//!
//! This is what bounds memory when a peer reads slowly: once a connection's
//! backlog passes [`PAUSE_AT`] the provider hears of it (it asks the agent
//! to pause that answer, or stops routing to an agent link that does not
//! read), and once it falls under [`RESUME_AT`] the writer's
//! [`Backlog::written`] says so, so the driver can tell the provider to
//! resume. Nothing here blocks: a counter and a flag in one allocation per
//! connection, touched with atomics, so the hot path takes no extra lock.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A backlog above this many bytes makes the provider slow its producer.
pub const PAUSE_AT: usize = 256 * 1024;
/// Bytes waiting for one client of the MCP bridge past which it is cut
/// (see [`crate::switchboard::Switchboard::post`]).
pub const SLOW_CLIENT_BYTES: usize = 4 << 20;
/// A paused backlog that falls under this many bytes resumes it.
pub const RESUME_AT: usize = 64 * 1024;

/// The bytes posted to one connection and not yet written; cheap to clone
/// (the clones share one count).
#[derive(Debug, Clone, Default)]
pub struct Backlog(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    bytes: AtomicUsize,
    /// Set while the provider has been told the backlog is high and has
    /// not yet been told it drained.
    high: AtomicBool,
    /// Every connection's bytes, for the provider's global cap.
    total: Arc<AtomicUsize>,
}

/// What posting bytes to a backlog means for the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// Nothing to report.
    Normal,
    /// The backlog is high (first report since it was last drained, or
    /// still high): the provider hears the byte count.
    High(usize),
}

impl Backlog {
    /// A connection's backlog counting into `total` as well.
    pub(crate) fn new(total: Arc<AtomicUsize>) -> Self {
        Backlog(Arc::new(Inner {
            total,
            ..Inner::default()
        }))
    }

    /// Bytes waiting now.
    pub fn bytes(&self) -> usize {
        self.0.bytes.load(Ordering::Acquire)
    }

    /// Counts `n` more bytes posted; says whether the provider must hear
    /// of the level.
    pub(crate) fn posted(&self, n: usize) -> Level {
        self.0.total.fetch_add(n, Ordering::AcqRel);
        let bytes = self.0.bytes.fetch_add(n, Ordering::AcqRel) + n;
        if bytes < PAUSE_AT {
            return Level::Normal;
        }
        if self.0.high.swap(true, Ordering::AcqRel) {
            return Level::High(bytes);
        }
        // The flag is set first and the count read again, so a writer that
        // drained the backlog in between is seen here or sees the flag.
        if self.bytes() < RESUME_AT
            && self
                .0
                .high
                .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Level::Normal;
        }
        Level::High(bytes)
    }

    /// The connection's writer wrote `n` bytes of what was posted (the sum
    /// of [`crate::Output::backlog_bytes`] of the outputs it carried out).
    /// True when the backlog just drained after being reported high: the
    /// driver must then call [`crate::Provider::handle_drained`].
    pub fn written(&self, n: usize) -> bool {
        if n == 0 {
            return false;
        }
        let _ = self
            .0
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_sub(n))
            });
        let before = self
            .0
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_sub(n))
            })
            .unwrap_or(0);
        before.saturating_sub(n) < RESUME_AT
            && self
                .0
                .high
                .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// The connection closed: what it never wrote no longer counts.
    pub(crate) fn discard(&self) {
        let left = self.0.bytes.swap(0, Ordering::AcqRel);
        let _ = self
            .0
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_sub(left))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_once_then_drained_once() {
        let total = Arc::new(AtomicUsize::new(0));
        let b = Backlog::new(total.clone());
        assert_eq!(b.posted(PAUSE_AT - 1), Level::Normal);
        assert_eq!(b.posted(1), Level::High(PAUSE_AT));
        assert_eq!(b.posted(10), Level::High(PAUSE_AT + 10));
        assert_eq!(total.load(Ordering::Acquire), PAUSE_AT + 10);
        assert!(!b.written(1000), "still above the resume mark");
        assert!(b.written(PAUSE_AT + 10 - 1000 - RESUME_AT + 1));
        assert!(!b.written(1), "drained is reported once");
        assert_eq!(b.posted(10), Level::Normal);
        b.discard();
        assert_eq!((b.bytes(), total.load(Ordering::Acquire)), (0, 0));
    }

    #[test]
    fn a_backlog_that_never_went_high_never_reports_drained() {
        let b = Backlog::new(Arc::default());
        b.posted(100);
        assert!(!b.written(100));
        assert!(!b.written(5), "over-counting the writes saturates at zero");
        assert_eq!(b.bytes(), 0);
    }
}
