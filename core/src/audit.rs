//! The audit trail: one JSON line per event worth keeping (refused
//! credentials, session changes, each request, rate-limit and Host/Origin
//! refusals), for the driver to append to the audit log.
//!
//! Lines never hold a prompt, an answer or a secret: a request is recorded
//! by its route, model, session, status, durations, token counts and the
//! SHA-256 of its prompt, so identical prompts can be told apart from
//! different ones without keeping either.
//!
//! The queue is bounded: a driver that stops draining loses lines (counted
//! in [`Audit::dropped`]), never memory.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::time::rfc3339;

/// Lines held for the driver at most.
pub const MAX_PENDING: usize = 4096;

#[derive(Debug, Default)]
pub struct Audit {
    enabled: bool,
    lines: VecDeque<String>,
    dropped: u64,
}

impl Audit {
    /// A trail that records only when `enabled` (an audit log is
    /// configured): otherwise every call is a no-op.
    pub fn new(enabled: bool) -> Self {
        Audit {
            enabled,
            ..Audit::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Lines lost because the driver did not drain them in time.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records `event` at `wall` with `fields` (an object; anything else
    /// is recorded without fields).
    pub fn record(&mut self, wall: SystemTime, event: &str, fields: Value) {
        if !self.enabled {
            return;
        }
        if self.lines.len() >= MAX_PENDING {
            self.dropped += 1;
            return;
        }
        let mut line = Map::new();
        line.insert("ts".to_owned(), Value::String(rfc3339(wall)));
        line.insert("event".to_owned(), Value::String(event.to_owned()));
        if let Value::Object(fields) = fields {
            line.extend(fields);
        }
        self.lines.push_back(Value::Object(line).to_string());
    }

    /// The next line, left in the queue.
    pub fn peek(&self) -> Option<&str> {
        self.lines.front().map(String::as_str)
    }

    /// The next line to append (no newline).
    pub fn poll(&mut self) -> Option<String> {
        self.lines.pop_front()
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_lines_only_when_enabled_and_bounds_them() {
        let mut off = Audit::new(false);
        off.record(SystemTime::UNIX_EPOCH, "auth_failure", json!({}));
        assert_eq!(off.poll(), None);

        let mut on = Audit::new(true);
        on.record(
            SystemTime::UNIX_EPOCH,
            "auth_failure",
            json!({"route": "/v1/models"}),
        );
        let line: Value = serde_json::from_str(&on.poll().unwrap()).unwrap();
        assert_eq!(
            line,
            json!({"ts": "1970-01-01T00:00:00.000000Z", "event": "auth_failure", "route": "/v1/models"})
        );
        for _ in 0..MAX_PENDING + 3 {
            on.record(SystemTime::UNIX_EPOCH, "x", Value::Null);
        }
        assert_eq!(on.dropped(), 3);
    }

    #[test]
    fn hashes_as_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
