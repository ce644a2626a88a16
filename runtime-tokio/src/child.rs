//! The bridge's children on tokio: each child's stdout is read by a task,
//! so an answer reaches its connection's task with no hand-over from a
//! reader thread.

use std::process::ChildStdout;

use mcp_provider_kit::bridge::StdoutFeed;
use mcp_provider_kit::process::READ_CHUNK;
use tokio::io::AsyncReadExt;
use tokio::runtime::Handle;

/// Reads `pipe` in a task on `runtime` until it ends, feeding the bridge.
/// Called from the bridge's threads, hence the handle.
pub fn read_stdout(
    runtime: &Handle,
    pipe: ChildStdout,
    mut feed: StdoutFeed,
) -> std::io::Result<()> {
    let _entered = runtime.enter();
    let mut pipe = tokio::process::ChildStdout::from_std(pipe)?;
    runtime.spawn(async move {
        let mut buf = vec![0u8; READ_CHUNK];
        while let Ok(n @ 1..) = pipe.read(&mut buf).await {
            feed.push(buf.get(..n).unwrap_or_default());
            // A chatty child must not hold up the connections that share
            // this worker.
            tokio::task::yield_now().await;
        }
    });
    Ok(())
}
