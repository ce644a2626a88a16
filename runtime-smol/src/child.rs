//! The bridge's children on smol: each child's stdout is read on the
//! executor, so an answer reaches its connection's task on the same thread
//! with no hand-over from a reader thread.

use std::process::ChildStdout;

use mcp_provider_cli::bridge::StdoutFeed;
use mcp_provider_cli::process::READ_CHUNK;
use smol::io::AsyncReadExt;

/// Reads `pipe` in a task of its own until it ends, feeding the bridge.
pub fn read_stdout(pipe: ChildStdout, mut feed: StdoutFeed) -> std::io::Result<()> {
    let mut pipe = smol::Async::new(pipe)?;
    smol::spawn(async move {
        let mut buf = vec![0u8; READ_CHUNK];
        while let Ok(n @ 1..) = pipe.read(&mut buf).await {
            feed.push(buf.get(..n).unwrap_or_default());
        }
    })
    .detach();
    Ok(())
}
