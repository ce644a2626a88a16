//! The `chunked` transfer coding (RFC 9112 §7.1), decoded as bytes arrive:
//! request bodies in [`super::RequestReader`], and any client reading a
//! streamed response.
//!
//! Framing lines (chunk sizes, the CRLF after each chunk's data, trailers)
//! are checked one byte at a time as they arrive, so a line that can never
//! be valid (a bare LF, a sign or a space in a size, a size that overflows)
//! fails at the byte that breaks it: the peer gets its 400 at once instead
//! of the connection waiting for a CRLF that would not make it right.

use bytes::{Buf, BytesMut};

/// Why a chunked body cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    Malformed(&'static str),
    /// The decoded body would pass its cap.
    BodyTooLarge,
    /// The trailers would pass their cap.
    TrailersTooLarge,
}

/// The longest chunk-size line (size plus extensions) accepted: sizes fit
/// in 16 hex digits and nobody sends long extensions, so this only stops a
/// peer from streaming one endless line.
const MAX_SIZE_LINE: usize = 1024;

/// Where the decoder is in the coding.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChunkedDecoder {
    state: State,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Reading a chunk-size line; `len` bytes of it seen so far.
    Size { line: SizeLine, len: usize },
    /// Data bytes of the current chunk still to come.
    Data(usize),
    /// The CRLF after a chunk's data; `true` once its CR was seen.
    DataEnd(bool),
    /// After the last (zero-size) chunk: trailer lines until an empty one;
    /// `len` counts all trailer bytes seen, against their cap.
    Trailers { line: TrailerLine, len: usize },
    /// The body ended; nothing more is decoded.
    Done,
}

impl Default for State {
    fn default() -> Self {
        State::Size {
            line: SizeLine::Digits {
                size: 0,
                any: false,
            },
            len: 0,
        }
    }
}

/// `chunk-size [ chunk-ext ] CRLF`, one byte at a time.
#[derive(Debug, Clone, Copy)]
enum SizeLine {
    /// Hex digits so far (`any`: at least one).
    Digits { size: usize, any: bool },
    /// Whitespace after the size (`BWS`), which only a `;` may follow.
    Space { size: usize },
    /// Inside extensions, ignored up to the CR.
    Ext { size: usize },
    /// The CR was seen; the LF must follow.
    Cr { size: usize },
}

/// One trailer `field-line CRLF`, or the empty line ending the body.
#[derive(Debug, Clone, Copy)]
enum TrailerLine {
    /// At the start of a line.
    Start,
    Name,
    Value,
    /// A field line's CR was seen.
    Cr,
    /// The empty line's CR was seen.
    EndCr,
}

/// What one byte of a framing line did.
enum Step<T> {
    /// The line goes on.
    More(T),
    /// The line ended (its LF was this byte).
    Line(usize),
}

impl ChunkedDecoder {
    /// Moves what can be decoded from the front of `input` to the end of
    /// `body`. Returns true once the last chunk and its trailers are read
    /// (what follows stays in `input`), false when more input is needed.
    /// `body` may hold at most `max_body` bytes, the trailers `max_trailer`
    /// in all. An error is final: the decoder must not be used again.
    pub fn decode(
        &mut self,
        input: &mut BytesMut,
        body: &mut BytesMut,
        max_body: usize,
        max_trailer: usize,
    ) -> Result<bool, ChunkedError> {
        loop {
            if input.is_empty() {
                return Ok(matches!(self.state, State::Done));
            }
            match self.state {
                State::Done => return Ok(true),
                State::Data(left) => {
                    let take = left.min(input.len());
                    // Data for a body with no buffer yet is taken as it
                    // lies, without a copy; a buffer the caller keeps is
                    // added to.
                    let data = input.split_to(take);
                    match body.capacity() == 0 {
                        true => *body = data,
                        false => body.extend_from_slice(&data),
                    }
                    self.state = match left - take {
                        0 => State::DataEnd(false),
                        rest => State::Data(rest),
                    };
                }
                _ => {
                    let used = match self.whole_line(input, body.len(), max_body, max_trailer)? {
                        Some(used) => used,
                        None => self.framing(input, body.len(), max_body, max_trailer)?,
                    };
                    input.advance(used);
                }
            }
        }
    }

    /// The common framing lines, when they start `input` whole: a size
    /// of hex digits and its CRLF, the CRLF after a chunk's data, the
    /// empty line after the last chunk. Read in one step each (a line of
    /// every response a remote server streams); anything else (`None`)
    /// is left to [`ChunkedDecoder::framing`], byte by byte, which reads
    /// these lines the same.
    fn whole_line(
        &mut self,
        input: &[u8],
        body_len: usize,
        max_body: usize,
        max_trailer: usize,
    ) -> Result<Option<usize>, ChunkedError> {
        let crlf_at = |at: usize| input.get(at..at + 2) == Some(b"\r\n");
        match self.state {
            State::DataEnd(false) if crlf_at(0) => {
                self.state = State::default();
                Ok(Some(2))
            }
            State::Trailers {
                line: TrailerLine::Start,
                len: 0,
            } if max_trailer >= 2 && crlf_at(0) => {
                self.state = State::Done;
                Ok(Some(2))
            }
            State::Size {
                line:
                    SizeLine::Digits {
                        size: 0,
                        any: false,
                    },
                len: 0,
            } => {
                // Fifteen digits at most: no size of them overflows.
                let digits = input.iter().take(15).take_while(|b| b.is_ascii_hexdigit());
                let (count, size) = digits.fold((0, 0usize), |(count, size), &b| {
                    (count + 1, size * 16 + usize::from(hex_value(b)))
                });
                if count == 0 || !crlf_at(count) {
                    return Ok(None);
                }
                if size > max_body.saturating_sub(body_len) {
                    return Err(ChunkedError::BodyTooLarge);
                }
                self.state = match size {
                    0 => State::Trailers {
                        line: TrailerLine::Start,
                        len: 0,
                    },
                    size => State::Data(size),
                };
                Ok(Some(count + 2))
            }
            _ => Ok(None),
        }
    }

    /// Walks framing bytes from the front of `input` until the state leaves
    /// framing (data or done) or the input runs out; returns how many bytes
    /// it used.
    fn framing(
        &mut self,
        input: &[u8],
        body_len: usize,
        max_body: usize,
        max_trailer: usize,
    ) -> Result<usize, ChunkedError> {
        for (i, &byte) in input.iter().enumerate() {
            self.state = match self.state {
                State::Size { line, len } => size_byte(line, len, byte, body_len, max_body)?,
                State::DataEnd(false) if byte == b'\r' => State::DataEnd(true),
                State::DataEnd(true) if byte == b'\n' => State::default(),
                State::DataEnd(_) => {
                    return Err(ChunkedError::Malformed("chunk not followed by CRLF"))
                }
                State::Trailers { line, len } => trailer_byte(line, len, byte, max_trailer)?,
                State::Data(_) | State::Done => return Ok(i),
            };
            if matches!(self.state, State::Data(_) | State::Done) {
                return Ok(i + 1);
            }
        }
        Ok(input.len())
    }
}

/// The state after one more byte of a chunk-size line.
fn size_byte(
    line: SizeLine,
    len: usize,
    byte: u8,
    body_len: usize,
    max_body: usize,
) -> Result<State, ChunkedError> {
    let len = len + 1;
    if len > MAX_SIZE_LINE {
        return Err(ChunkedError::Malformed("chunk size line too long"));
    }
    let size = match size_line_step(line, byte)? {
        Step::More(line) => return Ok(State::Size { line, len }),
        Step::Line(size) => size,
    };
    if size > max_body.saturating_sub(body_len) {
        return Err(ChunkedError::BodyTooLarge);
    }
    Ok(match size {
        0 => State::Trailers {
            line: TrailerLine::Start,
            len: 0,
        },
        size => State::Data(size),
    })
}

/// `1*HEXDIG [ BWS ";" ext ] CRLF`: no sign, no `0x`, no space unless an
/// extension follows; extensions are skipped but may hold no control
/// bytes.
fn size_line_step(line: SizeLine, byte: u8) -> Result<Step<SizeLine>, ChunkedError> {
    const BAD_SIZE: ChunkedError = ChunkedError::Malformed("invalid chunk size");
    let next = match (line, byte) {
        (SizeLine::Cr { size }, b'\n') => return Ok(Step::Line(size)),
        (_, b'\n') => return Err(BARE_LF),
        (SizeLine::Digits { size, .. }, _) if byte.is_ascii_hexdigit() => {
            let digit = usize::from(hex_value(byte));
            let size = size
                .checked_mul(16)
                .and_then(|s| s.checked_add(digit))
                .ok_or(ChunkedError::Malformed("chunk size overflows"))?;
            SizeLine::Digits { size, any: true }
        }
        (SizeLine::Digits { any: false, .. }, _) => return Err(BAD_SIZE),
        (SizeLine::Digits { size, .. }, b' ' | b'\t') => SizeLine::Space { size },
        (SizeLine::Space { size }, b' ' | b'\t') => SizeLine::Space { size },
        (SizeLine::Digits { size, .. } | SizeLine::Space { size }, b';') => SizeLine::Ext { size },
        (SizeLine::Digits { size, .. } | SizeLine::Ext { size }, b'\r') => SizeLine::Cr { size },
        (SizeLine::Digits { .. } | SizeLine::Space { .. }, _) => return Err(BAD_SIZE),
        (SizeLine::Ext { size }, _) if is_field_byte(byte) => SizeLine::Ext { size },
        (SizeLine::Ext { .. }, _) => {
            return Err(ChunkedError::Malformed("invalid chunk extension"))
        }
        (SizeLine::Cr { .. }, _) => return Err(CR_WITHOUT_LF),
    };
    Ok(Step::More(next))
}

/// The state after one more trailer byte: field lines are checked like
/// header lines (a name of token bytes, a colon, a value without control
/// bytes), and all of them together may use at most `max_trailer` bytes.
fn trailer_byte(
    line: TrailerLine,
    len: usize,
    byte: u8,
    max_trailer: usize,
) -> Result<State, ChunkedError> {
    let len = len + 1;
    if len > max_trailer {
        return Err(ChunkedError::TrailersTooLarge);
    }
    let line = match (line, byte) {
        (TrailerLine::Start, b'\r') => TrailerLine::EndCr,
        (TrailerLine::Start | TrailerLine::Name, _) if is_token_byte(byte) => TrailerLine::Name,
        (TrailerLine::Name, b':') => TrailerLine::Value,
        (TrailerLine::Value, b'\r') => TrailerLine::Cr,
        (TrailerLine::Value, _) if is_field_byte(byte) => TrailerLine::Value,
        (TrailerLine::Cr, b'\n') => TrailerLine::Start,
        (TrailerLine::EndCr, b'\n') => return Ok(State::Done),
        (TrailerLine::Cr | TrailerLine::EndCr, _) => return Err(CR_WITHOUT_LF),
        (_, b'\n') => return Err(BARE_LF),
        _ => return Err(ChunkedError::Malformed("invalid trailer line")),
    };
    Ok(State::Trailers { line, len })
}

const BARE_LF: ChunkedError = ChunkedError::Malformed("line ends with a bare LF");
const CR_WITHOUT_LF: ChunkedError = ChunkedError::Malformed("CR not followed by LF");

fn hex_value(byte: u8) -> u8 {
    match byte {
        b'0'..=b'9' => byte - b'0',
        b'a'..=b'f' => byte - b'a' + 10,
        b'A'..=b'F' => byte - b'A' + 10,
        _ => 0,
    }
}

/// `tchar` (RFC 9110 §5.6.2): the bytes of a field name.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Bytes allowed inside a field value or an extension: visible ASCII,
/// space, tab and obs-text; no control bytes (CR and LF included).
fn is_field_byte(byte: u8) -> bool {
    matches!(byte, b'\t' | b' '..=b'~' | 0x80..=0xff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BODY: &[u8] = b"5;name=\"v\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n";

    /// A body and the bytes left after it.
    type Decoded = (Vec<u8>, Vec<u8>);

    /// Decodes `input` fed `step` bytes at a time: the body, what was
    /// left over, or the first error.
    fn decode(input: &[u8], step: usize) -> Result<Option<Decoded>, ChunkedError> {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut body = BytesMut::new();
        let mut fed = 0;
        for piece in input.chunks(step.max(1)) {
            fed += piece.len();
            buf.extend_from_slice(piece);
            if decoder.decode(&mut buf, &mut body, 1 << 20, 1024)? {
                // What was not decoded belongs to the next message.
                let mut left = buf.to_vec();
                left.extend_from_slice(&input[fed..]);
                return Ok(Some((body.to_vec(), left)));
            }
        }
        Ok(None)
    }

    /// Framing bytes, and a few that break it, in any order.
    fn framing_noise() -> impl Strategy<Value = Vec<u8>> {
        let alphabet = b"0123456789abcdefAF\r\n; x:\t".to_vec();
        prop::collection::vec(prop::sample::select(alphabet), 0..48)
    }

    /// A well-formed body: chunks of any size, a last chunk, maybe a
    /// trailer, then whatever follows it.
    fn well_formed() -> impl Strategy<Value = Vec<u8>> {
        let chunks = prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 0..4);
        (chunks, any::<bool>(), any::<bool>(), framing_noise()).prop_map(
            |(chunks, upper, trailer, after)| {
                let mut out = Vec::new();
                for data in chunks {
                    let size = match upper {
                        true => format!("{:X}\r\n", data.len()),
                        false => format!("{:x}\r\n", data.len()),
                    };
                    out.extend_from_slice(size.as_bytes());
                    out.extend_from_slice(&data);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n");
                if trailer {
                    out.extend_from_slice(b"x-sum: 1\r\n");
                }
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&after);
                out
            },
        )
    }

    proptest! {
        /// Lines that arrive whole are read in one step, lines that arrive
        /// a byte at a time byte by byte: both come to the same body, the
        /// same bytes left over, or the same error.
        #[test]
        fn whole_lines_read_as_byte_by_byte(
            input in prop_oneof![well_formed(), framing_noise()],
            cap in prop_oneof![Just(1usize << 20), 0usize..64],
        ) {
            let read = |step: usize| {
                let mut decoder = ChunkedDecoder::default();
                let (mut buf, mut body) = (BytesMut::new(), BytesMut::new());
                let mut fed = 0;
                for piece in input.chunks(step.max(1)) {
                    fed += piece.len();
                    buf.extend_from_slice(piece);
                    if decoder.decode(&mut buf, &mut body, cap, 16)? {
                        // Left over: what was not decoded, and what was
                        // not yet fed.
                        return Ok(Some((body.to_vec(), buf.len() + input.len() - fed)));
                    }
                }
                Ok(None)
            };
            let whole: Result<_, ChunkedError> = read(input.len());
            prop_assert_eq!(whole, read(1));
        }
    }

    /// The first error for `input` fed whole, and the same byte by byte.
    fn error_of(input: &[u8]) -> ChunkedError {
        let whole = decode(input, input.len()).unwrap_err();
        assert_eq!(decode(input, 1).unwrap_err(), whole);
        whole
    }

    #[test]
    fn whole_byte_by_byte_and_with_trailing_bytes() {
        for step in [BODY.len(), 1, 2, 7] {
            let (body, rest) = decode(BODY, step).unwrap().unwrap();
            assert_eq!(body, b"hello world");
            assert!(rest.is_empty());
        }
        let mut more = BODY.to_vec();
        more.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&more[..]);
        let mut body = BytesMut::new();
        assert!(decoder.decode(&mut buf, &mut body, 100, 100).unwrap());
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
        assert!(
            decoder.decode(&mut buf, &mut body, 100, 100).unwrap(),
            "done stays done"
        );
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn incomplete_input_waits() {
        for end in 0..BODY.len() {
            assert_eq!(decode(&BODY[..end], 1), Ok(None), "{end}");
        }
    }

    #[test]
    fn sizes_with_signs_spaces_or_prefixes_fail() {
        for size in ["+5", "-5", " 5", "5 ", "0x5", "5\t", "", "g", "5 5"] {
            let input = format!("{size}\r\nhello\r\n0\r\n\r\n");
            assert_eq!(
                error_of(input.as_bytes()),
                ChunkedError::Malformed("invalid chunk size"),
                "{size:?}"
            );
        }
        // Whitespace before an extension is allowed (`BWS`).
        assert!(decode(b"5 ;x\r\nhello\r\n0\r\n\r\n", 1).unwrap().is_some());
        assert!(decode(b"005\r\nhello\r\n0\r\n\r\n", 1).unwrap().is_some());
    }

    #[test]
    fn an_overflowing_size_fails_at_once() {
        let input = b"1000000000000000000000";
        assert_eq!(
            error_of(input),
            ChunkedError::Malformed("chunk size overflows")
        );
    }

    #[test]
    fn a_size_over_the_body_cap_is_too_large() {
        let mut buf = BytesMut::from(&b"ffff\r\n"[..]);
        let result = ChunkedDecoder::default().decode(&mut buf, &mut BytesMut::new(), 10, 10);
        assert_eq!(result, Err(ChunkedError::BodyTooLarge));
    }

    #[test]
    fn bare_lf_fails_at_once_wherever_it_is() {
        for input in [
            &b"5\n"[..],
            b"5;x\n",
            b"5\r\nhello\n",
            b"5\r\nhello\r\n0\n",
            b"0\r\nX: 1\n",
            b"0\r\n\n",
        ] {
            let error = error_of(input);
            assert!(
                matches!(error, ChunkedError::Malformed(_)),
                "{input:?}: {error:?}"
            );
        }
        assert_eq!(error_of(b"5\r\nhello\r\n0\n"), BARE_LF);
    }

    #[test]
    fn cr_without_lf_fails() {
        assert_eq!(error_of(b"5\rx"), CR_WITHOUT_LF);
        assert_eq!(
            error_of(b"5\r\nhello\rx"),
            ChunkedError::Malformed("chunk not followed by CRLF")
        );
        assert_eq!(error_of(b"0\r\nX: 1\rx"), CR_WITHOUT_LF);
        assert_eq!(error_of(b"0\r\n\rx"), CR_WITHOUT_LF);
    }

    #[test]
    fn invalid_trailers_fail_before_their_line_ends() {
        for input in [
            &b"0\r\n X: 1"[..],
            b"0\r\n: 1",
            b"0\r\nX Y: 1",
            b"0\r\nX: \x00",
        ] {
            assert_eq!(
                error_of(input),
                ChunkedError::Malformed("invalid trailer line"),
                "{input:?}"
            );
        }
    }

    #[test]
    fn lines_over_their_caps_fail() {
        let long = format!("5;{}", "x".repeat(MAX_SIZE_LINE));
        assert_eq!(
            error_of(long.as_bytes()),
            ChunkedError::Malformed("chunk size line too long")
        );
        // The trailer cap counts every trailer line, not each alone.
        let many = format!("0\r\n{}", "X: 1\r\n".repeat(200));
        assert_eq!(error_of(many.as_bytes()), ChunkedError::TrailersTooLarge);
    }

    #[test]
    fn a_control_byte_in_an_extension_fails() {
        assert_eq!(
            error_of(b"5;\x01"),
            ChunkedError::Malformed("invalid chunk extension")
        );
    }
}
