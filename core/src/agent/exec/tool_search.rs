//! Many editor tools offered behind a search: when a request hands an
//! agent more tools than it is worth listing whole, its relay lists
//! `search_tools` and `call_tool` instead, and the tools the agent has
//! found so far (most recent first). Every tool stays callable by its own
//! name, and a call through `call_tool` reaches the editor as an ordinary
//! call of that tool: the editor never sees either of the two.
//!
//! The index over a request's tools is built once per tool set and kept
//! for the next requests ([`Indexes`]): an editor sends the same tools
//! with every request of a conversation.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::tools::SERVER;
use crate::agent::quoted;
use crate::search::{Hit, ToolDoc, ToolIndex};

/// The tool that finds the editor's tools.
pub const SEARCH_TOOLS: &str = "search_tools";
/// The tool that calls one of them by name.
pub const CALL_TOOL: &str = "call_tool";
/// Tools found that the listing holds, at most.
pub const MAX_FOUND: usize = 20;
/// Tools one search returns, at most and by default.
pub const MAX_LIMIT: u64 = 20;
pub const DEFAULT_LIMIT: u64 = 5;
/// Tool sets whose index is kept: a few editor windows (or an editor's
/// modes) with tool sets of their own.
const KEPT_INDEXES: usize = 4;

/// When a relay offers its tools behind a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolSearch {
    /// Always listed whole.
    Off,
    /// Always behind the search.
    On,
    /// Behind the search when a request offers more than this many.
    Above(usize),
}

/// The tools past which [`ToolSearch::Above`] searches by default: the
/// bridge's own threshold for `/mcp`.
pub const DEFAULT_THRESHOLD: usize = 30;

impl Default for ToolSearch {
    fn default() -> Self {
        ToolSearch::Above(DEFAULT_THRESHOLD)
    }
}

impl ToolSearch {
    /// Whether `tools` tools are offered behind the search.
    pub fn applies(self, tools: usize) -> bool {
        match self {
            ToolSearch::Off => false,
            ToolSearch::On => true,
            ToolSearch::Above(threshold) => tools > threshold,
        }
    }
}

/// The indexes of the tool sets requests came with lately, the latest
/// first.
#[derive(Default)]
pub struct Indexes {
    recent: VecDeque<([u8; 32], Arc<ToolIndex>)>,
}

impl Indexes {
    /// The index over `tools` (MCP tools, as an offer holds them): the
    /// kept one when the same tools came before, else built now.
    pub fn of(&mut self, tools: &[Value]) -> Arc<ToolIndex> {
        let mut hash = Sha256::new();
        for tool in tools {
            hash.update(tool.to_string().as_bytes());
            hash.update([0]);
        }
        let key: [u8; 32] = hash.finalize().into();
        let index = match self.recent.iter().position(|(k, _)| *k == key) {
            Some(at) => self.recent.remove(at).map(|(_, index)| index),
            None => None,
        };
        let index = index.unwrap_or_else(|| Arc::new(ToolIndex::build(docs(tools))));
        self.recent.push_front((key, Arc::clone(&index)));
        self.recent.truncate(KEPT_INDEXES);
        index
    }

    /// How many tool sets are kept.
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }
}

/// MCP tools as the index takes them: the editor's have no server.
fn docs(tools: &[Value]) -> Vec<ToolDoc> {
    let doc = |tool: &Value| ToolDoc {
        name: tool["name"].as_str().unwrap_or_default().to_owned(),
        server: String::new(),
        description: tool["description"].as_str().unwrap_or_default().to_owned(),
        input_schema: tool["inputSchema"].clone(),
    };
    tools.iter().map(doc).collect()
}

/// An offer's search: the index over its tools and the tools found so far,
/// the most recent first.
#[derive(Clone)]
pub struct Search {
    index: Arc<ToolIndex>,
    found: Vec<String>,
}

impl std::fmt::Debug for Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Search")
            .field("tools", &self.index.len())
            .field("found", &self.found)
            .finish()
    }
}

impl PartialEq for Search {
    fn eq(&self, other: &Search) -> bool {
        Arc::ptr_eq(&self.index, &other.index) && self.found == other.found
    }
}

impl Search {
    pub fn new(index: Arc<ToolIndex>) -> Search {
        Search {
            index,
            found: Vec::new(),
        }
    }

    /// The tools found so far, the most recent first.
    pub fn found(&self) -> &[String] {
        &self.found
    }

    /// What the relay lists: the two tools, then those of `tools` (the
    /// offer's) found so far. A tool of the editor's named like one of the
    /// two is reached through `call_tool`.
    pub fn listing(&self, tools: &[Value]) -> Vec<Value> {
        let found = self.found.iter().filter_map(|name| {
            let meta = name == SEARCH_TOOLS || name == CALL_TOOL;
            let tool = tools.iter().find(|t| t["name"] == name.as_str());
            tool.filter(|_| !meta).cloned()
        });
        [search_tools_tool(), call_tool_tool()]
            .into_iter()
            .chain(found)
            .collect()
    }

    /// A `search_tools` call's arguments: its MCP result and whether the
    /// listing changed (the tools found join it), or why the arguments are
    /// wrong.
    pub fn search(&mut self, arguments: &Value) -> Result<(Value, bool), String> {
        let query = match &arguments["query"] {
            Value::String(query) if !query.trim().is_empty() => query,
            Value::String(_) => return Err("`query` is empty: say what the tool should do".into()),
            _ => return Err("`query` (a string) is missing".into()),
        };
        let limit = match &arguments["limit"] {
            Value::Null => DEFAULT_LIMIT,
            limit => limit
                .as_u64()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or(format!("`limit` must be an integer from 1 to {MAX_LIMIT}"))?,
        };
        let hits = self.index.search(query, limit as usize, None);
        let before = self.found.clone();
        for hit in hits.iter().rev() {
            self.found.retain(|name| *name != hit.doc.name);
            self.found.insert(0, hit.doc.name.clone());
        }
        self.found.truncate(MAX_FOUND);
        let changed = self.found != before;
        Ok((found_result(&hits, query), changed))
    }

    /// A later offer of the same conversation keeps what this one found,
    /// of the tools it still has.
    pub fn keep_found(&mut self, earlier: &Search) {
        self.found = earlier
            .found
            .iter()
            .filter(|name| self.index.get(name).is_some())
            .cloned()
            .collect();
    }
}

/// A `call_tool` call's arguments: the tool it names and the arguments
/// for it, or why they are wrong.
pub fn called(arguments: &Value) -> Result<(&str, Value), String> {
    let name = arguments["name"]
        .as_str()
        .ok_or("`name` (a string: the tool to call) is missing")?;
    match &arguments["arguments"] {
        Value::Null => Ok((name, json!({}))),
        Value::Object(inner) => Ok((name, Value::Object(inner.clone()))),
        _ => Err("`arguments` must be an object".into()),
    }
}

/// The result of a search: a line per tool for the model to read, and the
/// tools whole in `structuredContent`, best first.
fn found_result(hits: &[Hit], query: &str) -> Value {
    let mut text = match hits.len() {
        0 => format!(
            "No tool matches {}: try other words.",
            quoted(&Value::from(query).to_string())
        ),
        n => format!("{n} found; call one with {CALL_TOOL}, or by its name:"),
    };
    for hit in hits {
        let line = hit.doc.description.lines().next().unwrap_or_default();
        text.push_str(&format!("\n- {} ({SERVER}): {line}", hit.doc.name));
    }
    let tools: Vec<Value> = hits
        .iter()
        .map(|hit| {
            json!({"name": hit.doc.name, "server": SERVER,
                   "description": hit.doc.description, "inputSchema": hit.doc.input_schema})
        })
        .collect();
    json!({"content": [{"type": "text", "text": text}],
           "structuredContent": {"tools": tools}, "isError": false})
}

/// `search_tools` as the relay lists it.
fn search_tools_tool() -> Value {
    json!({
        "name": SEARCH_TOOLS,
        "description": "Finds the editor's tools for a task. Many tools are available but not \
            listed: say in a few words what you want to do, and the best matches are returned \
            (name, description, input schema) and added to this server's tool list. Call one \
            with call_tool, or by its name.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What the tool should do, in a few words"},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT,
                          "description": "How many tools to return at most"},
            },
            "required": ["query"],
        },
        "annotations": {"readOnlyHint": true},
    })
}

/// `call_tool` as the relay lists it. Marked read-only as every tool of
/// the relay is: the editor runs the call, after its own approval.
fn call_tool_tool() -> Value {
    json!({
        "name": CALL_TOOL,
        "description": "Calls one of the editor's tools by its name, as search_tools found it, \
            with its arguments; returns that tool's result.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "The tool's name"},
                "arguments": {"type": "object", "description": "The tool's arguments, as its input schema says"},
            },
            "required": ["name"],
        },
        "annotations": {"readOnlyHint": true},
    })
}

/// Tools as an editor hands them (OpenAI function tools): a few real ones
/// (GitHub's, Playwright's, the filesystem server's), then chores up to
/// `n` in all.
#[cfg(test)]
pub(crate) fn chat_tools(n: usize) -> Value {
    let real = [
        (
            "create_issue",
            "Create a new issue in a GitHub repository.",
            "title",
        ),
        (
            "list_issues",
            "List issues in a GitHub repository.",
            "state",
        ),
        (
            "create_pull_request",
            "Create a new pull request in a GitHub repository.",
            "head",
        ),
        (
            "get_file_contents",
            "Get the contents of a file or directory from a GitHub repository.",
            "path",
        ),
        ("browser_navigate", "Navigate to a URL.", "url"),
        (
            "browser_take_screenshot",
            "Take a screenshot of the current page.",
            "filename",
        ),
        (
            "list_directory",
            "Get a detailed listing of all files and directories in a specified path.",
            "path",
        ),
        (
            "write_file",
            "Create a new file or completely overwrite an existing file with new content.",
            "content",
        ),
    ];
    let chores = (real.len()..n).map(|i| {
        (
            format!("chore_{i}"),
            format!("Does unrelated chore number {i}."),
            "level".to_owned(),
        )
    });
    let tools = real
        .iter()
        .map(|(name, description, parameter)| {
            (name.to_string(), description.to_string(), parameter.to_string())
        })
        .chain(chores)
        .take(n)
        .map(|(name, description, parameter)| {
            json!({"type": "function", "function": {"name": name, "description": description,
                   "parameters": {"type": "object", "properties": {parameter.clone(): {"type": "string"}},
                                  "required": [parameter]}}})
        });
    Value::Array(tools.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::exec::tools::Offer;

    fn offer(n: usize, mode: ToolSearch, indexes: &mut Indexes) -> Offer {
        let payload =
            json!({"kind": "chat", "messages": [], "parameters": {"tools": chat_tools(n)}});
        Offer::of(&payload).unwrap().searched(mode, indexes)
    }

    fn names(tools: &[Value]) -> Vec<&str> {
        tools.iter().filter_map(|t| t["name"].as_str()).collect()
    }

    #[test]
    fn past_the_threshold_the_tools_are_listed_behind_the_search() {
        let mut indexes = Indexes::default();
        let many = offer(40, ToolSearch::default(), &mut indexes);
        assert_eq!(names(&many.listing()), [SEARCH_TOOLS, CALL_TOOL]);
        assert!(many.has("chore_39") && many.has("create_issue"));
        let few = offer(30, ToolSearch::default(), &mut indexes);
        assert_eq!(few.search, None);
        assert_eq!(few.listing().len(), 30);
        assert_eq!(offer(40, ToolSearch::Off, &mut indexes).listing().len(), 40);
        assert_eq!(offer(2, ToolSearch::On, &mut indexes).listing().len(), 2);
        assert!(offer(2, ToolSearch::On, &mut indexes).search.is_some());
    }

    #[test]
    fn a_tool_set_is_indexed_once_and_a_few_sets_are_kept() {
        let mut indexes = Indexes::default();
        let a = offer(40, ToolSearch::On, &mut indexes);
        let again = offer(40, ToolSearch::On, &mut indexes);
        assert_eq!(a.search, again.search, "the same index, nothing found yet");
        for n in 41..41 + KEPT_INDEXES {
            offer(n, ToolSearch::On, &mut indexes);
        }
        assert_eq!(indexes.len(), KEPT_INDEXES);
        let rebuilt = offer(40, ToolSearch::On, &mut indexes);
        assert_ne!(a.search, rebuilt.search, "the oldest set was dropped");
    }

    #[test]
    fn a_search_lists_what_it_found_the_latest_first() {
        let mut indexes = Indexes::default();
        let mut offer = offer(40, ToolSearch::default(), &mut indexes);
        let search = offer.search.as_mut().unwrap();
        let (result, changed) = search
            .search(&json!({"query": "open a bug report"}))
            .unwrap();
        assert!(changed);
        let found = &result["structuredContent"]["tools"];
        assert_eq!(found[0]["name"], "create_issue");
        assert_eq!(found[0]["server"], SERVER);
        assert_eq!(found[0]["inputSchema"]["required"], json!(["title"]));
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(
            text.contains("- create_issue (editor): Create a new issue"),
            "{text}"
        );
        let (_, changed) = search
            .search(&json!({"query": "screenshot", "limit": 1}))
            .unwrap();
        assert!(changed);
        let listed = offer.listing();
        assert_eq!(
            names(&listed)[..4],
            [
                SEARCH_TOOLS,
                CALL_TOOL,
                "browser_take_screenshot",
                "create_issue"
            ]
        );
        // The tools found are listed whole, as the editor gave them.
        assert_eq!(listed[3]["inputSchema"]["required"], json!(["title"]));
        // The same search again changes nothing.
        let search = offer.search.as_mut().unwrap();
        let (_, changed) = search
            .search(&json!({"query": "screenshot", "limit": 1}))
            .unwrap();
        assert!(!changed);
        let (nothing, changed) = search.search(&json!({"query": "zzyzx"})).unwrap();
        assert!(!changed);
        assert_eq!(nothing["structuredContent"]["tools"], json!([]));
    }

    #[test]
    fn at_most_twenty_found_tools_are_listed() {
        let mut indexes = Indexes::default();
        let mut offer = offer(60, ToolSearch::default(), &mut indexes);
        let search = offer.search.as_mut().unwrap();
        for n in [10, 20, 30] {
            let query = (n..n + 10)
                .map(|i| format!("chore_{i}"))
                .collect::<Vec<_>>()
                .join(" ");
            search
                .search(&json!({"query": query, "limit": 10}))
                .unwrap();
        }
        assert_eq!(search.found().len(), MAX_FOUND);
        assert_eq!(offer.listing().len(), 2 + MAX_FOUND);
    }

    #[test]
    fn bad_arguments_are_refused_and_change_nothing() {
        let mut indexes = Indexes::default();
        let mut offer = offer(40, ToolSearch::default(), &mut indexes);
        let search = offer.search.as_mut().unwrap();
        for bad in [
            json!({}),
            json!({"query": "  "}),
            json!({"query": 3}),
            json!({"query": "issue", "limit": 0}),
            json!({"query": "issue", "limit": 21}),
            json!({"query": "issue", "limit": 2.5}),
            json!({"query": "issue", "limit": "5"}),
        ] {
            assert!(search.search(&bad).is_err(), "{bad}");
        }
        assert!(search.found().is_empty());
        assert!(called(&json!({"arguments": {}})).is_err());
        assert!(called(&json!({"name": "x", "arguments": [1]})).is_err());
        assert_eq!(called(&json!({"name": "x"})).unwrap(), ("x", json!({})));
    }

    #[test]
    fn a_later_offer_keeps_what_was_found_of_the_tools_it_still_has() {
        let mut indexes = Indexes::default();
        let mut first = offer(40, ToolSearch::default(), &mut indexes);
        let search = first.search.as_mut().unwrap();
        search
            .search(&json!({"query": "create issue", "limit": 1}))
            .unwrap();
        search
            .search(&json!({"query": "chore_39", "limit": 1}))
            .unwrap();
        let mut next = offer(40, ToolSearch::default(), &mut indexes);
        next.keep_found(Some(&first));
        assert_eq!(names(&next.listing())[2..], ["chore_39", "create_issue"]);
        let mut fewer = offer(35, ToolSearch::default(), &mut indexes);
        fewer.keep_found(Some(&first));
        assert_eq!(names(&fewer.listing())[2..], ["create_issue"]);
    }
}
