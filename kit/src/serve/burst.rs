//! Agent frames a link has read but not yet handed to the provider: copied
//! into one reused buffer, so a burst holds no reference into the
//! WebSocket's read buffer (which could then not be reused, and every read
//! would allocate afresh).

use crate::{BURST_BYTES, RING_EVERY};

/// The frames of one burst, in order.
#[derive(Debug, Default)]
pub struct Burst {
    text: String,
    /// Where each frame ends in `text`.
    ends: Vec<usize>,
}

impl Burst {
    pub fn push(&mut self, frame: &str) {
        self.text.push_str(frame);
        self.ends.push(self.text.len());
    }

    /// How many frames the burst holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// How many bytes of frames the burst holds.
    pub fn bytes(&self) -> usize {
        self.text.len()
    }

    /// The frames, in the order they were pushed.
    pub fn frames(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .filter_map(|(start, end)| self.text.get(start..end))
    }

    /// Whether the burst should be handed over now, whatever else has
    /// arrived: it holds [`RING_EVERY`] frames or [`BURST_BYTES`] bytes.
    pub fn is_full(&self) -> bool {
        self.len() >= RING_EVERY || self.bytes() >= BURST_BYTES
    }

    /// Empties the burst, keeping its buffers for the next.
    pub fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_whole_and_in_order_and_clear_keeps_nothing() {
        let mut burst = Burst::default();
        assert!(burst.is_empty());
        for frame in ["{\"a\":1}", "", "é{}"] {
            burst.push(frame);
        }
        assert_eq!(burst.frames().collect::<Vec<_>>(), ["{\"a\":1}", "", "é{}"]);
        assert_eq!((burst.len(), burst.bytes()), (3, 7 + 4));
        burst.clear();
        assert!(burst.is_empty() && burst.frames().next().is_none() && burst.bytes() == 0);
        burst.push("x");
        assert_eq!(burst.frames().collect::<Vec<_>>(), ["x"]);
        burst.clear();
        burst.push("");
        assert!(!burst.is_empty());
    }
}
