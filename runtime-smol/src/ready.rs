//! Reading with as few system calls as a wait needs.
//!
//! Each reactor wait costs several system calls, and so does each read
//! that finds nothing. A connection that answers a request, and a child's
//! stdout between two answers, wait far more often than they find data
//! already there, so they wait for readiness first and read once.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use smol::io::{AsyncRead, AsyncWrite};
use smol::Async;

/// A source read only once the reactor says it is readable, unless the
/// last read may have left more behind (it filled the buffer). A pipe
/// always waits: a read of a pipe with more waiting completes at once,
/// and a task that is always ready keeps the reactor from being polled,
/// so a chatty child would hold up every connection waiting for its
/// socket. A socket that streams (an agent link) is read at once, as
/// data is there more often than not.
pub struct Ready<T> {
    source: Arc<Async<T>>,
    drained: bool,
    mode: Mode,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Wait after a read that did not fill the buffer.
    Socket,
    /// Always wait.
    Pipe,
    /// Never wait first.
    Eager,
}

impl<T> Ready<T> {
    /// A socket: read at once while reads fill the buffer.
    pub fn socket(source: Arc<Async<T>>) -> Self {
        Ready {
            source,
            drained: false,
            mode: Mode::Socket,
        }
    }

    /// From now on, reads are tried at once.
    pub fn eager(&mut self) {
        self.mode = Mode::Eager;
        self.drained = false;
    }

    /// A pipe: every read waits for the reactor.
    pub fn pipe(source: Async<T>) -> Self {
        Ready {
            source: Arc::new(source),
            drained: true,
            mode: Mode::Pipe,
        }
    }
}

impl<T> AsyncRead for Ready<T>
where
    for<'a> &'a T: Read,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.drained {
            // Not `readable()`: its waker leaves the source when a wait is
            // dropped (a connection's loop drops one whenever mail comes
            // first), and the next wait registers it again with a system
            // call. This one stays until the source is ready.
            ready!(self.source.poll_readable(cx))?;
        }
        let read = ready!(Pin::new(&mut &*self.source).poll_read(cx, buf));
        self.drained = match self.mode {
            Mode::Socket => matches!(read, Ok(n) if n < buf.len()),
            Mode::Pipe => true,
            Mode::Eager => false,
        };
        Poll::Ready(read)
    }
}

/// What closing a source's writing side does: a socket says it is done
/// (the peer reads its end), a pipe is closed when dropped.
pub trait Shut {
    fn shut(&self) -> io::Result<()>;
}

impl Shut for std::net::TcpStream {
    fn shut(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl Shut for std::fs::File {
    fn shut(&self) -> io::Result<()> {
        Ok(())
    }
}

impl<T: Shut> AsyncWrite for Ready<T>
where
    for<'a> &'a T: Write,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.source).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.source).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut &*self.source).poll_flush(cx))?;
        Poll::Ready(self.source.get_ref().shut())
    }
}
