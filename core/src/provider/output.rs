//! What the provider asks of its driver ([`Output`]), and how a driver
//! carries it out on an editor connection or an agent link.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{ConnId, RequestId};
use crate::agent::close::LinkClose;
use crate::error::{ApiError, Dialect};
use crate::http::{Response, ServerConn};
use crate::stream::{AnswerEvent, AnswerSink, Answering};

/// What the driver must do.
#[derive(Debug)]
pub enum Output {
    /// Answer the request. A [`crate::http::Body::Full`] response
    /// completes it; a stream continues with `Data` and `End`.
    Respond { to: RequestId, response: Response },
    /// The next bytes of a streamed body.
    Data { to: RequestId, data: Bytes },
    /// The streamed body is complete.
    End { to: RequestId },
    /// The next step of the answer to a model request, written by the
    /// connection's own [`Answering`] (see [`crate::stream`]).
    Answer { to: RequestId, event: AnswerEvent },
    /// Refuse what the connection sent, which could not be read as a
    /// request ([`super::Provider::handle_http_error`]): the response, then the
    /// connection closes.
    Refuse { conn: ConnId, response: Response },
    /// Accept the WebSocket upgrade (`key` is `Sec-WebSocket-Key`); the
    /// connection is an agent link from now on, pinged every `ping_every`.
    AcceptAgent {
        conn: ConnId,
        key: String,
        ping_every: Duration,
    },
    /// Accept a WebSocket upgrade for the MCP bridge's envelope (`/ws`),
    /// naming the subprotocol `protocol` if the client offered it: its
    /// frames go to the bridge, and `ToAgent` carries its frames out.
    AcceptSocket {
        conn: ConnId,
        key: String,
        protocol: Option<&'static str>,
    },
    /// Send a text frame to an agent (or to a bridge WebSocket client).
    ToAgent { conn: ConnId, text: String },
    /// Close an agent link, saying why.
    CloseAgent { conn: ConnId, why: LinkClose },
}

/// A WebSocket upgrade accepted (its `Sec-WebSocket-Key`), and whose
/// frames it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// An agent link: frames to the provider. The `101` tells the agent
    /// how often it is pinged, so that it knows how long a silence means
    /// the provider is gone.
    Agent(String, Duration),
    /// A client of the MCP bridge's envelope: frames to the bridge; the
    /// `101` names the subprotocol, if any.
    Bridge(String, Option<&'static str>),
}

impl Upgrade {
    /// The client's `Sec-WebSocket-Key`.
    pub fn key(&self) -> &str {
        match self {
            Upgrade::Agent(key, _) | Upgrade::Bridge(key, _) => key,
        }
    }

    /// The subprotocol the `101` names.
    pub fn protocol(&self) -> Option<&'static str> {
        match self {
            Upgrade::Agent(..) => None,
            Upgrade::Bridge(_, protocol) => *protocol,
        }
    }

    /// How often the provider pings the agent on this link (`None` for a
    /// bridge client).
    pub fn ping_every(&self) -> Option<Duration> {
        match self {
            Upgrade::Agent(_, every) => Some(*every),
            Upgrade::Bridge(..) => None,
        }
    }
}

impl Output {
    /// The connection this output is for.
    pub fn conn(&self) -> ConnId {
        match self {
            Output::Respond { to, .. }
            | Output::Data { to, .. }
            | Output::End { to }
            | Output::Answer { to, .. } => to.conn,
            Output::Refuse { conn, .. }
            | Output::AcceptAgent { conn, .. }
            | Output::AcceptSocket { conn, .. }
            | Output::ToAgent { conn, .. }
            | Output::CloseAgent { conn, .. } => *conn,
        }
    }

    /// Carries out an output on an editor connection: encodes it into
    /// `out`, an answer's events through the connection's `answering`.
    /// What is addressed to a request other than the one being answered
    /// is dropped (see [`RequestId`]). An accepted upgrade comes back as
    /// its `Sec-WebSocket-Key`: the driver answers `101` and the connection
    /// is a WebSocket from then on, an agent link or a bridge client.
    /// Outputs for WebSockets encode nothing.
    pub fn encode_http(
        self,
        http: &mut ServerConn,
        answering: &mut Answering,
        out: &mut BytesMut,
    ) -> Option<Upgrade> {
        match self {
            Output::Answer { to, event } => {
                answering.handle(to, event, HttpSink { http, out });
                None
            }
            plain => plain.encode_plain(http, out),
        }
    }

    /// [`Output::encode_http`] of an output that is no answer event.
    fn encode_plain(self, http: &mut ServerConn, out: &mut BytesMut) -> Option<Upgrade> {
        match self {
            Output::Respond { to, .. } | Output::Data { to, .. } | Output::End { to }
                if !http.is_answering(to.seq) => {}
            Output::Respond { response, .. } | Output::Refuse { response, .. } => {
                http.encode_response(&response, out)
            }
            Output::Data { data, .. } => http.encode_data(&data, out),
            Output::End { .. } => http.encode_end(out),
            Output::AcceptAgent {
                key, ping_every, ..
            } => return Some(Upgrade::Agent(key, ping_every)),
            Output::AcceptSocket { key, protocol, .. } => {
                return Some(Upgrade::Bridge(key, protocol))
            }
            Output::Answer { .. } | Output::ToAgent { .. } | Output::CloseAgent { .. } => {}
        }
        None
    }

    /// Whether this output accepts a WebSocket upgrade: the connection
    /// stops speaking HTTP after it.
    pub fn is_upgrade(&self) -> bool {
        matches!(
            self,
            Output::AcceptAgent { .. } | Output::AcceptSocket { .. }
        )
    }

    /// What an output asks of an agent link: a text frame to send, or to
    /// close with a reason. Outputs for editors ask nothing of a link.
    pub fn into_link(self) -> Option<Result<String, LinkClose>> {
        match self {
            Output::ToAgent { text, .. } => Some(Ok(text)),
            Output::CloseAgent { why, .. } => Some(Err(why)),
            _ => None,
        }
    }

    /// The bytes this output adds to its connection's backlog until the
    /// driver has written it (see [`crate::backlog::Backlog::written`]).
    pub fn backlog_bytes(&self) -> usize {
        match self {
            Output::Respond { response, .. } | Output::Refuse { response, .. } => {
                match &response.body {
                    crate::http::Body::Full(body) => body.len(),
                    crate::http::Body::Stream => 0,
                }
            }
            Output::Data { data, .. } => data.len(),
            Output::Answer { event, .. } => event.backlog_bytes(),
            Output::ToAgent { text, .. } => text.len(),
            Output::End { .. }
            | Output::AcceptAgent { .. }
            | Output::AcceptSocket { .. }
            | Output::CloseAgent { .. } => 0,
        }
    }
}

/// The bytes refusing a connection a driver will not serve because too
/// many are open: 503 in the OpenAI error shape (the request is never read,
/// so its dialect is unknown), then close.
pub fn too_many_connections() -> Bytes {
    let error = ApiError::unavailable("too many open connections; retry shortly");
    let response = Response::json(503, error.body(Dialect::OpenAi)).with_header("retry-after", "1");
    crate::http::encode_closing(&response)
}

/// An HTTP connection as an answer's sink: a stream's bytes go straight
/// into its chunks, with no output of their own in between.
struct HttpSink<'a> {
    http: &'a mut ServerConn,
    out: &'a mut BytesMut,
}

impl AnswerSink for HttpSink<'_> {
    fn output(&mut self, output: Output) {
        output.encode_plain(self.http, self.out);
    }

    fn data(&mut self, to: RequestId, scratch: &mut BytesMut) {
        if self.http.is_answering(to.seq) {
            self.http.encode_data(scratch, self.out);
        }
        scratch.clear();
        // The room is kept for the next event, unless one large event
        // grew it: a connection that once carried a huge piece does not
        // hold that much memory for the rest of its life.
        if scratch.capacity() > KEPT_ROOM {
            *scratch = BytesMut::new();
        }
    }
}

/// The most room an answer's scratch buffer keeps between events.
const KEPT_ROOM: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::http::Limits;

    #[test]
    fn an_answers_scratch_keeps_its_room_unless_one_event_grew_it_large() {
        let mut http = ServerConn::new(Limits::default(), Instant::now());
        let mut out = BytesMut::new();
        let mut sink = HttpSink {
            http: &mut http,
            out: &mut out,
        };
        let to = RequestId {
            conn: ConnId(1),
            seq: 0,
        };
        let mut small = BytesMut::with_capacity(4096);
        small.extend_from_slice(b"data: x\n\n");
        sink.data(to, &mut small);
        assert!(small.is_empty() && small.capacity() >= 4096);
        let mut large = BytesMut::with_capacity(4 * KEPT_ROOM);
        large.extend_from_slice(b"data: x\n\n");
        sink.data(to, &mut large);
        assert!(large.is_empty() && large.capacity() <= KEPT_ROOM);
    }
}
