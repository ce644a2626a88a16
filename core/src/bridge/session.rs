//! A client's session of the registry, and how it is viewed: the event
//! stream and sockets that hear what its server says on its own, what it
//! holds while none is open, and what it sent, numbered for a replay.
//! The registry keeps the sessions (`registry.rs`); one session's views
//! and what it keeps are here.

use std::time::Instant;

use super::common::{envelope, event, Transport, MESSAGE_KIND};
use super::kept::Kept;
use super::{ChildId, ClientId};
use crate::provider::{ConnId, Output, RequestId};

/// How a connection views a session.
pub(crate) enum View {
    /// Its event stream, answering this request.
    Stream(RequestId),
    Socket,
}

/// Sockets that may view one session at once; more are refused.
pub(crate) const MAX_SOCKETS: usize = 16;

/// A client's session. Its views are where what the server sends on its
/// own goes (notifications, requests): one event stream (the Streamable
/// `GET`, the legacy SSE stream, or `/events/{id}`) and any number of
/// WebSockets up to [`MAX_SOCKETS`]. Answers go to whoever asked: an HTTP
/// request, or the socket that sent the request (see `socket`).
pub(crate) struct Session {
    pub(crate) child: ChildId,
    pub(crate) client: ClientId,
    /// How it was made (and so how its client expects to hear from it).
    pub(crate) transport: Transport,
    /// The request its open event stream answers.
    pub(crate) stream: Option<RequestId>,
    /// The event name on that stream: [`EVENTS_KIND`](super::common::EVENTS_KIND) on `/events`,
    /// [`MESSAGE_KIND`] on an MCP transport's.
    pub(crate) stream_kind: &'static str,
    /// The WebSockets attached to it.
    pub(crate) sockets: Vec<ConnId>,
    /// Messages for it while no view is open.
    held: Kept,
    /// The last events sent down the stream, for a replay.
    sent: Kept,
    next_event: u64,
    /// When its client last sent something.
    pub(crate) used: Instant,
}

impl Session {
    /// A new session of `child`'s `client`, made by `transport`, nothing
    /// viewing it yet.
    pub(crate) fn new(
        child: ChildId,
        client: ClientId,
        transport: Transport,
        now: Instant,
    ) -> Self {
        Session {
            child,
            client,
            transport,
            stream: None,
            stream_kind: MESSAGE_KIND,
            sockets: Vec::new(),
            held: Kept::default(),
            sent: Kept::default(),
            next_event: 0,
            used: now,
        }
    }

    /// Whether anything views it: a stream or a socket.
    pub(crate) fn viewed(&self) -> bool {
        self.stream.is_some() || !self.sockets.is_empty()
    }

    /// `message` for every view: an event down the stream (numbered and
    /// remembered for a replay), a frame on each socket.
    /// `kept` is what all sessions keep ([`Kept`]).
    pub(crate) fn outputs(&mut self, message: String, kept: &mut usize) -> Vec<Output> {
        let mut outputs = Vec::with_capacity(self.sockets.len() + 1);
        if !self.sockets.is_empty() {
            let text = envelope(&message);
            outputs.extend(self.sockets.iter().map(|&conn| Output::ToAgent {
                conn,
                text: text.clone(),
            }));
        }
        if let Some(to) = self.stream {
            outputs.push(self.event(to, message, kept));
        }
        outputs
    }

    fn event(&mut self, to: RequestId, message: String, kept: &mut usize) -> Output {
        self.next_event += 1;
        let data = event(self.next_event, self.stream_kind, &message);
        self.sent.push(self.next_event, message, kept);
        Output::Data { to, data }
    }

    /// The stream opens, answering `to`, its events named `kind`: the
    /// events after `last_event` again (a reconnect), then what was held;
    /// the stream it replaced.
    pub(crate) fn attach(
        &mut self,
        to: RequestId,
        kind: &'static str,
        last_event: Option<u64>,
        kept: &mut usize,
    ) -> (Vec<Output>, Option<RequestId>) {
        let replaced = self.stream.replace(to);
        self.stream_kind = kind;
        let mut outputs: Vec<Output> = match last_event {
            Some(last) => self
                .sent
                .after(last)
                .map(|(n, message)| Output::Data {
                    to,
                    data: event(n, kind, message),
                })
                .collect(),
            None => Vec::new(),
        };
        let held = self.held.take(kept);
        outputs.extend(
            held.into_iter()
                .map(|(_, message)| self.event(to, message, kept)),
        );
        (outputs, replaced)
    }

    /// A socket attaches: what was held, as frames for it.
    pub(crate) fn attach_socket(&mut self, conn: ConnId, kept: &mut usize) -> Vec<Output> {
        self.sockets.push(conn);
        self.held
            .take(kept)
            .into_iter()
            .map(|(_, message)| Output::ToAgent {
                conn,
                text: envelope(&message),
            })
            .collect()
    }

    /// Lets go of everything it keeps (it ends).
    pub(crate) fn release(&mut self, kept: &mut usize) {
        self.held.take(kept);
        self.sent.take(kept);
    }

    /// Holds `message` until a view opens: how many older ones were
    /// dropped for it.
    pub(crate) fn hold(&mut self, message: String, kept: &mut usize) -> usize {
        self.held.push(0, message, kept)
    }
}
