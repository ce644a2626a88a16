//! Tool search: which of many tools a few words ask for.
//!
//! A client with hundreds of tools behind one endpoint does better asking
//! for the few it needs than reading them all. [`ToolIndex::build`] indexes
//! a listing once (each tool's name split into words, its description, its
//! parameters' names and descriptions, its server's name) and
//! [`ToolIndex::search`] ranks tools against a query with BM25F field
//! weights, a light stemmer and a vocabulary of the words people use for
//! tools' verbs and nouns ("bug" for issue, "folder" for directory), part
//! built in and part learned from the listing. No model, no I/O: build the
//! index again when the listing changes.
//!
//! ```
//! use mcp_provider_core::search::{ToolDoc, ToolIndex};
//!
//! let tool = |name: &str, description: &str| ToolDoc {
//!     name: name.into(),
//!     server: "github".into(),
//!     description: description.into(),
//!     input_schema: serde_json::json!({"type": "object"}),
//! };
//! let index = ToolIndex::build(vec![
//!     tool("create_issue", "Create a new issue in a GitHub repository."),
//!     tool("list_branches", "List branches in a GitHub repository."),
//! ]);
//! let hits = index.search("open a bug report", 5, None);
//! assert_eq!(hits[0].doc.name, "create_issue");
//! ```

mod rank;
mod synonyms;
mod tokens;

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use rank::{Alternative, Concept, DocTerms, Field, Postings, Titles};
use synonyms::Synonyms;

/// One tool as the index knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolDoc {
    /// The name clients call it by (e.g. as `/mcp` names it).
    pub name: String,
    /// Its server's name ("" when there is none, e.g. an editor's tools).
    pub server: String,
    pub description: String,
    /// Its `inputSchema`; the names and descriptions of its properties are
    /// indexed.
    pub input_schema: Value,
}

/// Which ranking: the engine's own, or plain BM25 over name and
/// description (the baseline the evaluation compares against).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Ranking {
    #[default]
    Weighted,
    PlainBm25,
}

/// One tool found, with its score (higher is better; comparable only
/// within one search).
#[derive(Clone, Copy, Debug)]
pub struct Hit<'a> {
    pub doc: &'a ToolDoc,
    pub score: f32,
}

/// A searchable listing of tools. Built once per listing; searching
/// borrows it.
#[derive(Debug)]
pub struct ToolIndex {
    docs: Vec<ToolDoc>,
    /// Indices into `docs` in name order, for [`ToolIndex::get`] and
    /// deterministic ties.
    by_name: Vec<u32>,
    /// Each document's place in name order (ties go to the earlier name).
    name_rank: Vec<u32>,
    ranking: Ranking,
    postings: Postings,
    titles: Titles,
    synonyms: Synonyms,
    /// The ids of each server's name's terms: a query that writes one as a
    /// name ("in Notion") still asks for it, and a tool of a server the
    /// query names is lifted.
    servers: Vec<Vec<u32>>,
    /// Each document's server, as its place in `servers` (weighted ranking
    /// only).
    server_of: Vec<u32>,
}

/// The fields of the weighted ranking, in the order [`weighted_terms`]
/// gives them: a word of the name says the most; then the description's
/// first sentence (what the tool does), the server's name, the rest of the
/// description and the parameters' names; a word somewhere in a
/// parameter's description the least.
#[rustfmt::skip]
const WEIGHTED_FIELDS: [Field; 6] = [
    Field { weight: 3.0, b: 0.3 },  // name
    Field { weight: 1.5, b: 0.5 },  // description, first sentence
    Field { weight: 0.3, b: 0.75 }, // description, the rest
    Field { weight: 0.5, b: 0.5 },  // parameter names
    Field { weight: 0.2, b: 0.75 }, // parameter descriptions
    Field { weight: 1.0, b: 0.0 },  // server
];

/// How much a tool that matches only some of a query's words is held
/// back: its score is multiplied by (words matched / words) to this power.
const COVERAGE_POWER: i32 = 1;

/// How much a tool whose whole name the query says is lifted: its score
/// is multiplied by 1 + this × the share of its name covered.
const NAME_BONUS: f32 = 0.5;

/// How much a tool whose name or description starts with the query's
/// first word (or a synonym of it, at its weight) is lifted: that word is
/// most often what the user wants done ("unstage everything"), and a tool
/// says first what it does ("Unstages all staged changes"), where another
/// only names the word ("git_diff_unstaged").
const LEAD_BONUS: f32 = 0.2;

/// How much a tool of a server the query names is lifted: "who is in our
/// notion workspace" asks for Notion's users before Slack's.
const SERVER_BONUS: f32 = 0.3;

/// Plain BM25: name and description as one field (k1 1.2, b 0.75).
const PLAIN_FIELDS: [Field; 1] = [Field {
    weight: 1.0,
    b: 0.75,
}];

/// Values of a parameter's `enum` indexed at most.
const MAX_VALUES: usize = 32;

/// A query reads at most this many terms; the rest are ignored.
const MAX_QUERY_TERMS: usize = 32;

/// Properties of a schema indexed at most, so that a schema of a million
/// properties costs no more than a usual one.
const MAX_PROPERTIES: usize = 64;

impl ToolIndex {
    /// Indexes `docs` with the engine's own ranking.
    pub fn build(docs: Vec<ToolDoc>) -> ToolIndex {
        ToolIndex::with_ranking(docs, Ranking::Weighted)
    }

    /// Indexes `docs` with `ranking`.
    pub fn with_ranking(docs: Vec<ToolDoc>, ranking: Ranking) -> ToolIndex {
        let (postings, titles, synonyms) = match ranking {
            Ranking::Weighted => {
                let boilerplate = boilerplate(&docs);
                let terms: Vec<DocTerms> = docs
                    .iter()
                    .map(|d| weighted_terms(d, &boilerplate))
                    .collect();
                let learned = synonyms::learn(
                    docs.iter()
                        .map(|d| (d.name.as_str(), d.description.as_str())),
                );
                let postings = Postings::build(&WEIGHTED_FIELDS, &terms);
                let titles = Titles::build(&postings, &terms);
                (postings, titles, Synonyms::new(learned))
            }
            Ranking::PlainBm25 => {
                let terms: Vec<DocTerms> = docs.iter().map(plain_terms).collect();
                let postings = Postings::build(&PLAIN_FIELDS, &terms);
                (postings, Titles::default(), Synonyms::default())
            }
        };
        let mut servers: Vec<Vec<u32>> = Vec::new();
        let mut server_of = Vec::new();
        if ranking == Ranking::Weighted {
            let mut places: HashMap<&str, u32> = HashMap::new();
            for doc in &docs {
                let place = *places.entry(&doc.server).or_insert_with(|| {
                    let terms = tokens::term_vec(&doc.server);
                    servers.push(terms.iter().filter_map(|t| postings.id(t)).collect());
                    servers.len() as u32 - 1
                });
                server_of.push(place);
            }
        }
        let mut by_name: Vec<u32> = (0..docs.len() as u32).collect();
        by_name.sort_by(|&a, &b| name_of(&docs, a).cmp(name_of(&docs, b)).then(a.cmp(&b)));
        let mut name_rank = vec![0; docs.len()];
        for (rank, &doc) in by_name.iter().enumerate() {
            if let Some(slot) = name_rank.get_mut(doc as usize) {
                *slot = rank as u32;
            }
        }
        ToolIndex {
            docs,
            by_name,
            name_rank,
            ranking,
            postings,
            titles,
            synonyms,
            servers,
            server_of,
        }
    }

    /// The tools that best match `query`, best first, at most `limit`,
    /// only `server`'s when one is given. Tools that match no word of the
    /// query are not returned; equal scores go in name order.
    pub fn search(&self, query: &str, limit: usize, server: Option<&str>) -> Vec<Hit<'_>> {
        if limit == 0 || self.docs.is_empty() {
            return Vec::new();
        }
        let concepts = self.concepts(query);
        if concepts.is_empty() {
            return Vec::new();
        }
        let (scores, matched) = self.postings.score(&concepts, self.docs.len());
        let weights = term_weights(&concepts);
        let action = term_weights(concepts.get(..1).unwrap_or(&[]));
        let named = self.named_servers(&weights);
        let adjust = |d: u32, matched: u16| match self.ranking {
            Ranking::Weighted => {
                (f32::from(matched) / concepts.len() as f32).powi(COVERAGE_POWER)
                    * (1.0 + NAME_BONUS * self.titles.coverage(d, &weights))
                    * (1.0 + LEAD_BONUS * self.titles.lead(d, &action))
                    * if self.is_named(&named, d) {
                        1.0 + SERVER_BONUS
                    } else {
                        1.0
                    }
            }
            Ranking::PlainBm25 => 1.0,
        };
        let mut found: Vec<(u32, f32)> = scores
            .iter()
            .zip(&matched)
            .enumerate()
            .filter(|&(_, (&s, _))| s > 0.0)
            .map(|(d, (&s, &m))| (d as u32, s * adjust(d as u32, m)))
            .filter(|&(d, _)| {
                server.is_none_or(|s| self.docs.get(d as usize).is_some_and(|doc| doc.server == s))
            })
            .collect();
        let better = |a: &(u32, f32), b: &(u32, f32)| {
            b.1.total_cmp(&a.1)
                .then_with(|| self.name_rank_of(a.0).cmp(&self.name_rank_of(b.0)))
        };
        if found.len() > limit {
            found.select_nth_unstable_by(limit - 1, better);
            found.truncate(limit);
        }
        found.sort_unstable_by(better);
        found
            .into_iter()
            .filter_map(|(d, score)| self.docs.get(d as usize).map(|doc| Hit { doc, score }))
            .collect()
    }

    /// The tool named `name`, if the index holds it (the first of that
    /// name in the listing's order if several do).
    pub fn get(&self, name: &str) -> Option<&ToolDoc> {
        let at = self
            .by_name
            .partition_point(|&d| name_of(&self.docs, d) < name);
        let doc = self.docs.get(*self.by_name.get(at)? as usize)?;
        (doc.name == name).then_some(doc)
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The tools, in the order they were given.
    pub fn docs(&self) -> &[ToolDoc] {
        &self.docs
    }

    /// Approximate heap bytes of the index: the tools it holds (names,
    /// descriptions, schemas), the postings, the term table and the
    /// synonyms.
    pub fn heap_bytes(&self) -> usize {
        self.docs.capacity() * std::mem::size_of::<ToolDoc>()
            + self
                .docs
                .iter()
                .map(|d| {
                    d.name.capacity()
                        + d.server.capacity()
                        + d.description.capacity()
                        + json_heap_bytes(&d.input_schema)
                })
                .sum::<usize>()
            + (self.by_name.capacity() + self.name_rank.capacity()) * std::mem::size_of::<u32>()
            + self.postings.heap_bytes()
            + self.titles.heap_bytes()
            + self.synonyms.heap_bytes()
            + self.servers.capacity() * std::mem::size_of::<Vec<u32>>()
            + (self.servers.iter())
                .map(|ids| ids.capacity() * std::mem::size_of::<u32>())
                .sum::<usize>()
            + self.server_of.capacity() * std::mem::size_of::<u32>()
    }

    /// The query's concepts: each word typed (a stop word only where a
    /// phrase of synonyms starts with it) with, for the weighted ranking,
    /// what its synonyms bring in, in the order the query says them. Words
    /// and synonyms no tool has are left out.
    fn concepts(&self, query: &str) -> Vec<Concept> {
        let (mut words, mut stop) = match self.ranking {
            Ranking::Weighted => {
                // A name the query gives ("Alice", "Boston") is a value,
                // not what it asks for, unless it names a server.
                let q = tokens::query_words(query);
                let mut stop = q.stop;
                for ((slot, word), name) in stop.iter_mut().zip(&q.words).zip(&q.name) {
                    let server = self
                        .postings
                        .id(word)
                        .is_some_and(|id| self.servers.iter().any(|ids| ids.contains(&id)));
                    if *name && !server {
                        *slot = true;
                    }
                }
                (q.words, stop)
            }
            Ranking::PlainBm25 => {
                let mut words = Vec::new();
                tokens::plain_words(query, |w| words.push(w));
                let stop = vec![false; words.len()];
                (words, stop)
            }
        };
        words.truncate(MAX_QUERY_TERMS);
        stop.truncate(MAX_QUERY_TERMS);
        // What the synonyms bring in: (where, how many words, phrase, weight).
        let mut expansions: Vec<(usize, usize, &[String], f32)> = Vec::new();
        self.synonyms.expand(&words, |at, len, phrase, weight| {
            expansions.push((at, len, phrase, weight));
        });
        // A phrase that no tool says whole, or with a stop word in it,
        // means what its words alone do not ("logged in" is not a log,
        // "lat long" not a long-running task): its words are not read on
        // their own.
        let mut idiom = vec![false; words.len()];
        for &(at, len, _, _) in &expansions {
            let (Some(phrase), Some(stops)) = (words.get(at..at + len), stop.get(at..at + len))
            else {
                continue;
            };
            let terms: Option<Vec<u32>> = phrase.iter().map(|w| self.postings.id(w)).collect();
            let said = terms.is_some_and(|t| self.postings.together(&t));
            if len > 1 && (stops.contains(&true) || !said) {
                for slot in idiom.iter_mut().skip(at).take(len) {
                    *slot = true;
                }
            }
        }
        // (where in the query, the concept)
        let mut concepts: Vec<(usize, Concept)> = Vec::new();
        for (at, ((word, stop), idiom)) in words.iter().zip(&stop).zip(&idiom).enumerate() {
            if *stop || *idiom {
                continue;
            }
            let Some(id) = self.postings.id(word) else {
                continue;
            };
            let typed = Alternative {
                terms: vec![id],
                weight: 1.0,
            };
            if !concepts.iter().any(|(_, c)| {
                c.alternatives
                    .first()
                    .is_some_and(|a| a.terms == typed.terms)
            }) {
                concepts.push((
                    at,
                    Concept {
                        alternatives: vec![typed],
                    },
                ));
            }
        }
        for (at, _, phrase, weight) in expansions {
            // A phrase stands whole or not at all: "lat long" is no "long".
            let terms: Option<Vec<u32>> = phrase
                .iter()
                .filter(|w| !tokens::is_stop_word(w))
                .map(|t| self.postings.id(t))
                .collect();
            let Some(terms) = terms.filter(|t| !t.is_empty()) else {
                continue;
            };
            let alternative = Alternative { terms, weight };
            match concepts.iter_mut().find(|(start, _)| *start == at) {
                Some((_, concept)) => concept.alternatives.push(alternative),
                None => concepts.push((
                    at,
                    Concept {
                        alternatives: vec![alternative],
                    },
                )),
            }
        }
        concepts.sort_by_key(|&(at, _)| at);
        concepts.into_iter().map(|(_, c)| c).collect()
    }

    /// Which servers (by place in `servers`) the query names: it says a
    /// word of their name at full weight (`weights`, by term id), as in
    /// "on slack", "in our notion workspace".
    fn named_servers(&self, weights: &[(u32, f32)]) -> Vec<bool> {
        (self.servers.iter())
            .map(|ids| {
                weights
                    .iter()
                    .any(|&(id, weight)| weight >= 1.0 && ids.contains(&id))
            })
            .collect()
    }

    /// Whether document `doc`'s server is one of the `named` ones.
    fn is_named(&self, named: &[bool], doc: u32) -> bool {
        let place = self.server_of.get(doc as usize).copied();
        place.is_some_and(|p| named.get(p as usize) == Some(&true))
    }

    fn name_rank_of(&self, doc: u32) -> u32 {
        self.name_rank
            .get(doc as usize)
            .copied()
            .unwrap_or(u32::MAX)
    }
}

/// Each term of `concepts` with the highest weight it has in them.
fn term_weights(concepts: &[Concept]) -> Vec<(u32, f32)> {
    let mut weights: Vec<(u32, f32)> = Vec::new();
    for alternative in concepts.iter().flat_map(|c| &c.alternatives) {
        for &term in &alternative.terms {
            match weights.iter_mut().find(|(t, _)| *t == term) {
                Some(entry) => entry.1 = entry.1.max(alternative.weight),
                None => weights.push((term, alternative.weight)),
            }
        }
    }
    weights
}

fn name_of(docs: &[ToolDoc], doc: u32) -> &str {
    docs.get(doc as usize).map_or("", |d| d.name.as_str())
}

/// A tool's terms, field by field, as [`WEIGHTED_FIELDS`] lists them:
/// its description's first sentence as what the tool does, the others
/// unless they are its server's `boilerplate`. A name that starts with its
/// server's name (as `/mcp` prefixes it) is indexed without it: the
/// server field holds that.
fn weighted_terms(doc: &ToolDoc, boilerplate: &Boilerplate) -> DocTerms {
    let mut param_names = Vec::new();
    let mut param_descriptions = Vec::new();
    if let Some(Value::Object(properties)) = doc.input_schema.get("properties") {
        for (name, property) in properties.iter().take(MAX_PROPERTIES) {
            tokens::terms(name, |t| param_names.push(t));
            if let Some(Value::String(description)) = property.get("description") {
                tokens::terms(description, |t| param_descriptions.push(t));
            }
            // The values a parameter takes name what the tool can do:
            // `method: get_diff | get_reviews`, `event: APPROVE`.
            if let Some(Value::Array(values)) = property.get("enum") {
                for value in values.iter().take(MAX_VALUES) {
                    if let Value::String(value) = value {
                        tokens::terms(value, |t| param_descriptions.push(t));
                    }
                }
            }
        }
    }
    let mut sentences = sentences(&doc.description);
    let summary = sentences.next().map(tokens::term_vec).unwrap_or_default();
    let mut rest = Vec::new();
    for sentence in sentences {
        if !boilerplate.contains(&(doc.server.as_str(), sentence_key(sentence))) {
            tokens::terms(sentence, |t| rest.push(t));
        }
    }
    let server = tokens::term_vec(&doc.server);
    let mut name = tokens::term_vec(&doc.name);
    if name.len() > server.len() && name.starts_with(&server) {
        name.drain(..server.len());
    }
    vec![name, summary, rest, param_names, param_descriptions, server]
}

/// A sentence that this many of a server's tools say or more, past their
/// first, is the server's boilerplate ("Only works within allowed
/// directories."): it tells none of them from the others, and where it is
/// long it drowns what does.
const BOILERPLATE: usize = 3;

/// The boilerplate of each server: (server, [`sentence_key`]).
type Boilerplate<'a> = HashSet<(&'a str, String)>;

/// The sentences past the first that at least [`BOILERPLATE`] tools of a
/// server say.
fn boilerplate(docs: &[ToolDoc]) -> Boilerplate<'_> {
    let mut counts: HashMap<(&str, String), usize> = HashMap::new();
    for doc in docs {
        let mut seen = HashSet::new();
        for key in sentences(&doc.description).skip(1).map(sentence_key) {
            if seen.insert(key.clone()) {
                *counts.entry((doc.server.as_str(), key)).or_default() += 1;
            }
        }
    }
    counts
        .into_iter()
        .filter(|&(_, n)| n >= BOILERPLATE)
        .map(|(key, _)| key)
        .collect()
}

/// A description's sentences: split at line breaks and at ". ", trimmed,
/// the empty ones left out.
fn sentences(description: &str) -> impl Iterator<Item = &str> {
    tokens::clip(description, tokens::MAX_TEXT)
        .split('\n')
        .flat_map(|line| line.split(". "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A sentence as two tools saying it are compared.
fn sentence_key(sentence: &str) -> String {
    sentence.trim_end_matches('.').to_lowercase()
}

/// A tool's terms for plain BM25: the words of its name and description.
fn plain_terms(doc: &ToolDoc) -> DocTerms {
    let mut words = Vec::new();
    tokens::plain_words(&doc.name, |w| words.push(w));
    tokens::plain_words(&doc.description, |w| words.push(w));
    vec![words]
}

/// Approximate heap bytes of a JSON value.
fn json_heap_bytes(value: &Value) -> usize {
    match value {
        Value::String(s) => s.capacity(),
        Value::Array(items) => {
            items.capacity() * std::mem::size_of::<Value>()
                + items.iter().map(json_heap_bytes).sum::<usize>()
        }
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                k.capacity() + std::mem::size_of::<(String, Value)>() + 16 + json_heap_bytes(v)
            })
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str, server: &str, description: &str) -> ToolDoc {
        ToolDoc {
            name: name.into(),
            server: server.into(),
            description: description.into(),
            input_schema: json!({"type": "object"}),
        }
    }

    fn names(hits: &[Hit<'_>]) -> Vec<String> {
        hits.iter().map(|h| h.doc.name.clone()).collect()
    }

    fn sample() -> ToolIndex {
        ToolIndex::build(vec![
            tool(
                "create_issue",
                "github",
                "Create a new issue in a GitHub repository.",
            ),
            tool(
                "list_issues",
                "github",
                "List issues in a GitHub repository.",
            ),
            tool(
                "create_pull_request",
                "github",
                "Create a new pull request in a GitHub repository.",
            ),
            tool(
                "list_directory",
                "filesystem",
                "Get a detailed listing of all files and directories in a specified path.",
            ),
            tool(
                "browser_take_screenshot",
                "playwright",
                "Take a screenshot of the current page.",
            ),
            tool("browser_navigate", "playwright", "Navigate to a URL"),
        ])
    }

    #[test]
    fn a_synonym_finds_the_tool() {
        let index = sample();
        assert_eq!(
            names(&index.search("open a bug report", 1, None)),
            ["create_issue"]
        );
        assert_eq!(
            names(&index.search("list folders", 1, None)),
            ["list_directory"]
        );
        assert_eq!(
            names(&index.search("capture the page", 1, None)),
            ["browser_take_screenshot"]
        );
        assert_eq!(
            names(&index.search("new PR", 1, None)),
            ["create_pull_request"]
        );
    }

    #[test]
    fn a_phrase_means_what_its_words_alone_do_not() {
        let index = ToolIndex::build(vec![
            tool("get_me", "github", "Get details of the authenticated user."),
            tool("get_job_logs", "github", "Get the logs of a job."),
            tool(
                "update_issue_state",
                "github",
                "Set an issue's state to open or closed.",
            ),
            tool(
                "create_issue",
                "github",
                "Create a new issue in a repository.",
            ),
            tool("long_running_task", "demo", "Runs a long operation."),
            tool(
                "geocode",
                "maps",
                "Convert an address into latitude and longitude.",
            ),
        ]);
        let first = |query| names(&index.search(query, 1, None));
        assert_eq!(first("who am I logged in as"), ["get_me"], "not a log");
        assert_eq!(
            first("open a bug report"),
            ["create_issue"],
            "not its state"
        );
        assert_eq!(
            first("lat/long of this place"),
            ["geocode"],
            "not a long task"
        );
        assert_eq!(
            first("job logs"),
            ["get_job_logs"],
            "a word alone is itself"
        );
    }

    #[test]
    fn an_address_or_a_path_asks_for_what_it_is() {
        let index = ToolIndex::build(vec![
            tool("navigate", "browser", "Navigate to a URL."),
            tool("read_file", "fs", "Read a file."),
            tool("list_directory", "fs", "List what a path holds."),
            tool("post_message", "chat", "Post a message to a channel."),
            tool("example_tool", "demo", "An example."),
        ]);
        let first = |query| names(&index.search(query, 1, None));
        assert_eq!(first("open example.com"), ["navigate"]);
        assert_eq!(first("show notes.md"), ["read_file"]);
        assert_eq!(first("show ~/work"), ["list_directory"]);
        assert_eq!(first("say hi in #general"), ["post_message"]);
    }

    #[test]
    fn a_group_s_first_word_is_brought_in_above_the_others() {
        let index = ToolIndex::build(vec![
            tool("create_issue", "github", "Create a new issue."),
            tool(
                "add_sub_issue",
                "github",
                "Add a sub-issue to a parent issue.",
            ),
            tool("add_issue_comment", "github", "Add a comment to an issue."),
        ]);
        assert_eq!(
            names(&index.search("file a bug", 1, None)),
            ["create_issue"]
        );
    }

    #[test]
    fn names_and_quoted_values_are_not_searched() {
        let index = ToolIndex::build(vec![
            tool("create_directory", "fs", "Create a new directory."),
            tool("get_job_logs", "ci", "Get the output of a build job."),
            tool(
                "convert_time",
                "time",
                "Convert a time, e.g. New York to London.",
            ),
            tool("get_users", "notion", "List all users."),
            tool(
                "distance",
                "maps",
                "Travel distance and duration of a drive.",
            ),
            tool("commit", "git", "Record changes with a message."),
        ]);
        let first = |query| names(&index.search(query, 1, None));
        assert_eq!(
            first("make a folder called build/output"),
            ["create_directory"]
        );
        assert_eq!(
            first("how long is the drive from Boston to New York"),
            ["distance"]
        );
        assert_eq!(
            first("who is in our Notion workspace"),
            ["get_users"],
            "a server"
        );
        assert_eq!(first("commit with message \"output of build\""), ["commit"]);
    }

    #[test]
    fn the_values_a_parameter_takes_are_searched() {
        let mut read = tool("pull_request_read", "github", "Read a pull request.");
        read.input_schema = json!({"type": "object", "properties": {
            "method": {"type": "string", "enum": ["get", "get_diff", 7]}
        }});
        let index = ToolIndex::build(vec![
            read,
            tool("close_pull_request", "github", "Close a pull request."),
        ]);
        assert_eq!(
            names(&index.search("diff of the pull request", 1, None)),
            ["pull_request_read"]
        );
    }

    #[test]
    fn a_tool_that_leads_with_the_query_s_verb_comes_first() {
        let index = ToolIndex::build(vec![
            tool("git_reset", "git", "Unstages all staged changes."),
            tool(
                "git_diff_unstaged",
                "git",
                "Shows changes in the working directory that are not yet staged.",
            ),
            tool("git_add", "git", "Adds file contents to the staging area."),
            tool(
                "kill_process",
                "shell",
                "Terminate a running process by its id.",
            ),
            tool("start_process", "shell", "Start a process in a terminal."),
        ]);
        let first = |query| names(&index.search(query, 1, None));
        assert_eq!(first("unstage everything"), ["git_reset"]);
        assert_eq!(first("run a command in the terminal"), ["start_process"]);
    }

    #[test]
    fn a_tool_of_the_server_the_query_names_comes_first() {
        let index = ToolIndex::build(vec![
            tool("get_users", "slack", "List the users of the workspace."),
            tool("get_users", "notion", "List the users of a page."),
        ]);
        let servers = |query| -> Vec<String> {
            let hits = index.search(query, 5, None);
            hits.iter().map(|h| h.doc.server.clone()).collect()
        };
        assert_eq!(
            servers("who is in our notion workspace"),
            ["notion", "slack"]
        );
        assert_eq!(servers("who is in our workspace"), ["slack", "notion"]);
    }

    #[test]
    fn the_server_filter_keeps_only_its_tools() {
        let index = sample();
        let hits = index.search("list", 10, Some("filesystem"));
        assert_eq!(names(&hits), ["list_directory"]);
        assert!(index.search("list", 10, Some("nowhere")).is_empty());
    }

    #[test]
    fn at_most_limit_hits_best_first() {
        let index = sample();
        let hits = index.search("create list issue", 2, None);
        assert_eq!(hits.len(), 2);
        assert!(hits[0].score >= hits[1].score);
        assert!(index.search("issue", 0, None).is_empty());
    }

    #[test]
    fn ties_go_in_name_order() {
        let index = ToolIndex::build(vec![
            tool("b_tool", "", "Same words."),
            tool("a_tool", "", "Same words."),
            tool("c_tool", "", "Same words."),
        ]);
        assert_eq!(
            names(&index.search("same words", 3, None)),
            ["a_tool", "b_tool", "c_tool"]
        );
        assert_eq!(
            names(&index.search("same words", 2, None)),
            ["a_tool", "b_tool"]
        );
    }

    #[test]
    fn an_empty_index_or_query_finds_nothing() {
        let empty = ToolIndex::build(Vec::new());
        assert!(empty.is_empty());
        assert!(empty.search("anything", 5, None).is_empty());
        assert!(sample().search("", 5, None).is_empty());
        assert!(sample().search("the of a", 5, None).is_empty());
    }

    #[test]
    fn parameters_are_searched() {
        let mut with_param = tool("do_thing", "", "Does a thing.");
        with_param.input_schema = json!({"type": "object", "properties": {"timezone": {"type": "string", "description": "IANA zone name"}}});
        let index = ToolIndex::build(vec![with_param, tool("other", "", "Does another thing.")]);
        assert_eq!(names(&index.search("timezone", 5, None)), ["do_thing"]);
        assert_eq!(names(&index.search("iana", 5, None)), ["do_thing"]);
    }

    #[test]
    fn descriptions_are_read_in_sentences() {
        let all: Vec<&str> = sentences("\n  Read a file.\nMore. Then more.  ").collect();
        assert_eq!(all, ["Read a file.", "More", "Then more"]);
        assert_eq!(sentences("").count(), 0);
    }

    #[test]
    fn a_sentence_many_tools_say_is_not_indexed() {
        let tail = "Only works within allowed directories.";
        let docs: Vec<ToolDoc> = ["read_file", "write_file", "move_file"]
            .iter()
            .map(|name| tool(name, "fs", &format!("Does {name}. {tail}")))
            .chain([tool("make_dir", "fs", "Makes a directory.")])
            .collect();
        let index = ToolIndex::build(docs);
        assert_eq!(
            names(&index.search("allowed directories", 5, None)),
            ["make_dir"]
        );
    }

    #[test]
    fn get_finds_by_exact_name() {
        let index = sample();
        assert_eq!(
            index.get("browser_navigate").map(|d| d.server.as_str()),
            Some("playwright")
        );
        assert!(index.get("browser").is_none());
        assert!(index.get("").is_none());
        assert_eq!(index.len(), 6);
    }

    #[test]
    fn plain_bm25_has_no_synonyms() {
        let index = ToolIndex::with_ranking(sample().docs().to_vec(), Ranking::PlainBm25);
        assert!(index.search("bug", 5, None).is_empty());
        assert_eq!(
            names(&index.search("screenshot", 5, None)),
            ["browser_take_screenshot"]
        );
    }

    #[test]
    fn heap_bytes_grow_with_the_listing() {
        let small = sample();
        let mut docs = small.docs().to_vec();
        docs.extend(small.docs().iter().map(|d| ToolDoc {
            name: format!("{}_2", d.name),
            ..d.clone()
        }));
        let large = ToolIndex::build(docs);
        assert!(large.heap_bytes() > small.heap_bytes());
        assert!(small.heap_bytes() > 0);
    }

    proptest::proptest! {
        #[test]
        fn any_query_is_answered_within_limit(query in ".{0,300}", limit in 0usize..30) {
            let index = sample();
            let hits = index.search(&query, limit, None);
            proptest::prop_assert!(hits.len() <= limit);
        }

        #[test]
        fn a_huge_query_is_answered(word in "[a-zA-Z_ ]{1,20}", times in 1usize..20_000) {
            let index = sample();
            let query = word.repeat(times);
            proptest::prop_assert!(index.search(&query, 5, None).len() <= 5);
        }
    }
}
