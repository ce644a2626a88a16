//! What the provider derives without a clock or a random source of its
//! own: ids and tokens from a seeded counter, wall times from instants.

use std::time::{Instant, SystemTime};

/// Fresh ids: a counter, and tokens drawn from it with the seed.
pub(super) struct Ids {
    seed: u64,
    next: u64,
}

impl Ids {
    pub(super) fn new(seed: u64) -> Self {
        Ids { seed, next: 0 }
    }

    /// A fresh id, unique within this run and different between runs.
    pub(super) fn fresh(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// A random-looking hex id (splitmix64 of seed and counter).
    pub(super) fn token(&mut self) -> String {
        let mut z = self.seed ^ self.fresh().wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        format!("{:016x}", z ^ (z >> 31))
    }
}

/// The instant and wall time at start: wall time is derived from instants
/// so the core never reads a clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Epoch {
    pub(super) instant: Instant,
    pub(super) wall: SystemTime,
}

impl Epoch {
    /// The wall time of `now`.
    pub(super) fn wall(self, now: Instant) -> SystemTime {
        self.wall + now.saturating_duration_since(self.instant)
    }
}
