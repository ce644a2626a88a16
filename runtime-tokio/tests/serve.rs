//! Connections an application accepts itself and hands to
//! `Provider::serve` get the provider's caps: the connection cap and the
//! read timeout.

use std::time::Duration;

use mcp_provider_tokio::{Config, Provider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

/// A provider serving every connection accepted on a fresh listener.
async fn served(provider: Provider) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let provider = provider.clone();
            tokio::spawn(async move { provider.serve(stream).await });
        }
    });
    addr
}

/// The response's status line, read within five seconds.
async fn status_line(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or_default().to_owned()
}

/// R3-6: a connection handed to `serve` counts against the cap; one past it gets 503.
#[tokio::test]
async fn r3_6_a_served_connection_past_the_cap_is_answered_503() {
    let provider = Provider::start(Config::new(&["sk"], "token")).with_max_connections(1);
    let addr = served(provider).await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    first
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_line(&mut first).await, "HTTP/1.1 200 OK");
    let mut second = TcpStream::connect(addr).await.unwrap();
    second
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        status_line(&mut second).await,
        "HTTP/1.1 503 Service Unavailable"
    );
}

/// R3-6: a head trickled into a connection handed to `serve` is cut at the read timeout.
#[tokio::test]
async fn r3_6_a_served_trickled_head_is_cut_at_the_read_timeout() {
    let mut config = Config::new(&["sk"], "token");
    config.http.idle_timeout = Duration::from_millis(500);
    let addr = served(Provider::start(config)).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    // A byte every 100 ms, for five seconds at most.
    for _ in 0..50 {
        if slow.write_all(b"x").await.is_err() {
            break;
        }
        match timeout(Duration::from_millis(100), slow.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(_)) => panic!("answered a head that never ended"),
            Err(_) => {} // Still open.
        }
    }
    let cut = start.elapsed();
    assert!(
        cut >= Duration::from_millis(400) && cut < Duration::from_secs(3),
        "{cut:?}"
    );
}
