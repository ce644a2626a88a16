//! The hot path and its parts: agent chunk frame → parse → correlate →
//! reassemble → editor bytes, and the provider's share of it (what runs
//! under a runtime's lock: all but parsing and encoding); HTTP request parsing; rate-limit decisions;
//! out-of-order reassembly; one `tools/call` through the MCP bridge. Also
//! counts heap allocations per chunk and per call.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mcp_provider_benches::{chunk_frames, echo_answer, open_stream, BridgeCall, AGENT};
use mcp_provider_core::agent::message::FromAgent;
use mcp_provider_core::bridge::Routed;
use mcp_provider_core::http::{Limits, RequestReader, ServerConn};
use mcp_provider_core::stream::Answering;
use mcp_provider_core::Reassembler;
use mcp_provider_core::TokenBucket;
use mcp_provider_core::{ConnId, Output};

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations per chunk in steady state (after a warm-up), printed
/// beside the timings.
fn allocations_per_chunk(name: &str, path: &str) {
    let (mut p, id, mut answering) = open_stream(path);
    let frames = chunk_frames(&id, 11_000);
    let now = Instant::now();
    let mut feed = |frames: &[String]| {
        for frame in frames {
            p.handle_agent_text(AGENT, frame, now);
            while let Some(o) = p.poll_output() {
                if let Output::Answer { to, event } = o {
                    answering.handle(to, event, drop);
                }
            }
        }
    };
    feed(&frames[..1_000]);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    feed(&frames[1_000..]);
    let per_chunk = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / 10_000.0;
    println!("chunk_to_editor_bytes/{name}: {per_chunk:.2} heap allocations per chunk");
}

/// A chunk frame through the provider and the editor's side of the answer
/// (`chunk_to_editor_bytes`), or, parsed beforehand, through the provider
/// alone (`chunk_under_lock`): what a runtime does under the lock it keeps
/// the provider in, since it parses on the link's task or thread and
/// encodes on the editor's.
fn stream(c: &mut Criterion, name: &str, path: &str, whole: bool) {
    let group_name = match whole {
        true => "chunk_to_editor_bytes",
        false => "chunk_under_lock",
    };
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let (mut p, id, mut answering) = open_stream(path);
            let frames = chunk_frames(&id, iters);
            let now = Instant::now();
            let mut bytes = 0usize;
            let mut routed = Vec::with_capacity(frames.len());
            if !whole {
                let parsed: Vec<_> = frames.iter().map(|f| FromAgent::parse(f)).collect();
                let start = Instant::now();
                for message in parsed {
                    p.handle_agent_message(AGENT, message, now);
                    routed.extend(std::iter::from_fn(|| p.poll_output()));
                }
                let elapsed = start.elapsed();
                assert!(routed.len() as u64 >= iters);
                return elapsed;
            }
            let start = Instant::now();
            for frame in &frames {
                p.handle_agent_text(AGENT, frame, now);
                while let Some(o) = p.poll_output() {
                    match o {
                        Output::Answer { to, event } => answering.handle(to, event, |o| {
                            if let Output::Data { data, .. } = o {
                                bytes += data.len();
                            }
                        }),
                        // A stored Responses answer is written by the
                        // provider itself (it keeps what it writes).
                        Output::Data { data, .. } => bytes += data.len(),
                        _ => {}
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

const REQUEST: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8788\r\n\
Authorization: Bearer sk-local-0123456789abcdef\r\nContent-Type: application/json\r\n\
User-Agent: OpenAI/Python 1.0\r\nAccept: text/event-stream\r\nContent-Length: 97\r\n\r\n\
{\"model\":\"echo\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hello there, how are you?\"}]}";

fn http_request_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("http_request_parse");
    group.throughput(Throughput::Bytes(REQUEST.len() as u64));
    group.bench_function("chat_post", |b| {
        b.iter_batched_ref(
            || RequestReader::new(Limits::default()),
            |reader| {
                reader.handle_data(REQUEST);
                reader.next_request().unwrap().unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn limiter_decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("limiter_decision");
    group.throughput(Throughput::Elements(1));
    let t0 = Instant::now();
    let mut bucket = TokenBucket::new(6_000, t0);
    let mut at = t0;
    group.bench_function("try_take", |b| {
        b.iter(|| {
            // 10 ms apart: one token refills each time, so admissions and
            // refusals both happen.
            at += Duration::from_millis(10);
            bucket.try_take(1, at)
        })
    });
    group.finish();
}

/// Chunks arriving in reversed blocks of 8 (7 held, then all released).
fn reassembly_out_of_order(c: &mut Criterion) {
    const N: u64 = 1024;
    let order: Vec<u64> = (0..N / 8)
        .flat_map(|block| (0..8).rev().map(move |i| block * 8 + i))
        .collect();
    let mut group = c.benchmark_group("reassembly");
    group.throughput(Throughput::Elements(N));
    group.bench_function("reversed_blocks_of_8", |b| {
        b.iter(|| {
            let mut r = Reassembler::new(64);
            let mut out = 0u64;
            for &i in &order {
                r.push(i, i).unwrap();
                while let Some(x) = r.pop() {
                    out += x;
                }
            }
            out
        })
    });
    group.finish();
}

/// One `tools/call` through the MCP bridge's core: the client's request
/// bytes parsed, the call written for the child, the child's answer read
/// and the client's answer encoded. Allocations per call are printed.
fn bridge_call(c: &mut Criterion) {
    let mut call = BridgeCall::new();
    let one = |call: &mut BridgeCall, request: &[u8]| {
        let now = Instant::now();
        let mut http = ServerConn::new(Limits::default(), now);
        http.handle_data(request);
        let Ok(Some(request)) = http.poll_request() else {
            panic!("the request did not parse");
        };
        call.bridge.handle_request(ConnId(9), request, now);
        let line = call.drain_child().expect("the call reaches the child");
        call.bridge
            .handle_child_line(call.child, &echo_answer(&line), now);
        let mut out = BytesMut::new();
        while let Some(routed) = call.bridge.poll_output() {
            if let Routed::Http(output) = routed {
                output.encode_http(&mut http, &mut Answering::default(), &mut out);
            }
        }
        assert!(!out.is_empty(), "the client is answered");
    };
    let requests: Vec<Vec<u8>> = (0..2_000).map(|_| call.request_bytes()).collect();
    for request in &requests[..1_000] {
        one(&mut call, request);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for request in &requests[1_000..] {
        one(&mut call, request);
    }
    let per_call = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / 1_000.0;
    println!("bridge/tools_call: {per_call:.1} heap allocations per call");
    let mut group = c.benchmark_group("bridge");
    group.throughput(Throughput::Elements(1));
    group.bench_function("tools_call", |b| {
        b.iter_custom(|iters| {
            let requests: Vec<Vec<u8>> = (0..iters).map(|_| call.request_bytes()).collect();
            let start = Instant::now();
            for request in &requests {
                one(&mut call, request);
            }
            start.elapsed()
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let apis = [
        ("openai_sse", "/v1/chat/completions"),
        ("ollama_ndjson", "/api/chat"),
        ("responses_sse", "/v1/responses"),
        ("messages_sse", "/v1/messages"),
    ];
    for (name, path) in apis {
        stream(c, name, path, true);
    }
    for (name, path) in apis {
        stream(c, name, path, false);
    }
    for (name, path) in apis {
        allocations_per_chunk(name, path);
    }
    http_request_parse(c);
    limiter_decision(c);
    reassembly_out_of_order(c);
    bridge_call(c);
}

criterion_group! {
    name = hot_path;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(hot_path);
