//! What a session keeps of its server's messages: those held while its
//! client has no stream open, and the last ones sent, for a replay after
//! `Last-Event-ID`. Bounded by count and by bytes, for each session and
//! for all sessions together: a server can send messages of megabytes,
//! and a client that never listens must cost the bridge a bounded amount
//! of memory whatever it is sent. Past a bound the oldest go.

use std::collections::VecDeque;

/// Messages one session keeps in each of its two buffers.
pub const HELD_PER_SESSION: usize = 256;

/// Bytes one session keeps in each of its two buffers.
pub const KEPT_BYTES_PER_SESSION: usize = 8 << 20;

/// Bytes all sessions together keep, both buffers counted: past it the
/// session being added to lets its oldest go.
pub const KEPT_BYTES: usize = 64 << 20;

/// One bounded buffer of messages, each with its event number.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    items: VecDeque<(u64, String)>,
    bytes: usize,
}

impl Kept {
    /// Keeps `message`, then lets the oldest go until every bound holds
    /// again (the message itself, if it alone is past one). `total` is
    /// what all sessions keep. How many went.
    pub(crate) fn push(&mut self, n: u64, message: String, total: &mut usize) -> usize {
        self.bytes += message.len();
        *total += message.len();
        self.items.push_back((n, message));
        let mut dropped = 0;
        while self.items.len() > HELD_PER_SESSION
            || self.bytes > KEPT_BYTES_PER_SESSION
            || *total > KEPT_BYTES
        {
            let Some((_, old)) = self.items.pop_front() else {
                break;
            };
            self.bytes -= old.len();
            *total -= old.len();
            dropped += 1;
        }
        dropped
    }

    /// Everything kept, oldest first; the buffer is left empty.
    pub(crate) fn take(&mut self, total: &mut usize) -> Vec<(u64, String)> {
        *total -= self.bytes;
        self.bytes = 0;
        self.items.drain(..).collect()
    }

    /// The messages numbered after `n`, oldest first.
    pub(crate) fn after(&self, n: u64) -> impl Iterator<Item = (u64, &str)> {
        self.items
            .iter()
            .filter(move |(m, _)| *m > n)
            .map(|(m, message)| (*m, message.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_count_by_bytes_and_by_all_sessions_together() {
        let mut total = 0;
        let mut one = Kept::default();
        for n in 0..300 {
            one.push(n, "x".into(), &mut total);
        }
        assert_eq!(
            (one.items.len(), total),
            (HELD_PER_SESSION, HELD_PER_SESSION)
        );
        assert_eq!(one.after(298).map(|(n, _)| n).collect::<Vec<_>>(), [299]);
        assert_eq!(one.take(&mut total).len(), HELD_PER_SESSION);
        assert_eq!(total, 0);

        let big = "y".repeat(3 << 20);
        for n in 0..10 {
            one.push(n, big.clone(), &mut total);
        }
        assert_eq!(one.items.len(), 2, "8 MiB hold two of 3 MiB");
        assert!(one.bytes <= KEPT_BYTES_PER_SESSION && total == one.bytes);

        let mut others: Vec<Kept> = (0..40).map(|_| Kept::default()).collect();
        for kept in &mut others {
            for n in 0..3 {
                kept.push(n, big.clone(), &mut total);
            }
        }
        assert!(total <= KEPT_BYTES, "{total}");
        let sum: usize = others.iter().map(|k| k.bytes).sum::<usize>() + one.bytes;
        assert_eq!(sum, total);

        let huge = "z".repeat(KEPT_BYTES_PER_SESSION + 1);
        let mut alone = Kept::default();
        let before = total;
        assert_eq!(
            alone.push(0, huge, &mut total),
            1,
            "too large alone: not kept"
        );
        assert_eq!(total, before);
    }
}
