//! The provider shared by every thread (the hub, with a mailbox per
//! connection), and the timer thread. No protocol logic lives here.

use std::ops::Deref;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, OnceLock};
use std::time::{Instant, SystemTime};

use mcp_provider_core::{Config, Provider};
use mcp_provider_kit::serve::audit::AuditSink;
use mcp_provider_kit::serve::hub::Hub;
use mcp_provider_kit::serve::mailbox::{Bell, Inbox};

/// Wakes a connection's thread: a channel holding at most one ring. A
/// connection may let the ringing thread write its outputs itself instead
/// ([`ThreadWaiter::write_through`]); the thread is woken only for what that
/// left undone.
#[derive(Clone)]
pub struct ThreadBell {
    tx: SyncSender<()>,
    through: Arc<OnceLock<WriteThrough>>,
}

/// Writes a connection's outputs on the calling thread without waiting;
/// returns whether it left nothing for the connection's own thread.
pub type WriteThrough = Box<dyn Fn() -> bool + Send + Sync>;

/// What a connection's thread waits on.
pub struct ThreadWaiter {
    rx: Receiver<()>,
    through: Arc<OnceLock<WriteThrough>>,
}

impl ThreadWaiter {
    /// Rings from now on first try `through`.
    pub fn write_through(&self, through: WriteThrough) {
        let _ = self.through.set(through);
    }
}

impl Deref for ThreadWaiter {
    type Target = Receiver<()>;

    fn deref(&self) -> &Receiver<()> {
        &self.rx
    }
}

impl Bell for ThreadBell {
    type Waiter = ThreadWaiter;

    fn pair() -> (Self, ThreadWaiter) {
        let (tx, rx) = mpsc::sync_channel(1);
        let through = Arc::new(OnceLock::new());
        let waiter = ThreadWaiter {
            rx,
            through: through.clone(),
        };
        (ThreadBell { tx, through }, waiter)
    }

    fn ring(&self) {
        if self.through.get().is_some_and(|through| through()) {
            return;
        }
        // Full: already rung, the thread has not woken yet.
        let _ = self.tx.try_send(());
    }
}

/// A connection's mailbox, as its thread reads it.
pub type Mail = Inbox<ThreadBell>;

pub type Shared = Arc<Hub<ThreadBell>>;

/// The provider, with its timer thread started.
pub fn start(config: Config, audit: Option<AuditSink>) -> std::io::Result<Shared> {
    let provider = Provider::new(config, Instant::now(), SystemTime::now());
    let rearmed = Arc::new(Condvar::new());
    let wake = rearmed.clone();
    let shared = Hub::new(provider, audit, move || wake.notify_one());
    let timer = shared.clone();
    std::thread::Builder::new()
        .name("timer".into())
        .spawn(move || run_timer(&timer, &rearmed))?;
    Ok(shared)
}

/// Sleeps until the armed deadline (or until an earlier one is armed),
/// then lets the provider act on the time.
fn run_timer(shared: &Shared, rearmed: &Condvar) {
    let mut core = shared.lock();
    loop {
        let now = Instant::now();
        core = match core.armed() {
            Some(at) if at <= now => {
                core.disarm();
                drop(core);
                shared.with(|p, now| p.handle_timeout(now));
                shared.lock()
            }
            Some(at) => {
                let waited = rearmed.wait_timeout(core, at - now);
                waited.unwrap_or_else(|e| e.into_inner()).0
            }
            None => rearmed.wait(core).unwrap_or_else(|e| e.into_inner()),
        };
    }
}
