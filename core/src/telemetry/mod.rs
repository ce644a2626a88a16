//! Traces: the spans of what the provider and the bridge did, by the
//! OpenTelemetry data model, for a runtime to export.
//!
//! The core never exports and never reads a clock: a state machine that
//! traces holds a [`Tracer`], starts a [`Span`] when a request arrives
//! (a child of the trace the request carried, see [`SpanContext`]),
//! fills in its attributes as it learns them and finishes it when the
//! answer ends. Finished spans wait in a bounded queue for the driver's
//! `poll_span`; the driver batches them to an OTLP endpoint
//! ([`otlp`] encodes them). A tracer built disabled starts nothing, so
//! tracing off costs one branch per request.

mod context;
pub mod otlp;
mod sampler;
mod span;

pub use context::{SpanContext, SpanId, TraceId};
pub use sampler::Sampler;
pub(crate) use span::prefix;
pub use span::{capped_json, Event, Kind, Span, Value, MAX_VALUE};

use std::collections::VecDeque;
use std::time::{Instant, SystemTime};

/// Finished spans held for the driver at most; more are dropped, counted.
pub const MAX_PENDING: usize = 2048;

/// What a tracer that records decides by and stamps with.
#[derive(Debug)]
struct On {
    sampler: Sampler,
    /// Spans carry content: prompts, answers, tool arguments and results.
    content: bool,
    /// The instant and wall time of one moment, to stamp spans in wall
    /// time from the instants the core is given.
    epoch: (Instant, SystemTime),
}

/// Starts, finishes and queues spans.
#[derive(Debug)]
pub struct Tracer {
    /// `None`: tracing is off.
    on: Option<On>,
    seed: u64,
    drawn: u64,
    finished: VecDeque<Span>,
    dropped: u64,
}

impl Tracer {
    /// A tracer deciding by `sampler`, or one that starts nothing
    /// (`None`). `seed` makes ids differ between runs; `now` and `wall`
    /// are the same moment on the two clocks.
    pub fn new(sampler: Option<Sampler>, seed: u64, now: Instant, wall: SystemTime) -> Self {
        Tracer {
            on: sampler.map(|sampler| On {
                sampler,
                content: false,
                epoch: (now, wall),
            }),
            seed,
            drawn: 0,
            finished: VecDeque::new(),
            dropped: 0,
        }
    }

    /// A tracer that starts nothing.
    pub fn off() -> Self {
        Tracer {
            on: None,
            seed: 0,
            drawn: 0,
            finished: VecDeque::new(),
            dropped: 0,
        }
    }

    /// The tracer, its spans carrying content when `capture` says so:
    /// the prompts and answers of model requests, the arguments and
    /// results of tool calls. The GenAI conventions make that an opt-in
    /// (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`): content is
    /// the user's own data, so it is off unless asked for at start-up.
    pub fn capturing_content(mut self, capture: bool) -> Self {
        if let Some(on) = self.on.as_mut() {
            on.content = capture;
        }
        self
    }

    pub fn enabled(&self) -> bool {
        self.on.is_some()
    }

    /// Whether spans carry content (never for a tracer that is off).
    pub fn captures_content(&self) -> bool {
        self.on.as_ref().is_some_and(|on| on.content)
    }

    /// Starts a span named `name` at `now`: a child of `parent` (from the
    /// request, or a span of this process), or the root of a new trace.
    /// `None` when tracing is off. A span the sampler leaves out is still
    /// returned, unsampled, so its context passes on to what it calls; it
    /// is never exported.
    pub fn start(
        &mut self,
        name: impl Into<String>,
        kind: Kind,
        parent: Option<&SpanContext>,
        now: Instant,
    ) -> Option<Span> {
        self.on.as_ref()?;
        let (trace_id, state) = match parent {
            Some(p) => (p.trace_id, p.state.clone()),
            None => {
                let hi = self.draw();
                let lo = self.draw();
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&hi.to_be_bytes());
                id[8..].copy_from_slice(&lo.to_be_bytes());
                (TraceId(id), None)
            }
        };
        let sampled = self
            .on
            .as_ref()
            .is_some_and(|on| on.sampler.samples(parent, trace_id));
        let span_id = SpanId(self.draw().to_be_bytes());
        Some(Span {
            context: SpanContext {
                trace_id,
                span_id,
                sampled,
                state,
            },
            parent: parent.map(|p| p.span_id),
            name: name.into(),
            kind,
            start: self.wall(now),
            end: self.wall(now),
            attributes: Vec::new(),
            events: Vec::new(),
            error: None,
        })
    }

    /// Ends `span` at `now` and queues it for export (a sampled one; a
    /// full queue drops it, counted).
    pub fn finish(&mut self, mut span: Span, now: Instant) {
        if !span.context.sampled {
            return;
        }
        span.end = self.wall(now).max(span.start);
        if self.finished.len() >= MAX_PENDING {
            self.dropped += 1;
            return;
        }
        self.finished.push_back(span);
    }

    /// Adds an event named `name` at `now` to `span`.
    pub fn event(&self, span: &mut Span, name: &'static str, now: Instant) {
        let time = self.wall(now);
        span.events.push(Event {
            name,
            time,
            attributes: Vec::new(),
        });
    }

    /// The next finished span to export.
    pub fn poll(&mut self) -> Option<Span> {
        self.finished.pop_front()
    }

    /// Spans dropped because the driver did not drain them in time.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn wall(&self, now: Instant) -> SystemTime {
        match &self.on {
            Some(On { epoch, .. }) => epoch.1 + now.saturating_duration_since(epoch.0),
            None => SystemTime::UNIX_EPOCH,
        }
    }

    /// The next random-looking 64 bits (splitmix64 of seed and counter),
    /// never zero (an all-zero id is invalid).
    fn draw(&mut self) -> u64 {
        loop {
            self.drawn += 1;
            let mut z = self.seed ^ self.drawn.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let z = z ^ (z >> 31);
            if z != 0 {
                return z;
            }
        }
    }
}

/// A tracer's seed drawn from `secret`, one way: the ids a tracer makes
/// are a reversible mix of its seed, so a seed must give nothing away.
pub fn seed_from(secret: &[u8]) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"mcp-provider trace ids\0")
        .chain_update(secret)
        .finalize();
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(seed)
}

#[cfg(test)]
mod tests;
