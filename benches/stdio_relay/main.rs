//! `stdio_relay`: the least any bridge from Streamable HTTP to one stdio
//! MCP server does, for `scripts/bridge_bench` to measure the bridge
//! against (the `relay` turn).
//!
//! ```text
//! stdio_relay -- COMMAND [ARG]...
//! ```
//!
//! It starts COMMAND, initializes it once, and then, on one thread:
//! answers each client's `initialize` with the server's own result and
//! its notifications with `202`; gives every request an id of its own
//! (clients share the one pipe, so their ids would collide), writes it to
//! the child's stdin as a line, and writes the line the child answers with
//! to that client's socket, its id given back, as an `application/json`
//! body. No keys, sessions, limits, validation, timeouts or protocol
//! generations: what the bridge costs beyond this is the bridge's own.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::process::Stdio;
use std::rc::Rc;

use mcp_provider_benches::request::Requests;
use serde::Deserialize;
use serde_json::value::RawValue;
use smol::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use smol::lock::Mutex;
use smol::net::{TcpListener, TcpStream};
use smol::process::{ChildStdin, ChildStdout, Command};
use smol::stream::StreamExt;
use smol::LocalExecutor;

/// The relay's own id for the child's `initialize`.
const INIT_ID: u64 = 0;

/// The members of a JSON-RPC message the relay looks at, borrowed from it.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
}

/// The clients waiting for the child, by the relay's id: the socket the
/// answer goes to and the client's own id, as it was written.
#[derive(Default)]
struct Waiting {
    by_id: HashMap<u64, (TcpStream, String)>,
    next: u64,
}

/// What every connection shares.
struct Relay {
    waiting: RefCell<Waiting>,
    stdin: Mutex<ChildStdin>,
    /// The child's `initialize` result, given to every client.
    init_result: String,
}

fn main() -> io::Result<()> {
    let command: Vec<String> = std::env::args().skip_while(|a| a != "--").skip(1).collect();
    let Some((program, args)) = command.split_first() else {
        eprintln!("usage: stdio_relay -- COMMAND [ARG]...");
        std::process::exit(2);
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(io::Error::other("the child's pipes are missing"));
    };
    let executor = Rc::new(LocalExecutor::new());
    smol::block_on(executor.run(async {
        let mut lines = BufReader::new(stdout).lines();
        let init_result = initialize(&mut stdin, &mut lines).await?;
        let relay = Rc::new(Relay {
            waiting: RefCell::default(),
            stdin: Mutex::new(stdin),
            init_result,
        });
        executor.spawn(answers(lines, relay.clone())).detach();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("stdio relay listening on http://{}", listener.local_addr()?);
        loop {
            let (socket, _) = listener.accept().await?;
            let _ = socket.set_nodelay(true);
            executor.spawn(connection(socket, relay.clone())).detach();
        }
    }))
}

/// Initializes the child once; its `initialize` result.
async fn initialize(
    stdin: &mut ChildStdin,
    lines: &mut smol::io::Lines<BufReader<ChildStdout>>,
) -> io::Result<String> {
    let request = format!(
        r#"{{"jsonrpc":"2.0","id":{INIT_ID},"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"stdio_relay","version":"1"}}}}}}"#
    );
    stdin.write_all(request.as_bytes()).await?;
    stdin.write_all(b"\n").await?;
    while let Some(line) = lines.next().await {
        let line = line?;
        let Ok(envelope) = serde_json::from_str::<Envelope>(&line) else {
            continue;
        };
        if let (Some(id), Some(result)) = (envelope.id, envelope.result) {
            if id.get() == INIT_ID.to_string() {
                let result = result.get().to_owned();
                stdin
                    .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
                    .await?;
                return Ok(result);
            }
        }
    }
    Err(io::Error::other(
        "the child ended before answering initialize",
    ))
}

/// One client's connection: its requests, one after another.
async fn connection(mut socket: TcpStream, relay: Rc<Relay>) -> io::Result<()> {
    let mut requests = Requests::default();
    while let Some((_, body)) = requests.next(&mut socket).await {
        request(&mut socket, &relay, &String::from_utf8_lossy(&body)).await?;
    }
    Ok(())
}

/// One client message: answered here (`initialize`, notifications), or
/// handed to the child under an id of the relay's.
async fn request(socket: &mut TcpStream, relay: &Relay, body: &str) -> io::Result<()> {
    let Ok(envelope) = serde_json::from_str::<Envelope>(body) else {
        return respond(socket, "400 Bad Request", "").await;
    };
    let Some(id) = envelope.id else {
        return respond(socket, "202 Accepted", "").await;
    };
    if envelope.method.map(RawValue::get) == Some("\"initialize\"") {
        let answer = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
            id.get(),
            relay.init_result
        );
        return respond(socket, "200 OK\r\nMcp-Session-Id: relay", &answer).await;
    }
    let line = {
        let mut waiting = relay.waiting.borrow_mut();
        waiting.next += 1;
        let mine = waiting.next;
        waiting
            .by_id
            .insert(mine, (socket.clone(), id.get().to_owned()));
        let mut line = with_id(body, id, &mine.to_string());
        line.push('\n');
        line
    };
    relay.stdin.lock().await.write_all(line.as_bytes()).await
}

/// The child's answers, each written to the client waiting for it.
async fn answers(mut lines: smol::io::Lines<BufReader<ChildStdout>>, relay: Rc<Relay>) {
    while let Some(Ok(line)) = lines.next().await {
        let Ok(Envelope { id: Some(id), .. }) = serde_json::from_str::<Envelope>(&line) else {
            continue;
        };
        let Some((mut socket, theirs)) = id
            .get()
            .parse::<u64>()
            .ok()
            .and_then(|mine| relay.waiting.borrow_mut().by_id.remove(&mine))
        else {
            continue;
        };
        let answer = with_id(&line, id, &theirs);
        // A client gone is the client's loss only.
        let _ = respond(&mut socket, "200 OK", &answer).await;
    }
}

/// `message` with its top-level id (`id`, borrowed from it) spelled `new`.
fn with_id(message: &str, id: &RawValue, new: &str) -> String {
    let at = (id.get().as_ptr() as usize).saturating_sub(message.as_ptr() as usize);
    let end = at + id.get().len();
    let mut out = String::with_capacity(message.len() + new.len());
    out.push_str(message.get(..at).unwrap_or_default());
    out.push_str(new);
    out.push_str(message.get(end..).unwrap_or_default());
    out
}

/// Writes one response: `status` (with any extra header lines) and a JSON
/// body.
async fn respond(socket: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_level_id_is_replaced_and_nothing_else() {
        let message = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"id":7}}"#;
        let envelope: Envelope = serde_json::from_str(message).unwrap();
        assert_eq!(
            with_id(message, envelope.id.unwrap(), "123"),
            r#"{"jsonrpc":"2.0","id":123,"method":"tools/call","params":{"id":7}}"#
        );
        let answer = r#"{"result":{"id":"x"},"jsonrpc":"2.0","id":123}"#;
        let envelope: Envelope = serde_json::from_str(answer).unwrap();
        assert_eq!(
            with_id(answer, envelope.id.unwrap(), "\"a\""),
            r#"{"result":{"id":"x"},"jsonrpc":"2.0","id":"a"}"#
        );
    }
}
