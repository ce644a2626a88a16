//! Token buckets for requests/minute and tokens/minute.
//!
//! Arithmetic is exact (integers): one token is worth `PERIOD_NS` units and
//! a bucket of capacity `c` gains `c` units per nanosecond, so it refills
//! completely in one period and never admits more than `c` per period plus
//! what it held at the start.

use std::time::{Duration, Instant};

const PERIOD_NS: u128 = 60_000_000_000;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: u64,
    level: u128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket holding `per_minute` tokens.
    pub fn new(per_minute: u64, now: Instant) -> Self {
        TokenBucket {
            capacity: per_minute,
            level: per_minute as u128 * PERIOD_NS,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.last = self.last.max(now);
        let max = self.capacity as u128 * PERIOD_NS;
        self.level = (self.level + elapsed * self.capacity as u128).min(max);
    }

    /// Takes `n` tokens, or says how long until they are there.
    pub fn try_take(&mut self, n: u64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        let need = n as u128 * PERIOD_NS;
        if need <= self.level {
            self.level -= need;
            return Ok(());
        }
        if self.capacity == 0 || n > self.capacity {
            return Err(Duration::from_secs(60));
        }
        let wait_ns = (need - self.level).div_ceil(self.capacity as u128);
        Err(Duration::from_nanos(wait_ns.min(u64::MAX as u128) as u64))
    }

    /// Takes up to `n` tokens after the fact (used tokens reported later);
    /// never fails, the bucket just empties.
    pub fn charge(&mut self, n: u64, now: Instant) {
        self.refill(now);
        self.level = self.level.saturating_sub(n as u128 * PERIOD_NS);
    }

    /// Gives back `n` tokens taken by a request that was then refused.
    pub fn refund(&mut self, n: u64) {
        let max = self.capacity as u128 * PERIOD_NS;
        self.level = (self.level + n as u128 * PERIOD_NS).min(max);
    }

    /// Whole tokens available now.
    pub fn remaining(&self) -> u64 {
        (self.level / PERIOD_NS) as u64
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Time until the bucket is full again.
    pub fn until_full(&self) -> Duration {
        if self.capacity == 0 {
            return Duration::ZERO;
        }
        let missing = self.capacity as u128 * PERIOD_NS - self.level;
        Duration::from_nanos(missing.div_ceil(self.capacity as u128) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_linearly_to_capacity() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(60, t0);
        for _ in 0..60 {
            b.try_take(1, t0).unwrap();
        }
        assert_eq!(b.try_take(1, t0), Err(Duration::from_secs(1)));
        assert_eq!(
            b.try_take(1, t0 + Duration::from_millis(999)),
            Err(Duration::from_millis(1))
        );
        b.try_take(1, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(b.remaining(), 0);
        let later = t0 + Duration::from_secs(3600);
        b.try_take(0, later).unwrap();
        assert_eq!(b.remaining(), 60);
    }

    #[test]
    fn charge_never_goes_below_empty_and_more_than_capacity_waits_a_period() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, t0);
        b.charge(1000, t0);
        assert_eq!(b.remaining(), 0);
        assert_eq!(b.until_full(), Duration::from_secs(60));
        assert_eq!(
            b.try_take(11, t0 + Duration::from_secs(60)),
            Err(Duration::from_secs(60))
        );
    }

    mod laws {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// Over any window, a bucket of capacity `c` per minute admits
            /// at most `c` (the full bucket it may start with) plus `c` per
            /// minute of the window's length; `charge` only ever lowers it.
            #[test]
            fn never_admits_more_than_its_rate_over_any_window(
                capacity in 1..200u64,
                steps in prop::collection::vec((0..30_000_000_000u64, 1..20u64, any::<bool>()), 1..80),
            ) {
                let t0 = Instant::now();
                let mut bucket = TokenBucket::new(capacity, t0);
                let mut now_ns = 0u64;
                let mut admitted: Vec<(u64, u64)> = Vec::new();
                for (advance, n, charge) in steps {
                    now_ns += advance;
                    let now = t0 + Duration::from_nanos(now_ns);
                    if charge {
                        bucket.charge(n, now);
                    } else if bucket.try_take(n, now).is_ok() {
                        admitted.push((now_ns, n));
                    }
                }
                for i in 0..admitted.len() {
                    let mut total = 0u128;
                    for &(at, n) in &admitted[i..] {
                        total += u128::from(n);
                        let window = u128::from(at - admitted[i].0);
                        let allowed = u128::from(capacity) * PERIOD_NS + u128::from(capacity) * window;
                        prop_assert!(total * PERIOD_NS <= allowed,
                            "{} tokens admitted within {} ns", total, window);
                    }
                }
            }
        }
    }
}
