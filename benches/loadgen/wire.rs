//! Reading what an editor receives after the response head: a chunked
//! body, and the items inside it (OpenAI SSE events, Ollama NDJSON lines,
//! or, for the direct baseline, the agent frames themselves one per line).

use std::borrow::Cow;

use bytes::BytesMut;
use mcp_provider_core::http::ChunkedDecoder;
use serde::Deserialize;

/// How items are framed in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Sse,
    Ndjson,
    Frames,
}

/// One item of the body.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A chunk's text (empty role-only deltas are skipped).
    Content(Cow<'a, str>),
    /// The stream's end marker.
    Done,
    /// Nothing to count: a keep-alive comment, an empty delta.
    Skip,
}

/// Turns body bytes, as they are read, into items.
pub struct Decoder {
    framing: Framing,
    /// Bytes as read, when the body is chunked.
    chunked: Option<(ChunkedDecoder, BytesMut)>,
    /// Body bytes not yet taken as items.
    pending: BytesMut,
    /// How much of `pending` holds no separator: the next search starts
    /// there, so an item arriving in many reads is scanned once.
    scanned: usize,
    /// The item last returned (items borrow from it).
    item: BytesMut,
}

impl Decoder {
    pub fn new(framing: Framing, chunked: bool) -> Self {
        Decoder {
            framing,
            chunked: chunked.then(|| (ChunkedDecoder::default(), BytesMut::new())),
            pending: BytesMut::with_capacity(1024),
            scanned: 0,
            item: BytesMut::new(),
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> Result<(), String> {
        let Some((decoder, raw)) = &mut self.chunked else {
            self.pending.extend_from_slice(bytes);
            return Ok(());
        };
        raw.extend_from_slice(bytes);
        let ended = decoder
            .decode(raw, &mut self.pending, usize::MAX, 64 * 1024)
            .map_err(|e| format!("bad chunked body: {e:?}"))?;
        if ended && !raw.is_empty() {
            return Err("bytes after the body's end".to_owned());
        }
        Ok(())
    }

    /// The next whole item, if one has arrived.
    pub fn next_item(&mut self) -> Result<Option<Item<'_>>, String> {
        let Some(at) = self.separator() else {
            return Ok(None);
        };
        let separator = self.separator_len();
        self.item = self.pending.split_to(at + separator);
        self.scanned = 0;
        let text = std::str::from_utf8(&self.item[..at])
            .map_err(|_| "the body is not UTF-8".to_owned())?;
        parse_item(self.framing, text).map(Some)
    }
}

impl Decoder {
    fn separator_len(&self) -> usize {
        match self.framing {
            Framing::Sse => 2,
            Framing::Ndjson | Framing::Frames => 1,
        }
    }

    /// Where the first item separator in `pending` starts (`\n\n` for
    /// SSE, `\n` otherwise): a byte scan for the newline, not a compare at
    /// every offset.
    fn separator(&mut self) -> Option<usize> {
        let double = self.framing == Framing::Sse;
        let mut from = self.scanned;
        loop {
            let Some(found) = self.pending.get(from..)?.iter().position(|&b| b == b'\n') else {
                self.scanned = self.pending.len();
                return None;
            };
            let at = from + found;
            if !double {
                return Some(at);
            }
            match self.pending.get(at + 1) {
                Some(b'\n') => return Some(at),
                Some(_) => from = at + 1,
                None => {
                    // A newline at the end may be half of the separator.
                    self.scanned = at;
                    return None;
                }
            }
        }
    }
}

fn parse_item(framing: Framing, text: &str) -> Result<Item<'_>, String> {
    let text = text.trim_end_matches('\r');
    match framing {
        Framing::Sse => {
            let Some(data) = text.strip_prefix("data: ") else {
                // A comment (keep-alive) or an empty line.
                return Ok(Item::Skip);
            };
            if data == "[DONE]" {
                return Ok(Item::Done);
            }
            let chunk: SseChunk = serde_json::from_str(data).map_err(|e| bad(e, data))?;
            if let Some(error) = chunk.error {
                return Err(format!("error event: {error}"));
            }
            let content = chunk
                .choices
                .into_iter()
                .next()
                .and_then(|c| c.delta.content);
            Ok(content
                .filter(|c| !c.is_empty())
                .map_or(Item::Skip, Item::Content))
        }
        Framing::Ndjson => {
            if text.is_empty() {
                return Ok(Item::Skip);
            }
            let line: NdjsonLine = serde_json::from_str(text).map_err(|e| bad(e, text))?;
            if let Some(error) = line.error {
                return Err(format!("error line: {error}"));
            }
            if line.done {
                return Ok(Item::Done);
            }
            let content = line.message.and_then(|m| m.content);
            Ok(content
                .filter(|c| !c.is_empty())
                .map_or(Item::Skip, Item::Content))
        }
        Framing::Frames => {
            let frame: Frame = serde_json::from_str(text).map_err(|e| bad(e, text))?;
            Ok(frame.delta.content.map_or(Item::Skip, Item::Content))
        }
    }
}

fn bad(e: serde_json::Error, text: &str) -> String {
    let text: String = text.chars().take(200).collect();
    format!("unparsable item ({e}): {text}")
}

#[derive(Deserialize)]
struct SseChunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow)]
    delta: Delta<'a>,
}

#[derive(Deserialize, Default)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct NdjsonLine<'a> {
    #[serde(default, borrow)]
    message: Option<Delta<'a>>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(default, borrow)]
    delta: Delta<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(framing: Framing, chunked: bool, wire: &[u8], split: usize) -> Vec<String> {
        let mut d = Decoder::new(framing, chunked);
        let mut got = Vec::new();
        for part in wire.chunks(split) {
            d.push(part).unwrap();
            while let Some(item) = d.next_item().unwrap() {
                got.push(match item {
                    Item::Content(c) => c.into_owned(),
                    Item::Done => "DONE".to_owned(),
                    Item::Skip => continue,
                });
            }
        }
        got
    }

    #[test]
    fn decodes_chunked_sse_at_any_split() {
        let body = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            ": keep-alive\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"1:0:5\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\\\"b\"}}]}\n\n",
            "data: [DONE]\n\n"
        );
        let mut wire = Vec::new();
        for piece in body.as_bytes().chunks(37) {
            wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            wire.extend_from_slice(piece);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        for split in [1, 2, 7, 64, wire.len()] {
            assert_eq!(
                items(Framing::Sse, true, &wire, split),
                ["1:0:5", "a\"b", "DONE"]
            );
        }
    }

    #[test]
    fn decodes_ndjson_and_frames() {
        let ndjson = b"{\"message\":{\"content\":\"x\"},\"done\":false}\n{\"done\":true}\n";
        assert_eq!(items(Framing::Ndjson, false, ndjson, 5), ["x", "DONE"]);
        let frames = b"{\"type\":\"model_stream_chunk\",\"delta\":{\"content\":\"2:0:1\"}}\n";
        assert_eq!(items(Framing::Frames, false, frames, 3), ["2:0:1"]);
    }

    #[test]
    fn error_events_are_errors() {
        let mut d = Decoder::new(Framing::Sse, false);
        d.push(b"data: {\"error\":{\"message\":\"agent gone\"}}\n\n")
            .unwrap();
        assert!(d.next_item().is_err());
    }
}
