//! The bridge's timer: a thread that sleeps until the bridge's next
//! deadline (a child's restart, a health ping, a request's timeout) or the
//! next report of its figures, and is woken when a deadline earlier than
//! the one it sleeps toward appears.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use mcp_provider_core::bridge::Report;

use super::Bridged;

/// How often the figures are looked at (and handed on if they changed).
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// What the timer thread sleeps toward, and the bell that wakes it.
pub(super) struct Timer {
    state: Mutex<Armed>,
    bell: Condvar,
    /// Whether the timer hands on figures every [`REPORT_EVERY`]: it stops
    /// while no server is bridged, and is woken to start again when one
    /// is (added at run time, or by a new configuration). Read and written
    /// under the bridge's lock, so a server's arrival is never missed.
    reporting: AtomicBool,
}

/// What the timer thread sleeps toward.
#[derive(Default)]
struct Armed {
    woken: bool,
    /// The deadline it waits for (`None`: the next report only).
    armed: Option<Instant>,
    /// Report again, and every [`REPORT_EVERY`] while servers are bridged.
    report: bool,
}

impl Timer {
    pub(super) fn new() -> Self {
        Timer {
            state: Mutex::default(),
            bell: Condvar::new(),
            reporting: AtomicBool::new(true),
        }
    }

    fn armed(&self) -> MutexGuard<'_, Armed> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Under the bridge's lock, with whether servers are bridged now:
    /// whether the reports stopped and must start again (then call
    /// [`Timer::report_again`] once the lock is let go).
    pub(super) fn resume_reports(&self, servers: bool) -> bool {
        let resume = !self.reporting.load(Ordering::Relaxed) && servers;
        if resume {
            self.reporting.store(true, Ordering::Relaxed);
        }
        resume
    }

    /// Wakes the timer to hand on the figures now, and every
    /// [`REPORT_EVERY`] from then on while servers are bridged.
    pub(super) fn report_again(&self) {
        let mut armed = self.armed();
        armed.report = true;
        armed.woken = true;
        self.bell.notify_one();
    }

    /// Wakes the timer if it sleeps past `at` (most calls move no
    /// deadline earlier, and wake nothing).
    pub(super) fn wake_before(&self, at: Instant) {
        let mut armed = self.armed();
        if armed.armed.is_none_or(|armed| at < armed) {
            armed.armed = Some(at);
            armed.woken = true;
            self.bell.notify_one();
        }
    }

    /// Sleeps until the earlier of `next` and `report_at`, unless woken
    /// since it last slept; a wake-up asking for a report moves
    /// `report_at` to now.
    fn sleep(&self, next: Option<Instant>, report_at: &mut Option<Instant>) {
        let mut armed = self.armed();
        if !armed.woken {
            let until = [next, *report_at].into_iter().flatten().min();
            armed.armed = until;
            armed = match until {
                Some(until) => {
                    let wait = until.saturating_duration_since(Instant::now());
                    self.bell
                        .wait_timeout(armed, wait)
                        .map_or_else(|e| e.into_inner().0, |(g, _)| g)
                }
                None => self.bell.wait(armed).unwrap_or_else(|e| e.into_inner()),
            };
        }
        if std::mem::take(&mut armed.report) {
            *report_at = Some(Instant::now());
        }
        armed.woken = false;
        armed.armed = None;
    }
}

/// Starts the timer thread of `bridged`.
pub(super) fn start(bridged: Weak<Bridged>) {
    let spawned = std::thread::Builder::new()
        .name("bridge-timer".into())
        .spawn(move || run(bridged));
    if let Err(e) = spawned {
        tracing::error!("the MCP bridge's timer could not start: {e}");
    }
}

/// Sleeps until the bridge's next deadline, or until woken; ends when it
/// wakes to find the bridge gone. A bridge with no servers has no figures
/// that could change: its report goes out once, and the thread sleeps
/// until woken (by a deadline, or by a server's arrival: see
/// [`Timer::report_again`]).
fn run(bridged: Weak<Bridged>) {
    let mut reported: Option<Report> = None;
    let mut report_at = Some(Instant::now());
    loop {
        let Some(me) = bridged.upgrade() else {
            return;
        };
        if report_at.is_some_and(|at| at <= Instant::now()) {
            let mut report = {
                let bridge = me.lock();
                let report = bridge.report();
                let more = !report.servers.is_empty();
                me.timer.reporting.store(more, Ordering::Relaxed);
                report
            };
            me.count_refreshes(&mut report);
            report_at = (!report.servers.is_empty()).then(|| Instant::now() + REPORT_EVERY);
            if reported.as_ref() != Some(&report) {
                if let Some(serving) = me.serving.get() {
                    (serving.report)(report.clone());
                }
                reported = Some(report);
            }
        }
        let next = me.lock().poll_timeout();
        if next.is_some_and(|at| at <= Instant::now()) {
            me.with(|b, now| b.handle_timeout(now));
            continue;
        }
        me.timer.sleep(next, &mut report_at);
    }
}
