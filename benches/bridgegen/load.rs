//! Callers on threads of their own, calling back to back; a warm-up, then
//! a measured window; the calls that began and ended inside it make the
//! figures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use mcp_provider_benches::stats::quantile_us;

use crate::Caller;

/// One call: when it began and how long it took, in ns since the run's
/// start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub start_ns: u64,
    pub took_ns: u64,
    pub ok: bool,
}

impl Call {
    pub fn new(start_ns: u64, took_ns: u64, ok: bool) -> Call {
        Call {
            start_ns,
            took_ns,
            ok,
        }
    }
}

/// What a caller did, and its first error.
pub struct Log {
    pub calls: Vec<Call>,
    pub first_error: Option<String>,
}

/// Figures of the measured window.
#[derive(Debug, Default, PartialEq)]
pub struct Figures {
    pub calls: u64,
    pub req_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// The mean: one client calling back to back makes 1 / mean calls a
    /// second.
    pub mean_us: f64,
    /// Failed calls over the whole run, warm-up included.
    pub errors: u64,
}

/// When the measured window was, in ns since the run's start.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Figures {
    /// The figures of the calls that began and ended inside `window`.
    pub fn of(logs: &[Log], window: Window) -> Figures {
        let mut took: Vec<u64> = Vec::new();
        let mut errors = 0;
        for call in logs.iter().flat_map(|l| &l.calls) {
            if !call.ok {
                errors += 1;
            } else if call.start_ns >= window.start_ns
                && call.start_ns + call.took_ns <= window.end_ns
            {
                took.push(call.took_ns);
            }
        }
        took.sort_unstable();
        let span = window.end_ns.saturating_sub(window.start_ns);
        Figures {
            calls: took.len() as u64,
            req_per_s: if span > 0 {
                took.len() as f64 * 1e9 / span as f64
            } else {
                0.0
            },
            p50_us: quantile_us(&took, 0.50),
            p99_us: quantile_us(&took, 0.99),
            mean_us: if took.is_empty() {
                0.0
            } else {
                took.iter().sum::<u64>() as f64 / took.len() as f64 / 1e3
            },
            errors,
        }
    }
}

/// Runs every caller back to back for `warmup`, then for `measure`, and
/// calls `at_edge` at the window's start and end (to sample the server).
/// Returns each caller's log and the window.
pub fn run(
    callers: Vec<Box<dyn Caller>>,
    warmup: Duration,
    measure: Duration,
    mut at_edge: impl FnMut(),
) -> (Vec<Log>, Window) {
    let origin = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new(Barrier::new(callers.len() + 1));
    let threads: Vec<_> = callers
        .into_iter()
        .map(|mut caller| {
            let (stop, go) = (stop.clone(), go.clone());
            thread::spawn(move || {
                let mut log = Log {
                    calls: Vec::with_capacity(64 * 1024),
                    first_error: None,
                };
                go.wait();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let start = origin.elapsed();
                    let outcome = caller.call(n);
                    let took = origin.elapsed() - start;
                    n += 1;
                    if let Err(e) = &outcome {
                        log.first_error.get_or_insert_with(|| e.clone());
                    }
                    log.calls.push(Call::new(
                        start.as_nanos() as u64,
                        took.as_nanos() as u64,
                        outcome.is_ok(),
                    ));
                    if outcome.is_err() {
                        // Do not spin on a dead server.
                        thread::sleep(Duration::from_millis(1));
                    }
                }
                log
            })
        })
        .collect();
    go.wait();
    thread::sleep(warmup);
    at_edge();
    let start_ns = origin.elapsed().as_nanos() as u64;
    thread::sleep(measure);
    let end_ns = origin.elapsed().as_nanos() as u64;
    at_edge();
    stop.store(true, Ordering::Relaxed);
    let logs = threads
        .into_iter()
        .map(|t| {
            t.join().unwrap_or_else(|_| Log {
                calls: Vec::new(),
                first_error: Some("the caller panicked".to_owned()),
            })
        })
        .collect();
    (logs, Window { start_ns, end_ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_calls_inside_the_window_count_and_every_error_does() {
        let logs = [
            Log {
                calls: vec![
                    Call::new(0, 100, true),   // warm-up
                    Call::new(900, 200, true), // straddles the start
                    Call::new(1_000, 100, true),
                    Call::new(1_100, 50, false), // an error counts anywhere
                    Call::new(1_200, 300, true),
                ],
                first_error: None,
            },
            Log {
                calls: vec![
                    Call::new(1_000, 400, true),
                    Call::new(1_900, 200, true), // ends after the window
                    Call::new(2_100, 10, false),
                ],
                first_error: None,
            },
        ];
        let f = Figures::of(
            &logs,
            Window {
                start_ns: 1_000,
                end_ns: 2_000,
            },
        );
        assert_eq!(f.calls, 3);
        assert_eq!(f.errors, 2);
        assert_eq!(f.req_per_s, 3e6);
        assert_eq!((f.p50_us, f.p99_us), (0.3, 0.4));
        assert!((f.mean_us - 0.8 / 3.0).abs() < 1e-9, "{}", f.mean_us);
    }

    struct Counter(u64);

    impl Caller for Counter {
        fn call(&mut self, n: u64) -> Result<(), String> {
            assert_eq!(n, self.0);
            self.0 += 1;
            thread::sleep(Duration::from_micros(200));
            if n == 3 {
                Err("third".to_owned())
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn callers_run_until_the_window_closes() {
        let mut edges = 0;
        let callers: Vec<Box<dyn Caller>> = vec![Box::new(Counter(0)), Box::new(Counter(0))];
        let (logs, window) = run(
            callers,
            Duration::from_millis(20),
            Duration::from_millis(50),
            || edges += 1,
        );
        assert_eq!(edges, 2);
        assert!(window.end_ns - window.start_ns >= 50_000_000);
        let f = Figures::of(&logs, window);
        assert_eq!(f.errors, 2);
        assert!(f.calls > 10, "{f:?}");
        assert_eq!(logs[0].first_error.as_deref(), Some("third"));
    }
}
