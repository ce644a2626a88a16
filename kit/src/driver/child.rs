//! The bridge's children: each child's stdout is read by a task, so an
//! answer reaches its connection's task with no hand-over from a reader
//! thread.

use std::process::ChildStdout;

use futures_lite::io::AsyncReadExt;

use super::Executor;
use crate::bridge::StdoutFeed;
use crate::process::PIPE_READ_CHUNK;

/// Reads `pipe` in a task of its own until it ends, feeding the bridge.
pub fn read_stdout<E: Executor>(pipe: ChildStdout, mut feed: StdoutFeed) -> std::io::Result<()> {
    let mut pipe = E::pipe(pipe)?;
    E::spawn(async move {
        let mut buf = vec![0u8; PIPE_READ_CHUNK];
        while let Ok(n @ 1..) = pipe.read(&mut buf).await {
            feed.push(buf.get(..n).unwrap_or_default());
            // A chatty child must not hold up the connections that share
            // this thread.
            E::yield_now().await;
        }
    });
    Ok(())
}
