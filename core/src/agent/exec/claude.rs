//! Claude Code's `--output-format stream-json --verbose
//! --include-partial-messages` (qwen-code prints the same line types):
//! `system`, `stream_event` lines wrapping Messages API events (text as
//! `content_block_delta`/`text_delta`), a whole `assistant` message after
//! its events, and a final `result`.
//!
//! When a stream fails midway, claude closes it (`message_stop`, with
//! `abandoned_blocks` beside the event on its line) and asks again: when the
//! first block was abandoned the next message repeats what was streamed, and
//! only what goes past it is new.
//! qwen says the same with a `system` `retry` line whose `preserveText` is
//! false. A failed request shows up as a synthetic `assistant` message
//! (`is_api_error_message`) holding the error as text: that is not answer
//! text, the `result` that follows reports the failure.

use serde_json::Value;

use super::output::{text_blocks, usage, Event, JsonLines, Replay};

#[derive(Default)]
pub struct StreamJson {
    replay: Replay,
    /// The last stream was abandoned: the next message starts it over.
    abandoned: bool,
    /// The current message was streamed (its `assistant` line repeats it).
    streaming: bool,
    /// Calls of the editor's tools the streamed message started.
    calls: u64,
}

/// Whether claude's call `name` (`mcp__<server>__<tool>`) is of a tool the
/// editor is given: one of the relay's, but its `search_tools`, which the
/// relay answers itself.
fn is_editor_tool(name: &str) -> bool {
    name.strip_prefix("mcp__")
        .and_then(|rest| rest.strip_prefix(super::SERVER))
        .and_then(|rest| rest.strip_prefix("__"))
        .is_some_and(|tool| tool != super::tool_search::SEARCH_TOOLS)
}

impl StreamJson {
    fn event(&mut self, event: &Value, out: &mut Vec<Event>) {
        match event["type"].as_str() {
            Some("message_start") => {
                self.begin();
                self.streaming = true;
                self.calls = 0;
            }
            Some("content_block_start")
                if event["content_block"]["type"] == "tool_use"
                    && event["content_block"]["name"]
                        .as_str()
                        .is_some_and(is_editor_tool) =>
            {
                self.calls += 1;
            }
            Some("message_stop") if self.calls > 0 => {
                out.push(Event::Turn {
                    calls: std::mem::take(&mut self.calls),
                });
            }
            Some("content_block_delta") if event["delta"]["type"] == "text_delta" => {
                if let Some(text) = event["delta"]["text"].as_str() {
                    out.extend(self.replay.piece(text).map(Event::Text));
                }
            }
            _ => {}
        }
    }

    /// The stream so far is taken back: the next message starts it over.
    fn abandon(&mut self) {
        self.abandoned = true;
        self.streaming = false;
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
            Some("stream_event") => {
                let event = &line["event"];
                if event["type"] == "message_stop" && retracts(line) {
                    self.abandon();
                } else {
                    self.event(event, out);
                }
            }
            Some("system")
                if line["subtype"] == "retry" && line["data"]["preserveText"] == false =>
            {
                self.abandon();
            }
            Some("assistant") if line["is_api_error_message"] == true => {}
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

/// Whether a `message_stop` line takes back the text its message streamed.
/// `abandoned_blocks` names the first block abandoned: from block 0 the
/// whole message is asked again; from a later block the finished blocks
/// before it stand (their `assistant` lines came) and claude goes on after
/// them with a new message, so nothing shown is repeated. Older releases put
/// the mark inside the event.
fn retracts(line: &Value) -> bool {
    let abandoned = match &line["abandoned_blocks"] {
        Value::Null => &line["event"]["abandoned_blocks"],
        on_the_line => on_the_line,
    };
    !abandoned.is_null() && abandoned["from_block_index"].as_u64().unwrap_or(0) == 0
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
    fn abandoned_blocks_beside_the_event_take_the_stream_back() {
        // As claude 2.1 prints it: the mark is on the line, not in the event.
        let out = run(&[
            START,
            &delta("Pelicans "),
            &delta("glide "),
            r#"{"type":"stream_event","event":{"type":"message_stop"},"abandoned_blocks":{"api_message_id":"m1","from_block_index":0}}"#,
            r#"{"type":"system","subtype":"api_retry","attempt":1}"#,
            START,
            &delta("Pelicans "),
            &delta("glide "),
            &delta("over the harbour."),
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Pelicans glide over the harbour."}]}}"#,
            r#"{"type":"result","subtype":"success","is_error":false,"result":"Pelicans glide over the harbour."}"#,
        ]);
        assert_eq!(texts(&out), "Pelicans glide over the harbour.");
    }

    #[test]
    fn blocks_finished_before_the_abandoned_one_stand() {
        let out = run(&[
            START,
            &delta("Pelicans glide."),
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Pelicans glide."}]}}"#,
            r#"{"type":"stream_event","event":{"type":"message_stop"},"abandoned_blocks":{"from_block_index":1}}"#,
            START,
            &delta("Pelicans "),
            &delta("also dive."),
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Pelicans also dive."}]}}"#,
            r#"{"type":"result","subtype":"success","is_error":false,"result":"Pelicans also dive."}"#,
        ]);
        assert_eq!(texts(&out), "Pelicans glide.Pelicans also dive.");
    }

    #[test]
    fn a_qwen_retry_without_preserved_text_starts_the_message_over() {
        let out = run(&[
            START,
            &delta("The pelican "),
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"The pelican "}]}}"#,
            r#"{"type":"stream_event","event":{"type":"message_stop"}}"#,
            r#"{"type":"system","subtype":"retry","data":{"reason":"retry","preserveText":false}}"#,
            START,
            &delta("The pelican "),
            &delta("is a bird."),
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"The pelican is a bird."}]}}"#,
            r#"{"type":"result","subtype":"success","is_error":false,"result":"The pelican is a bird."}"#,
        ]);
        assert_eq!(texts(&out), "The pelican is a bird.");
    }

    #[test]
    fn a_synthetic_api_error_message_is_not_answer_text() {
        let out = run(&[
            r#"{"type":"assistant","is_api_error_message":true,"error":"server_error","message":{"model":"<synthetic>","content":[{"type":"text","text":"API Error: 500 Internal server error."}]}}"#,
            r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 500 Internal server error."}"#,
        ]);
        assert_eq!(
            out,
            vec![Event::Failed(
                "API Error: 500 Internal server error.".into()
            )]
        );
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
    fn a_turn_says_how_many_of_the_editors_tools_it_called() {
        let tool = |name: &str| {
            format!(
                r#"{{"type":"stream_event","event":{{"type":"content_block_start","index":1,"content_block":{{"type":"tool_use","id":"t","name":"{name}","input":{{}}}}}}}}"#
            )
        };
        let stop = r#"{"type":"stream_event","event":{"type":"message_stop"}}"#;
        let out = run(&[
            START,
            &tool("mcp__editor__weather"),
            &tool("mcp__editor__weather"),
            &tool("Read"),
            &tool("mcp__editorial__x"),
            stop,
            START,
            &delta("Done."),
            stop,
        ]);
        assert_eq!(
            out.iter()
                .filter(|e| matches!(e, Event::Turn { .. }))
                .collect::<Vec<_>>(),
            [&Event::Turn { calls: 2 }]
        );
        assert_eq!(texts(&out), "Done.");
        // A search is answered by the relay: only `call_tool` goes on.
        let out = run(&[
            START,
            &tool("mcp__editor__search_tools"),
            &tool("mcp__editor__call_tool"),
            stop,
        ]);
        assert!(out.contains(&Event::Turn { calls: 1 }), "{out:?}");
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
