//! The `chunked` transfer coding (RFC 9112 §7.1), decoded as bytes arrive:
//! request bodies in [`super::RequestReader`], and any client reading a
//! streamed response.

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

/// Where the decoder is in the coding.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChunkedDecoder {
    state: State,
}

#[derive(Debug, Clone, Copy, Default)]
enum State {
    #[default]
    Size,
    Data(usize),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last (zero-size) chunk: trailer lines until an empty one.
    Trailers,
}

impl ChunkedDecoder {
    /// Moves what can be decoded from the front of `input` to the end of
    /// `body`. Returns true once the last chunk and its trailers are read
    /// (what follows stays in `input`), false when more input is needed.
    /// `body` may hold at most `max_body` bytes, a trailer `max_trailer`.
    pub fn decode(
        &mut self,
        input: &mut BytesMut,
        body: &mut BytesMut,
        max_body: usize,
        max_trailer: usize,
    ) -> Result<bool, ChunkedError> {
        loop {
            match self.state {
                State::Size => {
                    let Some(line_end) = find_crlf(input) else {
                        if input.len() > 1024 {
                            return Err(ChunkedError::Malformed("chunk size line too long"));
                        }
                        return Ok(false);
                    };
                    let line = &input[..line_end];
                    let hex = line.split(|&b| b == b';').next().unwrap_or_default();
                    let size =
                        parse_hex(hex).ok_or(ChunkedError::Malformed("invalid chunk size"))?;
                    input.advance(line_end + 2);
                    if size > max_body.saturating_sub(body.len()) {
                        return Err(ChunkedError::BodyTooLarge);
                    }
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if input.is_empty() {
                        return Ok(false);
                    }
                    let take = left.min(input.len());
                    body.extend_from_slice(&input.split_to(take));
                    self.state = if take == left {
                        State::DataEnd
                    } else {
                        State::Data(left - take)
                    };
                }
                State::DataEnd => {
                    if input.len() < 2 {
                        return Ok(false);
                    }
                    if &input[..2] != b"\r\n" {
                        return Err(ChunkedError::Malformed("chunk not followed by CRLF"));
                    }
                    input.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    let Some(line_end) = find_crlf(input) else {
                        if input.len() > max_trailer {
                            return Err(ChunkedError::TrailersTooLarge);
                        }
                        return Ok(false);
                    };
                    input.advance(line_end + 2);
                    if line_end == 0 {
                        return Ok(true);
                    }
                }
            }
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

fn parse_hex(s: &[u8]) -> Option<usize> {
    let s = std::str::from_utf8(s).ok()?.trim();
    if s.is_empty() || s.len() > 8 {
        return None;
    }
    usize::from_str_radix(s, 16).ok()
}
