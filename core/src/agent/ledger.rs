//! The invocations an agent that runs processes has in flight: those
//! waiting for a place to run ([`Waiting`]), and the answers being
//! streamed ([`Answer`]). `agent exec` and `agent acp` keep theirs here, so
//! both refuse, time out and number an answer's chunks the same way.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::{json, Value};

use crate::agent::exec::tools::{self, Given};
use crate::tokens::tokens_for_chars;

/// An invocation that may wait for a place to run.
pub trait Invocation {
    /// The provider's id for it.
    fn invoke(&self) -> &str;
    /// When it fails as timed out.
    fn deadline(&self) -> Instant;
}

/// Invocations waiting for a place to run, oldest first: at most a bound
/// of them, more refused as busy.
pub struct Waiting<R> {
    requests: VecDeque<R>,
    max: usize,
}

impl<R: Invocation> Waiting<R> {
    /// At most `max` wait.
    pub fn new(max: usize) -> Self {
        Waiting {
            requests: VecDeque::new(),
            max,
        }
    }

    /// How many wait.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Whether another may wait.
    pub fn has_room(&self) -> bool {
        self.requests.len() < self.max
    }

    /// Queues `request`; past the bound it is refused as busy into `ready`
    /// instead, `busy` saying (from how many wait) what is busy. False
    /// when refused.
    pub fn push(
        &mut self,
        request: R,
        busy: impl FnOnce(usize) -> String,
        ready: &mut VecDeque<String>,
    ) -> bool {
        if !self.has_room() {
            let message = busy(self.requests.len());
            ready.push_back(error_frame(request.invoke(), &message, "busy"));
            return false;
        }
        self.requests.push_back(request);
        true
    }

    /// The oldest.
    pub fn pop(&mut self) -> Option<R> {
        self.requests.pop_front()
    }

    /// All of them, oldest first, none left waiting.
    pub fn take(&mut self) -> VecDeque<R> {
        std::mem::take(&mut self.requests)
    }

    /// Drops the request for `invoke`: its editor is gone.
    pub fn cancel(&mut self, invoke: &str) {
        self.requests.retain(|r| r.invoke() != invoke);
    }

    /// Those past their deadline at `now` fail as timed out (`message`)
    /// into `ready`.
    pub fn expire(&mut self, now: Instant, message: &str, ready: &mut VecDeque<String>) {
        self.requests.retain(|r| {
            let late = r.deadline() <= now;
            if late {
                ready.push_back(error_frame(r.invoke(), message, "timeout"));
            }
            !late
        });
    }

    /// Their deadlines.
    pub fn deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.requests.iter().map(R::deadline)
    }
}

/// An answer being streamed: its chunks' numbering and what it counts for
/// its usage.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// The next chunk's index.
    index: u64,
    prompt_tokens: u64,
    /// Characters of text and calls sent, for a usage estimate.
    completion_chars: u64,
}

impl Answer {
    /// An answer not begun, to a prompt of `prompt_tokens`.
    pub fn new(prompt_tokens: u64) -> Self {
        Answer {
            index: 0,
            prompt_tokens,
            completion_chars: 0,
        }
    }

    /// Whether a chunk of it went.
    pub fn begun(&self) -> bool {
        self.index > 0
    }

    /// The next chunk of invocation `invoke`'s answer: `delta` (the role
    /// with it on the first), `finish` and `usage` on the last.
    pub fn chunk(
        &mut self,
        invoke: &str,
        mut delta: Value,
        finish: Option<&str>,
        usage: Option<(u64, u64)>,
    ) -> String {
        if self.index == 0 {
            delta["role"] = json!("assistant");
        }
        let mut frame = json!({"type": "model_stream_chunk", "id": invoke,
                               "chunk_index": self.index, "delta": delta, "finish_reason": finish});
        if let Some((prompt, completion)) = usage {
            frame["usage"] = json!({"prompt_tokens": prompt, "completion_tokens": completion});
        }
        self.index += 1;
        frame.to_string()
    }

    /// A piece of its text, as the next chunk.
    pub fn text(&mut self, invoke: &str, text: &str) -> String {
        self.completion_chars += text.chars().count() as u64;
        self.chunk(invoke, json!({"content": text}), None, None)
    }

    /// The calls of the editor's tools `given`, as the next chunk.
    pub fn calls(&mut self, invoke: &str, given: &[Given]) -> String {
        self.completion_chars += given
            .iter()
            .map(|g| g.arguments.to_string().len() as u64)
            .sum::<u64>();
        let delta = json!({"tool_calls": tools::calls_delta(given)});
        self.chunk(invoke, delta, None, None)
    }

    /// Its last chunk, ending with `finish`, with `usage` (else
    /// [`Answer::estimated`]).
    pub fn end(&mut self, invoke: &str, finish: &str, usage: Option<(u64, u64)>) -> String {
        let usage = usage.unwrap_or_else(|| self.estimated());
        self.chunk(invoke, json!({"content": ""}), Some(finish), Some(usage))
    }

    /// Its usage as estimated: the prompt's tokens, and the tokens of
    /// what was sent.
    pub fn estimated(&self) -> (u64, u64) {
        (self.prompt_tokens, tokens_for_chars(self.completion_chars))
    }
}

/// An `error` frame ending invocation `invoke`.
pub fn error_frame(invoke: &str, message: &str, code: &str) -> String {
    json!({"type": "error", "id": invoke, "error": {"message": message, "code": code}}).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    struct Asked(&'static str, Instant);

    impl Invocation for Asked {
        fn invoke(&self) -> &str {
            self.0
        }

        fn deadline(&self) -> Instant {
            self.1
        }
    }

    fn frames(ready: &mut VecDeque<String>) -> Vec<Value> {
        ready
            .drain(..)
            .map(|f| serde_json::from_str(&f).unwrap())
            .collect()
    }

    #[test]
    fn past_its_bound_a_request_is_refused_and_late_ones_time_out() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        let mut ready = VecDeque::new();
        let mut waiting = Waiting::new(2);
        assert!(waiting.push(Asked("a", now), |_| unreachable!(), &mut ready));
        assert!(waiting.push(Asked("b", later), |_| unreachable!(), &mut ready));
        assert!(!waiting.has_room());
        let busy = |n| format!("{n} waiting");
        assert!(!waiting.push(Asked("c", later), busy, &mut ready));
        let refused = frames(&mut ready);
        assert_eq!(refused[0]["id"], "c");
        assert_eq!(
            refused[0]["error"],
            json!({"message": "2 waiting", "code": "busy"})
        );
        assert_eq!(waiting.deadlines().min(), Some(now));
        waiting.expire(now, "too slow", &mut ready);
        let late = frames(&mut ready);
        assert_eq!((late.len(), &late[0]["id"]), (1, &json!("a")));
        assert_eq!(late[0]["error"]["code"], "timeout");
        waiting.cancel("b");
        assert!(waiting.is_empty() && waiting.pop().is_none());
    }

    #[test]
    fn an_answer_numbers_its_chunks_and_estimates_its_usage() {
        let mut answer = Answer::new(7);
        assert!(!answer.begun());
        let first: Value = serde_json::from_str(&answer.text("inv-1", "héllo")).unwrap();
        assert_eq!(first["chunk_index"], 0);
        assert_eq!(
            first["delta"],
            json!({"role": "assistant", "content": "héllo"})
        );
        assert_eq!(first["finish_reason"], Value::Null);
        assert!(answer.begun());
        let last: Value = serde_json::from_str(&answer.end("inv-1", "stop", None)).unwrap();
        assert_eq!(last["chunk_index"], 1);
        assert_eq!(last["delta"], json!({"content": ""}));
        assert_eq!(last["finish_reason"], "stop");
        let (prompt, completion) = answer.estimated();
        assert_eq!(prompt, 7);
        assert_eq!(last["usage"]["completion_tokens"], completion);
        let told: Value =
            serde_json::from_str(&Answer::new(1).end("inv-2", "length", Some((3, 4)))).unwrap();
        assert_eq!(
            told["usage"],
            json!({"prompt_tokens": 3, "completion_tokens": 4})
        );
        assert_eq!(told["delta"]["role"], "assistant");
    }
}
