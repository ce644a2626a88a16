//! BM25F over an inverted index: each document is a few fields of terms
//! (a tool's name, description, parameters, server), each field with its
//! own weight and length normalisation. Everything that does not depend on
//! the query — field lengths, weights, idf, saturation — is folded into one
//! number per (term, document) when the index is built, so a search only
//! adds up the postings of its terms.

use std::collections::HashMap;

/// BM25's term-frequency saturation: past a few occurrences a term says
/// little more.
const K1: f32 = 1.2;

/// How much the alternatives of a concept other than its best add, as a
/// share of what they score: a word counts once with its synonyms, but a
/// tool that says both the synonym ("review") and the word typed
/// ("approve", among its parameter's values) matches a little better than
/// one that says only the synonym.
const OTHERS_SHARE: f32 = 0.1;

/// How one field counts: its `weight` against the others, and `b`, how
/// much a long field is discounted (0: not at all, 1: fully by its length
/// against the field's average).
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub weight: f32,
    pub b: f32,
}

/// One word of a query (or phrase), and what may stand for it: the word
/// itself, its synonyms, each with a weight.
#[derive(Clone, Debug, Default)]
pub struct Concept {
    pub alternatives: Vec<Alternative>,
}

/// A term, or a phrase's terms, standing for a [`Concept`].
#[derive(Clone, Debug)]
pub struct Alternative {
    pub terms: Vec<u32>,
    pub weight: f32,
}

/// The terms of one document, field by field (in the order of the
/// [`Field`]s the index is built with).
pub type DocTerms = Vec<Vec<String>>;

/// An inverted index: for each term, the documents that hold it and how
/// much it scores in each.
#[derive(Debug, Default)]
pub struct Postings {
    ids: HashMap<String, u32>,
    /// Term `t`'s postings are `postings[offsets[t]..offsets[t + 1]]`.
    offsets: Vec<u32>,
    postings: Vec<Posting>,
}

#[derive(Clone, Copy, Debug)]
struct Posting {
    doc: u32,
    score: f32,
}

impl Postings {
    /// Indexes `docs` (each a [`DocTerms`] with one entry per field).
    pub fn build(fields: &[Field], docs: &[DocTerms]) -> Postings {
        let n = docs.len();
        let mut avg_len = vec![0f32; fields.len()];
        for doc in docs {
            for (f, terms) in doc.iter().enumerate().take(fields.len()) {
                avg_len[f] += terms.len() as f32;
            }
        }
        for len in &mut avg_len {
            *len = if n == 0 {
                1.0
            } else {
                (*len / n as f32).max(1.0)
            };
        }

        // Term → (doc, weighted frequency) in document order.
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut lists: Vec<Vec<(u32, f32)>> = Vec::new();
        let mut per_doc: HashMap<u32, f32> = HashMap::new();
        for (d, doc) in docs.iter().enumerate() {
            per_doc.clear();
            for ((field, terms), avg) in fields.iter().zip(doc).zip(&avg_len) {
                let norm = 1.0 - field.b + field.b * terms.len() as f32 / avg;
                for term in terms {
                    let id = match ids.get(term) {
                        Some(&id) => id,
                        None => {
                            let id = ids.len() as u32;
                            ids.insert(term.clone(), id);
                            lists.push(Vec::new());
                            id
                        }
                    };
                    *per_doc.entry(id).or_default() += field.weight / norm;
                }
            }
            for (&id, &tf) in &per_doc {
                if let Some(list) = lists.get_mut(id as usize) {
                    list.push((d as u32, tf));
                }
            }
        }

        let mut offsets = Vec::with_capacity(lists.len() + 1);
        let mut postings = Vec::with_capacity(lists.iter().map(Vec::len).sum());
        for mut list in lists {
            list.sort_by_key(|&(doc, _)| doc);
            let df = list.len() as f32;
            let idf = (1.0 + (n as f32 - df + 0.5) / (df + 0.5)).ln();
            offsets.push(postings.len() as u32);
            postings.extend(list.into_iter().map(|(doc, tf)| Posting {
                doc,
                score: idf * tf / (K1 + tf),
            }));
        }
        offsets.push(postings.len() as u32);
        ids.shrink_to_fit();
        Postings {
            ids,
            offsets,
            postings,
        }
    }

    /// The id of `term`, if any document holds it.
    pub fn id(&self, term: &str) -> Option<u32> {
        self.ids.get(term).copied()
    }

    /// Scores every document against `concepts`: for each concept, the
    /// best of its alternatives (a phrase's terms add up, times the
    /// alternative's weight), so that a word and its synonyms count once,
    /// and [`OTHERS_SHARE`] of the others; then the concepts add up.
    /// Returns each document's score and how many of the concepts it
    /// matched.
    pub fn score(&self, concepts: &[Concept], docs: usize) -> (Vec<f32>, Vec<u16>) {
        let mut total = vec![0f32; docs];
        let mut matched = vec![0u16; docs];
        let mut best = vec![0f32; docs];
        let mut alternative = vec![0f32; docs];
        let mut held = vec![0u16; docs];
        let mut sum = vec![0f32; docs];
        let (mut in_best, mut in_alternative) = (Vec::new(), Vec::new());
        for concept in concepts {
            for alt in &concept.alternatives {
                for &id in &alt.terms {
                    for posting in self.list(id) {
                        let d = posting.doc as usize;
                        if let (Some(slot), Some(count)) = (alternative.get_mut(d), held.get_mut(d))
                        {
                            if *count == 0 {
                                in_alternative.push(d);
                            }
                            *slot += posting.score;
                            *count += 1;
                        }
                    }
                }
                for d in in_alternative.drain(..) {
                    let whole = usize::from(std::mem::take(&mut held[d])) >= alt.terms.len();
                    let score = std::mem::take(&mut alternative[d]);
                    // A phrase counts only where all of it is: "lat long"
                    // is not "long".
                    if !whole {
                        continue;
                    }
                    let score = alt.weight * score;
                    if best[d] == 0.0 {
                        in_best.push(d);
                    }
                    best[d] = best[d].max(score);
                    sum[d] += score;
                }
            }
            for d in in_best.drain(..) {
                let best = std::mem::take(&mut best[d]);
                let others = std::mem::take(&mut sum[d]) - best;
                total[d] += best + OTHERS_SHARE * others;
                matched[d] = matched[d].saturating_add(1);
            }
        }
        (total, matched)
    }

    /// Whether some document holds every one of `terms` (none: false).
    pub fn together(&self, terms: &[u32]) -> bool {
        let Some((first, others)) = terms.split_first() else {
            return false;
        };
        self.list(*first).iter().any(|p| {
            others
                .iter()
                .all(|&t| self.list(t).binary_search_by_key(&p.doc, |q| q.doc).is_ok())
        })
    }

    fn list(&self, id: u32) -> &[Posting] {
        let start = self.offsets.get(id as usize).copied().unwrap_or(0) as usize;
        let end = self.offsets.get(id as usize + 1).copied().unwrap_or(0) as usize;
        self.postings.get(start..end).unwrap_or(&[])
    }

    /// Approximate heap bytes of the index.
    pub fn heap_bytes(&self) -> usize {
        self.ids.capacity() * (std::mem::size_of::<(String, u32)>() + 1)
            + self.ids.keys().map(String::capacity).sum::<usize>()
            + self.offsets.capacity() * std::mem::size_of::<u32>()
            + self.postings.capacity() * std::mem::size_of::<Posting>()
    }
}

/// The terms of each document's first field (a tool's name), for the
/// bonus a tool gets when a query says its whole name: "close the browser"
/// is `browser_close` rather than `browser_tabs`, whose description also
/// speaks of closing.
#[derive(Debug, Default)]
pub struct Titles {
    /// Document `d`'s terms are `terms[offsets[d]..offsets[d + 1]]`.
    offsets: Vec<u32>,
    terms: Vec<u32>,
    /// Each document's leading terms: the first of its name and the first
    /// of its second field (a description's first sentence), where a tool
    /// says what it does ("Unstages all staged changes").
    leads: Vec<[u32; 2]>,
}

impl Titles {
    /// The first field of each of `docs`, as `postings` numbers its terms.
    pub fn build(postings: &Postings, docs: &[DocTerms]) -> Titles {
        let mut titles = Titles {
            offsets: vec![0],
            terms: Vec::new(),
            leads: Vec::with_capacity(docs.len()),
        };
        for doc in docs {
            let title = doc.first().map_or(&[][..], Vec::as_slice);
            titles
                .terms
                .extend(title.iter().filter_map(|t| postings.id(t)));
            titles.offsets.push(titles.terms.len() as u32);
            let lead = |field: usize| {
                doc.get(field)
                    .and_then(|terms| terms.first())
                    .and_then(|t| postings.id(t))
                    .unwrap_or(u32::MAX)
            };
            titles.leads.push([lead(0), lead(1)]);
        }
        titles.terms.shrink_to_fit();
        titles
    }

    /// How much of `doc`'s name the query covers, from 0 to 1: each of its
    /// terms counts the weight the query gives it (`weights`, by term id;
    /// 0 when the query has it not), over the number of terms.
    pub fn coverage(&self, doc: u32, weights: &[(u32, f32)]) -> f32 {
        let start = self.offsets.get(doc as usize).copied().unwrap_or(0) as usize;
        let end = self.offsets.get(doc as usize + 1).copied().unwrap_or(0) as usize;
        let title = self.terms.get(start..end).unwrap_or(&[]);
        if title.is_empty() {
            return 0.0;
        }
        let covered: f32 = title
            .iter()
            .map(|t| {
                weights
                    .iter()
                    .filter(|(id, _)| id == t)
                    .map(|&(_, w)| w)
                    .fold(0.0, f32::max)
            })
            .sum();
        covered / title.len() as f32
    }

    /// The highest weight `weights` (by term id) give one of `doc`'s
    /// leading terms; 0 when they give none.
    pub fn lead(&self, doc: u32, weights: &[(u32, f32)]) -> f32 {
        let Some(leads) = self.leads.get(doc as usize) else {
            return 0.0;
        };
        weights
            .iter()
            .filter(|(id, _)| leads.contains(id))
            .map(|&(_, w)| w)
            .fold(0.0, f32::max)
    }

    /// Approximate heap bytes.
    pub fn heap_bytes(&self) -> usize {
        (self.offsets.capacity() + self.terms.capacity()) * std::mem::size_of::<u32>()
            + self.leads.capacity() * std::mem::size_of::<[u32; 2]>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(fields: &[&str]) -> DocTerms {
        fields
            .iter()
            .map(|f| f.split_whitespace().map(String::from).collect())
            .collect()
    }

    fn concept(index: &Postings, alternatives: &[(&str, f32)]) -> Concept {
        Concept {
            alternatives: alternatives
                .iter()
                .map(|(phrase, weight)| Alternative {
                    terms: phrase.split(' ').filter_map(|t| index.id(t)).collect(),
                    weight: *weight,
                })
                .collect(),
        }
    }

    fn scores(index: &Postings, docs: usize, terms: &[&str]) -> Vec<f32> {
        let query: Vec<Concept> = terms.iter().map(|t| concept(index, &[(t, 1.0)])).collect();
        index.score(&query, docs).0
    }

    const TWO: [Field; 2] = [
        Field {
            weight: 3.0,
            b: 0.0,
        },
        Field {
            weight: 1.0,
            b: 0.75,
        },
    ];

    #[test]
    fn a_term_in_the_heavier_field_scores_higher() {
        let index = Postings::build(&TWO, &[doc(&["issue", "other"]), doc(&["other", "issue"])]);
        let s = scores(&index, 2, &["issue"]);
        assert!(s[0] > s[1], "{s:?}");
    }

    #[test]
    fn a_rare_term_counts_more_than_a_common_one() {
        let index = Postings::build(
            &TWO,
            &[
                doc(&["get", "rare"]),
                doc(&["get", "x"]),
                doc(&["get", "y"]),
            ],
        );
        let s = scores(&index, 3, &["get", "rare"]);
        assert!(s[0] > s[1] && s[1] == s[2], "{s:?}");
        let get_only = scores(&index, 3, &["get"])[0];
        assert!(s[0] - get_only > get_only, "idf of rare beats idf of get");
    }

    #[test]
    fn a_long_field_is_discounted() {
        let index = Postings::build(
            &TWO,
            &[doc(&["x", "file"]), doc(&["x", "file a b c d e f g"])],
        );
        let s = scores(&index, 2, &["file"]);
        assert!(s[0] > s[1], "{s:?}");
    }

    #[test]
    fn unknown_terms_and_an_empty_index_score_nothing() {
        let empty = Postings::build(&TWO, &[]);
        assert_eq!(empty.id("x"), None);
        assert!(scores(&empty, 0, &["x"]).is_empty());
        let index = Postings::build(&TWO, &[doc(&["a", "b"])]);
        assert_eq!(scores(&index, 1, &["zzz"]), [0.0]);
    }

    #[test]
    fn a_concept_counts_its_best_alternative_once() {
        let index = Postings::build(
            &TWO,
            &[
                doc(&["issue", "bug"]),
                doc(&["issue", "x"]),
                doc(&["y", "pull request"]),
            ],
        );
        let issue = scores(&index, 3, &["issue"]);
        let (with_bug, matched) =
            index.score(&[concept(&index, &[("issue", 1.0), ("bug", 0.5)])], 3);
        assert_eq!(with_bug[1], issue[1], "the word itself");
        assert!(with_bug[0] >= issue[0] && with_bug[0] < issue[0] + scores(&index, 3, &["bug"])[0]);
        assert_eq!(matched, [1, 1, 0]);
        let (pr, _) = index.score(&[concept(&index, &[("pr", 1.0), ("pull request", 0.5)])], 3);
        let both = scores(&index, 3, &["pull", "request"]);
        assert!(
            (pr[2] - 0.5 * both[2]).abs() < 1e-6,
            "a phrase's terms add up"
        );
    }

    #[test]
    fn a_word_and_its_synonym_together_beat_the_synonym_alone() {
        let index = Postings::build(
            &TWO,
            &[doc(&["review", "approve"]), doc(&["review", "request"])],
        );
        let (s, _) = index.score(&[concept(&index, &[("review", 1.0), ("approve", 0.1)])], 2);
        assert!(s[0] > s[1], "{s:?}");
    }

    #[test]
    fn a_phrase_counts_only_where_all_of_it_is() {
        let index = Postings::build(&TWO, &[doc(&["long task", "x"]), doc(&["geo", "lat long"])]);
        let (s, matched) = index.score(&[concept(&index, &[("lat long", 0.5)])], 2);
        assert_eq!(s[0], 0.0, "\"long\" alone is not \"lat long\": {s:?}");
        assert!(s[1] > 0.0);
        assert_eq!(matched, [0, 1]);
    }

    #[test]
    fn terms_are_together_when_one_document_holds_them_all() {
        let index = Postings::build(&TWO, &[doc(&["pull", "request"]), doc(&["lat", "x"])]);
        let ids =
            |terms: &[&str]| -> Vec<u32> { terms.iter().filter_map(|t| index.id(t)).collect() };
        assert!(index.together(&ids(&["pull", "request"])));
        assert!(!index.together(&ids(&["lat", "request"])));
        assert!(index.together(&ids(&["x"])));
        assert!(!index.together(&[]));
    }

    #[test]
    fn a_title_is_covered_by_the_weights_of_its_terms() {
        let docs = [
            doc(&["browser close", "x"]),
            doc(&["browser tabs", "close"]),
            doc(&["", "x"]),
        ];
        let index = Postings::build(&TWO, &docs);
        let titles = Titles::build(&index, &docs);
        let id = |t| index.id(t).unwrap_or(u32::MAX);
        let weights = [(id("browser"), 1.0), (id("close"), 1.0), (id("tabs"), 0.5)];
        assert_eq!(titles.coverage(0, &weights), 1.0);
        assert_eq!(titles.coverage(1, &weights), 0.75);
        assert_eq!(titles.coverage(2, &weights), 0.0, "no name");
        assert_eq!(titles.coverage(9, &weights), 0.0, "no such document");
    }
}
