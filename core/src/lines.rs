//! Newline-delimited input (JSON lines from a CLI, JSON-RPC on stdio)
//! split into lines, each bounded: a peer that never sends a newline costs
//! at most the bound.

/// Splits a byte stream into lines of at most `max` bytes.
pub struct LineBuffer {
    max: usize,
    partial: Vec<u8>,
    /// The current line went past the limit: skipped to its end.
    overflowed: bool,
}

/// A line from [`LineBuffer`], or the mark of one that was too long.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Text(String),
    TooLong,
}

impl LineBuffer {
    pub fn new(max: usize) -> Self {
        LineBuffer {
            max,
            partial: Vec::new(),
            overflowed: false,
        }
    }

    /// The lines `bytes` completes (blank ones skipped, a trailing `\r`
    /// dropped, invalid UTF-8 replaced).
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<Line> {
        let mut lines = Vec::new();
        while !bytes.is_empty() {
            let (piece, rest, ends) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            if !self.overflowed && self.partial.len() + piece.len() > self.max {
                self.overflowed = true;
                self.partial = Vec::new();
                lines.push(Line::TooLong);
            }
            if self.overflowed {
                self.overflowed = !ends;
                continue;
            }
            if !ends {
                self.partial.extend_from_slice(piece);
                continue;
            }
            // A line read whole in one piece is copied once, at its size.
            let line = match self.partial.is_empty() {
                true => piece.to_vec(),
                false => {
                    self.partial.extend_from_slice(piece);
                    std::mem::take(&mut self.partial)
                }
            };
            lines.extend(text_of(line));
        }
        lines
    }

    /// Bytes held of a line not complete yet.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// The input ended: its last line, if it had no newline.
    pub fn finish(&mut self) -> Option<Line> {
        if std::mem::take(&mut self.overflowed) {
            return None;
        }
        self.take()
    }

    fn take(&mut self) -> Option<Line> {
        text_of(std::mem::take(&mut self.partial))
    }
}

/// A complete line as text: trailing `\r`s dropped, invalid UTF-8
/// replaced, `None` when blank. Valid UTF-8 (nearly every line) keeps its
/// buffer.
fn text_of(line: Vec<u8>) -> Option<Line> {
    let mut text = String::from_utf8(line)
        .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned());
    text.truncate(text.trim_end_matches('\r').len());
    (!text.trim().is_empty()).then_some(Line::Text(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_across_reads_blank_lines_skipped_long_lines_bounded() {
        let mut buffer = LineBuffer::new(16);
        assert_eq!(buffer.push(b"{\"a\":"), vec![]);
        assert_eq!(
            buffer.push(b"1}\r\n\n{}\n"),
            vec![Line::Text("{\"a\":1}".into()), Line::Text("{}".into())]
        );
        assert_eq!(buffer.push(&[b'x'; 17]), vec![Line::TooLong]);
        assert_eq!(buffer.push(b"xx\n{}\nlast"), vec![Line::Text("{}".into())]);
        assert_eq!(buffer.finish(), Some(Line::Text("last".into())));
        assert_eq!(buffer.finish(), None);
    }
    proptest::proptest! {
        /// However the input is cut into reads, the same lines come out
        /// (a line read whole takes another path than one read in pieces).
        #[test]
        fn the_reads_do_not_change_the_lines(
            input in proptest::collection::vec(proptest::sample::select(b"ab \r\n\xff".to_vec()), 0..64),
            cuts in proptest::collection::vec(0usize..64, 0..8),
        ) {
            let mut whole = LineBuffer::new(8);
            let mut expected = whole.push(&input);
            expected.extend(whole.finish());
            let mut cut = LineBuffer::new(8);
            let mut got = Vec::new();
            let mut points: Vec<usize> = cuts.into_iter().filter(|&c| c <= input.len()).collect();
            points.sort_unstable();
            let mut start = 0;
            for point in points.into_iter().chain([input.len()]) {
                got.extend(cut.push(&input[start..point]));
                start = point;
            }
            got.extend(cut.finish());
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
