//! What the agents that dial a provider (`agent exec`, `agent mcp`) share:
//! the task that follows the link.

use std::time::Instant;

use async_tungstenite::tungstenite::{Error as WsError, Message};
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::stream::{Stream, StreamExt};
use smol::Task;

/// What waiting for an agent's next input found.
pub enum Waited<I> {
    Input(I),
    /// Every sender is gone.
    Closed,
    /// The agent's deadline came first.
    Due,
}

/// The next input from `rx`, or [`Waited::Due`] at `deadline`.
pub async fn next_input<I>(rx: &Receiver<I>, deadline: Option<Instant>) -> Waited<I> {
    let input = async {
        match rx.recv().await {
            Ok(input) => Waited::Input(input),
            Err(_) => Waited::Closed,
        }
    };
    input
        .or(async {
            match deadline {
                Some(at) => {
                    smol::Timer::at(at).await;
                    Waited::Due
                }
                None => std::future::pending().await,
            }
        })
        .await
}

/// What a remote agent's link reader passes on.
pub enum FromLink {
    Frame(String),
    /// The link closed: cleanly, or why not.
    Closed(Result<(), String>),
}

/// Reads the link's frames on a task of its own, passing each text frame
/// (after `notice` saw it), then why the link closed, as `wrap`ped inputs
/// to `tx`, until nobody listens.
pub fn follow_remote<S, I>(
    mut frames: S,
    tx: Sender<I>,
    wrap: fn(FromLink) -> I,
    notice: fn(&str),
) -> Task<()>
where
    S: Stream<Item = Result<Message, WsError>> + Unpin + Send + 'static,
    I: Send + 'static,
{
    smol::spawn(async move {
        let closed = loop {
            match frames.next().await {
                Some(Ok(Message::Text(text))) => {
                    notice(text.as_str());
                    let frame = FromLink::Frame(text.as_str().to_owned());
                    if tx.send(wrap(frame)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None => break Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(format!("agent link failed: {e}")),
            }
        };
        let _ = tx.send(wrap(FromLink::Closed(closed))).await;
    })
}
