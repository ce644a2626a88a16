//! A bridged child's stdin, written by whichever thread has a line for it.
//!
//! Lines are queued in order ([`Stdin::queue_line`]) and written by
//! [`Stdin::flush`]. The bridge queues under its own lock, so lines reach
//! the child in the order the bridge made them whichever thread made them,
//! and flushes after letting go of it: the write wakes the child, which
//! takes a while.
//!
//! The pipe is non-blocking: what it takes at once (nearly always: a pipe
//! holds 64 KiB) is written by the flushing thread, with no hand-over to
//! another thread and the wake-up that costs on every call. Lines queued
//! while one thread writes are written by that same thread, several in one
//! write, before it stops. Whatever the pipe does not take waits, in order,
//! in a bounded queue that a writer thread of the child drains as the pipe
//! empties. Only that thread ever closes the pipe, and never while another
//! writes, so no thread uses a descriptor another closed.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ChildStdin;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Bytes waiting for a child that reads slowly; past this a line is
/// dropped (a child that stopped reading is then found hung by its health
/// check and restarted).
pub const QUEUE_BYTES: usize = 8 << 20;

/// How long the writer thread waits for the pipe to drain before it looks
/// again whether it was told to close.
const DRAIN_POLL: Duration = Duration::from_millis(500);

pub struct Stdin {
    state: Mutex<State>,
    /// Rung when bytes are queued or the pipe is to be closed.
    bell: Condvar,
}

struct State {
    /// `None` once the writer thread closed it.
    pipe: Option<ChildStdin>,
    queued: VecDeque<u8>,
    /// A thread writes outside the lock: it writes what is queued
    /// meanwhile before it stops, and the pipe is not closed under it.
    writing: bool,
    /// The pipe took less than it was offered: the writer thread owns the
    /// queue until it has written all of it (a flush would only find the
    /// pipe full again).
    full: bool,
    /// Close once `queued` is written.
    closing: bool,
    /// A write failed (the child is gone): everything is dropped.
    broken: bool,
}

/// What a line came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Written or queued behind earlier lines.
    Taken,
    /// The queue is full: the line was dropped.
    Dropped,
}

impl Stdin {
    pub fn new(pipe: ChildStdin) -> io::Result<Stdin> {
        set_nonblocking(pipe.as_raw_fd())?;
        Ok(Stdin {
            state: Mutex::new(State {
                pipe: Some(pipe),
                queued: VecDeque::new(),
                writing: false,
                full: false,
                closing: false,
                broken: false,
            }),
            bell: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `line` and a newline (written together: a reader woken by
    /// half a line would only wait for the rest) behind the lines queued
    /// before it; [`Stdin::flush`] writes them.
    pub fn queue_line(&self, line: String) -> Written {
        let mut state = self.lock();
        if state.closing || state.broken {
            return Written::Taken;
        }
        // A line when nothing waits is taken whatever its size: the pipe
        // gets it at once.
        let waiting = state.writing || state.full || !state.queued.is_empty();
        if waiting && state.queued.len() + line.len() > QUEUE_BYTES {
            return Written::Dropped;
        }
        state.queued.extend(line.as_bytes());
        state.queued.push_back(b'\n');
        Written::Taken
    }

    /// Writes what is queued, unless another thread is writing (it writes
    /// this too before it stops) or the pipe was full (the writer thread
    /// drains the queue as the pipe empties).
    pub fn flush(&self) {
        let mut state = self.lock();
        if state.writing || state.full || state.queued.is_empty() {
            return;
        }
        let Some(fd) = state.pipe.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        state.writing = true;
        let mut batch = Vec::with_capacity(state.queued.len());
        move_all(&mut state.queued, &mut batch);
        drop(state);
        self.write_out(fd, batch);
    }

    /// Writes `batch` without holding the lock, then whatever was queued
    /// meanwhile, until nothing is left or the pipe is full (the rest is
    /// then queued first, for the writer thread).
    fn write_out(&self, fd: RawFd, mut batch: Vec<u8>) {
        loop {
            // `writing` is set: the pipe stays open until it is cleared.
            let written = write_fd(fd, &batch);
            let mut state = self.lock();
            match written {
                Ok(n) if n == batch.len() && state.queued.is_empty() => {
                    state.writing = false;
                    if state.closing {
                        self.bell.notify_one();
                    }
                    return;
                }
                Ok(n) if n == batch.len() => {
                    batch.clear();
                    move_all(&mut state.queued, &mut batch);
                }
                Ok(n) => {
                    let rest = batch.get(n..).unwrap_or_default();
                    let later = std::mem::take(&mut state.queued);
                    state.queued.extend(rest);
                    state.queued.extend(later);
                    state.writing = false;
                    state.full = true;
                    self.bell.notify_one();
                    return;
                }
                Err(_) => {
                    state.broken = true;
                    state.writing = false;
                    self.bell.notify_one();
                    return;
                }
            }
        }
    }

    /// Closes stdin once what is queued is written.
    pub fn close(&self) {
        self.lock().closing = true;
        self.bell.notify_one();
    }

    /// The writer thread: writes what the pipe did not take as it drains,
    /// and closes the pipe when told to (or when it broke).
    pub fn drain(&self) {
        let mut state = self.lock();
        loop {
            let done = state.broken || (state.closing && state.queued.is_empty());
            if done && !state.writing {
                state.pipe = None;
                state.queued.clear();
                return;
            }
            // Another thread writes (it writes the queue too), or the pipe
            // was not found full and nothing is to be closed: the lines
            // wait for their flush.
            if done || state.writing || state.queued.is_empty() || !(state.full || state.closing) {
                state = self.bell.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let Some(fd) = state.pipe.as_ref().map(AsRawFd::as_raw_fd) else {
                state.queued.clear();
                return;
            };
            drop(state);
            // Only this thread closes the pipe, so `fd` stays open here.
            wait_writable(fd, DRAIN_POLL);
            state = self.lock();
            if state.writing {
                // A flush began meanwhile (the pipe was not full): it
                // writes the queue.
                continue;
            }
            let (front, back) = state.queued.as_slices();
            match write_now(fd, &[front, back]) {
                Ok(n) => {
                    state.queued.drain(..n);
                    state.full &= !state.queued.is_empty();
                }
                Err(_) => state.broken = true,
            }
        }
    }
}

/// Moves every queued byte to the end of `batch`, a slice at a time (a
/// byte-by-byte drain costs as much as the write itself).
fn move_all(queued: &mut VecDeque<u8>, batch: &mut Vec<u8>) {
    let (front, back) = queued.as_slices();
    batch.extend_from_slice(front);
    batch.extend_from_slice(back);
    queued.clear();
}

/// Writes as much of `parts` as the pipe takes without waiting.
fn write_now(fd: RawFd, parts: &[&[u8]]) -> io::Result<usize> {
    let mut written = 0;
    for part in parts {
        let n = write_fd(fd, part)?;
        written += n;
        if n < part.len() {
            break;
        }
    }
    Ok(written)
}

/// Writes as much of `bytes` to the non-blocking `fd` as it takes without
/// waiting.
fn write_fd(fd: RawFd, mut bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while !bytes.is_empty() {
        // SAFETY: `bytes` is valid for reads of its length for the whole
        // call; the caller keeps `fd` open (see `State::writing`).
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        match usize::try_from(n) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                written += n;
                bytes = bytes.get(n..).unwrap_or_default();
            }
            Err(_) => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => return Ok(written),
                    io::ErrorKind::Interrupted => {}
                    _ => return Err(e),
                }
            }
        }
    }
    Ok(written)
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(2) on a descriptor we own, with integer arguments.
    let done = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    if done {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits until `fd` can be written (or has failed), at most `wait`.
fn wait_writable(fd: RawFd, wait: Duration) {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let millis = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: poll(2) reads and writes only the one pollfd we own.
    unsafe {
        libc::poll(&mut poll, 1, millis);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::Arc;

    /// `cat` with its stdin ours and its stdout read back.
    fn cat() -> (std::process::Child, Arc<Stdin>) {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = Arc::new(Stdin::new(child.stdin.take().unwrap()).unwrap());
        (child, stdin)
    }

    /// Queues `line` and flushes it, as the bridge does.
    fn write_line(stdin: &Stdin, line: String) -> Written {
        let written = stdin.queue_line(line);
        stdin.flush();
        written
    }

    /// The writer thread of `stdin`.
    fn drain(stdin: &Arc<Stdin>) -> std::thread::JoinHandle<()> {
        let stdin = stdin.clone();
        std::thread::spawn(move || stdin.drain())
    }

    #[test]
    fn lines_the_pipe_cannot_take_at_once_are_written_in_order_as_it_drains() {
        let (mut child, stdin) = cat();
        let writer = drain(&stdin);
        // Far more than a pipe holds, while nobody reads yet.
        let line = "x".repeat(1000);
        let mut expected = Vec::new();
        for n in 0..400 {
            let line = format!("{n}:{line}");
            assert_eq!(write_line(&stdin, line.clone()), Written::Taken);
            expected.extend(line.bytes());
            expected.push(b'\n');
        }
        stdin.close();
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        writer.join().unwrap();
        assert_eq!(out, expected);
        child.wait().unwrap();
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_each_thread_in_order() {
        let (mut child, stdin) = cat();
        let writer = drain(&stdin);
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            stdout.read_to_string(&mut out).unwrap();
            out
        });
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let stdin = stdin.clone();
                std::thread::spawn(move || {
                    for n in 0..500 {
                        let line = format!("{t} {n} {}", "z".repeat(n % 300));
                        assert_eq!(write_line(&stdin, line), Written::Taken);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        stdin.close();
        let out = reader.join().unwrap();
        writer.join().unwrap();
        let mut next = [0usize; 8];
        for line in out.lines() {
            let mut parts = line.split(' ');
            let t: usize = parts.next().unwrap().parse().unwrap();
            let n: usize = parts.next().unwrap().parse().unwrap();
            assert_eq!(parts.next().unwrap(), "z".repeat(n % 300), "a whole line");
            assert_eq!(n, next[t], "thread {t}'s lines in order");
            next[t] += 1;
        }
        assert_eq!(next, [500; 8], "every line arrived");
        child.wait().unwrap();
    }

    /// The bridge queues under its lock and flushes after: a line queued
    /// first goes first, whichever thread flushes first.
    #[test]
    fn lines_go_in_the_order_they_were_queued_whoever_flushes() {
        let (mut child, stdin) = cat();
        let writer = drain(&stdin);
        assert_eq!(stdin.queue_line("first".into()), Written::Taken);
        let other = stdin.clone();
        std::thread::spawn(move || write_line(&other, "second".into()))
            .join()
            .unwrap();
        stdin.flush();
        stdin.close();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        writer.join().unwrap();
        assert_eq!(out, "first\nsecond\n");
        child.wait().unwrap();
    }

    #[test]
    fn a_full_queue_drops_the_line_and_a_gone_child_breaks_nothing() {
        let (mut child, stdin) = cat();
        let big = "y".repeat(QUEUE_BYTES / 2);
        let mut dropped = false;
        for _ in 0..4 {
            dropped |= write_line(&stdin, big.clone()) == Written::Dropped;
        }
        assert!(
            dropped,
            "a child that reads nothing holds at most the bound"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        let writer = drain(&stdin);
        write_line(&stdin, "after the end".into());
        stdin.close();
        writer.join().unwrap();
    }
}
