//! A bridged child's stdin, written by whichever thread has a line for it.
//!
//! The pipe is non-blocking: a line the pipe takes at once (nearly always:
//! a pipe holds 64 KiB) is written on the spot, with no hand-over to
//! another thread and the wake-up that costs on every call. Whatever the
//! pipe does not take waits, in order, in a bounded queue that a writer
//! thread of the child drains as the pipe empties. Only that thread ever
//! closes the pipe, so no thread polls a descriptor another closed.

use std::collections::VecDeque;
use std::io::{self, Write};
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
                closing: false,
                broken: false,
            }),
            bell: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `line` and a newline (in one write: a reader woken by half a
    /// line would only wait for the rest), at once when nothing waits
    /// before it.
    pub fn write_line(&self, line: String) -> Written {
        let mut state = self.lock();
        if state.closing || state.broken {
            return Written::Taken;
        }
        let mut line = line.into_bytes();
        line.push(b'\n');
        let mut rest: &[u8] = &line;
        if state.queued.is_empty() {
            let written = match state.pipe.as_mut() {
                Some(pipe) => write_now(pipe, &[rest]),
                None => return Written::Taken,
            };
            match written {
                Ok(n) if n == line.len() => return Written::Taken,
                Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                Err(_) => {
                    state.broken = true;
                    self.bell.notify_one();
                    return Written::Taken;
                }
            }
        } else if state.queued.len() + line.len() > QUEUE_BYTES {
            return Written::Dropped;
        }
        state.queued.extend(rest);
        self.bell.notify_one();
        Written::Taken
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
            if state.broken || (state.closing && state.queued.is_empty()) {
                state.pipe = None;
                state.queued.clear();
                return;
            }
            if state.queued.is_empty() {
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
            let State { pipe, queued, .. } = &mut *state;
            let Some(pipe) = pipe.as_mut() else {
                continue;
            };
            let (front, back) = queued.as_slices();
            match write_now(pipe, &[front, back]) {
                Ok(n) => {
                    queued.drain(..n);
                }
                Err(_) => state.broken = true,
            }
        }
    }
}

/// Writes as much of `parts` as the pipe takes without waiting.
fn write_now(pipe: &mut ChildStdin, parts: &[&[u8]]) -> io::Result<usize> {
    let mut written = 0;
    for part in parts {
        let mut part = *part;
        while !part.is_empty() {
            match pipe.write(part) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    part = part.get(n..).unwrap_or_default();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
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

    #[test]
    fn lines_the_pipe_cannot_take_at_once_are_written_in_order_as_it_drains() {
        let (mut child, stdin) = cat();
        let writer = {
            let stdin = stdin.clone();
            std::thread::spawn(move || stdin.drain())
        };
        // Far more than a pipe holds, while nobody reads yet.
        let line = "x".repeat(1000);
        let mut expected = Vec::new();
        for n in 0..400 {
            let line = format!("{n}:{line}");
            assert_eq!(stdin.write_line(line.clone()), Written::Taken);
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
    fn a_full_queue_drops_the_line_and_a_gone_child_breaks_nothing() {
        let (mut child, stdin) = cat();
        let big = "y".repeat(QUEUE_BYTES / 2);
        let mut dropped = false;
        for _ in 0..4 {
            dropped |= stdin.write_line(big.clone()) == Written::Dropped;
        }
        assert!(
            dropped,
            "a child that reads nothing holds at most the bound"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        let writer = {
            let stdin = stdin.clone();
            std::thread::spawn(move || stdin.drain())
        };
        stdin.write_line("after the end".into());
        stdin.close();
        writer.join().unwrap();
    }
}
