//! A span as OpenTelemetry records it: a named, timed piece of work in a
//! trace, with attributes by the semantic conventions.

use std::time::SystemTime;

use super::{SpanContext, SpanId};

/// Attribute values longer than this are cut (on a character boundary):
/// no attribute may make a span unbounded.
pub const MAX_VALUE: usize = 4096;

/// What side of a call a span is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Internal,
    /// A request this process answers.
    Server,
    /// A request this process makes.
    Client,
}

/// An attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Double(f64),
    Strs(Vec<String>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(bounded(s).to_owned())
    }
}

impl From<String> for Value {
    fn from(mut s: String) -> Self {
        let keep = bounded(&s).len();
        s.truncate(keep);
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Self {
        Value::Strs(v.into_iter().map(|s| bounded(&s).to_owned()).collect())
    }
}

/// A moment worth marking inside a span (the first chunk of an answer).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub name: &'static str,
    pub time: SystemTime,
    pub attributes: Vec<(&'static str, Value)>,
}

/// One span, open while its state machine holds it, exported once
/// finished ([`super::Tracer::finish`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub context: SpanContext,
    /// The span it is a child of, in this process or the caller's.
    pub parent: Option<SpanId>,
    pub name: String,
    pub kind: Kind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, Value)>,
    pub events: Vec<Event>,
    /// Set when the work failed: the status is then ERROR with this
    /// description.
    pub error: Option<String>,
}

impl Span {
    /// Sets attribute `key` (replacing an earlier value of it).
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        let value = value.into();
        match self.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((key, value)),
        }
    }

    /// The attribute `key`, if set.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Marks the span failed: status ERROR with `description`, and
    /// `error.type` set to `kind` (the semantic conventions' low-cardinality
    /// class of the error).
    pub fn fail(&mut self, kind: impl Into<String>, description: impl Into<String>) {
        self.set("error.type", kind.into());
        let mut description = description.into();
        description.truncate(bounded(&description).len());
        self.error = Some(description);
    }
}

/// `value` as JSON text, at most [`MAX_VALUE`] bytes of it: the
/// serializer stops where the cut is, so a large value (a tool's
/// arguments, its result) costs no more than an attribute keeps.
pub fn capped_json(value: &impl serde::Serialize) -> String {
    let mut out = Capped(Vec::new());
    // An error is the cut reached: what was written is the text.
    let _ = serde_json::to_writer(&mut out, value);
    match String::from_utf8(out.0) {
        Ok(text) => text,
        Err(cut) => {
            let valid = cut.utf8_error().valid_up_to();
            let mut bytes = cut.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).unwrap_or_default()
        }
    }
}

/// A writer that takes [`MAX_VALUE`] bytes, then refuses more.
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = MAX_VALUE.saturating_sub(self.0.len()).min(buf.len());
        self.0
            .extend_from_slice(buf.get(..room).unwrap_or_default());
        Ok(room)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `s` cut to at most [`MAX_VALUE`] bytes on a character boundary.
fn bounded(s: &str) -> &str {
    prefix(s, MAX_VALUE)
}

/// The start of `s`, at most `max` bytes, cut on a character boundary.
pub(crate) fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}
