//! The connection cap, as both runtimes apply it: connections are counted
//! while open, and one past the cap is answered `503` and held briefly so
//! its client reads the answer before the close.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a refused connection is held open, reading what its client
/// sent, so that closing it does not reset the connection before the client
/// reads the `503`.
pub const REFUSAL_HOLD: Duration = Duration::from_millis(500);

/// Refused connections a runtime holds at once; more are closed at once.
pub const REFUSALS_HELD: usize = 256;

/// Open connections, against the cap.
#[derive(Clone)]
pub struct Admission {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// An admitted connection, counted until dropped (however its task or
/// thread ends).
pub struct Admitted(Arc<AtomicUsize>);

impl Admission {
    pub fn new(max_connections: usize) -> Self {
        Admission {
            open: Arc::default(),
            max: max_connections,
        }
    }

    /// Counts a new connection in, or `None` when the cap is reached (then
    /// answer it [`mcp_provider_core::too_many_connections`]).
    pub fn admit(&self) -> Option<Admitted> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| Admitted(self.open.clone()))
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_cap_and_again_once_one_closes() {
        let cap = Admission::new(2);
        let a = cap.admit();
        let b = cap.admit();
        assert!(a.is_some() && b.is_some());
        assert!(cap.admit().is_none());
        drop(a);
        assert!(cap.admit().is_some());
    }
}
