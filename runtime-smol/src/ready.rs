//! Sockets and pipes on the executor thread's reactor, read with as few
//! system calls as a wait needs.
//!
//! A read that finds nothing costs a system call, and a connection that
//! answers a request, or a child's stdout between two answers, waits far
//! more often than it finds data already there; so a read that did not
//! fill its buffer waits for the next edge before the next read.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use smol::io::{AsyncRead, AsyncWrite};

use crate::reactor::{nonblocking, Direction, Reactor, Source};

/// A source read only once the reactor says it is readable, unless the
/// last read may have left more behind (it filled the buffer): a read
/// that would find nothing costs no system call, and waiting for an edge
/// that already came costs none either, so a socket that streams (an
/// agent link) is read this way too. A pipe that keeps filling the buffer
/// lets the other tasks run between two reads: a chatty child must not
/// hold up every connection waiting for its socket.
pub struct Ready<T: AsRawFd> {
    io: T,
    source: Arc<Source>,
    /// The last read found the source empty: the next waits for an edge.
    drained: bool,
    /// A pipe's last read filled the buffer: the next lets others run first.
    yield_first: bool,
    mode: Mode,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Wait after a read that did not fill the buffer.
    Socket,
    /// The same, and yield after one that did.
    Pipe,
}

impl<T: AsRawFd> Ready<T> {
    fn new(io: T, mode: Mode) -> io::Result<Self> {
        nonblocking(io.as_raw_fd())?;
        let source = Reactor::get()?.register(io.as_raw_fd())?;
        Ok(Ready {
            io,
            source,
            drained: false,
            yield_first: false,
            mode,
        })
    }

    /// A socket: read at once while reads fill the buffer.
    pub fn socket(io: T) -> io::Result<Self> {
        Ready::new(io, Mode::Socket)
    }

    /// A pipe: as a socket, and a read that filled the buffer lets the
    /// other tasks run before the next.
    pub fn pipe(io: T) -> io::Result<Self> {
        Ready::new(io, Mode::Pipe)
    }

    /// Runs `op` until it does not meet `WouldBlock`, waiting for the
    /// reactor's word in between; also the edges counted when the attempt
    /// that did began.
    fn poll_io<R>(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<(io::Result<R>, u64)> {
        loop {
            let begun = self.source.edges(direction);
            match op(&self.io) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.source.clear(direction, begun, Some(cx)) {
                        return Poll::Pending;
                    }
                }
                done => return Poll::Ready((done, begun)),
            }
        }
    }
}

impl<T: AsRawFd> Drop for Ready<T> {
    fn drop(&mut self) {
        if let Ok(reactor) = Reactor::get() {
            reactor.deregister(&self.source);
        }
    }
}

impl Ready<TcpListener> {
    /// The next connection, `TCP_NODELAY` set.
    pub async fn accept(&self) -> io::Result<Ready<TcpStream>> {
        let accepted = std::future::poll_fn(|cx| self.poll_io(Direction::Read, cx, |l| l.accept()));
        let (stream, _) = accepted.await.0?;
        let _ = stream.set_nodelay(true);
        Ready::socket(stream)
    }
}

impl<T: AsRawFd + Unpin> AsyncRead for Ready<T>
where
    for<'a> &'a T: Read,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if std::mem::take(&mut self.yield_first) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.drained {
            ready!(self.source.poll_ready(Direction::Read, cx));
        }
        let (read, begun) = ready!(self.poll_io(Direction::Read, cx, |mut io| io.read(buf)));
        let filled = matches!(read, Ok(n) if n == buf.len());
        // A read shorter than the buffer emptied the source; an edge or a
        // hang-up since it began keeps it ready.
        self.drained = read.is_ok() && !filled && self.source.clear(Direction::Read, begun, None);
        self.yield_first = self.mode == Mode::Pipe && filled;
        Poll::Ready(read)
    }
}

/// What closing a source's writing side does: a socket says it is done
/// (the peer reads its end), a pipe is closed when dropped.
pub trait Shut {
    fn shut(&self) -> io::Result<()>;
}

impl Shut for TcpStream {
    fn shut(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl Shut for std::fs::File {
    fn shut(&self) -> io::Result<()> {
        Ok(())
    }
}

impl<T: AsRawFd + Shut + Unpin> AsyncWrite for Ready<T>
where
    for<'a> &'a T: Write,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_io(Direction::Write, cx, |mut io| io.write(buf))
            .map(|(done, _)| done)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_io(Direction::Write, cx, |mut io| io.write_vectored(bufs))
            .map(|(done, _)| done)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.io.shut())
    }
}
