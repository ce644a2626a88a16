//! One model request's life, for every part it touches: sent to an agent
//! as `model_invoke`, answered by chunks (reassembled in order) or a whole
//! result, ended by a finish, an error, a timeout, or the editor going
//! away; then booked against its session, rate limits and spans. A kept
//! answer's job writes its events here too (see `kept.rs`).

use std::borrow::Cow;
use std::time::Instant;

use serde::Deserialize;
use serde_json::Value;

use super::invocations::{wire_id, Drain, Drained, Invocation, Piece, Unrelayed, Wake};
use super::outcome::{Decision, Ended};
use super::routing::{self, busy};
use super::{kept, trace, Output, Provider, RequestId};
use crate::agent::message::{
    to_agent, Delta, ErrorBody, ModelResult, StreamChunk, ToolCalls, Usage,
};
use crate::answer::Tally;
use crate::answer::MAX_TOOL_CALLS;
use crate::api::{AnswerIds, ModelRequest};
use crate::error::ApiError;
use crate::http::Fields;
use crate::stream::{AnswerEvent, EditorStream, Piece as PieceOut};
use crate::time::unix_seconds;
use crate::ConnId;

impl Provider {
    /// Picks a session and sends the request to its agent.
    pub(super) fn invoke(
        &mut self,
        conn: ConnId,
        request: ModelRequest,
        pin: Option<&str>,
        key: Option<usize>,
        extra: Fields,
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
        let links = &self.links;
        let (model, session) = routing::book(&mut self.sessions, links, &request, pin, now)?;
        let (session_id, agent) = (session.id.to_owned(), session.agent);
        // The agent as it registered, for its span.
        let agent_name = self.traces.enabled().then(|| match session.name {
            "" => model.clone(),
            name => name.to_owned(),
        });

        let n = self.ids.fresh();
        self.stats.invocations += 1;
        let ids = AnswerIds::new(request.api, self.ids.token(), unix_seconds(self.wall(now)));
        let mut extra = extra;
        extra.push(("x-completion-id", ids.id.clone().into()));
        let (id, created) = (ids.id.clone(), ids.created);
        let span = agent_name.and_then(|agent| {
            let parent = trace::answer_span(&mut self.kept, &mut self.requests, conn);
            self.traces.invoke(parent, &agent, now)
        });
        let parent = trace::answer_span(&mut self.kept, &mut self.requests, conn);
        let answer = self.traces.input(parent, span.as_ref(), &request.payload);
        let trace = span.as_ref().map(|s| &s.context);
        let text = to_agent::invoke(&wire_id(n), &session_id, &model, &request.payload, trace);
        let audit = self.audit.enabled();
        self.requests.invoked(
            self.kept.metered(conn),
            &model,
            &session_id,
            request.prompt_tokens,
            &request.payload,
            audit,
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
        let editor = self.requests.on(conn);
        self.post(editor, AnswerEvent::Open(Box::new(out)));
        let inv = Invocation {
            editor,
            id,
            model: model.clone(),
            created,
            agent,
            session: session_id,
            stream,
            embedding: request.embedding,
            tally,
            key,
            span,
            called: Vec::new(),
            answer,
            progress: self.invocations.progress(stream, keepalive, now),
        };
        self.answers.started(&inv.id, n);
        self.invocations.start(n, conn, inv);
        Ok(())
    }

    /// The invocation `id` names, if it is waiting and `agent` serves it.
    fn waiting(&mut self, agent: ConnId, id: &str) -> Option<u64> {
        let n = self.invocations.waiting(agent, id);
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
        let at = (now, self.wall(now));
        let arrived = (self.invocations).arrive(
            n,
            chunk.chunk_index,
            piece,
            at,
            &mut self.texts,
            &mut self.outputs,
        );
        match arrived {
            Some(Ok(drain)) => self.drained(n, drain, now),
            Some(Err(Unrelayed::Embedding)) => {
                let error =
                    ApiError::agent("an embedding request must be answered with model_result");
                self.fail(n, error, true);
            }
            Some(Err(Unrelayed::Held)) | None => {}
            Some(Err(Unrelayed::Duplicate)) => self.stats.duplicate_chunks += 1,
            Some(Err(Unrelayed::Broken(e))) => {
                self.fail(n, ApiError::agent(format!("stream broken: {e}")), true)
            }
        }
    }

    /// Pieces of invocation `n` went to the editor: counted, and its end
    /// carried out if one of them ended it.
    fn drained(&mut self, n: u64, drain: Drain, now: Instant) {
        self.metrics.counters.chunks += drain.relayed;
        if drain.first {
            self.first_chunk(drain.editor.conn, now);
        }
        match drain.end {
            Drained::More => {}
            Drained::Overflow(e) => self.fail(
                n,
                ApiError::agent(format!("{e}; the request was cancelled.")),
                true,
            ),
            Drained::Finished(reason, usage) => self.finish(n, Some(reason), usage, now),
        }
    }

    /// The agent's first piece of the answer for `conn` arrived.
    fn first_chunk(&mut self, conn: ConnId, now: Instant) {
        let span = trace::answer_span(&mut self.kept, &mut self.requests, conn);
        self.traces.first_chunk(span, now);
        let metered = self.kept.metered(conn);
        (self.requests).first_chunk(metered, now, &mut self.metrics);
    }

    /// Completes an invocation normally.
    fn finish(&mut self, n: u64, reason: Option<String>, usage: Option<Usage>, now: Instant) {
        let wall = self.wall(now);
        let Some(mut inv) = self.remove(n) else {
            return;
        };
        inv.tally.report(usage);
        trace::finished(self.answer_span(inv.editor.conn), &inv, reason.as_deref());
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
        if let Some(inv) = self.invocations.get(n) {
            let editor = inv.editor;
            self.first_chunk(editor.conn, now);
        }
        let result = result.result.unwrap_or(Value::Null);
        let usage: Option<Usage> = result.get("usage").and_then(|u| Usage::deserialize(u).ok());
        if self.invocations.get(n).is_some_and(|inv| inv.embedding) {
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
            content: message["content"].as_str().map(Cow::Borrowed),
            reasoning: message["reasoning_content"].as_str().map(Cow::Borrowed),
            tool_calls,
        };
        let wall = self.wall(now);
        if let Some(inv) = self.invocations.get_mut(n) {
            if let Err(e) = inv.tally.add_delta(&delta) {
                return self.fail(n, ApiError::agent(e.to_string()), false);
            }
            inv.note(&delta);
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
            span.fail(trace::error_type(&error), error.message.as_str());
        }
        self.post(inv.editor, AnswerEvent::Fail(error));
        if cancel {
            self.send_cancel(&inv, n);
        }
        let settle_at = inv.deadline();
        self.settle(&mut inv, Ended::Failed, settle_at);
    }

    /// The editor went away: the agent is told to stop. (A kept answer's
    /// editor leaving cancels it, so its record says so.)
    pub(super) fn editor_gone(&mut self, n: u64) {
        let job_conn = self.invocations.get(n).map(|inv| inv.editor.conn);
        if job_conn.is_some_and(|job_conn| self.kept.asker_left(job_conn)) {
            self.cancel_answer(n, self.now);
            return;
        }
        if let Some(mut inv) = self.invocations.detach(n) {
            self.end_questions_of(n);
            self.send_cancel(&inv, n);
            let at = inv.deadline();
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
        if self.links.contains(inv.agent) {
            self.stats.cancels += 1;
            self.outputs.push_back(Output::ToAgent {
                conn: inv.agent,
                text: to_agent::cancel(&wire_id(n)),
            });
        }
    }

    fn remove(&mut self, n: u64) -> Option<Invocation> {
        let inv = self.invocations.remove(n)?;
        self.end_questions_of(n);
        Some(inv)
    }

    /// Invocation `n` ended: its questions go (its agent stopped waiting).
    fn end_questions_of(&mut self, n: u64) {
        let now = self.now;
        for q in self.questions.of_invocation(n) {
            self.question_ended(&q, Decision::Withdrawn, now);
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
        let metered = self.kept.metered(inv.editor.conn);
        self.requests.usage(metered, prompt, completion);
        let span = trace::answer_span(&mut self.kept, &mut self.requests, inv.editor.conn);
        self.traces.settled(span, inv, ended, self.now);
        if let Some(s) = self.sessions.get_mut(&inv.session) {
            s.in_flight = s.in_flight.saturating_sub(1);
            s.tokens = s.tokens.saturating_add(prompt.saturating_add(completion));
            s.last_activity = s.last_activity.max(now);
        }
        self.limits.charge(inv.key, completion, now);
    }

    /// A wake-up for invocation `n`: keep-alive, timeout, or nothing.
    pub(super) fn invocation_timer(&mut self, n: u64, now: Instant) {
        match self.invocations.wake(n, now) {
            Wake::Timeout { stream } => {
                self.stats.timeouts += 1;
                let what = if stream {
                    "The agent sent nothing for too long"
                } else {
                    "The agent did not answer in time"
                };
                self.fail(
                    n,
                    ApiError::timeout(format!("{what}; the request was cancelled.")),
                    true,
                );
            }
            Wake::Keepalive(editor) => self.post(editor, AnswerEvent::Keepalive),
            Wake::Nothing => {}
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
        for n in self.invocations.matching(which) {
            self.fail(n, error.clone(), cancel);
        }
    }

    // ---- kept answers' jobs ----

    /// Writes every answer event posted to a job so far: called before
    /// anything reads a kept answer's state, so it is up to date.
    pub(super) fn pump_kept(&mut self) {
        if !self.kept.running() {
            return;
        }
        let queued = std::mem::take(&mut self.outputs);
        for output in queued {
            match output {
                Output::Answer { to, event } if kept::is_kept(to.conn) => {
                    self.kept_event(to, event)
                }
                other => self.outputs.push_back(other),
            }
        }
    }

    /// One event of a job's answer: written by its own `Answering`, and
    /// what that made recorded and passed on.
    pub(super) fn kept_event(&mut self, to: RequestId, event: AnswerEvent) {
        if let AnswerEvent::Fail(error) = &event {
            if self.kept.job_span(to.conn).is_some() {
                trace::error(self.answer_span(to.conn), error);
            }
        }
        let Some(mut made) = self.kept.write(to, event) else {
            return;
        };
        for output in made.drain(..) {
            self.kept_output(to.conn, output);
        }
        self.kept.reuse(made);
    }

    /// What a job's `Answering` wrote: recorded, and passed on.
    fn kept_output(&mut self, job_conn: ConnId, output: Output) {
        let now = self.now;
        match output {
            Output::Respond { response, .. } => {
                self.kept.head(job_conn, response, &mut self.outputs)
            }
            Output::Data { data, .. } => {
                self.kept.record(job_conn, &data, now);
                let max = self.config.max_output_bytes;
                if self.kept.overgrown(job_conn, max) {
                    // Past it, the answer ends with an error, and the agent
                    // is told to stop.
                    if let Some(n) = self.invocations.answering(job_conn) {
                        let error = ApiError::agent(format!(
                            "The background response's events grew past {max} bytes ('max_output_bytes'); the answer was cancelled."
                        ));
                        self.fail(n, error, true);
                    }
                }
                self.kept.pass_on(job_conn, data, &mut self.outputs);
            }
            Output::End { .. } => {
                let Some((span, asker)) = self.kept.end(job_conn, &mut self.outputs) else {
                    return;
                };
                if let Some(span) = span {
                    // Its asker was answered 200 when the answer began.
                    self.traces.end(span, 200, false, self.now);
                }
                if let Some(asker) = asker {
                    self.invocations.forget_ended(asker);
                }
            }
            _ => {}
        }
    }
}

/// The tool calls of a whole answer, each numbered by its place: objects
/// only, no more than one answer may hold.
fn whole_tool_calls(calls: &Value) -> Result<Option<ToolCalls>, String> {
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
        .collect::<Result<ToolCalls, _>>()
        .map(Some)
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
