//! A stateless child's own `subscriptions/listen` at its remote server.
//!
//! In the stateless revision a server has no session to say anything on:
//! what it says of its own (a list changed, a resource updated) reaches
//! only a client that asked for a listen stream. The child of such a
//! server therefore keeps one open itself, asking for what its clients
//! need — each list the server offers, and the resources its clients
//! follow — and hears its notifications as a session child hears its
//! server's. This module decides when that stream is opened, replaced
//! (its filter changed) and opened again (it ended), bounded in every
//! way: one stream per child, at most [`MAX_RESOURCES`] resources in its
//! filter, a doubling wait between streams that end without being
//! acknowledged, and never again once the server said it has no such
//! method. The mux sends what it decides.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::listen::MAX_RESOURCES;
use crate::backoff::Doubling;
use crate::mcp;
use crate::time::later;

/// The waits before opening again a stream that ended: 1 s after the
/// first, doubling up to a minute while none is acknowledged.
const AGAIN: Doubling = Doubling {
    first: Duration::from_secs(1),
    most: Duration::from_secs(60),
};

/// What the mux is to do about the stream now.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan {
    /// Cancel the stream open under this request id.
    pub(crate) cancel: Option<u64>,
    /// Open a stream with this filter (`params.notifications`).
    pub(crate) open: Option<Value>,
}

/// The stream's state.
#[derive(Debug, Default)]
pub(crate) struct Relisten {
    /// The server has no `subscriptions/listen`: it is not asked again.
    refused: bool,
    /// The listen request open now, and the filter it asked for.
    open: Option<(u64, Value)>,
    /// Streams ended in a row without an acknowledgement between.
    failures: u32,
    /// When a stream may be opened again, after one ended.
    again_at: Option<Instant>,
}

impl Relisten {
    /// The filter that hears what a child's clients need of a server
    /// with `capabilities`: the list changes of each list it offers, and
    /// the updates of `followed` resources when it offers resources (the
    /// first [`MAX_RESOURCES`] of them). `None`: nothing to hear.
    pub(crate) fn filter<'a>(
        capabilities: &Value,
        followed: impl Iterator<Item = &'a String>,
    ) -> Option<Value> {
        let mut filter = Map::new();
        for (capability, key) in [
            ("tools", "toolsListChanged"),
            ("prompts", "promptsListChanged"),
            ("resources", "resourcesListChanged"),
        ] {
            if capabilities[capability].is_object() {
                filter.insert(key.into(), Value::Bool(true));
            }
        }
        if capabilities["resources"].is_object() {
            let uris: Vec<&String> = followed.take(MAX_RESOURCES).collect();
            if !uris.is_empty() {
                filter.insert("resourceSubscriptions".into(), json!(uris));
            }
        }
        (!filter.is_empty()).then_some(Value::Object(filter))
    }

    /// What to do now that `wanted` is the filter to hear with: nothing
    /// if the stream open asks for it already, or if a stream may not be
    /// opened yet (the wait after one ended) or ever (refused).
    pub(crate) fn plan(&mut self, wanted: Option<Value>, now: Instant) -> Plan {
        if self.again_at.is_some_and(|at| now < at) || self.refused {
            return Plan::default();
        }
        self.again_at = None;
        if self.open.as_ref().map(|(_, filter)| filter) == wanted.as_ref() {
            return Plan::default();
        }
        Plan {
            cancel: self.open.take().map(|(id, _)| id),
            open: wanted,
        }
    }

    /// The stream was asked for under request `id`, with `filter`.
    pub(crate) fn opened(&mut self, id: u64, filter: Value) {
        self.open = Some((id, filter));
    }

    /// The server acknowledged the stream: the next one that ends is
    /// opened again after the shortest wait.
    pub(crate) fn acknowledged(&mut self) {
        self.failures = 0;
    }

    /// The listen request `id` was answered (the stream ended, or was
    /// refused): opened again after a wait, unless the server has no such
    /// method.
    pub(crate) fn ended(&mut self, id: u64, outcome: Result<&Value, &Value>, now: Instant) {
        if self.open.as_ref().is_none_or(|(open, _)| *open != id) {
            return;
        }
        self.open = None;
        if let Err(error) = outcome {
            if error["code"].as_i64() == Some(mcp::METHOD_NOT_FOUND) {
                tracing::debug!(%error, "the MCP server has no subscriptions/listen: its notifications are not heard");
                self.refused = true;
                return;
            }
        }
        self.failures = self.failures.saturating_add(1);
        self.again_at = Some(later(now, AGAIN.after(self.failures)));
    }

    /// The child stopped: its stream with it (a new child asks again).
    pub(crate) fn closed(&mut self) {
        self.open = None;
        self.again_at = None;
    }

    /// When a stream that ended may be opened again.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.again_at
    }

    /// Whether request `id` is the stream open now.
    #[cfg(test)]
    pub(crate) fn is_open(&self, id: u64) -> bool {
        self.open.as_ref().is_some_and(|(open, _)| *open == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_asks_for_each_list_offered_and_the_resources_followed() {
        let uris: Vec<String> = (0..100).map(|n| format!("file:///{n}")).collect();
        let all = json!({"tools": {}, "prompts": {"listChanged": true}, "resources": {}});
        let filter = Relisten::filter(&all, uris.iter()).unwrap();
        assert_eq!(filter["toolsListChanged"], true);
        assert_eq!(filter["promptsListChanged"], true);
        assert_eq!(filter["resourcesListChanged"], true);
        let followed = filter["resourceSubscriptions"].as_array().unwrap();
        assert_eq!(followed.len(), MAX_RESOURCES);
        let tools = Relisten::filter(&json!({"tools": {}}), uris.iter()).unwrap();
        assert_eq!(tools, json!({"toolsListChanged": true}));
        assert_eq!(Relisten::filter(&json!({"logging": {}}), uris.iter()), None);
    }

    #[test]
    fn a_stream_is_replaced_when_its_filter_changes_and_opened_again_after_a_wait() {
        let t0 = Instant::now();
        let mut r = Relisten::default();
        let tools = json!({"toolsListChanged": true});
        let plan = r.plan(Some(tools.clone()), t0);
        assert_eq!(
            plan,
            Plan {
                cancel: None,
                open: Some(tools.clone())
            }
        );
        r.opened(1, tools.clone());
        assert_eq!(r.plan(Some(tools.clone()), t0), Plan::default());
        let more = json!({"toolsListChanged": true, "resourceSubscriptions": ["a"]});
        let plan = r.plan(Some(more.clone()), t0);
        assert_eq!(
            plan,
            Plan {
                cancel: Some(1),
                open: Some(more.clone())
            }
        );
        r.opened(2, more.clone());
        // An answer to the replaced one changes nothing.
        r.ended(1, Ok(&json!({})), t0);
        assert!(r.is_open(2));
        // The stream ends: not before a second, then twice that.
        r.ended(2, Err(&json!({"code": -32000, "message": "cut"})), t0);
        assert_eq!(r.due(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(r.plan(Some(more.clone()), t0), Plan::default());
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(r.plan(Some(more.clone()), t1).open, Some(more.clone()));
        r.opened(3, more.clone());
        r.ended(3, Ok(&json!({})), t1);
        assert_eq!(r.due(), Some(t1 + Duration::from_secs(2)));
        // Acknowledged, the wait is the first again.
        let t2 = t1 + Duration::from_secs(2);
        r.plan(Some(more.clone()), t2);
        r.opened(4, more.clone());
        r.acknowledged();
        r.ended(4, Ok(&json!({})), t2);
        assert_eq!(r.due(), Some(t2 + Duration::from_secs(1)));
        // Nothing left to hear: the stream is cancelled.
        let t3 = t2 + Duration::from_secs(1);
        r.plan(Some(more.clone()), t3);
        r.opened(5, more);
        assert_eq!(
            r.plan(None, t3),
            Plan {
                cancel: Some(5),
                open: None
            }
        );
    }

    #[test]
    fn a_server_without_listen_is_not_asked_again() {
        let t0 = Instant::now();
        let mut r = Relisten::default();
        let tools = json!({"toolsListChanged": true});
        r.plan(Some(tools.clone()), t0);
        r.opened(1, tools.clone());
        r.ended(
            1,
            Err(&json!({"code": mcp::METHOD_NOT_FOUND, "message": "no"})),
            t0,
        );
        assert_eq!(r.due(), None);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(r.plan(Some(tools), later), Plan::default());
    }
}
