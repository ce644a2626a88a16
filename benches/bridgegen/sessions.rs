//! `--sessions N`: what a session costs on a shared child. N clients, one
//! after another, each connect, open a session (`initialize`, then
//! `notifications/initialized`) and hang up, leaving the session idle; how
//! long each opening took, and how much the server's resident memory grew
//! per idle session. Then every tenth session is taken up again on a new
//! connection and must still answer its own call.

use std::time::{Duration, Instant};

use mcp_provider_benches::procfs::rss_kb;
use mcp_provider_benches::stats::quantile_us;

use crate::http::{Session, Target};
use crate::Caller;

pub struct Figures {
    pub open_p50_us: f64,
    pub open_p99_us: f64,
    /// Server RSS growth over the openings, per session, in kB.
    pub rss_kb_per_session: Option<f64>,
    pub server_rss_kb: Option<u64>,
    /// Sessions taken up again that answered their call, of those tried.
    pub resumed_ok: usize,
    pub resumed: usize,
}

pub fn run(target: &Target, server_pid: Option<u32>, n: usize) -> Result<Figures, String> {
    let rss = || server_pid.and_then(|pid| rss_kb(pid, "VmRSS"));
    // The child started and the first session's costs paid before the
    // baseline is read.
    drop(Session::open(target, 0)?);
    settle();
    let before = rss();
    let mut opened = Vec::with_capacity(n);
    let mut took_ns = Vec::with_capacity(n);
    for client in 0..n {
        let started = Instant::now();
        let session = Session::open(target, client)?;
        took_ns.push(started.elapsed().as_nanos() as u64);
        opened.push(session.id());
    }
    settle();
    let after = rss();
    took_ns.sort_unstable();
    let mut resumed = 0;
    let mut resumed_ok = 0;
    for (client, id) in opened.into_iter().enumerate().step_by(10) {
        resumed += 1;
        let mut session = Session::resume(target, client, id)?;
        if session.call(1).is_ok() {
            resumed_ok += 1;
        }
    }
    Ok(Figures {
        open_p50_us: quantile_us(&took_ns, 0.5),
        open_p99_us: quantile_us(&took_ns, 0.99),
        rss_kb_per_session: before
            .zip(after)
            .map(|(b, a)| a.saturating_sub(b) as f64 / n.max(1) as f64),
        server_rss_kb: after,
        resumed_ok,
        resumed,
    })
}

/// Lets the server finish closing the connections just hung up.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}
