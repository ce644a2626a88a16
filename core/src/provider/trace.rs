//! The spans of model requests, by the OpenTelemetry semantic conventions
//! for generative AI and HTTP.
//!
//! A model request gets a SERVER span when it arrives (a child of the
//! trace its `traceparent` and `tracestate` headers name), kept with its
//! [`super::meter::Meter`] and finished where the meter ends: when the
//! answer's last byte is posted, or when the editor leaves (then
//! `error.type` is `cancelled`). It is named `{operation} {model}` once the
//! body is read (`POST /v1/chat/completions` until then, a body that could
//! not be read never naming its operation). The agent's part is an
//! `invoke_agent {agent}` span, its child, held by the invocation: its
//! context goes to the agent in `model_invoke`. A background Responses
//! answer's span moves to its job (the asker is answered at once, as
//! queued) and ends with the job's answer.
//!
//! No attribute holds a key, and none a prompt or an answer's text unless
//! the tracer captures content (see `content.rs`): the model, the ids, the
//! counts and the outcome only.

use std::time::Instant;

use serde_json::Value;

use super::by_id::Ended;
use super::content::{input, Answer};
use super::invoke::Invocation;
use super::kept::{is_kept, KeptAnswers};
use super::meter::Meter;
use super::tool_spans::note_calls;
use super::Provider;
use crate::agent::message::Delta;
use crate::api::routes::label;
use crate::api::ModelRequest;
use crate::error::ApiError;
use crate::http::Request;
use crate::idmap::IdMap;
use crate::telemetry::{Kind, Span, SpanContext};
use crate::ConnId;

/// The event marking the answer's first piece from the agent.
const FIRST_CHUNK: &str = "gen_ai.first_chunk";

/// The GenAI operation of an invocation's payload (its `kind`).
fn operation(payload: &Value) -> &'static str {
    match payload["kind"].as_str() {
        Some("completion") => "text_completion",
        Some("embedding") => "embeddings",
        _ => "chat",
    }
}

/// The low-cardinality class of an API error: its code, else its type.
pub(super) fn error_type(error: &ApiError) -> &'static str {
    error.code.unwrap_or(error.kind)
}

impl Provider {
    /// A request for a model route (`route`) arrived on `conn`, its meter
    /// started: its SERVER span starts.
    pub(super) fn trace_request(
        &mut self,
        conn: ConnId,
        request: &Request,
        route: usize,
        now: Instant,
    ) {
        if !self.tracer.enabled() {
            return;
        }
        let parent = request
            .header("traceparent")
            .and_then(|p| SpanContext::parse(p, request.header("tracestate")));
        let template = label(route);
        let name = format!("{} {template}", request.method);
        let Some(mut span) = self.tracer.start(name, Kind::Server, parent.as_ref(), now) else {
            return;
        };
        span.set("http.request.method", request.method.as_str());
        span.set("http.route", template);
        if let Some(m) = self.meters.get_mut(&conn) {
            m.span = Some(span);
        }
    }

    /// The request on `conn` was read: its span is named for what it asks.
    pub(super) fn trace_model(&mut self, conn: ConnId, request: &ModelRequest) {
        let Some(span) = answer_span(&mut self.kept, &mut self.meters, conn) else {
            return;
        };
        let operation = operation(&request.payload);
        span.name = format!("{operation} {}", request.model);
        span.set("gen_ai.operation.name", operation);
        span.set("gen_ai.request.model", request.model.as_str());
    }

    /// The request `conn` answers failed with `error`.
    pub(super) fn trace_error(&mut self, conn: ConnId, error: &ApiError) {
        if let Some(span) = answer_span(&mut self.kept, &mut self.meters, conn) {
            span.fail(error_type(error), error.message.as_str());
        }
    }

    /// The agent's first piece of the answer for `conn` arrived.
    pub(super) fn trace_first_chunk(&mut self, conn: ConnId, now: Instant) {
        if let Some(span) = answer_span(&mut self.kept, &mut self.meters, conn) {
            if !span.events.iter().any(|e| e.name == FIRST_CHUNK) {
                self.tracer.event(span, FIRST_CHUNK, now);
            }
        }
    }

    /// The invocation for the request on `conn` goes to `agent` (the name
    /// its session registered) now: its `invoke_agent` span starts, and
    /// its context is what the agent is handed.
    pub(super) fn trace_invoke(&mut self, conn: ConnId, agent: &str, now: Instant) -> Option<Span> {
        let parent = answer_span(&mut self.kept, &mut self.meters, conn)?
            .context
            .clone();
        let mut span = self.tracer.start(
            format!("invoke_agent {agent}"),
            Kind::Internal,
            Some(&parent),
            now,
        )?;
        span.set("gen_ai.operation.name", "invoke_agent");
        span.set("gen_ai.agent.name", agent);
        Some(span)
    }

    /// The request on `conn` goes to its agent with `payload`, `agent` its
    /// agent's span: when content is captured, what the agent is sent goes
    /// on the request's span, and the answer's content is to be gathered.
    pub(super) fn trace_input(
        &mut self,
        conn: ConnId,
        agent: Option<&Span>,
        payload: &Value,
    ) -> Option<Answer> {
        if agent.is_none() || !self.tracer.captures_content() {
            return None;
        }
        let span = answer_span(&mut self.kept, &mut self.meters, conn)?;
        let (system, messages) = input(payload);
        if let Some(system) = system {
            span.set("gen_ai.system_instructions", system);
        }
        if let Some(messages) = messages {
            span.set("gen_ai.input.messages", messages);
        }
        Some(Answer::default())
    }

    /// The deltas of an invocation's answer: the tool calls among them are
    /// noted, for their `execute_tool` spans, and their content gathered
    /// when it is captured.
    pub(super) fn trace_delta(inv: &mut Invocation, delta: &Delta) {
        if inv.span.is_some() {
            note_calls(&mut inv.called, delta);
        }
        if let Some(answer) = inv.answer.as_mut() {
            answer.add(delta);
        }
    }

    /// An invocation ended with `finish_reason`.
    pub(super) fn trace_finished(&mut self, inv: &Invocation, finish_reason: Option<&str>) {
        if inv.span.is_none() {
            return;
        }
        let reasons: Vec<String> = finish_reason.into_iter().map(str::to_owned).collect();
        if let Some(span) = answer_span(&mut self.kept, &mut self.meters, inv.editor.conn) {
            span.set("gen_ai.response.finish_reasons", reasons);
            if let Some(answer) = &inv.answer {
                span.set("gen_ai.output.messages", answer.messages(finish_reason));
            }
        }
    }

    /// An invocation is over: what its answer was goes on the request's
    /// span, and the agent's span ends (an answer with tool calls starts
    /// their `execute_tool` spans).
    pub(super) fn trace_settled(&mut self, inv: &mut Invocation, ended: Ended) {
        let now = self.now;
        let Some(mut agent) = inv.span.take() else {
            return;
        };
        let usage = inv.tally.usage();
        if let (false, Some(span)) = (
            matches!(ended, Ended::Failed),
            answer_span(&mut self.kept, &mut self.meters, inv.editor.conn),
        ) {
            span.set("gen_ai.response.id", inv.id.as_str());
            span.set("gen_ai.usage.input_tokens", usage.prompt_tokens);
            span.set("gen_ai.usage.output_tokens", usage.completion_tokens);
        }
        match ended {
            Ended::Completed => {
                let calls = std::mem::take(&mut inv.called);
                self.tool_spans
                    .open(&mut self.tracer, &agent.context, &calls, now);
            }
            Ended::Cancelled if agent.error.is_none() => {
                agent.fail("cancelled", "the answer was cancelled");
            }
            Ended::Cancelled | Ended::Failed => {}
        }
        self.tracer.finish(agent, now);
    }

    /// The request's answer is over (`status` its status code, 499 when
    /// none went out): its span ends.
    pub(super) fn trace_end(
        &mut self,
        mut span: Span,
        status: u16,
        editor_left: bool,
        now: Instant,
    ) {
        span.set("http.response.status_code", i64::from(status));
        if editor_left {
            span.fail("cancelled", "the editor closed the request");
        } else if status >= 400 && span.error.is_none() {
            span.fail(status.to_string(), format!("answered {status}"));
        }
        self.tracer.finish(span, now);
    }
}

/// The span of the request that `conn` (an editor connection, or a kept
/// answer's job) answers: the job's own once it holds it, else the one
/// in the meter of the connection waiting.
fn answer_span<'a>(
    kept: &'a mut KeptAnswers,
    meters: &'a mut IdMap<ConnId, Meter>,
    conn: ConnId,
) -> Option<&'a mut Span> {
    if is_kept(conn) && kept.job_span(conn).is_some_and(|span| span.is_some()) {
        return kept.job_span(conn)?.as_mut();
    }
    let conn = kept.live_conn(conn).unwrap_or(conn);
    meters.get_mut(&conn)?.span.as_mut()
}
