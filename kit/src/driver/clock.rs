//! Timers kept off the executor's reactor, on a thread of their own: the
//! driver's timers on every async runtime.
//!
//! async-io splits its map of timers at every wait while any timer is set,
//! which allocates and moves every entry, and tokio walks its timer wheel
//! at every park: some 700 instructions a wait either way, paid on each
//! request a connection serves. The provider's timers are deadlines (a
//! connection's idle limit, an exchange's, a worker's) set once and seldom
//! reached, so they are kept here instead: a timer costs a lock when it is
//! set and when it is dropped, and nothing while the executor waits for
//! I/O. The thread sleeps until the earliest deadline and wakes the tasks
//! whose deadlines passed.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use mcp_provider_core::time::later;

/// Every timer set, and the thread's bell.
struct Clock {
    state: Mutex<State>,
    /// Rung when a timer is set earlier than every other, so the thread
    /// sleeps until the new earliest deadline.
    earlier: Condvar,
}

struct State {
    /// Wakers by deadline; the number tells apart timers set for the same
    /// moment.
    due: BTreeMap<(Instant, u64), Waker>,
    next: u64,
}

static CLOCK: Clock = Clock {
    state: Mutex::new(State {
        due: BTreeMap::new(),
        next: 0,
    }),
    earlier: Condvar::new(),
};

fn state() -> MutexGuard<'static, State> {
    // Nothing panics while the lock is held: the map is whole.
    CLOCK.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the thread that fires timers, unless it runs already. The
/// command line calls it before a runtime runs (`launch.rs`), to fail
/// there if the thread cannot start; otherwise (an embedding application)
/// the first timer set starts it.
pub fn start() -> io::Result<()> {
    static STARTED: OnceLock<Result<(), io::ErrorKind>> = OnceLock::new();
    let started = STARTED.get_or_init(|| {
        let thread = std::thread::Builder::new()
            .name("timers".into())
            .stack_size(64 * 1024)
            .spawn(fire);
        thread.map(drop).map_err(|e| {
            tracing::error!("cannot start the timer thread: {e}");
            e.kind()
        })
    });
    started.map_err(|kind| io::Error::new(kind, "the timer thread did not start"))
}

/// Wakes each timer once its deadline passed, sleeping until the earliest
/// one in between.
fn fire() {
    let mut state = state();
    let mut woken = Vec::new();
    loop {
        let now = Instant::now();
        while let Some(entry) = state.due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            woken.push(entry.remove());
        }
        if !woken.is_empty() {
            drop(state);
            woken.drain(..).for_each(Waker::wake);
            state = self::state();
            continue;
        }
        let next = state.due.first_key_value().map(|((at, _), _)| *at);
        state = match next {
            Some(at) => {
                let wait = at.saturating_duration_since(now);
                let slept = CLOCK.earlier.wait_timeout(state, wait);
                slept.map_or_else(|e| e.into_inner().0, |(state, _)| state)
            }
            None => CLOCK.earlier.wait(state).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

/// A timer that fires once `wait` has passed.
pub fn sleep(wait: Duration) -> Timer {
    Timer::at(later(Instant::now(), wait))
}

/// Resolves once its deadline passed.
pub struct Timer {
    at: Instant,
    /// Where it is set, and the waker it was set with.
    set: Option<(u64, Waker)>,
}

impl Timer {
    pub fn at(at: Instant) -> Timer {
        Timer { at, set: None }
    }

    fn unset(&mut self) {
        if let Some((id, _)) = self.set.take() {
            state().due.remove(&(self.at, id));
        }
    }
}

impl Future for Timer {
    type Output = Instant;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Instant> {
        if Instant::now() >= self.at {
            self.unset();
            return Poll::Ready(self.at);
        }
        if let Some((_, waker)) = &self.set {
            if waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        let at = self.at;
        // Its error was told once; the timer then never fires.
        let _ = start();
        let mut state = state();
        let id = match self.set.take() {
            Some((id, _)) => id,
            None => {
                state.next += 1;
                state.next
            }
        };
        let earliest = state
            .due
            .first_key_value()
            .is_none_or(|((first, _), _)| at < *first);
        state.due.insert((at, id), cx.waker().clone());
        drop(state);
        if earliest {
            CLOCK.earlier.notify_one();
        }
        self.set = Some((id, cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.unset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_fire_in_order_of_their_deadlines_not_of_their_setting() {
        let now = Instant::now();
        let (late, early) = (
            now + Duration::from_millis(80),
            now + Duration::from_millis(20),
        );
        let fired = smol::block_on(async {
            let order = Mutex::new(Vec::new());
            let wait = |at: Instant, name: &'static str| {
                let order = &order;
                async move {
                    Timer::at(at).await;
                    order.lock().unwrap().push((name, Instant::now()));
                }
            };
            smol::future::zip(wait(late, "late"), wait(early, "early")).await;
            order.into_inner().unwrap()
        });
        assert_eq!(
            fired.iter().map(|f| f.0).collect::<Vec<_>>(),
            ["early", "late"]
        );
        assert!(
            fired[0].1 >= early && fired[1].1 >= late,
            "none fires early"
        );
    }

    #[test]
    fn a_dropped_timer_is_unset_and_a_past_deadline_is_ready_at_once() {
        let far = Timer::at(Instant::now() + Duration::from_secs(3600));
        let mut far = Box::pin(far);
        let waker = Waker::noop();
        assert!(far
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_pending());
        let key = far.set.as_ref().map(|(id, _)| (far.at, *id)).unwrap();
        assert!(state().due.contains_key(&key));
        drop(far);
        assert!(!state().due.contains_key(&key), "dropping unsets it");
        let past = Timer::at(Instant::now());
        assert!(smol::future::block_on(smol::future::poll_once(past)).is_some());
    }
}
