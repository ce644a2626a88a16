//! The bridge's children on smol: each child's stdout is read on the
//! executor, so an answer reaches its connection's task on the same thread
//! with no hand-over from a reader thread.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::process::ChildStdout;
use std::sync::Arc;

use mcp_provider_kit::bridge::StdoutFeed;
use mcp_provider_kit::process::READ_CHUNK;
use smol::Async;

use crate::ready::ReadReady;

/// Reads `pipe` in a task of its own until it ends, feeding the bridge.
pub fn read_stdout(pipe: ChildStdout, mut feed: StdoutFeed) -> std::io::Result<()> {
    // As a `File`, the pipe can be read through a shared reference.
    let pipe = Async::new(File::from(OwnedFd::from(pipe)))?;
    let mut pipe = ReadReady::new(Arc::new(pipe));
    smol::spawn(async move {
        let mut buf = vec![0u8; READ_CHUNK];
        while let Ok(n @ 1..) = pipe.read(&mut buf).await {
            feed.push(buf.get(..n).unwrap_or_default());
            // A read of a pipe with more waiting completes at once, and a
            // task that is always ready keeps the reactor from being
            // polled: a chatty child would hold up every connection
            // waiting for its socket. The next read waits for the reactor.
            pipe.wait_next();
        }
    })
    .detach();
    Ok(())
}
