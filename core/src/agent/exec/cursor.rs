//! cursor-agent's `--output-format stream-json [--stream-partial-output]`:
//! `system/init`, `assistant` lines and a final `result` (as claude's).
//!
//! With partial output an `assistant` line may carry only the new text or
//! the whole message so far; either way each piece of text is shown once.

use serde_json::Value;

use super::claude::{result, session};
use super::output::{text_blocks, Event, JsonLines, Replay};

#[derive(Default)]
pub struct CursorAgent {
    replay: Replay,
    /// Text of the current message so far.
    message: String,
    started: bool,
}

impl JsonLines for CursorAgent {
    fn line(&mut self, line: &Value, out: &mut Vec<Event>) {
        match line["type"].as_str() {
            Some("assistant") => {
                if !self.started {
                    self.replay.begin_message();
                    self.started = true;
                }
                let text = text_blocks(&line["message"]["content"]);
                // A line that repeats the message so far carries it whole;
                // any other line is the next piece of it.
                if !self.message.is_empty() && text.starts_with(&self.message) {
                    self.message = text;
                    out.extend(self.replay.whole(&self.message).map(Event::Text));
                } else {
                    self.message.push_str(&text);
                    out.extend(self.replay.piece(&text).map(Event::Text));
                }
            }
            // A tool call ends the message; text after it is a new one.
            Some("tool_call") => {
                self.started = false;
                self.message.clear();
            }
            Some("system") if line["subtype"] == "init" => session(line, out),
            Some("result") => result(line, &mut self.replay, out),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::output::testing;
    use super::*;

    fn texts(lines: &[&str]) -> (String, Vec<Event>) {
        let out = testing::run(CursorAgent::default(), lines);
        (testing::texts(&out), out)
    }

    fn assistant(text: &str) -> String {
        format!(
            r#"{{"type":"assistant","message":{{"role":"assistant","content":[{{"type":"text","text":"{text}"}}]}},"session_id":"c1"}}"#
        )
    }

    const RESULT: &str = r#"{"type":"result","subtype":"success","is_error":false,"result":"Hello world","session_id":"c1"}"#;

    #[test]
    fn cumulative_partial_lines_do_not_duplicate() {
        let (text, out) = texts(&[
            r#"{"type":"system","subtype":"init","session_id":"c1","model":"auto"}"#,
            &assistant("Hel"),
            &assistant("Hello wor"),
            &assistant("Hello world"),
            &assistant("Hello world"),
            RESULT,
        ]);
        assert_eq!(text, "Hello world");
        assert_eq!(out.last(), Some(&Event::Finished));
    }

    #[test]
    fn delta_partial_lines_are_joined() {
        let (text, _) = texts(&[
            &assistant("Hello"),
            &assistant(" world"),
            &assistant("Hello world"),
            RESULT,
        ]);
        assert_eq!(text, "Hello world");
    }
}
