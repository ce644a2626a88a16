//! The aggregate's tools as the search knows them: one [`ToolIndex`] over
//! every tool `/mcp` would list (named as it lists them), with each tool's
//! whole definition for the sessions' lists, and what it was built from,
//! so that it is built again only when a listing changed.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use serde_json::Value;

use super::super::super::gather::Part;
use crate::bridge::ChildId;
use crate::search::{ToolDoc, ToolIndex};

/// What a catalog was built from, when every server's list was a kept
/// one: each server's name and prefix, and its kept list's version. The
/// same stamp now means the same lists, with no need to ask.
pub type Stamp = Vec<(String, String, ChildId, u64)>;

pub struct Catalog {
    index: ToolIndex,
    /// Each tool's definition as the plain list gives it, by its name.
    entries: HashMap<String, Value>,
    /// `None`: some server's list was not kept, so the tools are listed
    /// again whenever they are needed (and indexed only if they changed).
    stamp: Option<Stamp>,
    /// A hash of the tools it holds.
    content: u64,
}

impl Catalog {
    /// The catalog of `parts` (the servers' `tools/list` answers, named
    /// as `/mcp` lists them): `slot`'s own when it holds the same tools
    /// (given the new `stamp`), else built anew.
    pub fn renew(slot: &mut Option<Catalog>, parts: &[Part], stamp: Option<Stamp>) {
        let tools = || {
            parts.iter().flat_map(|(server, part)| {
                let listed = part
                    .as_ref()
                    .ok()
                    .and_then(|a| a["result"]["tools"].as_array());
                listed
                    .into_iter()
                    .flatten()
                    .map(move |entry| (server.as_str(), entry))
            })
        };
        let mut hasher = DefaultHasher::new();
        for (server, entry) in tools() {
            server.hash(&mut hasher);
            entry.to_string().hash(&mut hasher);
        }
        let content = hasher.finish();
        if let Some(same) = slot.as_mut().filter(|c| c.content == content) {
            same.stamp = stamp;
            return;
        }
        let mut docs = Vec::new();
        let mut entries = HashMap::new();
        for (server, entry) in tools() {
            let Some(name) = entry["name"].as_str() else {
                continue;
            };
            if entries.insert(name.to_owned(), entry.clone()).is_some() {
                continue;
            }
            docs.push(ToolDoc {
                name: name.to_owned(),
                server: server.to_owned(),
                description: entry["description"].as_str().unwrap_or_default().to_owned(),
                input_schema: entry["inputSchema"].clone(),
            });
        }
        *slot = Some(Catalog {
            index: ToolIndex::build(docs),
            entries,
            stamp,
            content,
        });
    }

    pub fn index(&self) -> &ToolIndex {
        &self.index
    }

    /// Tool `name`'s definition as the plain list gives it.
    pub fn entry(&self, name: &str) -> Option<&Value> {
        self.entries.get(name)
    }

    /// How many tools `/mcp` would list.
    pub fn count(&self) -> usize {
        self.index.len()
    }

    /// Whether it holds the tools of the lists `now` stamps (none: some
    /// list is not kept, and must be asked for).
    pub fn current(&self, now: Option<&Stamp>) -> bool {
        now.is_some() && self.stamp.as_ref() == now
    }
}
