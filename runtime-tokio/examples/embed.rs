//! A tokio application that serves its own page and, on the same listener,
//! the provider's routes, answered by an agent written right here.
//!
//! `cargo run -p mcp-provider-tokio --example embed`, then talk to it as
//! to OpenAI with base URL `http://127.0.0.1:8790/v1`, API key `sk-app`
//! and model `shout`.

use mcp_provider_tokio::{Agent, Config, Provider, Reply, Request};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// The application's agent: answers in capitals, a word at a time.
struct Shout;

impl Agent for Shout {
    async fn answer(&self, request: Request, reply: Reply) {
        for word in request.last_user_text().split_inclusive(' ') {
            if !reply.send(&word.to_uppercase()) {
                return; // The editor went away.
            }
        }
    }
}

/// The application's own route.
async fn hello(mut stream: TcpStream) {
    let body = "hello from the application\n";
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all((head + body).as_bytes()).await;
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8790".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let provider = Provider::start(Config::new(&["sk-app"], "app-bridge-token"));
    provider.add_agent("shout", &["shout"], Shout);
    loop {
        let (stream, _) = listener.accept().await?;
        // Route on the request line: the application's page, or the provider.
        let mut start = [0u8; 10];
        let read = stream.peek(&mut start).await.unwrap_or(0);
        if start.get(..read) == Some(b"GET /hello".as_slice()) {
            tokio::spawn(hello(stream));
        } else {
            let provider = provider.clone();
            tokio::spawn(async move { provider.serve(stream).await });
        }
    }
}
