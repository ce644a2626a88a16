//! `bridgegen`: load on the MCP bridge end to end. C clients, each with its
//! own keep-alive connection and MCP Streamable HTTP session, call the
//! bridged server's `echo` tool back to back, and every answer must echo
//! that call's own message. `--direct` measures the same calls on the raw
//! stdio pipe of the same server command, spawned here and shared by C
//! callers. `--beside URL` measures the latency the bridge adds to a
//! remote server, calls through it and to the server taking turns.
//! `--sessions N` measures what an idle session costs, `--crash` times a
//! killed child's return. One JSON line per measurement.

mod beside;
mod crash;
mod direct;
mod http;
mod load;
mod rpc;
mod sessions;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mcp_provider_benches::procfs::{children, cpu_seconds, rss_mb, runtime_of};
use serde_json::{json, Value};

use crate::direct::Pipe;
use crate::http::{Session, Target};
use crate::load::Figures;

/// One client of a run: makes call number `n` (its message names the
/// client and `n`) and checks the answer.
pub trait Caller: Send {
    fn call(&mut self, n: u64) -> Result<(), String>;
}

#[derive(Parser)]
#[command(
    about = "Load on the MCP bridge: tools/call of echo through Streamable HTTP, \
                   or on the raw stdio pipe (--direct)"
)]
struct Args {
    /// The provider, e.g. http://127.0.0.1:8788 (not with --direct).
    #[arg(long, required_unless_present = "direct")]
    target: Option<String>,
    /// A bridge API key of the provider.
    #[arg(long, default_value = "")]
    api_key: String,
    /// The bridged server's name (requests go to /mcp/NAME).
    #[arg(long, default_value = "everything")]
    server: String,
    /// Call through the aggregate endpoint `/mcp` instead (the tool is
    /// then `NAME__echo`).
    #[arg(long, conflicts_with = "direct")]
    aggregate: bool,
    /// Where requests go instead of `/mcp/NAME`: e.g. `/mcp` of an MCP
    /// server reached directly over HTTP, the baseline of a remote server
    /// behind the bridge.
    #[arg(long, conflicts_with_all = ["direct", "aggregate"])]
    path: Option<String>,
    /// Concurrent clients, one measurement each, in this order (none when
    /// given no value, e.g. for `--sessions` alone).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "1,8,64")]
    clients: Vec<usize>,
    /// Length of each measured window.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Calls before each window, not counted.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// The server's process id: its RSS, its CPU time per call, and its
    /// child's (the bridged server's).
    #[arg(long)]
    server_pid: Option<u32>,
    /// After the load, open this many sessions one after another and leave
    /// them idle: the time to open one, and the server's RSS per session.
    #[arg(long, conflicts_with = "direct")]
    sessions: Option<usize>,
    /// After the load, kill the bridged child and time its return (needs
    /// --server-pid).
    #[arg(long, requires = "server_pid")]
    crash: bool,
    /// The bridged server reached directly: over Streamable HTTP at a URL
    /// (e.g. `http://127.0.0.1:PORT/mcp` of a remote server behind the
    /// bridge), or `stdio`: the command after `--`, spawned here and
    /// called over its pipe. After the load, one client calls through the
    /// bridge and then directly, in turns, and the line `measure: added`
    /// gives both p50s from the same window.
    #[arg(long, conflicts_with = "direct")]
    beside: Option<String>,
    /// The raw stdio baseline: run the command after `--` and call it over
    /// its pipe.
    #[arg(long, conflicts_with_all = ["target", "crash"])]
    direct: bool,
    /// Pads each call's message to this many bytes (a call carrying a
    /// file's worth of text), over Streamable HTTP.
    #[arg(long, default_value_t = 0, conflicts_with = "direct")]
    message_bytes: usize,
    /// The MCP server command for --direct.
    #[arg(last = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let takes_command = args.direct || args.beside.as_deref() == Some("stdio");
    if takes_command == args.command.is_empty() {
        eprintln!(
            "bridgegen: --direct and --beside stdio take the server command after `--`, \
             and only they do"
        );
        return ExitCode::from(2);
    }
    if args.clients.contains(&0) {
        eprintln!("bridgegen: --clients must be positive");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(clean) if clean => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bridgegen: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs every measurement and prints its line; `Ok(false)` when a call
/// failed or the restart missed.
fn run(args: &Args) -> Result<bool, String> {
    let mut clean = true;
    let pipe = if args.direct {
        let most = args.clients.iter().copied().max().unwrap_or(1);
        Some(Pipe::spawn(&args.command, most)?)
    } else {
        None
    };
    let target = args.target.as_ref().map(|t| {
        let addr = t.trim_start_matches("http://").trim_end_matches('/');
        let mut target = Target::new(
            addr.to_owned(),
            args.api_key.clone(),
            &args.server,
            args.aggregate,
        );
        if let Some(path) = &args.path {
            target.path = path.clone();
        }
        target.message_bytes = args.message_bytes;
        target
    });
    let runtime = if args.direct {
        "direct".to_owned()
    } else {
        runtime_of(args.server_pid)
    };
    for &clients in &args.clients {
        let callers: Vec<Box<dyn Caller>> = match (&pipe, &target) {
            (Some(pipe), _) => (0..clients)
                .map(|c| Ok(Box::new(pipe.caller(c)?) as Box<dyn Caller>))
                .collect::<Result<_, String>>()?,
            (None, Some(target)) => (0..clients)
                .map(|c| Ok(Box::new(Session::open(target, c)?) as Box<dyn Caller>))
                .collect::<Result<_, String>>()?,
            (None, None) => unreachable!("--target or --direct is required"),
        };
        // The bridge's child, or the baseline's own.
        let child = match &pipe {
            Some(pipe) => Some(pipe.pid),
            None => args
                .server_pid
                .and_then(|pid| children(pid).first().copied()),
        };
        let mut samples = Vec::new();
        let (logs, window) = load::run(
            callers,
            Duration::from_secs_f64(args.warmup),
            Duration::from_secs_f64(args.seconds),
            || {
                samples.push([
                    args.server_pid.and_then(cpu_seconds),
                    child.and_then(cpu_seconds),
                    cpu_seconds(std::process::id()),
                ])
            },
        );
        let figures = Figures::of(&logs, window);
        if let Some(e) = logs.iter().find_map(|l| l.first_error.as_ref()) {
            eprintln!("bridgegen: {clients} clients: a call failed: {e}");
        }
        clean &= figures.errors == 0 && figures.calls > 0;
        // CPU time over the window: the server's, its child's, and this
        // load generator's own (it shares the cores).
        let cpu = |i: usize| cpu_per_call(samples[0][i], samples[1][i], figures.calls);
        println!(
            "{}",
            json!({
                "runtime": runtime,
                "measure": "calls",
                "clients": clients,
                "calls": figures.calls,
                "req_per_s": figures.req_per_s.round(),
                "p50_us": round2(figures.p50_us),
                "p99_us": round2(figures.p99_us),
                "errors": figures.errors,
                "server_cpu_us_per_req": cpu(0),
                "server_rss_mb": args.server_pid.and_then(|p| rss_mb(p, "VmRSS")),
                "server_peak_rss_mb": args.server_pid.and_then(|p| rss_mb(p, "VmHWM")),
                "child_cpu_us_per_req": cpu(1),
                "child_rss_mb": child.and_then(|p| rss_mb(p, "VmRSS")),
                "client_cpu_us_per_req": cpu(2),
            })
        );
    }
    if let (Some(url), Some(target)) = (&args.beside, &target) {
        let direct: Box<dyn Caller> = match url.as_str() {
            "stdio" => Box::new(Pipe::spawn(&args.command, 1)?.caller(0)?),
            url => Box::new(Session::open(&beside::target(url)?, 0)?),
        };
        let mut samples = Vec::new();
        let paired = beside::run(
            target,
            direct,
            Duration::from_secs_f64(args.warmup),
            Duration::from_secs_f64(args.seconds),
            || samples.push(args.server_pid.and_then(cpu_seconds)),
        )?;
        if let Some(e) = &paired.first_error {
            eprintln!("bridgegen: calls in turn: a call failed: {e}");
        }
        let (bridged, direct) = (&paired.bridged, &paired.direct);
        clean &= bridged.errors + direct.errors == 0 && bridged.calls > 0 && direct.calls > 0;
        let server_cpu = cpu_per_call(
            samples.first().copied().flatten(),
            samples.get(1).copied().flatten(),
            bridged.calls,
        );
        println!(
            "{}",
            json!({
                "runtime": runtime,
                "measure": "added",
                "clients": 1,
                "calls": bridged.calls,
                "p50_us": round2(bridged.p50_us),
                "p99_us": round2(bridged.p99_us),
                "direct_calls": direct.calls,
                "direct_p50_us": round2(direct.p50_us),
                "direct_p99_us": round2(direct.p99_us),
                "added_p50_us": round2(bridged.p50_us - direct.p50_us),
                // The rate of a client calling through the bridge back to
                // back over that of one calling the server, from the same
                // seconds: each rate is 1 / its mean latency.
                "rate_ratio": (bridged.mean_us > 0.0).then(|| direct.mean_us / bridged.mean_us),
                "errors": bridged.errors + direct.errors,
                "server_cpu_us_per_req": server_cpu,
            })
        );
    }
    if let (Some(n), Some(target)) = (args.sessions, &target) {
        let f = sessions::run(target, args.server_pid, n)?;
        println!(
            "{}",
            json!({
                "runtime": runtime,
                "measure": "sessions",
                "sessions": n,
                "open_p50_us": round2(f.open_p50_us),
                "open_p99_us": round2(f.open_p99_us),
                "rss_kb_per_session": f.rss_kb_per_session.map(round2),
                "server_rss_mb": f.server_rss_kb.map(|kb| round2(kb as f64 / 1024.0)),
                "resumed": f.resumed,
                "resumed_ok": f.resumed_ok,
            })
        );
        clean &= f.resumed_ok == f.resumed;
    }
    if args.crash {
        let (Some(target), Some(pid)) = (&target, args.server_pid) else {
            unreachable!("--crash requires --target and --server-pid");
        };
        let r = crash::run(target, pid)?;
        let line: Value = json!({
            "runtime": runtime,
            "measure": "crash",
            "back_ms": r.back_ms.map(round2),
            "waiting_error_ms": r.waiting_error_ms.map(round2),
            "waiting_got_error": r.waiting_got_error,
            "echo_in_flight_error_ms": r.echo_in_flight_error_ms.map(round2),
            "failed_calls": r.failed_calls,
            "server_rss_mb": rss_mb(pid, "VmRSS"),
            "server_peak_rss_mb": rss_mb(pid, "VmHWM"),
        });
        println!("{line}");
        clean &= r.back_ms.is_some() && r.waiting_got_error;
    }
    Ok(clean)
}

/// CPU seconds sampled `before` and `after` a window, in µs per call of
/// the `calls` made in it.
fn cpu_per_call(before: Option<f64>, after: Option<f64>, calls: u64) -> Option<f64> {
    let (before, after) = before.zip(after)?;
    (calls > 0).then(|| round2((after - before) * 1e6 / calls as f64))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
