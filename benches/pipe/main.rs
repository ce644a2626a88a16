//! `pipe`: the least any proxy in front of a remote MCP server costs on
//! this machine, for `scripts/bridge_bench --remote` to put the bridge's
//! added latency against.
//!
//! `pipe UPSTREAM` listens on a loopback port and, for each connection,
//! dials `UPSTREAM` (`host:port`) and copies bytes both ways, a thread per
//! direction, until either side closes. No HTTP, no MCP: one more hop and
//! two more wake-ups per exchange, and nothing else.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;

fn main() -> std::io::Result<()> {
    let Some(upstream) = std::env::args().nth(1) else {
        eprintln!("usage: pipe HOST:PORT");
        std::process::exit(2);
    };
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("pipe listening on http://{}", listener.local_addr()?);
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let upstream = upstream.clone();
        thread::spawn(move || {
            if let Err(e) = join(client, &upstream) {
                eprintln!("pipe: {upstream}: {e}");
            }
        });
    }
    Ok(())
}

/// Joins `client` to a new connection to `upstream` until either ends.
fn join(client: TcpStream, upstream: &str) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_back, server_back) = (client.try_clone()?, server.try_clone()?);
    let answers = thread::spawn(move || copy(server_back, client_back));
    copy(client, server);
    let _ = answers.join();
    Ok(())
}

/// Copies what `from` sends to `to` until `from` ends, then ends `to`'s
/// sending side.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
