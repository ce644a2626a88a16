//! Doubling backoff: how long to wait before trying again something that
//! failed (a dial, a child's run), each wait twice the last up to a cap.
//!
//! Pure: it counts failures and computes waits; the caller owns the clock.

use std::time::Duration;

/// A doubling schedule: `first` after one failure, doubled after each
/// further failure in a row, never more than `most`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Doubling {
    pub first: Duration,
    pub most: Duration,
}

impl Doubling {
    /// The wait after `failures` failed attempts in a row (none or one:
    /// [`first`](Self::first)).
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first
            .checked_mul(1 << doublings)
            .unwrap_or(self.most)
            .min(self.most)
    }
}

/// A [`Doubling`] schedule with its count of failures in a row: for a
/// loop that waits, tries, and waits again.
#[derive(Debug, Clone)]
pub struct Backoff {
    schedule: Doubling,
    failures: u32,
}

impl Backoff {
    pub fn new(schedule: Doubling) -> Self {
        Backoff {
            schedule,
            failures: 0,
        }
    }

    /// An attempt succeeded: the next wait is the first again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// An attempt failed: how long to wait before the next one.
    pub fn next_wait(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.schedule.after(self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: Doubling = Doubling {
        first: Duration::from_millis(100),
        most: Duration::from_secs(10),
    };

    #[test]
    fn doubles_from_the_first_wait_up_to_the_cap() {
        let waits: Vec<u128> = (0..=9).map(|n| SCHEDULE.after(n).as_millis()).collect();
        assert_eq!(
            waits,
            [100, 100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        assert_eq!(SCHEDULE.after(u32::MAX), SCHEDULE.most);
    }

    #[test]
    fn a_backoff_counts_failures_until_reset() {
        let mut b = Backoff::new(SCHEDULE);
        assert_eq!(b.next_wait(), Duration::from_millis(100));
        assert_eq!(b.next_wait(), Duration::from_millis(200));
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(100));
        for _ in 0..100 {
            b.next_wait();
        }
        assert_eq!(b.next_wait(), SCHEDULE.most);
    }
}
