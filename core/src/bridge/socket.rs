//! The WebSocket envelope at `/ws`: `{"type":"create_session","server"?}`
//! or `{"type":"attach_session","session_id"}`, then JSON-RPC messages and
//! batches; everything from the server comes back as
//! `{"type":"response"|"notification"|"request","data":…}`. Any session
//! may be attached, however it was made, by several sockets at once: each
//! request of a socket goes on under an id of the bridge's own, so each
//! socket gets its own answers whatever ids the others use.
//!
//! A frame is parsed by [`SocketFrame::parse`] before the bridge is
//! locked, so a large frame never holds up other clients while it is
//! read, and a batch is read within a bound: at most [`MAX_BATCH`]
//! messages are kept, the rest only counted (a 4 MiB frame of `[1,1,…]`
//! is two million entries: kept whole, and each answered, it took a
//! gigabyte and stalled every client).
//!
//! The registry serves the frames (`rest.rs`); reading them is here.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::mcp::{self, Message};

/// The WebSocket subprotocol of the envelope; a browser offers it with
/// `bearer.<API key>`.
pub(crate) const SUBPROTOCOL: &str = "mcp-bridge";

/// Messages one batch may hold; past it the rest of the batch is refused
/// with one error, not one per message.
pub const MAX_BATCH: usize = 256;

/// One frame from a WebSocket client, parsed.
#[derive(Debug)]
pub struct SocketFrame(pub(crate) Frame);

#[derive(Debug)]
pub(crate) enum Frame {
    /// Not JSON, or JSON of no shape the envelope has.
    Invalid(String),
    /// An object with a `type`: the envelope's own.
    Control(Value),
    /// JSON-RPC messages (one, or a batch), each parsed or refused, and
    /// how many a batch held past [`MAX_BATCH`].
    Messages(Vec<Result<Message, mcp::Invalid>>, usize),
}

impl SocketFrame {
    /// Reads a text frame; cheap to call outside any lock.
    pub fn parse(text: &str) -> SocketFrame {
        let first = text.trim_start().as_bytes().first().copied();
        if first == Some(b'[') {
            return SocketFrame(match bounded_batch(text) {
                Ok((kept, dropped)) => {
                    let parsed = kept.iter().map(|raw| mcp::parse(raw.get())).collect();
                    Frame::Messages(parsed, dropped)
                }
                Err(e) => Frame::Invalid(format!("not JSON: {e}")),
            });
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(e) => return SocketFrame(Frame::Invalid(format!("not JSON: {e}"))),
        };
        SocketFrame(match value.get("type") {
            Some(_) => Frame::Control(value),
            None => Frame::Messages(vec![mcp::parse(text)], 0),
        })
    }
}

/// The first [`MAX_BATCH`] entries of a JSON array as they were sent, and
/// how many more it had (read, not kept).
fn bounded_batch(text: &str) -> Result<(Vec<Box<RawValue>>, usize), serde_json::Error> {
    struct Bounded;
    impl<'de> Visitor<'de> for Bounded {
        type Value = (Vec<Box<RawValue>>, usize);

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON array")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut kept = Vec::new();
            while kept.len() < MAX_BATCH {
                match seq.next_element::<Box<RawValue>>()? {
                    Some(raw) => kept.push(raw),
                    None => return Ok((kept, 0)),
                }
            }
            let mut dropped = 0;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                dropped += 1;
            }
            Ok((kept, dropped))
        }
    }
    let mut reader = serde_json::Deserializer::from_str(text);
    let batch = (&mut reader).deserialize_seq(Bounded)?;
    reader.end()?;
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> (usize, usize) {
        match SocketFrame::parse(text).0 {
            Frame::Messages(kept, dropped) => (kept.len(), dropped),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_batch_is_kept_up_to_its_cap_and_the_rest_only_counted() {
        assert_eq!(
            messages(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
            (1, 0)
        );
        let huge = format!("[{}1]", "1,".repeat(2_000_000));
        assert_eq!(messages(&huge), (MAX_BATCH, 2_000_001 - MAX_BATCH));
        assert_eq!(
            messages(r#" {"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            (1, 0)
        );
    }

    #[test]
    fn what_is_not_the_envelope_is_invalid_at_once() {
        for text in ["[1,", "[1] x", "nope", "", "[[[["] {
            assert!(
                matches!(SocketFrame::parse(text).0, Frame::Invalid(_)),
                "{text}"
            );
        }
        assert!(matches!(
            SocketFrame::parse(r#"{"type":"create_session"}"#).0,
            Frame::Control(_)
        ));
    }
}
