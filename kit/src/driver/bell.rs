//! The bell that wakes a task: rung from any thread, waited on by one task
//! at a time, rings before a wait counted once, and closed once every
//! ringing end is gone.
//!
//! A channel of one would do the same, but its receiver registers a
//! listener of its own, allocated, each time it waits; a connection's
//! task waits at least twice for every request it serves (for the request,
//! then for its answer). Here a wait keeps the task's waker in one slot.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::serve::mailbox::Bell;

/// Rung and not yet heard.
const RUNG: u8 = 1;
/// Every ringing end is gone.
const CLOSED: u8 = 2;

struct Shared {
    state: AtomicU8,
    /// Ringing ends alive.
    ringers: AtomicUsize,
    /// The task waiting, or the last one that did.
    waker: Mutex<Option<Waker>>,
}

impl Shared {
    fn wake(&self) {
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waker) = &*waker {
            waker.wake_by_ref();
        }
    }
}

/// The ringing end: clones ring the same bell.
pub struct TaskBell(Arc<Shared>);

/// The waiting end.
pub struct BellWaiter(Arc<Shared>);

/// The bell is closed and no ring is left to hear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl Clone for TaskBell {
    fn clone(&self) -> Self {
        self.0.ringers.fetch_add(1, Ordering::Relaxed);
        TaskBell(self.0.clone())
    }
}

impl Drop for TaskBell {
    fn drop(&mut self) {
        if self.0.ringers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.state.fetch_or(CLOSED, Ordering::AcqRel);
            self.0.wake();
        }
    }
}

impl Bell for TaskBell {
    type Waiter = BellWaiter;

    fn pair() -> (Self, BellWaiter) {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(0),
            ringers: AtomicUsize::new(1),
            waker: Mutex::new(None),
        });
        (TaskBell(shared.clone()), BellWaiter(shared))
    }

    fn ring(&self) {
        // Already rung: the waiter has yet to hear it, and will.
        if self.0.state.fetch_or(RUNG, Ordering::AcqRel) & RUNG == 0 {
            self.0.wake();
        }
    }
}

impl BellWaiter {
    /// Waits for a ring; `Err` once the bell is closed and every ring
    /// before was heard.
    pub async fn recv(&self) -> Result<(), Closed> {
        poll_fn(|cx| self.poll(cx)).await
    }

    /// A ring if one is waiting to be heard, without waiting.
    pub fn try_recv(&self) -> Option<Result<(), Closed>> {
        let state = self.0.state.fetch_and(!RUNG, Ordering::AcqRel);
        if state & RUNG != 0 {
            Some(Ok(()))
        } else if state & CLOSED != 0 {
            Some(Err(Closed))
        } else {
            None
        }
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        if let Some(heard) = self.try_recv() {
            return Poll::Ready(heard);
        }
        {
            let mut waker = self.0.waker.lock().unwrap_or_else(|e| e.into_inner());
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        // A ring between the look above and the waker kept would have woken
        // the waker before: look again.
        match self.try_recv() {
            Some(heard) => Poll::Ready(heard),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::task::Wake;

    use super::*;

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn woken(flag: &Flag) -> bool {
        flag.0.swap(false, Ordering::SeqCst)
    }

    #[test]
    fn rings_before_a_wait_count_once_and_the_bell_closes_with_its_last_ringer() {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let (bell, waiter) = TaskBell::pair();

        assert_eq!(waiter.poll(&mut cx), Poll::Pending);
        bell.ring();
        bell.ring();
        assert!(woken(&flag), "the waiting task is woken");
        assert_eq!(waiter.poll(&mut cx), Poll::Ready(Ok(())));
        assert_eq!(waiter.poll(&mut cx), Poll::Pending, "two rings, heard once");

        let second = bell.clone();
        drop(bell);
        assert!(!woken(&flag), "a ringer is left");
        second.ring();
        drop(second);
        assert!(woken(&flag));
        assert_eq!(
            waiter.try_recv(),
            Some(Ok(())),
            "a ring before the close is heard"
        );
        assert_eq!(waiter.poll(&mut cx), Poll::Ready(Err(Closed)));
        assert_eq!(waiter.try_recv(), Some(Err(Closed)));
    }

    #[test]
    fn a_ring_from_another_thread_wakes_the_waiting_task() {
        let (bell, waiter) = TaskBell::pair();
        let ringer = std::thread::spawn(move || {
            for _ in 0..1000 {
                bell.ring();
            }
        });
        let mut heard = 0;
        while futures_lite::future::block_on(waiter.recv()).is_ok() {
            heard += 1;
        }
        assert!(ringer.join().is_ok());
        assert!((1..=1000).contains(&heard), "heard {heard} rings");
    }
}
