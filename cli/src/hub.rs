//! The provider as every task or thread of a runtime shares it: its
//! switchboard under one lock, fresh connection ids, the guard that
//! detaches a connection however its task or thread ends, and the report a
//! writer makes of what it wrote. A runtime supplies only its channel
//! ([`Mailbox`]) and how to wake its timer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use mcp_provider_core::backlog::Backlog;
use mcp_provider_core::switchboard::Switchboard;
use mcp_provider_core::{ConnId, Output, Provider};

/// A runtime's channel carrying one connection's outputs. Unbounded as a
/// queue, bounded in bytes: the switchboard counts what waits in it and
/// the provider stops producing past its caps.
pub trait Mailbox: Send + 'static {
    type Receiver;

    /// A new channel: the sending end the hub keeps, the receiving end for
    /// the connection's task or thread.
    fn pair() -> (Self, Self::Receiver)
    where
        Self: Sized;

    /// Posts without blocking; a closed mailbox drops the output.
    fn post(&self, output: Output);
}

pub struct Hub<M> {
    core: Mutex<Switchboard<M>>,
    next_conn: AtomicU64,
    /// Wakes the runtime's timer when an earlier deadline was armed.
    wake: Box<dyn Fn() + Send + Sync>,
}

impl<M: Mailbox> Hub<M> {
    pub fn new(provider: Provider, wake: impl Fn() + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Hub {
            core: Mutex::new(Switchboard::new(provider)),
            next_conn: AtomicU64::new(1),
            wake: Box::new(wake),
        })
    }

    /// The switchboard (for the timer: its armed deadline).
    pub fn lock(&self) -> MutexGuard<'_, Switchboard<M>> {
        // A panic while holding the lock is a bug; keep serving regardless.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh connection: the guard that detaches it when dropped, its
    /// mailbox, and the backlog its writer reports to.
    pub fn connect(self: &Arc<Self>) -> (Attached<M>, M::Receiver, Backlog) {
        let id = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = M::pair();
        let backlog = self.lock().attach(id, tx);
        let attached = Attached {
            hub: self.clone(),
            id,
        };
        (attached, rx, backlog)
    }

    /// Runs `f` on the provider, then posts everything it output.
    pub fn with<R>(&self, f: impl FnOnce(&mut Provider, Instant) -> R) -> R {
        let (result, rearm) = self.lock().with(Instant::now(), f, M::post);
        if rearm {
            (self.wake)();
        }
        result
    }

    /// The writer of `id` carried out outputs worth `bytes` of its
    /// backlog; the provider hears when a high backlog drained.
    pub fn written(&self, id: ConnId, backlog: &Backlog, bytes: usize) {
        if backlog.written(bytes) {
            self.with(|p, _| p.handle_drained(id));
        }
    }

    fn disconnect(&self, id: ConnId) {
        if self.lock().detach(id, Instant::now(), M::post) {
            (self.wake)();
        }
    }
}

/// A connection attached to the provider; detached when dropped, however
/// the task or thread that holds it ends (a panic included).
pub struct Attached<M: Mailbox> {
    hub: Arc<Hub<M>>,
    pub id: ConnId,
}

impl<M: Mailbox> Drop for Attached<M> {
    fn drop(&mut self) {
        self.hub.disconnect(self.id);
    }
}

impl<M: Mailbox> crate::shutdown::Stop for Arc<Hub<M>> {
    fn begin(&self) {
        self.with(|p, _| p.shut_down());
    }

    fn flushed(&self) -> bool {
        self.lock().queued() == 0
    }
}
