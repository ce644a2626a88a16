//! The invocations in flight: each model request sent to an agent, the
//! editor connection it answers, its pieces in order, and its wake-ups
//! (deadline or keep-alive).

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;

use super::content::Answer;
use super::tool_spans::{note_calls, Called};
use super::{ConnId, Output, RequestId};
use crate::agent::message::{to_agent, Delta, Usage};
use crate::answer::{Overflow, Tally};
use crate::config::Config;
use crate::idmap::IdMap;
use crate::reassembly::{Pushed, Reassembler, ReassemblyError};
use crate::stream::{AnswerEvent, Piece as PieceOut};
use crate::telemetry::Span;
use crate::time::later;

/// One piece of an answer: borrowed from its frame when it is written at
/// once, owned while it waits for an earlier one.
#[derive(Debug)]
pub(super) struct Piece<'a> {
    pub(super) delta: Delta<'a>,
    pub(super) finish: Option<Cow<'a, str>>,
    pub(super) usage: Option<Usage>,
}

impl Piece<'_> {
    fn into_owned(self) -> Piece<'static> {
        Piece {
            delta: self.delta.into_owned(),
            finish: self.finish.map(|f| Cow::Owned(f.into_owned())),
            usage: self.usage,
        }
    }
}

/// The provider's side of an answer: where its pieces come from and go,
/// their order, deadlines and count. The editor's connection writes them
/// ([`crate::stream::Answering`]).
pub(super) struct Invocation {
    /// The request it answers (for a kept answer, its job: see `kept.rs`).
    pub(super) editor: RequestId,
    /// The answer's id (`chatcmpl-…`, `resp_…`, …): what
    /// `GET|DELETE /completions/{id}` find it by.
    pub(super) id: String,
    pub(super) model: String,
    /// Unix seconds.
    pub(super) created: u64,
    /// The agent link answering it.
    pub(super) agent: ConnId,
    /// The session serving it.
    pub(super) session: String,
    /// Streamed (else answered whole at the end).
    pub(super) stream: bool,
    pub(super) embedding: bool,
    /// The answer's size and usage, counted as the editor side counts it.
    pub(super) tally: Tally,
    /// Rate-limit bucket to charge used tokens to: the API key that asked.
    pub(super) key: Option<usize>,
    /// Its `invoke_agent` span, when tracing is on (see `trace.rs`).
    pub(super) span: Option<Span>,
    /// The tool calls its answer makes so far, noted while it has a span.
    pub(super) called: Vec<Called>,
    /// Its answer's content so far, while the tracer captures content.
    pub(super) answer: Option<Answer>,
    /// How far the answer got ([`Invocations::progress`]).
    pub(super) progress: Progress,
}

/// Where an answer stands: its pieces waiting for earlier ones, its
/// deadlines, whether it is paused, how many pieces went out.
pub(super) struct Progress {
    pieces: Reassembler<Piece<'static>>,
    /// Stream idle deadline, or total deadline of a whole answer.
    deadline: Instant,
    /// Next keep-alive, for streams whose API has one.
    keepalive_at: Option<Instant>,
    /// The agent was asked to pause this answer (its editor fell behind).
    paused: bool,
    /// Pieces of the answer relayed so far.
    chunks: u64,
}

/// Why a piece that arrived does not go out now.
pub(super) enum Unrelayed {
    /// An embedding is answered whole, never in pieces.
    Embedding,
    /// Held until the pieces before it arrive.
    Held,
    /// It came before.
    Duplicate,
    Broken(ReassemblyError),
}

impl Invocation {
    /// What the dashboard shows of an answer in flight: its editor, session,
    /// whether it streams, and the pieces relayed so far.
    pub(super) fn view(&self) -> (ConnId, &str, bool, u64) {
        (
            self.editor.conn,
            &self.session,
            self.stream,
            self.progress.chunks,
        )
    }

    /// Completion tokens so far, as counted.
    pub(super) fn tokens(&self) -> u64 {
        self.tally.usage().completion_tokens
    }

    /// Its deadline now.
    pub(super) fn deadline(&self) -> Instant {
        self.progress.deadline
    }

    /// Piece `index` arrived: `Some` when it is next in order (to be
    /// written at once), `None` when it completed the order (the held
    /// pieces can go).
    fn arrived<'a>(
        &mut self,
        index: u64,
        piece: Piece<'a>,
    ) -> Result<Option<Piece<'a>>, Unrelayed> {
        if self.embedding {
            return Err(Unrelayed::Embedding);
        }
        let pieces = &mut self.progress.pieces;
        if pieces.pass(index) {
            return Ok(Some(piece));
        }
        match pieces.push(index, piece.into_owned()) {
            Ok(Pushed::Ready) => Ok(None),
            Ok(Pushed::Held) => Err(Unrelayed::Held),
            Ok(Pushed::Duplicate) => Err(Unrelayed::Duplicate),
            Err(e) => Err(Unrelayed::Broken(e)),
        }
    }

    /// The deltas of its answer: the tool calls among them are noted, for
    /// their `execute_tool` spans, and their content gathered when it is
    /// captured.
    pub(super) fn note(&mut self, delta: &Delta) {
        if self.span.is_some() {
            note_calls(&mut self.called, delta);
        }
        if let Some(answer) = self.answer.as_mut() {
            answer.add(delta);
        }
    }

    /// Relays `piece` to the editor: how the answer stands after it.
    fn relay(
        &mut self,
        piece: Piece<'_>,
        now: Instant,
        wall: SystemTime,
        texts: &mut BytesMut,
        out: &mut VecDeque<Output>,
    ) -> Drained {
        self.progress.chunks += 1;
        if let Err(e) = self.tally.add_delta(&piece.delta) {
            return Drained::Overflow(e);
        }
        self.note(&piece.delta);
        let event = AnswerEvent::Piece(PieceOut::new(texts, piece.delta, now, wall));
        out.push_back(Output::Answer {
            to: self.editor,
            event,
        });
        match piece.finish {
            Some(reason) => Drained::Finished(reason.into_owned(), piece.usage),
            None => Drained::More,
        }
    }

    fn next_wake(&self) -> Instant {
        let Progress {
            deadline,
            keepalive_at,
            ..
        } = self.progress;
        keepalive_at.map_or(deadline, |k| k.min(deadline))
    }
}

/// What a drain of an answer's pieces came to.
pub(super) struct Drain {
    /// The request the answer is for.
    pub(super) editor: RequestId,
    /// Whether these were the answer's first pieces.
    pub(super) first: bool,
    /// How many pieces went out (one more on an overflow: the piece that
    /// did not fit).
    pub(super) relayed: u64,
    pub(super) end: Drained,
}

/// How a drain of an answer's pieces ended.
pub(super) enum Drained {
    /// Waiting for more.
    More,
    /// A piece made the answer too large.
    Overflow(Overflow),
    /// A piece finished it, with this reason and usage.
    Finished(String, Option<Usage>),
}

/// What a wake-up of an invocation asks for.
pub(super) enum Wake {
    /// Its deadline passed (`stream`: it streams).
    Timeout {
        stream: bool,
    },
    /// Its editor is due a keep-alive.
    Keepalive(RequestId),
    Nothing,
}

/// The wire id of invocation `n`.
pub(super) fn wire_id(n: u64) -> String {
    format!("inv-{n}")
}

pub(super) fn parse_wire_id(id: &str) -> Option<u64> {
    id.strip_prefix("inv-")?.parse().ok()
}

/// The invocations in flight, by number.
pub(super) struct Invocations {
    map: IdMap<u64, Invocation>,
    /// Editor connection → the invocation answering it.
    by_conn: IdMap<ConnId, u64>,
    /// Wake-ups for invocations (deadline or keep-alive); stale entries are
    /// skipped when they come up.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    stream_idle_timeout: Duration,
    request_timeout: Duration,
    keepalive_interval: Duration,
    max_held_chunks: usize,
}

impl Invocations {
    pub(super) fn new(config: &Config) -> Self {
        Invocations {
            map: IdMap::default(),
            by_conn: IdMap::default(),
            timers: BinaryHeap::new(),
            stream_idle_timeout: config.stream_idle_timeout,
            request_timeout: config.request_timeout,
            keepalive_interval: config.keepalive_interval,
            max_held_chunks: config.max_held_chunks,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn get(&self, n: u64) -> Option<&Invocation> {
        self.map.get(&n)
    }

    pub(super) fn get_mut(&mut self, n: u64) -> Option<&mut Invocation> {
        self.map.get_mut(&n)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &Invocation)> {
        self.map.iter().map(|(n, inv)| (*n, inv))
    }

    /// Streamed answers in flight.
    pub(super) fn open_streams(&self) -> usize {
        self.map.values().filter(|inv| inv.stream).count()
    }

    /// The invocations `which` selects.
    pub(super) fn matching(&self, which: impl Fn(&Invocation) -> bool) -> Vec<u64> {
        self.map
            .iter()
            .filter(|(_, inv)| which(inv))
            .map(|(n, _)| *n)
            .collect()
    }

    /// A new answer's progress: nothing relayed, its first deadline and
    /// keep-alive (`keepalive`: its API has one) from `now`.
    pub(super) fn progress(&self, stream: bool, keepalive: bool, now: Instant) -> Progress {
        let timeout = if stream {
            self.stream_idle_timeout
        } else {
            self.request_timeout
        };
        Progress {
            pieces: Reassembler::new(self.max_held_chunks),
            deadline: later(now, timeout),
            keepalive_at: keepalive.then(|| later(now, self.keepalive_interval)),
            paused: false,
            chunks: 0,
        }
    }

    /// Invocation `n` answers the request on `conn`, from now on.
    pub(super) fn start(&mut self, n: u64, conn: ConnId, inv: Invocation) {
        self.timers.push(Reverse((inv.next_wake(), n)));
        self.map.insert(n, inv);
        self.by_conn.insert(conn, n);
    }

    /// The invocation answering `conn`.
    pub(super) fn answering(&self, conn: ConnId) -> Option<u64> {
        self.by_conn.get(&conn).copied()
    }

    /// Invocation `n` answers `conn` too (a kept answer's asker).
    pub(super) fn answers_too(&mut self, conn: ConnId, n: u64) {
        self.by_conn.insert(conn, n);
    }

    /// `conn` waits for no invocation any more: the one it waited for.
    pub(super) fn forget_conn(&mut self, conn: ConnId) -> Option<u64> {
        self.by_conn.remove(&conn)
    }

    /// `conn` waits for no invocation any more if the one it waited for
    /// has ended.
    pub(super) fn forget_ended(&mut self, conn: ConnId) {
        if let Some(n) = self.by_conn.get(&conn) {
            if !self.map.contains_key(n) {
                self.by_conn.remove(&conn);
            }
        }
    }

    /// Invocation `n` is over: it is removed, with its editor's hold on it.
    pub(super) fn remove(&mut self, n: u64) -> Option<Invocation> {
        let inv = self.map.remove(&n)?;
        self.by_conn.remove(&inv.editor.conn);
        self.prune_timers();
        Some(inv)
    }

    /// Invocation `n` is over, its editor gone already.
    pub(super) fn detach(&mut self, n: u64) -> Option<Invocation> {
        self.map.remove(&n)
    }

    /// The invocation `id` names, if it is waiting and `agent` serves it.
    pub(super) fn waiting(&self, agent: ConnId, id: &str) -> Option<u64> {
        parse_wire_id(id).filter(|n| self.map.get(n).is_some_and(|inv| inv.agent == agent))
    }

    /// Asks the agent to hold invocation `n`'s chunks: its editor fell
    /// behind.
    pub(super) fn pause(&mut self, n: u64, out: &mut VecDeque<Output>) {
        let Some(inv) = self.map.get_mut(&n) else {
            return;
        };
        if !inv.progress.paused {
            inv.progress.paused = true;
            let (conn, text) = (inv.agent, to_agent::pause(&wire_id(n)));
            out.push_back(Output::ToAgent { conn, text });
        }
    }

    /// Lets the agent go on with invocation `n`: its editor caught up.
    pub(super) fn resume(&mut self, n: u64, out: &mut VecDeque<Output>) {
        let Some(inv) = self.map.get_mut(&n) else {
            return;
        };
        if inv.progress.paused {
            inv.progress.paused = false;
            let (conn, text) = (inv.agent, to_agent::resume(&wire_id(n)));
            out.push_back(Output::ToAgent { conn, text });
        }
    }

    /// Piece `index` of invocation `n` arrived at `now` (`wall`): if it
    /// is next in order, it and every held piece it puts in order are
    /// posted to the editor and the invocation's deadlines move on.
    /// The invocation is looked up once for all of it; `None`: there is
    /// no invocation `n`.
    pub(super) fn arrive(
        &mut self,
        n: u64,
        index: u64,
        piece: Piece<'_>,
        (now, wall): (Instant, SystemTime),
        texts: &mut BytesMut,
        out: &mut VecDeque<Output>,
    ) -> Option<Result<Drain, Unrelayed>> {
        let inv = self.map.get_mut(&n)?;
        // Each piece is moved once, into the step that relays it: a piece
        // is larger than it looks (its delta's texts and calls, its finish
        // and usage), and it is copied at every move.
        let first = match inv.arrived(index, piece) {
            Ok(first) => first,
            Err(why) => return Some(Err(why)),
        };
        let before = inv.progress.chunks;
        let mut end = match first {
            Some(piece) => inv.relay(piece, now, wall, texts, out),
            None => Drained::More,
        };
        while matches!(end, Drained::More) {
            let Some(piece) = inv.progress.pieces.pop() else {
                break;
            };
            end = inv.relay(piece, now, wall, texts, out);
        }
        if inv.stream {
            inv.progress.deadline = later(now, self.stream_idle_timeout);
        }
        if let Some(k) = inv.progress.keepalive_at.as_mut() {
            *k = later(now, self.keepalive_interval);
        }
        Some(Ok(Drain {
            editor: inv.editor,
            first: before == 0,
            relayed: inv.progress.chunks - before,
            end,
        }))
    }

    /// The next invocation whose wake-up is due by `now`.
    pub(super) fn due(&mut self, now: Instant) -> Option<u64> {
        let Reverse((at, n)) = self.timers.peek().copied()?;
        if at > now {
            return None;
        }
        self.timers.pop();
        Some(n)
    }

    /// A wake-up for invocation `n`: its timeout, or a keep-alive (its
    /// next wake-up set), or nothing.
    pub(super) fn wake(&mut self, n: u64, now: Instant) -> Wake {
        let Some(inv) = self.map.get_mut(&n) else {
            return Wake::Nothing;
        };
        if now >= inv.progress.deadline {
            return Wake::Timeout { stream: inv.stream };
        }
        let mut wake = Wake::Nothing;
        if inv.progress.keepalive_at.is_some_and(|k| now >= k) {
            inv.progress.keepalive_at = Some(later(now, self.keepalive_interval));
            wake = Wake::Keepalive(inv.editor);
        }
        self.timers.push(Reverse((inv.next_wake(), n)));
        wake
    }

    /// When the next wake-up is due.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Drops the wake-ups at the front of the timer queue whose
    /// invocations have ended, so the driver's timer is not armed for
    /// them: a short answer would otherwise leave one wake-up behind, a
    /// second later, for nothing. (One further back goes when it reaches
    /// the front.)
    fn prune_timers(&mut self) {
        while let Some(Reverse((_, n))) = self.timers.peek() {
            if self.map.contains_key(n) {
                break;
            }
            self.timers.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDITOR: ConnId = ConnId(1);
    const AGENT: ConnId = ConnId(100);

    fn streamed(invocations: &Invocations, now: Instant) -> Invocation {
        Invocation {
            editor: RequestId {
                conn: EDITOR,
                seq: 1,
            },
            id: "chatcmpl-1".to_owned(),
            model: "m".to_owned(),
            created: 0,
            agent: AGENT,
            session: "s".to_owned(),
            stream: true,
            embedding: false,
            tally: Tally::new(false, 0, 1 << 20),
            key: None,
            span: None,
            called: Vec::new(),
            answer: None,
            progress: invocations.progress(true, true, now),
        }
    }

    #[test]
    fn a_stream_is_kept_alive_until_its_deadline_and_leaves_no_wake_up_behind() {
        let config = Config::new(&["key"], "bridge");
        let (every, idle) = (config.keepalive_interval, config.stream_idle_timeout);
        let mut invocations = Invocations::new(&config);
        let t0 = Instant::now();
        invocations.start(1, EDITOR, streamed(&invocations, t0));
        assert_eq!(invocations.answering(EDITOR), Some(1));
        assert_eq!(invocations.next_timeout(), Some(t0 + every));
        assert_eq!(invocations.due(t0), None, "not due yet");

        assert_eq!(invocations.due(t0 + every), Some(1));
        let wake = invocations.wake(1, t0 + every);
        assert!(matches!(wake, Wake::Keepalive(to) if to.conn == EDITOR));
        assert_eq!(invocations.next_timeout(), Some(t0 + every * 2));

        assert_eq!(invocations.due(t0 + idle), Some(1));
        let wake = invocations.wake(1, t0 + idle);
        assert!(matches!(wake, Wake::Timeout { stream: true }));
        assert!(invocations.remove(1).is_some());
        assert_eq!(invocations.next_timeout(), None, "pruned");
        assert_eq!(invocations.answering(EDITOR), None);
    }

    #[test]
    fn only_the_agent_serving_an_invocation_answers_it() {
        let config = Config::new(&["key"], "bridge");
        let mut invocations = Invocations::new(&config);
        let t0 = Instant::now();
        invocations.start(7, EDITOR, streamed(&invocations, t0));
        assert_eq!(invocations.waiting(AGENT, &wire_id(7)), Some(7));
        assert_eq!(invocations.waiting(ConnId(101), &wire_id(7)), None);
        assert_eq!(invocations.waiting(AGENT, &wire_id(8)), None);
        assert_eq!(invocations.waiting(AGENT, "7"), None);
    }
}
