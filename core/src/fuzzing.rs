//! Fuzz target bodies, compiled only with `--cfg fuzzing` (cargo fuzz sets
//! it). Each checks a property, not just the absence of a panic, where one
//! exists.

use std::time::{Instant, SystemTime};

use crate::api::{ollama, openai, RequestLimits};
use crate::http::{Limits, RequestReader};
use crate::{Config, ConnId, Provider};

/// Any split of the same bytes yields the same requests (or the same error).
pub fn http_request(data: &[u8]) {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_head: 4096,
        max_body: 4096,
    };
    let read = |pieces: &[&[u8]]| {
        let mut reader = RequestReader::new(limits);
        let mut out = Vec::new();
        for piece in pieces {
            reader.handle_data(piece);
            loop {
                match reader.next_request() {
                    Ok(Some(r)) => out.push(Ok(r)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e.status()));
                        return out;
                    }
                }
            }
        }
        out
    };
    let at = usize::from(split).min(input.len());
    let whole = read(&[input]);
    let halves = read(&[&input[..at], &input[at..]]);
    assert_eq!(whole, halves);
}

/// Agent frames of any content never break the provider.
pub fn agent_messages(data: &[u8]) {
    let now = Instant::now();
    let mut p = Provider::new(Config::new(&["k"], "t"), now, SystemTime::UNIX_EPOCH);
    p.open_agent(ConnId(1));
    for frame in data.split(|&b| b == b'\n') {
        if let Ok(text) = std::str::from_utf8(frame) {
            p.handle_agent_text(ConnId(1), text, now);
        }
        while p.poll_output().is_some() {}
    }
}

/// OpenAI request bodies: parsed or rejected with a 4xx, never a panic.
pub fn openai_body(data: &[u8]) {
    let limits = RequestLimits::default();
    for result in [
        openai::parse_chat(data, &limits),
        openai::parse_completion(data, &limits),
        openai::parse_embeddings(data),
    ] {
        assert_client_error(result);
    }
}

/// Ollama request bodies: parsed or rejected with a 4xx, never a panic.
pub fn ollama_body(data: &[u8]) {
    let limits = RequestLimits::default();
    for result in [
        ollama::parse_chat(data, &limits),
        ollama::parse_generate(data, &limits),
        ollama::parse_embed(data),
    ] {
        assert_client_error(result);
    }
    assert_client_error(ollama::parse_show(data));
}

/// A refused body is the client's fault: a 4xx, never anything else.
fn assert_client_error<T>(result: Result<T, crate::ApiError>) {
    if let Err(e) = result {
        assert!((400..500).contains(&e.status), "{e}");
    }
}

/// Reassembly under any pushes (a byte is an index) and pops (0xFF):
/// chunks come out once each, in index order from 0; a duplicate is only
/// ever a chunk seen before; an overflow only refuses a new, early chunk.
pub fn reassembly(data: &[u8]) {
    use crate::reassembly::{Pushed, Reassembler};
    let max_held = 4;
    let mut r = Reassembler::new(max_held);
    let mut seen = std::collections::BTreeSet::new();
    let mut expected_next = 0u64;
    for &byte in data {
        if byte == 0xFF {
            if let Some(index) = r.pop() {
                assert_eq!(index, expected_next);
                expected_next += 1;
            }
            continue;
        }
        let index = u64::from(byte % 16);
        match r.push(index, index) {
            Ok(Pushed::Duplicate) => assert!(seen.contains(&index)),
            Ok(_) => assert!(seen.insert(index)),
            Err(_) => assert!(!seen.contains(&index) && index > expected_next),
        }
        while let Some(index) = r.pop() {
            assert_eq!(index, expected_next);
            expected_next += 1;
        }
    }
}

/// Any sequence of session events leaves no request waiting forever.
pub fn sessions(data: &[u8]) {
    let ops = crate::simulation::Op::decode(data);
    let waiting = crate::simulation::editors_left_waiting(&ops);
    assert!(waiting.is_empty(), "{waiting:?} left waiting after {ops:?}");
}
