//! A plain command: whatever it prints on stdout is the answer, as it
//! comes. Success is exit status 0.

use super::output::{Event, OutputFormat};

/// Decodes stdout as UTF-8 across reads (a character split between two
/// reads waits for its rest; invalid bytes become U+FFFD).
#[derive(Default)]
pub struct Plain {
    partial: Vec<u8>,
}

impl OutputFormat for Plain {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        self.partial.extend_from_slice(bytes);
        let complete = match std::str::from_utf8(&self.partial) {
            Ok(_) => self.partial.len(),
            // Bytes that may still become a character stay for the next read.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.partial.len(),
        };
        let rest = self.partial.split_off(complete);
        let text = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial = rest;
        if !text.is_empty() {
            out.push(Event::Text(text));
        }
    }

    fn end(&mut self, out: &mut Vec<Event>) {
        if !self.partial.is_empty() {
            out.push(Event::Text(
                String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned(),
            ));
        }
    }

    fn needs_result(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_across_reads_is_kept_whole() {
        let mut plain = Plain::default();
        let mut out = Vec::new();
        let bytes = "héllo".as_bytes();
        plain.feed(&bytes[..2], &mut out);
        plain.feed(&bytes[2..], &mut out);
        plain.feed(b"\xff!", &mut out);
        plain.feed(b"\xc3", &mut out);
        plain.end(&mut out);
        let text: String = out
            .iter()
            .map(|e| match e {
                Event::Text(t) => t.as_str(),
                _ => "",
            })
            .collect();
        assert_eq!(text, "héllo\u{fffd}!\u{fffd}");
    }
}
