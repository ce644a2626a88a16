//! `execute_tool` spans: in agent mode an answer hands the editor the
//! calls of its tools the agent made, and the editor runs them and sends
//! their results in its next request. Each call is a span, a child of the
//! answer's `invoke_agent` span, from when the answer handed it over
//! until its result (matched by the call's id) arrives.
//!
//! The provider tracks them, not the agents: it sees both ends (the
//! answer's tool calls, the next request's tool results) the same way for
//! every kind of agent. They are bounded: at most [`MAX_OPEN`] wait at
//! once, the oldest ending `abandoned` to make room for a new one, and one
//! whose result has not come within [`TOOL_WAIT`] ends `timeout` (the
//! editor went on without it, or never ran it).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::agent::message::Delta;
use crate::answer::delta_index;
use crate::telemetry::{Kind, Span, SpanContext, Tracer};
use crate::time::later;

/// Calls waiting for their results, at most.
pub(super) const MAX_OPEN: usize = 1024;

/// How long a call waits for its result: as long as `agent exec` keeps a
/// run waiting for the editor's results by default.
pub(super) const TOOL_WAIT: Duration = Duration::from_secs(300);

/// A tool call an answer makes, as its deltas name it (the first delta of
/// a call has its id and name, the later ones its arguments).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Called {
    index: u64,
    id: String,
    name: String,
}

/// Notes the ids and names of the calls in `delta` into `called`, one
/// entry per call index. The answer's tally has already bounded how many
/// calls and how many bytes of them there are.
pub(super) fn note_calls(called: &mut Vec<Called>, delta: &Delta) {
    let Some(calls) = &delta.tool_calls else {
        return;
    };
    for (position, call) in calls.iter().enumerate() {
        let index = delta_index(call, position);
        let id = call.get("id").and_then(Value::as_str);
        let name = call
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str);
        if id.is_none() && name.is_none() {
            continue;
        }
        let at = match called.iter().position(|c| c.index == index) {
            Some(at) => at,
            None => {
                called.push(Called {
                    index,
                    ..Called::default()
                });
                called.len() - 1
            }
        };
        if let Some(entry) = called.get_mut(at) {
            if let Some(id) = id {
                id.clone_into(&mut entry.id);
            }
            if let Some(name) = name {
                name.clone_into(&mut entry.name);
            }
        }
    }
}

/// One call waiting for its result.
#[derive(Debug)]
struct Waiting {
    id: String,
    span: Span,
    until: Instant,
}

/// The calls waiting for their results, oldest first.
#[derive(Debug, Default)]
pub(super) struct ToolSpans {
    open: VecDeque<Waiting>,
}

impl ToolSpans {
    /// An answer, its agent's span `parent`, handed the editor `calls` at
    /// `now`: a span starts for each (a call without an id, which no result
    /// can name, gets none).
    pub(super) fn open(
        &mut self,
        tracer: &mut Tracer,
        parent: &SpanContext,
        calls: &[Called],
        now: Instant,
    ) {
        for call in calls.iter().filter(|c| !c.id.is_empty()) {
            let name = format!("execute_tool {}", call.name);
            let Some(mut span) = tracer.start(name, Kind::Internal, Some(parent), now) else {
                return;
            };
            span.set("gen_ai.operation.name", "execute_tool");
            span.set("gen_ai.tool.name", call.name.as_str());
            span.set("gen_ai.tool.call.id", call.id.as_str());
            // An id given again (an agent that reuses them) ends the call
            // that had it: its result can no longer be told apart.
            if let Some(at) = self.open.iter().position(|w| w.id == call.id) {
                if let Some(old) = self.open.remove(at) {
                    end(tracer, old.span, Some("abandoned"), now);
                }
            }
            if self.open.len() >= MAX_OPEN {
                if let Some(oldest) = self.open.pop_front() {
                    end(tracer, oldest.span, Some("abandoned"), now);
                }
            }
            self.open.push_back(Waiting {
                id: call.id.clone(),
                span,
                until: later(now, TOOL_WAIT),
            });
        }
    }

    /// A request arrived at `now` with this payload (in chat shape): the
    /// calls its tool results answer end.
    pub(super) fn answered(&mut self, tracer: &mut Tracer, payload: &Value, now: Instant) {
        if self.open.is_empty() {
            return;
        }
        let messages = payload["messages"].as_array().map(Vec::as_slice);
        let results = messages
            .unwrap_or_default()
            .iter()
            .filter(|m| m["role"] == "tool")
            .filter_map(|m| m["tool_call_id"].as_str());
        for id in results {
            if let Some(at) = self.open.iter().position(|w| w.id == id) {
                if let Some(done) = self.open.remove(at) {
                    end(tracer, done.span, None, now);
                }
            }
        }
    }

    /// Ends, as `timeout`, the calls whose results did not come in time.
    pub(super) fn expire(&mut self, tracer: &mut Tracer, now: Instant) {
        while self.open.front().is_some_and(|w| w.until <= now) {
            if let Some(late) = self.open.pop_front() {
                end(tracer, late.span, Some("timeout"), now);
            }
        }
    }

    /// When the oldest call's wait runs out.
    pub(super) fn due(&self) -> Option<Instant> {
        self.open.front().map(|w| w.until)
    }
}

/// Finishes a call's span, failed with `error` when its result never came.
fn end(tracer: &mut Tracer, mut span: Span, error: Option<&str>, now: Instant) {
    if let Some(error) = error {
        span.fail(error, format!("no result came for the tool call ({error})"));
    }
    tracer.finish(span, now);
}
