//! The editor's tools as text, for an agent that does not take them over
//! MCP (its startup probe never listed them, or `--editor-tools text`):
//! the prompt lists them and asks for each call as a `<tool_call>` block
//! holding JSON; the answer is scanned as it streams, its text outside
//! the blocks shown and the blocks gathered as the editor's tool calls.
//! The results come back as the session's next prompt.

use std::collections::VecDeque;

use serde_json::{json, Value};

use crate::agent::exec::link;
use crate::agent::exec::tools::{Chat, Given, Offer, ToolResult};
use crate::agent::exec::ToolLink;
use crate::agent::exec::MAX_CALLS;
use crate::agent::process::RunId;

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// The most a call's block may hold; a longer one is shown as text.
const MAX_CALL: usize = 1 << 20;

/// What a prompt says of the editor's tools.
pub fn tools_text(offer: &Offer) -> String {
    let mut text = String::from(
        "You can call the following tools of the user's editor. To call one, \
         write only a block of this form, one per call, and end your answer \
         after the last one; the results come in the next message:\n\
         <tool_call>{\"name\": \"TOOL\", \"arguments\": {...}}</tool_call>\n\nTools:\n",
    );
    for tool in &offer.tools {
        let name = tool["name"].as_str().unwrap_or_default();
        let about = tool["description"].as_str().unwrap_or_default();
        text += &format!(
            "- {name}: {about}\n  arguments (JSON Schema): {}\n",
            tool["inputSchema"]
        );
    }
    if let Some(choice) = &offer.choice {
        text += &format!("\n{choice}\n");
    }
    text
}

/// The editor's results of `given` calls, as the next prompt.
pub fn results_text(given: &[Given], results: &[ToolResult]) -> String {
    let mut text = String::from("The results of your tool calls:\n");
    for (call, result) in given.iter().zip(results) {
        let failed = if result.is_error { " (failed)" } else { "" };
        text += &format!(
            "\n<tool_result name=\"{}\"{failed}>\n{}\n</tool_result>\n",
            call.name, result.text
        );
    }
    text
}

/// A turn that offered its tools as text ended: the text its scanner held
/// back is shown, and the calls it made are given to the editor as the
/// answer's tool calls (ids unique to this owner number, the next of
/// `owners`): returned with the conversation, for the session to await
/// their results.
pub(super) fn ended(
    turn: &mut super::Turn,
    ready: &mut VecDeque<String>,
    owners: &mut u64,
    link: Option<&ToolLink>,
) -> Option<(Vec<Given>, Chat)> {
    let (offer, scanner) = turn.textual.take()?;
    let (rest, calls) = scanner.finish();
    if !rest.is_empty() {
        if let Some(t) = turn.answer.as_mut() {
            t.text(&rest);
        }
        ready.push_back(turn.stream.text(&turn.invoke, &rest));
    }
    if calls.is_empty() {
        return None;
    }
    let owner = RunId(*owners);
    *owners += 1;
    let seed = link.map(|l| l.seed).unwrap_or_default();
    let given: Vec<Given> = calls
        .into_iter()
        .enumerate()
        .map(|(n, (name, arguments))| Given {
            id: link::call_id(&seed, owner, n as u64),
            name,
            arguments,
        })
        .collect();
    ready.push_back(turn.stream.calls(&turn.invoke, &given));
    // The conversation now holds calls an editor writes its own way: it
    // is continued by their results, not remembered by its text.
    turn.answer = None;
    Some((given, offer.chat))
}

/// An answer's text as it streams: what to show, and the calls it makes.
#[derive(Default)]
pub struct Scanner {
    /// Text not shown yet: the start of what may be a block's opening.
    held: String,
    /// Inside a block: its text so far.
    block: Option<String>,
    calls: Vec<(String, Value)>,
}

impl Scanner {
    /// Takes the next piece of the answer: the text to show now.
    pub fn push(&mut self, offer: &Offer, piece: &str) -> String {
        self.held.push_str(piece);
        let mut shown = String::new();
        loop {
            match self.block.as_mut() {
                None => match self.held.find(OPEN) {
                    Some(at) => {
                        shown.push_str(&self.held[..at]);
                        self.held.drain(..at + OPEN.len());
                        self.block = Some(String::new());
                    }
                    None => {
                        // Keep back what may begin an opening tag.
                        let keep = partial_suffix(&self.held, OPEN);
                        let cut = self.held.len() - keep;
                        shown.push_str(&self.held[..cut]);
                        self.held.drain(..cut);
                        return shown;
                    }
                },
                Some(block) => match self.held.find(CLOSE) {
                    Some(at) => {
                        block.push_str(&self.held[..at]);
                        self.held.drain(..at + CLOSE.len());
                        let block = self.block.take().unwrap_or_default();
                        // Not a call of an offered tool, or one past the
                        // most one answer gives the editor: it stays text.
                        match parse_call(offer, &block) {
                            Some(call) if self.calls.len() < MAX_CALLS => self.calls.push(call),
                            _ => shown.push_str(&format!("{OPEN}{block}{CLOSE}")),
                        }
                    }
                    None => {
                        let keep = partial_suffix(&self.held, CLOSE);
                        let cut = self.held.len() - keep;
                        block.push_str(&self.held[..cut]);
                        self.held.drain(..cut);
                        if block.len() > MAX_CALL {
                            shown.push_str(OPEN);
                            shown.push_str(&std::mem::take(block));
                            self.block = None;
                            continue;
                        }
                        return shown;
                    }
                },
            }
        }
    }

    /// The answer ended: the text still held, and the calls it made.
    pub fn finish(self) -> (String, Vec<(String, Value)>) {
        let mut rest = String::new();
        if let Some(block) = self.block {
            rest.push_str(OPEN);
            rest.push_str(&block);
        }
        rest.push_str(&self.held);
        (rest, self.calls)
    }
}

/// The length of the longest end of `text` that begins `tag`.
fn partial_suffix(text: &str, tag: &str) -> usize {
    (1..tag.len())
        .rev()
        .find(|&n| {
            text.len() >= n
                && text.is_char_boundary(text.len() - n)
                && tag.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

/// A block's call: an offered tool's name and its arguments (an object).
fn parse_call(offer: &Offer, block: &str) -> Option<(String, Value)> {
    let call: Value = serde_json::from_str(block.trim()).ok()?;
    let name = call["name"].as_str().filter(|n| offer.has(n))?;
    let arguments = match &call["arguments"] {
        Value::Object(_) => call["arguments"].clone(),
        Value::Null => json!({}),
        _ => return None,
    };
    Some((name.to_owned(), arguments))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> Offer {
        let payload = json!({"kind": "chat", "messages": [{"role": "user", "content": "hi"}],
            "parameters": {"tools": [{"type": "function", "function": {"name": "weather",
                "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]}});
        Offer::of(&payload).unwrap_or_else(|| panic!("an offer"))
    }

    #[test]
    fn calls_are_taken_from_the_text_however_it_is_split() {
        let answer = "Let me look.\n<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>\n<tool_call>{\"name\":\"weather\",\"arguments\":{\"city\":\"Oslo\"}}</tool_call>";
        for size in [1, 2, 3, 7, 11, answer.len()] {
            let offer = offer();
            let mut scanner = Scanner::default();
            let mut shown = String::new();
            let chars: Vec<char> = answer.chars().collect();
            for piece in chars.chunks(size) {
                shown += &scanner.push(&offer, &piece.iter().collect::<String>());
            }
            let (rest, calls) = scanner.finish();
            assert_eq!(shown + &rest, "Let me look.\n\n", "split by {size}");
            assert_eq!(
                calls,
                [
                    ("weather".to_owned(), json!({"city": "Paris"})),
                    ("weather".to_owned(), json!({"city": "Oslo"}))
                ]
            );
        }
    }

    #[test]
    fn what_is_not_a_call_of_an_offered_tool_stays_text() {
        let offer = offer();
        let mut scanner = Scanner::default();
        let mut shown = scanner.push(
            &offer,
            "a < b <tool_call>{\"name\": \"rm\"}</tool_call> c <tool_",
        );
        shown += &scanner.push(&offer, "call>not json</tool_call> <tool_c");
        let (rest, calls) = scanner.finish();
        assert_eq!(
            shown + &rest,
            "a < b <tool_call>{\"name\": \"rm\"}</tool_call> c <tool_call>not json</tool_call> <tool_c"
        );
        assert!(calls.is_empty());
        let mut open = Scanner::default();
        let shown = open.push(&offer, "<tool_call>{\"name\": \"weather\"");
        assert_eq!(shown, "");
        assert_eq!(open.finish().0, "<tool_call>{\"name\": \"weather\"");
    }

    proptest::proptest! {
        /// Whatever the answer and however it is split, nothing is lost:
        /// the text shown and held, with the calls taken written back as
        /// their blocks, is the answer.
        #[test]
        fn no_text_is_lost(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    "[a-z <>/_]{0,12}",
                    proptest::strategy::Just("<tool_call>".to_owned()),
                    proptest::strategy::Just("</tool_call>".to_owned()),
                    proptest::strategy::Just(r#"{"name": "weather", "arguments": {"city": "Oslo"}}"#.to_owned()),
                ],
                0..12,
            ),
            cut in 1usize..9,
        ) {
            let answer: String = parts.concat();
            let offer = offer();
            let mut scanner = Scanner::default();
            let mut shown = String::new();
            let chars: Vec<char> = answer.chars().collect();
            for piece in chars.chunks(cut) {
                shown += &scanner.push(&offer, &piece.iter().collect::<String>());
            }
            let (rest, calls) = scanner.finish();
            shown += &rest;
            let calls_written: usize = calls.len() * (OPEN.len() + CLOSE.len());
            proptest::prop_assert!(shown.len() + calls_written <= answer.len());
            proptest::prop_assert_eq!(calls.is_empty(), shown == answer);
            for (name, arguments) in &calls {
                proptest::prop_assert_eq!(name, "weather");
                proptest::prop_assert_eq!(arguments, &json!({"city": "Oslo"}));
            }
        }
    }

    #[test]
    fn calls_past_the_most_one_answer_gives_are_shown_as_text() {
        let offer = offer();
        let mut scanner = Scanner::default();
        let call = r#"<tool_call>{"name": "weather", "arguments": {"city": "Oslo"}}</tool_call>"#;
        let shown = scanner.push(&offer, &call.repeat(MAX_CALLS + 2));
        assert_eq!(shown, call.repeat(2));
        assert_eq!(scanner.finish().1.len(), MAX_CALLS);
    }

    #[test]
    fn a_block_past_its_bound_is_shown_as_text() {
        let offer = offer();
        let mut scanner = Scanner::default();
        let big = "x".repeat(MAX_CALL + 1);
        let shown = scanner.push(&offer, &format!("<tool_call>{big}"));
        assert_eq!(shown.len(), OPEN.len() + big.len());
        assert!(scanner.finish().1.is_empty());
    }

    #[test]
    fn the_prompt_lists_the_tools_and_the_results_name_their_calls() {
        let text = tools_text(&offer());
        assert!(text.contains("- weather: The weather in a city"), "{text}");
        assert!(text.contains("\"city\""));
        let given = [Given {
            id: "c1".into(),
            name: "weather".into(),
            arguments: json!({"city": "Paris"}),
        }];
        let results = [ToolResult {
            id: Some("c1".into()),
            text: "Sunny".into(),
            is_error: false,
        }];
        assert_eq!(
            results_text(&given, &results),
            "The results of your tool calls:\n\n<tool_result name=\"weather\">\nSunny\n</tool_result>\n"
        );
    }
}
