//! Taking a call's answer up again (the 2025-11-25 revision's
//! resumability): a server that answers a post with an event stream may
//! close it before the answer — a proxy's idle timeout, a server that
//! polls — having sent events with ids. Its client waits the `retry:` the
//! stream asked for, then asks for the rest with a `GET` carrying
//! `Last-Event-ID`, a few times at most; a stream with no event id cannot
//! be taken up, and its call fails at once.
//!
//! What is known of one call's stream is a [`Resume`]; a call between two
//! of its streams is a [`Waiting`], started again by
//! [`Upstream::handle_timeout`](super::Upstream::handle_timeout) once due.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::sse::SseReader;
use crate::time::later;

/// The wait before taking a stream up again when it asked for none.
pub const RESUME_WAIT: Duration = Duration::from_secs(1);
/// The longest wait taken, whatever the stream asked for: a call does not
/// sit for minutes on a server's say-so.
pub const RESUME_WAIT_MOST: Duration = Duration::from_secs(10);
/// Streams one call's answer may be asked for again, in all; past them
/// the call fails.
pub const MAX_RESUMES: u32 = 3;

/// What a call's event streams said of taking them up again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    /// The id of the last event received, for `Last-Event-ID`.
    pub last_event: Option<String>,
    /// The wait the stream asked for (`retry:`).
    pub retry: Option<Duration>,
    /// Streams asked for again so far.
    pub attempts: u32,
}

impl Resume {
    /// Takes note of what a stream's reader read, once it ended (what an
    /// earlier stream of the call said stays where this one said nothing).
    pub fn heard(&mut self, reader: &SseReader) {
        if let Some(id) = reader.last_event_id() {
            if self.last_event.as_deref() != Some(id) {
                self.last_event = Some(id.to_owned());
            }
        }
        if reader.retry().is_some() {
            self.retry = reader.retry();
        }
    }

    /// When to ask for the rest, the stream having ended at `now` without
    /// the answer: none when it cannot be (no event id to resume after) or
    /// may not be again (tried [`MAX_RESUMES`] times).
    pub fn due(&self, now: Instant) -> Option<Instant> {
        if self.last_event.is_none() || self.attempts >= MAX_RESUMES {
            return None;
        }
        let wait = self.retry.unwrap_or(RESUME_WAIT).min(RESUME_WAIT_MOST);
        Some(later(now, wait))
    }
}

/// A call whose stream ended without its answer, waiting to ask for the
/// rest.
#[derive(Debug)]
pub struct Waiting {
    pub due: Instant,
    /// The call's JSON-RPC id.
    pub id: Value,
    /// The session it was posted in: the rest is asked for in it.
    pub session: Option<Arc<str>>,
    pub resume: Resume,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_the_streams_within_bounds_and_the_tries_are_counted() {
        let now = Instant::now();
        let mut resume = Resume::default();
        assert_eq!(resume.due(now), None, "no event id: nothing to resume");
        let mut reader = SseReader::new(1024);
        reader.push(b"id: 7\ndata: \n\n", &mut Vec::new()).unwrap();
        resume.heard(&reader);
        assert_eq!(resume.due(now), Some(now + RESUME_WAIT));
        reader.push(b"retry: 250\n\n", &mut Vec::new()).unwrap();
        resume.heard(&reader);
        assert_eq!(resume.due(now), Some(now + Duration::from_millis(250)));
        reader.push(b"retry: 3600000\n\n", &mut Vec::new()).unwrap();
        resume.heard(&reader);
        assert_eq!(resume.due(now), Some(now + RESUME_WAIT_MOST));
        resume.attempts = MAX_RESUMES;
        assert_eq!(resume.due(now), None, "tried enough");
    }
}
