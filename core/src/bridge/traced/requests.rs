//! A client's request through the registry: its SERVER span started as
//! it comes in, ended as its answer goes out or its client goes away.
//! [`Traces`] owns the tracer and the spans open; the registry tells it
//! what happens to each request.

use std::time::Instant;

use serde_json::Value;

use super::{
    carry, end, parent_of, start, version_of, About, AnswerHead, Answering, Failure, Traces,
};
use crate::bridge::{ChildId, ClientId};
use crate::http::{Body, Request, Response};
use crate::mcp::Params;
use crate::provider::{ConnId, RequestId};
use crate::telemetry::{capped_json, Kind, Span, Tracer, Value as Attr};

impl Default for Traces {
    fn default() -> Self {
        Traces {
            tracer: Tracer::off(),
            by_request: Default::default(),
            by_call: Default::default(),
            clock: None,
        }
    }
}

impl Traces {
    /// Records spans with `tracer` from now on.
    pub(crate) fn set_tracer(&mut self, tracer: Tracer) {
        self.tracer = tracer;
    }

    /// The tracer, for a test to set up.
    #[cfg(test)]
    pub(crate) fn tracer_mut(&mut self) -> &mut Tracer {
        &mut self.tracer
    }

    /// The next finished span, for the driver to export.
    pub(crate) fn poll(&mut self) -> Option<Span> {
        self.tracer.poll()
    }

    /// Spans dropped because they were not drained in time.
    pub(crate) fn dropped(&self) -> u64 {
        self.tracer.dropped()
    }

    /// The tracer, lent to a child for one input when it records (the
    /// child traces the calls it writes with it); [`Traces::give_back`]
    /// returns it.
    pub(crate) fn lend(&mut self) -> Option<Tracer> {
        self.tracer
            .enabled()
            .then(|| std::mem::replace(&mut self.tracer, Tracer::off()))
    }

    pub(crate) fn give_back(&mut self, tracer: Tracer) {
        self.tracer = tracer;
    }

    /// [`Traces::request`] of params as the client wrote them: untraced,
    /// they stay as written (tracing writes the span's context into them).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn request_written(
        &mut self,
        answering: Answering,
        request: Option<&Request>,
        method: &str,
        id: Option<&Value>,
        params: &mut Params,
        session: Option<&str>,
        now: Instant,
    ) {
        if self.tracer.enabled() && !self.full(&answering) {
            self.request(answering, request, method, id, params, session, now);
        }
    }

    /// Starts the SERVER span of a client's request (when tracing), its
    /// answer going where `answering` says; `request` is the HTTP request
    /// that carried it (its headers), `session` the MCP session it is in.
    /// The span's context goes in `params._meta` for what is sent on.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn request(
        &mut self,
        answering: Answering,
        request: Option<&Request>,
        method: &str,
        id: Option<&Value>,
        params: &mut Value,
        session: Option<&str>,
        now: Instant,
    ) {
        if !self.tracer.enabled() || self.full(&answering) {
            return;
        }
        self.clock = Some(now);
        let parent = parent_of(request, params);
        let about = About { method, id, params };
        let Some(mut span) = start(&mut self.tracer, Kind::Server, &about, parent.as_ref(), now)
        else {
            return;
        };
        span.set("network.transport", "tcp");
        if method == "tools/call" && self.tracer.captures_content() {
            if let Some(arguments) = params.get("arguments") {
                span.set("gen_ai.tool.call.arguments", capped_json(arguments));
            }
        }
        if let Some(version) = version_of(request, method, params) {
            span.set("mcp.protocol.version", version);
        }
        if let Some(session) = session {
            span.set("mcp.session.id", session);
        }
        carry(&span.context, params);
        match answering {
            Answering::Http(to) => self.by_request.insert(to, span),
            Answering::Call(child, client, id) => {
                self.by_call.insert((child, client, id.into_owned()), span)
            }
        };
    }

    /// `response` answers `to`: a full one ends its request's span (a
    /// stream's head does not: its last event is the answer).
    pub(crate) fn response(&mut self, to: RequestId, response: &Response) {
        let Body::Full(body) = &response.body else {
            return;
        };
        if self.by_request.is_empty() {
            return;
        }
        let Some(mut span) = self.by_request.remove(&to) else {
            return;
        };
        self.capture_result(&mut span, body);
        if let (None, Some(session)) = (
            span.get("mcp.session.id"),
            response.header("mcp-session-id"),
        ) {
            span.set("mcp.session.id", session.to_owned());
        }
        let failure = Failure::of_answer(body).or_else(|| {
            (response.status >= 400).then(|| Failure {
                kind: response.status.to_string(),
                description: "refused".to_owned(),
            })
        });
        self.end_served(span, failure);
    }

    /// `answer` ends the stream answering `to`, or goes to a session's
    /// client: the span of the request it answers ends.
    pub(crate) fn answer(&mut self, answering: Answering, answer: &str) {
        if self.is_empty() {
            return;
        }
        let span = match &answering {
            Answering::Http(to) => self.by_request.remove(to),
            Answering::Call(child, client, id) => {
                self.by_call.remove(&(*child, *client, id.to_string()))
            }
        };
        if let Some(mut span) = span {
            self.capture_result(&mut span, answer.as_bytes());
            self.end_served(span, Failure::of_answer(answer.as_bytes()));
        }
    }

    /// The requests answered on `conn`, or by `clients`, will get no
    /// answer there: their spans end, failed with `why`.
    pub(crate) fn abandoned(
        &mut self,
        conn: Option<ConnId>,
        clients: &[(ChildId, ClientId)],
        why: &str,
    ) {
        if self.is_empty() {
            return;
        }
        let requests: Vec<RequestId> = (self.by_request.keys())
            .filter(|to| Some(to.conn) == conn)
            .copied()
            .collect();
        let calls: Vec<(ChildId, ClientId, String)> = (self.by_call.keys())
            .filter(|(child, client, _)| clients.contains(&(*child, *client)))
            .cloned()
            .collect();
        let gone: Vec<Span> = (requests.iter())
            .filter_map(|to| self.by_request.remove(to))
            .chain(calls.iter().filter_map(|key| self.by_call.remove(key)))
            .collect();
        for span in gone {
            self.end_served(span, Some(Failure::cancelled(why)));
        }
    }

    /// The instant of the input being handled (see [`Traces::clock`]).
    pub(crate) fn clock(&mut self, now: Instant) {
        if self.tracer.enabled() {
            self.clock = Some(now);
        }
    }

    /// With content captured, a tool call's result goes on its span: the
    /// JSON-RPC answer's `result`, or a REST answer as a whole (an error
    /// is no result: `error.type` tells it).
    fn capture_result(&self, span: &mut Span, answer: &[u8]) {
        if !self.tracer.captures_content() {
            return;
        }
        if !matches!(span.get("mcp.method.name"), Some(Attr::Str(m)) if m == "tools/call") {
            return;
        }
        let Ok(head) = serde_json::from_slice::<AnswerHead>(answer) else {
            return;
        };
        let result = match (head.error, head.result) {
            (Some(_), _) => return,
            (None, Some(result)) => result.get(),
            (None, None) => std::str::from_utf8(answer).unwrap_or_default(),
        };
        span.set("gen_ai.tool.call.result", result);
    }

    fn end_served(&mut self, span: Span, failure: Option<Failure>) {
        if let Some(now) = self.clock {
            end(&mut self.tracer, span, failure, now);
        }
    }
}
