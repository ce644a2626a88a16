//! codex's `exec --json`: `thread.started`, `turn.started`, whole items as
//! `item.completed` (the answer is in `agent_message` items; no text
//! deltas), `turn.completed` with `usage`, `turn.failed`, and top-level
//! `error` lines.
//!
//! An `error` item is a warning codex goes on after (it reports missing
//! model metadata that way), and a top-level `error` may be followed by a
//! reconnect: only `turn.failed`, or an end without `turn.completed`, fails
//! the answer, with the last error codex gave.

use serde_json::Value;

use super::output::{usage, Event, JsonLines};

#[derive(Default)]
pub struct Codex {
    /// Agent messages shown so far (later ones follow a blank line).
    messages: usize,
    last_error: Option<String>,
    ended: bool,
}

impl JsonLines for Codex {
    fn line(&mut self, line: &Value, out: &mut Vec<Event>) {
        match line["type"].as_str() {
            Some("thread.started") => {
                if let Some(id) = line["thread_id"].as_str() {
                    out.push(Event::Session(id.to_owned()));
                }
            }
            Some("item.completed") => {
                let item = &line["item"];
                match item["type"].as_str() {
                    Some("agent_message") => {
                        let text = item["text"].as_str().unwrap_or_default();
                        if text.is_empty() {
                            return;
                        }
                        let text = if self.messages > 0 {
                            format!("\n\n{text}")
                        } else {
                            text.to_owned()
                        };
                        self.messages += 1;
                        out.push(Event::Text(text));
                    }
                    Some("error") => {
                        tracing::warn!(message = %item["message"], "codex reported an error item");
                    }
                    _ => {}
                }
            }
            Some("error") => {
                self.last_error = line["message"].as_str().map(str::to_owned);
            }
            Some("turn.failed") => {
                self.ended = true;
                let message = line["error"]["message"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| self.last_error.take())
                    .unwrap_or_else(|| "the agent's turn failed".to_owned());
                out.push(Event::Failed(message));
            }
            Some("turn.completed") => {
                self.ended = true;
                out.extend(usage(&line["usage"]));
                out.push(Event::Finished);
            }
            _ => {}
        }
    }

    fn last_error(&self) -> Option<String> {
        self.last_error.clone().filter(|_| !self.ended)
    }
}

#[cfg(test)]
mod tests {
    use super::super::output::testing;
    use super::*;

    fn run(lines: &[&str]) -> Vec<Event> {
        testing::run(Codex::default(), lines)
    }

    #[test]
    fn agent_messages_and_usage_as_codex_prints_them() {
        // As codex 0.x printed them against this provider's echo model.
        let out = run(&[
            r#"{"type":"thread.started","thread_id":"01a2"}"#,
            r#"{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata for `echo` not found."}}"#,
            r#"{"type":"turn.started"}"#,
            r#"{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"Say the word pelican now\n"}}"#,
            r#"{"type":"turn.completed","usage":{"input_tokens":4968,"cached_input_tokens":0,"output_tokens":5}}"#,
        ]);
        assert_eq!(
            out,
            vec![
                Event::Session("01a2".into()),
                Event::Text("Say the word pelican now\n".into()),
                Event::Usage {
                    prompt: 4968,
                    completion: 5
                },
                Event::Finished
            ]
        );
    }

    #[test]
    fn later_messages_follow_a_blank_line() {
        let out = run(&[
            r#"{"type":"item.completed","item":{"type":"agent_message","text":"Looking."}}"#,
            r#"{"type":"item.completed","item":{"type":"command_execution","command":"ls"}}"#,
            r#"{"type":"item.completed","item":{"type":"agent_message","text":"Done."}}"#,
        ]);
        assert_eq!(
            out,
            vec![
                Event::Text("Looking.".into()),
                Event::Text("\n\nDone.".into())
            ]
        );
    }

    #[test]
    fn a_failed_turn_fails_with_codex_s_message() {
        let out = run(&[
            r#"{"type":"error","message":"Reconnecting... 1/5"}"#,
            r#"{"type":"turn.failed","error":{"message":"stream disconnected before completion"}}"#,
        ]);
        assert_eq!(
            out,
            vec![Event::Failed(
                "stream disconnected before completion".into()
            )]
        );
    }

    #[test]
    fn an_end_without_a_turn_keeps_the_last_error() {
        let mut codex = Codex::default();
        let mut out = Vec::new();
        codex.line(
            &serde_json::json!({"type":"error","message":"unexpected status 401"}),
            &mut out,
        );
        assert_eq!(codex.last_error().as_deref(), Some("unexpected status 401"));
        assert!(out.is_empty());
    }
}
