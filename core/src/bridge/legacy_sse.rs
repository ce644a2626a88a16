//! The HTTP+SSE transport of the 2024-11-05 revision, which older clients
//! and tools still speak: `GET /mcp/{name}/sse` opens a session and its
//! event stream, whose first event, `endpoint`, names where to POST
//! (`/mcp/{name}/messages?session_id=…`); each POST is accepted with 202
//! and every message for the client, answers included, comes down the
//! stream as a `message` event. Closing the stream ends the session.

use std::time::Instant;

use bytes::Bytes;

use super::common::{event, StreamStart, Target, Transport, MESSAGE_KIND};
use super::registry::{Above, Registry};
use super::streamable::parse_one;
use super::traced::Answering;
use crate::http::{Request, Response};
use crate::mcp::{self, Message};
use crate::provider::RequestId;

impl<H: Above> Registry<H> {
    /// `GET /mcp/NAME/sse`.
    pub(crate) fn open_legacy(&mut self, to: RequestId, spec: usize, now: Instant) {
        let id = match self.open_session(spec, Transport::LegacySse, now) {
            Ok(id) => id,
            Err(full) => return self.reply_error(to, 503, mcp::INVALID_REQUEST, &full.message()),
        };
        let endpoint = format!("/mcp/{}/messages?session_id={id}", self.specs[spec].name);
        let greeting = event(0, "endpoint", &endpoint);
        let stream = Response::stream("text/event-stream");
        let start = StreamStart {
            response: stream,
            kind: MESSAGE_KIND,
            greeting: Some(greeting),
            last_event: None,
        };
        self.attach_stream(to, &id, start, now);
    }

    /// `POST /mcp/NAME/messages?session_id=…`.
    pub(crate) fn post_legacy(
        &mut self,
        to: RequestId,
        spec: usize,
        request: &Request,
        now: Instant,
    ) {
        let session = request.target().split_once('?').and_then(|(_, query)| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("session_id="))
        });
        let id = match self.session_of(Target::Server(spec), session) {
            Ok(id) => id,
            Err((status, message)) => {
                return self.reply_error(to, status, mcp::INVALID_REQUEST, &message)
            }
        };
        let mut message = match parse_one(&request.body) {
            Ok(message) => message,
            Err(reply) => return self.respond(to, reply),
        };
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        let (child, client) = (session.child, session.client);
        if let Message::Request {
            id: asked,
            method,
            params,
        } = &mut message
        {
            // Its answer comes down the session's stream.
            let answering = Answering::Call(child, client, asked.to_string());
            let (method, asked) = (method.as_str(), Some(&*asked));
            self.trace_request(
                answering,
                Some(request),
                method,
                asked,
                params,
                Some(&id),
                now,
            );
        }
        self.respond(
            to,
            Response::full(202, "text/plain", Bytes::from_static(b"Accepted")),
        );
        self.forward(child, client, message, None, now);
    }
}
