//! The batch exporter: one thread, fed through a bounded queue, posting
//! OTLP/HTTP batches. It is the only part of tracing that does I/O, and
//! nothing waits for it: a full queue drops the span (counted), a failed
//! export drops its batch (counted) and pauses exports for a while that
//! doubles with each failure in a row, so a collector that is down costs
//! the server nothing but the spans.
//!
//! A span is queued under a mutex and the thread is not woken for it: it
//! wakes when its batch is due (every `schedule_delay`), when a whole
//! batch waits, or to close. Waking a thread per span would put a context
//! switch on every request's path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mcp_provider_core::http::Outgoing;
use mcp_provider_core::telemetry::{otlp, Span};

use super::Settings;
use crate::outbound::fetch::{fetch, FetchError};

/// The first pause after a failed export; it doubles with each failure in
/// a row, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(32);

/// The most of a collector's answer read (it is an empty or tiny
/// `ExportTraceServiceResponse`).
const MAX_ANSWER: usize = 64 * 1024;

/// The handle the drivers hold.
pub struct Exporter {
    shared: Arc<Shared>,
    /// Spans queued at most.
    max_queue: usize,
    /// Spans in a batch: the queue reaching it wakes the thread.
    max_batch: usize,
    /// Gets a message when the last flush is done.
    flushed: Mutex<Receiver<()>>,
}

/// What the handle and the thread share.
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the thread: a whole batch waits, or it is to close.
    wake: Condvar,
    dropped: AtomicU64,
}

/// Spans waiting for the thread, and whether it is to close.
#[derive(Default)]
struct Queue {
    spans: Vec<Span>,
    /// Set on shutdown, with when the last flush must be done by: send
    /// what is queued, then stop. Spans sent after it are dropped.
    closing: Option<Instant>,
}

impl Exporter {
    /// Starts the export thread.
    pub fn start(settings: Settings) -> std::io::Result<Exporter> {
        let (done_tx, done_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
        });
        let (max_queue, max_batch) = (settings.max_queue.max(1), settings.max_batch.max(1));
        let thread = Thread {
            settings,
            shared: shared.clone(),
            pending: VecDeque::new(),
            paused_until: None,
            backoff: FIRST_BACKOFF,
        };
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                thread.run();
                let _ = done_tx.send(());
            })?;
        Ok(Exporter {
            shared,
            max_queue,
            max_batch,
            flushed: Mutex::new(done_rx),
        })
    }

    /// Queues `span` for export; never waits on the export (a full queue
    /// drops it).
    pub fn send(&self, span: Span) {
        let mut queue = lock(&self.shared.queue);
        if queue.closing.is_some() || queue.spans.len() >= self.max_queue {
            drop(queue);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.spans.push(span);
        if queue.spans.len() == self.max_batch {
            self.shared.wake.notify_one();
        }
    }

    /// Spans lost so far: the queue was full, or their export failed.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Sends what is queued, waiting at most `bound`, and stops the thread.
    pub fn flush(&self, bound: Duration) {
        lock(&self.shared.queue).closing = Some(Instant::now() + bound);
        self.shared.wake.notify_one();
        let _ = lock(&self.flushed).recv_timeout(bound);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The export thread's state.
struct Thread {
    settings: Settings,
    shared: Arc<Shared>,
    /// Spans taken from the queue and not sent yet (at most `max_queue`:
    /// more wait in the queue, and past that are dropped).
    pending: VecDeque<Span>,
    /// No export before this, after a failure.
    paused_until: Option<Instant>,
    backoff: Duration,
}

impl Thread {
    fn run(mut self) {
        let mut next = Instant::now() + self.settings.schedule_delay;
        loop {
            if let Some(until) = self.take(next) {
                return self.last_flush(until);
            }
            let now = Instant::now();
            if self.paused_until.is_some_and(|until| until > now) {
                next = self.paused_until.unwrap_or(now);
                continue;
            }
            while !self.pending.is_empty() {
                if !self.export_one(Instant::now() + self.settings.timeout) {
                    break;
                }
            }
            let now = Instant::now();
            next = (self.paused_until.filter(|until| *until > now))
                .unwrap_or(now + self.settings.schedule_delay);
        }
    }

    /// Waits until `until`, or until a whole batch waits (when not paused),
    /// then takes what is queued into `pending`, as far as it has room.
    /// When the exporter is closing: when its last flush must end.
    fn take(&mut self, until: Instant) -> Option<Instant> {
        let max_batch = self.settings.max_batch.max(1);
        let mut queue = lock(&self.shared.queue);
        loop {
            if let Some(end) = queue.closing {
                self.pending.extend(queue.spans.drain(..));
                return Some(end);
            }
            let now = Instant::now();
            let paused = self.paused_until.is_some_and(|end| end > now);
            if now >= until || (!paused && queue.spans.len() >= max_batch) {
                let room = (self.settings.max_queue.max(1)).saturating_sub(self.pending.len());
                let take = room.min(queue.spans.len());
                self.pending.extend(queue.spans.drain(..take));
                return None;
            }
            queue = match self.shared.wake.wait_timeout(queue, until - now) {
                Ok((queue, _)) => queue,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// On shutdown: everything queued, sent in batches until `until` (a
    /// paused exporter tries once more).
    fn last_flush(mut self, until: Instant) {
        while !self.pending.is_empty() && Instant::now() < until {
            if !self.export_one(until) {
                break;
            }
        }
        self.drop_spans(self.pending.len());
    }

    /// Sends the oldest batch, to be done by `deadline`: whether it went.
    fn export_one(&mut self, deadline: Instant) -> bool {
        let take = self.pending.len().min(self.settings.max_batch.max(1));
        let batch: Vec<Span> = self.pending.drain(..take).collect();
        let s = &self.settings;
        let body = otlp::encode(&s.resource, &batch, s.format);
        let mut request = Outgoing::new("POST", s.url.clone()).body(s.format.content_type(), body);
        for (name, value) in &s.headers {
            request = request.header(name.clone(), value.clone());
        }
        let timeout = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let failure = match fetch(&request, MAX_ANSWER, timeout, None) {
            Ok(answer) if (200..300).contains(&answer.head.status) => None,
            Ok(answer) => Some(format!("the collector answered {}", answer.head.status)),
            Err(FetchError::Unreachable(why) | FetchError::Failed(why)) => Some(why),
        };
        match failure {
            None => {
                if self.paused_until.take().is_some() {
                    tracing::info!("traces: exporting to {} again", s.url);
                }
                self.backoff = FIRST_BACKOFF;
                true
            }
            Some(why) => {
                self.drop_spans(batch.len());
                if self.paused_until.is_none() {
                    // Once per run of failures; the headers are never told.
                    tracing::warn!("traces: {} span(s) not exported: {why}", batch.len());
                }
                self.paused_until = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                false
            }
        }
    }

    fn drop_spans(&self, count: usize) {
        self.shared
            .dropped
            .fetch_add(count as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::SystemTime;

    use mcp_provider_core::http::Url;
    use mcp_provider_core::telemetry::otlp::Resource;
    use mcp_provider_core::telemetry::{Kind, Tracer};

    use super::*;

    fn spans(count: usize) -> Vec<Span> {
        let now = Instant::now();
        let mut tracer = Tracer::new(Some(Default::default()), 7, now, SystemTime::now());
        (0..count)
            .map(|i| {
                let span = tracer.start(format!("op {i}"), Kind::Server, None, now);
                span.expect("tracing is on")
            })
            .collect()
    }

    fn settings(url: &str) -> Settings {
        let mut settings = Settings::new(Url::parse(url).unwrap(), Resource::new("svc", "1"));
        settings.headers = vec![("x-team".into(), "blue".into())];
        settings.schedule_delay = Duration::from_millis(20);
        settings
    }

    #[test]
    fn a_batch_is_posted_with_its_content_type_and_headers() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let received = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // The head and a body of spans (each names itself).
            while !String::from_utf8_lossy(&request).contains("op 2") {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&buf[..n]);
            }
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        let exporter = Exporter::start(settings(&url)).unwrap();
        for span in spans(3) {
            exporter.send(span);
        }
        let request = received.join().unwrap();
        let head = request.to_ascii_lowercase();
        assert!(head.starts_with("post /v1/traces http/1.1"), "{request}");
        assert!(
            head.contains("content-type: application/x-protobuf"),
            "{request}"
        );
        assert!(head.contains("x-team: blue"), "{request}");
        exporter.flush(Duration::from_secs(2));
        assert_eq!(exporter.dropped(), 0);
    }

    #[test]
    fn spans_whose_export_fails_are_counted_as_dropped() {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", closed.local_addr().unwrap());
        drop(closed);
        let exporter = Exporter::start(settings(&url)).unwrap();
        for span in spans(5) {
            exporter.send(span);
        }
        exporter.flush(Duration::from_secs(2));
        assert_eq!(exporter.dropped(), 5);
        // Stopped: later spans are dropped at once.
        exporter.send(spans(1).remove(0));
        assert_eq!(exporter.dropped(), 6);
    }
}
