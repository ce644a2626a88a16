//! Putting an agent's stream chunks back in `chunk_index` order.
//!
//! Duplicates are dropped, early chunks wait in a bounded buffer until the
//! gap before them fills. The output order depends only on the indexes, so
//! the bytes written to the editor are the same whatever the arrival order.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    #[error("more than {0} chunks waiting for a missing earlier chunk")]
    Overflow(usize),
}

/// What happened to a pushed chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// It is next in order (and anything held behind it may now be ready).
    Ready,
    /// It arrived early and is held.
    Held,
    /// Seen before; dropped.
    Duplicate,
}

#[derive(Debug)]
pub struct Reassembler<T> {
    next: u64,
    held: BTreeMap<u64, T>,
    ready: Option<T>,
    max_held: usize,
}

impl<T> Reassembler<T> {
    pub fn new(max_held: usize) -> Self {
        Reassembler {
            next: 0,
            held: BTreeMap::new(),
            ready: None,
            max_held,
        }
    }

    /// Offers chunk `index`. Drain [`Reassembler::pop`] after each push.
    pub fn push(&mut self, index: u64, item: T) -> Result<Pushed, ReassemblyError> {
        if index < self.next || self.held.contains_key(&index) {
            return Ok(Pushed::Duplicate);
        }
        if index == self.next && self.ready.is_none() {
            self.ready = Some(item);
            self.next += 1;
            return Ok(Pushed::Ready);
        }
        if index == self.next {
            // `ready` is still occupied: the caller did not drain; hold it.
            self.held.insert(index, item);
            return Ok(Pushed::Held);
        }
        if self.held.len() >= self.max_held {
            return Err(ReassemblyError::Overflow(self.max_held));
        }
        self.held.insert(index, item);
        Ok(Pushed::Held)
    }

    /// Takes chunk `index` through without holding it, when it is next in
    /// order and nothing is waiting to be popped: the caller uses it at
    /// once. Returns false otherwise (then [`Reassembler::push`] it).
    pub fn pass(&mut self, index: u64) -> bool {
        let next = index == self.next && self.ready.is_none();
        if next {
            self.next += 1;
        }
        next
    }

    /// The next chunk in order, if it is here.
    pub fn pop(&mut self) -> Option<T> {
        if let Some(item) = self.ready.take() {
            return Some(item);
        }
        let item = self.held.remove(&self.next)?;
        self.next += 1;
        Some(item)
    }

    /// Whether chunks are held behind a gap.
    pub fn has_gap(&self) -> bool {
        !self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(order: &[u64]) -> Vec<u64> {
        let mut r = Reassembler::new(16);
        let mut out = Vec::new();
        for &i in order {
            r.push(i, i).unwrap();
            while let Some(x) = r.pop() {
                out.push(x);
            }
        }
        out
    }

    #[test]
    fn any_order_with_duplicates_gives_the_same_sequence() {
        let expected: Vec<u64> = (0..6).collect();
        assert_eq!(run(&[0, 1, 2, 3, 4, 5]), expected);
        assert_eq!(run(&[5, 4, 3, 2, 1, 0]), expected);
        assert_eq!(run(&[2, 0, 2, 1, 0, 5, 3, 4, 4]), expected);
    }

    #[test]
    fn chunks_passed_through_keep_the_order() {
        for order in [&[0, 1, 2, 3][..], &[1, 0, 3, 2], &[3, 2, 0, 1, 1]] {
            let mut r = Reassembler::new(16);
            let mut out = Vec::new();
            for &i in order {
                if r.pass(i) {
                    out.push(i);
                } else {
                    r.push(i, i).unwrap();
                }
                while let Some(x) = r.pop() {
                    out.push(x);
                }
            }
            assert_eq!(out, [0, 1, 2, 3]);
        }
    }

    #[test]
    fn gap_is_reported_and_bounded() {
        let mut r = Reassembler::new(2);
        assert_eq!(r.push(1, ()), Ok(Pushed::Held));
        assert_eq!(r.push(2, ()), Ok(Pushed::Held));
        assert!(r.has_gap());
        assert_eq!(r.push(3, ()), Err(ReassemblyError::Overflow(2)));
        assert_eq!(r.push(1, ()), Ok(Pushed::Duplicate));
        assert_eq!(r.push(0, ()), Ok(Pushed::Ready));
        assert_eq!(r.pop(), Some(()));
        assert_eq!(r.pop(), Some(()));
        assert_eq!(r.pop(), Some(()));
        assert_eq!(r.pop(), None);
        assert!(!r.has_gap());
    }
}
