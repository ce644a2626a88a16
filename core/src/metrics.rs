//! What `GET /metrics` reports, in Prometheus' text format: counters and
//! latency histograms by route, kept as plain integers.
//!
//! The provider is their only writer and is always called with `&mut`, so
//! a count is one add and a histogram observation a short scan of fixed
//! buckets: nothing is locked or allocated per chunk. Figures that are
//! state rather than history (open streams, sessions, links) are read off
//! the provider when the page is rendered ([`Gauges`]).

use std::fmt::Write as _;
use std::time::Duration;

use crate::api::routes::{api_label, label, ROUTE_COUNT};
use crate::provider::outcome::Decision;

/// Upper bounds of the latency buckets, in seconds: from a relayed chunk
/// (sub-millisecond) to a long agent turn.
const BOUNDS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

/// A latency histogram over fixed buckets, from a relayed chunk
/// (sub-millisecond) to a long agent turn (five minutes).
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Observations in each bucket alone (not cumulative).
    buckets: [u64; BOUNDS.len()],
    count: u64,
    sum: Duration,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|b| secs <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += d;
    }

    /// `name_bucket`, `name_sum` and `name_count` lines, with `labels`
    /// (`key="value"` pairs, comma-separated) on each.
    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0;
        for (bound, n) in BOUNDS.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum.as_secs_f64());
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Which of a route's histograms a family shows.
type Pick = fn(&RouteMetrics) -> &Histogram;

/// One route's history.
#[derive(Debug, Clone, Default)]
struct RouteMetrics {
    /// Finished requests by status code (few distinct ones per route).
    statuses: Vec<(u16, u64)>,
    /// Request in to response head out.
    first_byte: Histogram,
    /// Request in to the agent's first piece of the answer (model routes).
    first_chunk: Histogram,
    /// Request in to the last byte of the answer.
    duration: Histogram,
}

/// Counters that are not per route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Pieces of answers relayed from agents, in order.
    pub chunks: u64,
    /// Bytes of answer text (content and tool-call arguments) relayed to
    /// editors.
    pub bytes: u64,
    /// Requests refused for a missing or wrong key or token.
    pub auth_failures: u64,
    /// Requests refused for their `Host` or `Origin`.
    pub security_refusals: u64,
    /// Answers cancelled by their id (or a kept answer's asker leaving).
    pub answers_cancelled: u64,
    /// Agents' permission questions, by how they ended
    /// (in the order of `Decision::ALL`).
    pub permission_questions: [u64; Decision::ALL.len()],
}

/// State read off the provider when the page is rendered.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    pub in_flight: usize,
    pub open_streams: usize,
    pub agent_links: usize,
    /// Sessions by state name.
    pub sessions: Vec<(&'static str, usize)>,
    /// Bytes posted to connections and not yet written.
    pub queued_bytes: usize,
    /// Counters kept by the provider for `/health` too.
    pub requests: u64,
    pub invocations: u64,
    pub rate_limited: u64,
    pub timeouts: u64,
    pub cancels: u64,
    pub dropped_agent_messages: u64,
    pub duplicate_chunks: u64,
    /// Audit lines dropped because the writer fell behind.
    pub audit_dropped: u64,
    /// Spans lost before they reached the collector.
    pub spans_dropped: u64,
    /// The Responses API's store: responses kept, their bytes, evictions.
    pub responses_stored: usize,
    pub responses_stored_bytes: usize,
    pub responses_evicted: u64,
    /// Background responses started.
    pub responses_background: u64,
    /// The MCP bridge's figures, when it made any.
    pub bridge: Option<crate::bridge::Report>,
}

/// Every route's history plus the global counters.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Indexed by route ([`crate::api::routes::UNMATCHED`] is the last).
    routes: Vec<RouteMetrics>,
    pub counters: Counters,
}

impl Metrics {
    /// A permission question ended so.
    pub(crate) fn count_question(&mut self, decision: Decision) {
        if let Some(n) = self
            .counters
            .permission_questions
            .get_mut(decision as usize)
        {
            *n += 1;
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            routes: vec![RouteMetrics::default(); ROUTE_COUNT + 1],
            counters: Counters::default(),
        }
    }
}

impl Metrics {
    /// A request on `route` finished with `status` after `took`.
    pub fn finished(&mut self, route: usize, status: u16, took: Duration) {
        let Some(r) = self.routes.get_mut(route) else {
            return;
        };
        match r.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => r.statuses.push((status, 1)),
        }
        r.duration.observe(took);
    }

    /// The response head of a request on `route` went out after `took`.
    pub fn first_byte(&mut self, route: usize, took: Duration) {
        if let Some(r) = self.routes.get_mut(route) {
            r.first_byte.observe(took);
        }
    }

    /// The agent's first piece of an answer on `route` came after `took`.
    pub fn first_chunk(&mut self, route: usize, took: Duration) {
        if let Some(r) = self.routes.get_mut(route) {
            r.first_chunk.observe(took);
        }
    }

    /// Requests finished on `route` with `status`.
    #[cfg(test)]
    pub fn requests(&self, route: usize, status: u16) -> u64 {
        self.routes
            .get(route)
            .and_then(|r| r.statuses.iter().find(|(s, _)| *s == status))
            .map_or(0, |(_, n)| *n)
    }

    /// The page: every family with its `# HELP` and `# TYPE` lines.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let routes = || {
            self.routes.iter().enumerate().map(|(i, r)| {
                let labels = format!("route=\"{}\",api=\"{}\"", label(i), api_label(i));
                (r, labels)
            })
        };
        family(
            &mut out,
            "mcp_provider_requests_total",
            "counter",
            "Requests answered, by route, API and status.",
        );
        for (r, labels) in routes() {
            for (status, n) in &r.statuses {
                let _ = writeln!(
                    out,
                    "mcp_provider_requests_total{{{labels},status=\"{status}\"}} {n}"
                );
            }
        }
        let histograms: [(&str, &str, Pick); 3] = [
            (
                "mcp_provider_time_to_first_byte_seconds",
                "Request received to response head sent.",
                |r| &r.first_byte,
            ),
            (
                "mcp_provider_first_chunk_seconds",
                "Model request received to the agent's first piece of the answer.",
                |r| &r.first_chunk,
            ),
            (
                "mcp_provider_request_duration_seconds",
                "Request received to its answer's last byte.",
                |r| &r.duration,
            ),
        ];
        for (name, help, pick) in histograms {
            family(&mut out, name, "histogram", help);
            for (r, labels) in routes() {
                let h = pick(r);
                if h.count > 0 {
                    h.render(name, &labels, &mut out);
                }
            }
        }
        let c = &self.counters;
        let g = gauges;
        let (counter, gauge) = ("counter", "gauge");
        #[rustfmt::skip]
        let singles: [(&str, &str, &str, u64); 22] = [
            ("mcp_provider_chunks_streamed_total", counter, "Pieces of answers relayed from agents.", c.chunks),
            ("mcp_provider_bytes_streamed_total", counter, "Bytes of answer text (content and tool-call arguments) relayed to editors.", c.bytes),
            ("mcp_provider_invocations_total", counter, "Model requests sent to agents.", g.invocations),
            ("mcp_provider_rate_limited_total", counter, "Requests refused with 429.", g.rate_limited),
            ("mcp_provider_timeouts_total", counter, "Answers ended by a timeout.", g.timeouts),
            ("mcp_provider_cancels_total", counter, "Cancels sent to agents.", g.cancels),
            ("mcp_provider_dropped_agent_messages_total", counter, "Agent messages for no waiting request.", g.dropped_agent_messages),
            ("mcp_provider_duplicate_chunks_total", counter, "Chunks an agent sent twice.", g.duplicate_chunks),
            ("mcp_provider_auth_failures_total", counter, "Requests refused for a missing or wrong key or token.", c.auth_failures),
            ("mcp_provider_security_refusals_total", counter, "Requests refused for their Host or Origin.", c.security_refusals),
            ("mcp_provider_audit_dropped_total", counter, "Audit lines dropped because the log writer fell behind.", g.audit_dropped),
            ("mcp_provider_otel_spans_dropped_total", counter, "Spans dropped before they reached the OpenTelemetry collector (its queue full, the collector down or slow).", g.spans_dropped),
            ("mcp_provider_http_requests_received_total", counter, "Requests received, answered or not yet.", g.requests),
            ("mcp_provider_in_flight", gauge, "Model requests waiting for or receiving an answer.", g.in_flight as u64),
            ("mcp_provider_open_streams", gauge, "Streamed answers in progress.", g.open_streams as u64),
            ("mcp_provider_agent_links", gauge, "Agents connected.", g.agent_links as u64),
            ("mcp_provider_queued_bytes", gauge, "Bytes posted to connections and not yet written.", g.queued_bytes as u64),
            ("mcp_provider_responses_stored", gauge, "Responses kept in the Responses API's store.", g.responses_stored as u64),
            ("mcp_provider_responses_stored_bytes", gauge, "Bytes the Responses API's store holds.", g.responses_stored_bytes as u64),
            ("mcp_provider_responses_evicted_total", counter, "Stored responses evicted to keep within the store's caps.", g.responses_evicted),
            ("mcp_provider_responses_background_total", counter, "Background responses started.", g.responses_background),
            ("mcp_provider_answers_cancelled_total", counter, "Answers cancelled by their id, or because the asker of a stored one left.", c.answers_cancelled),
        ];
        for (name, kind, help, value) in singles {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        family(
            &mut out,
            "mcp_provider_sessions",
            "gauge",
            "Agent sessions by state.",
        );
        for (state, n) in &g.sessions {
            let _ = writeln!(out, "mcp_provider_sessions{{state=\"{state}\"}} {n}");
        }
        family(
            &mut out,
            "mcp_provider_permission_questions_total",
            "counter",
            "Agents' permission questions put to the user, by how they ended.",
        );
        for (decision, n) in Decision::ALL.iter().zip(c.permission_questions) {
            let name = decision.as_str();
            let _ = writeln!(
                out,
                "mcp_provider_permission_questions_total{{decision=\"{name}\"}} {n}"
            );
        }
        if let Some(bridge) = &g.bridge {
            bridge.render(&mut out);
        }
        out
    }
}

/// A family's `# HELP` and `# TYPE` lines.
pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_the_count() {
        let mut h = Histogram::default();
        for ms in [0, 3, 3, 700, 400_000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut out = String::new();
        h.render("x", "route=\"/\"", &mut out);
        assert!(out.contains("x_bucket{route=\"/\",le=\"0.0005\"} 1\n"));
        assert!(out.contains("x_bucket{route=\"/\",le=\"0.005\"} 3\n"));
        assert!(out.contains("x_bucket{route=\"/\",le=\"1\"} 4\n"));
        assert!(out.contains("x_bucket{route=\"/\",le=\"300\"} 4\n"));
        assert!(out.contains("x_bucket{route=\"/\",le=\"+Inf\"} 5\n"));
        assert!(out.contains("x_count{route=\"/\"} 5\n"));
        assert!(out.contains("x_sum{route=\"/\"} 400.706\n"));
    }

    #[test]
    fn requests_are_counted_by_route_and_status() {
        let mut m = Metrics::default();
        let (route, _) = (0, ());
        m.finished(route, 200, Duration::from_millis(1));
        m.finished(route, 200, Duration::from_millis(1));
        m.finished(route, 401, Duration::ZERO);
        assert_eq!((m.requests(route, 200), m.requests(route, 401)), (2, 1));
        let page = m.render(&Gauges::default());
        assert!(page.contains(
            "mcp_provider_requests_total{route=\"/v1/chat/completions\",api=\"openai\",status=\"200\"} 2\n"
        ));
        assert!(page.contains("# TYPE mcp_provider_request_duration_seconds histogram\n"));
        assert!(page.contains("mcp_provider_request_duration_seconds_count{route=\"/v1/chat/completions\",api=\"openai\"} 3\n"));
    }
}
