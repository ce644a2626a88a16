//! What the tool search did, for `/metrics` and the dashboard: how many
//! searches and `call_tool` calls there were, and the latest searches with
//! the tools each found and which of those its session then called.

use std::collections::VecDeque;

use crate::bridge::{SearchFigures, SearchSeen};
use crate::text::bounded;

/// Searches kept for the dashboard.
pub const KEPT_SEARCHES: usize = 50;
/// The longest query shown, in bytes.
const SHOWN_QUERY: usize = 200;

/// One search kept, with the session that made it.
struct Search {
    session: Option<String>,
    seen: SearchSeen,
}

/// The counts and the latest searches.
#[derive(Default)]
pub struct Seen {
    searches: u64,
    calls: u64,
    /// Newest first, at most [`KEPT_SEARCHES`].
    recent: VecDeque<Search>,
}

impl Seen {
    /// A search of `session` (none: a stateless client) for `query`
    /// found `found`, best first.
    pub fn searched(&mut self, session: Option<&str>, query: &str, found: Vec<String>) {
        self.searches += 1;
        if self.recent.len() >= KEPT_SEARCHES {
            self.recent.pop_back();
        }
        let seen = SearchSeen {
            query: bounded(query, SHOWN_QUERY),
            found,
            called: Vec::new(),
        };
        let session = session.map(str::to_owned);
        self.recent.push_front(Search { session, seen });
    }

    /// `session` called tool `name`, through `call_tool` when `through`:
    /// the latest search of that session that found it notes the call.
    pub fn called(&mut self, session: Option<&str>, name: &str, through: bool) {
        if through {
            self.calls += 1;
        }
        let Some(session) = session else {
            return;
        };
        let latest = self.recent.iter_mut().find(|search| {
            search.session.as_deref() == Some(session)
                && search.seen.found.iter().any(|f| f == name)
        });
        if let Some(search) = latest {
            if !search.seen.called.iter().any(|c| c == name) {
                search.seen.called.push(name.to_owned());
            }
        }
    }

    pub fn figures(&self) -> SearchFigures {
        SearchFigures {
            searches: self.searches,
            calls: self.calls,
            recent: self.recent.iter().map(|s| s.seen.clone()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_call_is_noted_on_its_sessions_latest_search_that_found_it() {
        let mut seen = Seen::default();
        seen.searched(
            Some("s1"),
            "issue",
            names(&["gh__create_issue", "gh__list_issues"]),
        );
        seen.searched(Some("s2"), "issue", names(&["gh__create_issue"]));
        seen.searched(Some("s1"), "files", names(&["files__read"]));
        seen.called(Some("s1"), "gh__create_issue", true);
        seen.called(Some("s1"), "gh__create_issue", false);
        seen.called(Some("s1"), "files__read", false);
        seen.called(None, "files__read", true);
        let figures = seen.figures();
        assert_eq!((figures.searches, figures.calls), (3, 2));
        assert_eq!(figures.recent[0].query, "files");
        assert_eq!(figures.recent[0].called, ["files__read"]);
        assert!(figures.recent[1].called.is_empty(), "another session's");
        assert_eq!(figures.recent[2].called, ["gh__create_issue"]);
    }

    #[test]
    fn only_the_latest_searches_are_kept() {
        let mut seen = Seen::default();
        for n in 0..KEPT_SEARCHES + 5 {
            seen.searched(None, &format!("q{n}"), Vec::new());
        }
        let figures = seen.figures();
        assert_eq!(figures.recent.len(), KEPT_SEARCHES);
        assert_eq!(figures.recent[0].query, format!("q{}", KEPT_SEARCHES + 4));
        assert_eq!(figures.searches, KEPT_SEARCHES as u64 + 5);
    }
}
