//! Threads kept for the next connection. Each connection runs on two
//! threads (a reader and a writer), and starting a thread is one of the
//! dearest steps between an editor's connect and its first chunk (tens of
//! microseconds on a VM: the stack is mapped, the thread scheduled). A
//! thread whose job ended waits a while for the next one instead of
//! exiting, so a busy server starts threads only as its peak grows.

use std::collections::VecDeque;
use std::io;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long an idle thread waits for a job before it exits.
const IDLE_FOR: Duration = Duration::from_secs(30);

/// Idle threads a pool keeps at most, unless it is made with fewer; more
/// exit as their jobs end.
pub const MAX_IDLE: usize = 16;

type Job = Box<dyn FnOnce() + Send>;

/// Threads of one kind (a name and a stack size), started on demand and
/// reused.
pub struct Pool {
    name: &'static str,
    stack: usize,
    /// Idle threads kept at most.
    max_idle: usize,
    state: Mutex<State>,
    /// Rung when a job is queued for an idle thread.
    queued: Condvar,
}

struct State {
    jobs: VecDeque<Job>,
    /// Threads waiting for a job.
    idle: usize,
}

/// Ends when a job has: [`Done::wait`] returns once it returned or
/// unwound.
pub struct Done(Receiver<()>);

impl Done {
    pub fn wait(self) {
        // The job holds the sender: its end, however it ends, closes it.
        let _ = self.0.recv();
    }
}

impl Pool {
    /// A pool keeping at most `max_idle` idle threads.
    pub const fn new(name: &'static str, stack: usize, max_idle: usize) -> Pool {
        Pool {
            name,
            stack,
            max_idle,
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                idle: 0,
            }),
            queued: Condvar::new(),
        }
    }

    /// Runs `job` on an idle thread, or on a new one when none is idle.
    pub fn run(&'static self, job: impl FnOnce() + Send + 'static) -> io::Result<Done> {
        let (ended, done) = mpsc::sync_channel::<()>(0);
        let job: Job = Box::new(move || {
            let _ended = ended;
            job();
        });
        let mut state = self.lock();
        if state.idle > state.jobs.len() {
            state.jobs.push_back(job);
            drop(state);
            self.queued.notify_one();
        } else {
            drop(state);
            std::thread::Builder::new()
                .name(self.name.into())
                .stack_size(self.stack)
                .spawn(move || self.work(job))?;
        }
        Ok(Done(done))
    }

    /// Runs `first`, then whatever job comes next, until none comes for
    /// [`IDLE_FOR`] or `max_idle` threads are idle already. A job that panics
    /// ends its thread (unwinding releases what it held); the pool is
    /// unaffected, as a thread counts as idle only while it waits.
    fn work(&self, first: Job) {
        let mut job = first;
        loop {
            job();
            let mut state = self.lock();
            if state.idle >= self.max_idle {
                return;
            }
            state.idle += 1;
            let (mut state, _) = self
                .queued
                .wait_timeout_while(state, IDLE_FOR, |s| s.jobs.is_empty())
                .unwrap_or_else(|e| e.into_inner());
            state.idle -= 1;
            match state.jobs.pop_front() {
                Some(next) => job = next,
                None => return,
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Pushing or popping cannot panic halfway: the queue stays whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread::ThreadId;

    use super::*;

    static POOL: Pool = Pool::new("pool-test", 64 * 1024, MAX_IDLE);

    fn thread_of_job(pool: &'static Pool) -> ThreadId {
        let (tx, rx) = mpsc::channel();
        pool.run(move || tx.send(std::thread::current().id()).unwrap())
            .unwrap()
            .wait();
        rx.recv().unwrap()
    }

    #[test]
    fn a_thread_whose_job_ended_runs_the_next_one() {
        let first = thread_of_job(&POOL);
        // The first thread goes idle once its job ended; give it the
        // moment it takes to get there.
        let mut again = thread_of_job(&POOL);
        for _ in 0..100 {
            if again == first {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            again = thread_of_job(&POOL);
        }
        assert_eq!(again, first);
    }

    #[test]
    fn jobs_run_at_once_side_by_side_and_a_panic_ends_only_its_own() {
        static WIDE: Pool = Pool::new("pool-wide", 64 * 1024, MAX_IDLE);
        // Each job waits (a bounded while) until all eight run at once.
        let running = Arc::new(AtomicUsize::new(0));
        let met = Arc::new(AtomicUsize::new(0));
        let dones: Vec<Done> = (0..8)
            .map(|_| {
                let (running, met) = (running.clone(), met.clone());
                WIDE.run(move || {
                    running.fetch_add(1, Ordering::SeqCst);
                    for _ in 0..500 {
                        if running.load(Ordering::SeqCst) == 8 {
                            met.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })
                .unwrap()
            })
            .collect();
        dones.into_iter().for_each(Done::wait);
        assert_eq!(met.load(Ordering::SeqCst), 8, "no job waits for another");
        WIDE.run(|| panic!("a job that panics")).unwrap().wait();
        let (tx, rx) = mpsc::channel();
        WIDE.run(move || tx.send(7).unwrap()).unwrap().wait();
        assert_eq!(rx.recv().unwrap(), 7);
    }
}
