//! The words people use for a tool's verbs and nouns when they do not know
//! its name: "bug" for issue, "PR" for pull request, "folder" for
//! directory. A query term brings in the other words of its group, weighted
//! below the words actually typed. Besides the built-in groups, the index
//! learns abbreviations from the listings themselves (see [`learn`]): a
//! tool named `list_prs` described as "List pull requests" teaches "pr" ↔
//! "pull request", `get_repo` beside "repository" teaches "repo" ↔
//! "repository".

use std::collections::HashMap;

use super::tokens;

/// Groups of words and phrases that ask for the same thing, as people
/// write them; each is stemmed when the table is built.
#[rustfmt::skip]
const GROUPS: &[&[&str]] = &[
    // Verbs.
    &["create", "make", "new", "add", "generate", "open a", "open an", "leave a", "leave an",
        "file a", "file an", "raise a", "raise an", "cut a", "cut an", "spin up"],
    &["delete", "remove", "erase", "destroy", "rm", "unlink", "drop", "discard", "forget", "purge",
        "get rid of", "clean up", "tear down", "wipe"],
    &["find", "search", "lookup", "look up", "look for", "query", "locate", "grep", "seek", "filter"],
    &["get", "fetch", "read", "show", "retrieve", "view", "display", "see", "obtain", "load",
        "details", "info", "grab", "pull up"],
    &["list", "enumerate", "ls", "browse", "show"],
    &["run", "execute", "exec", "invoke", "launch", "trigger", "start", "kick off"],
    &["edit", "update", "modify", "change", "alter", "patch", "set", "rewrite", "tweak"],
    &["replace", "swap", "substitute", "find and replace", "search and replace"],
    &["write", "save", "store", "persist", "put"],
    &["move", "rename", "relocate", "mv"],
    &["copy", "duplicate", "clone", "fork"],
    &["close", "shut", "dismiss"],
    &["navigate", "go", "visit", "goto", "open url"],
    &["click", "press", "tap", "hit"],
    &["type", "enter", "fill", "input"],
    &["upload", "push", "send", "post", "publish"],
    &["download", "fetch", "pull"],
    &["wait", "pause", "sleep", "delay"],
    &["convert", "translate", "transform"],
    &["compare", "diff", "difference"],
    &["review", "approve", "look over", "lgtm", "sign off"],
    &["request", "ask", "ask for"],
    &["reply", "respond", "answer", "response"],
    &["merge", "combine", "squash"],
    &["assign", "assignee", "hand over", "hand off", "reassign"],
    &["subscription", "subscribe", "unsubscribe", "watch", "unwatch", "mute"],
    &["evaluate", "eval", "javascript", "js", "script"],
    &["think", "reason", "thought", "reflect", "plan"],
    &["hover", "mouseover", "mouse over"],
    &["resize", "size", "dimension", "viewport"],
    &["remember", "memory", "memorize", "recall", "knowledge", "forget"],
    &["blame", "who wrote", "who changed", "author"],
    // Nouns.
    &["issue", "bug", "ticket", "defect", "bug report", "bug tracker", "issue tracker"],
    &["sub issue", "child issue", "child ticket", "child task", "subtask", "sub task", "epic"],
    &["project", "board", "kanban", "roadmap", "sprint"],
    &["dependency", "blocked by", "blocking", "blocks", "depends on", "depend on", "prerequisite"],
    &["duplicate", "dupe", "dup", "same as"],
    &["pull request", "pr", "merge request", "mr"],
    &["directory", "folder", "dir"],
    &["repository", "repo", "project", "codebase"],
    &["commit", "changeset", "revision"],
    &["file", "document", "doc"],
    &["page", "website", "web page", "site", "browser", "tab", "url", "webpage", "link"],
    &["screenshot", "capture", "screen capture", "screengrab", "picture", "image"],
    &["user", "account", "person", "member", "people", "profile", "who"],
    &["notification", "notify", "alert", "inbox", "email"],
    &["time", "clock", "date", "timezone", "hour"],
    &["current", "now", "right now", "currently", "what time is it", "today"],
    &["label", "tag"],
    &["workflow", "action", "pipeline", "ci", "job", "build"],
    &["log", "logs", "output", "console", "history"],
    &["release", "version", "ship", "shipped"],
    &["comment", "reply", "remark"],
    &["entity", "node", "item"],
    &["relation", "edge", "link", "connection"],
    &["observation", "fact", "note"],
    &["secret", "credential", "key"],
    &["dialog", "popup", "modal", "prompt", "confirm", "confirmation", "are you sure"],
    &["go back", "back button", "previous page", "browser back"],
    &["visible", "appear", "show up", "shows up", "displayed", "on screen", "present", "rendered"],
    &["viewport", "window", "screen size", "window size"],
    &["multiple", "several", "at once", "batch", "bulk"],
    &["sum", "add up", "plus", "total", "addition", "calculate"],
    &["network", "request", "http"],
    &["tree", "hierarchy", "structure", "layout", "recursive", "recursively"],
    &["star", "favorite", "bookmark"],
    &["text", "string", "content"],
    &["organization", "org", "team"],
    &["discussion", "forum", "thread"],
    &["security", "vulnerability", "alert", "advisory"],
    &["code", "source", "defined", "definition", "symbol", "function"],
    &["code scanning", "codeql", "static analysis", "sast", "lint", "linter"],
    &["copilot", "ai", "llm", "bot"],
    &["distance", "far", "how far", "mile", "kilometer"],
    &["authenticated user", "me", "myself", "whoami", "who am i", "logged in", "signed in",
        "current user"],
    // Processes, terminals, machines.
    &["kill", "terminate", "stop", "abort", "cancel", "halt", "end"],
    &["process", "program", "pid", "running app", "cpu", "memory usage", "resource usage",
        "htop", "task manager"],
    &["kubernetes", "k8s", "kube", "kubectl"],
    &["terminal", "shell", "command line", "bash", "command", "console session"],
    &["restart", "rerun", "re run", "retry", "run again", "reboot"],
    &["install", "deploy", "set up", "setup", "provision"],
    &["rollback", "roll back", "revert", "undo", "previous version", "restore", "rollout"],
    &["port forward", "forward", "tunnel", "expose", "localhost", "port"],
    &["cluster", "context", "kubeconfig"],
    &["pod", "container"],
    &["switch", "change to", "select", "set current"],
    &["scale", "replica", "replicas"],
    // Code and its hosting.
    &["status", "uncommitted", "modified", "dirty", "working tree", "working copy",
        "pending changes", "changes"],
    &["stage", "staged", "index"],
    &["unstage", "reset"],
    &["log", "commit history", "history", "last commits", "recent commits"],
    &["branch", "checkout"],
    &["dependency", "dependencies", "package", "packages", "library", "module", "dependabot"],
    &["vulnerability", "cve", "dependabot", "security advisory", "exploit", "vulnerable"],
    &["secret", "password", "token", "api key", "leak", "leaked", "credential"],
    &["permission", "access", "role", "collaborator", "rights"],
    &["gist", "snippet", "paste"],
    &["readme", "file contents", "contents", "inside"],
    &["error", "exception", "crash", "failure", "fail", "failed", "broken"],
    &["documentation", "docs", "manual", "reference", "api reference", "guide"],
    // Browsers and pages.
    &["console", "devtools", "javascript error", "js error", "console message"],
    &["network request", "api call", "api calls", "xhr", "traffic", "network"],
    &["form", "field", "textbox", "text box", "box", "input"],
    &["keyboard", "key", "keystroke", "shortcut", "hotkey", "enter", "escape", "esc", "backspace"],
    &["mouse", "cursor", "pointer"],
    &["element", "button", "selector", "widget"],
    &["scroll", "wheel", "page down"],
    &["pdf", "print"],
    &["cookie", "storage", "local storage"],
    &["select", "choose", "pick", "dropdown", "picker", "option"],
    &["video", "movie", "recording", "record", "screencast"],
    &["verify", "assert", "check", "expect", "ensure", "make sure"],
    // Shell commands, for what they do.
    &["mkdir", "create directory"],
    &["cat", "read file"],
    &["cp", "copy"],
    &["ps", "list processes"],
    &["curl", "wget", "fetch url", "download"],
    &["touch", "create file"],
    // Places and the web.
    &["elevation", "altitude", "height", "above sea level", "sea level", "how high"],
    &["direction", "route", "drive", "driving", "travel", "commute", "navigation", "how to get"],
    &["duration", "how long", "travel time", "eta"],
    &["place", "restaurant", "shop", "store", "business", "cafe", "coffee", "nearby", "near",
        "opening hours"],
    &["coordinate", "latitude", "longitude", "lat", "lng", "gps", "lat long"],
    &["address", "street"],
    &["news", "headline", "article", "blog", "blog post"],
    &["latest", "newest", "most recent", "recent", "recently", "lately", "most recently"],
    &["web", "internet", "online", "google"],
    // Data, messages, memory.
    &["sql", "database", "db", "table", "select", "row", "rows", "records", "how many", "count",
        "data source"],
    &["message", "chat", "dm", "post", "say", "said", "saying", "talk", "conversation"],
    &["channel", "room"],
    &["reaction", "emoji", "react", "thumbs up", "thumbsup", "upvote"],
    &["size", "how big", "bytes", "large"],
    &["modified time", "last modified", "timestamp", "metadata", "info"],
    &["person", "people", "entity", "contact", "someone"],
    &["fact", "observation", "remember that", "note"],
];

/// How much a word brought in by a synonym counts against a word typed.
pub const SYNONYM_WEIGHT: f32 = 0.5;

/// How much a group's first word, the one tools' listings use ("create"
/// for "file a", "make", "add"), counts when another word of its group
/// brings it in: more than the other words, which people say but
/// listings seldom do.
pub const HEAD_WEIGHT: f32 = 0.7;

/// How much a learned abbreviation counts against a word typed: it comes
/// from the listing itself, so it is near the word.
pub const LEARNED_WEIGHT: f32 = 0.8;

/// The synonym table of one index: for each stemmed term, the phrases it
/// can start and, for each, the phrases (as terms) it brings in and at
/// which weight.
#[derive(Debug, Default)]
pub struct Synonyms {
    by_first: HashMap<String, Vec<Entry>>,
}

#[derive(Debug)]
struct Entry {
    phrase: Vec<String>,
    expansions: Vec<(Vec<String>, f32)>,
}

impl Synonyms {
    /// The built-in groups plus `learned` pairs (see [`learn`]).
    pub fn new(learned: Vec<(Vec<String>, Vec<String>)>) -> Synonyms {
        let mut table = Synonyms::default();
        for group in GROUPS {
            let phrases: Vec<Vec<String>> = group
                .iter()
                .map(|p| tokens::stemmed_words(p).0)
                .filter(|p| !p.is_empty())
                .collect();
            for (i, phrase) in phrases.iter().enumerate() {
                let others = phrases
                    .iter()
                    .enumerate()
                    .filter(|(j, other)| *j != i && *other != phrase)
                    .map(|(j, other)| {
                        let weight = if j == 0 { HEAD_WEIGHT } else { SYNONYM_WEIGHT };
                        (other.clone(), weight)
                    })
                    .collect();
                table.add(phrase.clone(), others);
            }
        }
        for (short, long) in learned {
            table.add(short.clone(), vec![(long.clone(), LEARNED_WEIGHT)]);
            table.add(long, vec![(short, LEARNED_WEIGHT)]);
        }
        table
    }

    fn add(&mut self, phrase: Vec<String>, expansions: Vec<(Vec<String>, f32)>) {
        let Some(first) = phrase.first().cloned() else {
            return;
        };
        let entries = self.by_first.entry(first).or_default();
        match entries.iter_mut().find(|e| e.phrase == phrase) {
            Some(entry) => entry.expansions.extend(expansions),
            None => entries.push(Entry { phrase, expansions }),
        }
    }

    /// Calls `each(start, len, expansion, weight)` for every phrase that
    /// the synonyms of `words` (a query's words, as
    /// [`tokens::stemmed_words`] gives them) bring in: the phrase it stands
    /// for is `words[start..start + len]`.
    pub fn expand<'s>(
        &'s self,
        words: &[String],
        mut each: impl FnMut(usize, usize, &'s [String], f32),
    ) {
        for start in 0..words.len() {
            let Some(entries) = self.by_first.get(&words[start]) else {
                continue;
            };
            for entry in entries {
                if words[start..].starts_with(&entry.phrase) {
                    for (expansion, weight) in &entry.expansions {
                        each(start, entry.phrase.len(), expansion, *weight);
                    }
                }
            }
        }
    }

    /// Approximate heap bytes of the table.
    pub fn heap_bytes(&self) -> usize {
        let strings = |v: &Vec<String>| -> usize {
            v.capacity() * std::mem::size_of::<String>()
                + v.iter().map(String::capacity).sum::<usize>()
        };
        self.by_first.capacity() * (std::mem::size_of::<(String, Vec<Entry>)>() + 1)
            + self
                .by_first
                .iter()
                .map(|(k, entries)| {
                    k.capacity()
                        + entries.capacity() * std::mem::size_of::<Entry>()
                        + entries
                            .iter()
                            .map(|e| {
                                strings(&e.phrase)
                                    + e.expansions.capacity()
                                        * std::mem::size_of::<(Vec<String>, f32)>()
                                    + e.expansions.iter().map(|(p, _)| strings(p)).sum::<usize>()
                            })
                            .sum::<usize>()
                })
                .sum::<usize>()
    }
}

/// Abbreviations a listing teaches: a word of a tool's name that is the
/// start of a longer word of its description ("repo" → "repository",
/// "dir" → "directory"), or the initials of consecutive description words
/// ("pr" → "pull request"). Returns (short, long) pairs as terms, each pair
/// once.
pub fn learn<'a>(
    tools: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<(Vec<String>, Vec<String>)> {
    let mut pairs: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for (name, description) in tools {
        let mut name_words = Vec::new();
        tokens::words(name, |w| name_words.push(w));
        let mut desc_words = Vec::new();
        tokens::words(description, |w| desc_words.push(w));
        let desc_stems: Vec<String> = desc_words.iter().map(|w| tokens::stem(w)).collect();
        for word in name_words.iter().filter(|w| (2..=5).contains(&w.len())) {
            let short = singular(word);
            // A word the description spells out is no abbreviation.
            if [word.as_str(), short]
                .iter()
                .any(|w| desc_stems.contains(&tokens::stem(w)))
            {
                continue;
            }
            if let Some(long) = abbreviated(short, &desc_words) {
                let pair = (
                    vec![tokens::stem(short)],
                    long.iter().map(|w| tokens::stem(w)).collect(),
                );
                if !pairs.contains(&pair) {
                    pairs.push(pair);
                }
            }
        }
    }
    pairs
}

/// "prs" → "pr": abbreviations take a plain "s" for their plural.
fn singular(word: &str) -> &str {
    match word.strip_suffix('s') {
        Some(base) if base.len() >= 2 => base,
        _ => word,
    }
}

/// The description words `short` abbreviates, if any: one word it is a
/// strict prefix of (at least three letters of it), or two or three
/// consecutive words whose initials it is.
fn abbreviated<'w>(short: &str, words: &'w [String]) -> Option<&'w [String]> {
    if short.len() >= 3 {
        if let Some(i) = words
            .iter()
            .position(|w| w.len() > short.len() && w.starts_with(short))
        {
            return Some(&words[i..=i]);
        }
    }
    let n = short.len();
    if (2..=3).contains(&n) && short.bytes().all(|b| b.is_ascii_lowercase()) {
        for window in words.windows(n) {
            let initials = window.iter().all(|w| w.len() > 1)
                && window
                    .iter()
                    .zip(short.bytes())
                    .all(|(w, b)| w.as_bytes().first() == Some(&b));
            if initials {
                return Some(window);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(table: &Synonyms, query: &str) -> Vec<(String, f32)> {
        let (words, _) = tokens::stemmed_words(query);
        let mut out = Vec::new();
        table.expand(&words, |_, _, phrase, w| {
            out.extend(phrase.iter().map(|t| (t.clone(), w)))
        });
        out
    }

    #[test]
    fn a_bug_is_an_issue_and_a_folder_a_directory() {
        let table = Synonyms::new(Vec::new());
        let bug = expanded(&table, "bug");
        assert!(
            bug.contains(&(tokens::stem("issue"), HEAD_WEIGHT)),
            "{bug:?}"
        );
        let folder = expanded(&table, "folders");
        assert!(
            folder.iter().any(|(t, _)| *t == tokens::stem("directory")),
            "{folder:?}"
        );
    }

    #[test]
    fn a_phrase_matches_only_whole() {
        let table = Synonyms::new(Vec::new());
        let pr = expanded(&table, "review the pull request");
        assert!(pr.iter().any(|(t, _)| t == "pr"), "{pr:?}");
        let pull = expanded(&table, "pull the latest changes");
        assert!(!pull.iter().any(|(t, _)| t == "pr"), "{pull:?}");
    }

    #[test]
    fn abbreviations_are_learned_from_names_and_descriptions() {
        let learned = learn(
            [
                ("list_prs", "List pull requests in a repository"),
                ("get_repo", "Get a repository"),
                ("list_dir", "List the entries of a directory"),
                ("get_time", "Get the time"),
                ("list_sizes", "List files with their sizes"),
                ("press_key", "Press a key"),
            ]
            .into_iter(),
        );
        let pr = (
            vec!["pr".to_string()],
            vec![tokens::stem("pull"), tokens::stem("request")],
        );
        assert!(learned.contains(&pr), "{learned:?}");
        assert!(learned.contains(&(vec!["repo".into()], vec![tokens::stem("repository")])));
        assert!(learned.contains(&(vec!["dir".into()], vec![tokens::stem("directory")])));
        assert_eq!(learned.len(), 3, "{learned:?}");
        let table = Synonyms::new(learned);
        assert!(expanded(&table, "repo").contains(&(tokens::stem("repository"), HEAD_WEIGHT)));
        assert!(expanded(&table, "repo").contains(&(tokens::stem("repository"), LEARNED_WEIGHT)));
    }
}
