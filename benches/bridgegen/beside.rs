//! The bridge's added latency with the server's own drift cancelled out:
//! one client alternates a call through the bridge with a call to the same
//! server reached directly (over HTTP for a remote server, over its stdio
//! pipe for a command), so both sides of the difference meet the server
//! in the same state and the machine in the same mood (a server's runtime
//! keeps compiling, collecting and caching as it runs, which moves its
//! latency by more than the bridge adds between runs taken one after
//! another).

use std::time::Duration;

use crate::http::{Session, Target};
use crate::load::{self, Figures, Log};
use crate::Caller;

/// The figures of the calls through the bridge, and of those made to the
/// server directly, in one window.
pub struct Paired {
    pub bridged: Figures,
    pub direct: Figures,
    pub first_error: Option<String>,
}

/// Makes its calls through `bridged` and `direct` in turns.
struct Alternating {
    bridged: Session,
    direct: Box<dyn Caller>,
}

impl Caller for Alternating {
    fn call(&mut self, n: u64) -> Result<(), String> {
        match n % 2 {
            0 => self.bridged.call(n / 2),
            _ => self.direct.call(n / 2),
        }
    }
}

/// The server reached directly at `url` (`http://host:port/path`).
pub fn target(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--beside {url}: not an http:// URL"))?;
    let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut target = Target::new(addr.to_owned(), String::new(), "", false);
    target.path = if path.is_empty() { "/" } else { path }.to_owned();
    Ok(target)
}

/// One client, alternating between `bridged` and `direct`, for `warmup`
/// and then `measure`; `at_edge` as in [`load::run`].
pub fn run(
    bridged: &Target,
    direct: Box<dyn Caller>,
    warmup: Duration,
    measure: Duration,
    at_edge: impl FnMut(),
) -> Result<Paired, String> {
    let caller = Alternating {
        bridged: Session::open(bridged, 0)?,
        direct,
    };
    let (logs, window) = load::run(vec![Box::new(caller)], warmup, measure, at_edge);
    let first_error = logs.iter().find_map(|l| l.first_error.clone());
    let [bridged, direct] = split(logs);
    Ok(Paired {
        bridged: Figures::of(&[bridged], window),
        direct: Figures::of(&[direct], window),
        first_error,
    })
}

/// The calls in turn told apart: even ones (through the bridge), then
/// odd ones (direct).
fn split(logs: Vec<Log>) -> [Log; 2] {
    let mut sides = [Vec::new(), Vec::new()];
    for log in logs {
        for (i, call) in log.calls.into_iter().enumerate() {
            sides[i % 2].push(call);
        }
    }
    sides.map(|calls| Log {
        calls,
        first_error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Call;

    #[test]
    fn calls_in_turn_are_told_apart() {
        let calls = (0..6).map(|i| Call::new(i * 10, i + 1, true)).collect();
        let [bridged, direct] = split(vec![Log {
            calls,
            first_error: None,
        }]);
        let took = |l: &Log| l.calls.iter().map(|c| c.took_ns).collect::<Vec<_>>();
        assert_eq!(took(&bridged), [1, 3, 5]);
        assert_eq!(took(&direct), [2, 4, 6]);
    }

    #[test]
    fn the_direct_url_is_read_into_address_and_path() {
        let t = target("http://127.0.0.1:9/mcp").unwrap();
        assert_eq!((t.addr.as_str(), t.path.as_str()), ("127.0.0.1:9", "/mcp"));
        assert!(target("https://example.com/mcp").is_err());
    }
}
