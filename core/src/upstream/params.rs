//! Tool parameters mirrored into headers (SEP-2243): a tool's input schema
//! may mark a parameter with `"x-mcp-header": "Region"`, and every call of
//! that tool then carries the argument's value as `Mcp-Param-Region`, for
//! whatever routes or meters on the way to read without reading the body
//! (the server checks the two agree).
//!
//! The marks are read from the server's own `tools/list` answers as they
//! pass. A tool whose marks break the revision's rules — a header name that
//! is empty or not an HTTP token, one named twice in any case, a mark on a
//! parameter that is not a string, integer or boolean, or one out of reach
//! of `properties` alone (under `items`, `allOf`, `$defs`...) — is left out
//! of the listing, as the revision has every client do, and the server's
//! other tools are kept: its calls could not be sent as the server expects
//! them.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::headers::header_safe;
use crate::members::Members;

/// The schema keyword that marks a parameter.
const MARK: &str = "x-mcp-header";
/// What the header of a marked parameter is called, before its name.
const PREFIX: &str = "Mcp-Param-";
/// Tools whose marks are kept at most: past them (a listing of page after
/// page), a tool is called without its headers, and the server refuses it.
const MAX_TOOLS: usize = 4096;
/// Schema keywords whose values are data, not schemas: a `default` object
/// with a member named like the mark is no mark.
const DATA: [&str; 4] = ["const", "default", "enum", "examples"];

/// One marked parameter: where its value sits in a call's arguments (the
/// names of the properties leading to it), and its header's name.
#[derive(Debug, Clone, PartialEq)]
struct Mirror {
    path: Vec<String>,
    header: String,
}

/// The marked parameters of a server's tools, by tool name.
#[derive(Debug, Default)]
pub struct ParamHeaders {
    tools: HashMap<String, Vec<Mirror>>,
}

impl ParamHeaders {
    /// Reads one page of the server's tools listing (its answer, `line`);
    /// `first`: the listing's first page, so what an earlier listing said
    /// is forgotten. Returns the answer without the tools whose marks are
    /// invalid, when it had any (else it goes on as it came); the rest of
    /// it, the kept tools included, as the server wrote it.
    pub fn listed(&mut self, line: &str, first: bool) -> Option<String> {
        if first {
            self.tools.clear();
        }
        let mut message = Members::of(line)?;
        let mut result = Members::of(message.get("result")?.get())?;
        let tools: Vec<Box<RawValue>> = serde_json::from_str(result.get("tools")?.get()).ok()?;
        let listed = tools.len();
        let kept: Vec<Box<RawValue>> = tools.into_iter().filter(|tool| self.admit(tool)).collect();
        if kept.len() == listed {
            return None;
        }
        result.set("tools", serde_json::value::to_raw_value(&kept).ok()?);
        message.set("result", result.raw()?);
        Some(message.text())
    }

    /// Whether a listed tool is kept: its marks are learned when they are
    /// valid; it is left out when they are not.
    fn admit(&mut self, tool: &RawValue) -> bool {
        #[derive(Deserialize)]
        struct Tool {
            #[serde(default)]
            name: Value,
            #[serde(default, rename = "inputSchema")]
            input_schema: Value,
        }
        let Ok(tool) = serde_json::from_str::<Tool>(tool.get()) else {
            return true;
        };
        let name = tool.name.as_str().unwrap_or_default();
        match marks(&tool.input_schema) {
            Ok(mirrors) => {
                self.learn(name, mirrors);
                true
            }
            Err(why) => {
                tracing::warn!(tool = %crate::text::bounded(name, 100), "a tool of the remote MCP server left out of its listing: {why}");
                self.tools.remove(name);
                false
            }
        }
    }

    fn learn(&mut self, tool: &str, mirrors: Vec<Mirror>) {
        if mirrors.is_empty() {
            self.tools.remove(tool);
        } else if self.tools.len() < MAX_TOOLS || self.tools.contains_key(tool) {
            self.tools.insert(tool.to_owned(), mirrors);
        }
    }

    /// The headers a `tools/call` of `tool` (the request, `line`) carries:
    /// each marked argument's value, header-safe; none for an argument
    /// that is absent or null.
    pub fn for_call(&self, tool: &str, line: &str) -> Vec<(String, String)> {
        #[derive(Deserialize)]
        struct Call {
            #[serde(default)]
            params: Params,
        }
        #[derive(Deserialize, Default)]
        struct Params {
            #[serde(default)]
            arguments: Value,
        }
        let Some(mirrors) = self.tools.get(tool) else {
            return Vec::new();
        };
        let Ok(call) = serde_json::from_str::<Call>(line) else {
            return Vec::new();
        };
        mirrors
            .iter()
            .filter_map(|mirror| {
                let value = mirror
                    .path
                    .iter()
                    .try_fold(&call.params.arguments, |at, name| at.get(name))?;
                Some((format!("{PREFIX}{}", mirror.header), header_value(value)?))
            })
            .collect()
    }
}

/// An argument as its header carries it: a string header-safe, a number
/// as JSON writes it, a boolean as `true` or `false`; nothing for null (or
/// a value no header can carry).
fn header_value(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(header_safe(text)),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The marked parameters of a tool's input schema, or why its marks are
/// invalid.
fn marks(schema: &Value) -> Result<Vec<Mirror>, String> {
    let mut found = Vec::new();
    reachable(schema, &mut Vec::new(), &mut found)?;
    for (i, mirror) in found.iter().enumerate() {
        let earlier = found.get(..i).unwrap_or_default();
        if earlier
            .iter()
            .any(|other| other.header.eq_ignore_ascii_case(&mirror.header))
        {
            return Err(format!("{MARK} {:?} names two parameters", mirror.header));
        }
    }
    Ok(found)
}

/// A schema reached from the input schema through `properties` alone
/// (`path`: the properties' names): its marks are taken, and so are those
/// of its properties; any elsewhere in it is out of reach.
fn reachable(
    schema: &Value,
    path: &mut Vec<String>,
    found: &mut Vec<Mirror>,
) -> Result<(), String> {
    let Some(fields) = schema.as_object() else {
        return Ok(());
    };
    for (key, value) in fields {
        match (key.as_str(), value) {
            (MARK, _) if path.is_empty() => {
                return Err(format!("{MARK} marks the input schema itself"));
            }
            (MARK, _) => found.push(mirror(fields, path)?),
            ("properties", Value::Object(properties)) => {
                for (name, property) in properties {
                    path.push(name.clone());
                    reachable(property, path, found)?;
                    path.pop();
                }
            }
            (key, _) if DATA.contains(&key) => {}
            (_, value) => out_of_reach(value)?,
        }
    }
    Ok(())
}

/// A part of the schema no call's arguments lead to by `properties` alone:
/// a mark there is invalid.
fn out_of_reach(value: &Value) -> Result<(), String> {
    match value {
        Value::Object(fields) => {
            for (key, value) in fields {
                if key == MARK {
                    return Err(format!(
                        "{MARK} {value} is out of reach of properties alone"
                    ));
                }
                if !DATA.contains(&key.as_str()) {
                    out_of_reach(value)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(out_of_reach),
        _ => Ok(()),
    }
}

/// The mark of the parameter whose schema is `fields`, checked.
fn mirror(fields: &Map<String, Value>, path: &[String]) -> Result<Mirror, String> {
    let header = match &fields[MARK] {
        Value::String(header) if !header.is_empty() && header.bytes().all(is_tchar) => header,
        other => return Err(format!("{MARK} {other} is not an HTTP token")),
    };
    match fields.get("type").and_then(Value::as_str) {
        Some("string" | "integer" | "boolean") => Ok(Mirror {
            path: path.to_vec(),
            header: header.clone(),
        }),
        _ => Err(format!(
            "{MARK} {header:?} marks a parameter that is not a string, integer or boolean"
        )),
    }
}

/// Whether `b` may be in an HTTP token (RFC 9110's `tchar`).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listing(tools: Value) -> String {
        json!({"jsonrpc": "2.0", "id": 3, "result": {"tools": tools}}).to_string()
    }

    fn tool(name: &str, properties: Value) -> Value {
        json!({"name": name, "inputSchema": {"type": "object", "properties": properties}})
    }

    fn call(tool: &str, arguments: Value) -> String {
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
               "params": {"name": tool, "arguments": arguments}})
        .to_string()
    }

    fn sorted(mut headers: Vec<(String, String)>) -> Vec<(String, String)> {
        headers.sort();
        headers
    }

    fn learned(tools: Value) -> ParamHeaders {
        let mut params = ParamHeaders::default();
        assert_eq!(params.listed(&listing(tools), true), None);
        params
    }

    #[test]
    fn marked_arguments_are_mirrored_safe_ones_as_they_are_and_others_in_base64() {
        let params = learned(json!([tool(
            "query",
            json!({
                "region": {"type": "string", MARK: "Region"},
                "padded": {"type": "string", MARK: "Padded"},
                "greeting": {"type": "string", MARK: "Greeting"},
                "lines": {"type": "string", MARK: "Lines"},
                "spaced": {"type": "string", MARK: "Spaced"},
                "empty": {"type": "string", MARK: "Empty"},
                "sql": {"type": "string"},
            })
        )]));
        let headers = sorted(params.for_call(
            "query",
            &call(
                "query",
                json!({"region": "us-west1", "padded": " us-west1 ", "greeting": "Hello, 世界",
                       "lines": "line1\r\nline2", "spaced": "us west 1", "empty": "",
                       "sql": "SELECT 1"}),
            ),
        ));
        assert_eq!(
            headers,
            [
                ("Mcp-Param-Empty".to_owned(), String::new()),
                (
                    "Mcp-Param-Greeting".to_owned(),
                    "=?base64?SGVsbG8sIOS4lueVjA==?=".to_owned()
                ),
                (
                    "Mcp-Param-Lines".to_owned(),
                    "=?base64?bGluZTENCmxpbmUy?=".to_owned()
                ),
                (
                    "Mcp-Param-Padded".to_owned(),
                    "=?base64?IHVzLXdlc3QxIA==?=".to_owned()
                ),
                ("Mcp-Param-Region".to_owned(), "us-west1".to_owned()),
                ("Mcp-Param-Spaced".to_owned(), "us west 1".to_owned()),
            ]
        );
    }

    #[test]
    fn integers_and_booleans_are_written_as_json_writes_them_and_null_or_absent_omitted() {
        let params = learned(json!([tool(
            "t",
            json!({
                "priority": {"type": "integer", MARK: "Priority"},
                "verbose": {"type": "boolean", MARK: "Verbose"},
                "debug": {"type": "boolean", MARK: "Debug"},
                "limit": {"type": "integer", MARK: "Limit"},
            })
        )]));
        let headers = params.for_call(
            "t",
            &call(
                "t",
                json!({"priority": 42, "verbose": false, "debug": null, "big": 1}),
            ),
        );
        assert_eq!(
            sorted(headers),
            [
                ("Mcp-Param-Priority".to_owned(), "42".to_owned()),
                ("Mcp-Param-Verbose".to_owned(), "false".to_owned()),
            ]
        );
        let headers = params.for_call("t", &call("t", json!({"priority": -7, "debug": true})));
        assert_eq!(
            sorted(headers),
            [
                ("Mcp-Param-Debug".to_owned(), "true".to_owned()),
                ("Mcp-Param-Priority".to_owned(), "-7".to_owned()),
            ]
        );
    }

    #[test]
    fn a_mark_nested_in_properties_is_followed_into_the_arguments() {
        let params = learned(json!([tool(
            "t",
            json!({
                "target": {"type": "object", "properties": {
                    "zone": {"type": "string", MARK: "Zone"}}},
            })
        )]));
        let headers = params.for_call("t", &call("t", json!({"target": {"zone": "eu"}})));
        assert_eq!(headers, [("Mcp-Param-Zone".to_owned(), "eu".to_owned())]);
        assert!(params
            .for_call("t", &call("t", json!({"target": "eu"})))
            .is_empty());
    }

    #[test]
    fn unmarked_tools_and_unknown_tools_carry_no_headers() {
        let params = learned(json!([tool("plain", json!({"q": {"type": "string"}}))]));
        assert!(params
            .for_call("plain", &call("plain", json!({"q": "x"})))
            .is_empty());
        assert!(params
            .for_call("other", &call("other", json!({"q": "x"})))
            .is_empty());
    }

    #[test]
    fn tools_with_invalid_marks_are_left_out_and_the_others_kept() {
        let invalid = [
            json!({"v": {"type": "string", MARK: ""}}),
            json!({"v": {"type": "object", MARK: "Data"}}),
            json!({"v": {"type": "array", "items": {"type": "string"}, MARK: "Items"}}),
            json!({"v": {"type": "null", MARK: "Nil"}}),
            json!({"v": {"type": "number", MARK: "Score"}}),
            json!({"v": {MARK: "Untyped"}}),
            json!({"a": {"type": "string", MARK: "Region"}, "b": {"type": "string", MARK: "Region"}}),
            json!({"a": {"type": "string", MARK: "MyField"}, "b": {"type": "string", MARK: "myfield"}}),
            json!({"v": {"type": "string", MARK: "My Region"}}),
            json!({"v": {"type": "string", MARK: "Region:Primary"}}),
            json!({"v": {"type": "string", MARK: "Région"}}),
            json!({"v": {"type": "string", MARK: "Region\t1"}}),
            json!({"v": {"type": "string", MARK: 7}}),
            json!({"v": {"type": "array", "items": {"type": "string", MARK: "Item"}}}),
            json!({"v": {"anyOf": [{"type": "string", MARK: "Either"}]}}),
        ];
        let mut tools = vec![tool(
            "valid_tool",
            json!({"region": {"type": "string", MARK: "Region"}}),
        )];
        tools.extend(
            invalid
                .iter()
                .enumerate()
                .map(|(i, p)| tool(&format!("bad{i}"), p.clone())),
        );
        tools.push(json!({"name": "marked_root", "inputSchema": {"type": "object", MARK: "Root"}}));
        tools.push(json!({"name": "in_defs", "inputSchema": {"type": "object",
            "$defs": {"id": {"type": "string", MARK: "Id"}}, "properties": {"id": {"$ref": "#/$defs/id"}}}}));
        tools.push(tool(
            "plain",
            json!({"q": {"type": "string", "default": {MARK: "data"}}}),
        ));
        let mut params = ParamHeaders::default();
        let rewritten = params
            .listed(&listing(json!(tools)), true)
            .expect("rewritten");
        let kept: Value = serde_json::from_str(&rewritten).unwrap();
        let names: Vec<&str> = kept["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["valid_tool", "plain"]);
        let written = tools[0].to_string();
        assert!(
            rewritten.contains(&written),
            "a kept tool as it was written: {rewritten}"
        );
        assert_eq!(kept["id"], 3);
        let headers = params.for_call("valid_tool", &call("valid_tool", json!({"region": "x"})));
        assert_eq!(headers, [("Mcp-Param-Region".to_owned(), "x".to_owned())]);
        assert!(params
            .for_call("bad6", &call("bad6", json!({"a": "x"})))
            .is_empty());
    }

    #[test]
    fn a_rewritten_listing_keeps_the_other_tools_and_members_as_the_server_wrote_them() {
        let kept = r##"{"name":"lookup", "inputSchema":{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","$defs":{"id":{"type":"string"}},"properties":{"id":{"$ref":"#/$defs/id"},"n":{"type":"integer","x-mcp-header":"N"}},"additionalProperties":false,"big":1.50e3}}"##;
        let dropped = r#"{"name":"bad","inputSchema":{"type":"object","properties":{"s":{"type":"number","x-mcp-header":"S"}}}}"#;
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":9,"result":{{"tools":[{dropped},{kept}],"nextCursor":"c2","_meta":{{"z":1,"a":2}}}}}}"#
        );
        let rewritten = ParamHeaders::default()
            .listed(&line, true)
            .expect("rewritten");
        assert_eq!(
            rewritten,
            format!(
                r#"{{"jsonrpc":"2.0","id":9,"result":{{"tools":[{kept}],"nextCursor":"c2","_meta":{{"z":1,"a":2}}}}}}"#
            )
        );
    }

    #[test]
    fn a_new_listing_forgets_the_old_and_later_pages_add_to_it() {
        let mut params = learned(json!([tool(
            "a",
            json!({"r": {"type": "string", MARK: "R"}})
        )]));
        let page = listing(json!([tool(
            "b",
            json!({"s": {"type": "string", MARK: "S"}})
        )]));
        assert_eq!(params.listed(&page, false), None);
        assert_eq!(params.for_call("a", &call("a", json!({"r": "1"}))).len(), 1);
        assert_eq!(params.for_call("b", &call("b", json!({"s": "1"}))).len(), 1);
        let page = listing(json!([tool("b", json!({"s": {"type": "string"}}))]));
        assert_eq!(params.listed(&page, true), None);
        assert!(params
            .for_call("a", &call("a", json!({"r": "1"})))
            .is_empty());
        assert!(params
            .for_call("b", &call("b", json!({"s": "1"})))
            .is_empty());
    }

    #[test]
    fn an_answer_that_is_no_listing_goes_on_as_it_came() {
        let mut params = ParamHeaders::default();
        for line in [
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":"many"}}"#,
            "not json",
        ] {
            assert_eq!(params.listed(line, true), None);
        }
    }
}
