//! The executor: one queue of tasks ready to run, shared by the executor
//! threads; the thread that serves waits in the reactor when the queue is
//! empty ([`crate::reactor`]), the others sleep.
//!
//! smol's own `Executor` is built for many threads: each runner has a
//! local queue, steals from the others, and registers with a list of
//! sleepers at every idle moment; a task spawned joins a list of active
//! tasks so that dropping the executor can cancel it. The provider runs
//! one executor thread by default, its executor is never dropped, and a
//! call wakes four or five tasks: that machinery cost about a thousand
//! instructions per task run. Here a task is a `async_task::Runnable`
//! pushed on one locked queue, and a thread with nothing to run leaves its
//! waker for the next task scheduled.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use async_task::Runnable;

use crate::reactor::Reactor;

/// Tasks run before a thread lets its reactor look for I/O, however many
/// more are ready: a burst of ready tasks does not starve the sockets.
const BATCH: usize = 200;

struct Queue {
    ready: VecDeque<Runnable>,
    /// The threads waiting for a task, each by its waker (one per thread).
    idle: Vec<Waker>,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    ready: VecDeque::new(),
    idle: Vec::new(),
});

fn queue() -> MutexGuard<'static, Queue> {
    // A task runs outside the lock: nothing panics while it is held.
    QUEUE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Queues a task woken (or just spawned), and wakes a thread waiting for
/// one.
fn schedule(runnable: Runnable) {
    let idle = {
        let mut queue = queue();
        queue.ready.push_back(runnable);
        queue.idle.pop()
    };
    if let Some(thread) = idle {
        thread.wake();
    }
}

/// Runs `task` on the executor threads until it ends.
pub fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    let (runnable, task) = async_task::spawn(task, schedule);
    task.detach();
    runnable.schedule();
}

/// Runs `main` on the calling thread to its end, and the queue's tasks
/// while it is not done. With `reactor`, the thread waits in it whenever
/// no task is ready (one thread does: the one that serves); without, it
/// sleeps until a task is queued for it.
pub fn block_on<T>(main: impl Future<Output = T>, reactor: Option<&'static Reactor>) -> T {
    let thread = Arc::new(ThreadWaker {
        notified: AtomicBool::new(false),
        thread: std::thread::current(),
        reactor,
    });
    let waker = Waker::from(thread.clone());
    // Once this thread is done, no task scheduled may be left for it.
    let _leaving = Leaving(&waker);
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(smol::future::or(main, async { match Run.await {} }));
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        match reactor {
            Some(reactor) => {
                // Woken while polling (a batch ran out, a task came): the
                // reactor is only looked at, so sockets are not starved.
                if thread.notified.swap(false, Ordering::SeqCst) {
                    reactor.wait(0);
                } else {
                    reactor.announce_wait();
                    match thread.notified.swap(false, Ordering::SeqCst) {
                        true => reactor.no_wait(),
                        false => reactor.wait(-1),
                    }
                }
                // The poll that follows runs whatever the wait woke.
                thread.notified.store(false, Ordering::SeqCst);
            }
            None => {
                while !thread.notified.swap(false, Ordering::SeqCst) {
                    std::thread::park();
                }
            }
        }
    }
}

/// Takes a thread's waker off the idle list when its [`block_on`] ends.
struct Leaving<'a>(&'a Waker);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        queue().idle.retain(|w| !w.will_wake(self.0));
    }
}

/// Wakes a thread blocked in [`block_on`]: sets its flag, and rings its
/// reactor if it waits there, or unparks it.
struct ThreadWaker {
    notified: AtomicBool,
    thread: std::thread::Thread,
    reactor: Option<&'static Reactor>,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.notified.swap(true, Ordering::SeqCst) {
            return;
        }
        match self.reactor {
            Some(reactor) if reactor.is_waiting() => reactor.ring(),
            Some(_) => {}
            None => self.thread.unpark(),
        }
    }
}

/// Runs the queue's tasks on the calling thread; never resolves.
struct Run;

impl Future for Run {
    type Output = Infallible;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Infallible> {
        for _ in 0..BATCH {
            let next = {
                let mut queue = queue();
                let next = queue.ready.pop_front();
                if next.is_none() && !queue.idle.iter().any(|w| w.will_wake(cx.waker())) {
                    queue.idle.push(cx.waker().clone());
                }
                next
            };
            match next {
                Some(runnable) => {
                    runnable.run();
                }
                None => return Poll::Pending,
            }
        }
        // More may be ready: come back once the reactor had its look.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn tasks_spawned_from_tasks_and_from_other_threads_all_run() {
        let ran = Arc::new(AtomicUsize::new(0));
        let (done, finished) = smol::channel::unbounded::<()>();
        for _ in 0..10 {
            let (ran, done) = (ran.clone(), done.clone());
            spawn(async move {
                for _ in 0..3 {
                    let (ran, done) = (ran.clone(), done.clone());
                    spawn(async move {
                        smol::future::yield_now().await;
                        ran.fetch_add(1, Ordering::SeqCst);
                        let _ = done.send(()).await;
                    });
                }
            });
        }
        let from_thread = {
            let (ran, done) = (ran.clone(), done.clone());
            std::thread::spawn(move || {
                spawn(async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                    let _ = done.send(()).await;
                })
            })
        };
        from_thread.join().unwrap();
        block_on(
            async {
                for _ in 0..31 {
                    finished.recv().await.unwrap();
                }
            },
            Some(Reactor::get().unwrap()),
        );
        assert_eq!(ran.load(Ordering::SeqCst), 31);
    }

    #[test]
    fn a_thread_waiting_for_tasks_is_woken_by_one_spawned_elsewhere() {
        let (done, finished) = smol::channel::bounded::<()>(1);
        let later = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            spawn(async move {
                let _ = done.send(()).await;
            });
        });
        block_on(async { finished.recv().await.unwrap() }, None);
        later.join().unwrap();
    }
}
