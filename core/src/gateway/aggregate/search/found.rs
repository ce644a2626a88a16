//! The tools an aggregate session has found with `search_tools`, listed
//! after the two meta tools: the most recently found first, at most
//! [`MAX_FOUND`], so a session's list stays small however long it runs.

use super::meta::{is_meta, MAX_LIMIT};

/// Tools a session keeps listed.
pub const MAX_FOUND: usize = MAX_LIMIT as usize;

/// One session's found tools, by their `/mcp` names.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Found {
    /// Most recently found first.
    names: Vec<String>,
}

impl Found {
    /// The names, most recently found first.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Puts `hits` (one search's tools, best first) at the head of the
    /// list, the oldest beyond [`MAX_FOUND`] falling off; the meta tools'
    /// own names are left out (they are listed already). Whether the list
    /// changed.
    pub fn add<'a>(&mut self, hits: impl IntoIterator<Item = &'a str>) -> bool {
        let mut names: Vec<String> = Vec::with_capacity(MAX_FOUND);
        for hit in hits {
            if !is_meta(hit) && !names.iter().any(|n| n == hit) {
                names.push(hit.to_owned());
            }
        }
        for kept in &self.names {
            if !names.contains(kept) {
                names.push(kept.clone());
            }
        }
        names.truncate(MAX_FOUND);
        let changed = names != self.names;
        self.names = names;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_search_comes_first_best_first() {
        let mut found = Found::default();
        assert!(found.add(["a", "b"]));
        assert!(found.add(["c", "a"]));
        assert_eq!(found.names(), ["c", "a", "b"]);
    }

    #[test]
    fn the_same_tools_again_change_nothing() {
        let mut found = Found::default();
        found.add(["a", "b"]);
        assert!(!found.add(["a", "b"]));
        assert!(!found.add(["a"]));
        assert!(!found.add([]));
        assert!(found.add(["b"]));
        assert_eq!(found.names(), ["b", "a"]);
    }

    #[test]
    fn at_most_twenty_are_kept_the_oldest_dropped() {
        let mut found = Found::default();
        let first: Vec<String> = (0..15).map(|n| format!("old{n}")).collect();
        found.add(first.iter().map(String::as_str));
        let second: Vec<String> = (0..10).map(|n| format!("new{n}")).collect();
        found.add(second.iter().map(String::as_str));
        assert_eq!(found.names().len(), MAX_FOUND);
        assert_eq!(found.names()[0], "new0");
        assert_eq!(found.names()[10], "old0");
        assert_eq!(found.names()[19], "old9");
    }

    #[test]
    fn meta_tools_and_repeats_are_not_listed_twice() {
        let mut found = Found::default();
        found.add(["search_tools", "a", "a", "call_tool"]);
        assert_eq!(found.names(), ["a"]);
    }
}
