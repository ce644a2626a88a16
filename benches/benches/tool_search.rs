//! The tool search: building the index of a large listing, and one query
//! against it (and, beside it, against plain BM25), at 1,000+ tools (the real listings of
//! `tests/fixtures/listings/`, replicated under other server names).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mcp_provider_benches::listings;
use mcp_provider_core::search::{Ranking, ToolIndex};

/// Queries as a user or an agent writes them, in turn.
const QUERIES: &[&str] = &[
    "open a bug report",
    "take a screenshot of the page",
    "list folders in my project directory",
    "merge the PR",
    "what time is it in Tokyo",
    "show the logs of a crashing pod",
    "post a message in the #general channel",
    "remember that Alice works at Acme",
];

fn tool_search(c: &mut Criterion) {
    let real = listings::load(&listings::dir()).expect("the listings of tests/fixtures/listings");
    let docs = listings::replicated(&real, 1_000);
    let index = ToolIndex::build(docs.clone());
    let own: usize = docs
        .iter()
        .map(|d| {
            d.name.len() + d.server.len() + d.description.len() + d.input_schema.to_string().len()
        })
        .sum();
    eprintln!(
        "tool_search: {} tools, index heap ≈ {} KiB, of which the tools' own names, descriptions and schemas (as JSON text) ≈ {} KiB",
        index.len(),
        index.heap_bytes() / 1024,
        own / 1024
    );

    let mut group = c.benchmark_group("tool_search");
    group.throughput(Throughput::Elements(1));
    let mut turn = 0;
    group.bench_function(format!("search_{}_tools", index.len()), |b| {
        b.iter(|| {
            turn = (turn + 1) % QUERIES.len();
            index.search(QUERIES[turn], 5, None).len()
        })
    });
    let plain = ToolIndex::with_ranking(docs.clone(), Ranking::PlainBm25);
    group.bench_function(format!("search_plain_bm25_{}_tools", plain.len()), |b| {
        b.iter(|| {
            turn = (turn + 1) % QUERIES.len();
            plain.search(QUERIES[turn], 5, None).len()
        })
    });
    group.throughput(Throughput::Elements(docs.len() as u64));
    group.bench_function(format!("build_{}_tools", docs.len()), |b| {
        b.iter_batched(|| docs.clone(), ToolIndex::build, BatchSize::LargeInput)
    });
    group.finish();
}

criterion_group!(benches, tool_search);
criterion_main!(benches);
