//! Gemini CLI's `--output-format stream-json`: `init`, `message` lines
//! (the assistant's text as `delta: true` pieces), `tool_use`,
//! `tool_result`, `error` (not fatal) and a final `result` with `status` and
//! `stats`.
//!
//! After an error mid-stream gemini streams its answer again from the
//! start, so after an `error` line the repeated text is dropped; and it may
//! end with `status: "error"` yet exit 0, which is a failure.
//!
//! After a stream that ended early or was reset it retries with no line at
//! all to say so: the answer simply begins again. A piece equal to the
//! message's first piece is held back as a possible restart, and the next
//! line decides: a piece that goes on repeating the message (or any other
//! line) confirms the restart, a piece that does not shows the held one as
//! the text it was.

use serde_json::Value;

use super::claude::session;
use super::output::{usage, Event, JsonLines, Replay};

#[derive(Default)]
pub struct Gemini {
    replay: Replay,
    /// The last line was an assistant message piece.
    in_message: bool,
    /// An `error` line came: the next pieces may repeat the answer.
    retrying: bool,
    /// The current message's first piece.
    first: Option<String>,
    /// A piece equal to `first`, later in the message: held until the next
    /// line tells whether gemini started the message over.
    held: Option<String>,
}

impl Gemini {
    /// A text piece of the current message.
    fn piece(&mut self, text: &str, out: &mut Vec<Event>) {
        if let Some(held) = self.held.take() {
            if self.replay.repeats(&format!("{held}{text}")) {
                self.replay.restart();
            }
            out.extend(self.replay.piece(&held).map(Event::Text));
        } else if self.first.as_deref() == Some(text) && self.replay.repeats(text) {
            self.held = Some(text.to_owned());
            return;
        }
        if self.first.is_none() {
            self.first = Some(text.to_owned());
        }
        out.extend(self.replay.piece(text).map(Event::Text));
    }

    /// A line other than a text piece: a held piece was a restart, and
    /// repeated only what was shown.
    fn settle(&mut self) {
        self.held = None;
    }
}

impl JsonLines for Gemini {
    fn line(&mut self, line: &Value, out: &mut Vec<Event>) {
        let was_in_message = std::mem::take(&mut self.in_message);
        let is_piece = line["type"] == "message" && line["role"] == "assistant";
        if !is_piece {
            self.settle();
        }
        match line["type"].as_str() {
            Some("message") if line["role"] == "assistant" => {
                if !was_in_message {
                    if std::mem::take(&mut self.retrying) {
                        self.replay.restart();
                    } else {
                        self.replay.begin_message();
                        self.first = None;
                    }
                }
                self.in_message = true;
                let text = line["content"].as_str().unwrap_or_default();
                if line["delta"] == true {
                    self.piece(text, out);
                } else {
                    out.extend(self.replay.whole(text).map(Event::Text));
                }
            }
            Some("init") => session(line, out),
            Some("error") => {
                tracing::warn!(message = %line["message"], "gemini reported an error");
                self.retrying = true;
            }
            Some("result") => {
                if line["status"] != "success" {
                    let message = line["error"]["message"]
                        .as_str()
                        .unwrap_or("the agent reported an error");
                    out.push(Event::Failed(message.to_owned()));
                    return;
                }
                out.extend(usage(&line["stats"]));
                out.push(Event::Finished);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::output::testing::{self, texts};
    use super::*;

    fn run(lines: &[&str]) -> Vec<Event> {
        testing::run(Gemini::default(), lines)
    }

    fn piece(text: &str) -> String {
        format!(r#"{{"type":"message","role":"assistant","content":"{text}","delta":true}}"#)
    }

    const INIT: &str = r#"{"type":"init","session_id":"s","model":"m"}"#;
    const USER: &str = r#"{"type":"message","role":"user","content":"hi"}"#;

    #[test]
    fn pieces_usage_and_the_end() {
        let out = run(&[
            INIT,
            USER,
            &piece("Hello"),
            &piece(" there"),
            r#"{"type":"result","status":"success","stats":{"total_tokens":9,"input_tokens":7,"output_tokens":2}}"#,
        ]);
        assert_eq!(texts(&out), "Hello there");
        assert_eq!(out[0], Event::Session("s".into()));
        assert_eq!(
            &out[3..],
            &[
                Event::Usage {
                    prompt: 7,
                    completion: 2
                },
                Event::Finished
            ]
        );
    }

    #[test]
    fn a_restream_after_an_error_is_not_shown_twice() {
        let out = run(&[
            &piece("One "),
            &piece("two "),
            r#"{"type":"error","severity":"warning","message":"stream interrupted, retrying"}"#,
            &piece("One "),
            &piece("two "),
            &piece("three"),
            r#"{"type":"result","status":"success","stats":{}}"#,
        ]);
        assert_eq!(texts(&out), "One two three");
        assert_eq!(out.last(), Some(&Event::Finished));
    }

    #[test]
    fn status_error_fails_even_when_the_process_exits_0() {
        let out = run(&[
            &piece("partial"),
            r#"{"type":"result","status":"error","error":{"type":"API","message":"quota exceeded"}}"#,
        ]);
        assert_eq!(out.last(), Some(&Event::Failed("quota exceeded".into())));
    }

    #[test]
    fn a_silent_restart_after_a_stream_that_ended_early_is_not_shown_twice() {
        // As recorded: no line says gemini retried, the answer begins again.
        let out = run(&[
            &piece("The pelican "),
            &piece("is a large "),
            &piece("The pelican "),
            &piece("is a large "),
            &piece("water bird."),
            r#"{"type":"result","status":"success","stats":{}}"#,
        ]);
        assert_eq!(texts(&out), "The pelican is a large water bird.");
    }

    #[test]
    fn a_piece_like_the_first_that_goes_elsewhere_is_shown() {
        let out = run(&[
            &piece("Yes. "),
            &piece("I think so. "),
            &piece("Yes. "),
            &piece("Really."),
            r#"{"type":"result","status":"success","stats":{}}"#,
        ]);
        assert_eq!(texts(&out), "Yes. I think so. Yes. Really.");
    }

    #[test]
    fn text_after_a_tool_call_is_a_new_message() {
        let out = run(&[
            &piece("Reading."),
            r#"{"type":"tool_use","tool_name":"read_file","tool_id":"t1","parameters":{}}"#,
            r#"{"type":"tool_result","tool_id":"t1","status":"success","output":"x"}"#,
            &piece(" Reading."),
            r#"{"type":"result","status":"success"}"#,
        ]);
        assert_eq!(texts(&out), "Reading. Reading.");
    }
}
