//! Traces leaving the process: the finished spans of the provider and of
//! the MCP bridge, sent to an OTLP/HTTP collector by the [`Exporter`]'s
//! thread, the same under every runtime.
//!
//! [`Traces`] is the one place a driver hands spans over: the hub's
//! switchboard hands it the provider's after each call into it (its span
//! sink), the bridge its own after each
//! of its steps, and the spans lost on the way (a full queue, a failed
//! export, a tracer not drained in time) reach the provider's
//! `/metrics`. With no endpoint configured there is no `Traces`: no
//! thread, no tracer, nothing paid.

mod exporter;
mod settings;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mcp_provider_core::gateway::Bridge;
use mcp_provider_core::telemetry::{Sampler, Span, Tracer};
use mcp_provider_core::Provider;

pub use exporter::Exporter;
pub use settings::{
    check_header, parse_headers, traces_url, BadHeader, BadHeaders, Settings, TRACES_PATH,
};

/// The longest the last flush on shutdown may take.
pub const LAST_FLUSH: Duration = Duration::from_secs(2);

/// The exporter, and the count of lost spans the provider has been told.
pub struct Traces {
    exporter: Exporter,
    sampler: Sampler,
    capture_content: bool,
    /// Spans the bridge's tracer dropped, as last read under its lock.
    bridge_dropped: AtomicU64,
    /// Lost spans already handed to the provider.
    reported: AtomicU64,
}

impl Traces {
    /// Starts exporting with `settings`.
    pub fn start(settings: Settings) -> std::io::Result<Arc<Traces>> {
        let sampler = settings.sampler.clone();
        let capture_content = settings.capture_content;
        Ok(Arc::new(Traces {
            exporter: Exporter::start(settings)?,
            sampler,
            capture_content,
            bridge_dropped: AtomicU64::new(0),
            reported: AtomicU64::new(0),
        }))
    }

    /// The sampler the provider's and the bridge's tracers decide by.
    pub fn sampler(&self) -> Sampler {
        self.sampler.clone()
    }

    /// Whether spans carry content (prompts, answers, tool arguments and
    /// results), for the provider's tracer as for the bridge's.
    pub fn captures_content(&self) -> bool {
        self.capture_content
    }

    /// A tracer for the bridge, its ids drawn from `seed`.
    pub fn tracer(&self, seed: u64) -> Tracer {
        Tracer::new(
            Some(self.sampler()),
            seed,
            Instant::now(),
            SystemTime::now(),
        )
        .capturing_content(self.capture_content)
    }

    /// Tells the provider of spans lost since it was last told; called
    /// under the hub's lock, before each call into the provider, so
    /// `/metrics` is current.
    pub fn report_dropped(&self, provider: &mut Provider) {
        let lost = self
            .exporter
            .dropped()
            .saturating_add(self.bridge_dropped.load(Ordering::Relaxed));
        let told = self.reported.swap(lost, Ordering::Relaxed);
        if lost > told {
            provider.handle_spans_dropped(lost - told);
        }
    }

    /// Queues a finished span for export (never waits).
    pub fn send(&self, span: Span) {
        self.exporter.send(span);
    }

    /// Hands the bridge's finished spans to the exporter, and notes how
    /// many its tracer dropped.
    pub fn drain_bridge(&self, bridge: &mut Bridge) {
        while let Some(span) = bridge.poll_span() {
            self.exporter.send(span);
        }
        self.bridge_dropped
            .store(bridge.spans_dropped(), Ordering::Relaxed);
    }

    /// On shutdown: sends what is queued, within [`LAST_FLUSH`].
    pub fn flush(&self) {
        self.exporter.flush(LAST_FLUSH);
    }
}
