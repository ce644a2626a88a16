//! What a multi-connection driver keeps beside the [`Provider`]: a mailbox
//! per connection, and the one timer deadline.
//!
//! A driver whose connections run on their own tasks or threads holds the
//! provider and its mailboxes under one lock. After each call into the
//! provider, [`Switchboard::with`] posts every output to the mailbox of the
//! connection it names and says whether the driver's timer must wake
//! earlier. The mailbox type is the driver's (an async channel, a
//! `std::sync::mpsc` sender…); posting to it is the one thing the driver
//! supplies.
//!
//! Each mailbox comes with a [`Backlog`]: the switchboard counts the bytes
//! it posts, the connection's writer counts the bytes it wrote, and the
//! provider hears when a connection falls behind (and, through
//! [`Provider::handle_drained`], when it caught up), so memory stays
//! bounded however slowly a peer reads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::backlog::{Backlog, Level, SLOW_CLIENT_BYTES};
use crate::idmap::IdMap;
use crate::provider::{ConnId, Output, Provider};
use crate::telemetry::Span;

pub struct Switchboard<M> {
    provider: Provider,
    mailboxes: IdMap<ConnId, (M, Backlog)>,
    /// Bytes waiting in every connection's backlog.
    total: Arc<AtomicUsize>,
    /// Connections found high while posting, for the provider to hear of.
    high: Vec<(ConnId, usize)>,
    /// The deadline the driver's timer is set for.
    armed: Option<Instant>,
    /// Takes the provider's audit lines; false leaves the rest queued.
    audit: Option<AuditSink>,
    /// Takes the provider's finished spans.
    spans: Option<SpanSink>,
}

/// Where finished spans go (an exporter's queue, which never waits).
pub type SpanSink = Box<dyn FnMut(Span) + Send>;

/// Where audit lines go: true when the line was taken.
pub type AuditSink = Box<dyn FnMut(String) -> bool + Send>;

impl<M> Switchboard<M> {
    pub fn new(provider: Provider) -> Self {
        Switchboard {
            provider,
            mailboxes: IdMap::default(),
            total: Arc::default(),
            high: Vec::new(),
            armed: None,
            audit: None,
            spans: None,
        }
    }

    /// The provider's finished spans go to `sink` from now on, each as
    /// soon as the call that finished it is done (a request's span ends
    /// with its answer's last output).
    pub fn set_spans(&mut self, sink: SpanSink) {
        self.spans = Some(sink);
    }

    /// The provider's audit lines go to `sink` from now on.
    pub fn set_audit(&mut self, sink: AuditSink) {
        self.audit = Some(sink);
    }

    /// A connection's outputs go to `mailbox` from now on. The writer
    /// reports what it wrote to the returned backlog.
    pub fn attach(&mut self, conn: ConnId, mailbox: M) -> Backlog {
        let backlog = Backlog::new(self.total.clone());
        self.mailboxes.insert(conn, (mailbox, backlog.clone()));
        backlog
    }

    /// A connection ended: the provider is told, its mailbox dropped (a
    /// task or thread waiting on it sees it close).
    pub fn detach(&mut self, conn: ConnId, now: Instant, post: impl FnMut(&M, Output)) -> bool {
        let rearm = self
            .with(now, |p, now| p.handle_conn_closed(conn, now), post)
            .1;
        if let Some((_, backlog)) = self.mailboxes.remove(&conn) {
            backlog.discard();
        }
        rearm
    }

    /// Runs `f` on the provider, then posts each output to its
    /// connection's mailbox (outputs for a connection already gone are
    /// dropped). The flag says the timer must be woken: an earlier
    /// deadline than the one it sleeps until was armed.
    pub fn with<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Provider, Instant) -> R,
        mut post: impl FnMut(&M, Output),
    ) -> (R, bool) {
        self.provider
            .handle_queued(self.total.load(Ordering::Acquire));
        let result = f(&mut self.provider, now);
        self.post_all(&mut post);
        // A backlog that went high makes the provider act (pause, cap,
        // stop routing), which may post more: a few rounds settle it, as
        // what it posts is small and a stream it fails posts nothing more.
        for _ in 0..4 {
            if self.high.is_empty() {
                break;
            }
            self.provider
                .handle_queued(self.total.load(Ordering::Acquire));
            for (conn, bytes) in std::mem::take(&mut self.high) {
                self.provider.handle_backlog(conn, bytes);
            }
            self.post_all(&mut post);
        }
        self.high.clear();
        if let Some(sink) = self.audit.as_mut() {
            while let Some(line) = self.provider.peek_audit() {
                if !sink(line.to_owned()) {
                    break;
                }
                self.provider.poll_audit();
            }
        }
        if let Some(sink) = self.spans.as_mut() {
            while let Some(span) = self.provider.poll_span() {
                sink(span);
            }
        }
        let next = self.provider.poll_timeout();
        let rearm = next.is_some() && (self.armed.is_none() || next < self.armed);
        if rearm {
            self.armed = next;
        }
        (result, rearm)
    }

    fn post_all(&mut self, post: &mut impl FnMut(&M, Output)) {
        while let Some(output) = self.provider.poll_output() {
            let conn = output.conn();
            if let Some((mailbox, backlog)) = self.mailboxes.get(&conn) {
                if let Level::High(bytes) = backlog.posted(output.backlog_bytes()) {
                    self.high.push((conn, bytes));
                }
                post(mailbox, output);
            }
        }
    }

    /// Posts an output made outside the provider (an answer of the MCP
    /// bridge) to its connection's mailbox, if the connection is open.
    /// Whether its reader is too slow and must be cut: more than
    /// [`SLOW_CLIENT_BYTES`] wait for it, or more than
    /// [`crate::backlog::PAUSE_AT`] while all connections together have
    /// more than `max_queued_bytes` waiting, the caps the provider's own
    /// editors are held to. A bridge client cannot be paused (its server
    /// sends what it sends), so past them it is cut, never the server's
    /// memory.
    pub fn post(&mut self, output: Output, mut post: impl FnMut(&M, Output)) -> bool {
        let Some((mailbox, backlog)) = self.mailboxes.get(&output.conn()) else {
            return false;
        };
        let level = backlog.posted(output.backlog_bytes());
        post(mailbox, output);
        match level {
            Level::High(bytes) => {
                bytes > SLOW_CLIENT_BYTES
                    || self.total.load(Ordering::Acquire) > self.provider.max_queued_bytes()
            }
            Level::Normal => false,
        }
    }

    /// Bytes posted to all connections and not yet written.
    pub fn queued(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// The deadline the timer should sleep until.
    pub fn armed(&self) -> Option<Instant> {
        self.armed
    }

    /// The timer fired: the next `with` arms it afresh.
    pub fn disarm(&mut self) {
        self.armed = None;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::Config;

    #[test]
    fn posts_outputs_to_their_connection_and_arms_the_earliest_deadline() {
        let t0 = Instant::now();
        let mut config = Config::new(&["k"], "t");
        config.agent_ping_interval = Duration::from_secs(10);
        let mut board = Switchboard::new(Provider::new(config, t0, SystemTime::now()));
        let posted = RefCell::new(Vec::new());
        let post = |m: &&'static str, o: Output| posted.borrow_mut().push((*m, o.conn()));
        board.attach(ConnId(1), "agent");
        board.attach(ConnId(2), "gone");
        let ((), rearm) = board.with(t0, |p, _| p.open_agent(ConnId(1), "agent"), post);
        assert!(rearm, "an agent link arms the ping timer");
        assert_eq!(board.armed(), Some(t0 + Duration::from_secs(10)));
        assert!(
            !board.with(t0, |_, _| (), post).1,
            "the same deadline is not re-armed"
        );
        board.disarm();
        let at = t0 + Duration::from_secs(10);
        assert!(board.with(at, |p, now| p.handle_timeout(now), post).1);
        assert_eq!(posted.borrow().as_slice(), [("agent", ConnId(1))]);
        board.detach(ConnId(1), at, post);
        assert!(!board.with(at, |p, now| p.handle_timeout(now), post).1);
        assert_eq!(board.armed(), Some(at + Duration::from_secs(10)));
    }
}
