//! Agent frames a link has read but not yet handed to the provider: copied
//! into one reused buffer, so a burst holds no reference into the
//! WebSocket's read buffer (which could then not be reused, and every read
//! would allocate afresh).

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
        assert_eq!(burst.frames().count(), 0);
        for frame in ["{\"a\":1}", "", "é{}"] {
            burst.push(frame);
        }
        assert_eq!(burst.frames().collect::<Vec<_>>(), ["{\"a\":1}", "", "é{}"]);
        assert_eq!(burst.bytes(), 7 + 4);
        burst.clear();
        assert_eq!((burst.frames().count(), burst.bytes()), (0, 0));
        burst.push("x");
        assert_eq!(burst.frames().collect::<Vec<_>>(), ["x"]);
    }
}
