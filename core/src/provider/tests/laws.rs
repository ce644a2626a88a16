//! Property laws of the whole provider, on the virtual-clock harness: chunk
//! order and duplication never change the bytes, stream encodings decode
//! back exactly, how an answer is split into chunks never changes its
//! text, and no sequence of session events leaves a request
//! waiting forever.

use proptest::prelude::*;

use super::*;
use crate::simulation::{editors_left_waiting, Op};

/// A stream's deltas, an order to send them in, and which to send twice.
fn shuffled_deltas() -> impl Strategy<Value = (Vec<String>, Vec<usize>, Vec<bool>)> {
    (1..8usize).prop_flat_map(|n| {
        (
            prop::collection::vec(any::<String>(), n),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            prop::collection::vec(any::<bool>(), n),
        )
    })
}

/// Streams `deltas` to one editor (OpenAI SSE or Ollama NDJSON), sending
/// chunk `order[k]` k-th, and again (with other text) where `dup` says.
/// Returns the editor's bytes and whether the agent was told to cancel.
fn stream(
    deltas: &[String],
    order: &[usize],
    dup: &[bool],
    ollama: bool,
    max_held: usize,
) -> (Vec<u8>, bool) {
    let mut t = Pair::new(|c| c.max_held_chunks = max_held);
    t.connect_agent(AGENT, register(3600));
    let path = if ollama {
        "/api/chat"
    } else {
        "/v1/chat/completions"
    };
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    t.request(EDITOR, "POST", path, &[], body);
    let id = t.last_invoke_id(AGENT);
    for &i in order {
        let finish = (i == deltas.len() - 1).then_some("stop");
        t.agent(AGENT, chunk(&id, i as u64, &deltas[i], finish));
        if dup[i] {
            t.agent(AGENT, chunk(&id, i as u64, "DUPLICATE", finish));
        }
    }
    let (status, body, ended) = t.editor(EDITOR);
    assert_eq!(status, Some(200));
    assert!(ended, "the stream ended");
    let cancelled = t.agent_frames(AGENT).iter().any(|f| f["type"] == "cancel");
    (body, cancelled)
}

/// A reference SSE decoder (WHATWG event-stream rules for `data:` lines
/// and `:` comments): the JSON events, up to `[DONE]`.
fn decode_sse(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).expect("SSE is UTF-8");
    let mut events = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.is_empty()) {
        let data: Vec<&str> = block
            .lines()
            .filter(|line| !line.starts_with(':'))
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() {
            continue;
        }
        let data = data.join("\n");
        if data == "[DONE]" {
            break;
        }
        events.push(serde_json::from_str(&data).expect("each event is JSON"));
    }
    events
}

/// A reference NDJSON decoder: one JSON value per `\n`-terminated line.
fn decode_ndjson(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).expect("NDJSON is UTF-8");
    assert!(text.ends_with('\n'), "every line is terminated");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

fn text_of_events(body: &[u8], ollama: bool) -> String {
    if ollama {
        decode_ndjson(body)
            .iter()
            .map(|e| {
                e["message"]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    } else {
        decode_sse(body)
            .iter()
            .flat_map(|e| e["choices"].as_array().cloned().unwrap_or_default())
            .map(|c| {
                c["delta"]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Any order, any duplicates: the same bytes as the chunks sent once,
    /// in order.
    #[test]
    fn any_order_and_duplication_gives_identical_bytes(
        (deltas, order, dup) in shuffled_deltas(),
        ollama in any::<bool>(),
    ) {
        let in_order: Vec<usize> = (0..deltas.len()).collect();
        let (reference, _) = stream(&deltas, &in_order, &vec![false; deltas.len()], ollama, 1024);
        let (body, cancelled) = stream(&deltas, &order, &dup, ollama, 1024);
        prop_assert_eq!(body, reference);
        prop_assert!(!cancelled);
    }

    /// With room for only two early chunks, a stream either comes out
    /// identical or ends with an error event and a `cancel` to the agent.
    #[test]
    fn a_small_reorder_buffer_gives_identical_bytes_or_a_clean_gap_error(
        (deltas, order, dup) in shuffled_deltas(),
    ) {
        let in_order: Vec<usize> = (0..deltas.len()).collect();
        let (reference, _) = stream(&deltas, &in_order, &vec![false; deltas.len()], false, 2);
        let (body, cancelled) = stream(&deltas, &order, &dup, false, 2);
        if body != reference {
            prop_assert!(cancelled);
            let text = String::from_utf8(body).unwrap();
            prop_assert!(text.contains("stream broken"), "{}", text);
        }
    }

    /// Arbitrary text (any unicode, control characters, quotes, empty
    /// deltas) decodes back exactly from SSE and from NDJSON.
    #[test]
    fn stream_encodings_decode_back_to_the_exact_text(
        deltas in prop::collection::vec(any::<String>(), 1..8),
        ollama in any::<bool>(),
    ) {
        let in_order: Vec<usize> = (0..deltas.len()).collect();
        let (body, _) = stream(&deltas, &in_order, &vec![false; deltas.len()], ollama, 1024);
        prop_assert_eq!(text_of_events(&body, ollama), deltas.concat());
    }

    /// However the agent splits one answer into chunks (at any character
    /// boundaries), the editor reads the same text.
    #[test]
    fn any_split_of_an_answer_reads_the_same(
        text in any::<String>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ollama in any::<bool>(),
    ) {
        let chars: Vec<char> = text.chars().collect();
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(chars.len() + 1)).collect();
        at.push(0);
        at.push(chars.len());
        at.sort_unstable();
        let deltas: Vec<String> = at
            .windows(2)
            .map(|w| chars[w[0]..w[1]].iter().collect())
            .collect();
        let in_order: Vec<usize> = (0..deltas.len()).collect();
        let (body, _) = stream(&deltas, &in_order, &vec![false; deltas.len()], ollama, 1024);
        prop_assert_eq!(text_of_events(&body, ollama), text);
    }
}

/// Every simulator op, resumes and thefts included.
pub(super) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2u8).prop_map(Op::Connect),
        (0..2u8).prop_map(Op::Drop),
        any::<bool>().prop_map(|stream| Op::Request { stream }),
        (0..8u8).prop_map(Op::EditorGone),
        (0..2u8, 0..3u8, any::<bool>()).prop_map(|(agent, chunks, finish)| Op::Answer {
            agent,
            chunks,
            finish
        }),
        (0..2u8).prop_map(Op::Revoke),
        (0..2u8, any::<bool>()).prop_map(|(agent, right)| Op::Resume { agent, right }),
        (0..2u8, any::<bool>()).prop_map(|(victim, leaked)| Op::Steal { victim, leaked }),
        (0..5000u16).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever agents and editors do, once time runs past every timeout
    /// each request still open has been answered and ended.
    #[test]
    fn no_request_waits_forever(ops in prop::collection::vec(op(), 1..40)) {
        prop_assert_eq!(editors_left_waiting(&ops), vec![]);
    }
}
