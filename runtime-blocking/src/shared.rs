//! The provider shared by every thread (the hub, with a channel per
//! connection), and the timer thread. No protocol logic lives here.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar};
use std::time::{Instant, SystemTime};

use mcp_provider_cli::hub::{self, Hub};
use mcp_provider_core::{Config, Output, Provider};

/// A connection's mailbox: the provider's outputs for it, in order.
pub type Mailbox = Receiver<Output>;

/// The hub's sending end of a connection's mailbox.
pub struct Outbox(Sender<Output>);

impl hub::Mailbox for Outbox {
    type Receiver = Mailbox;

    fn pair() -> (Self, Mailbox) {
        let (tx, rx) = mpsc::channel();
        (Outbox(tx), rx)
    }

    fn post(&self, output: Output) {
        let _ = self.0.send(output);
    }
}

/// A handle on the provider; cheap to clone into each thread.
pub type Shared = Arc<Hub<Outbox>>;

/// The provider, with its timer thread started.
pub fn start(config: Config) -> std::io::Result<Shared> {
    let provider = Provider::new(config, Instant::now(), SystemTime::now());
    let rearmed = Arc::new(Condvar::new());
    let wake = rearmed.clone();
    let shared = Hub::new(provider, move || wake.notify_one());
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
