//! Graceful shutdown on SIGTERM or SIGINT, the same for every runtime.
//!
//! The first signal asks the provider to wind down (it ends every open
//! stream with a final error event, answers waiting requests with 503,
//! sends agents `cancel` and closes their links), then waits until what was
//! posted has been written — at most [`GRACE`] — and exits 0. A second
//! signal exits at once.

use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The longest a shutdown waits for connections to write what they hold.
pub const GRACE: Duration = Duration::from_secs(5);

/// What a runtime lets the shutdown watcher do.
pub trait Stop: Send + 'static {
    /// Tell the provider to wind down (see `Provider::shut_down`).
    fn begin(&self);
    /// Whether every connection has written what was posted to it.
    fn flushed(&self) -> bool;
    /// The last step before exiting: nothing may outlive the process.
    fn finish(&self) {}
}

/// Watches for SIGTERM and SIGINT on a thread of its own.
pub fn watch(stop: impl Stop) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.forever().next().is_none() {
                return;
            }
            tracing::info!("shutting down (a second signal exits at once)");
            stop.begin();
            let quit = std::thread::spawn(move || {
                if signals.forever().next().is_some() {
                    std::process::exit(130);
                }
            });
            let deadline = Instant::now() + GRACE;
            while !stop.flushed() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            // Let the last writes leave the socket buffers for the peers.
            std::thread::sleep(Duration::from_millis(50));
            stop.finish();
            drop(quit);
            std::process::exit(0);
        })?;
    Ok(())
}
