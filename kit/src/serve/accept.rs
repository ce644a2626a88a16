//! What every accept loop does when an accept fails — the server's
//! listeners and `agent exec`'s tool relays, in every runtime: a failed
//! accept is almost always the process out of files or memory for a
//! moment, which passes as connections close, so the loop waits a little
//! and goes on. Ending the loop would leave the listener deaf for good;
//! going on at once would spin.

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

/// How long an accept loop waits after a failed accept: long enough not to
/// spin while the cause lasts, short enough to go unnoticed once it passed.
pub const PAUSE: Duration = Duration::from_millis(50);

/// A failing accept fails at every turn of its loop: it is logged once in
/// this long at most.
const SAY_EVERY: Duration = Duration::from_secs(1);

/// The failures of one accept loop.
#[derive(Default)]
pub struct Failures {
    last_said: Option<Instant>,
}

impl Failures {
    /// An accept failed with `e` at `now`: it is logged unless one was in
    /// the last second, and the loop waits the returned time before
    /// accepting again.
    pub fn failed(&mut self, e: &io::Error, now: Instant) -> Duration {
        let quiet = self
            .last_said
            .is_some_and(|at| now.saturating_duration_since(at) < SAY_EVERY);
        if !quiet {
            tracing::warn!("accept failed: {e}");
            self.last_said = Some(now);
        }
        PAUSE
    }
}

/// The next connection `accept` gives, for an async accept loop: each
/// failure is waited out with `pause` (the executor's timer) as
/// [`Failures`] says, never the end of the loop.
pub async fn next<T, A, P>(
    mut accept: impl FnMut() -> A,
    mut pause: impl FnMut(Duration) -> P,
    failures: &mut Failures,
) -> T
where
    A: Future<Output = io::Result<T>>,
    P: Future,
{
    loop {
        match accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                pause(failures.failed(&e, Instant::now())).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::future::ready;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// Polls `future`, whose every await is ready at once, to its end.
    fn finish<T>(future: impl Future<Output = T>) -> T {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(done) = future.as_mut().poll(&mut cx) {
                return done;
            }
        }
    }

    fn out_of_files() -> io::Error {
        io::Error::from_raw_os_error(libc::EMFILE)
    }

    /// A listener out of files for two accepts, then given a connection:
    /// the loop pauses after each failure and gets the connection, rather
    /// than ending at the first failure.
    #[test]
    fn a_failed_accept_is_waited_out_not_the_end() {
        let mut results: VecDeque<io::Result<u32>> =
            VecDeque::from([Err(out_of_files()), Err(out_of_files()), Ok(7)]);
        let mut pauses = Vec::new();
        let mut failures = Failures::default();
        let accepted = finish(next(
            || ready(results.pop_front().unwrap_or(Ok(0))),
            |wait| {
                pauses.push(wait);
                ready(())
            },
            &mut failures,
        ));
        assert_eq!(accepted, 7);
        assert_eq!(pauses, [PAUSE, PAUSE]);
    }

    #[test]
    fn a_failure_is_said_once_a_second_at_most() {
        let mut failures = Failures::default();
        let start = Instant::now();
        failures.failed(&out_of_files(), start);
        assert_eq!(failures.last_said, Some(start));
        failures.failed(&out_of_files(), start + Duration::from_millis(500));
        assert_eq!(failures.last_said, Some(start));
        let later = start + SAY_EVERY;
        failures.failed(&out_of_files(), later);
        assert_eq!(failures.last_said, Some(later));
    }
}
