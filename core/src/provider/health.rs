//! Views of the provider's state: the gauges of `/metrics`, the checks of
//! `/health/deep`, and the answers in flight for `/control/streams`.

use serde_json::{json, Value};

use super::Provider;
use crate::metrics::Gauges;
use crate::session::Status;

const STATES: [Status; 5] = [
    Status::Active,
    Status::Pending,
    Status::Suspended,
    Status::Expired,
    Status::Revoked,
];

impl Provider {
    /// Sessions by state name, every state listed.
    fn sessions_by_state(&self) -> Vec<(&'static str, usize)> {
        STATES
            .iter()
            .map(|state| {
                let n = self.sessions.iter().filter(|s| s.status == *state).count();
                (state.as_str(), n)
            })
            .collect()
    }

    pub(super) fn gauges(&self) -> Gauges {
        let s = self.stats;
        Gauges {
            in_flight: self.invocations.len(),
            open_streams: self.invocations.values().filter(|i| i.view().2).count(),
            agent_links: self.links.len(),
            sessions: self.sessions_by_state(),
            queued_bytes: self.queued,
            requests: s.requests,
            invocations: s.invocations,
            rate_limited: s.rate_limited,
            timeouts: s.timeouts,
            cancels: s.cancels,
            dropped_agent_messages: s.dropped_messages,
            duplicate_chunks: s.duplicate_chunks,
            audit_dropped: self.audit.dropped(),
            spans_dropped: self.spans_dropped.saturating_add(self.tracer.dropped()),
            responses_stored: self.kept.store.len(),
            responses_stored_bytes: self.kept.store.bytes(),
            responses_evicted: self.kept.store.evictions(),
            responses_background: self.kept.background_total,
            bridge: self.bridge.clone(),
        }
    }

    /// Every configured piece checked: whether all are up, and the body.
    pub(super) fn deep_health(&self) -> (bool, Value) {
        let mut checks = Vec::new();
        for name in &self.config.expected_agents {
            let link = self.attached.iter().find(|(_, n)| *n == name);
            let session = link
                .and_then(|(conn, _)| self.links.get(conn))
                .and_then(|link| link.session.as_deref())
                .and_then(|id| self.sessions.get(id));
            let (ok, detail) = match (link, session) {
                (None, _) => (false, "not connected".to_owned()),
                (Some(_), None) => (false, "connected, not registered".to_owned()),
                (Some(_), Some(s)) => (
                    s.status == Status::Active,
                    format!(
                        "session {} serving {}",
                        s.status.as_str(),
                        s.models.join(", ")
                    ),
                ),
            };
            checks.push(json!({"name": name, "ok": ok, "detail": detail}));
        }
        let queued_ok = self.queued <= self.config.max_queued_bytes;
        checks.push(json!({
            "name": "output queue",
            "ok": queued_ok,
            "detail": format!("{} of {} bytes waiting for readers", self.queued, self.config.max_queued_bytes),
        }));
        checks.push(json!({
            "name": "sessions",
            // At the cap there is still room while a dropped session can
            // be freed for a new agent.
            "ok": self.sessions.len() < self.config.max_sessions
                || self.sessions.reclaimable().is_some(),
            "detail": format!("{} of {} sessions", self.sessions.len(), self.config.max_sessions),
        }));
        if let Some(bridge) = &self.bridge {
            checks.extend(bridge.checks());
        }
        checks.push(json!({
            "name": "accepting requests",
            "ok": !self.shutting_down,
            "detail": if self.shutting_down { "shutting down" } else { "yes" },
        }));
        let healthy = checks.iter().all(|c| c["ok"] == true);
        let sessions: serde_json::Map<String, Value> = self
            .sessions_by_state()
            .into_iter()
            .map(|(state, n)| (state.to_owned(), Value::from(n)))
            .collect();
        let body = json!({
            "status": if healthy { "ok" } else { "degraded" },
            "checks": checks,
            "agents": self.links.len(),
            "sessions": sessions,
            "in_flight": self.invocations.len(),
            "limits": {
                "max_sessions": self.config.max_sessions,
                "max_output_bytes": self.config.max_output_bytes,
                "max_queued_bytes": self.config.max_queued_bytes,
                "queued_bytes": self.queued,
                "requests_per_minute": self.config.requests_per_minute,
                "tokens_per_minute": self.config.tokens_per_minute,
            },
        });
        (healthy, body)
    }
}
