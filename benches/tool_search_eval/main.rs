//! The tool search's retrieval evaluation: the queries of `queries.tsv`
//! (beside this file), each with the tools that do what it asks, over the
//! union of the real listings in `tests/fixtures/listings/`; recall@1 and
//! recall@5 (the share of queries with one of their tools first, or in the
//! first five) for the engine's ranking and for plain BM25.
//!
//!     scripts/tool_search_eval [--queries PATH] [--misses] [--query "TEXT"]
//!
//! `--queries` reads another query set in the same format instead (beside
//! this file: `held_out.tsv` and `blind.tsv` … `blind4.tsv`, each written
//! blind and used to tune the engine since, and `blind5.tsv` and
//! `blind6.tsv`, written blind and never tuned on); `--misses` also prints
//! each query the engine does not answer first, with what it found and
//! what it expects; `--query` prints what each ranking finds for one query,
//! with the scores.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mcp_provider_benches::listings;
use mcp_provider_core::search::{Ranking, ToolIndex};

/// One line of the query set.
struct Query {
    text: String,
    expected: Vec<String>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let misses = args.iter().any(|a| a == "--misses");
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let queries = value_of("--queries").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("tool_search_eval/queries.tsv"),
        PathBuf::from,
    );
    let outcome = match value_of("--query") {
        Some(query) => explain(query),
        None => run(&queries, misses),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tool_search_eval: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path, show_misses: bool) -> Result<(), String> {
    let docs = listings::load(&listings::dir())?;
    let queries = read_queries(path)?;
    let servers = {
        let mut s: Vec<&str> = docs.iter().map(|d| d.server.as_str()).collect();
        s.dedup();
        s.len()
    };
    println!(
        "{} queries over {} tools from {servers} servers",
        queries.len(),
        docs.len()
    );
    println!("{:<12} {:>9} {:>9}", "ranking", "recall@1", "recall@5");
    for (label, ranking) in [
        ("engine", Ranking::Weighted),
        ("plain BM25", Ranking::PlainBm25),
    ] {
        let index = ToolIndex::with_ranking(docs.clone(), ranking);
        for q in &queries {
            if let Some(missing) = q.expected.iter().find(|name| index.get(name).is_none()) {
                return Err(format!(
                    "{:?} expects {missing}, which no listing has",
                    q.text
                ));
            }
        }
        let (mut at1, mut at5) = (0, 0);
        let mut missed = Vec::new();
        for q in &queries {
            let hits = index.search(&q.text, 5, None);
            let rank = hits.iter().position(|h| q.expected.contains(&h.doc.name));
            at1 += usize::from(rank == Some(0));
            at5 += usize::from(rank.is_some());
            if rank != Some(0) {
                let found: Vec<&str> = hits.iter().take(3).map(|h| h.doc.name.as_str()).collect();
                missed.push(format!(
                    "  {:?} (rank {}) → {}\n      wanted {}",
                    q.text,
                    rank.map_or("-".into(), |r| (r + 1).to_string()),
                    found.join(", "),
                    q.expected.join(" ")
                ));
            }
        }
        let n = queries.len() as f64;
        println!(
            "{label:<12} {:>9.2} {:>9.2}",
            at1 as f64 / n,
            at5 as f64 / n
        );
        if show_misses && ranking == Ranking::Weighted {
            println!("{}", missed.join("\n"));
        }
    }
    Ok(())
}

/// What each ranking finds for `query`, with the scores.
fn explain(query: &str) -> Result<(), String> {
    let docs = listings::load(&listings::dir())?;
    for (label, ranking) in [
        ("engine", Ranking::Weighted),
        ("plain BM25", Ranking::PlainBm25),
    ] {
        let index = ToolIndex::with_ranking(docs.clone(), ranking);
        println!("{label}:");
        for hit in index.search(query, 10, None) {
            println!("  {:8.3}  {}", hit.score, hit.doc.name);
        }
    }
    Ok(())
}

/// `query<TAB>tool tool…` lines; `#` starts a comment line.
fn read_queries(path: &Path) -> Result<Vec<Query>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (query, expected) = line
                .split_once('\t')
                .ok_or_else(|| format!("{}: no tab in {line:?}", path.display()))?;
            Ok(Query {
                text: query.to_string(),
                expected: expected.split_whitespace().map(String::from).collect(),
            })
        })
        .collect()
}
