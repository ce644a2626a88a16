//! The executor thread's own reactor: sockets and pipes registered once
//! with epoll, edge-triggered, for reading and writing at once, and waited
//! on by the thread that runs the tasks.
//!
//! smol's reactor (async-io) registers a source one-shot, so every wait
//! re-arms it, arms a timerfd and re-arms the eventfd: four or five system
//! calls a wait. And a helper thread of its own takes over the waiting
//! whenever the executor thread has been busy for 50 µs, or idle for a
//! while: the executor thread then sleeps on a futex and every readiness
//! reaches it through that thread. Here a wait is one `epoll_wait`, on the
//! executor thread itself; timers are the kit's timer thread's, so a wait
//! has no deadline to set.
//!
//! An edge comes once per change: a source counts them, and is ready
//! until an attempt finds nothing left (`WouldBlock`, or a read shorter
//! than its buffer) with no edge counted since it began. Only then does a
//! task leave its waker, so no edge is lost between the two; and a hang-up
//! keeps the source ready for good.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

/// Events taken from the kernel per wait.
const EVENTS: usize = 256;
/// The epoll key of the bell.
const BELL: u64 = u64::MAX;

pub struct Reactor {
    epoll: OwnedFd,
    /// An eventfd: written to end a wait early.
    bell: OwnedFd,
    /// Every registered source, by its key.
    sources: Mutex<Slab>,
    /// A thread is in (or about to enter) `epoll_wait`: a wake-up must
    /// ring the bell.
    waiting: AtomicBool,
}

#[derive(Default)]
struct Slab {
    entries: Vec<Option<Arc<Source>>>,
    free: Vec<usize>,
}

/// One way of a source: reading or writing.
struct Way {
    /// Edges seen, counted.
    edges: u64,
    /// `edges` when an attempt last found nothing to do: the way is ready
    /// while more edges came since.
    cleared: u64,
    /// The peer hung up, or the descriptor failed: always ready from now
    /// on (a read finds the end, a write the error), with no edge to come.
    closed: bool,
    waker: Option<Waker>,
}

impl Way {
    /// A new registration: an edge may have come before it, so the first
    /// attempt is made.
    const FRESH: Way = Way {
        edges: 1,
        cleared: 0,
        closed: false,
        waker: None,
    };

    fn is_ready(&self) -> bool {
        self.closed || self.edges != self.cleared
    }

    fn wait(&mut self, cx: &Context<'_>) {
        match &self.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => self.waker = Some(cx.waker().clone()),
        }
    }
}

/// A file descriptor registered with the reactor.
pub struct Source {
    fd: RawFd,
    key: usize,
    read: Mutex<Way>,
    write: Mutex<Way>,
}

#[derive(Clone, Copy)]
pub enum Direction {
    Read,
    Write,
}

static REACTOR: OnceLock<Reactor> = OnceLock::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code that can panic runs under these locks.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    match result {
        -1 => Err(io::Error::last_os_error()),
        n => Ok(n),
    }
}

impl Reactor {
    /// The process's reactor, made the first time (its epoll and its bell).
    pub fn get() -> io::Result<&'static Reactor> {
        if let Some(reactor) = REACTOR.get() {
            return Ok(reactor);
        }
        let made = Reactor::new()?;
        Ok(REACTOR.get_or_init(|| made))
    }

    fn new() -> io::Result<Reactor> {
        // SAFETY: plain system calls; each descriptor returned is owned
        // from here on.
        let epoll =
            unsafe { OwnedFd::from_raw_fd(check(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        let bell = unsafe {
            OwnedFd::from_raw_fd(check(libc::eventfd(
                0,
                libc::EFD_CLOEXEC | libc::EFD_NONBLOCK,
            ))?)
        };
        let reactor = Reactor {
            epoll,
            bell,
            sources: Mutex::new(Slab::default()),
            waiting: AtomicBool::new(false),
        };
        reactor.ctl(libc::EPOLL_CTL_ADD, reactor.bell.as_raw_fd(), BELL)?;
        Ok(reactor)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, key: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: key,
        };
        // SAFETY: `event` lives across the call; the kernel copies it.
        check(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event) }).map(drop)
    }

    /// Registers `fd` (non-blocking already) for both ways.
    pub fn register(&self, fd: RawFd) -> io::Result<Arc<Source>> {
        let mut slab = lock(&self.sources);
        let key = slab.free.pop().unwrap_or(slab.entries.len());
        let source = Arc::new(Source {
            fd,
            key,
            read: Mutex::new(Way::FRESH),
            write: Mutex::new(Way::FRESH),
        });
        if let Err(e) = self.ctl(libc::EPOLL_CTL_ADD, fd, key as u64) {
            slab.free.push(key);
            return Err(e);
        }
        match slab.entries.get_mut(key) {
            Some(entry) => *entry = Some(source.clone()),
            None => slab.entries.push(Some(source.clone())),
        }
        Ok(source)
    }

    /// Takes `source` out, before its descriptor is closed.
    pub fn deregister(&self, source: &Source) {
        // Closing the descriptor would remove it from the epoll set too,
        // but only once no duplicate of it is left open.
        let _ = self.ctl(libc::EPOLL_CTL_DEL, source.fd, 0);
        let mut slab = lock(&self.sources);
        if let Some(entry) = slab.entries.get_mut(source.key) {
            *entry = None;
            slab.free.push(source.key);
        }
    }

    /// Waits for readiness (at most `timeout_ms`, -1 for no limit) and
    /// wakes the tasks waiting for it; a wait announced with
    /// [`Reactor::announce_wait`] is over once this returns.
    pub fn wait(&self, timeout_ms: libc::c_int) {
        // Not zeroed: that would cost more than the wait's own work.
        let mut events = [const { MaybeUninit::<libc::epoll_event>::uninit() }; EVENTS];
        // SAFETY: the buffer holds `EVENTS` events.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr().cast(),
                EVENTS as libc::c_int,
                timeout_ms,
            )
        };
        // Wake-ups from here on need not ring: what they queue is run
        // once the events are handed out.
        self.waiting.store(false, Ordering::SeqCst);
        let Ok(n) = usize::try_from(n) else {
            // EINTR: the caller polls its tasks and comes back.
            return;
        };
        for event in events.iter().take(n) {
            // SAFETY: the kernel wrote the first `n` events.
            let event = unsafe { event.assume_init_ref() };
            let (flags, key) = (event.events, event.u64);
            if key == BELL {
                let mut drained = [0u8; 8];
                // SAFETY: reads at most 8 bytes into `drained`.
                let _ =
                    unsafe { libc::read(self.bell.as_raw_fd(), drained.as_mut_ptr().cast(), 8) };
                continue;
            }
            let source = usize::try_from(key)
                .ok()
                .and_then(|key| lock(&self.sources).entries.get(key).cloned().flatten());
            let Some(source) = source else { continue };
            let broken = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
            let ended = flags & (libc::EPOLLRDHUP as u32 | broken) != 0;
            if flags & ((libc::EPOLLIN | libc::EPOLLRDHUP) as u32 | broken) != 0 {
                source.edge(Direction::Read, ended);
            }
            if flags & (libc::EPOLLOUT as u32 | broken) != 0 {
                source.edge(Direction::Write, flags & broken != 0);
            }
        }
    }

    /// Ends a wait under way (or the next one) early.
    pub fn ring(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from `one`. A full counter (never, at one
        // write per wake-up) would only fail the write: a wait is ending.
        let _ = unsafe { libc::write(self.bell.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    /// Announces that the calling thread is about to wait: from now on a
    /// wake-up rings the bell. The caller checks for a wake-up after this,
    /// and then waits, or takes the announcement back ([`Reactor::no_wait`]).
    pub fn announce_wait(&self) {
        self.waiting.store(true, Ordering::SeqCst);
    }

    pub fn no_wait(&self) {
        self.waiting.store(false, Ordering::SeqCst);
    }

    /// Whether a thread is waiting, so that a wake-up must ring.
    pub fn is_waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst)
    }
}

impl Source {
    fn way(&self, direction: Direction) -> &Mutex<Way> {
        match direction {
            Direction::Read => &self.read,
            Direction::Write => &self.write,
        }
    }

    /// An edge came (`closed`: a hang-up or an error): the way is ready,
    /// and its waiting task woken.
    fn edge(&self, direction: Direction, closed: bool) {
        let waker = {
            let mut way = lock(self.way(direction));
            way.edges += 1;
            way.closed |= closed;
            way.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The edges counted so far, to tell [`Source::clear`] when an attempt
    /// began.
    pub fn edges(&self, direction: Direction) -> u64 {
        lock(self.way(direction)).edges
    }

    /// An attempt begun at `edges` found nothing left: the way is not
    /// ready, unless an edge came since or the peer hung up (then false:
    /// try again). With `cx`, its task waits for the next edge.
    pub fn clear(&self, direction: Direction, edges: u64, cx: Option<&Context<'_>>) -> bool {
        let mut way = lock(self.way(direction));
        if way.closed || way.edges != edges {
            return false;
        }
        way.cleared = edges;
        if let Some(cx) = cx {
            way.wait(cx);
        }
        true
    }

    /// Ready while an edge came since the way was last cleared; else the
    /// task waits for the next one.
    pub fn poll_ready(&self, direction: Direction, cx: &mut Context<'_>) -> Poll<()> {
        let mut way = lock(self.way(direction));
        if way.is_ready() {
            return Poll::Ready(());
        }
        way.wait(cx);
        Poll::Pending
    }
}

/// Sets `fd` non-blocking, in one system call.
pub fn nonblocking(fd: RawFd) -> io::Result<()> {
    let mut on: libc::c_int = 1;
    // SAFETY: `on` lives across the call, on a descriptor the caller owns.
    check(unsafe { libc::ioctl(fd, libc::FIONBIO, &mut on) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    /// A reactor of its own, and a socket pair whose second end it watches.
    fn watched() -> (Reactor, UnixStream, UnixStream, Arc<Source>) {
        let reactor = Reactor::new().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let source = reactor.register(b.as_raw_fd()).unwrap();
        (reactor, a, b, source)
    }

    #[test]
    fn a_way_is_ready_until_an_attempt_finds_nothing_and_a_hang_up_keeps_it_ready() {
        let (reactor, mut a, b, source) = watched();
        let mut cx = Context::from_waker(Waker::noop());
        // Fresh: tried first; it finds nothing, and then waits.
        assert!(source.poll_ready(Direction::Read, &mut cx).is_ready());
        let begun = source.edges(Direction::Read);
        let mut buf = [0u8; 8];
        assert_eq!(
            (&b).read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert!(source.clear(Direction::Read, begun, Some(&cx)));
        assert!(source.poll_ready(Direction::Read, &mut cx).is_pending());
        // Data and the end arrive together: one edge.
        a.write_all(b"hi").unwrap();
        drop(a);
        reactor.wait(1000);
        assert!(source.poll_ready(Direction::Read, &mut cx).is_ready());
        let begun = source.edges(Direction::Read);
        assert_eq!((&b).read(&mut buf).unwrap(), 2);
        // A short read found the pipe empty, but the end is still to read.
        assert!(!source.clear(Direction::Read, begun, None));
        assert!(source.poll_ready(Direction::Read, &mut cx).is_ready());
        assert_eq!((&b).read(&mut buf).unwrap(), 0);
        reactor.deregister(&source);
    }

    #[test]
    fn an_edge_during_an_attempt_keeps_the_way_ready() {
        let (reactor, mut a, _b, source) = watched();
        let begun = source.edges(Direction::Read);
        a.write_all(b"x").unwrap();
        reactor.wait(1000);
        assert!(
            !source.clear(Direction::Read, begun, None),
            "an edge came since"
        );
        reactor.deregister(&source);
    }

    #[test]
    fn a_ring_ends_a_wait() {
        let reactor = Reactor::new().unwrap();
        reactor.ring();
        let started = std::time::Instant::now();
        reactor.wait(10_000);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
