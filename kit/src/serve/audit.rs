//! The audit log file: JSON lines from the core's audit trail, appended by
//! a thread of its own and rotated by size.
//!
//! The provider's lock is never held for disk I/O: lines go through a
//! bounded channel, and when the writer falls that far behind the sender
//! leaves them in the core's own bounded queue, whose overflow is counted
//! (`mcp_provider_audit_dropped_total`).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

/// Lines on their way to the writer at most.
const CHANNEL: usize = 1024;

/// Rotated files kept beside the live one (`audit.jsonl.1` … `.3`).
const KEEP: usize = 3;

/// Where the provider's audit lines go: a handle on the writer thread.
pub struct AuditSink {
    lines: SyncSender<String>,
}

impl AuditSink {
    /// Opens (or creates) `path` for appending, and starts its writer.
    /// Rotates when the file passes `max_bytes`.
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<AuditSink> {
        let file = open_append(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let (tx, rx) = sync_channel(CHANNEL);
        let writer = Writer {
            path: path.to_owned(),
            out: BufWriter::new(file),
            size,
            max_bytes: max_bytes.max(1),
        };
        std::thread::Builder::new()
            .name("audit-log".to_owned())
            .spawn(move || writer.run(rx))?;
        Ok(AuditSink { lines: tx })
    }

    /// Hands a line to the writer; false when it is too far behind (or
    /// gone) and the line must wait.
    pub fn offer(&self, line: String) -> bool {
        match self.lines.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        // Requests and sessions are nobody else's business.
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    max_bytes: u64,
}

impl Writer {
    /// Writes lines as they come, flushing whenever none is waiting, until
    /// the provider is gone.
    fn run(mut self, lines: Receiver<String>) {
        while let Ok(line) = lines.recv() {
            self.write(&line);
            while let Ok(line) = lines.try_recv() {
                self.write(&line);
            }
            if let Err(e) = self.out.flush() {
                tracing::warn!("audit log {}: {e}", self.path.display());
            }
        }
    }

    fn write(&mut self, line: &str) {
        if self.size > 0 && self.size + line.len() as u64 + 1 > self.max_bytes {
            if let Err(e) = self.rotate() {
                tracing::warn!("audit log {}: cannot rotate: {e}", self.path.display());
            }
        }
        match writeln!(self.out, "{line}") {
            Ok(()) => self.size += line.len() as u64 + 1,
            Err(e) => tracing::warn!("audit log {}: {e}", self.path.display()),
        }
    }

    /// `audit.jsonl` becomes `audit.jsonl.1`, older ones move up, the
    /// oldest beyond [`KEEP`] is dropped; a fresh file is started.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let numbered = |n: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        for n in (1..KEEP).rev() {
            let from = numbered(n);
            if from.exists() {
                std::fs::rename(&from, numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.out = BufWriter::new(open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_lines_and_rotates_by_size() {
        let dir = std::env::temp_dir().join(format!("audit-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let sink = AuditSink::open(&path, 100).unwrap();
        for i in 0..12 {
            let line = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(20));
            while !sink.offer(line.clone()) {
                std::thread::yield_now();
            }
        }
        drop(sink);
        // The writer ends once the sender is gone and everything is out.
        let mut seen = Vec::new();
        for _ in 0..200 {
            seen = [".3", ".2", ".1", ""]
                .iter()
                .filter_map(|suffix| {
                    let mut name = path.clone().into_os_string();
                    name.push(suffix);
                    std::fs::read_to_string(PathBuf::from(name)).ok()
                })
                .flat_map(|text| text.lines().map(str::to_owned).collect::<Vec<_>>())
                .collect();
            if seen.len() >= 8 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Each file holds at most 100 bytes (two 34-byte lines); the live
        // file and three rotated ones keep the last eight lines.
        let numbers: Vec<String> = seen
            .iter()
            .map(|l| l.split(',').next().unwrap().to_owned())
            .collect();
        assert!(numbers.last().unwrap().ends_with(":11"), "{numbers:?}");
        for file in std::fs::read_dir(&dir).unwrap() {
            assert!(file.unwrap().metadata().unwrap().len() <= 100);
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
