//! Hash maps and sets keyed by what the provider makes itself: numbers it
//! hands out (connection ids, invocation numbers, bridged children and
//! their clients, a remote server's exchanges), the session ids it draws,
//! the names of the servers it was configured with. A peer never chooses
//! a key that goes in (it may look one up), so the maps need no defence
//! against crafted collisions, and a multiply-rotate hash (a few cycles a
//! word) replaces SipHash on the per-chunk and per-call paths.

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
        let words = bytes.chunks_exact(8);
        let tail = words.remainder();
        for word in words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.write_u64(u64::from_le_bytes(w));
        }
        for &b in tail {
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

    #[test]
    fn names_that_differ_in_one_byte_hash_apart() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<IdHasher>::default();
        let hashes: HashSet<u64> = (0..64u8)
            .map(|n| build.hash_one(format!("session-0123456789abcdef-{}", char::from(b'0' + n))))
            .collect();
        assert_eq!(hashes.len(), 64);
    }
}
