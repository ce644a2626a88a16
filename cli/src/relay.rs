//! The relay's own `main` (see the kit's `relay` module for the directory
//! and socket it connects to): a CLI given the editor's tools starts it as
//! its stdio MCP server.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use mcp_provider_kit::agent::relay::ARG;

/// The relay: `ARG SOCKET SECRET`. Exits when the CLI closes its stdin or
/// `agent exec` closes the connection.
pub fn run() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let [socket, secret] = args.as_slice() else {
        eprintln!("usage: {ARG} SOCKET SECRET");
        return ExitCode::from(2);
    };
    let stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("cannot reach agent exec at {socket}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let hello = serde_json::json!({ "secret": secret });
    let (Ok(mut to_agent), Ok(mut from_agent)) = (stream.try_clone(), stream.try_clone()) else {
        return ExitCode::FAILURE;
    };
    if writeln!(to_agent, "{hello}").is_err() {
        return ExitCode::FAILURE;
    }
    let _ = std::thread::Builder::new()
        .name("relay-stdin".into())
        .spawn(move || {
            pipe(&mut std::io::stdin().lock(), &mut to_agent);
            let _ = to_agent.shutdown(std::net::Shutdown::Write);
        });
    pipe(&mut from_agent, &mut std::io::stdout().lock());
    ExitCode::SUCCESS
}

/// Copies `from` to `to` until either ends, each read passed on at once.
/// (Not `io::copy`: between a socket and a pipe it may splice, holding
/// what arrived until more comes, and an MCP line must not wait.)
fn pipe(from: &mut impl Read, to: &mut impl Write) {
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        let piece = buf.get(..n).unwrap_or_default();
        if to.write_all(piece).and_then(|()| to.flush()).is_err() {
            return;
        }
    }
}
