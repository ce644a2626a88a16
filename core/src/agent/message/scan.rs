//! The common stream chunk, read in one pass over its frame.
//!
//! Nearly every frame of a busy agent link is a `model_stream_chunk` with
//! the same few fields. serde's derive reads it field by field through
//! generic visitors, and that costs more than everything else the
//! provider does with the chunk. [`chunk`] reads exactly that common
//! shape: `type`, `id`, `chunk_index`, a `delta` of `role`, `content` and
//! `reasoning_content`, `finish_reason`, and `null` for `tool_calls` or
//! `usage`. Anything it cannot vouch for (another field, a tool call or
//! usage to read, a number it would have to interpret, a lone surrogate,
//! a frame that is not valid JSON) makes it return `None`, and serde reads
//! the frame as before, errors included. What it returns is what serde
//! returns for the same frame: a proptest and the agent-message fuzz
//! target hold it to that.

use std::borrow::Cow;

use super::{Delta, StreamChunk};

/// The `type` of the frames read here.
const TYPE: &str = "model_stream_chunk";

/// The frame as a stream chunk, when it is one of the common shape.
pub(super) fn chunk(text: &str) -> Option<StreamChunk<'_>> {
    let mut s = Scanner {
        text,
        rest: text.as_bytes(),
    };
    let (mut kind, mut id, mut index, mut delta, mut finish, mut usage) =
        (None, None, None, None, None, None);
    s.expect(b'{')?;
    loop {
        s.expect(b'"')?;
        match s.rest.first()? {
            b't' => {
                s.key(b"type\"")?;
                s.skip_space();
                fill(&mut kind, s.literal(b"\"model_stream_chunk\"")?)?
            }
            b'i' => {
                s.key(b"id\"")?;
                fill(&mut id, s.string()?)?
            }
            b'c' => {
                s.key(b"chunk_index\"")?;
                fill(&mut index, s.unsigned()?)?
            }
            b'd' => {
                s.key(b"delta\"")?;
                fill(&mut delta, s.delta()?)?
            }
            b'f' => {
                s.key(b"finish_reason\"")?;
                fill(&mut finish, s.nullable()?)?
            }
            b'u' => {
                s.key(b"usage\"")?;
                fill(&mut usage, s.null()?)?
            }
            _ => return None,
        }
        if !s.list_goes_on()? {
            break;
        }
    }
    s.skip_space();
    if !s.rest.is_empty() {
        return None;
    }
    kind?;
    Some(StreamChunk {
        kind: Some(Cow::Borrowed(TYPE)),
        id: id?,
        chunk_index: index?,
        delta: delta.unwrap_or_default(),
        finish_reason: finish.flatten(),
        usage: None,
    })
}

/// The fuzz target's check: whatever [`chunk`] reads, serde reads the
/// same.
#[cfg(fuzzing)]
pub fn agrees_with_serde(text: &str) {
    if let Some(read) = chunk(text) {
        let serde = serde_json::from_str::<StreamChunk>(text).ok();
        assert_eq!(Some(read), serde, "{text}");
    }
}

/// Puts `value` in `slot`; a field given twice is serde's to refuse.
fn fill<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

/// What is left of the frame to read. Every read returns `None` where the
/// frame leaves the common shape; nothing here indexes past the text.
struct Scanner<'a> {
    text: &'a str,
    rest: &'a [u8],
}

impl<'a> Scanner<'a> {
    /// Passes over JSON whitespace.
    fn skip_space(&mut self) {
        while let [b' ' | b'\t' | b'\n' | b'\r', rest @ ..] = self.rest {
            self.rest = rest;
        }
    }

    /// The next byte that is not JSON whitespace, consumed.
    /// The byte is taken before any whitespace is looked for: frames are
    /// mostly written without spaces, and going through
    /// [`Scanner::skip_space`] first costs a busy link about 250
    /// instructions per frame (counted with `scripts/chunk_cost`).
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return Some(b);
        }
        self.skip_space();
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// `bytes`, right here, consumed.
    fn literal(&mut self, bytes: &'static [u8]) -> Option<()> {
        self.rest = self.rest.strip_prefix(bytes)?;
        Some(())
    }

    /// A member's name (its opening quote read) and the colon after it.
    fn key(&mut self, name: &'static [u8]) -> Option<()> {
        self.literal(name)?;
        self.expect(b':')
    }

    /// After a member of an object: `true` at a comma, `false` at the
    /// object's end.
    fn list_goes_on(&mut self) -> Option<bool> {
        match self.next()? {
            b',' => Some(true),
            b'}' => Some(false),
            _ => None,
        }
    }

    /// The next `len` bytes, which hold no quote or backslash, as text.
    fn take(&mut self, len: usize) -> Option<&'a str> {
        let start = self.text.len() - self.rest.len();
        let text = self.text.get(start..start + len)?;
        self.rest = self.rest.get(len..)?;
        Some(text)
    }

    /// How many bytes from here to the next quote, backslash or control
    /// character (which JSON does not allow unescaped in a string), when
    /// there is one.
    fn run(&self) -> Option<usize> {
        let run = crate::swar::json_plain_run(self.rest);
        (run < self.rest.len()).then_some(run)
    }

    /// A string, borrowed from the frame unless it has escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.expect(b'"')?;
        let plain = self.take(self.run()?)?;
        match self.rest.split_first()? {
            (b'"', rest) => {
                self.rest = rest;
                Some(Cow::Borrowed(plain))
            }
            (b'\\', _) => {
                let mut owned = String::with_capacity(plain.len() + 16);
                owned.push_str(plain);
                self.escaped(owned).map(Cow::Owned)
            }
            _ => None,
        }
    }

    /// The rest of a string with escapes, from a backslash on.
    fn escaped(&mut self, mut owned: String) -> Option<String> {
        loop {
            match self.rest.split_first()? {
                (b'"', rest) => {
                    self.rest = rest;
                    return Some(owned);
                }
                (b'\\', rest) => {
                    let (&escape, rest) = rest.split_first()?;
                    self.rest = rest;
                    owned.push(match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode()?,
                        _ => return None,
                    });
                }
                _ => match self.run()? {
                    // A control character.
                    0 => return None,
                    run => owned.push_str(self.take(run)?),
                },
            }
        }
    }

    /// The character of a `\u` escape (its `\u` read): a surrogate pair
    /// makes one; a lone surrogate is serde's to judge.
    fn unicode(&mut self) -> Option<char> {
        let first = self.hex4()?;
        match first {
            0xD800..=0xDBFF => {
                self.literal(b"\\u")?;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return None;
                }
                char::from_u32(0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00))
            }
            _ => char::from_u32(first),
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.rest.get(..4)?;
        let mut value = 0;
        for &d in digits {
            value = value * 16 + char::from(d).to_digit(16)?;
        }
        self.rest = self.rest.get(4..)?;
        Some(value)
    }

    /// A non-negative integer that fits in a `u64`, written as JSON
    /// writes one (no leading zeros, no fraction or exponent).
    fn unsigned(&mut self) -> Option<u64> {
        let first = self.next()?;
        let mut value = u64::from(first.checked_sub(b'0').filter(|d| *d <= 9)?);
        while let [d @ b'0'..=b'9', rest @ ..] = self.rest {
            if value == 0 {
                return None;
            }
            value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.rest = rest;
        }
        match self.rest.first() {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(value),
        }
    }

    fn null(&mut self) -> Option<()> {
        self.skip_space();
        self.literal(b"null")
    }

    /// A string or `null`.
    fn nullable(&mut self) -> Option<Option<Cow<'a, str>>> {
        self.skip_space();
        match self.rest.first()? {
            b'"' => self.string().map(Some),
            _ => self.null().map(|()| None),
        }
    }

    /// The `delta` object.
    fn delta(&mut self) -> Option<Delta<'a>> {
        let (mut role, mut content, mut reasoning, mut calls) = (None, None, None, None);
        self.expect(b'{')?;
        self.skip_space();
        if let Some(rest) = self.rest.strip_prefix(b"}") {
            self.rest = rest;
            return Some(Delta::default());
        }
        loop {
            self.expect(b'"')?;
            match self.rest.first()? {
                b'c' => {
                    self.key(b"content\"")?;
                    fill(&mut content, self.nullable()?)?
                }
                // A role is read (a string or null, once) but not kept.
                b'r' if self.rest.starts_with(b"role\"") => {
                    self.key(b"role\"")?;
                    fill(&mut role, self.nullable()?)?
                }
                b'r' => {
                    self.key(b"reasoning_content\"")?;
                    fill(&mut reasoning, self.nullable()?)?
                }
                b't' => {
                    self.key(b"tool_calls\"")?;
                    fill(&mut calls, self.null()?)?
                }
                _ => return None,
            }
            if !self.list_goes_on()? {
                break;
            }
        }
        Some(Delta {
            content: content.flatten(),
            reasoning: reasoning.flatten(),
            tool_calls: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What serde makes of the frame, when it reads as a chunk.
    fn serde(text: &str) -> Option<StreamChunk<'_>> {
        serde_json::from_str::<StreamChunk>(text)
            .ok()
            .filter(|c| c.kind.as_deref() == Some(TYPE))
    }

    #[test]
    fn the_common_chunk_is_read_as_serde_reads_it() {
        let text = r#"{"type":"model_stream_chunk","id":"inv-1","chunk_index":3,"delta":{"content":"x"},"finish_reason":null}"#;
        let c = chunk(text).unwrap();
        assert_eq!(c.id, "inv-1");
        assert_eq!(c.chunk_index, 3);
        assert!(matches!(c.delta.content, Some(Cow::Borrowed("x"))));
        assert_eq!(Some(c), serde(text));
    }

    #[test]
    fn escapes_whitespace_and_any_order_read_the_same() {
        for text in [
            r#" { "delta" : { "content" : "a\"b\\c\/d\n\t\u00e9\ud83d\ude00" , "role":"assistant" } ,
               "chunk_index" : 0 , "id" : "i\u0031" , "type" : "model_stream_chunk" } "#,
            r#"{"type":"model_stream_chunk","id":"i","chunk_index":18446744073709551615,"delta":{},"finish_reason":"stop","usage":null}"#,
            r#"{"type":"model_stream_chunk","id":"i","chunk_index":7,"delta":{"reasoning_content":"why","tool_calls":null,"content":null}}"#,
            r#"{"type":"model_stream_chunk","id":"i","chunk_index":7}"#,
        ] {
            let read = chunk(text).unwrap_or_else(|| panic!("not read: {text}"));
            assert_eq!(Some(read), serde(text), "{text}");
        }
        let c = chunk(r#"{"type":"model_stream_chunk","id":"i","chunk_index":0,"delta":{"content":"\ud83d\ude00\u00e9"}}"#).unwrap();
        assert_eq!(c.delta.content.as_deref(), Some("😀é"));
    }

    #[test]
    fn anything_else_is_left_to_serde() {
        for text in [
            // Fields read only by serde.
            r#"{"type":"model_stream_chunk","id":"i","chunk_index":0,"delta":{"tool_calls":[{"index":0}]}}"#,
            r#"{"type":"model_stream_chunk","id":"i","chunk_index":0,"usage":{"prompt_tokens":1}}"#,
            r#"{"type":"model_stream_chunk","id":"i","chunk_index":0,"extra":1}"#,
            r#"{"type":"model_stream_chunk","id":"i","chunk_index":0,"delta":{"extra":1}}"#,
            // Numbers it would have to interpret, or that are not JSON.
            r#"{"type":"model_stream_chunk","id":"i","chunk_index":1.0}"#,
            r#"{"type":"model_stream_chunk","id":"i","chunk_index":1e2}"#,
            r#"{"type":"model_stream_chunk","id":"i","chunk_index":-1}"#,
            r#"{"type":"model_stream_chunk","id":"i","chunk_index":01}"#,
            r#"{"type":"model_stream_chunk","id":"i","chunk_index":18446744073709551616}"#,
            // Not the shape, or not JSON.
            r#"{"type":"model_result","id":"i","chunk_index":0}"#,
            r#"{"type":"model_stream_chunk","id":"i"}"#,
            r#"{"type":"model_stream_chunk","id":"i","id":"j","chunk_index":0}"#,
            r#"{"type":"model_stream_chunk","id":"i","chunk_index":0,}"#,
            r#"{"type":"model_stream_chunk","id":"i","chunk_index":0} x"#,
            r#"{"type":"model_stream_chunk","id":"i","chunk_index":0,"delta":null}"#,
            r#"{"type":"model_stream_chunk","id":"a\ud800","chunk_index":0}"#,
            r#"{"type":"model_stream_chunk","id":"a\q","chunk_index":0}"#,
            "{\"type\":\"model_stream_chunk\",\"id\":\"a\u{1}\",\"chunk_index\":0}",
            "{\"type\":\"model_stream_chunk\",\"id\":\"i\",\"chunk_index\":0\u{1}}",
            r#"{"t\u0079pe":"model_stream_chunk","id":"i","chunk_index":0}"#,
            r#"{"type":"model_stream_chunk","id":"i","chunk_index":0"#,
            "",
        ] {
            assert!(chunk(text).is_none(), "read: {text}");
        }
    }

    /// A chunk frame built from `parts`: each member written (or left
    /// out, or given an unusual form) as the generated choices say.
    fn frame(
        order: &[usize],
        space: &str,
        content: &str,
        escape_all: bool,
        index: u64,
        finish: Option<&str>,
    ) -> String {
        let string = |s: &str| {
            if escape_all {
                s.chars()
                    .map(|c| format!("\\u{:04x}", c as u32))
                    .collect::<String>()
            } else {
                let quoted = serde_json::to_string(s).unwrap();
                quoted[1..quoted.len() - 1].to_owned()
            }
        };
        let members = [
            format!(r#""type"{space}:{space}"model_stream_chunk""#),
            format!(r#""id":"inv-{}""#, string("7é")),
            format!(r#""chunk_index":{space}{index}"#),
            format!(
                r#""delta":{{{space}"content":{space}"{}"{space}}}"#,
                string(content)
            ),
            match finish {
                Some(f) => format!(r#""finish_reason":"{}""#, string(f)),
                None => r#""finish_reason":null"#.to_owned(),
            },
        ];
        let body: Vec<&str> = order.iter().map(|&i| members[i % 5].as_str()).collect();
        format!(
            "{space}{{{}}}{space}",
            body.join(&format!("{space},{space}"))
        )
    }

    proptest! {
        /// Every common chunk, in any order, spacing and escaping (BMP
        /// text written as `\u` escapes too), is read, and read as serde
        /// reads it.
        #[test]
        fn common_chunks_are_read_as_serde_reads_them(
            order in Just((0..5).collect::<Vec<usize>>()).prop_shuffle(),
            space in "[ \t\r\n]{0,2}",
            content in "[^\u{10000}-\u{10FFFF}]{0,24}",
            escape_all in any::<bool>(),
            index in any::<u64>(),
            finish in proptest::option::of("[a-z_]{0,8}"),
        ) {
            let text = frame(&order, &space, &content, escape_all, index, finish.as_deref());
            let read = chunk(&text);
            prop_assert!(read.is_some(), "not read: {}", text);
            prop_assert_eq!(read, serde(&text));
        }

        /// Any text at all: what is read is what serde reads; what serde
        /// refuses is never read.
        #[test]
        fn anything_read_is_what_serde_reads(
            head in "\\{\"type\":\"model_stream_chunk\",\"id\":\"i\",\"chunk_index\":0",
            tail in "[ ,:{}\"\\\\/nul0-9a-z\u{e9}\u{1}]{0,40}",
        ) {
            let text = format!("{head}{tail}");
            if let Some(read) = chunk(&text) {
                prop_assert_eq!(Some(read), serde(&text), "{}", text);
            }
        }
    }
}
