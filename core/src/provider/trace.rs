//! The spans of model requests, by the OpenTelemetry semantic conventions
//! for generative AI and HTTP.
//!
//! A model request gets a SERVER span when it arrives (a child of the
//! trace its `traceparent` and `tracestate` headers name), kept with its
//! [`super::requests::Meter`] and finished where the meter ends: when the
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

use super::content::{input, Answer};
use super::invocations::Invocation;
use super::kept::{is_kept, KeptAnswers};
use super::outcome::Ended;
use super::requests::Requests;
use super::tool_spans::ToolSpans;
use crate::api::routes::label;
use crate::api::ModelRequest;
use crate::config::Config;
use crate::error::ApiError;
use crate::http::Request;
use crate::telemetry::{Kind, Span, SpanContext, Tracer};
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

/// The spans the provider makes: the tracer, the editors' tool calls
/// waiting for their results, and the count of spans lost on their way
/// out.
pub(super) struct Traces {
    tracer: Tracer,
    /// Editors' tool calls waiting for their results, as spans.
    tool_spans: ToolSpans,
    /// Spans lost on their way out, as the driver reported them.
    dropped: u64,
}

impl Traces {
    pub(super) fn new(config: &Config, now: Instant, wall: std::time::SystemTime) -> Self {
        // Trace ids are drawn from a one-way image of the secret key:
        // nothing of the key, or of the session and response ids, can be
        // worked back from them.
        let trace_seed = crate::telemetry::seed_from(&config.secret);
        let tracer = Tracer::new(config.trace.clone(), trace_seed, now, wall)
            .capturing_content(config.trace_content);
        Traces {
            tracer,
            tool_spans: ToolSpans::default(),
            dropped: 0,
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.tracer.enabled()
    }

    /// The next finished span, for the driver to export.
    pub(super) fn poll(&mut self) -> Option<Span> {
        self.tracer.poll()
    }

    /// `count` spans were lost after the driver took them.
    pub(super) fn lost(&mut self, count: u64) {
        self.dropped = self.dropped.saturating_add(count);
    }

    /// Spans lost, here or on their way out.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.saturating_add(self.tracer.dropped())
    }

    /// When a tool call's span next runs out of time.
    pub(super) fn due(&self) -> Option<Instant> {
        self.tool_spans.due()
    }

    /// Tool calls whose results did not come in time end.
    pub(super) fn expire(&mut self, now: Instant) {
        self.tool_spans.expire(&mut self.tracer, now);
    }

    /// A request brings tool results (in `payload`): their calls' spans
    /// end.
    pub(super) fn answered(&mut self, payload: &Value, now: Instant) {
        self.tool_spans.answered(&mut self.tracer, payload, now);
    }

    /// A request for a model route (`route`) arrived, its meter started:
    /// its SERVER span, to keep in the meter.
    pub(super) fn request(
        &mut self,
        request: &Request,
        route: usize,
        now: Instant,
    ) -> Option<Span> {
        if !self.tracer.enabled() {
            return None;
        }
        let parent = request
            .header("traceparent")
            .and_then(|p| SpanContext::parse(p, request.header("tracestate")));
        let template = label(route);
        let name = format!("{} {template}", request.method);
        let mut span = self
            .tracer
            .start(name, Kind::Server, parent.as_ref(), now)?;
        span.set("http.request.method", &*request.method);
        span.set("http.route", template);
        Some(span)
    }

    /// The agent's first piece of the answer whose span is `span` arrived.
    pub(super) fn first_chunk(&self, span: Option<&mut Span>, now: Instant) {
        if let Some(span) = span {
            if !span.events.iter().any(|e| e.name == FIRST_CHUNK) {
                self.tracer.event(span, FIRST_CHUNK, now);
            }
        }
    }

    /// The invocation for the request whose span is `parent` goes to
    /// `agent` (the name its session registered) now: its `invoke_agent`
    /// span starts, and its context is what the agent is handed.
    pub(super) fn invoke(
        &mut self,
        parent: Option<&mut Span>,
        agent: &str,
        now: Instant,
    ) -> Option<Span> {
        let parent = parent?.context.clone();
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

    /// The request whose span is `span` goes to its agent with `payload`,
    /// `agent` its agent's span: when content is captured, what the agent
    /// is sent goes on the request's span, and the answer's content is to
    /// be gathered.
    pub(super) fn input(
        &self,
        span: Option<&mut Span>,
        agent: Option<&Span>,
        payload: &Value,
    ) -> Option<Answer> {
        if agent.is_none() || !self.tracer.captures_content() {
            return None;
        }
        let span = span?;
        let (system, messages) = input(payload);
        if let Some(system) = system {
            span.set("gen_ai.system_instructions", system);
        }
        if let Some(messages) = messages {
            span.set("gen_ai.input.messages", messages);
        }
        Some(Answer::default())
    }

    /// An invocation is over, `span` its request's: what its answer was
    /// goes on the request's span, and the agent's span ends (an answer
    /// with tool calls starts their `execute_tool` spans).
    pub(super) fn settled(
        &mut self,
        span: Option<&mut Span>,
        inv: &mut Invocation,
        ended: Ended,
        now: Instant,
    ) {
        let Some(mut agent) = inv.span.take() else {
            return;
        };
        let usage = inv.tally.usage();
        if let (false, Some(span)) = (matches!(ended, Ended::Failed), span) {
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
    pub(super) fn end(&mut self, mut span: Span, status: u16, editor_left: bool, now: Instant) {
        span.set("http.response.status_code", i64::from(status));
        if editor_left {
            span.fail("cancelled", "the editor closed the request");
        } else if status >= 400 && span.error.is_none() {
            span.fail(status.to_string(), format!("answered {status}"));
        }
        self.tracer.finish(span, now);
    }
}

/// The request whose span is `span` was read: the span is named for what
/// it asks.
pub(super) fn model(span: Option<&mut Span>, request: &ModelRequest) {
    let Some(span) = span else {
        return;
    };
    let operation = operation(&request.payload);
    span.name = format!("{operation} {}", request.model);
    span.set("gen_ai.operation.name", operation);
    span.set("gen_ai.request.model", request.model.as_str());
}

/// The request whose span is `span` failed with `error`.
pub(super) fn error(span: Option<&mut Span>, error: &ApiError) {
    if let Some(span) = span {
        span.fail(error_type(error), error.message.as_str());
    }
}

/// An invocation ended with `finish_reason`, `span` its request's.
pub(super) fn finished(span: Option<&mut Span>, inv: &Invocation, finish_reason: Option<&str>) {
    if inv.span.is_none() {
        return;
    }
    let reasons: Vec<String> = finish_reason.into_iter().map(str::to_owned).collect();
    if let Some(span) = span {
        span.set("gen_ai.response.finish_reasons", reasons);
        if let Some(answer) = &inv.answer {
            span.set("gen_ai.output.messages", answer.messages(finish_reason));
        }
    }
}

/// The span of the request that `conn` (an editor connection, or a kept
/// answer's job) answers: the job's own once it holds it, else the one
/// in the meter of the connection waiting.
pub(super) fn answer_span<'a>(
    kept: &'a mut KeptAnswers,
    requests: &'a mut Requests,
    conn: ConnId,
) -> Option<&'a mut Span> {
    if is_kept(conn) && kept.job_span(conn).is_some_and(|span| span.is_some()) {
        return kept.job_span(conn)?.as_mut();
    }
    let conn = kept.live_conn(conn).unwrap_or(conn);
    requests.span_mut(conn)
}
