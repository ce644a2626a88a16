//! The provider shared by every thread, with each connection's mailbox and
//! the timer thread. No protocol logic lives here: the provider is called
//! under one lock, and what it outputs is posted to the connection it names.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use mcp_provider_core::backlog::Backlog;
use mcp_provider_core::switchboard::Switchboard;
use mcp_provider_core::{Config, ConnId, Output, Provider};

/// A connection's mailbox: the provider's outputs for it, in order.
pub type Mailbox = Receiver<Output>;

type Core = Switchboard<Sender<Output>>;

fn post(mailbox: &Sender<Output>, output: Output) {
    let _ = mailbox.send(output);
}

struct Inner {
    core: Mutex<Core>,
    /// Wakes the timer thread when an earlier deadline is armed.
    rearmed: Condvar,
    next_conn: AtomicU64,
}

/// A handle on the provider; cheap to clone into each thread.
#[derive(Clone)]
pub struct Shared(Arc<Inner>);

impl Shared {
    /// The provider, with its timer thread started.
    pub fn start(config: Config) -> std::io::Result<Shared> {
        let provider = Provider::new(config, Instant::now(), SystemTime::now());
        let shared = Shared(Arc::new(Inner {
            core: Mutex::new(Switchboard::new(provider)),
            rearmed: Condvar::new(),
            next_conn: AtomicU64::new(1),
        }));
        let timer = shared.clone();
        std::thread::Builder::new()
            .name("timer".into())
            .spawn(move || timer.run_timer())?;
        Ok(shared)
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock is a bug; keep serving regardless.
        self.0.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh connection id with its mailbox and the backlog its writer
    /// reports to. The connection is detached when the guard drops (also
    /// when its thread panics).
    pub fn connect(&self) -> (Attached, Mailbox, Backlog) {
        let id = ConnId(self.0.next_conn.fetch_add(1, Ordering::Relaxed));
        // Unbounded as a queue, bounded in bytes: the switchboard counts
        // what waits in it and the provider stops producing past a cap.
        let (tx, rx) = mpsc::channel();
        let backlog = self.lock().attach(id, tx);
        let attached = Attached {
            shared: self.clone(),
            id,
        };
        (attached, rx, backlog)
    }

    /// The writer of `id` carried out outputs worth `bytes` of its
    /// backlog; the provider hears when a high backlog drained.
    pub fn written(&self, id: ConnId, backlog: &Backlog, bytes: usize) {
        if backlog.written(bytes) {
            self.with(|p, _| p.handle_drained(id));
        }
    }

    /// Runs `f` on the provider, then posts everything it output.
    pub fn with<R>(&self, f: impl FnOnce(&mut Provider, Instant) -> R) -> R {
        let (result, rearm) = self.lock().with(Instant::now(), f, post);
        if rearm {
            self.0.rearmed.notify_one();
        }
        result
    }

    /// A connection ended: the provider is told, its mailbox closed (which
    /// ends the thread reading it).
    fn disconnect(&self, id: ConnId) {
        if self.lock().detach(id, Instant::now(), post) {
            self.0.rearmed.notify_one();
        }
    }

    /// Sleeps until the armed deadline (or until an earlier one is armed),
    /// then lets the provider act on the time.
    fn run_timer(&self) {
        let mut core = self.lock();
        loop {
            let now = Instant::now();
            core = match core.armed() {
                Some(at) if at <= now => {
                    core.disarm();
                    drop(core);
                    self.with(|p, now| p.handle_timeout(now));
                    self.lock()
                }
                Some(at) => {
                    let waited = self.0.rearmed.wait_timeout(core, at - now);
                    waited.unwrap_or_else(|e| e.into_inner()).0
                }
                None => self.0.rearmed.wait(core).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// A connection attached to the provider; detached when dropped, however
/// the thread that holds it ends.
pub struct Attached {
    shared: Shared,
    pub id: ConnId,
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.shared.disconnect(self.id);
    }
}

impl mcp_provider_cli::shutdown::Stop for Shared {
    fn begin(&self) {
        self.with(|p, _| p.shut_down());
    }

    fn flushed(&self) -> bool {
        self.lock().queued() == 0
    }
}
