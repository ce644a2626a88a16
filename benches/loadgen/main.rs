//! `loadgen`: plays both ends of the provider at once — an agent on the
//! real agent link and N concurrent editors over HTTP — stamps each chunk
//! when the agent sends it and when the editor reads it, and prints one
//! JSON line of figures. `--direct` sends the same frames over bare
//! loopback sockets instead, as the machine's own baseline.

mod agent;
mod editor;
mod stamp;
mod wire;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::json;
use smol::channel;
use smol::future::FutureExt;
use smol::lock::Semaphore;

use mcp_provider_benches::procfs::{rss_mb, runtime_of, CpuReading};
use mcp_provider_benches::stats::quantile_us;

use crate::agent::Event;
use crate::editor::{Outcome, Plan};
use crate::stamp::Clock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every stream's chunks as fast as they go.
    Throughput,
    /// One chunk in flight per stream: the next is sent when the editor
    /// has read the last.
    Latency,
    /// All streams opened (one chunk each) and held while the server's RSS
    /// is read, then finished.
    Scale,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `/v1/chat/completions`, SSE.
    Openai,
    /// `/api/chat`, NDJSON.
    Ollama,
}

#[derive(Parser)]
#[command(about = "Load generator for MCP Local Provider: agent and editors at once")]
struct Args {
    /// The provider, e.g. http://127.0.0.1:8788 (not needed with --direct).
    #[arg(long, required_unless_present = "direct")]
    target: Option<String>,
    /// An editor API key of the provider.
    #[arg(long, default_value = "")]
    api_key: String,
    /// The provider's bridge token, for the agent link.
    #[arg(long, default_value = "")]
    bridge_token: String,
    #[arg(long, default_value_t = 100)]
    streams: u32,
    #[arg(long, default_value_t = 1000)]
    chunks_per_stream: u32,
    #[arg(long, value_enum, default_value_t = Mode::Throughput)]
    mode: Mode,
    /// The server's process id, to report its RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Send the same frames over bare loopback sockets, without a provider.
    #[arg(long)]
    direct: bool,
    #[arg(long, value_enum, default_value_t = Api::Openai)]
    api: Api,
    /// Give up (and report what arrived) after this long.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Editors connecting at once.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Agent links serving the streams (throughput mode), each registering
    /// the same model: the provider spreads the streams over them.
    #[arg(long, default_value_t = 1)]
    links: u32,
    /// Bytes of context each request carries before its user message, as
    /// a system message (an editor sends the files it has open, the rules
    /// it was given): what the provider reads and hands the agent.
    #[arg(long, default_value_t = 0)]
    context_bytes: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.mode == Mode::Scale && args.chunks_per_stream < 2 {
        eprintln!("loadgen: scale mode needs --chunks-per-stream 2 or more");
        return ExitCode::from(2);
    }
    if args.links != 1 && (args.mode != Mode::Throughput || args.direct || args.links == 0) {
        eprintln!("loadgen: --links other than 1 is for throughput runs through a provider");
        return ExitCode::from(2);
    }
    match smol::block_on(run(&args)) {
        Ok(report) => {
            println!("{report}");
            let clean = report["lost"] == 0
                && report["reordered"] == 0
                && report["misrouted"] == 0
                && report["failed_streams"] == 0;
            if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: &Args) -> Result<serde_json::Value, String> {
    let clock = Clock::start();
    let mut extra_links = Vec::new();
    let (events_tx, events_rx) = channel::unbounded();
    let model = format!("loadgen-{}", std::process::id());
    let chunks = args.chunks_per_stream;
    let (writer, addr, link) = match &args.target {
        Some(target) if !args.direct => {
            let addr = target
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned();
            let url = format!("ws://{addr}/v1/agent");
            let (writer, link) = agent::connect(
                &url,
                &args.bridge_token,
                &model,
                args.mode,
                chunks,
                clock,
                events_tx.clone(),
            )
            .await?;
            // More links, each with its own writer and reader; they share
            // the first writer's clock of the first chunk sent.
            for _ in 1..args.links {
                let (more_tx, more_rx) = channel::unbounded();
                let (mut more, more_link) = agent::connect(
                    &url,
                    &args.bridge_token,
                    &model,
                    args.mode,
                    chunks,
                    clock,
                    more_tx,
                )
                .await?;
                more.first_sent_ns = writer.first_sent_ns.clone();
                extra_links.push((smol::spawn(more.run(more_rx)), more_link));
            }
            (writer, addr, link)
        }
        _ => agent::listen_direct(args.mode, chunks, clock, events_tx.clone()).await?,
    };
    let first_sent = writer.first_sent_ns.clone();
    let writer = smol::spawn(writer.run(events_rx));

    let (opened_tx, opened_rx) = channel::unbounded();
    let plan = Arc::new(Plan {
        addr,
        direct: args.direct,
        api: args.api,
        api_key: args.api_key.clone(),
        model,
        mode: args.mode,
        chunks,
        clock,
        connecting: Semaphore::new(args.connect_concurrency.max(1)),
        agent: events_tx.clone(),
        opened: opened_tx,
        context: editor::context(args.context_bytes),
    });
    let cpu_before = args.server_pid.and_then(CpuReading::of);
    let own_cpu_before = CpuReading::of(std::process::id());
    let editors: Vec<_> = (0..args.streams)
        .map(|s| smol::spawn(editor::run(plan.clone(), s)))
        .collect();

    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let expired = || async move {
        smol::Timer::at(deadline).await;
    };
    let mut rss_open = None;
    if args.mode == Mode::Scale {
        let all_open = async {
            for _ in 0..args.streams {
                let _ = opened_rx.recv().await;
            }
            Some(())
        };
        if all_open
            .or(async {
                expired().await;
                None
            })
            .await
            .is_some()
        {
            rss_open = args.server_pid.and_then(|pid| rss_mb(pid, "VmRSS"));
            let _ = events_tx.send(Event::Release).await;
        }
    }
    let mut outcomes = Vec::with_capacity(editors.len());
    for task in editors {
        match async { Some(task.await) }
            .or(async {
                expired().await;
                None
            })
            .await
        {
            Some(outcome) => outcomes.push(outcome),
            // Dropping the rest cancels them; their chunks count as lost.
            None => break,
        }
    }
    let timed_out = outcomes.len() < args.streams as usize;
    let rss = rss_open.or_else(|| args.server_pid.and_then(|pid| rss_mb(pid, "VmRSS")));
    let peak = args.server_pid.and_then(|pid| rss_mb(pid, "VmHWM"));
    let cpu_after = args.server_pid.and_then(CpuReading::of);
    let own_cpu_after = CpuReading::of(std::process::id());
    drop(writer);
    drop(link);
    drop(extra_links);
    let first_sent_ns = first_sent.load(Ordering::Relaxed);
    let mut figures = Figures::of(&outcomes, first_sent_ns);
    figures.lost = u64::from(args.streams) * u64::from(chunks) - figures.chunks;
    Ok(json!({
        "runtime": if args.direct { "direct".to_owned() } else { runtime_of(args.server_pid) },
        "mode": args.mode,
        "api": args.api,
        "streams": args.streams,
        "chunks": figures.chunks,
        "chunks_per_s": figures.chunks_per_s.round(),
        "p50_us": figures.p50_us,
        "p99_us": figures.p99_us,
        "ttfc_p50_us": figures.ttfc_p50_us,
        "lost": figures.lost,
        "reordered": figures.reordered,
        "misrouted": figures.misrouted,
        "failed_streams": figures.failed + (args.streams as usize - outcomes.len()),
        "timed_out": timed_out,
        "server_cpu_us_per_chunk": us_per_chunk(cpu_before, cpu_after, figures.chunks),
        "loadgen_cpu_us_per_chunk": us_per_chunk(own_cpu_before, own_cpu_after, figures.chunks),
        "server_rss_mb": rss,
        "server_peak_rss_mb": peak,
    }))
}

/// CPU seconds used between two readings, in µs per chunk relayed. The
/// load generator's own figure says how much of the machine it takes from
/// the server: the two share the cores.
fn us_per_chunk(before: Option<CpuReading>, after: Option<CpuReading>, chunks: u64) -> Option<f64> {
    let (before, after) = before.zip(after)?;
    (chunks > 0).then(|| {
        let us = after.seconds_since(&before) * 1e6 / chunks as f64;
        (us * 100.0).round() / 100.0
    })
}

/// The figures of a run, from every editor's outcome.
#[derive(Default)]
struct Figures {
    chunks: u64,
    chunks_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    ttfc_p50_us: f64,
    lost: u64,
    reordered: u64,
    misrouted: u64,
    failed: usize,
}

impl Figures {
    fn of(outcomes: &[Outcome], first_sent_ns: u64) -> Self {
        let mut f = Figures::default();
        let mut latencies = Vec::new();
        let mut ttfc = Vec::new();
        let mut last_read_ns = 0;
        for o in outcomes {
            f.chunks += u64::from(o.check.distinct);
            f.reordered += u64::from(o.check.reordered);
            f.misrouted += u64::from(o.check.misrouted);
            latencies.extend_from_slice(&o.check.latencies_ns);
            ttfc.extend(o.ttfc_ns);
            last_read_ns = last_read_ns.max(o.check.last_read_ns);
            if let Some(e) = &o.error {
                if f.failed == 0 {
                    eprintln!("loadgen: stream {} failed: {e}", o.check.stream());
                }
                f.failed += 1;
            }
        }
        latencies.sort_unstable();
        ttfc.sort_unstable();
        f.p50_us = quantile_us(&latencies, 0.50);
        f.p99_us = quantile_us(&latencies, 0.99);
        f.ttfc_p50_us = quantile_us(&ttfc, 0.50);
        let window = last_read_ns.saturating_sub(first_sent_ns);
        if window > 0 && f.chunks > 0 {
            f.chunks_per_s = f.chunks as f64 * 1e9 / window as f64;
        }
        f
    }
}
