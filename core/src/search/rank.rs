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

/// How one field counts: its `weight` against the others, and `b`, how
/// much a long field is discounted (0: not at all, 1: fully by its length
/// against the field's average).
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub weight: f32,
    pub b: f32,
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
                    let next = ids.len() as u32;
                    let id = *ids.entry(term.clone()).or_insert(next);
                    if id as usize == lists.len() {
                        lists.push(Vec::new());
                    }
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

    /// Adds `weight` times each query term's score to `scores` (one slot
    /// per document).
    pub fn score(&self, query: &[(u32, f32)], scores: &mut [f32]) {
        for &(id, weight) in query {
            for posting in self.list(id) {
                if let Some(slot) = scores.get_mut(posting.doc as usize) {
                    *slot += weight * posting.score;
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(fields: &[&str]) -> DocTerms {
        fields
            .iter()
            .map(|f| f.split_whitespace().map(String::from).collect())
            .collect()
    }

    fn scores(index: &Postings, docs: usize, terms: &[&str]) -> Vec<f32> {
        let query: Vec<(u32, f32)> = terms
            .iter()
            .filter_map(|t| index.id(t))
            .map(|id| (id, 1.0))
            .collect();
        let mut out = vec![0.0; docs];
        index.score(&query, &mut out);
        out
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
}
