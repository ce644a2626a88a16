//! A tokio application that serves its own page and, on the same listener,
//! the provider's routes, answered by an agent written right here.
//!
//! `cargo run -p mcp-provider-tokio --example embed`, then talk to it as
//! to OpenAI with base URL `http://127.0.0.1:8790/v1`, API key `sk-app`
//! and model `shout`.

use std::time::Duration;

use mcp_provider_tokio::{Agent, Config, HttpRequest, HttpResponse, Provider, Reply, Request};
use tokio::net::TcpListener;

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

/// The application's own route; `None` leaves a request to the provider.
fn hello(request: &HttpRequest) -> Option<HttpResponse> {
    (request.method == "GET" && request.path() == "/hello")
        .then(|| HttpResponse::full(200, "text/plain", "hello from the application\n"))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8790".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let mut config = Config::new(&["sk-app"], "app-bridge-token");
    // A connection has this long to send a whole request, or is closed.
    config.http.idle_timeout = Duration::from_secs(10);
    let provider = Provider::start(config).with_max_connections(1000);
    provider.add_agent("shout", &["shout"], Shout);
    // Each connection in a task of its own, under the provider's caps.
    provider.serve_on(listener, hello).await;
    Ok(())
}
