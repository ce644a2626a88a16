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

use mcp_provider_benches::mcp_relay::{
    initialize_request, respond, serve, with_id, Envelope, PassOn, INITIALIZED,
};
use serde_json::value::RawValue;
use smol::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use smol::lock::Mutex;
use smol::net::TcpStream;
use smol::process::{ChildStdin, ChildStdout, Command};
use smol::stream::StreamExt;
use smol::LocalExecutor;

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
        serve(&executor, "stdio relay", relay).await
    }))
}

/// Initializes the child once; its `initialize` result.
async fn initialize(
    stdin: &mut ChildStdin,
    lines: &mut smol::io::Lines<BufReader<ChildStdout>>,
) -> io::Result<String> {
    stdin
        .write_all(initialize_request("stdio_relay").as_bytes())
        .await?;
    stdin.write_all(b"\n").await?;
    while let Some(line) = lines.next().await {
        let line = line?;
        let Ok(envelope) = serde_json::from_str::<Envelope>(&line) else {
            continue;
        };
        if let (Some(id), Some(result)) = (envelope.id, envelope.result) {
            if id.get() == "0" {
                let result = result.get().to_owned();
                stdin.write_all(INITIALIZED.as_bytes()).await?;
                stdin.write_all(b"\n").await?;
                return Ok(result);
            }
        }
    }
    Err(io::Error::other(
        "the child ended before answering initialize",
    ))
}

impl PassOn for Relay {
    fn init_result(&self) -> &str {
        &self.init_result
    }

    /// Hands the request to the child under an id of the relay's; the
    /// child's answer is written by [`answers`].
    async fn pass_on(&self, socket: &mut TcpStream, body: &str, id: &RawValue) -> io::Result<()> {
        let line = {
            let mut waiting = self.waiting.borrow_mut();
            waiting.next += 1;
            let mine = waiting.next;
            waiting
                .by_id
                .insert(mine, (socket.clone(), id.get().to_owned()));
            let mut line = with_id(body, id, &mine.to_string());
            line.push('\n');
            line
        };
        self.stdin.lock().await.write_all(line.as_bytes()).await
    }
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
