//! A connection's mailbox: the provider's outputs for it, queued in order,
//! and a bell that wakes the task or thread that carries them out.
//!
//! Posting and ringing are separate so that a burst of outputs wakes each
//! writer once: an agent link that reads a batch of frames posts the chunks
//! of many streams and rings every mailbox it posted to once, after the
//! batch ([`Bells`]). Each writer then finds a run of chunks and writes them
//! with one system call, instead of waking, and writing, per chunk.
//!
//! The queue is unbounded as a queue and bounded in bytes: the switchboard
//! counts what waits in it and the provider stops producing past its caps.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mcp_provider_core::Output;

/// A runtime's way to wake one connection's task or thread.
pub trait Bell: Clone + Send + Sync + 'static {
    /// What the connection's task or thread waits on; it sees the bell
    /// closed once every ringing end is gone.
    type Waiter: Send + 'static;

    fn pair() -> (Self, Self::Waiter);

    /// Wakes the waiter; rings before it wakes count once.
    fn ring(&self);
}

struct Queue {
    items: Mutex<VecDeque<Output>>,
    /// Posted to and not rung yet: in some [`Bells`] already.
    unrung: AtomicBool,
}

impl Queue {
    fn items(&self) -> std::sync::MutexGuard<'_, VecDeque<Output>> {
        // Pushing or swapping cannot panic halfway: the queue stays whole.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The hub's end of a connection's mailbox.
pub struct Mailbox<B> {
    queue: Arc<Queue>,
    bell: B,
}

/// The connection's end: wait on [`Inbox::waiter`], then [`Inbox::take`].
pub struct Inbox<B: Bell> {
    queue: Taker,
    waiter: B::Waiter,
}

/// Takes a connection's outputs without waiting for them: a second handle
/// on the queue for a runtime that may carry them out on another thread
/// than the one that waits.
#[derive(Clone)]
pub struct Taker(Arc<Queue>);

impl<B: Bell> Mailbox<B> {
    pub fn pair() -> (Mailbox<B>, Inbox<B>) {
        let queue = Arc::new(Queue {
            items: Mutex::new(VecDeque::new()),
            unrung: AtomicBool::new(false),
        });
        let (bell, waiter) = B::pair();
        let inbox = Inbox {
            queue: Taker(queue.clone()),
            waiter,
        };
        (Mailbox { queue, bell }, inbox)
    }

    /// Queues `output`; `bells` rings this mailbox later.
    pub fn post(&self, output: Output, bells: &mut Bells<B>) {
        self.queue.items().push_back(output);
        if !self.queue.unrung.swap(true, Ordering::AcqRel) {
            bells.add(self.queue.clone(), self.bell.clone());
        }
    }
}

impl<B: Bell> Inbox<B> {
    /// What to wait on for more outputs.
    pub fn waiter(&self) -> &B::Waiter {
        &self.waiter
    }

    /// Moves every output queued so far, in order, into `into`.
    pub fn take(&self, into: &mut VecDeque<Output>) {
        self.queue.take(into);
    }

    /// Another handle to take this mailbox's outputs.
    pub fn taker(&self) -> Taker {
        self.queue.clone()
    }
}

impl Taker {
    /// Moves every output queued so far, in order, into `into` (which the
    /// caller empties between calls, so both buffers keep their capacity).
    pub fn take(&self, into: &mut VecDeque<Output>) {
        let mut items = self.0.items();
        if into.is_empty() {
            std::mem::swap(&mut *items, into);
        } else {
            into.append(&mut items);
        }
    }
}

/// Mailboxes posted to and not yet rung. Dropping it rings them, so no
/// output is left unannounced however the caller ends.
pub struct Bells<B: Bell> {
    /// The first, kept in place: most posts reach one mailbox, and a list
    /// of one would be an allocation per post.
    first: Option<(Arc<Queue>, B)>,
    /// The others, in the order they were posted to.
    rest: Vec<(Arc<Queue>, B)>,
}

impl<B: Bell> Default for Bells<B> {
    fn default() -> Self {
        Bells {
            first: None,
            rest: Vec::new(),
        }
    }
}

impl<B: Bell> Bells<B> {
    fn add(&mut self, queue: Arc<Queue>, bell: B) {
        match self.first {
            None => self.first = Some((queue, bell)),
            Some(_) => self.rest.push((queue, bell)),
        }
    }

    /// Wakes every mailbox posted to since the last ring, in the order
    /// they were posted to.
    pub fn ring(&mut self) {
        let rung = |(queue, bell): (Arc<Queue>, B)| {
            queue.unrung.store(false, Ordering::Release);
            bell.ring();
        };
        if let Some(first) = self.first.take() {
            rung(first);
        }
        self.rest.drain(..).for_each(rung);
    }

    /// Mailboxes waiting to be rung.
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

impl<B: Bell> Drop for Bells<B> {
    fn drop(&mut self) {
        self.ring();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

    use super::*;
    use mcp_provider_core::{ConnId, RequestId};

    /// A bell for tests: a channel holding one ring.
    #[derive(Clone)]
    pub(crate) struct TestBell(SyncSender<()>);

    impl Bell for TestBell {
        type Waiter = Receiver<()>;

        fn pair() -> (Self, Receiver<()>) {
            let (tx, rx) = sync_channel(1);
            (TestBell(tx), rx)
        }

        fn ring(&self) {
            let _ = self.0.try_send(());
        }
    }

    fn end(n: u64) -> Output {
        let to = RequestId {
            conn: ConnId(n),
            seq: 0,
        };
        Output::End { to }
    }

    #[test]
    fn a_burst_rings_once_and_is_taken_in_order() {
        let (mailbox, inbox) = Mailbox::<TestBell>::pair();
        let mut bells = Bells::default();
        for n in 0..3 {
            mailbox.post(end(n), &mut bells);
        }
        assert_eq!(bells.len(), 1, "one mailbox, rung once");
        assert!(
            inbox.waiter().try_recv().is_err(),
            "not rung before the burst ends"
        );
        bells.ring();
        assert!(inbox.waiter().try_recv().is_ok());
        let mut taken = VecDeque::new();
        inbox.take(&mut taken);
        let conns: Vec<u64> = taken.iter().map(|o| o.conn().0).collect();
        assert_eq!(conns, [0, 1, 2]);
        // Posted after the ring: rung again, by a dropped `Bells` too.
        mailbox.post(end(3), &mut Bells::default());
        assert!(inbox.waiter().try_recv().is_ok());
        drop(mailbox);
        assert!(
            inbox.waiter().recv().is_err(),
            "closed once the hub's end is gone"
        );
    }

    /// Three mailboxes posted to in one burst: each is rung once, the
    /// first kept in place and the others in a list, and none again.
    #[test]
    fn every_mailbox_of_a_burst_is_rung_once() {
        let pairs: Vec<_> = (0..3).map(|_| Mailbox::<TestBell>::pair()).collect();
        let mut bells = Bells::default();
        for (n, (mailbox, _)) in pairs.iter().enumerate() {
            mailbox.post(end(n as u64), &mut bells);
            mailbox.post(end(n as u64), &mut bells);
        }
        assert_eq!(bells.len(), 3);
        bells.ring();
        assert!(bells.is_empty());
        for (_, inbox) in &pairs {
            assert!(inbox.waiter().try_recv().is_ok(), "rung");
            assert!(inbox.waiter().try_recv().is_err(), "rung once");
        }
        bells.ring();
        for (_, inbox) in &pairs {
            assert!(inbox.waiter().try_recv().is_err(), "not rung again");
        }
    }
}
