//! When a remote server's client asked to be woken
//! ([`UpstreamOutput::WakeAt`](mcp_provider_core::upstream::UpstreamOutput::WakeAt):
//! a call's answer to ask for again after the server's `retry:`). One
//! thread per run keeps the time, and only while something is due: the
//! carriers, threads or tasks, know nothing of it.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// The earliest instant a run is to be woken at, and whether a thread
/// waits for it.
#[derive(Default)]
pub struct Alarm {
    state: Mutex<Set>,
    bell: Condvar,
}

#[derive(Default)]
struct Set {
    due: Option<Instant>,
    /// A thread waits for `due`.
    kept: bool,
    /// The run is over.
    off: bool,
}

impl Alarm {
    fn state(&self) -> MutexGuard<'_, Set> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the alarm for `at` (or keeps an earlier one). True when no
    /// thread keeps it yet: the caller starts one, which calls
    /// [`Alarm::wait`] until that says none is needed.
    #[must_use]
    pub fn set(&self, at: Instant) -> bool {
        let mut set = self.state();
        if set.off {
            return false;
        }
        set.due = Some(set.due.map_or(at, |due| due.min(at)));
        if set.kept {
            self.bell.notify_one();
            return false;
        }
        set.kept = true;
        true
    }

    /// No thread could be started: the alarm is left unkept.
    pub fn not_kept(&self) {
        self.state().kept = false;
    }

    /// Waits until the alarm is due, and gives the time then; none once
    /// nothing is due or the run is over (the thread then ends).
    pub fn wait(&self) -> Option<Instant> {
        let mut set = self.state();
        loop {
            let due = match set.due {
                Some(due) if !set.off => due,
                _ => {
                    set.kept = false;
                    return None;
                }
            };
            let now = Instant::now();
            if now >= due {
                set.due = None;
                return Some(now);
            }
            set = self
                .bell
                .wait_timeout(set, due - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The run is over: the thread ends, and no other starts.
    pub fn off(&self) {
        self.state().off = true;
        self.bell.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_thread_keeps_the_earliest_time_until_none_is_due() {
        let alarm = Alarm::default();
        let now = Instant::now();
        assert!(alarm.set(now + Duration::from_secs(60)), "start a thread");
        assert!(!alarm.set(now), "the thread takes the earlier time");
        assert!(alarm.wait().is_some_and(|at| at >= now));
        assert_eq!(alarm.wait(), None, "nothing due: the thread ends");
        assert!(alarm.set(now), "a new thread for a new time");
        alarm.off();
        assert_eq!(alarm.wait(), None);
        assert!(!alarm.set(now), "none once the run is over");
    }
}
