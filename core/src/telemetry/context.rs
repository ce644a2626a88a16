//! W3C Trace Context: the `traceparent` and `tracestate` a request
//! carries in, and passes on, in an HTTP header, an MCP request's
//! `params._meta` (the same two names) or a process's environment
//! (`TRACEPARENT`, `TRACESTATE`).

use std::fmt;

/// A trace's id: 16 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// A span's id: 8 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

/// `tracestate` longer than this is not passed on (the limit the
/// specification asks every vendor to keep).
pub const MAX_STATE: usize = 512;

/// Where a span sits in its trace, as passed between processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The caller recorded it (the `sampled` flag).
    pub sampled: bool,
    /// The `tracestate` that came with it, passed on unchanged.
    pub state: Option<String>,
}

impl SpanContext {
    /// The context of a `traceparent` value and the `tracestate` beside
    /// it; `None` for a `traceparent` that is not valid (then the request
    /// starts a trace of its own, as the specification says). A
    /// `tracestate` that is too long or not printable is left out.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let value = traceparent.trim_matches([' ', '\t']);
        let bytes = value.as_bytes();
        let version = hex_byte(bytes.get(0..2)?)?;
        // Version ff is invalid; a later version may add fields after a
        // `-`, but the first four read the same.
        let exact = version == 0;
        if version == 0xff
            || (exact && bytes.len() != 55)
            || (!exact && bytes.len() > 55 && bytes.get(55) != Some(&b'-'))
            || bytes.get(2) != Some(&b'-')
            || bytes.get(35) != Some(&b'-')
            || bytes.get(52) != Some(&b'-')
        {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, b) in trace_id.iter_mut().enumerate() {
            *b = hex_byte(bytes.get(3 + 2 * i..5 + 2 * i)?)?;
        }
        let mut span_id = [0u8; 8];
        for (i, b) in span_id.iter_mut().enumerate() {
            *b = hex_byte(bytes.get(36 + 2 * i..38 + 2 * i)?)?;
        }
        let flags = hex_byte(bytes.get(53..55)?)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        let state = tracestate
            .map(|s| s.trim_matches([' ', '\t']))
            .filter(|s| {
                !s.is_empty()
                    && s.len() <= MAX_STATE
                    && s.bytes().all(|b| (0x20..0x7f).contains(&b))
            })
            .map(str::to_owned);
        Some(SpanContext {
            trace_id: TraceId(trace_id),
            span_id: SpanId(span_id),
            sampled: flags & 1 == 1,
            state,
        })
    }

    /// The context an MCP request carries in `params._meta` (SEP-414):
    /// its `traceparent` and `tracestate` strings.
    pub fn from_meta(meta: &serde_json::Value) -> Option<Self> {
        let parent = meta.get("traceparent")?.as_str()?;
        Self::parse(parent, meta.get("tracestate").and_then(|v| v.as_str()))
    }

    /// The `traceparent` value naming this span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{:?}-{:?}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }

    /// Puts `traceparent` (and `tracestate`, when there is one) in an MCP
    /// request's `_meta` object, replacing what was there.
    pub fn put_in_meta(&self, meta: &mut serde_json::Map<String, serde_json::Value>) {
        meta.insert("traceparent".to_owned(), self.traceparent().into());
        match &self.state {
            Some(state) => meta.insert("tracestate".to_owned(), state.clone().into()),
            None => meta.remove("tracestate"),
        };
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    match pair {
        [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
        _ => None,
    }
}

/// Lower-case hex, as `traceparent` and OTLP/JSON write ids.
impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
