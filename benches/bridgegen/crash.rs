//! The restart figure: while one client calls `echo` back to back and
//! another waits on a long call, the bridged child is killed with SIGKILL;
//! how long until a call succeeds again, and how long the calls in flight
//! took to get their errors.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mcp_provider_benches::procfs;
use serde_json::json;

use crate::http::{Session, Target};
use crate::load::Call;
use crate::Caller;

extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}
const SIGKILL: i32 = 9;

/// What the kill did.
#[derive(Debug, Default, PartialEq)]
pub struct Restart {
    /// From the kill to the end of the first successful call begun after
    /// it.
    pub back_ms: Option<f64>,
    /// From the kill to the error of the long call waiting at the kill.
    pub waiting_error_ms: Option<f64>,
    /// Whether that long call got an error (it must not succeed: its child
    /// died).
    pub waiting_got_error: bool,
    /// From the kill to the error of the echo call in flight at the kill,
    /// when one was (it may have been answered just before).
    pub echo_in_flight_error_ms: Option<f64>,
    /// Echo calls that failed after the kill.
    pub failed_calls: u64,
}

impl Restart {
    /// Reads the echo client's calls and the long call's outcome around a
    /// kill at `kill_ns` (all times in ns since the same origin).
    pub fn of(calls: &[Call], kill_ns: u64, waiting: Option<(u64, bool)>) -> Restart {
        let ms = |ns: u64| (ns.saturating_sub(kill_ns)) as f64 / 1e6;
        let end = |c: &Call| c.start_ns + c.took_ns;
        let in_flight = calls
            .iter()
            .find(|c| c.start_ns < kill_ns && end(c) > kill_ns);
        Restart {
            back_ms: calls
                .iter()
                .find(|c| c.ok && c.start_ns >= kill_ns)
                .map(|c| ms(end(c))),
            waiting_error_ms: waiting.map(|(end_ns, _)| ms(end_ns)),
            waiting_got_error: waiting.is_some_and(|(_, ok)| !ok),
            echo_in_flight_error_ms: in_flight.filter(|c| !c.ok).map(|c| ms(end(c))),
            failed_calls: calls.iter().filter(|c| !c.ok && end(c) > kill_ns).count() as u64,
        }
    }
}

/// Kills the child of `server_pid` once both clients are busy and times
/// its return.
pub fn run(target: &Target, server_pid: u32) -> Result<Restart, String> {
    let mut echo = Session::open(target, 0)?;
    let mut waiter = Session::open(target, 1)?;
    // Make sure the child runs, and take its pid.
    echo.call(0)?;
    let child = *procfs::children(server_pid)
        .first()
        .ok_or("the server has no child process")?;

    let origin = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // When the kill was (0 until then), and whether a call begun after it
    // has succeeded.
    let killed_at = Arc::new(AtomicU64::new(0));
    let back = Arc::new(AtomicBool::new(false));
    let waiting = thread::spawn(move || {
        let outcome = waiter.call_tool(
            "trigger-long-running-operation",
            json!({"duration": 30, "steps": 1}),
        );
        (origin.elapsed().as_nanos() as u64, outcome.is_ok())
    });
    let calling = {
        let (stop, killed_at, back) = (stop.clone(), killed_at.clone(), back.clone());
        thread::spawn(move || {
            let mut calls = Vec::new();
            let mut n = 1;
            while !stop.load(Ordering::Relaxed) {
                let start = origin.elapsed().as_nanos() as u64;
                let ok = echo.call(n).is_ok();
                n += 1;
                calls.push(Call::new(
                    start,
                    origin.elapsed().as_nanos() as u64 - start,
                    ok,
                ));
                let kill_ns = killed_at.load(Ordering::Relaxed);
                if ok && kill_ns != 0 && start >= kill_ns {
                    back.store(true, Ordering::Relaxed);
                }
                if !ok {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            calls
        })
    };
    // Let the long call reach the child and the echo calls settle.
    thread::sleep(Duration::from_millis(500));
    let kill_ns = origin.elapsed().as_nanos() as u64;
    killed_at.store(kill_ns, Ordering::Relaxed);
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { kill(child as i32, SIGKILL) } != 0 {
        stop.store(true, Ordering::Relaxed);
        return Err(format!("cannot kill the child {child}"));
    }
    // Long enough for a restart after its first backoff.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(waiting.is_finished() && back.load(Ordering::Relaxed)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    // A long call still unanswered is left to its thread.
    let waited = waiting.is_finished().then(|| waiting.join().ok()).flatten();
    let calls = calling.join().map_err(|_| "the caller panicked")?;
    Ok(Restart::of(&calls, kill_ns, waited))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kill_is_timed_from_the_calls_around_it() {
        let ms = 1_000_000;
        let calls = [
            Call::new(0, ms, true),
            Call::new(ms, 3 * ms, false), // in flight at the kill (2 ms)
            Call::new(5 * ms, ms, false), // during the restart
            Call::new(7 * ms, 300 * ms, true), // waited for the new child
            Call::new(307 * ms, ms, true),
        ];
        let r = Restart::of(&calls, 2 * ms, Some((4 * ms, false)));
        assert_eq!(r.back_ms, Some(305.0));
        assert_eq!(r.echo_in_flight_error_ms, Some(2.0));
        assert_eq!(r.waiting_error_ms, Some(2.0));
        assert!(r.waiting_got_error);
        assert_eq!(r.failed_calls, 2);

        // The call at the kill was answered before the child died; nothing
        // came back; the long call was never answered.
        let r = Restart::of(
            &[Call::new(0, 3 * ms, true), Call::new(3 * ms, ms, false)],
            2 * ms,
            None,
        );
        assert_eq!(r.echo_in_flight_error_ms, None);
        assert_eq!(r.back_ms, None);
        assert_eq!(r.waiting_error_ms, None);
        assert!(!r.waiting_got_error);
    }
}
