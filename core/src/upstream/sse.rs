//! Server-sent events as a client reads them (the WHATWG `text/event-stream`
//! format): bytes in, whole events out, each bounded in size. A remote MCP
//! server answers a POST with a stream of `message` events, keeps a GET
//! stream of them for its own requests, and a legacy server names its
//! POST endpoint in an `endpoint` event.
//!
//! The reader also keeps what a stream says of taking it up again once it
//! ends: the last event id it dispatched and the `retry:` wait it asked.

use std::borrow::Cow;
use std::time::Duration;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// `event:` (empty means `message`; `message` itself, which a server
    /// names on every answer, is kept borrowed).
    pub kind: Cow<'static, str>,
    pub data: String,
}

impl Event {
    /// The event's type, `message` when it named none.
    pub fn kind(&self) -> &str {
        if self.kind.is_empty() {
            "message"
        } else {
            &self.kind
        }
    }
}

/// Why a stream cannot be read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event of the stream is longer than {0} bytes")]
    TooLong(usize),
}

/// Reads a stream's events as its bytes arrive.
#[derive(Debug)]
pub struct SseReader {
    /// The line being read (bytes: a multi-byte character may be split
    /// between reads).
    line: Vec<u8>,
    /// The event being built.
    event: Event,
    /// Its `id:`, when it had one: it becomes the last id as the event
    /// ends (moved, not copied; see [`SseReader::last_event_id`]).
    id: Option<String>,
    /// Whether `data` has had a line yet (a second one adds a newline).
    any_data: bool,
    /// The most bytes an event may hold, fields and data together.
    max: usize,
    /// The bytes of the event being built so far.
    size: usize,
    /// A CR ended the last line: an LF right after it belongs to it.
    after_cr: bool,
    /// The id of the last event dispatched that had one (WHATWG's "last
    /// event ID": kept across events, set by one with no data too).
    last_id: Option<String>,
    /// The last `retry:` the stream sent: how long it asks a client to
    /// wait before taking it up again.
    retry: Option<Duration>,
}

impl SseReader {
    pub fn new(max: usize) -> Self {
        SseReader {
            line: Vec::new(),
            event: Event::default(),
            id: None,
            any_data: false,
            max,
            size: 0,
            after_cr: false,
            last_id: None,
            retry: None,
        }
    }

    /// The id to take the stream up again after (`Last-Event-ID`): none
    /// when no event had one, or the last one named none (an empty `id:`).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref().filter(|id| !id.is_empty())
    }

    /// The id the last event to name one named, even an empty one (which
    /// says to resume after none): what a stream taken up again on a new
    /// reader keeps from this one.
    pub fn named_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// The wait before taking the stream up again that it asked for.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Takes bytes of the stream; the events they complete are added to
    /// `events` (the caller's, kept from read to read: no list is made
    /// for each).
    pub fn push(&mut self, mut bytes: &[u8], events: &mut Vec<Event>) -> Result<(), SseError> {
        while !bytes.is_empty() {
            if std::mem::take(&mut self.after_cr) && bytes.first() == Some(&b'\n') {
                bytes = bytes.get(1..).unwrap_or_default();
                continue;
            }
            // A line's bytes are taken a run at a time, up to its break.
            let (text, rest) = bytes.split_at(crate::swar::line_break(bytes));
            self.size += text.len();
            if self.size > self.max {
                return Err(SseError::TooLong(self.max));
            }
            let Some((&brk, rest)) = rest.split_first() else {
                self.line.extend_from_slice(text);
                break;
            };
            self.after_cr = brk == b'\r';
            // A line that came whole in these bytes is read where it
            // stands; only one split between reads is gathered first.
            let event = if self.line.is_empty() {
                self.end_line(text)
            } else {
                self.line.extend_from_slice(text);
                let mut line = std::mem::take(&mut self.line);
                let event = self.end_line(&line);
                line.clear();
                self.line = line;
                event
            };
            events.extend(event);
            bytes = rest;
        }
        Ok(())
    }

    /// The end of `line`: an empty one dispatches the event.
    fn end_line(&mut self, line: &[u8]) -> Option<Event> {
        if line.is_empty() {
            if let Some(id) = self.id.take() {
                self.last_id = Some(id);
            }
            let event = std::mem::take(&mut self.event);
            let any = std::mem::take(&mut self.any_data);
            self.size = 0;
            return any.then_some(event);
        }
        self.field(line);
        None
    }

    /// The field on `line`, into the event. Its name is matched as bytes:
    /// only the value is read as text, and only for a field kept.
    fn field(&mut self, line: &[u8]) {
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return,
            Some(at) => {
                let (field, value) = line.split_at(at);
                let value = value.get(1..).unwrap_or_default();
                (field, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                if std::mem::replace(&mut self.any_data, true) {
                    self.event.data.push('\n');
                }
                self.event.data.push_str(&crate::text::lossy(value));
            }
            b"event" => {
                let kind = crate::text::lossy(value);
                self.event.kind = crate::text::known_or_owned(&["message"], &kind);
            }
            b"id" if !value.contains(&0) => {
                self.id = Some(crate::text::lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Digits past u64 are a wait longer than any it is capped at.
                let millis = std::str::from_utf8(value)
                    .ok()
                    .and_then(|digits| digits.parse().ok())
                    .unwrap_or(u64::MAX);
                self.retry = Some(Duration::from_millis(millis));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events of `bytes` read `split` bytes at a time, and the last
    /// id the stream named.
    fn all(bytes: &[u8], split: usize) -> (Vec<Event>, Option<String>) {
        let (mut reader, mut events) = (SseReader::new(1024), Vec::new());
        for piece in bytes.chunks(split) {
            reader.push(piece, &mut events).unwrap();
        }
        (events, reader.last_event_id().map(str::to_owned))
    }

    #[test]
    fn events_are_the_same_whatever_the_split() {
        let stream = b": keep-alive\r\n\r\nevent: endpoint\r\ndata: /messages?session_id=1\r\n\r\nid: 7\ndata: {\"a\":\ndata: 1}\n\ndata\n\nretry: 5\n\n";
        for split in [1, 2, 3, 5, 100] {
            let (events, last_id) = all(stream, split);
            assert_eq!(events.len(), 3, "split {split}");
            assert_eq!(last_id.as_deref(), Some("7"));
            assert_eq!(events[0].kind(), "endpoint");
            assert_eq!(events[0].data, "/messages?session_id=1");
            assert_eq!(events[1].kind(), "message");
            assert_eq!(events[1].data, "{\"a\":\n1}");
            assert_eq!(events[2].data, "");
        }
    }

    #[test]
    fn a_multibyte_character_split_between_reads_is_kept() {
        let stream = "data: héllo\n\n".as_bytes();
        assert_eq!(all(stream, 1).0[0].data, "héllo");
    }

    #[test]
    fn the_last_event_id_and_retry_are_kept_across_events() {
        let mut reader = SseReader::new(1024);
        assert_eq!(reader.last_event_id(), None);
        let mut events = Vec::new();
        reader
            .push(b"id: e-1\nretry: 500\ndata: \n\ndata: {}\n\n", &mut events)
            .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(reader.last_event_id(), Some("e-1"), "the last one stays");
        assert_eq!(reader.retry(), Some(Duration::from_millis(500)));
        // An id with no data still counts; a retry that is no number does not.
        reader
            .push(b"id: e-2\nretry: soon\n\n", &mut events)
            .unwrap();
        assert_eq!(reader.last_event_id(), Some("e-2"));
        assert_eq!(reader.retry(), Some(Duration::from_millis(500)));
        // An empty id means none to resume after.
        reader.push(b"id\ndata: x\n\n", &mut events).unwrap();
        assert_eq!(reader.last_event_id(), None);
    }

    #[test]
    fn an_endless_event_is_an_error() {
        let mut reader = SseReader::new(16);
        let mut events = Vec::new();
        assert!(reader.push(b"data: 0123456789", &mut events).is_ok());
        assert_eq!(
            reader.push(b"abcdefgh", &mut events),
            Err(SseError::TooLong(16))
        );
    }
}
