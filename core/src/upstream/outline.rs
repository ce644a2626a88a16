//! What the upstream reads of a message it posts: its method, its id, and
//! what the 2026-07-28 headers repeat (`MCP-Protocol-Version`, `Mcp-Name`).
//! Read in one pass over borrowed text: the rest of the message (a tool's
//! arguments, say) is skipped, not built into a tree only to be dropped.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::mcp;
use crate::telemetry::SpanContext;

/// The parts of one message that decide how it is posted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outline {
    /// `method`, when it is a string (borrowed when it is one MCP names).
    pub method: Option<Cow<'static, str>>,
    /// `id`, for a request (a message with a method).
    pub id: Option<Value>,
    /// `params._meta`'s protocol version: a stateless request.
    pub version: Option<String>,
    /// The tool, prompt or resource the request names.
    pub name: Option<String>,
    /// `params._meta`'s trace context (SEP-414; the bridge's CLIENT span's
    /// when it traces), sent again as the `traceparent` and `tracestate`
    /// headers.
    pub trace: Option<SpanContext>,
}

#[derive(Deserialize)]
struct Members<'a> {
    #[serde(default, borrow)]
    method: Option<&'a RawValue>,
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Params<'a> {
    #[serde(default, borrow, rename = "_meta")]
    meta: Option<&'a RawValue>,
    #[serde(default, borrow)]
    name: Option<&'a RawValue>,
    #[serde(default, borrow)]
    uri: Option<&'a RawValue>,
}

/// `_meta`'s member [`mcp::PROTOCOL_VERSION_META`] and its trace context.
#[derive(Deserialize, Default)]
struct Meta<'a> {
    #[serde(default, borrow, rename = "io.modelcontextprotocol/protocolVersion")]
    version: Option<&'a RawValue>,
    #[serde(default, borrow)]
    traceparent: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tracestate: Option<&'a RawValue>,
}

/// The member of a request's params that names what it acts on (sent as
/// `Mcp-Name`): a tool's or prompt's `name`, a resource's `uri`.
fn name_member(method: Option<&str>) -> Option<&'static str> {
    match method? {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        _ => None,
    }
}

/// A member that is a string, unescaped; anything else is none.
fn text(raw: Option<&RawValue>) -> Option<String> {
    serde_json::from_str(raw?.get()).ok()
}

/// The method, when it is a string: one MCP names is borrowed, read
/// where it stands when it has no escapes.
fn method_text(raw: &RawValue) -> Option<Cow<'static, str>> {
    let plain = raw
        .get()
        .strip_prefix('"')
        .and_then(|text| text.strip_suffix('"'))
        .filter(|text| !text.contains('\\'));
    match plain {
        Some(method) => Some(mcp::known_method(method)),
        None => text(Some(raw)).map(Cow::Owned),
    }
}

/// An object member read as `T`; a member of another shape reads as
/// nothing there (a struct would also read from an array, by position).
fn shaped<'a, T: Deserialize<'a> + Default>(raw: Option<&'a RawValue>) -> T {
    raw.filter(|raw| raw.get().starts_with('{'))
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default()
}

impl Outline {
    /// The outline of `line`; none when it is not JSON (JSON that is not
    /// an object, a batch, has none of the parts).
    pub fn of(line: &str) -> Option<Outline> {
        if !mcp::is_object(line) {
            return serde_json::from_str::<IgnoredAny>(line)
                .ok()
                .map(|_| Outline::default());
        }
        let members: Members = serde_json::from_str(line).ok()?;
        let method = members.method.and_then(method_text);
        let id = match (&method, members.id) {
            (Some(_), Some(id)) => serde_json::from_str(id.get()).ok(),
            _ => None,
        };
        let params: Params = shaped(members.params);
        let meta: Meta = shaped(params.meta);
        let name = match name_member(method.as_deref()) {
            Some("uri") => text(params.uri),
            Some(_) => text(params.name),
            None => None,
        };
        let trace = text(meta.traceparent)
            .and_then(|parent| SpanContext::parse(&parent, text(meta.tracestate).as_deref()));
        Some(Outline {
            method,
            id,
            version: text(meta.version),
            name,
            trace,
        })
    }

    /// The outline of a message made from its parts (as the bridge makes
    /// its own): what [`Outline::of`] reads of its text, without reading it.
    pub fn of_parts(method: Option<&str>, id: Option<&Value>, params: &mcp::Params) -> Outline {
        let text = |value: &Value| value.as_str().map(str::to_owned);
        let name = name_member(method).and_then(|member| match member {
            "name" => text(params.name()),
            other => text(&params[other]),
        });
        let meta = params.meta();
        Outline {
            method: method.map(mcp::known_method),
            id: method.and(id).filter(|id| !id.is_null()).cloned(),
            version: text(&meta[mcp::PROTOCOL_VERSION_META]),
            name,
            trace: SpanContext::from_meta(meta),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn a_stateless_call_gives_its_method_id_version_and_tool() {
        let line = json!({
            "jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "hi", "deep": [1, {"a": null}]},
                       "_meta": {mcp::PROTOCOL_VERSION_META: "2026-07-28"}}
        })
        .to_string();
        assert_eq!(
            Outline::of(&line),
            Some(Outline {
                method: Some("tools/call".into()),
                id: Some(json!(7)),
                version: Some("2026-07-28".into()),
                name: Some("echo".into()),
                trace: None,
            })
        );
    }

    #[test]
    fn a_resource_is_named_by_its_uri_and_escapes_are_read() {
        let line = r#"{"id":"a\"b","method":"resources/read","params":{"uri":"file:///x\u0041"}}"#;
        let outline = Outline::of(line).unwrap();
        assert_eq!(outline.id, Some(json!("a\"b")));
        assert_eq!(outline.name.as_deref(), Some("file:///xA"));
        assert_eq!(outline.version, None);
        let spaced = format!(
            "{{ \"id\" : 2 , \"method\" :\n \"tools/call\", \"params\" : {{ \"name\" : \"t\", \"_meta\" :\t{{ \"{}\" : \"v\" }} }} }}",
            mcp::PROTOCOL_VERSION_META
        );
        let outline = Outline::of(&spaced).unwrap();
        assert_eq!(outline.version.as_deref(), Some("v"));
        assert_eq!(outline.name.as_deref(), Some("t"));
    }

    #[test]
    fn members_of_another_shape_read_as_absent() {
        let outline = Outline::of(r#"{"id":1,"method":5,"params":[1,2]}"#).unwrap();
        assert_eq!(outline, Outline::default());
        let outline =
            Outline::of(r#"{"id":1,"method":"x","params":{"_meta":3,"name":{}}}"#).unwrap();
        assert_eq!(outline.method.as_deref(), Some("x"));
        assert_eq!(outline.id, Some(json!(1)));
        assert_eq!((outline.version, outline.name), (None, None));
    }

    #[test]
    fn an_answer_or_a_batch_has_no_id_to_fail_and_text_that_is_not_json_no_outline() {
        let outline = Outline::of(r#"{"id":3,"result":{}}"#).unwrap();
        assert_eq!((outline.method, outline.id), (None, None));
        let batch = r#"[{"id":1,"method":"ping"},{"id":2,"method":"ping"}]"#;
        assert_eq!(Outline::of(batch), Some(Outline::default()));
        assert_eq!(Outline::of("not json"), None);
        assert_eq!(Outline::of(r#"{"id":1,"method":"x""#), None);
    }

    /// What the upstream read of a message before: the whole tree built,
    /// then looked into (an `"id": null` reads as no id either way).
    fn from_tree(line: &str) -> Option<Outline> {
        let message: Value = serde_json::from_str(line).ok()?;
        let method = message["method"].as_str().map(str::to_owned);
        let id = method
            .as_ref()
            .and_then(|_| message.get("id").cloned())
            .filter(|id| !id.is_null());
        let version = message["params"]["_meta"][mcp::PROTOCOL_VERSION_META]
            .as_str()
            .map(str::to_owned);
        let key = match method.as_deref() {
            Some("tools/call" | "prompts/get") => "name",
            Some("resources/read" | "resources/subscribe" | "resources/unsubscribe") => "uri",
            _ => "",
        };
        let name = message["params"][key].as_str().map(str::to_owned);
        Some(Outline {
            method: method.map(Cow::Owned),
            id,
            version,
            name: name.filter(|_| !key.is_empty()),
            trace: SpanContext::from_meta(&message["params"]["_meta"]),
        })
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z\\\\\"\u{e9}\u{1F600}/]{0,6}".prop_map(Value::from),
            Just(json!("tools/call")),
            Just(json!("resources/read")),
            Just(json!("2026-07-28")),
        ]
    }

    fn tree() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            let key = prop_oneof![
                Just("name".to_owned()),
                Just("uri".to_owned()),
                Just("_meta".to_owned()),
                Just(mcp::PROTOCOL_VERSION_META.to_owned()),
                "[a-z]{1,3}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(key, inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn message() -> impl Strategy<Value = Value> {
        let member = |name: &'static str, value: BoxedStrategy<Value>| {
            prop::option::of(value).prop_map(move |v| v.map(|v| (name.to_owned(), v)))
        };
        (
            member("method", tree().boxed()),
            member("id", leaf().boxed()),
            member("params", tree().boxed()),
            member("result", tree().boxed()),
        )
            .prop_map(|(a, b, c, d)| Value::Object([a, b, c, d].into_iter().flatten().collect()))
    }

    proptest! {
        #[test]
        fn the_outline_is_what_the_whole_tree_says(message in prop_oneof![message(), tree()]) {
            let line = message.to_string();
            prop_assert_eq!(Outline::of(&line), from_tree(&line), "{}", line);
        }

        #[test]
        fn the_outline_of_the_parts_is_the_outline_of_the_text(message in message()) {
            let line = message.to_string();
            let params = mcp::Params::from(message["params"].clone());
            let parts = Outline::of_parts(message["method"].as_str(), message.get("id"), &params);
            prop_assert_eq!(Outline::of(&line), Some(parts), "{}", line);
        }
    }
}
