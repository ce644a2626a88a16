//! Agent chunk frame → parse → correlate → reassemble → editor bytes.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mcp_provider_benches::{chunk_frames, open_stream, AGENT};

fn stream(c: &mut Criterion, name: &str, path: &str) {
    let mut group = c.benchmark_group("chunk_to_editor_bytes");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let (mut p, id) = open_stream(path);
            let frames = chunk_frames(&id, iters);
            let now = Instant::now();
            let start = Instant::now();
            let mut bytes = 0usize;
            for frame in &frames {
                p.handle_agent_text(AGENT, frame, now);
                while let Some(o) = p.poll_output() {
                    if let mcp_provider_core::Output::Data { data, .. } = o {
                        bytes += data.len();
                    }
                }
            }
            let elapsed = start.elapsed();
            assert!(bytes > 0 || iters == 0);
            elapsed
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    stream(c, "openai_sse", "/v1/chat/completions");
    stream(c, "ollama_ndjson", "/api/chat");
}

criterion_group! {
    name = hot_path;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(hot_path);
