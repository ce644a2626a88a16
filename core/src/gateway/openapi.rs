//! The bridged tools as an OpenAPI service, for the clients that call
//! tools that way rather than over MCP: Open WebUI's tool servers, the
//! OpenAPI toolkits of agent frameworks, code generators.
//!
//! - `GET /openapi.json` describes every bridged server's tools,
//!   `GET /openapi/{name}.json` one server's: an OpenAPI 3.1 document with
//!   one `POST /tools/{server}/{tool}` operation per tool.
//! - `POST /tools/{server}/{tool}`, the body the tool's arguments (a JSON
//!   object), calls it as a REST call without a session does (a client of
//!   its own for as long as it waits) and answers the MCP `CallToolResult`
//!   as it is; a tool that failed (`isError`) is still a 200: that is the
//!   tool's answer.
//!
//! Both read the server's own tool list, as its MCP clients get it (`gather`
//! asks it): so a tool its filter leaves out is in no document, and the
//! route serves exactly the operations a document describes: a tool not
//! in the list is a 404, and the call is never sent (the list is read
//! first, on the same client). A server that cannot list its tools is left
//! out of a document (named under `x-unavailable`, and logged), never
//! failing the whole document.
//!
//! OpenAPI 3.1 schemas are JSON Schema 2020-12, so a tool's `inputSchema`
//! is the operation's request body nearly as it is; what differs is made
//! to fit ([`rebase`]): its `$ref`s point into the document, and the older
//! drafts' forms (`$schema`, tuple `items`) are 2020-12's.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use crate::bridge::common::{error, result_or_error};
use crate::http::Response;
use crate::mcp;

/// The longest `operationId`: frameworks make each operation a function
/// for a model to call, and OpenAI's function names are at most 64
/// characters.
const MAX_OPERATION_ID: usize = 64;

/// Where every schema of the document is kept, and what a `$ref` to one
/// starts with.
const SCHEMAS: &str = "#/components/schemas/";

/// An operation's answer: the `CallToolResult` (200, `isError` or not);
/// a JSON-RPC error in the REST API's shape, `{"error": {"code",
/// "message", "data"?}}`: arguments the server refused (invalid params)
/// are the caller's to fix (400), anything else is the server's failure
/// (502).
pub(super) fn operation_answer(answer: &Value) -> Response {
    let status = match answer["error"]["code"].as_i64() {
        Some(mcp::INVALID_PARAMS) => 400,
        _ => 502,
    };
    result_or_error(answer, status)
}

/// The 404 for a tool a server does not list (or its filter leaves out).
pub(super) fn no_such_tool(server: &str, tool: &str) -> Response {
    error(
        404,
        &format!("MCP server `{server}` has no tool `{tool}` (GET /openapi/{server}.json lists its tools)"),
    )
}

/// An operation's body: the tool's arguments, a JSON object (an empty
/// body is no arguments), or the 400 to answer with.
pub(super) fn arguments(body: &[u8]) -> Result<Value, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(arguments @ Value::Object(_)) => Ok(arguments),
        Ok(_) => Err(error(
            400,
            "the body is the tool's arguments: a JSON object, by name",
        )),
        Err(e) => Err(error(400, &format!("the body is not JSON: {e}"))),
    }
}

/// A tool's name as one segment of its operation's path: every byte but
/// the unreserved characters percent-encoded (upper-case hex, as the
/// canonical path keeps them); `None` for a name no path can carry (a
/// request path never has an encoded `/` or `\` or control character,
/// nor a `.` or `..` segment).
fn path_segment(tool: &str) -> Option<String> {
    let unservable = tool.is_empty()
        || tool == "."
        || tool == ".."
        || tool.contains(['/', '\\'])
        || tool.chars().any(char::is_control);
    if unservable {
        return None;
    }
    let mut segment = String::with_capacity(tool.len());
    for byte in tool.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                segment.push(char::from(byte))
            }
            other => segment.push_str(&format!("%{other:02X}")),
        }
    }
    Some(segment)
}

/// The tool a path segment names: its escapes decoded (the canonical path
/// decoded the unreserved ones already); `None` when they are not UTF-8.
pub(super) fn tool_name(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut name = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte != b'%' {
            name.push(byte);
            i += 1;
            continue;
        }
        let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
        name.push(u8::from_str_radix(hex, 16).ok()?);
        i += 3;
    }
    String::from_utf8(name).ok()
}

/// `{server}__{tool}` as an identifier every code generator and model
/// takes: ASCII letters, digits and `_` (anything else becomes `_`), not
/// starting with a digit. [`Names::claim`] makes it unique and short.
fn operation_id(server: &str, tool: &str) -> String {
    let fits = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let id: String = format!("{server}__{tool}")
        .chars()
        .map(|c| if fits(c) { c } else { '_' })
        .collect();
    match id.starts_with(|c: char| c.is_ascii_digit()) {
        true => format!("_{id}"),
        false => id,
    }
}

/// The names given out in one document: operation ids, and the schemas'
/// names (an operation's arguments are the schema of its id's name), so
/// no two collide.
#[derive(Default)]
struct Names(HashSet<String>);

impl Names {
    /// `wanted`, or when taken `wanted_2`, `wanted_3`…; each cut to
    /// [`MAX_OPERATION_ID`] characters.
    fn claim(&mut self, wanted: &str) -> String {
        let cut = |text: &str, max: usize| text.chars().take(max).collect::<String>();
        let mut name = cut(wanted, MAX_OPERATION_ID);
        let mut n = 1;
        // Ends: each turn tries a name not tried before, and only the
        // names already given out are refused.
        while self.0.contains(&name) {
            n += 1;
            let suffix = format!("_{n}");
            name = cut(wanted, MAX_OPERATION_ID.saturating_sub(suffix.len())) + &suffix;
        }
        self.0.insert(name.clone());
        name
    }
}

/// One tool that becomes an operation.
struct Operation<'a> {
    server: &'a str,
    tool: &'a Value,
    name: &'a str,
    path: String,
    id: String,
}

/// The OpenAPI 3.1 document of `parts` (each server's tools, as listed),
/// of `server` alone when named. `unavailable`: the servers that could not
/// list theirs, and why.
pub(super) fn document(
    server: Option<&str>,
    parts: &[(String, Vec<Value>)],
    unavailable: &[(String, String)],
) -> Value {
    let mut names = Names::default();
    // The shared schemas' names are taken first, so no operation gets one.
    for shared in ["Content", "CallToolResult", "Error"] {
        names.claim(shared);
    }
    let mut operations = Vec::new();
    let mut paths = HashSet::new();
    for (server, tools) in parts {
        for tool in tools {
            let Some(name) = tool["name"].as_str() else {
                tracing::warn!(
                    server,
                    "a tool without a name is left out of the OpenAPI document"
                );
                continue;
            };
            let Some(segment) = path_segment(name) else {
                tracing::warn!(
                    server,
                    tool = name,
                    "left out of the OpenAPI document: its name cannot be a segment of a URL path"
                );
                continue;
            };
            let path = format!("/tools/{server}/{segment}");
            if !paths.insert(path.clone()) {
                tracing::warn!(
                    server,
                    tool = name,
                    "listed twice: the OpenAPI document keeps the first"
                );
                continue;
            }
            let id = names.claim(&operation_id(server, name));
            operations.push(Operation {
                server,
                tool,
                name,
                path,
                id,
            });
        }
    }
    let mut schemas = Map::new();
    schemas.insert("Content".into(), content_schema());
    schemas.insert(
        "CallToolResult".into(),
        call_tool_result(json!({"type": "object"})),
    );
    schemas.insert("Error".into(), error_schema());
    let mut described = Map::new();
    // Output schemas are named after every operation is, so an operation's
    // id never depends on another tool's output schema.
    for operation in &operations {
        let (post, arguments, output) = describe(operation, &mut names);
        schemas.insert(operation.id.clone(), arguments);
        if let Some((name, schema)) = output {
            schemas.insert(name, schema);
        }
        described.insert(operation.path.clone(), json!({ "post": post }));
    }
    let title = match server {
        Some(name) => format!("MCP Local Provider: the tools of MCP server {name}"),
        None => "MCP Local Provider: the bridged MCP tools".to_owned(),
    };
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Each operation calls one tool of a bridged MCP server: \
                the body is the tool's arguments, the answer its MCP CallToolResult \
                (a tool that failed answers `isError: true`, still with 200). \
                Every request takes the provider's API key as a bearer token.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": described,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "The provider's API key."},
            },
            "schemas": schemas,
            "responses": responses(),
        },
    });
    if !unavailable.is_empty() {
        let named = unavailable
            .iter()
            .map(|(server, why)| json!({"server": server, "error": why}));
        document["x-unavailable"] = named.collect();
    }
    document
}

/// An operation's `post`, the schema of its arguments, and the name and
/// schema of its structured result when the tool declares one.
fn describe(operation: &Operation, names: &mut Names) -> (Value, Value, Option<(String, Value)>) {
    let Operation {
        server,
        tool,
        name,
        id,
        ..
    } = operation;
    let arguments = match &tool["inputSchema"] {
        schema @ Value::Object(_) => rebase(schema, &format!("{SCHEMAS}{id}")),
        _ => json!({"type": "object"}),
    };
    let output = match &tool["outputSchema"] {
        schema @ Value::Object(_) => {
            let output = names.claim(&format!("{id}_result"));
            let schema = rebase(schema, &format!("{SCHEMAS}{output}"));
            Some((output, schema))
        }
        _ => None,
    };
    let result = match &output {
        Some((output, _)) => call_tool_result(json!({"$ref": format!("{SCHEMAS}{output}")})),
        None => json!({"$ref": format!("{SCHEMAS}CallToolResult")}),
    };
    let summary = tool["title"]
        .as_str()
        .or(tool["annotations"]["title"].as_str())
        .unwrap_or(*name);
    let refusal = |name: &str| json!({"$ref": format!("#/components/responses/{name}")});
    let mut post = json!({
        "operationId": id,
        "summary": summary,
        "tags": [server],
        "requestBody": {
            "required": true,
            "content": {"application/json": {"schema": {"$ref": format!("{SCHEMAS}{id}")}}},
        },
        "responses": {
            "200": {
                "description": "The tool's result (a tool that failed says so with `isError: true`).",
                "content": {"application/json": {"schema": result}},
            },
            "400": refusal("BadRequest"),
            "401": refusal("Unauthorized"),
            "404": refusal("NotFound"),
            "502": refusal("BadGateway"),
            "503": refusal("Unavailable"),
        },
    });
    if let Some(description) = tool["description"].as_str() {
        post["description"] = json!(description);
    }
    (post, arguments, output)
}

/// The refusals every operation may answer, each an [`error_schema`].
fn responses() -> Value {
    let refusal = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": format!("{SCHEMAS}Error")}}},
        })
    };
    json!({
        "BadRequest": refusal("The body is not a JSON object of arguments, or the tool refused them."),
        "Unauthorized": refusal("No API key, or not the provider's."),
        "NotFound": refusal("No such server, or no such tool on it."),
        "BadGateway": refusal("The server could not start, exited, hung, or answered with an error."),
        "Unavailable": refusal("The bridge runs as many sessions or server processes as it may."),
    })
}

/// The REST API's error shape.
fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message"],
                "properties": {
                    "message": {"type": "string"},
                    "code": {"description": "The JSON-RPC error code, when the server answered with an error."},
                    "data": {},
                },
            },
        },
    })
}

/// One item of a result's `content`, as MCP defines it.
fn content_schema() -> Value {
    json!({
        "type": "object",
        "description": "One piece of a tool's result: text, image, audio, resource_link or resource.",
        "required": ["type"],
        "properties": {
            "type": {"type": "string"},
            "text": {"type": "string"},
            "data": {"type": "string", "description": "Base64, for an image or audio."},
            "mimeType": {"type": "string"},
            "uri": {"type": "string"},
            "resource": {"type": "object"},
        },
    })
}

/// MCP's `CallToolResult`, its `structuredContent` described by
/// `structured`.
fn call_tool_result(structured: Value) -> Value {
    json!({
        "type": "object",
        "description": "The MCP CallToolResult.",
        "required": ["content"],
        "properties": {
            "content": {"type": "array", "items": {"$ref": format!("{SCHEMAS}Content")}},
            "structuredContent": structured,
            "isError": {"type": "boolean", "description": "Whether the tool failed (its content says why)."},
            "_meta": {"type": "object"},
        },
    })
}

/// A tool's JSON Schema as a schema of the document, kept at `base` (a
/// `$ref` to it): its references within itself (`#/…`) made to point
/// there, `$schema` dropped (the document's dialect is 2020-12), and the
/// tuple form of the older drafts (`items: [..]`, `additionalItems`) made
/// 2020-12's (`prefixItems`, `items`). Only the keywords that hold schemas
/// are walked, so a property called `$ref` or `items` is left alone. The
/// depth is the parsed JSON's, which serde_json caps.
fn rebase(schema: &Value, base: &str) -> Value {
    let Value::Object(fields) = schema else {
        return schema.clone();
    };
    let one = |value: &Value| rebase(value, base);
    let each = |value: &Value| match value {
        Value::Array(schemas) => schemas.iter().map(one).collect(),
        other => other.clone(),
    };
    let by_name = |value: &Value| match value {
        Value::Object(named) => named
            .iter()
            .map(|(name, value)| match value {
                // draft-07 `dependencies`: a property's list of the
                // properties it needs, no schema.
                Value::Array(_) => (name.clone(), value.clone()),
                _ => (name.clone(), one(value)),
            })
            .collect(),
        other => other.clone(),
    };
    let mut out = Map::new();
    for (key, value) in fields {
        let value = match key.as_str() {
            "$schema" => continue,
            "$ref" => match value.as_str().and_then(|r| r.strip_prefix('#')) {
                Some(pointer) if pointer.is_empty() || pointer.starts_with('/') => {
                    json!(format!("{base}{pointer}"))
                }
                _ => value.clone(),
            },
            "items" => match value {
                Value::Array(_) => each(value),
                _ => one(value),
            },
            "additionalProperties"
            | "additionalItems"
            | "contains"
            | "propertyNames"
            | "not"
            | "if"
            | "then"
            | "else"
            | "unevaluatedItems"
            | "unevaluatedProperties"
            | "contentSchema" => one(value),
            "allOf" | "anyOf" | "oneOf" | "prefixItems" => each(value),
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas"
            | "dependencies" => by_name(value),
            _ => value.clone(),
        };
        out.insert(key.clone(), value);
    }
    if out.get("items").is_some_and(Value::is_array) {
        if let Some(tuple) = out.remove("items") {
            out.insert("prefixItems".into(), tuple);
        }
        if let Some(rest) = out.remove("additionalItems") {
            out.insert("items".into(), rest);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::bridge::rig::{answered, status, Rig};
    use crate::bridge::{filter::ToolFilter, ChildId, Limits, ServerSpec};
    use crate::http::Request;
    use crate::provider::Output;

    fn echo() -> Value {
        json!({
            "name": "echo",
            "title": "Echo Tool",
            "description": "Echoes back the input string",
            "inputSchema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {"message": {"type": "string"}},
                "required": ["message"],
            },
        })
    }

    fn one_server(tools: Vec<Value>) -> Value {
        document(None, &[("everything".to_owned(), tools)], &[])
    }

    /// The schema a `$ref` names, in `document`.
    fn resolve<'a>(document: &'a Value, reference: &Value) -> &'a Value {
        let pointer = reference["$ref"]
            .as_str()
            .unwrap()
            .strip_prefix('#')
            .unwrap();
        document.pointer(pointer).unwrap()
    }

    #[test]
    fn each_tool_is_a_post_operation_its_arguments_its_input_schema() {
        let described = json!({
            "name": "get-structured-content",
            "annotations": {"title": "Structured"},
            "inputSchema": {"type": "object", "properties": {"location": {"type": "string"}}},
            "outputSchema": {"type": "object", "properties": {"temperature": {"type": "number"}}},
        });
        let bare = json!({"name": "get-env"});
        let doc = one_server(vec![echo(), described, bare]);
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"], json!([{"url": "/"}]));
        assert_eq!(doc["security"], json!([{"bearer": []}]));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert!(doc.get("x-unavailable").is_none());
        let paths = doc["paths"].as_object().unwrap();
        let listed: Vec<&str> = paths.keys().map(String::as_str).collect();
        assert_eq!(
            listed,
            [
                "/tools/everything/echo",
                "/tools/everything/get-env",
                "/tools/everything/get-structured-content"
            ]
        );

        let echo = &doc["paths"]["/tools/everything/echo"]["post"];
        assert_eq!(echo["operationId"], "everything__echo");
        assert_eq!(echo["summary"], "Echo Tool");
        assert_eq!(echo["description"], "Echoes back the input string");
        assert_eq!(echo["tags"], json!(["everything"]));
        assert_eq!(echo["requestBody"]["required"], true);
        let arguments = resolve(
            &doc,
            &echo["requestBody"]["content"]["application/json"]["schema"],
        );
        assert_eq!(
            arguments,
            &json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}),
            "the input schema, `$schema` off"
        );
        let result = &echo["responses"]["200"]["content"]["application/json"]["schema"];
        assert_eq!(resolve(&doc, result)["required"], json!(["content"]));
        for status in ["400", "401", "404", "502", "503"] {
            let refusal = resolve(&doc, &echo["responses"][status]);
            let schema = resolve(&doc, &refusal["content"]["application/json"]["schema"]);
            assert_eq!(
                schema["properties"]["error"]["required"],
                json!(["message"]),
                "{status}"
            );
        }

        // No schema: any object; no title: the name.
        let bare = &doc["paths"]["/tools/everything/get-env"]["post"];
        assert_eq!(bare["summary"], "get-env");
        assert!(bare.get("description").is_none());
        let schema = &bare["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(resolve(&doc, schema), &json!({"type": "object"}));

        // An output schema describes the result's structuredContent.
        let structured = &doc["paths"]["/tools/everything/get-structured-content"]["post"];
        assert_eq!(structured["summary"], "Structured");
        let result = &structured["responses"]["200"]["content"]["application/json"]["schema"];
        let content = resolve(&doc, &result["properties"]["structuredContent"]);
        assert_eq!(content["properties"]["temperature"]["type"], "number");
        assert_eq!(result["properties"]["isError"]["type"], "boolean");
    }

    #[test]
    fn names_are_made_identifiers_unique_and_short_and_paths_escaped() {
        let tools = [
            "get-sum",
            "get_sum",
            "get.sum",
            "ünïcode tool",
            &"x".repeat(80),
            &"x".repeat(81),
            "a/b",
            "..",
            "",
        ]
        .map(|name| json!({"name": name}));
        let doc = document(
            Some("2fa.server"),
            &[("2fa.server".to_owned(), tools.to_vec())],
            &[("broken".to_owned(), "it exited".to_owned())],
        );
        assert_eq!(
            doc["info"]["title"],
            "MCP Local Provider: the tools of MCP server 2fa.server"
        );
        assert_eq!(
            doc["x-unavailable"],
            json!([{"server": "broken", "error": "it exited"}])
        );
        let ids: Vec<(&str, &str)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(path, item)| (path.as_str(), item["post"]["operationId"].as_str().unwrap()))
            .collect();
        let long = format!("_2fa_server__{}", "x".repeat(51));
        let long_2 = format!("_2fa_server__{}_2", "x".repeat(49));
        let (x80, x81) = (
            format!("/tools/2fa.server/{}", "x".repeat(80)),
            format!("/tools/2fa.server/{}", "x".repeat(81)),
        );
        let mut expected = vec![
            ("/tools/2fa.server/get-sum", "_2fa_server__get_sum"),
            ("/tools/2fa.server/get_sum", "_2fa_server__get_sum_2"),
            ("/tools/2fa.server/get.sum", "_2fa_server__get_sum_3"),
            (
                "/tools/2fa.server/%C3%BCn%C3%AFcode%20tool",
                "_2fa_server___n_code_tool",
            ),
            (&x80, &long),
            (&x81, &long_2),
        ];
        expected.sort();
        assert_eq!(ids, expected, "`a/b`, `..` and `` cannot be a path segment");
        assert!(ids.iter().all(|(_, id)| id.len() <= MAX_OPERATION_ID));
        // Each operation's arguments are the schema of its id's name.
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        assert!(ids.iter().all(|(_, id)| schemas.contains_key(*id)));
    }

    #[test]
    fn every_servable_name_comes_back_from_its_path_as_it_was() {
        for tool in [
            "echo",
            "get sum",
            "ünï/code",
            "100%",
            "a+b=c",
            "q?x#y",
            "~tilde",
            "...",
        ] {
            let Some(segment) = path_segment(tool) else {
                assert_eq!(tool, "ünï/code");
                continue;
            };
            let target = format!("/tools/s/{segment}");
            let request = Request::new("POST", &target, vec![], Bytes::new()).unwrap();
            let found = crate::bridge::routes::find("POST", request.path())
                .ok()
                .unwrap();
            assert_eq!(found.params.first(), Some(&"s"));
            let decoded = found.params.get(1).and_then(|s| tool_name(s));
            assert_eq!(decoded.as_deref(), Some(tool), "{target}");
        }
        assert_eq!(tool_name("%C3%28"), None, "not UTF-8");
        assert_eq!(tool_name("%4"), None);
    }

    #[test]
    fn a_schema_is_rebased_into_the_document_and_made_2020_12() {
        let pydantic = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "point": {"$ref": "#/$defs/Point"},
                "pair": {"type": "array", "items": [{"type": "number"}, {"$ref": "#"}], "additionalItems": false},
                "$ref": {"type": "string", "description": "a property called $ref"},
            },
            "$defs": {"Point": {"type": "object", "properties": {"x": {"$ref": "#/definitions/X"}}}},
            "definitions": {"X": {"type": "number"}},
            "dependencies": {"a": ["b"], "c": {"$ref": "#/definitions/X"}},
            "anyOf": [{"$ref": "#/$defs/Point"}, {"$ref": "https://example.com/other.json"}],
        });
        let base = "#/components/schemas/s__t";
        assert_eq!(
            rebase(&pydantic, base),
            json!({
                "type": "object",
                "properties": {
                    "point": {"$ref": "#/components/schemas/s__t/$defs/Point"},
                    "pair": {"type": "array", "prefixItems": [{"type": "number"}, {"$ref": base}], "items": false},
                    "$ref": {"type": "string", "description": "a property called $ref"},
                },
                "$defs": {"Point": {"type": "object", "properties": {"x": {"$ref": "#/components/schemas/s__t/definitions/X"}}}},
                "definitions": {"X": {"type": "number"}},
                "dependencies": {"a": ["b"], "c": {"$ref": "#/components/schemas/s__t/definitions/X"}},
                "anyOf": [{"$ref": "#/components/schemas/s__t/$defs/Point"}, {"$ref": "https://example.com/other.json"}],
            })
        );
        // In a document, each reference resolves.
        let tool = json!({"name": "t", "inputSchema": pydantic, "outputSchema": pydantic});
        let doc = document(None, &[("s".to_owned(), vec![tool])], &[]);
        let arguments = &doc["components"]["schemas"]["s__t"];
        let point = resolve(&doc, &arguments["properties"]["point"]);
        assert_eq!(
            resolve(&doc, &point["properties"]["x"]),
            &json!({"type": "number"})
        );
        let output = &doc["components"]["schemas"]["s__t_result"];
        let point = resolve(&doc, &output["properties"]["point"]);
        assert_eq!(point, &output["$defs"]["Point"], "the output schema's own");
    }

    /// A bridge of `echo` (its tool filter leaving out `secret`) and
    /// `other`, whose children the test plays.
    fn rig() -> Rig {
        let mut echo = ServerSpec::new("echo", vec!["echo-mcp".into()]);
        echo.tools = ToolFilter {
            allow: vec![],
            exclude: vec!["secret".into()],
        };
        let other = ServerSpec::new("other", vec!["other-mcp".into()]);
        Rig::of(vec![echo, other], Limits::default())
    }

    fn post(rig: &mut Rig, target: &str, body: &str) -> Vec<Output> {
        rig.request("POST", target, vec![], Bytes::from(body.to_owned()))
            .1
    }

    fn tools(names: &[&str]) -> Value {
        json!({"tools": names.iter().map(|name| json!({"name": name})).collect::<Vec<_>>()})
    }

    #[test]
    fn the_document_has_every_server_s_listed_tools_and_no_filtered_one() {
        let mut rig = rig();
        let (_, out) = rig.request("GET", "/openapi.json", vec![], Bytes::new());
        assert!(out.is_empty(), "answered once both servers listed");
        let (echo, other) = (ChildId(1), ChildId(2));
        // The other server answers first; the document is in their order.
        rig.initializes(other);
        assert_eq!(rig.last_to(other)["method"], "tools/list");
        assert!(rig.answers(other, tools(&["ping"])).is_empty());
        rig.initializes(echo);
        let out = rig.answers(echo, tools(&["read", "secret"]));
        let doc = answered(&out);
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        assert_eq!(paths, ["/tools/echo/read", "/tools/other/ping"]);
        assert_eq!(
            doc["info"]["title"],
            "MCP Local Provider: the bridged MCP tools"
        );
        // Both lists' clients closed with their answers.
        assert!(rig.bridge.children().all(|(_, c)| c.clients() == 0));

        // One server's document, from the list its shared child gave: it
        // is kept until the child says the list changed.
        let (_, out) = rig.request("GET", "/openapi/other.json", vec![], Bytes::new());
        let paths = answered(&out)["paths"].as_object().map(|p| p.len());
        assert_eq!(paths, Some(1), "answered at once");
        let changed = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        rig.says(other, changed);
        // A server that cannot list is left out.
        let (_, out) = rig.request("GET", "/openapi/other.json", vec![], Bytes::new());
        assert!(out.is_empty());
        let asked = rig.last_to(other)["id"].clone();
        let refused = json!({"jsonrpc": "2.0", "id": asked, "error": {"code": -32601, "message": "no tools"}});
        let doc = answered(&rig.says(other, refused));
        assert_eq!(doc["paths"], json!({}));
        assert_eq!(
            doc["x-unavailable"],
            json!([{"server": "other", "error": "no tools"}])
        );
        for (target, expected) in [("/openapi/nope.json", 404), ("/openapi/other", 404)] {
            let (_, out) = rig.request("GET", target, vec![], Bytes::new());
            assert_eq!(status(&out), expected, "{target}");
        }
    }

    #[test]
    fn an_operation_under_an_absurd_start_up_timeout_waits_for_its_list() {
        let echo = ServerSpec::new("echo", vec!["echo-mcp".into()]);
        let limits = Limits {
            startup_timeout: std::time::Duration::from_secs(u64::MAX),
            ..Limits::default()
        };
        let mut rig = Rig::of(vec![echo], limits);
        assert!(post(&mut rig, "/tools/echo/read", "{}").is_empty());
        rig.initializes(ChildId(1));
        assert_eq!(rig.last_to(ChildId(1))["method"], "tools/list");
    }

    #[test]
    fn a_document_of_no_server_is_answered_at_once() {
        let mut rig = Rig::of(vec![], Limits::default());
        let (_, out) = rig.request("GET", "/openapi.json", vec![], Bytes::new());
        assert_eq!(answered(&out)["paths"], json!({}));
    }

    #[test]
    fn an_operation_reads_every_page_of_the_list_then_calls_the_tool_by_the_same_client() {
        let mut rig = rig();
        let echo = ChildId(1);
        assert!(post(&mut rig, "/tools/echo/read", r#"{"path": "/x"}"#).is_empty());
        rig.initializes(echo);
        let mut first = tools(&["write"]);
        first["nextCursor"] = json!("page-2");
        assert!(rig.answers(echo, first).is_empty());
        let asked = rig.last_to(echo);
        assert_eq!(asked["method"], "tools/list");
        assert_eq!(asked["params"]["cursor"], "page-2");
        let mut second = tools(&["read"]);
        second["nextCursor"] = json!("page-3");
        assert!(
            rig.answers(echo, second).is_empty(),
            "no page past the tool's"
        );
        let call = rig.last_to(echo);
        assert_eq!(call["method"], "tools/call");
        assert_eq!(
            call["params"],
            json!({"name": "read", "arguments": {"path": "/x"}})
        );
        assert_eq!(rig.bridge.child(echo).map(|c| c.clients()), Some(1));
        // The tool's own failure is its answer: 200.
        let result =
            json!({"content": [{"type": "text", "text": "no such file"}], "isError": true});
        let out = rig.answers(echo, result.clone());
        assert_eq!(status(&out), 200);
        assert_eq!(answered(&out), result);
        assert_eq!(rig.bridge.child(echo).map(|c| c.clients()), Some(0));

        // An empty body is no arguments.
        post(&mut rig, "/tools/echo/read", "");
        rig.answers(echo, tools(&["read"]));
        assert_eq!(rig.last_to(echo)["params"]["arguments"], json!({}));
    }

    #[test]
    fn a_server_that_pages_without_end_is_read_up_to_the_cap() {
        use super::super::listing::MAX_PAGES;
        let mut rig = rig();
        let echo = ChildId(1);
        rig.request("GET", "/openapi/echo.json", vec![], Bytes::new());
        rig.initializes(echo);
        let mut out = Vec::new();
        for page in 0..MAX_PAGES {
            assert!(out.is_empty(), "answered after {page} pages");
            let mut tools = tools(&[&format!("t{page}")]);
            tools["nextCursor"] = json!("more");
            out = rig.answers(echo, tools);
        }
        let doc = answered(&out);
        assert_eq!(doc["paths"].as_object().map(Map::len), Some(MAX_PAGES));
        assert_eq!(rig.bridge.child(echo).map(|c| c.clients()), Some(0));
    }

    /// What a client reaching the bridge's OpenAPI routes gets for `method`
    /// `target` with `key` (if any) and `body`, through the provider's
    /// checks as the drivers have it: the status and the error's message.
    fn mistake(
        rig: &mut Rig,
        method: &str,
        target: &str,
        key: Option<&str>,
        body: &str,
    ) -> (u16, Value) {
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        headers.extend(key.map(|k| ("authorization".to_owned(), format!("Bearer {k}"))));
        let out = rig.admitted(method, target, headers, Bytes::from(body.to_owned()));
        (status(&out), answered(&out)["error"]["message"].clone())
    }

    #[test]
    fn each_mistake_is_a_clear_error_saying_what_it_is_never_a_500() {
        let mut rig = rig();
        let (_, out) = rig.request("GET", "/openapi/echo.json", vec![], Bytes::new());
        assert!(out.is_empty());
        rig.initializes(ChildId(1));
        let listed = rig.answers(ChildId(1), tools(&["read"]));
        assert_eq!(status(&listed), 200);
        let (nowhere, no_tool) = (
            "no bridged server is called `nowhere`",
            "has no tool `no-such-tool`",
        );
        let (read, arguments, key) = ("/tools/echo/read", r#"{"message": "hi"}"#, Some("key"));
        for (method, target, body, key, expected, says) in [
            ("POST", "/tools/nowhere/read", "{}", key, 404, nowhere),
            ("POST", "/tools/echo/no-such-tool", "{}", key, 404, no_tool),
            ("POST", read, r#"["hi"]"#, key, 400, "a JSON object"),
            ("POST", read, r#""hi""#, key, 400, "a JSON object"),
            ("POST", read, "message=hi", key, 400, "not JSON"),
            ("POST", read, arguments, None, 401, ""),
            ("POST", read, arguments, Some("sk-wrong"), 401, ""),
            ("GET", "/openapi.json", "", None, 401, ""),
            ("GET", "/openapi/nowhere.json", "", key, 404, nowhere),
            ("GET", read, "", key, 405, "not allowed"),
        ] {
            let (status, message) = mistake(&mut rig, method, target, key, body);
            let case = format!("{method} {target} {body} {key:?}");
            assert_eq!(status, expected, "{case}: {message}");
            let message = message
                .as_str()
                .unwrap_or_else(|| panic!("{case}: no message"));
            assert!(message.contains(says), "{case}: {message}");
        }
        assert!(
            rig.child.iter().all(|m| m["method"] != "tools/call"),
            "no mistake reached the server"
        );
    }

    #[test]
    fn what_cannot_be_called_is_refused_and_never_reaches_the_server() {
        let mut rig = rig();
        for (target, body, expected) in [
            ("/tools/nope/read", "{}", 404),
            ("/tools/echo/secret", "{}", 404),
            ("/tools/echo/%C3%28", "{}", 404),
            ("/tools/echo/read", "[1, 2]", 400),
            ("/tools/echo/read", "\"text\"", 400),
            ("/tools/echo/read", "not json", 400),
        ] {
            let out = post(&mut rig, target, body);
            assert_eq!(status(&out), expected, "{target} {body}");
            assert!(answered(&out)["error"]["message"].is_string());
        }
        assert!(rig.child.is_empty(), "no server started: {:?}", rig.child);
        assert_eq!(rig.bridge.children().count(), 0);

        // Not in the list: 404, nothing called.
        let echo = ChildId(1);
        post(&mut rig, "/tools/echo/missing", "{}");
        rig.initializes(echo);
        let out = rig.answers(echo, tools(&["read"]));
        assert_eq!(status(&out), 404);
        let message = answered(&out)["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.contains("`echo` has no tool `missing`"),
            "{message}"
        );
        assert!(rig.child.iter().all(|m| m["method"] != "tools/call"));
        assert_eq!(rig.bridge.child(echo).map(|c| c.clients()), Some(0));

        // The server's errors: arguments it refused 400, the rest 502.
        for (code, expected) in [
            (mcp::INVALID_PARAMS, 400),
            (crate::bridge::SERVER_ERROR, 502),
        ] {
            // The list read above is kept: the call is made at once.
            post(&mut rig, "/tools/echo/read", r#"{"n": "x"}"#);
            assert_eq!(rig.last_to(echo)["method"], "tools/call");
            let asked = rig.last_to(echo)["id"].clone();
            let failed =
                json!({"jsonrpc": "2.0", "id": asked, "error": {"code": code, "message": "no"}});
            let out = rig.says(echo, failed);
            assert_eq!(status(&out), expected);
            assert_eq!(
                answered(&out)["error"],
                json!({"code": code, "message": "no"})
            );
        }
        // A list that fails: 502, saying why (a changed list is read anew).
        let changed = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        rig.says(echo, changed);
        post(&mut rig, "/tools/echo/read", "{}");
        assert_eq!(rig.last_to(echo)["method"], "tools/list");
        let asked = rig.last_to(echo)["id"].clone();
        let failed = json!({"jsonrpc": "2.0", "id": asked, "error": {"code": -32000, "message": "it exited"}});
        let out = rig.says(echo, failed);
        assert_eq!(status(&out), 502);
        assert_eq!(answered(&out)["error"]["message"], "it exited");
    }
}
