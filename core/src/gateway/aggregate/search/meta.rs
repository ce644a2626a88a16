//! The two tools the aggregate endpoint lists in search mode,
//! `search_tools` and `call_tool`: their definitions, their arguments read
//! and checked, and the result a search gives.

use serde_json::{json, Value};

/// The meta tool that finds tools by what they do.
pub const SEARCH_TOOLS: &str = "search_tools";
/// The meta tool that calls any tool by its name.
pub const CALL_TOOL: &str = "call_tool";

/// Tools a search gives when it is not asked for a number.
pub const DEFAULT_LIMIT: u64 = 5;
/// The most a search gives, and the most a session keeps listed.
pub const MAX_LIMIT: u64 = 20;
/// The longest query taken, in bytes: a query is a few words, and a
/// longer one would only cost the index time.
pub const MAX_QUERY: usize = 1024;

/// Whether `name` is one of the meta tools (which win over a server's
/// tool of the same name on `/mcp`).
pub fn is_meta(name: &str) -> bool {
    name == SEARCH_TOOLS || name == CALL_TOOL
}

/// What a `search_tools` call asks, checked.
#[derive(Debug, PartialEq)]
pub struct SearchArgs {
    pub query: String,
    pub limit: usize,
    pub server: Option<String>,
}

/// What a `call_tool` call asks, checked.
#[derive(Debug, PartialEq)]
pub struct CallArgs {
    pub name: String,
    pub arguments: Value,
}

impl SearchArgs {
    /// The arguments of a `search_tools` call, or what is wrong with
    /// them (for MCP's "invalid params").
    pub fn read(arguments: &Value) -> Result<SearchArgs, String> {
        let query = match &arguments["query"] {
            Value::String(query) if !query.trim().is_empty() => query,
            Value::Null => return Err(format!("{SEARCH_TOOLS}: `query` is missing")),
            _ => {
                return Err(format!(
                    "{SEARCH_TOOLS}: `query` must be a non-empty string"
                ))
            }
        };
        if query.len() > MAX_QUERY {
            return Err(format!(
                "{SEARCH_TOOLS}: `query` is longer than {MAX_QUERY} bytes; a few words say what the tool should do"
            ));
        }
        let limit = match &arguments["limit"] {
            Value::Null => DEFAULT_LIMIT,
            limit => limit
                .as_u64()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    format!(
                        "{SEARCH_TOOLS}: `limit` must be an integer from 1 to {MAX_LIMIT}, not {limit}"
                    )
                })?,
        };
        let server = match &arguments["server"] {
            Value::Null => None,
            Value::String(server) => Some(server.clone()),
            _ => return Err(format!("{SEARCH_TOOLS}: `server` must be a server's name")),
        };
        Ok(SearchArgs {
            query: query.clone(),
            limit: limit as usize,
            server,
        })
    }
}

impl CallArgs {
    /// The arguments of a `call_tool` call, or what is wrong with them.
    pub fn read(arguments: &Value) -> Result<CallArgs, String> {
        let name = match &arguments["name"] {
            Value::String(name) if !name.is_empty() => name.clone(),
            Value::Null => return Err(format!("{CALL_TOOL}: `name` is missing")),
            _ => return Err(format!("{CALL_TOOL}: `name` must be a tool's name")),
        };
        let arguments = match &arguments["arguments"] {
            Value::Null => json!({}),
            Value::Object(given) => Value::Object(given.clone()),
            _ => return Err(format!("{CALL_TOOL}: `arguments` must be an object")),
        };
        Ok(CallArgs { name, arguments })
    }
}

/// One tool a search found, as its result shows it.
pub struct Hit<'a> {
    pub name: &'a str,
    pub server: &'a str,
    pub description: &'a str,
    pub input_schema: &'a Value,
}

/// A search's `tools/call` result: a line per tool in a text block (its
/// name, server and the first line of its description), and every tool
/// whole in `structuredContent`, best first.
pub fn search_result(query: &str, hits: &[Hit]) -> Value {
    let text = match hits.is_empty() {
        true => format!("No tool of the connected servers matches \"{query}\"."),
        false => hits
            .iter()
            .map(|hit| {
                let first = hit.description.lines().next().unwrap_or_default().trim();
                format!("{} (server {}): {first}", hit.name, hit.server)
            })
            .collect::<Vec<_>>()
            .join("\n"),
    };
    let tools: Vec<Value> = hits
        .iter()
        .map(|hit| {
            json!({
                "name": hit.name,
                "server": hit.server,
                "description": hit.description,
                "inputSchema": hit.input_schema,
            })
        })
        .collect();
    json!({
        "content": [{"type": "text", "text": text}],
        "structuredContent": {"tools": tools},
        "isError": false,
    })
}

/// The two tools' definitions, as `tools/list` gives them.
pub fn definitions() -> [Value; 2] {
    [
        json!({
            "name": SEARCH_TOOLS,
            "title": "Search tools",
            "description": "Finds tools of the MCP servers connected here by what they do, and adds them to your tool list. Describe the task in a few words (\"create an issue\", \"take a screenshot of the page\", \"list a directory\"). Each tool found comes with its name, its server, what it does and its input schema; call it by that name, or through call_tool.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "minLength": 1,
                        "description": "What the tool should do, in a few words."
                    },
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_LIMIT,
                        "default": DEFAULT_LIMIT,
                        "description": "How many tools to give, best first."
                    },
                    "server": {
                        "type": "string",
                        "description": "Only this server's tools (its name, as results give it)."
                    }
                },
                "required": ["query"]
            },
            "outputSchema": {
                "type": "object",
                "properties": {
                    "tools": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "server": {"type": "string"},
                                "description": {"type": "string"},
                                "inputSchema": {"type": "object"}
                            },
                            "required": ["name", "server", "description", "inputSchema"]
                        }
                    }
                },
                "required": ["tools"]
            },
            "annotations": {"readOnlyHint": true, "openWorldHint": false},
        }),
        json!({
            "name": CALL_TOOL,
            "title": "Call a tool",
            "description": "Calls any tool of the MCP servers connected here by its name (as search_tools gives it) with its arguments, and returns that tool's own result. Use it for a tool search_tools found that is not in your tool list.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "name": {
                        "type": "string",
                        "minLength": 1,
                        "description": "The tool's name, as search_tools gives it."
                    },
                    "arguments": {
                        "type": "object",
                        "description": "The tool's arguments, as its input schema asks."
                    }
                },
                "required": ["name"]
            },
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_takes_a_query_and_a_limit_and_a_server() {
        let read = SearchArgs::read(&json!({"query": "open an issue"})).unwrap();
        assert_eq!(
            read,
            SearchArgs {
                query: "open an issue".into(),
                limit: 5,
                server: None
            }
        );
        let read = SearchArgs::read(&json!({"query": "x", "limit": 20, "server": "github"}));
        assert_eq!(read.unwrap().limit, 20);
        let read = SearchArgs::read(&json!({"query": "x", "limit": 1, "server": "github"}));
        assert_eq!(read.unwrap().server.as_deref(), Some("github"));
    }

    #[test]
    fn a_search_refuses_what_it_cannot_take() {
        let refused = |arguments: Value| SearchArgs::read(&arguments).unwrap_err();
        assert!(refused(json!({})).contains("`query` is missing"));
        assert!(refused(json!({"query": "  "})).contains("non-empty"));
        assert!(refused(json!({"query": 7})).contains("non-empty"));
        assert!(refused(json!({"query": "x".repeat(MAX_QUERY + 1)})).contains("longer"));
        for limit in [json!(0), json!(21), json!(-1), json!(2.5), json!("5")] {
            assert!(refused(json!({"query": "x", "limit": limit})).contains("from 1 to 20"));
        }
        assert!(refused(json!({"query": "x", "server": 3})).contains("`server`"));
        assert!(refused(json!(null)).contains("missing"));
    }

    #[test]
    fn a_call_takes_a_name_and_an_object() {
        let read = CallArgs::read(&json!({"name": "git__log"})).unwrap();
        assert_eq!(read.arguments, json!({}));
        let read = CallArgs::read(&json!({"name": "git__log", "arguments": {"n": 1}})).unwrap();
        assert_eq!(read.arguments, json!({"n": 1}));
        let refused = |arguments: Value| CallArgs::read(&arguments).unwrap_err();
        assert!(refused(json!({})).contains("`name` is missing"));
        assert!(refused(json!({"name": ""})).contains("tool's name"));
        assert!(refused(json!({"name": "a", "arguments": [1]})).contains("object"));
    }

    #[test]
    fn a_result_has_a_line_per_tool_and_every_tool_whole() {
        let schema = json!({"type": "object"});
        let hits = [
            Hit {
                name: "git__log",
                server: "git",
                description: "Shows commits.\nMore lines.",
                input_schema: &schema,
            },
            Hit {
                name: "files__read",
                server: "files",
                description: "",
                input_schema: &schema,
            },
        ];
        let result = search_result("log", &hits);
        let text = result["content"][0]["text"].as_str().unwrap();
        assert_eq!(
            text,
            "git__log (server git): Shows commits.\nfiles__read (server files): "
        );
        let tools = &result["structuredContent"]["tools"];
        assert_eq!(tools[0]["description"], "Shows commits.\nMore lines.");
        assert_eq!(tools[1]["inputSchema"], schema);
        let none = search_result("zebra", &[]);
        assert!(none["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("No tool"));
    }
}
