//! Conversation continuity: a chat that continues one a CLI answered
//! earlier resumes that CLI's own session, which keeps what the CLI did
//! (files it read, tools it ran), instead of starting over from a flattened
//! transcript.
//!
//! A conversation is recognised by its messages: when a CLI answers
//! messages `M` with text `R`, the key of `M` followed by the assistant
//! message `R` is remembered with the CLI's session id. A later request
//! whose messages are exactly that, plus a new user message, continues it.
//! Keys are SHA-256 digests of a canonical form (role, text, tool calls),
//! so a request's messages are never stored.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::agent::echo::text_of;
use crate::time::later;

pub type Key = [u8; 32];

/// A CLI session to resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub session: String,
    /// The token totals the CLI reported for the session so far (codex
    /// reports a resumed session's running total, not the turn's).
    pub usage_total: Option<(u64, u64)>,
}

/// Remembered conversations, at most `cap`, each for `ttl`.
pub struct Conversations {
    entries: HashMap<Key, (Conversation, Instant)>,
    /// Keys in the order they were remembered, for eviction.
    order: VecDeque<Key>,
    cap: usize,
    ttl: Duration,
}

impl Conversations {
    pub fn new(cap: usize, ttl: Duration) -> Self {
        Conversations {
            entries: HashMap::new(),
            order: VecDeque::new(),
            cap,
            ttl,
        }
    }

    /// The conversation `key` continues, if remembered and not expired. It
    /// is forgotten: its continuation is remembered under a new key once
    /// answered (and a second continuation of the same point — an editor
    /// regenerating an answer — starts afresh rather than after the first).
    pub fn take(&mut self, key: &Key, now: Instant) -> Option<Conversation> {
        let (conversation, expires) = self.entries.remove(key)?;
        (expires > now).then_some(conversation)
    }

    pub fn remember(&mut self, key: Key, conversation: Conversation, now: Instant) {
        if self.cap == 0 {
            return;
        }
        while self.entries.len() >= self.cap {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        // Keys already taken linger in `order`; it never grows past twice
        // the cap (what leaves its front is forgotten, if it was not yet).
        while self.order.len() >= self.cap * 2 {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
        self.order.push_back(key);
        self.entries
            .insert(key, (conversation, later(now, self.ttl)));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The canonical form of messages, hashed as it is written: a digest can be
/// continued with the assistant's answer as it streams.
#[derive(Clone, Default)]
pub struct Transcript(Sha256);

impl Transcript {
    pub fn of(messages: &[Value]) -> Self {
        let mut t = Transcript::default();
        for message in messages {
            t.message(message);
        }
        t
    }

    fn message(&mut self, message: &Value) {
        let role = message["role"].as_str().unwrap_or_default();
        self.open(role);
        self.text(&text_of(&message["content"]));
        let calls = match &message["tool_calls"] {
            Value::Array(calls) if !calls.is_empty() => {
                serde_json::to_string(calls).unwrap_or_default()
            }
            _ => String::new(),
        };
        self.close_with(&calls);
    }

    /// Starts a message of `role`; its text follows.
    pub fn open(&mut self, role: &str) {
        self.0.update(role.as_bytes());
        self.0.update([0]);
    }

    pub fn text(&mut self, text: &str) {
        self.0.update(text.as_bytes());
    }

    /// Ends a message with no tool calls: the key of everything so far.
    pub fn close(mut self) -> Key {
        self.close_with("");
        self.0.finalize().into()
    }

    fn close_with(&mut self, calls: &str) {
        self.0.update([0]);
        self.0.update(calls.as_bytes());
        self.0.update([0x1e]);
    }

    /// The key of the messages so far.
    pub fn key(self) -> Key {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_answer_hashed_as_it_streams_matches_the_editor_sending_it_back() {
        let first = [
            json!({"role": "system", "content": "Be brief."}),
            json!({"role": "user", "content": "Hi"}),
        ];
        let mut streaming = Transcript::of(&first);
        streaming.open("assistant");
        streaming.text("Hel");
        streaming.text("lo!");
        let answered = streaming.close();

        let next = [
            first[0].clone(),
            first[1].clone(),
            json!({"role": "assistant", "content": [{"type": "text", "text": "Hello!"}], "tool_calls": []}),
        ];
        assert_eq!(Transcript::of(&next).key(), answered);
        let edited = [
            first[0].clone(),
            first[1].clone(),
            json!({"role": "assistant", "content": "Hello"}),
        ];
        assert_ne!(Transcript::of(&edited).key(), answered);
    }

    #[test]
    fn remembered_once_bounded_and_expiring() {
        let now = Instant::now();
        let mut c = Conversations::new(2, Duration::from_secs(60));
        let conv = |s: &str| Conversation {
            session: s.into(),
            usage_total: None,
        };
        c.remember([1; 32], conv("a"), now);
        c.remember([2; 32], conv("b"), now);
        c.remember([3; 32], conv("c"), now);
        assert_eq!(c.len(), 2);
        assert_eq!(c.take(&[1; 32], now), None);
        assert_eq!(c.take(&[2; 32], now), Some(conv("b")));
        assert_eq!(c.take(&[2; 32], now), None);
        assert_eq!(c.take(&[3; 32], now + Duration::from_secs(61)), None);
        for i in 0..100 {
            c.remember([i; 32], conv("x"), now);
        }
        assert!(c.len() <= 2 && c.order.len() <= 4);
    }
}
