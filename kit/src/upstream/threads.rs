//! Remote servers' exchanges on worker threads: how the blocking runtime
//! carries them (and any runtime that does not carry them itself).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::conn::Conn;
use super::{Carrier, Carriers, Job, RemoteRun, MAX_WORKERS, WORKER_IDLE};

/// A worker's stack: it parses HTTP and runs TLS, nothing deep.
const WORKER_STACK: usize = 256 * 1024;

/// A carrier of worker threads for each run.
pub fn carriers() -> Carriers {
    Arc::new(|| Box::new(Threads::default()))
}

/// One run's worker threads.
#[derive(Default)]
struct Threads {
    queue: Arc<Queue>,
}

/// The exchanges waiting for a worker, and the workers waiting for one.
#[derive(Default)]
struct Queue {
    work: Mutex<Work>,
    bell: Condvar,
}

#[derive(Default)]
struct Work {
    jobs: VecDeque<Job>,
    workers: usize,
    idle: usize,
}

impl Carrier for Threads {
    fn carry(&self, run: &Arc<RemoteRun>, job: Job) {
        let mut work = self.queue.work();
        work.jobs.push_back(job);
        if work.idle > 0 {
            self.queue.bell.notify_one();
        } else if work.workers < MAX_WORKERS {
            work.workers += 1;
            let (queue, run) = (self.queue.clone(), run.clone());
            let started = std::thread::Builder::new()
                .name("mcp-remote".into())
                .stack_size(WORKER_STACK)
                .spawn(move || queue.work_on(&run));
            if started.is_err() {
                work.workers -= 1;
                tracing::error!("no thread could be started for a remote MCP server");
            }
        }
    }

    fn close(&self) {
        self.queue.bell.notify_all();
    }
}

impl Queue {
    fn work(&self) -> MutexGuard<'_, Work> {
        self.work.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next exchange, or `None` once there has been none for a while
    /// (or the run is over).
    fn next_job(&self, run: &RemoteRun) -> Option<Job> {
        let mut work = self.work();
        loop {
            if run.is_closed() && work.jobs.is_empty() {
                work.workers -= 1;
                return None;
            }
            if let Some(job) = work.jobs.pop_front() {
                return Some(job);
            }
            work.idle += 1;
            let (guard, waited) = self
                .bell
                .wait_timeout(work, WORKER_IDLE)
                .unwrap_or_else(|e| e.into_inner());
            work = guard;
            work.idle -= 1;
            if waited.timed_out() && work.jobs.is_empty() {
                work.workers -= 1;
                return None;
            }
        }
    }

    /// A worker: takes `run`'s exchanges until there are none for a
    /// while, keeping its connection between them.
    fn work_on(&self, run: &Arc<RemoteRun>) {
        let mut conn: Option<Conn> = None;
        while let Some(job) = self.next_job(run) {
            carry(run, job, &mut conn);
        }
    }
}

/// One exchange: on the kept connection if it still serves (once more on
/// a new one if the server had closed it), else on a new one.
fn carry(run: &Arc<RemoteRun>, job: Job, conn: &mut Option<Conn>) {
    if conn.as_ref().is_some_and(|c| !c.serves(&job.request.url)) {
        *conn = None;
    }
    for _attempt in 0..2 {
        let fresh = conn.is_none();
        if fresh {
            match Conn::dial(&job.request.url, run.ca_file()) {
                Ok(dialed) => *conn = Some(dialed),
                Err(e) => return run.failed(job.id, &e, false),
            }
        }
        let Some(open) = conn.as_mut() else {
            return;
        };
        let socket = open.cutter();
        run.started(job.id, Box::new(move || Conn::cut(&socket)));
        let result = open.exchange(&job.request, job.max_body(), |events| {
            run.feed(job.id, events)
        });
        if !run.settle(job.id, result, fresh, conn) {
            return;
        }
    }
}
