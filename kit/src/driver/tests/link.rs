//! The agent link: an editor connection upgraded, frames routed both
//! ways, a link that drops mid-answer, pings, a frame the protocol has no
//! place for, and a peer that does not read.

use std::collections::VecDeque;
use std::io;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::Message;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::StreamExt;
use mcp_provider_core::agent::close::LinkClose;
use serde_json::json;

use super::{chat, run, Served};
use crate::driver::link::Backpressure;

#[test]
fn an_upgraded_link_carries_the_editors_request_out_and_the_agents_answer_back() {
    run(async {
        let served = Served::new(|_| {});
        let mut agent = served.agent().await;
        let mut editor = served.editor();
        editor.send(&chat(false)).await;
        let invoke = agent.next_of("model_invoke").await;
        assert_eq!(invoke["payload"]["messages"][0]["content"], "hi");
        let id = invoke["id"].clone();
        agent
            .send(
                json!({"type": "model_result", "id": id, "status": "ok", "result": {
                "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "hello there"}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}}),
            )
            .await;
        let (status, body) = editor.response().await;
        assert_eq!(status, 200);
        assert!(body.contains("hello there"), "{body}");
    });
}

#[test]
fn a_link_that_drops_mid_answer_ends_the_editors_stream_with_an_error() {
    run(async {
        let served = Served::new(|_| {});
        let mut agent = served.agent().await;
        let mut editor = served.editor();
        editor.send(&chat(true)).await;
        let id = agent.invoked().await;
        agent.chunk(&id, 0, "Hel").await;
        let (_, begun) = editor.until("Hel").await;
        assert!(begun, "the first chunk reaches the editor");
        // Gone without a close frame, as a crashed agent's link is.
        drop(agent);
        let (rest, ended) = editor.until("data: [DONE]").await;
        assert!(ended, "the stream ends: {rest}");
        assert!(rest.contains("\"error\""), "with an error event: {rest}");
    });
}

#[test]
fn a_ping_is_answered_with_a_pong_and_the_provider_pings_an_idle_agent() {
    run(async {
        let served = Served::new(|c| c.agent_ping_interval = Duration::from_millis(50));
        let mut agent = served.agent().await;
        let sent = agent
            .ws
            .send(Message::Ping(b"are you there".to_vec().into()))
            .await;
        assert!(sent.is_ok());
        let mut pinged = false;
        loop {
            match agent.ws.next().await {
                Some(Ok(Message::Pong(payload))) => {
                    assert_eq!(&payload[..], b"are you there");
                    break;
                }
                Some(Ok(Message::Text(text))) => pinged |= text.as_str().contains("\"ping\""),
                other => panic!("a pong, not {other:?}"),
            }
        }
        while !pinged {
            pinged = agent.next().await["type"] == "ping";
        }
        agent.send(json!({"type": "pong"})).await;
    });
}

#[test]
fn a_binary_frame_closes_the_link_with_the_code_that_says_why() {
    run(async {
        let served = Served::new(|_| {});
        let mut agent = served.agent().await;
        let sent = agent.ws.send(Message::Binary(vec![1, 2, 3].into())).await;
        assert!(sent.is_ok());
        let close = loop {
            match agent.ws.next().await {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => {}
                other => panic!("a close frame, not {other:?}"),
            }
        };
        let code = close.map(|frame| frame.code);
        assert_eq!(code, Some(CloseCode::from(LinkClose::Binary.code())));
    });
}

/// A socket whose writes wait once `room` is used up, and whose reads
/// find what its peer sent; its state is shared with the test.
#[derive(Clone, Default)]
struct Socket(Arc<Mutex<Wire>>);

#[derive(Default)]
struct Wire {
    room: usize,
    sent: Vec<u8>,
    came: VecDeque<u8>,
}

impl Socket {
    fn wire(&self) -> MutexGuard<'_, Wire> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut wire = self.wire();
        if wire.came.is_empty() {
            return Poll::Pending;
        }
        let n = buf.len().min(wire.came.len());
        for (to, from) in buf.iter_mut().zip(wire.came.drain(..n)) {
            *to = from;
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut wire = self.wire();
        let n = buf.len().min(wire.room);
        if n == 0 {
            return Poll::Pending;
        }
        wire.room -= n;
        wire.sent.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn a_links_socket_is_not_read_while_a_write_to_it_waits() {
    let socket = Socket::default();
    let mut link = Backpressure::new(socket.clone(), Duration::from_secs(1));
    let mut cx = Context::from_waker(Waker::noop());
    let mut buf = [0; 8];
    // The peer sent something, and has room for four bytes.
    socket.wire().came.extend(b"in");
    socket.wire().room = 4;
    let wrote = pin!(&mut link).poll_write(&mut cx, b"abcde");
    assert!(matches!(wrote, Poll::Ready(Ok(4))));
    assert!(pin!(&mut link).poll_write(&mut cx, b"e").is_pending());
    assert!(
        pin!(&mut link).poll_read(&mut cx, &mut buf).is_pending(),
        "what came is left unread while the write waits"
    );
    // The peer read: the write goes through, and so does the read.
    socket.wire().room = 4;
    assert!(matches!(
        pin!(&mut link).poll_write(&mut cx, b"e"),
        Poll::Ready(Ok(1))
    ));
    let read = pin!(&mut link).poll_read(&mut cx, &mut buf);
    assert!(
        matches!(read, Poll::Ready(Ok(2))),
        "read again once it went through"
    );
    assert_eq!(
        (&buf[..2], &socket.wire().sent[..]),
        (&b"in"[..], &b"abcde"[..])
    );
}
