//! What each chunk carries so the editor end can check it on arrival: the
//! stream it belongs to, its index, and when the agent end sent it, as the
//! chunk's text `stream:index:sent_ns`.

use std::fmt::Write;
use std::time::Instant;

/// Nanoseconds since the run began, shared by both ends of the run.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Self {
        Clock(Instant::now())
    }

    pub fn ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// Writes the agent frame for chunk `index` of `stream` into `out`; the
/// last chunk of a stream carries `finish_reason: "stop"`.
pub fn chunk_frame(out: &mut String, id: &str, stream: u32, index: u32, last: bool, sent_ns: u64) {
    out.clear();
    let finish = if last { r#""stop""# } else { "null" };
    let _ = write!(
        out,
        r#"{{"type":"model_stream_chunk","id":"{id}","chunk_index":{index},"delta":{{"content":"{stream}:{index}:{sent_ns}"}},"finish_reason":{finish}}}"#
    );
}

/// The (stream, index, sent_ns) a chunk's text carries.
pub fn parse(content: &str) -> Option<(u32, u32, u64)> {
    let mut parts = content.splitn(3, ':');
    let stream = parts.next()?.parse().ok()?;
    let index = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    Some((stream, index, sent))
}

/// One editor's account of its stream: which chunks came, in what order,
/// and how long each took from the agent end's send to this end's read.
pub struct Check {
    stream: u32,
    expected: u32,
    next: u32,
    seen: Vec<bool>,
    pub distinct: u32,
    pub reordered: u32,
    pub misrouted: u32,
    pub latencies_ns: Vec<u64>,
    pub first_read_ns: Option<u64>,
    pub last_read_ns: u64,
}

impl Check {
    pub fn new(stream: u32, expected: u32) -> Self {
        Check {
            stream,
            expected,
            next: 0,
            seen: vec![false; expected as usize],
            distinct: 0,
            reordered: 0,
            misrouted: 0,
            latencies_ns: Vec::with_capacity(expected as usize),
            first_read_ns: None,
            last_read_ns: 0,
        }
    }

    /// Records one chunk's text read at `read_ns`; returns its index when
    /// it was this stream's and new.
    pub fn on_content(&mut self, content: &str, read_ns: u64) -> Option<u32> {
        let Some((stream, index, sent)) = parse(content) else {
            self.misrouted += 1;
            return None;
        };
        if stream != self.stream || index >= self.expected {
            self.misrouted += 1;
            return None;
        }
        if index != self.next {
            self.reordered += 1;
        }
        self.next = self.next.max(index + 1);
        let seen = &mut self.seen[index as usize];
        if *seen {
            return None;
        }
        *seen = true;
        self.distinct += 1;
        self.first_read_ns.get_or_insert(read_ns);
        self.last_read_ns = read_ns;
        self.latencies_ns.push(read_ns.saturating_sub(sent));
        Some(index)
    }

    pub fn stream(&self) -> u32 {
        self.stream
    }

    pub fn complete(&self) -> bool {
        self.distinct == self.expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_text_round_trips_and_checks_order() {
        let mut frame = String::new();
        chunk_frame(&mut frame, "inv-1", 7, 2, true, 12345);
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["finish_reason"], "stop");
        let content = v["delta"]["content"].as_str().unwrap();
        assert_eq!(parse(content), Some((7, 2, 12345)));

        let mut check = Check::new(7, 3);
        assert_eq!(check.on_content("7:1:10", 20), Some(1));
        assert_eq!(check.on_content("7:0:10", 30), Some(0));
        assert_eq!(check.on_content("7:0:10", 30), None);
        assert_eq!(check.on_content("8:2:10", 30), None);
        assert_eq!(
            (check.reordered, check.misrouted, check.distinct),
            (3, 1, 2)
        );
        assert!(!check.complete());
        assert_eq!(check.on_content("7:2:10", 40), Some(2));
        assert!(check.complete());
        assert_eq!(check.latencies_ns, [10, 20, 30]);
    }
}
