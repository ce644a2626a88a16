//! `subscriptions/listen`: the stateless revision's one way for a client
//! to hear of changes. There is no session to carry notifications, so a
//! client asks for a stream and says which ones it wants (its filter); the
//! stream opens with `notifications/subscriptions/acknowledged` (what is
//! honoured) and carries only what was asked for, each tagged with the
//! listen request's id as its subscription id. The stream ends when the
//! client closes it.
//!
//! Behind the bridge a listener is a client of the server's child like a
//! session's (the child's list changes reach every client, a resource's
//! updates its subscribers), and this module says what of that its stream
//! carries; the registry holds the listeners and their streams.

use serde_json::{json, Map, Value};

use crate::mcp;
use crate::provider::RequestId;

/// Where the subscription id goes in each notification's `_meta`.
pub(crate) const SUBSCRIPTION_ID_META: &str = "io.modelcontextprotocol/subscriptionId";

/// Listen streams open at once, over every server: each is a client of a
/// child, held for as long as its connection lasts.
pub(crate) const MAX_LISTENERS: usize = 256;

/// Resources one stream may follow (each a subscription at its server).
pub(crate) const MAX_RESOURCES: usize = 64;

/// The notifications a listen stream asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    tools: bool,
    prompts: bool,
    resources: bool,
    /// The resources whose `notifications/resources/updated` it wants.
    uris: Vec<String>,
}

impl Filter {
    /// The filter of a listen request's `params.notifications`: an object
    /// of flags and URIs, anything else refused (`-32602`) with why.
    pub(crate) fn parse(params: &Value) -> Result<Filter, String> {
        let Some(asked) = params.get("notifications").and_then(Value::as_object) else {
            return Err("subscriptions/listen needs params.notifications, an object".into());
        };
        let flag = |key: &str| match asked.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(format!("notifications.{key} must be a boolean")),
        };
        let uris = match asked.get("resourceSubscriptions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.len() <= MAX_RESOURCES => items
                .iter()
                .map(|uri| uri.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or("notifications.resourceSubscriptions must hold URIs (strings)")?,
            Some(Value::Array(_)) => {
                return Err(format!(
                    "notifications.resourceSubscriptions may name at most {MAX_RESOURCES} resources"
                ))
            }
            Some(_) => return Err("notifications.resourceSubscriptions must be an array".into()),
        };
        Ok(Filter {
            tools: flag("toolsListChanged")?,
            prompts: flag("promptsListChanged")?,
            resources: flag("resourcesListChanged")?,
            uris,
        })
    }

    /// The resources to subscribe to at the server.
    pub(crate) fn uris(&self) -> &[String] {
        &self.uris
    }

    /// The filter as the acknowledgement echoes it: what was asked for
    /// and is honoured, nothing else.
    fn honoured(&self) -> Value {
        let mut echo = Map::new();
        for (key, on) in [
            ("toolsListChanged", self.tools),
            ("promptsListChanged", self.prompts),
            ("resourcesListChanged", self.resources),
        ] {
            if on {
                echo.insert(key.into(), Value::Bool(true));
            }
        }
        if !self.uris.is_empty() {
            echo.insert("resourceSubscriptions".into(), json!(self.uris));
        }
        Value::Object(echo)
    }

    /// Whether a notification `method` about `params` was asked for.
    fn wants(&self, method: &str, params: &Value) -> bool {
        match method {
            "notifications/tools/list_changed" => self.tools,
            "notifications/prompts/list_changed" => self.prompts,
            "notifications/resources/list_changed" => self.resources,
            "notifications/resources/updated" => params["uri"]
                .as_str()
                .is_some_and(|uri| self.uris.iter().any(|u| u == uri)),
            _ => false,
        }
    }
}

/// One open listen stream: the request it answers, and what it carries.
pub(crate) struct Listener {
    pub(crate) to: RequestId,
    /// The listen request's id: the stream's subscription id.
    id: Value,
    filter: Filter,
}

impl Listener {
    pub(crate) fn new(to: RequestId, id: Value, filter: Filter) -> Self {
        Listener { to, id, filter }
    }

    /// The stream's first message: what it will carry.
    pub(crate) fn acknowledgement(&self) -> String {
        let params = json!({
            "notifications": self.filter.honoured(),
            "_meta": {SUBSCRIPTION_ID_META: self.id},
        });
        mcp::notification("notifications/subscriptions/acknowledged", params)
    }

    /// The stream's last message when the bridge ends it (its server
    /// gone, the provider stopping): the listen request's answer, which
    /// tells its client the end is on purpose, not a lost connection.
    pub(crate) fn ended(&self) -> String {
        let result = json!({
            "resultType": "complete",
            "_meta": {SUBSCRIPTION_ID_META: self.id},
        });
        mcp::result(&self.id, result)
    }

    /// A message of the child for this listener, as its stream carries
    /// it: a notification it asked for, tagged with its subscription id;
    /// `None` for anything else (answers to its own subscriptions, other
    /// notifications, requests: those are refused by the caller).
    pub(crate) fn relay(&self, message: &Value) -> Option<String> {
        let method = message.get("method")?.as_str()?;
        if message.get("id").is_some() || !self.filter.wants(method, &message["params"]) {
            return None;
        }
        let mut params = match &message["params"] {
            Value::Object(params) => params.clone(),
            _ => Map::new(),
        };
        if let Some(meta) = mcp::meta_of(&mut params) {
            meta.insert(SUBSCRIPTION_ID_META.into(), self.id.clone());
        }
        Some(mcp::notification(method, Value::Object(params)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ConnId;

    fn listener(notifications: Value) -> Listener {
        let filter = Filter::parse(&json!({ "notifications": notifications })).unwrap();
        let to = RequestId {
            conn: ConnId(1),
            seq: 0,
        };
        Listener::new(to, json!(7), filter)
    }

    fn parsed(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn the_acknowledgement_echoes_what_was_asked_and_names_the_subscription() {
        let l = listener(
            json!({"toolsListChanged": true, "promptsListChanged": false,
            "resourceSubscriptions": ["file:///a"]}),
        );
        let ack = parsed(&l.acknowledgement());
        assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
        assert_eq!(
            ack["params"]["notifications"],
            json!({"toolsListChanged": true, "resourceSubscriptions": ["file:///a"]})
        );
        assert_eq!(ack["params"]["_meta"][SUBSCRIPTION_ID_META], 7);
        assert!(ack.get("id").is_none());
        let ended = parsed(&l.ended());
        assert_eq!(ended["id"], 7);
        assert_eq!(
            ended["result"],
            json!({"resultType": "complete", "_meta": {SUBSCRIPTION_ID_META: 7}})
        );
    }

    #[test]
    fn only_the_notifications_asked_for_are_carried_each_tagged() {
        let l =
            listener(json!({"promptsListChanged": true, "resourceSubscriptions": ["file:///a"]}));
        let tools = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        assert_eq!(l.relay(&tools), None);
        let prompts = json!({"jsonrpc": "2.0", "method": "notifications/prompts/list_changed"});
        let carried = parsed(&l.relay(&prompts).unwrap());
        assert_eq!(carried["method"], "notifications/prompts/list_changed");
        assert_eq!(carried["params"]["_meta"][SUBSCRIPTION_ID_META], 7);
        let updated = |uri| {
            json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                "params": {"uri": uri, "_meta": {"other": 1}}})
        };
        let carried = parsed(&l.relay(&updated("file:///a")).unwrap());
        assert_eq!(carried["params"]["uri"], "file:///a");
        assert_eq!(
            carried["params"]["_meta"],
            json!({"other": 1, SUBSCRIPTION_ID_META: 7})
        );
        assert_eq!(l.relay(&updated("file:///b")), None);
        let log = json!({"jsonrpc": "2.0", "method": "notifications/message",
            "params": {"level": "info", "data": "x"}});
        assert_eq!(l.relay(&log), None);
        // Answers and the child's own requests are never carried.
        assert_eq!(
            l.relay(&json!({"jsonrpc": "2.0", "id": 3, "result": {}})),
            None
        );
        let ask =
            json!({"jsonrpc": "2.0", "id": 4, "method": "notifications/prompts/list_changed"});
        assert_eq!(l.relay(&ask), None);
    }

    #[test]
    fn a_filter_of_the_wrong_shape_is_refused_with_why() {
        for (params, why) in [
            (json!({}), "params.notifications"),
            (json!({"notifications": []}), "params.notifications"),
            (
                json!({"notifications": {"toolsListChanged": "yes"}}),
                "toolsListChanged",
            ),
            (
                json!({"notifications": {"resourceSubscriptions": "file:///a"}}),
                "an array",
            ),
            (
                json!({"notifications": {"resourceSubscriptions": [1]}}),
                "strings",
            ),
        ] {
            let refused = Filter::parse(&params).unwrap_err();
            assert!(refused.contains(why), "{params}: {refused}");
        }
        let many: Vec<String> = (0..=MAX_RESOURCES)
            .map(|n| format!("file:///{n}"))
            .collect();
        let refused = Filter::parse(&json!({"notifications": {"resourceSubscriptions": many}}));
        assert!(refused.unwrap_err().contains("at most"));
        assert_eq!(
            Filter::parse(&json!({"notifications": {}})),
            Ok(Filter::default())
        );
    }
}
