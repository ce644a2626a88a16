//! Remote MCP servers' exchanges on the executor's own reactor: a worker
//! is a task, its connection a socket of the executor's (TLS run over it
//! by rustls's state machine), so an answer reaches the client's
//! connection with no hand-over between threads.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Instant;

use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use mcp_provider_core::http::{Outgoing, ResponseEvent, Url};
use mcp_provider_core::upstream::ExchangeId;
use rustls::ClientConnection;

use super::clock::{sleep, Timer};
use super::{BoxFuture, Executor};
use crate::outbound::tls;
use crate::outbound::upstream::conn::{
    self, Events, Failed, Reading, UPSTREAM_DIAL_TIMEOUT, UPSTREAM_READ_CHUNK,
};
use crate::outbound::upstream::{
    Carrier, Carriers, Cut, Cutter, Job, RemoteRun, MAX_WORKERS, WORKER_IDLE,
};

/// Runs a task on the executor, from any thread.
pub type Spawn = Arc<dyn Fn(BoxFuture<()>) + Send + Sync>;

/// A carrier of tasks on `E` for each run, spawned with `spawn`.
pub fn carriers<E: Executor>(spawn: Spawn) -> Carriers {
    Arc::new(move || {
        Box::new(Tasks::<E> {
            spawn: spawn.clone(),
            queue: Arc::new(Queue::default()),
            executor: std::marker::PhantomData,
        })
    })
}

/// One run's worker tasks.
struct Tasks<E> {
    spawn: Spawn,
    queue: Arc<Queue>,
    executor: std::marker::PhantomData<fn() -> E>,
}

/// The exchanges waiting for a worker, and the workers waiting for one.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    /// Unbounded here: the bridge bounds a server's calls in flight
    /// (`max_in_flight`), and the upstream what it holds back.
    jobs: VecDeque<Job>,
    /// The idle workers, the latest to become idle last. The next
    /// exchange goes to that one: under a load lighter than a burst left
    /// workers for, the others see none and end after [`WORKER_IDLE`],
    /// their connections with them, rather than taking turns for good.
    idle: Vec<Arc<Handoff>>,
    workers: usize,
    closed: bool,
}

/// Where an idle worker is handed its next exchange, or told to end.
#[derive(Default)]
struct Handoff {
    state: Mutex<Handed>,
}

#[derive(Default)]
enum Handed {
    /// Nothing yet; the worker, once it waits.
    #[default]
    Nothing,
    Waiting(Waker),
    Job(Job),
    /// The run is over.
    End,
}

/// What an idle worker was handed.
enum Given {
    Job(Job),
    End,
}

impl Handoff {
    fn state(&self) -> MutexGuard<'_, Handed> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands the worker `handed` (a job, or its end) and wakes it.
    fn hand(&self, handed: Handed) {
        if let Handed::Waiting(waker) = std::mem::replace(&mut *self.state(), handed) {
            waker.wake();
        }
    }

    /// What was handed over, if anything (the handoff then empty again);
    /// otherwise `waiting` (the worker's waker, when it waits) is left.
    fn take(&self, waiting: Option<&Waker>) -> Option<Given> {
        // One lock for both: a job handed between a look and the waker's
        // setting would be written over.
        let mut state = self.state();
        match std::mem::take(&mut *state) {
            Handed::Job(job) => Some(Given::Job(job)),
            Handed::End => Some(Given::End),
            Handed::Waiting(w) if waiting.is_none_or(|waker| w.will_wake(waker)) => {
                *state = Handed::Waiting(w);
                None
            }
            _ => {
                if let Some(waker) = waiting {
                    *state = Handed::Waiting(waker.clone());
                }
                None
            }
        }
    }

    /// Resolves once something is handed over.
    async fn handed(&self) -> Given {
        future::poll_fn(|cx| match self.take(Some(cx.waker())) {
            Some(given) => Poll::Ready(given),
            None => Poll::Pending,
        })
        .await
    }
}

impl<E: Executor> Carrier for Tasks<E> {
    fn carry(&self, run: &Arc<RemoteRun>, job: Job) {
        let mut state = self.queue.state();
        if let Some(worker) = state.idle.pop() {
            return worker.hand(Handed::Job(job));
        }
        state.jobs.push_back(job);
        if state.workers < MAX_WORKERS {
            state.workers += 1;
            let (queue, run) = (self.queue.clone(), run.clone());
            (self.spawn)(Box::pin(async move { queue.work_on::<E>(&run).await }));
        }
    }

    fn close(&self) {
        let mut state = self.queue.state();
        state.closed = true;
        for worker in state.idle.drain(..) {
            worker.hand(Handed::End);
        }
    }
}

impl Queue {
    fn state(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next exchange, or `None` once there has been none for a while
    /// (or the run is over and none is left).
    async fn next_job(&self, handoff: &Arc<Handoff>, idle: &mut Idle) -> Option<Job> {
        {
            let mut state = self.state();
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.closed {
                state.workers -= 1;
                return None;
            }
            state.idle.push(handoff.clone());
        }
        loop {
            let next = future::or(async { Some(handoff.handed().await) }, async {
                (&mut idle.timer).await;
                None
            })
            .await;
            let mut state = self.state();
            // One handed over as the timer fired is still this worker's.
            match next.or_else(|| handoff.take(None)) {
                Some(Given::Job(job)) => return Some(job),
                Some(Given::End) => {
                    state.workers -= 1;
                    return None;
                }
                None if idle.over() => {
                    state.idle.retain(|w| !Arc::ptr_eq(w, handoff));
                    state.workers -= 1;
                    return None;
                }
                None => {}
            }
        }
    }

    /// A worker: takes `run`'s exchanges until there are none for a
    /// while, keeping its connection between them.
    async fn work_on<E: Executor>(&self, run: &Arc<RemoteRun>) {
        let Some(mut job) = self.first_job() else {
            return;
        };
        let mut conn: Option<Conn<E>> = None;
        let mut idle = Idle::new();
        let cuts = Arc::new(Cuts::default());
        let handoff = Arc::new(Handoff::default());
        loop {
            carry(run, job, &mut conn, &cuts).await;
            idle.worked();
            match self.next_job(&handoff, &mut idle).await {
                Some(next) => job = next,
                None => break,
            }
        }
    }

    /// The job a new worker was started for, unless a worker that was
    /// just finishing took it first: the new one then ends at once. Were
    /// it to wait, it would be the newest idle worker, and the next job
    /// would have it dial a connection of its own while the one that took
    /// the job kept another, each racing client adding one more.
    fn first_job(&self) -> Option<Job> {
        let mut state = self.state();
        let job = state.jobs.pop_front();
        if job.is_none() {
            state.workers -= 1;
        }
        job
    }
}

/// How a worker's exchange is cut from any thread: one for the worker's
/// whole life, rather than a channel made for each exchange. A cut names
/// its exchange; one that comes after the worker moved on (an exchange
/// that ended as it was cut) finds it no longer carried and does nothing.
#[derive(Default)]
struct Cuts {
    state: Mutex<CutState>,
}

#[derive(Default)]
struct CutState {
    /// The exchange under way, and whether it was cut.
    carrying: Option<ExchangeId>,
    cut: bool,
    /// The worker, waiting on its exchange.
    waker: Option<Waker>,
}

impl Cutter for Cuts {
    fn cut(&self, id: ExchangeId) {
        let mut state = self.state();
        if state.carrying == Some(id) {
            state.cut = true;
            if let Some(waker) = state.waker.take() {
                waker.wake();
            }
        }
    }
}

impl Cuts {
    fn state(&self) -> MutexGuard<'_, CutState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Exchange `id` begins (or is tried again): the way to cut it is
    /// these cuts, for [`RemoteRun::started`].
    fn begin(self: &Arc<Self>, id: ExchangeId) -> Cut {
        let mut state = self.state();
        state.carrying = Some(id);
        state.cut = false;
        drop(state);
        self.clone()
    }

    /// Ready once the exchange under way is cut.
    async fn until_cut(&self) {
        future::poll_fn(|cx| {
            let mut state = self.state();
            if state.cut {
                return Poll::Ready(());
            }
            if !state
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                state.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

/// When a worker has waited [`WORKER_IDLE`] for work: one timer for its
/// whole life, moved on only when it fires early. (A timer made for each
/// wait would cost a reactor with a timer file a system call or two per
/// exchange.)
struct Idle {
    timer: Timer,
    /// When the worker last finished an exchange.
    since: Instant,
}

impl Idle {
    fn new() -> Self {
        let since = Instant::now();
        Idle {
            timer: Timer::at(since + WORKER_IDLE),
            since,
        }
    }

    fn worked(&mut self) {
        self.since = Instant::now();
    }

    /// The timer fired: whether the worker has been idle long enough, or
    /// else the timer set again for when it will have been.
    fn over(&mut self) -> bool {
        let due = self.since + WORKER_IDLE;
        if Instant::now() >= due {
            return true;
        }
        self.timer = Timer::at(due);
        false
    }
}

/// One exchange: on the kept connection if it still serves (once more on
/// a new one if the server had closed it), else on a new one.
async fn carry<E: Executor>(
    run: &Arc<RemoteRun>,
    job: Job,
    conn: &mut Option<Conn<E>>,
    cuts: &Arc<Cuts>,
) {
    if conn
        .as_ref()
        .is_some_and(|c| !c.dialed.same_origin(&job.request.url))
    {
        *conn = None;
    }
    for _attempt in 0..2 {
        // Registered before dialing, so a cut run stops a dial under way
        // too (its socket dropped with it).
        if !run.started(job.id, cuts.begin(job.id)) {
            return;
        }
        // Cut, or past the job's deadline: either ends the try as an
        // abort does.
        let stopped = || async {
            let cut = cuts.until_cut();
            match job.deadline {
                Some(at) => {
                    future::or(cut, async {
                        Timer::at(at).await;
                    })
                    .await
                }
                None => cut.await,
            }
        };
        let fresh = conn.is_none();
        if fresh {
            let dial = async { Some(Conn::dial(&job.request.url, run.ca_file()).await) };
            let stop = async {
                stopped().await;
                None
            };
            match future::or(dial, stop).await {
                Some(Ok(dialed)) => *conn = Some(dialed),
                Some(Err(e)) => return run.dial_failed(job.id, &e),
                None => {
                    run.settle(job.id, Ok(false), fresh, conn);
                    return;
                }
            }
        }
        let Some(open) = conn.as_mut() else {
            return;
        };
        let exchange = open.exchange(&job.request, job.max_body(), |events| {
            run.feed(job.id, events)
        });
        let stop = async {
            stopped().await;
            Ok(false)
        };
        let result = future::or(exchange, stop).await;
        if !run.settle(job.id, result, fresh, conn) {
            return;
        }
    }
}

/// One open connection: the executor's socket, and TLS on it for
/// `https`.
struct Conn<E: Executor> {
    tcp: E::Tcp,
    tls: Option<Box<ClientConnection>>,
    /// Bytes read from the socket that TLS has not taken yet.
    sealed: Vec<u8>,
    /// Where each read lands, kept for the connection's next exchange.
    buf: Vec<u8>,
    /// The list a response's pieces are taken into, likewise.
    events: Vec<ResponseEvent>,
    /// The URL it was dialed for: its origin (scheme, host, port) is the
    /// server it is connected to.
    dialed: Url,
}

impl<E: Executor> Conn<E> {
    /// Dials `url`'s server, then runs the TLS handshake for `https`
    /// (trusting `ca_file`'s roots, if given), both within
    /// [`UPSTREAM_DIAL_TIMEOUT`]: a server that accepts and never speaks TLS would
    /// otherwise keep the task and its socket for good.
    async fn dial(url: &Url, ca_file: Option<&str>) -> Result<Conn<E>, Failed> {
        let timeout = async {
            sleep(UPSTREAM_DIAL_TIMEOUT).await;
            Err(conn::dial_late(url))
        };
        future::or(Conn::connect(url, ca_file), timeout).await
    }

    async fn connect(url: &Url, ca_file: Option<&str>) -> Result<Conn<E>, Failed> {
        let tcp = E::connect(url.host(), url.port())
            .await
            .map_err(|e| Failed::Dial(format!("{} cannot be reached ({e})", url.authority())))?;
        let mut conn = Conn {
            tcp,
            tls: None,
            sealed: Vec::new(),
            buf: Vec::new(),
            events: Vec::new(),
            dialed: url.clone(),
        };
        if url.is_secure() {
            let config = tls::client_config(ca_file).map_err(|e| Failed::Dial(e.to_string()))?;
            let client = tls::client(url.host(), config)
                .map_err(|e| Failed::Dial(format!("TLS with {}: {e}", url.authority())))?;
            conn.tls = Some(Box::new(client));
            conn.handshake()
                .await
                .map_err(|e| Failed::Dial(format!("TLS with {}: {e}", url.authority())))?;
        }
        Ok(conn)
    }

    async fn handshake(&mut self) -> io::Result<()> {
        while self.tls.as_ref().is_some_and(|tls| tls.is_handshaking()) {
            self.send_sealed().await?;
            if self.tls.as_ref().is_some_and(|tls| tls.wants_read()) && !self.open_more().await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        self.send_sealed().await
    }

    /// Sends `request` and reads its response, as the blocking
    /// connection's [`exchange`](crate::outbound::upstream::conn::Conn::exchange).
    async fn exchange(
        &mut self,
        request: &Outgoing,
        max_body: usize,
        mut on: impl FnMut(Events<'_>) -> bool,
    ) -> Result<bool, (Failed, usize)> {
        self.write(&request.encode())
            .await
            .map_err(|e| (Failed::Broken(e.to_string()), 0))?;
        let events = std::mem::take(&mut self.events);
        let mut reading = Reading::reusing(request, max_body, events);
        // Taken while reading (a cut exchange leaves it empty: made anew).
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(UPSTREAM_READ_CHUNK, 0);
        let read = async {
            loop {
                let n = self.read(&mut buf).await.map_err(|e| reading.broken(&e))?;
                let took = reading.took(buf.get(..n).unwrap_or_default())?;
                if took.events.len() > 0 && !on(took.events) {
                    return Ok(false);
                }
                if let Some(reusable) = took.ended {
                    return Ok(reusable);
                }
            }
        }
        .await;
        self.buf = buf;
        self.events = reading.into_events();
        read
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let Some(tls) = &mut self.tls else {
                self.tcp.write_all(rest).await?;
                break;
            };
            // TLS takes as much as its buffer holds; sent, it takes more.
            let taken = tls.writer().write(rest)?;
            if taken == 0 && !tls.wants_write() {
                return Err(io::ErrorKind::WriteZero.into());
            }
            rest = rest.get(taken..).unwrap_or_default();
            self.send_sealed().await?;
        }
        self.tcp.flush().await
    }

    /// What TLS has to send, sent.
    async fn send_sealed(&mut self) -> io::Result<()> {
        let Some(tls) = &mut self.tls else {
            return Ok(());
        };
        let mut out = Vec::new();
        while tls.wants_write() {
            tls.write_tls(&mut out)?;
        }
        if !out.is_empty() {
            self.tcp.write_all(&out).await?;
        }
        Ok(())
    }

    /// Reads into `buf`: what the server sent, opened if over TLS (0: the
    /// connection ended).
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(tls) = &mut self.tls else {
                return self.tcp.read(buf).await;
            };
            match tls.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                read => return read,
            }
            if !self.open_more().await? {
                // The server's end, told to TLS, which says if it was
                // a clean one.
                if let Some(tls) = &mut self.tls {
                    tls.read_tls(&mut io::empty())?;
                    tls.process_new_packets().map_err(io::Error::other)?;
                }
            }
        }
    }

    /// Hands TLS more of what the server sent (read from the socket when
    /// none is left over), and sends what it answers; false once the
    /// socket ended.
    async fn open_more(&mut self) -> io::Result<bool> {
        if self.sealed.is_empty() {
            self.sealed.resize(UPSTREAM_READ_CHUNK, 0);
            let n = self.tcp.read(&mut self.sealed).await;
            self.sealed.truncate(*n.as_ref().unwrap_or(&0));
            if n? == 0 {
                return Ok(false);
            }
        }
        let Some(tls) = &mut self.tls else {
            return Ok(true);
        };
        let mut sealed = self.sealed.as_slice();
        let taken = tls.read_tls(&mut sealed);
        let left = sealed.len();
        let used = self.sealed.len() - left;
        self.sealed.drain(..used);
        taken?;
        let processed = tls.process_new_packets().map_err(io::Error::other);
        // An alert for a failure, or a post-handshake message.
        self.send_sealed().await?;
        processed.map(|_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the exchange under way is cut, asked once.
    fn is_cut(cuts: &Cuts) -> bool {
        future::block_on(future::poll_once(cuts.until_cut())).is_some()
    }

    #[test]
    fn a_cut_ends_the_exchange_it_names() {
        let cuts = Arc::new(Cuts::default());
        let cut = cuts.begin(ExchangeId(1));
        assert!(!is_cut(&cuts));
        cut.cut(ExchangeId(1));
        assert!(is_cut(&cuts));
    }

    fn job(id: u64) -> Job {
        Job {
            id: ExchangeId(id),
            request: Outgoing::new("POST", Url::parse("http://127.0.0.1:9/mcp").unwrap()),
            streaming: false,
            deadline: None,
        }
    }

    fn handed_id(given: Option<Given>) -> Option<u64> {
        match given {
            Some(Given::Job(job)) => Some(job.id.0),
            _ => None,
        }
    }

    #[test]
    fn a_worker_gets_what_is_handed_before_or_while_it_waits() {
        let handoff = Handoff::default();
        handoff.hand(Handed::Job(job(1)));
        assert_eq!(
            handed_id(future::block_on(future::poll_once(handoff.handed()))),
            Some(1)
        );

        let mut waiting = Box::pin(handoff.handed());
        assert!(future::block_on(future::poll_once(&mut waiting)).is_none());
        handoff.hand(Handed::Job(job(2)));
        assert_eq!(
            handed_id(future::block_on(future::poll_once(&mut waiting))),
            Some(2)
        );

        // Taken once, whoever takes it; an end ends the wait.
        let mut again = Box::pin(handoff.handed());
        assert!(future::block_on(future::poll_once(&mut again)).is_none());
        handoff.hand(Handed::Job(job(3)));
        assert_eq!(handed_id(handoff.take(None)), Some(3));
        handoff.hand(Handed::End);
        assert!(matches!(future::block_on(again), Given::End));
    }

    #[test]
    fn a_late_cut_leaves_the_next_exchange_alone() {
        let cuts = Arc::new(Cuts::default());
        let late = cuts.begin(ExchangeId(7));
        let _next = cuts.begin(ExchangeId(3));
        late.cut(ExchangeId(7));
        assert!(!is_cut(&cuts), "exchanges need not come in order");
        let again = cuts.begin(ExchangeId(3));
        again.cut(ExchangeId(3));
        assert!(is_cut(&cuts));
        let _after = cuts.begin(ExchangeId(8));
        assert!(!is_cut(&cuts), "a new exchange starts uncut");
    }
}
