//! Many editor tools offered behind a search: when a request hands an
//! agent more tools than it is worth listing whole, its relay lists
//! `search_tools` and `call_tool` instead, and the tools the agent has
//! found so far (most recent first). Every tool stays callable by its own
//! name, and a call through `call_tool` reaches the editor as an ordinary
//! call of that tool: the editor never sees either of the two.
//!
//! The two tools, their arguments, their results and the found list are
//! `/mcp`'s (see [`crate::gateway::aggregate::search`]); the index over a
//! request's tools is built once per tool set and kept for the next
//! requests ([`Indexes`]): an editor sends the same tools with every
//! request of a conversation.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::SERVER;
use crate::agent::quoted;
use crate::gateway::aggregate::search::found::Found;
use crate::gateway::aggregate::search::meta::{self, CallArgs, SearchArgs};
use crate::search::{ToolDoc, ToolIndex};

pub use meta::{CALL_TOOL, SEARCH_TOOLS};

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

/// An offer's search: the index over its tools and the tools found so far.
#[derive(Clone)]
pub struct Search {
    index: Arc<ToolIndex>,
    found: Found,
}

impl std::fmt::Debug for Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Search")
            .field("tools", &self.index.len())
            .field("found", &self.found)
            .finish()
    }
}

/// The same search: over the same index, having found the same tools.
impl PartialEq for Search {
    fn eq(&self, other: &Search) -> bool {
        Arc::ptr_eq(&self.index, &other.index) && self.found == other.found
    }
}

impl Search {
    pub fn new(index: Arc<ToolIndex>) -> Search {
        Search {
            index,
            found: Found::default(),
        }
    }

    /// The tools found so far, the most recent first.
    pub fn found(&self) -> &[String] {
        self.found.names()
    }

    /// What the relay lists: the two tools, then those of `tools` (the
    /// offer's) found so far. A tool of the editor's named like one of the
    /// two is reached through `call_tool`.
    pub fn listing(&self, tools: &[Value]) -> Vec<Value> {
        let found = self
            .found
            .names()
            .iter()
            .filter_map(|name| tools.iter().find(|t| t["name"] == name.as_str()).cloned());
        definitions().into_iter().chain(found).collect()
    }

    /// A `search_tools` call's arguments: its MCP result and whether the
    /// listing changed (the tools found join it), or why the arguments are
    /// wrong.
    pub fn search(&mut self, arguments: &Value) -> Result<(Value, bool), String> {
        let asked = SearchArgs::read(arguments)?;
        if let Some(server) = asked.server.as_deref().filter(|s| *s != SERVER) {
            let server = quoted(&Value::from(server).to_string());
            return Err(format!(
                "{SEARCH_TOOLS}: no server {server}: the editor's tools are all `{SERVER}`'s"
            ));
        }
        let hits = self.index.search(&asked.query, asked.limit, None);
        let changed = self.found.add(hits.iter().map(|hit| hit.doc.name.as_str()));
        let shown: Vec<meta::Hit> = hits
            .iter()
            .map(|hit| meta::Hit {
                name: &hit.doc.name,
                server: SERVER,
                description: &hit.doc.description,
                input_schema: &hit.doc.input_schema,
            })
            .collect();
        Ok((meta::search_result(&asked.query, &shown), changed))
    }

    /// A later offer of the same conversation keeps what this one found,
    /// of the tools it still has.
    pub fn keep_found(&mut self, earlier: &Search) {
        let kept = earlier.found.names().iter().rev();
        let kept = kept.filter(|name| self.index.get(name).is_some());
        self.found = Found::default();
        for name in kept {
            self.found.add([name.as_str()]);
        }
    }
}

/// A `call_tool` call's arguments: the tool it names and the arguments
/// for it, or why they are wrong.
pub fn called(arguments: &Value) -> Result<(String, Value), String> {
    CallArgs::read(arguments).map(|call| (call.name, call.arguments))
}

/// `/mcp`'s two tools, said of the editor's tools: `search_tools` without
/// the choice of a server (the editor's tools are all one's).
fn definitions() -> [Value; 2] {
    let [mut search, mut call] = meta::definitions();
    search["description"] = json!(
        "Finds the editor's tools by what they do, and adds them to your tool list: many are \
         available but not listed. Describe the task in a few words (\"create an issue\", \
         \"take a screenshot of the page\", \"list a directory\"). Each tool found comes with \
         its name, what it does and its input schema; call it by that name, or through call_tool."
    );
    if let Some(properties) = search["inputSchema"]["properties"].as_object_mut() {
        properties.remove("server");
    }
    call["description"] = json!(
        "Calls any of the editor's tools by its name (as search_tools gives it) with its \
         arguments, and returns that tool's own result. Use it for a tool search_tools found \
         that is not in your tool list."
    );
    [search, call]
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
    use crate::gateway::aggregate::search::found::MAX_FOUND;

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
            text.starts_with("create_issue (server editor): Create a new issue"),
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
            json!({"query": "issue", "server": "github"}),
        ] {
            assert!(search.search(&bad).is_err(), "{bad}");
        }
        assert!(search.found().is_empty());
        // The editor's tools are all the relay's server's.
        assert!(search
            .search(&json!({"query": "issue", "server": SERVER}))
            .is_ok());
        assert!(called(&json!({"arguments": {}})).is_err());
        assert!(called(&json!({"name": "x", "arguments": [1]})).is_err());
        assert_eq!(
            called(&json!({"name": "x"})).unwrap(),
            ("x".into(), json!({}))
        );
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
