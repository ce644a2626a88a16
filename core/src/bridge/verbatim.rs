//! A client's request passed on to its child as the client wrote it, only
//! its id rewritten to the bridge's: most calls need nothing changed in
//! their params, and writing them again from a JSON tree cost as much as
//! reading them.

use std::ops::Range;

use crate::mcp::{self, Message};

/// A request's text and where its id stands in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verbatim {
    text: String,
    id: Range<usize>,
}

impl Verbatim {
    /// The text of a request whose id stands at `id`, if it can go to a
    /// child as it is: on one line (a child on stdio reads a line per
    /// message, and a client may have spread its JSON over several).
    pub(crate) fn of(text: &str, id: Range<usize>) -> Option<Verbatim> {
        let unbroken = crate::swar::line_break(text.as_bytes()) == text.len();
        if !unbroken || text.get(id.clone()).is_none() {
            return None;
        }
        Some(Verbatim {
            text: text.to_owned(),
            id,
        })
    }

    /// The request under the bridge's id `id`.
    pub(crate) fn line(&self, id: u64) -> String {
        let (before, after) = (
            self.text.get(..self.id.start).unwrap_or_default(),
            self.text.get(self.id.end..).unwrap_or_default(),
        );
        let mut digits = itoa::Buffer::new();
        let id = digits.format(id);
        // Exactly as long as it will be: made a request's body, the line
        // is then taken as it is, with no room to account for.
        let mut line = String::with_capacity(before.len() + id.len() + after.len());
        line.push_str(before);
        line.push_str(id);
        line.push_str(after);
        line
    }
}

/// A message from a client, with its text when it may be passed on as
/// written (see [`Verbatim`]).
#[derive(Debug)]
pub struct FromClient {
    pub(crate) message: Message,
    pub(crate) verbatim: Option<Verbatim>,
}

impl From<Message> for FromClient {
    fn from(message: Message) -> Self {
        FromClient {
            message,
            verbatim: None,
        }
    }
}

impl FromClient {
    /// The message `text` holds, kept as written when it is a request.
    pub(crate) fn parse(text: &str) -> Result<FromClient, mcp::Invalid> {
        let (message, id) = mcp::parse_placed(text)?;
        let verbatim = id.and_then(|id| Verbatim::of(text, id));
        Ok(FromClient { message, verbatim })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// The id alone changes, whatever it was (a string with escapes, a
    /// number) and wherever it stood; the rest stays as written, spacing
    /// and member order included.
    #[test]
    fn only_the_id_is_rewritten() {
        for (text, expected) in [
            (
                r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#,
                r#"{"jsonrpc":"2.0","id":1465,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#,
            ),
            (
                r#"{"method":"ping", "id" : "a\"b\u00e9" ,"jsonrpc":"2.0"}"#,
                r#"{"method":"ping", "id" : 1465 ,"jsonrpc":"2.0"}"#,
            ),
        ] {
            let read = FromClient::parse(text).unwrap();
            assert!(matches!(read.message, Message::Request { .. }));
            let line = read.verbatim.unwrap().line(1465);
            assert_eq!(line, expected);
            let written: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(written["id"], json!(1465));
        }
    }

    /// A request over several lines, a notification and an answer are not
    /// kept: the first could not go to a child on stdio as it is, the
    /// others have no id of the bridge's to take.
    #[test]
    fn what_cannot_go_as_written_is_not_kept() {
        for text in [
            "{\"jsonrpc\":\"2.0\",\n\"id\":1,\"method\":\"ping\"}",
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        ] {
            assert_eq!(FromClient::parse(text).unwrap().verbatim, None, "{text}");
        }
    }
}
