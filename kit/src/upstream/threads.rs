//! Remote servers' exchanges on threads: how the blocking runtime carries
//! them (and any runtime that does not carry them itself).
//!
//! The threads are shared by every remote server: a server holds one only
//! while an exchange of its own is under way, so fifty servers called one
//! after another need one thread, not fifty idle ones (each thread that
//! ever lived keeps its stack's touched pages in the C library's cache).
//! Each server keeps its idle connections for its next exchanges, for
//! [`WORKER_IDLE`] or a little longer.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Instant;

use super::conn::{Conn, Deadline, Failed, DIAL_TIMEOUT};
use super::{Carrier, Carriers, Job, RemoteRun, MAX_WORKERS, WORKER_IDLE};

/// A thread's stack: it parses HTTP and runs TLS, nothing deep.
const STACK: usize = 256 * 1024;

/// A carrier for each run, all of them on one pool of threads.
pub fn carriers() -> Carriers {
    let pool = Arc::new(Pool::default());
    Arc::new(move || {
        Box::new(Threads {
            pool: pool.clone(),
            queue: Arc::default(),
        })
    })
}

/// One run's exchanges, carried on the shared threads.
struct Threads {
    pool: Arc<Pool>,
    queue: Arc<Queue>,
}

/// One run's exchanges waiting for a thread, and its idle connections.
#[derive(Default)]
struct Queue {
    work: Mutex<Work>,
}

#[derive(Default)]
struct Work {
    jobs: VecDeque<Job>,
    /// Threads taking this run's jobs now.
    workers: usize,
    /// Connections kept for the next exchanges, newest last, each with
    /// when it was last used.
    idle: Vec<(Conn, Instant)>,
    /// Whether the pool will look at `idle` to end the expired ones.
    watched: bool,
}

impl Carrier for Threads {
    fn carry(&self, run: &Arc<RemoteRun>, job: Job) {
        let start = {
            let mut work = self.queue.work();
            work.jobs.push_back(job);
            let start = work.workers < MAX_WORKERS;
            work.workers += usize::from(start);
            start
        };
        if !start {
            return;
        }
        let (queue, pool, worker_run) = (self.queue.clone(), self.pool.clone(), run.clone());
        let task = Box::new(move || queue.work_on(&worker_run, &pool));
        if self.pool.run(task).is_err() {
            self.queue.no_thread(run);
        }
    }

    fn close(&self) {
        self.queue.work().idle.clear();
    }
}

impl Queue {
    fn work(&self) -> MutexGuard<'_, Work> {
        self.work.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A worker: takes `run`'s exchanges until none is waiting, on the
    /// newest idle connection, then leaves that connection for the next.
    fn work_on(self: &Arc<Self>, run: &Arc<RemoteRun>, pool: &Pool) {
        let mut conn = self.work().idle.pop().map(|(conn, _)| conn);
        while let Some(job) = self.next_job(run, pool, &mut conn) {
            carry(run, job, &mut conn);
        }
    }

    /// The next waiting exchange; or, with none, the worker ends and
    /// `conn` is kept for the next one.
    fn next_job(
        self: &Arc<Self>,
        run: &RemoteRun,
        pool: &Pool,
        conn: &mut Option<Conn>,
    ) -> Option<Job> {
        let first_kept = {
            let mut work = self.work();
            if let Some(job) = work.jobs.pop_front() {
                return Some(job);
            }
            work.workers -= 1;
            match conn.take() {
                Some(conn) if !run.is_closed() => {
                    work.idle.push((conn, Instant::now()));
                    !std::mem::replace(&mut work.watched, true)
                }
                _ => false,
            }
        };
        if first_kept {
            pool.watch(Arc::downgrade(self));
        }
        None
    }

    /// Ends the idle connections unused for [`WORKER_IDLE`]; whether any
    /// is left.
    fn expire(&self, now: Instant) -> bool {
        let mut work = self.work();
        work.idle
            .retain(|(_, since)| now.duration_since(*since) < WORKER_IDLE);
        work.watched = !work.idle.is_empty();
        work.watched
    }

    /// No thread could be started for the worker just counted: if no other
    /// worker will take the waiting jobs, they fail.
    fn no_thread(&self, run: &Arc<RemoteRun>) {
        tracing::error!("no thread could be started for a remote MCP server");
        let stranded: Vec<Job> = {
            let mut work = self.work();
            work.workers -= 1;
            if work.workers > 0 {
                return;
            }
            work.jobs.drain(..).collect()
        };
        let why = Failed::Dial("no thread could be started for the exchange".to_owned());
        for job in stranded {
            run.failed(job.id, &why, false);
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
        let left = job
            .deadline
            .map(|at| at.saturating_duration_since(Instant::now()));
        if left.is_some_and(|left| left.is_zero()) {
            // Given up, as a cut exchange is.
            return;
        }
        let fresh = conn.is_none();
        if fresh {
            let limit = left.map_or(DIAL_TIMEOUT, |left| left.min(DIAL_TIMEOUT));
            match Conn::dial_within(&job.request.url, run.ca_file(), limit) {
                Ok(dialed) => *conn = Some(dialed),
                Err(e) => return run.failed(job.id, &e, false),
            }
        }
        let Some(open) = conn.as_mut() else {
            return;
        };
        let socket = open.cutter();
        let _deadline = left.map(|left| Deadline::arm(socket.clone(), left));
        run.started(job.id, Box::new(move || Conn::cut(&socket)));
        let result = open.exchange(&job.request, job.max_body(), |events| {
            run.feed(job.id, events)
        });
        if !run.settle(job.id, result, fresh, conn) {
            return;
        }
    }
}

/// Threads shared by every run: each waits [`WORKER_IDLE`] for a task,
/// then ends, unless it is the last one waiting while some run keeps an
/// idle connection (it ends those once they expire).
#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
    bell: Condvar,
}

type Task = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct PoolState {
    tasks: VecDeque<Task>,
    /// Threads waiting for a task.
    idle: usize,
    /// Runs keeping idle connections.
    watched: Vec<Weak<Queue>>,
}

impl Pool {
    fn state(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `task` on a waiting thread, or a new one.
    fn run(self: &Arc<Self>, task: Task) -> std::io::Result<()> {
        let mut state = self.state();
        state.tasks.push_back(task);
        if state.tasks.len() <= state.idle {
            self.bell.notify_one();
            return Ok(());
        }
        let pool = self.clone();
        let started = std::thread::Builder::new()
            .name("mcp-remote".into())
            .stack_size(STACK)
            .spawn(move || pool.serve());
        if started.is_err() {
            state.tasks.pop_back();
        }
        started.map(drop)
    }

    fn watch(&self, queue: Weak<Queue>) {
        self.state().watched.push(queue);
    }

    /// A thread of the pool: runs tasks until there has been none for a
    /// while.
    fn serve(&self) {
        let mut state = self.state();
        loop {
            if let Some(task) = state.tasks.pop_front() {
                drop(state);
                task();
                state = self.state();
                continue;
            }
            state.idle += 1;
            let (guard, waited) = self
                .bell
                .wait_timeout(state, WORKER_IDLE)
                .unwrap_or_else(|e| e.into_inner());
            state = guard;
            state.idle -= 1;
            if !waited.timed_out() || !state.tasks.is_empty() {
                continue;
            }
            let watched = std::mem::take(&mut state.watched);
            drop(state);
            let now = Instant::now();
            let still: Vec<Weak<Queue>> = watched
                .into_iter()
                .filter(|queue| queue.upgrade().is_some_and(|queue| queue.expire(now)))
                .collect();
            state = self.state();
            state.watched.extend(still);
            if state.watched.is_empty() || state.idle > 0 {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::Duration;

    use mcp_provider_core::http::Url;

    use super::*;

    /// Waits (bounded) until `pool` has `n` threads waiting.
    fn until_idle(pool: &Pool, n: usize) {
        for _ in 0..500 {
            if pool.state().idle == n {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("the pool never had {n} waiting threads");
    }

    #[test]
    fn tasks_one_after_another_share_one_thread() {
        let pool = Arc::new(Pool::default());
        let (tell, ran_on) = mpsc::channel();
        let mut threads = Vec::new();
        for _ in 0..20 {
            let tell = tell.clone();
            pool.run(Box::new(move || {
                let _ = tell.send(std::thread::current().id());
            }))
            .unwrap();
            threads.push(ran_on.recv_timeout(Duration::from_secs(5)).unwrap());
            until_idle(&pool, 1);
        }
        threads.dedup();
        assert_eq!(threads.len(), 1, "ran on {threads:?}");
    }

    #[test]
    fn tasks_at_once_each_get_a_thread() {
        let pool = Arc::new(Pool::default());
        let (tell, started) = mpsc::channel();
        let (release, wait) = mpsc::channel::<()>();
        let wait = Arc::new(Mutex::new(wait));
        for _ in 0..3 {
            let (tell, wait) = (tell.clone(), wait.clone());
            pool.run(Box::new(move || {
                let _ = tell.send(());
                let _ = wait.lock().unwrap().recv();
            }))
            .unwrap();
        }
        // Each task blocks until released: all three started means three
        // threads.
        for _ in 0..3 {
            started.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        until_idle(&pool, 3);
    }

    #[test]
    fn idle_connections_end_once_unused_for_a_while() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/mcp", listener.local_addr().unwrap())).unwrap();
        let queue = Queue::default();
        let then = Instant::now();
        {
            let mut work = queue.work();
            work.idle.push((Conn::dial(&url, None).unwrap(), then));
            work.idle
                .push((Conn::dial(&url, None).unwrap(), then + WORKER_IDLE));
            work.watched = true;
        }
        assert!(queue.expire(then + WORKER_IDLE), "the newer one is kept");
        assert_eq!(queue.work().idle.len(), 1);
        assert!(!queue.expire(then + 2 * WORKER_IDLE));
        let work = queue.work();
        assert!(work.idle.is_empty() && !work.watched);
    }
}
