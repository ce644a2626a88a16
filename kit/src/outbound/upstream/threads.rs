//! Remote servers' exchanges on threads: how the blocking runtime carries
//! them (and any runtime that does not carry them itself).
//!
//! The threads are shared by every remote server: a server holds one only
//! while an exchange of its own is under way, so fifty servers called one
//! after another need one thread, not fifty idle ones (each thread that
//! ever lived keeps its stack's touched pages in the C library's cache).
//! Each server keeps its idle connections for its next exchanges, for
//! [`WORKER_IDLE`] or a little longer.
//!
//! A thread that hands a client's request on and would then only wait for
//! the answer (a connection's own thread, in the blocking runtime) makes
//! the exchange itself ([`carrying_here`]): a call answered within
//! [`PATIENCE`] crosses no other thread. The rest of a slower answer is
//! read by the pool, and that thread goes back to its client.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::conn::{Conn, Deadline, Events, Failed, Reading, UPSTREAM_DIAL_TIMEOUT};
use super::{Carrier, Carriers, Job, RemoteRun, MAX_WORKERS, WORKER_IDLE};

/// A thread's stack: it parses HTTP and runs TLS, nothing deep.
const STACK: usize = 256 * 1024;
/// How long a thread making an exchange of its own ([`carrying_here`])
/// waits for the answer before the pool takes the rest: a client leaving
/// meanwhile is noticed that much later.
pub const PATIENCE: Duration = Duration::from_millis(20);

thread_local! {
    /// Whether this thread makes the first exchange it asks for itself,
    /// and that exchange once asked.
    static HERE: RefCell<Here> = const { RefCell::new(Here::Off) };
}

enum Here {
    Off,
    Armed,
    Taken(Box<Deferred>),
}

/// An exchange this thread makes once it has let go of every lock.
struct Deferred {
    queue: Arc<Queue>,
    pool: Arc<Pool>,
    run: Arc<RemoteRun>,
    job: Job,
}

/// Runs `f` (a client's request handed on); the first exchange with a
/// remote server it asks for is then made on this thread, for up to
/// [`PATIENCE`], and the rest of a slower answer left to the pool.
pub fn carrying_here<R>(f: impl FnOnce() -> R) -> R {
    HERE.with(|here| *here.borrow_mut() = Here::Armed);
    let out = f();
    let taken = HERE.with(|here| std::mem::replace(&mut *here.borrow_mut(), Here::Off));
    if let Here::Taken(deferred) = taken {
        (*deferred).carry();
    }
    out
}

impl Deferred {
    fn carry(self) {
        let Deferred {
            queue,
            pool,
            run,
            job,
        } = self;
        let mut conn = queue.work().idle.pop().map(|(conn, _)| conn);
        let Some(waiting) = carry(&run, job, &mut conn, Some(PATIENCE)) else {
            return queue.let_go(&run, &pool, conn);
        };
        let id = waiting.job.id;
        let (worker_run, worker_queue, worker_pool) = (run.clone(), queue.clone(), pool.clone());
        let task = Box::new(move || {
            let mut conn = conn;
            waiting.finish(&worker_run, &mut conn);
            worker_queue.work_with(&worker_run, &worker_pool, conn);
        });
        if pool.run(task).is_err() {
            let why = Failed::Broken("no thread could be started to read the answer".to_owned());
            run.settle(id, Err((why, 1)), false, &mut None::<Conn>);
            queue.no_thread(&run);
        }
    }
}

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

impl Work {
    /// A worker stops: it is counted off, and its connection kept for the
    /// next exchange (unless the run is over). Whether it is the first
    /// kept, for the pool to watch.
    fn counted_off(&mut self, run: &RemoteRun, conn: &mut Option<Conn>) -> bool {
        self.workers -= 1;
        match conn.take() {
            Some(conn) if !run.is_closed() => {
                self.idle.push((conn, Instant::now()));
                !std::mem::replace(&mut self.watched, true)
            }
            _ => false,
        }
    }
}

impl Threads {
    /// `job`, unless this thread takes it to make itself
    /// ([`carrying_here`]), counted as a worker until it is done.
    fn unless_here(&self, run: &Arc<RemoteRun>, job: Job) -> Option<Job> {
        if job.streaming || job.deadline.is_some() {
            return Some(job);
        }
        HERE.with(|here| {
            let mut here = here.borrow_mut();
            if !matches!(*here, Here::Armed) {
                return Some(job);
            }
            {
                let mut work = self.queue.work();
                if work.workers >= MAX_WORKERS {
                    return Some(job);
                }
                work.workers += 1;
            }
            *here = Here::Taken(Box::new(Deferred {
                queue: self.queue.clone(),
                pool: self.pool.clone(),
                run: run.clone(),
                job,
            }));
            None
        })
    }
}

impl Carrier for Threads {
    fn carry(&self, run: &Arc<RemoteRun>, job: Job) {
        let Some(job) = self.unless_here(run, job) else {
            return;
        };
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
        let conn = {
            let mut work = self.work();
            if work.jobs.is_empty() {
                // A worker just finishing took the job this one was
                // started for: an idle connection taken and put back
                // would count as used, and be kept for longer.
                work.workers -= 1;
                return;
            }
            work.idle.pop().map(|(conn, _)| conn)
        };
        self.work_with(run, pool, conn);
    }

    /// A worker on `conn`: takes `run`'s exchanges until none is waiting.
    fn work_with(self: &Arc<Self>, run: &Arc<RemoteRun>, pool: &Pool, mut conn: Option<Conn>) {
        while let Some(job) = self.next_job(run, pool, &mut conn) {
            let _ = carry(run, job, &mut conn, None);
        }
    }

    /// A worker that made an exchange outside the pool is done with it:
    /// the jobs that came meanwhile go to the pool on `conn` (a new
    /// worker, as this thread has a client of its own to go back to), or
    /// `conn` is kept for the next.
    fn let_go(self: &Arc<Self>, run: &Arc<RemoteRun>, pool: &Arc<Pool>, mut conn: Option<Conn>) {
        let first_kept = {
            let mut work = self.work();
            (work.jobs.is_empty()).then(|| work.counted_off(run, &mut conn))
        };
        if let Some(first_kept) = first_kept {
            if first_kept {
                pool.watch(Arc::downgrade(self));
            }
            return;
        }
        let (queue, worker_run) = (self.clone(), run.clone());
        let worker_pool = pool.clone();
        let task = Box::new(move || queue.work_with(&worker_run, &worker_pool, conn));
        if pool.run(task).is_err() {
            self.no_thread(run);
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
            work.counted_off(run, conn)
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

/// An exchange whose answer did not come within the patience it was
/// given, to be read to its end by another thread.
struct Waiting {
    job: Job,
    reading: Reading,
    fresh: bool,
    /// Tries left after this one.
    tries: usize,
}

impl Waiting {
    /// Reads the rest of the answer on `conn` (and, if the server had
    /// closed a kept connection, tries the tries left on a new one).
    fn finish(mut self, run: &Arc<RemoteRun>, conn: &mut Option<Conn>) {
        let id = self.job.id;
        let result = match conn.as_mut() {
            Some(open) => open.read_rest(&mut self.reading, |events| run.feed(id, events)),
            None => Err((Failed::Broken("the connection was lost".to_owned()), 1)),
        };
        if run.settle(id, result, self.fresh, conn) {
            let _ = tries(run, self.job, conn, None, self.tries);
        }
    }
}

/// One exchange: on the kept connection if it still serves (once more on
/// a new one if the server had closed it), else on a new one. With
/// `patience`, an answer that does not come within it is left
/// [`Waiting`].
fn carry(
    run: &Arc<RemoteRun>,
    job: Job,
    conn: &mut Option<Conn>,
    patience: Option<Duration>,
) -> Option<Waiting> {
    if conn.as_ref().is_some_and(|c| !c.serves(&job.request.url)) {
        *conn = None;
    }
    tries(run, job, conn, patience, 2)
}

/// [`carry`], with `tries` left.
fn tries(
    run: &Arc<RemoteRun>,
    job: Job,
    conn: &mut Option<Conn>,
    patience: Option<Duration>,
    tries: usize,
) -> Option<Waiting> {
    for tried in 1..=tries {
        let left = job
            .deadline
            .map(|at| at.saturating_duration_since(Instant::now()));
        if left.is_some_and(|left| left.is_zero()) {
            // Given up, as a cut exchange is.
            return None;
        }
        let fresh = conn.is_none();
        if fresh {
            let limit = left.map_or(UPSTREAM_DIAL_TIMEOUT, |left| {
                left.min(UPSTREAM_DIAL_TIMEOUT)
            });
            match Conn::dial_within(&job.request.url, run.ca_file(), limit) {
                Ok(dialed) => *conn = Some(dialed),
                Err(e) => {
                    run.failed(job.id, &e, false);
                    return None;
                }
            }
        }
        let open = conn.as_mut()?;
        let socket = open.cutter();
        let _deadline = left.map(|left| Deadline::arm(socket.clone(), left));
        if !run.started(job.id, socket) {
            return None;
        }
        let id = job.id;
        let result = match exchange(run, open, &job, patience) {
            Ok(Err(reading)) => {
                let tries = tries - tried;
                return Some(Waiting {
                    job,
                    reading,
                    fresh,
                    tries,
                });
            }
            Ok(Ok(reusable)) => Ok(reusable),
            Err(e) => Err(e),
        };
        if !run.settle(id, result, fresh, conn) {
            return None;
        }
    }
    None
}

/// `job`'s exchange on `open`, its answer waited for `patience` at most
/// (`None`: to its end): whether the connection may carry another
/// request, or the reading of an answer still to come.
fn exchange(
    run: &Arc<RemoteRun>,
    open: &mut Conn,
    job: &Job,
    patience: Option<Duration>,
) -> Result<Result<bool, Reading>, (Failed, usize)> {
    let on = |events: Events<'_>| run.feed(job.id, events);
    let Some(patience) = patience else {
        return open.exchange(&job.request, job.max_body(), on).map(Ok);
    };
    let mut reading = open.send(&job.request, job.max_body())?;
    Ok(match open.read_for(&mut reading, on, patience)? {
        Some(reusable) => Ok(reusable),
        None => Err(reading),
    })
}

/// Threads shared by every run: each waits [`WORKER_IDLE`] for a task,
/// then ends, unless it is the last one waiting while some run keeps an
/// idle connection (it ends those once they expire).
#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
}

type Task = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct PoolState {
    tasks: VecDeque<Task>,
    /// Threads waiting for a task, each on a bell of its own, the latest
    /// to wait last. A task wakes that one: under a load lighter than a
    /// burst left threads for, the others get none and end, rather than
    /// taking turns for good.
    idle: Vec<Arc<Condvar>>,
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
        if let Some(bell) = state.idle.pop() {
            bell.notify_one();
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
        let bell = Arc::new(Condvar::new());
        let mut state = self.state();
        loop {
            if let Some(task) = state.tasks.pop_front() {
                drop(state);
                task();
                state = self.state();
                continue;
            }
            state.idle.push(bell.clone());
            let (guard, waited) = bell
                .wait_timeout(state, WORKER_IDLE)
                .unwrap_or_else(|e| e.into_inner());
            state = guard;
            // Still listed: no task woke it (it timed out, or woke by
            // itself).
            let before = state.idle.len();
            state.idle.retain(|b| !Arc::ptr_eq(b, &bell));
            let woken = state.idle.len() == before;
            if woken || !waited.timed_out() || !state.tasks.is_empty() {
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
            if state.watched.is_empty() || !state.idle.is_empty() {
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
            if pool.state().idle.len() == n {
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
