//! Hash maps and sets keyed by numbers the provider hands out itself:
//! connection ids, invocation numbers, bridged children and their clients,
//! a remote server's exchanges (the runtimes' maps of children and
//! exchanges too). A peer never chooses these keys, so the maps
//! need no defence against crafted collisions, and a multiply-rotate hash
//! (a few cycles) replaces SipHash on the per-chunk path.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
pub(crate) type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
pub struct IdHasher(u64);

/// An odd constant with well-mixed bits (from the golden ratio).
const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_over_buckets() {
        // The low 7 bits pick among 128 buckets: consecutive ids must not
        // pile into a few of them.
        let mut used = [false; 128];
        for n in 0..128u64 {
            let mut h = IdHasher::default();
            h.write_u64(n);
            used[(h.finish() & 127) as usize] = true;
        }
        assert!(used.iter().filter(|&&u| u).count() > 100);
    }
}
