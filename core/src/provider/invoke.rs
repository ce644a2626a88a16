//! One model request's life: sent to an agent as `model_invoke`, answered
//! by chunks (reassembled in order) or a whole result, ended by a finish,
//! an error, a timeout, or the editor going away.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::time::Instant;

use serde_json::Value;

use super::{Output, Provider, RequestId};
use serde::Deserialize;

use crate::agent::message::{
    to_agent, Delta, ErrorBody, ModelResult, StreamChunk, ToolCallDelta, Usage,
};
use crate::answer::{Tally, MAX_TOOL_CALLS};
use crate::api::{AnswerIds, ModelRequest};
use crate::error::ApiError;
use crate::reassembly::{Pushed, Reassembler};
use crate::session::{RouteError, Status};
use crate::stream::{AnswerEvent, EditorStream, Piece as PieceOut};
use crate::time::{later, unix_seconds};
use crate::ConnId;

use super::by_id::Ended;
use super::content::Answer;
use super::tool_spans::Called;
use crate::telemetry::Span;

/// One piece of an answer: borrowed from its frame when it is written at
/// once, owned while it waits for an earlier one.
#[derive(Debug)]
pub(super) struct Piece<'a> {
    delta: Delta<'a>,
    finish: Option<Cow<'a, str>>,
    usage: Option<Usage>,
}

impl Piece<'_> {
    fn into_owned(self) -> Piece<'static> {
        Piece {
            delta: self.delta.into_owned(),
            finish: self.finish.map(|f| Cow::Owned(f.into_owned())),
            usage: self.usage,
        }
    }
}

/// The provider's side of an answer: where its pieces come from and go,
/// their order, deadlines and count. The editor's connection writes them
/// ([`crate::stream::Answering`]).
pub(super) struct Invocation {
    /// The request it answers (for a kept answer, its job: see `kept.rs`).
    pub(super) editor: RequestId,
    /// The answer's id (`chatcmpl-…`, `resp_…`, …): what
    /// `GET|DELETE /completions/{id}` find it by.
    pub(super) id: String,
    pub(super) model: String,
    /// Unix seconds.
    pub(super) created: u64,
    agent: ConnId,
    session: String,
    /// Streamed (else answered whole at the end).
    stream: bool,
    embedding: bool,
    /// The answer's size and usage, counted as the editor side counts it.
    pub(super) tally: Tally,
    pieces: Reassembler<Piece<'static>>,
    /// Stream idle deadline, or total deadline of a whole answer.
    deadline: Instant,
    /// Next keep-alive, for streams whose API has one.
    keepalive_at: Option<Instant>,
    /// Rate-limit bucket to charge used tokens to: the API key that asked.
    pub(super) key: Option<usize>,
    /// The agent was asked to pause this answer (its editor fell behind).
    paused: bool,
    /// Pieces of the answer relayed so far.
    chunks: u64,
    /// Its `invoke_agent` span, when tracing is on (see `trace.rs`).
    pub(super) span: Option<Span>,
    /// The tool calls its answer makes so far, noted while it has a span.
    pub(super) called: Vec<Called>,
    /// Its answer's content so far, while the tracer captures content.
    pub(super) answer: Option<Answer>,
}

impl Invocation {
    /// What the dashboard shows of an answer in flight: its editor, session,
    /// whether it streams, and the pieces relayed so far.
    pub(super) fn view(&self) -> (ConnId, &str, bool, u64) {
        (self.editor.conn, &self.session, self.stream, self.chunks)
    }

    pub(super) fn is_stream(&self) -> bool {
        self.stream
    }

    /// The agent link answering it.
    pub(super) fn agent(&self) -> ConnId {
        self.agent
    }

    /// The session serving it.
    pub(super) fn session(&self) -> &str {
        &self.session
    }

    /// Completion tokens so far, as counted.
    pub(super) fn tokens(&self) -> u64 {
        self.tally.usage().completion_tokens
    }

    fn next_wake(&self) -> Instant {
        self.keepalive_at
            .map_or(self.deadline, |k| k.min(self.deadline))
    }
}

/// The wire id of invocation `n`.
pub(super) fn wire_id(n: u64) -> String {
    format!("inv-{n}")
}

pub(super) fn parse_wire_id(id: &str) -> Option<u64> {
    id.strip_prefix("inv-")?.parse().ok()
}

impl Provider {
    /// Picks a session and sends the request to its agent.
    pub(super) fn invoke(
        &mut self,
        conn: ConnId,
        request: ModelRequest,
        pin: Option<&str>,
        key: Option<usize>,
        extra: Vec<(&'static str, String)>,
        now: Instant,
    ) -> Result<(), ApiError> {
        if self.shutting_down {
            return Err(ApiError::unavailable("The server is shutting down."));
        }
        if self.queued > self.config.max_queued_bytes {
            return Err(busy(
                "the server has too much output waiting for slow readers",
            ));
        }
        let Some(model) = self.sessions.resolve_model(&request.model) else {
            return Err(if self.links.is_empty() {
                no_agent()
            } else {
                ApiError::model_not_found(&request.model, &self.served_names())
            });
        };
        let embedding = request.embedding;
        let closed = |link| self.congested.contains_key(&link);
        let session_id = match self.sessions.route(&model, embedding, pin, closed) {
            Ok(id) => id.to_owned(),
            Err(RouteError::NoAgents) => return Err(no_agent()),
            Err(RouteError::UnknownModel) => {
                return Err(ApiError::model_not_found(
                    &request.model,
                    &self.served_names(),
                ))
            }
            Err(RouteError::WrongScope(why)) => {
                return Err(ApiError::forbidden(format!(
                    "Model `{model}` cannot serve this request: {why}"
                )))
            }
            Err(RouteError::Unavailable(why)) => {
                return Err(ApiError::unavailable(format!(
                    "Model `{model}` is not available: {why}"
                )))
            }
        };
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return Err(no_agent());
        };
        let Some(agent) = session.link else {
            return Err(no_agent());
        };
        if self.congested.contains_key(&agent) {
            return Err(busy(&format!(
                "the agent serving `{model}` is not reading what it was sent"
            )));
        }
        session.requests += 1;
        session.in_flight += 1;
        session.last_activity = now;
        if session
            .max_requests
            .is_some_and(|max| session.requests >= max)
        {
            session.status = Status::Suspended;
        }
        // The agent as it registered, for its span.
        let agent_name = self
            .tracer
            .enabled()
            .then(|| match session.agent_id.as_str() {
                "" => model.clone(),
                name => name.to_owned(),
            });

        let n = self.fresh_id();
        self.stats.invocations += 1;
        let ids = AnswerIds::new(
            request.api,
            self.fresh_token(),
            unix_seconds(self.wall(now)),
        );
        let mut extra = extra;
        extra.push(("x-completion-id", ids.id.clone()));
        let (id, created) = (ids.id.clone(), ids.created);
        let span = agent_name.and_then(|agent| self.trace_invoke(conn, &agent, now));
        let answer = self.trace_input(conn, span.as_ref(), &request.payload);
        let trace = span.as_ref().map(|s| &s.context);
        let text = to_agent::invoke(&wire_id(n), &session_id, &model, &request.payload, trace);
        self.meter_invoked(
            conn,
            &model,
            &session_id,
            request.prompt_tokens,
            &request.payload,
        );
        self.outputs
            .push_back(Output::ToAgent { conn: agent, text });

        let out = EditorStream::new(&request, ids, now, extra);
        let stream = out.is_stream();
        let tally = Tally::new(
            out.keeps_text(),
            request.prompt_tokens,
            self.config.max_output_bytes,
        );
        let keepalive = out.keepalive().is_some();
        let editor = self.request_on(conn);
        self.post(editor, AnswerEvent::Open(Box::new(out)));
        let timeout = if stream {
            self.config.stream_idle_timeout
        } else {
            self.config.request_timeout
        };
        let inv = Invocation {
            editor,
            id,
            model: model.clone(),
            created,
            agent,
            session: session_id,
            stream,
            embedding,
            tally,
            pieces: Reassembler::new(self.config.max_held_chunks),
            deadline: later(now, timeout),
            keepalive_at: keepalive.then(|| later(now, self.config.keepalive_interval)),
            key,
            paused: false,
            chunks: 0,
            span,
            called: Vec::new(),
            answer,
        };
        self.timers.push(Reverse((inv.next_wake(), n)));
        self.answers.started(&inv.id, n);
        self.invocations.insert(n, inv);
        self.by_conn.insert(conn, n);
        Ok(())
    }

    /// The invocation `id` names, if it is waiting and `agent` serves it.
    fn waiting(&mut self, agent: ConnId, id: &str) -> Option<u64> {
        let n = parse_wire_id(id).filter(|n| {
            self.invocations
                .get(n)
                .is_some_and(|inv| inv.agent == agent)
        });
        if n.is_none() {
            self.stats.dropped_messages += 1;
        }
        n
    }

    pub(super) fn on_chunk(&mut self, agent: ConnId, chunk: StreamChunk, now: Instant) {
        let Some(n) = self.waiting(agent, &chunk.id) else {
            return;
        };
        let piece = Piece {
            delta: chunk.delta,
            finish: chunk.finish_reason,
            usage: chunk.usage,
        };
        let Some(inv) = self.invocations.get_mut(&n) else {
            return;
        };
        if inv.embedding {
            let error = ApiError::agent("an embedding request must be answered with model_result");
            self.fail(n, error, true);
            return;
        }
        if inv.pieces.pass(chunk.chunk_index) {
            self.drain(n, Some(piece), now);
            return;
        }
        match inv.pieces.push(chunk.chunk_index, piece.into_owned()) {
            Ok(Pushed::Ready) => self.drain(n, None, now),
            Ok(Pushed::Held) => {}
            Ok(Pushed::Duplicate) => self.stats.duplicate_chunks += 1,
            Err(e) => self.fail(n, ApiError::agent(format!("stream broken: {e}")), true),
        }
    }

    /// Posts `first` (a piece passed straight through) and every held
    /// piece that is now in order to the editor.
    fn drain(&mut self, n: u64, first: Option<Piece<'_>>, now: Instant) {
        let wall = self.wall(now);
        let Some(inv) = self.invocations.get_mut(&n) else {
            return;
        };
        let mut finished = None;
        let mut overflow = None;
        let mut first = first;
        let first_answer = inv.chunks == 0;
        while let Some(piece) = first.take().or_else(|| inv.pieces.pop()) {
            inv.chunks += 1;
            self.metrics.counters.chunks += 1;
            if let Err(e) = inv.tally.add_delta(&piece.delta) {
                overflow = Some(e);
                break;
            }
            Self::trace_delta(inv, &piece.delta);
            let event = AnswerEvent::Piece(PieceOut::new(&mut self.texts, piece.delta, now, wall));
            self.outputs.push_back(Output::Answer {
                to: inv.editor,
                event,
            });
            if let Some(reason) = piece.finish {
                finished = Some((reason.into_owned(), piece.usage));
                break;
            }
        }
        if inv.stream {
            inv.deadline = later(now, self.config.stream_idle_timeout);
        }
        if let Some(k) = inv.keepalive_at.as_mut() {
            *k = later(now, self.config.keepalive_interval);
        }
        let editor = inv.editor;
        if first_answer {
            self.meter_first_chunk(editor.conn, now);
        }
        if let Some(e) = overflow {
            self.fail(
                n,
                ApiError::agent(format!("{e}; the request was cancelled.")),
                true,
            );
        } else if let Some((reason, usage)) = finished {
            self.finish(n, Some(reason), usage, now);
        }
    }

    /// Asks the agent to hold invocation `n`'s chunks: its editor fell
    /// behind.
    pub(super) fn pause_answer(&mut self, n: u64) {
        let Some(inv) = self.invocations.get_mut(&n) else {
            return;
        };
        if !inv.paused {
            inv.paused = true;
            let (conn, text) = (inv.agent, to_agent::pause(&wire_id(n)));
            self.outputs.push_back(Output::ToAgent { conn, text });
        }
    }

    /// Lets the agent go on with invocation `n`: its editor caught up.
    pub(super) fn resume_answer(&mut self, n: u64) {
        let Some(inv) = self.invocations.get_mut(&n) else {
            return;
        };
        if inv.paused {
            inv.paused = false;
            let (conn, text) = (inv.agent, to_agent::resume(&wire_id(n)));
            self.outputs.push_back(Output::ToAgent { conn, text });
        }
    }

    /// Completes an invocation normally.
    fn finish(&mut self, n: u64, reason: Option<String>, usage: Option<Usage>, now: Instant) {
        let wall = self.wall(now);
        let Some(mut inv) = self.remove(n) else {
            return;
        };
        inv.tally.report(usage);
        self.trace_finished(&inv, reason.as_deref());
        let ended = match reason.as_deref() {
            Some(crate::answer::CANCELLED) => Ended::Cancelled,
            _ => Ended::Completed,
        };
        let event = AnswerEvent::Finish {
            reason,
            usage: inv.tally.usage(),
            at: now,
            wall,
        };
        self.post(inv.editor, event);
        self.settle(&mut inv, ended, now);
    }

    /// Posts one step of an answer to its editor.
    fn post(&mut self, to: RequestId, event: AnswerEvent) {
        self.outputs.push_back(Output::Answer { to, event });
    }

    pub(super) fn on_result(&mut self, agent: ConnId, result: ModelResult, now: Instant) {
        let Some(n) = self.waiting(agent, &result.id) else {
            return;
        };
        if result.status != "ok" {
            let body = result.error.unwrap_or_default();
            self.fail(n, agent_error(&body), false);
            return;
        }
        if let Some(inv) = self.invocations.get(&n) {
            let editor = inv.editor;
            self.meter_first_chunk(editor.conn, now);
        }
        let result = result.result.unwrap_or(Value::Null);
        let usage: Option<Usage> = result.get("usage").and_then(|u| Usage::deserialize(u).ok());
        if self.invocations.get(&n).is_some_and(|inv| inv.embedding) {
            let vectors: Vec<Value> = result["data"]
                .as_array()
                .map(|d| d.iter().map(|e| e["embedding"].clone()).collect())
                .unwrap_or_default();
            if vectors.is_empty() || vectors.iter().any(|v| !v.is_array()) {
                self.fail(
                    n,
                    ApiError::agent("the agent's embedding result has no vectors"),
                    false,
                );
                return;
            }
            let wall = self.wall(now);
            if let Some(mut inv) = self.remove(n) {
                let event = AnswerEvent::Vectors {
                    vectors,
                    at: now,
                    wall,
                };
                self.post(inv.editor, event);
                self.settle(&mut inv, Ended::Completed, now);
            }
            return;
        }
        let choice = &result["choices"][0];
        let message = &choice["message"];
        let tool_calls = match whole_tool_calls(&message["tool_calls"]) {
            Ok(calls) => calls,
            Err(why) => return self.fail(n, ApiError::agent(why), false),
        };
        let delta = Delta {
            role: None,
            content: message["content"].as_str().map(Cow::Borrowed),
            reasoning: message["reasoning_content"].as_str().map(Cow::Borrowed),
            tool_calls,
        };
        let wall = self.wall(now);
        if let Some(inv) = self.invocations.get_mut(&n) {
            if let Err(e) = inv.tally.add_delta(&delta) {
                return self.fail(n, ApiError::agent(e.to_string()), false);
            }
            Self::trace_delta(inv, &delta);
            let to = inv.editor;
            let piece = PieceOut::new(&mut self.texts, delta, now, wall);
            self.post(to, AnswerEvent::Piece(piece));
        }
        let reason = choice["finish_reason"].as_str().map(str::to_owned);
        self.finish(n, reason, usage, now);
    }

    pub(super) fn on_agent_error(&mut self, agent: ConnId, id: Option<&str>, error: &ErrorBody) {
        if let Some(n) = id.and_then(|id| self.waiting(agent, id)) {
            self.fail(n, agent_error(error), false);
        }
    }

    /// An answer to invocation `id` that could not be read (see
    /// [`crate::agent::message::Invalid`]): no later piece can mend it, so
    /// its editor gets the error now, not when the request times out, and
    /// the agent is told to stop.
    pub(super) fn on_unreadable_answer(&mut self, agent: ConnId, id: &str, why: &str) {
        if let Some(n) = self.waiting(agent, id) {
            let error = ApiError::agent(format!(
                "The agent sent an answer that cannot be read ({why}); the request was cancelled."
            ));
            self.fail(n, error, true);
        }
    }

    /// Ends an invocation with an error the editor sees; `cancel` tells the
    /// agent to stop working on it.
    pub(super) fn fail(&mut self, n: u64, error: ApiError, cancel: bool) {
        let Some(mut inv) = self.remove(n) else {
            return;
        };
        if let Some(span) = inv.span.as_mut() {
            span.fail(super::trace::error_type(&error), error.message.as_str());
        }
        self.post(inv.editor, AnswerEvent::Fail(error));
        if cancel {
            self.send_cancel(&inv, n);
        }
        let settle_at = inv.deadline;
        self.settle(&mut inv, Ended::Failed, settle_at);
    }

    /// The editor went away: the agent is told to stop. (A kept answer's
    /// editor leaving cancels it, so its record says so.)
    pub(super) fn editor_gone(&mut self, n: u64) {
        if self.kept_editor_gone(n) {
            return;
        }
        if let Some(mut inv) = self.invocations.remove(&n) {
            self.end_questions_of(n);
            self.send_cancel(&inv, n);
            let at = inv.deadline;
            self.settle(&mut inv, Ended::Cancelled, at);
        }
    }

    /// Cancels invocation `n` by its id (`DELETE /completions/{id}`, a
    /// background response's cancel): the agent is told to stop, and the
    /// editor's answer ends with what it has, as a finished one does (in
    /// the Responses API, as `cancelled`).
    pub(super) fn cancel_answer(&mut self, n: u64, now: Instant) {
        let wall = self.wall(now);
        let Some(mut inv) = self.remove(n) else {
            return;
        };
        self.send_cancel(&inv, n);
        self.metrics.counters.answers_cancelled += 1;
        inv.tally.report(None);
        let event = AnswerEvent::Finish {
            reason: Some(crate::answer::CANCELLED.to_owned()),
            usage: inv.tally.usage(),
            at: now,
            wall,
        };
        self.post(inv.editor, event);
        self.settle(&mut inv, Ended::Cancelled, now);
    }

    fn send_cancel(&mut self, inv: &Invocation, n: u64) {
        if self.links.contains_key(&inv.agent) {
            self.stats.cancels += 1;
            self.outputs.push_back(Output::ToAgent {
                conn: inv.agent,
                text: to_agent::cancel(&wire_id(n)),
            });
        }
    }

    fn remove(&mut self, n: u64) -> Option<Invocation> {
        let inv = self.invocations.remove(&n)?;
        self.end_questions_of(n);
        self.by_conn.remove(&inv.editor.conn);
        self.prune_timers();
        Some(inv)
    }

    /// Drops the wake-ups at the front of the timer queue whose
    /// invocations have ended, so the driver's timer is not armed for
    /// them: a short answer would otherwise leave one wake-up behind, a
    /// second later, for nothing. (One further back goes when it reaches
    /// the front.)
    fn prune_timers(&mut self) {
        while let Some(Reverse((_, n))) = self.timers.peek() {
            if self.invocations.contains_key(n) {
                break;
            }
            self.timers.pop();
        }
    }

    /// Books a finished invocation against its session and rate limits,
    /// and remembers how it ended for `GET /completions/{id}`.
    fn settle(&mut self, inv: &mut Invocation, ended: Ended, now: Instant) {
        let Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
        } = inv.tally.usage();
        let agent = self.sessions.get(&inv.session).map(|s| s.agent_id.clone());
        self.answers.ended(inv, agent, ended);
        self.meter_usage(inv.editor.conn, prompt, completion);
        self.trace_settled(inv, ended);
        if let Some(s) = self.sessions.get_mut(&inv.session) {
            s.in_flight = s.in_flight.saturating_sub(1);
            s.tokens = s.tokens.saturating_add(prompt.saturating_add(completion));
            s.last_activity = s.last_activity.max(now);
        }
        self.charge_tokens(inv.key, completion, now);
    }

    /// A wake-up for invocation `n`: keep-alive, timeout, or nothing.
    pub(super) fn invocation_timer(&mut self, n: u64, now: Instant) {
        let Some(inv) = self.invocations.get_mut(&n) else {
            return;
        };
        if now >= inv.deadline {
            self.stats.timeouts += 1;
            let what = if inv.stream {
                "The agent sent nothing for too long"
            } else {
                "The agent did not answer in time"
            };
            self.fail(
                n,
                ApiError::timeout(format!("{what}; the request was cancelled.")),
                true,
            );
            return;
        }
        if inv.keepalive_at.is_some_and(|k| now >= k) {
            inv.keepalive_at = Some(later(now, self.config.keepalive_interval));
            let editor = inv.editor;
            self.post(editor, AnswerEvent::Keepalive);
        }
        if let Some(inv) = self.invocations.get(&n) {
            self.timers.push(Reverse((inv.next_wake(), n)));
        }
    }

    /// Fails every invocation `which` selects: those of a dropped link
    /// (no cancel: nobody to tell) or of a revoked session.
    pub(super) fn fail_where(
        &mut self,
        which: impl Fn(&Invocation) -> bool,
        error: &ApiError,
        cancel: bool,
    ) {
        let ids: Vec<u64> = self
            .invocations
            .iter()
            .filter(|(_, inv)| which(inv))
            .map(|(n, _)| *n)
            .collect();
        for n in ids {
            self.fail(n, error.clone(), cancel);
        }
    }

    /// Whether an invocation is served by this agent link.
    pub(super) fn on_link(agent: ConnId) -> impl Fn(&Invocation) -> bool {
        move |inv| inv.agent == agent
    }

    /// Whether an invocation belongs to this session.
    pub(super) fn in_session(session: &str) -> impl Fn(&Invocation) -> bool + '_ {
        move |inv| inv.session == session
    }
}

/// The tool calls of a whole answer, each numbered by its place: objects
/// only, no more than one answer may hold.
fn whole_tool_calls(calls: &Value) -> Result<Option<Vec<ToolCallDelta>>, String> {
    let Some(calls) = calls.as_array() else {
        return Ok(None);
    };
    if calls.len() > MAX_TOOL_CALLS {
        return Err(format!(
            "the agent's answer has more than {MAX_TOOL_CALLS} tool calls"
        ));
    }
    calls
        .iter()
        .enumerate()
        .map(|(i, call)| match call {
            Value::Object(call) => {
                let mut call = call.clone();
                call.insert("index".to_owned(), Value::from(i));
                Ok(call)
            }
            _ => Err("the agent's answer has a tool call that is not an object".to_owned()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// 503 for a request the server is too backed up to take now.
fn busy(why: &str) -> ApiError {
    let mut e = ApiError::unavailable(format!("Busy: {why}; retry shortly."));
    e.retry_after = Some(1);
    e
}

fn no_agent() -> ApiError {
    ApiError::unavailable(
        "No agent is connected. Start one with `mcp-provider agent echo`, or run `mcp-provider serve` without --no-echo-agent.",
    )
}

/// The editor's error for an agent's: `busy` (the agent's own queue is
/// full) is a 503 to retry shortly, `timeout` a 504,
/// `context_length_exceeded` a 400 the editor can answer by shortening the
/// conversation, anything else a 502 naming the agent's code.
fn agent_error(body: &ErrorBody) -> ApiError {
    let mut message = body.message_or("the agent failed to answer");
    let code = body.code.as_ref().map(|c| match c.as_str() {
        Some(text) => text.to_owned(),
        None => c.to_string(),
    });
    match code.as_deref() {
        Some("busy") => busy(&message),
        Some("timeout") => ApiError::timeout(message),
        Some("context_length_exceeded") => ApiError::context_length_exceeded(message),
        Some(code) => {
            message.push_str(&format!(" (code {code})"));
            ApiError::agent(message)
        }
        None => ApiError::agent(message),
    }
}
