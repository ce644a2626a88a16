//! The provider shared by every thread (the hub, with a mailbox per
//! connection), and the timer thread. No protocol logic lives here.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar};
use std::time::{Instant, SystemTime};

use mcp_provider_cli::audit::AuditSink;
use mcp_provider_cli::hub::Hub;
use mcp_provider_cli::mailbox::{Bell, Inbox};
use mcp_provider_core::{Config, Provider};

/// Wakes a connection's thread: a channel holding at most one ring.
#[derive(Clone)]
pub struct ThreadBell(SyncSender<()>);

impl Bell for ThreadBell {
    type Waiter = Receiver<()>;

    fn pair() -> (Self, Receiver<()>) {
        let (tx, rx) = mpsc::sync_channel(1);
        (ThreadBell(tx), rx)
    }

    fn ring(&self) {
        // Full: already rung, the thread has not woken yet.
        let _ = self.0.try_send(());
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
