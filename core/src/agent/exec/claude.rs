//! Claude Code's `--output-format stream-json --verbose
//! --include-partial-messages` (qwen-code prints the same line types):
//! `system`, `stream_event` lines wrapping Messages API events (text as
//! `content_block_delta`/`text_delta`), a whole `assistant` message after
//! its events, and a final `result`.
//!
//! When a stream fails midway, claude closes it (`message_stop` with
//! `abandoned_blocks`) and asks again without streaming: the next whole
//! message repeats what was streamed, and only what goes past it is new.

use serde_json::Value;

use super::output::{text_blocks, usage, Event, JsonLines, Replay};

#[derive(Default)]
pub struct StreamJson {
    replay: Replay,
    /// The last stream was abandoned: the next message starts it over.
    abandoned: bool,
    /// The current message was streamed (its `assistant` line repeats it).
    streaming: bool,
}

impl StreamJson {
    fn event(&mut self, event: &Value, out: &mut Vec<Event>) {
        match event["type"].as_str() {
            Some("message_start") => {
                self.begin();
                self.streaming = true;
            }
            Some("content_block_delta") if event["delta"]["type"] == "text_delta" => {
                if let Some(text) = event["delta"]["text"].as_str() {
                    out.extend(self.replay.piece(text).map(Event::Text));
                }
            }
            Some("message_stop") if !event["abandoned_blocks"].is_null() => {
                self.abandoned = true;
                self.streaming = false;
            }
            _ => {}
        }
    }

    /// A new message: a retry of an abandoned one, or the next one.
    fn begin(&mut self) {
        if std::mem::take(&mut self.abandoned) {
            self.replay.restart();
        } else {
            self.replay.begin_message();
        }
    }
}

impl JsonLines for StreamJson {
    fn line(&mut self, line: &Value, out: &mut Vec<Event>) {
        match line["type"].as_str() {
            Some("stream_event") => self.event(&line["event"], out),
            Some("assistant") => {
                if !std::mem::take(&mut self.streaming) {
                    self.begin();
                }
                let text = text_blocks(&line["message"]["content"]);
                out.extend(self.replay.whole(&text).map(Event::Text));
            }
            Some("system") if line["subtype"] == "init" => session(line, out),
            Some("result") => result(line, &mut self.replay, out),
            _ => {}
        }
    }
}

/// The `session_id` of an init line (claude, qwen, gemini, cursor-agent).
pub(super) fn session(line: &Value, out: &mut Vec<Event>) {
    if let Some(id) = line["session_id"].as_str().filter(|id| !id.is_empty()) {
        out.push(Event::Session(id.to_owned()));
    }
}

/// A `result` line (claude, qwen, cursor-agent): failure when `is_error`
/// (claude reports a failed run as `is_error: true` with `subtype:
/// "success"`), else usage and the end; its `result` text is shown only when
/// no message carried any.
pub(super) fn result(line: &Value, replay: &mut Replay, out: &mut Vec<Event>) {
    let text = line["result"].as_str().unwrap_or_default();
    if line["is_error"] == true || line["subtype"].as_str().is_some_and(|s| s != "success") {
        let message = if text.is_empty() {
            format!(
                "the agent failed ({})",
                line["subtype"].as_str().unwrap_or("error")
            )
        } else {
            text.to_owned()
        };
        out.push(Event::Failed(message));
        return;
    }
    if replay.is_empty() && !text.is_empty() {
        replay.begin_message();
        out.extend(replay.piece(text).map(Event::Text));
    }
    out.extend(usage(&line["usage"]));
    out.push(Event::Finished);
}

#[cfg(test)]
mod tests {
    use super::super::output::testing::{self, texts};
    use super::*;

    fn run(lines: &[&str]) -> Vec<Event> {
        testing::run(StreamJson::default(), lines)
    }

    fn delta(text: &str) -> String {
        format!(
            r#"{{"type":"stream_event","event":{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{text}"}}}}}}"#
        )
    }

    const START: &str =
        r#"{"type":"stream_event","event":{"type":"message_start","message":{"id":"m1"}}}"#;
    const INIT: &str = r#"{"type":"system","subtype":"init","session_id":"s1"}"#;

    #[test]
    fn streamed_text_then_its_whole_message_shows_each_word_once() {
        let out = run(&[
            INIT,
            START,
            &delta("Hello "),
            &delta("world"),
            r#"{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"Hello world"}]}}"#,
            r#"{"type":"stream_event","event":{"type":"message_stop"}}"#,
            r#"{"type":"result","subtype":"success","is_error":false,"result":"Hello world","usage":{"input_tokens":12,"output_tokens":2}}"#,
        ]);
        assert_eq!(
            out,
            vec![
                Event::Session("s1".into()),
                Event::Text("Hello ".into()),
                Event::Text("world".into()),
                Event::Usage {
                    prompt: 12,
                    completion: 2
                },
                Event::Finished
            ]
        );
    }

    #[test]
    fn an_abandoned_stream_retried_whole_is_not_shown_twice() {
        let out = run(&[
            START,
            &delta("The answer "),
            &delta("is"),
            r#"{"type":"stream_event","event":{"type":"message_stop","abandoned_blocks":[0]}}"#,
            r#"{"type":"assistant","message":{"id":"m2","content":[{"type":"text","text":"The answer is 42."}]}}"#,
            r#"{"type":"result","subtype":"success","is_error":false,"result":"The answer is 42."}"#,
        ]);
        assert_eq!(texts(&out), "The answer is 42.");
        assert_eq!(out.last(), Some(&Event::Finished));
    }

    #[test]
    fn a_tool_turn_then_a_text_turn_both_show() {
        let out = run(&[
            START,
            &delta("Let me look."),
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Let me look."},{"type":"tool_use","id":"t1","name":"Read","input":{}}]}}"#,
            START,
            &delta(" Found it."),
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":" Found it."}]}}"#,
            r#"{"type":"result","subtype":"success","is_error":false,"result":" Found it."}"#,
        ]);
        assert_eq!(texts(&out), "Let me look. Found it.");
    }

    #[test]
    fn an_error_result_fails_even_with_subtype_success() {
        let out = run(&[
            r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 500 upstream"}"#,
        ]);
        assert_eq!(out, vec![Event::Failed("API Error: 500 upstream".into())]);
        let out = run(&[r#"{"type":"result","subtype":"error_max_turns","is_error":false}"#]);
        assert!(matches!(out.as_slice(), [Event::Failed(m)] if m.contains("error_max_turns")));
    }

    #[test]
    fn without_partial_messages_the_result_text_is_the_answer() {
        let out = run(&[
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Hi"}]}}"#,
            r#"{"type":"result","subtype":"success","is_error":false,"result":"Hi"}"#,
        ]);
        assert_eq!(texts(&out), "Hi");
        let out =
            run(&[r#"{"type":"result","subtype":"success","is_error":false,"result":"Only"}"#]);
        assert_eq!(texts(&out), "Only");
    }
}
