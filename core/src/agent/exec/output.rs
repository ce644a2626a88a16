//! What a CLI agent prints, turned into what the editor sees: the pieces
//! every format shares (events, line framing, the guard that keeps a retry
//! from showing text twice).

use serde_json::Value;

use crate::lines::{Line, LineBuffer};

/// The longest line a JSON-lines CLI may print. Claude's final `assistant`
/// and `result` lines carry the whole answer, so this is generous; a longer
/// line fails the run instead of growing a buffer without end.
pub const MAX_LINE: usize = 8 << 20;

/// What a parser found in the CLI's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Text for the editor, new (never a repeat of earlier text).
    Text(String),
    /// Token counts the CLI reported for the answer.
    Usage { prompt: u64, completion: u64 },
    /// The CLI reported failure: the answer is an error with this message.
    Failed(String),
    /// The CLI reported a successful end.
    Finished,
    /// The CLI's own session (or thread) id, for resuming it.
    Session(String),
    /// A model turn ended having called `calls` of the editor's tools: the
    /// CLI sends that many MCP calls (they go to the editor together).
    Turn { calls: u64 },
}

/// One CLI's output format.
pub trait OutputFormat: Send {
    /// Bytes the CLI printed on stdout.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>);
    /// Its stdout closed.
    fn end(&mut self, out: &mut Vec<Event>);
    /// Whether a run only succeeds with [`Event::Finished`] (JSON formats:
    /// exiting 0 without a result is not an answer). Plain text succeeds on
    /// exit status 0.
    fn needs_result(&self) -> bool {
        true
    }
    /// What the CLI last said went wrong, for a run that ends without a
    /// result.
    fn last_error(&self) -> Option<String> {
        None
    }
}

/// A JSON-lines format: each parsed line in turn.
pub trait JsonLines: Send {
    fn line(&mut self, line: &Value, out: &mut Vec<Event>);
    /// See [`OutputFormat::last_error`].
    fn last_error(&self) -> Option<String> {
        None
    }
}

/// Frames stdout into lines for a [`JsonLines`] parser. Lines that are not
/// JSON objects (a CLI's stray warnings) are skipped: a run that prints
/// nothing else fails for want of a result.
pub struct Lines<P> {
    parser: P,
    buffer: LineBuffer,
}

impl<P: JsonLines> Lines<P> {
    pub fn new(parser: P) -> Self {
        Lines {
            parser,
            buffer: LineBuffer::new(MAX_LINE),
        }
    }

    fn line(&mut self, line: Line, out: &mut Vec<Event>) {
        match line {
            Line::Text(text) => {
                if let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(&text) {
                    self.parser.line(&value, out);
                }
            }
            Line::TooLong => out.push(Event::Failed(format!(
                "the agent printed a line longer than {} MiB",
                MAX_LINE >> 20
            ))),
        }
    }
}

impl<P: JsonLines> OutputFormat for Lines<P> {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        for line in self.buffer.push(bytes) {
            self.line(line, out);
        }
    }

    fn end(&mut self, out: &mut Vec<Event>) {
        if let Some(line) = self.buffer.finish() {
            self.line(line, out);
        }
    }

    fn last_error(&self) -> Option<String> {
        self.parser.last_error()
    }
}

/// The text an editor has been shown, and where a CLI that starts an answer
/// over (claude after an abandoned stream, gemini after a mid-stream error,
/// a whole message after its own deltas) is within it: text it repeats is
/// dropped, only what goes past it is shown.
#[derive(Default)]
pub struct Replay {
    shown: String,
    /// Where the current message began in `shown`.
    start: usize,
    /// Where the next piece of text is expected: `shown.len()` unless the
    /// CLI is repeating itself.
    at: usize,
}

impl Replay {
    /// A new message begins after the text so far.
    pub fn begin_message(&mut self) {
        self.start = self.shown.len();
        self.at = self.start;
    }

    /// The CLI starts the current message over.
    pub fn restart(&mut self) {
        self.at = self.start;
    }

    /// A piece of the current message: what of it is new.
    pub fn piece(&mut self, text: &str) -> Option<String> {
        let expected = self.shown.get(self.at..).unwrap_or_default();
        let same = common_prefix(expected, text);
        self.at += same;
        let new = text.get(same..).unwrap_or_default();
        if new.is_empty() {
            return None;
        }
        if self.at < self.shown.len() {
            // The repeat went its own way: what was shown stays, and the new
            // text follows it (it cannot be taken back).
            tracing::warn!("an agent's retry differs from the text already streamed");
            self.at = self.shown.len();
        }
        self.shown.push_str(new);
        self.at = self.shown.len();
        Some(new.to_owned())
    }

    /// The current message whole (as claude and cursor-agent print it after
    /// or instead of its pieces): what of it has not been shown.
    pub fn whole(&mut self, text: &str) -> Option<String> {
        self.restart();
        self.piece(text)
    }

    /// Whether `text` agrees with the current message from its start: it
    /// repeats the message's beginning, or all of it and goes on.
    pub fn repeats(&self, text: &str) -> bool {
        let message = self.shown.get(self.start..).unwrap_or_default();
        message.starts_with(text) || text.starts_with(message)
    }

    /// Whether any text was shown.
    pub fn is_empty(&self) -> bool {
        self.shown.is_empty()
    }
}

/// Bytes `a` and `b` share at their start, on a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or_else(|| a.len().min(b.len()), |((i, _), _)| i)
}

/// The usage event of an `{"input_tokens", "output_tokens"}` object (the
/// shape claude, codex and gemini all report), if it has both.
pub fn usage(counts: &Value) -> Option<Event> {
    Some(Event::Usage {
        prompt: counts["input_tokens"].as_u64()?,
        completion: counts["output_tokens"].as_u64()?,
    })
}

/// Text blocks of a message's `content` (an Anthropic-style array), joined.
pub fn text_blocks(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect(),
        _ => String::new(),
    }
}

/// What parser tests share: feeding lines, reading the text shown.
#[cfg(test)]
pub(super) mod testing {
    use super::*;

    /// The events of `lines`, each fed with its newline, then the end.
    pub fn run(parser: impl JsonLines, lines: &[&str]) -> Vec<Event> {
        let mut format = Lines::new(parser);
        let mut out = Vec::new();
        for line in lines {
            format.feed(format!("{line}\n").as_bytes(), &mut out);
        }
        format.end(&mut out);
        out
    }

    /// All the text the events show, joined.
    pub fn texts(events: &[Event]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_stops_on_a_character_boundary() {
        assert_eq!(common_prefix("héllo", "héllo world"), "héllo".len());
        assert_eq!(common_prefix("hé", "hè"), 1);
        assert_eq!(common_prefix("", "x"), 0);
        assert_eq!(common_prefix("abc", "ab"), 2);
    }

    #[test]
    fn a_restart_shows_only_what_goes_past_the_shown_text() {
        let mut r = Replay::default();
        r.begin_message();
        assert_eq!(r.piece("Hello "), Some("Hello ".into()));
        assert_eq!(r.piece("wor"), Some("wor".into()));
        r.restart();
        assert_eq!(r.piece("Hel"), None);
        assert_eq!(r.piece("lo world"), Some("ld".into()));
        assert_eq!(r.whole("Hello world"), None);
        assert_eq!(r.whole("Hello world!"), Some("!".into()));
        r.begin_message();
        assert_eq!(r.piece("Hello"), Some("Hello".into()));
    }

    #[test]
    fn a_retry_that_differs_is_appended_once() {
        let mut r = Replay::default();
        r.begin_message();
        r.piece("abc");
        r.restart();
        assert_eq!(r.piece("abX"), Some("X".into()));
        assert_eq!(r.piece("Y"), Some("Y".into()));
    }

    #[test]
    fn lines_are_framed_across_reads_and_bounded() {
        struct Echo;
        impl JsonLines for Echo {
            fn line(&mut self, line: &Value, out: &mut Vec<Event>) {
                out.push(Event::Text(line["t"].as_str().unwrap_or("").to_owned()));
            }
        }
        let mut lines = Lines::new(Echo);
        let mut out = Vec::new();
        lines.feed(b"{\"t\":\"a\"}\n{\"t\"", &mut out);
        lines.feed(b":\"b\"}\nnot json\n[1]\n{\"t\":\"c\"}", &mut out);
        lines.end(&mut out);
        assert_eq!(out, ["a", "b", "c"].map(|t| Event::Text(t.into())).to_vec());

        let mut out = Vec::new();
        let long = vec![b'x'; MAX_LINE + 1];
        lines.feed(&long, &mut out);
        lines.feed(b"x\n{\"t\":\"d\"}\n", &mut out);
        assert!(matches!(out.first(), Some(Event::Failed(_))));
        assert_eq!(out.get(1), Some(&Event::Text("d".into())));
    }
}
