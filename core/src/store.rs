//! Responses kept after their answer: what `store: true` keeps of a
//! Responses API answer so it can be read again (`GET /v1/responses/{id}`),
//! continued (`previous_response_id`), and, for a background answer,
//! streamed again from any event on.
//!
//! Kept in memory and bounded, since clients never delete what they
//! store: past the byte cap the oldest record goes first, a record older
//! than the age cap goes when next seen, and a record whose answer is still
//! running is never evicted (it counts, and its answer is itself capped by
//! the provider's `max_output_bytes`). Records are kept as JSON text, not
//! as parsed values, so what the cap counts is what memory holds. An
//! evicted id is remembered for a while, so a client asking for it is told
//! it was evicted rather than that it never existed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How much the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Bytes of all records together.
    pub max_bytes: usize,
    /// How long a record is kept after it was made.
    pub max_age: Duration,
}

impl Default for StoreLimits {
    /// A developer's day: 64 MiB, 24 hours.
    fn default() -> Self {
        StoreLimits {
            max_bytes: 64 * 1024 * 1024,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// A stored response's status, as the Responses API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Queued,
    InProgress,
    Completed,
    Incomplete,
    Failed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Incomplete => "incomplete",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(name: &str) -> Option<Status> {
        [
            Status::Queued,
            Status::InProgress,
            Status::Completed,
            Status::Incomplete,
            Status::Failed,
            Status::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// Whether the answer is over: nothing about the record changes again.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::InProgress)
    }
}

/// One stored response.
#[derive(Debug, Clone)]
pub struct Record {
    /// The API key that made it (its index), if keys are required: no
    /// other key sees it.
    pub owner: Option<usize>,
    /// Made with `background: true`: its events are kept for streaming.
    pub background: bool,
    pub status: Status,
    /// The response object as last known (JSON).
    pub response: Bytes,
    /// The input items as given, each with an id (a JSON array).
    pub input_items: Bytes,
    /// The conversation a chained request continues: chat messages up to
    /// and including this response's output, without its instructions (a
    /// JSON array; empty until the answer ends).
    pub history: Bytes,
    /// A background answer's stream, one server-sent event each; an
    /// event's place is its `sequence_number`.
    pub events: Vec<Bytes>,
    created: Instant,
}

/// What each record and each event costs besides its bytes: the map
/// entry, the id twice, the vectors' slots.
const RECORD_OVERHEAD: usize = 256;
const EVENT_OVERHEAD: usize = std::mem::size_of::<Bytes>();

impl Record {
    pub fn new(owner: Option<usize>, background: bool, input_items: Bytes, now: Instant) -> Self {
        Record {
            owner,
            background,
            status: Status::Queued,
            response: Bytes::new(),
            input_items,
            history: Bytes::new(),
            events: Vec::new(),
            created: now,
        }
    }

    /// What the record holds, as the cap counts it.
    fn bytes(&self) -> usize {
        RECORD_OVERHEAD
            + self.response.len()
            + self.input_items.len()
            + self.history.len()
            + self
                .events
                .iter()
                .map(|e| e.len() + EVENT_OVERHEAD)
                .sum::<usize>()
    }
}

/// Why a record is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Never stored, deleted, or another key's.
    Unknown,
    /// Stored once, and evicted to keep within the caps.
    Evicted,
}

/// How many evicted ids are remembered to say so (as 8-byte digests:
/// about 1.5 MB at most).
const EVICTED_KEPT: usize = 65_536;

/// One record, its size as counted, and when it was last used.
#[derive(Debug)]
struct Entry {
    record: Record,
    size: usize,
    used: u64,
}

/// The stored responses, by id.
#[derive(Debug, Default)]
pub struct Store {
    records: HashMap<String, Entry>,
    /// Ids by when they were last used, least recently first, each with
    /// its use number then (an entry whose record was used again since is
    /// stale, and skipped).
    order: VecDeque<(u64, String)>,
    uses: u64,
    bytes: usize,
    /// Digests of evicted ids, and their order, to forget the oldest.
    evicted: HashSet<u64>,
    evicted_order: VecDeque<u64>,
    limits: StoreLimits,
    /// Records evicted since the start.
    evictions: u64,
}

impl Store {
    pub fn new(limits: StoreLimits) -> Self {
        Store {
            limits,
            ..Store::default()
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Bytes held, as the cap counts them.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Keeps `record` under `id`, evicting what the byte cap says must go.
    pub fn insert(&mut self, id: String, record: Record) {
        let size = record.bytes();
        self.bytes += size;
        let entry = Entry {
            record,
            size,
            used: 0,
        };
        if let Some(old) = self.records.insert(id.clone(), entry) {
            self.bytes -= old.size;
        }
        self.touch(&id);
        self.evict();
    }

    /// The record `id`, if `caller` may see it (see [`may_see`]): it is
    /// used now, so it is the last to be evicted.
    pub fn get(
        &mut self,
        id: &str,
        caller: Option<usize>,
        now: Instant,
    ) -> Result<&Record, Missing> {
        self.expire(id, now);
        match self.records.get(id) {
            Some(e) if may_see(caller, e.record.owner) => {}
            Some(_) => return Err(Missing::Unknown),
            None => return Err(self.why_missing(id)),
        }
        self.touch(id);
        self.records
            .get(id)
            .map(|e| &e.record)
            .ok_or(Missing::Unknown)
    }

    /// Changes record `id` (if it is still there), keeping the count of
    /// bytes right. An answer that just ended counts as used now (its
    /// asker has yet to read it); what the cap says must go goes.
    pub fn update(&mut self, id: &str, change: impl FnOnce(&mut Record)) {
        let Some(entry) = self.records.get_mut(id) else {
            return;
        };
        let was_final = entry.record.status.is_final();
        change(&mut entry.record);
        let new = entry.record.bytes();
        self.bytes = self.bytes - entry.size + new;
        entry.size = new;
        if entry.record.status.is_final() {
            if !was_final {
                self.touch(id);
            }
            self.evict();
        }
    }

    /// Adds one event to a background record's stream: the hot path of a
    /// background answer, so only its own bytes are counted.
    pub fn push_event(&mut self, id: &str, event: Bytes) {
        if let Some(entry) = self.records.get_mut(id) {
            let added = event.len() + EVENT_OVERHEAD;
            entry.record.events.push(event);
            entry.size += added;
            self.bytes += added;
        }
    }

    /// The bytes record `id` holds, as the cap counts them (0 if gone).
    pub fn size_of(&self, id: &str) -> usize {
        self.records.get(id).map_or(0, |e| e.size)
    }

    /// Deletes record `id` for `caller`.
    pub fn remove(&mut self, id: &str, caller: Option<usize>) -> Result<Record, Missing> {
        match self.records.get(id) {
            Some(e) if may_see(caller, e.record.owner) => {}
            Some(_) => return Err(Missing::Unknown),
            None => return Err(self.why_missing(id)),
        }
        let entry = self.records.remove(id).ok_or(Missing::Unknown)?;
        self.bytes -= entry.size;
        Ok(entry.record)
    }

    fn why_missing(&self, id: &str) -> Missing {
        if self.evicted.contains(&digest(id)) {
            Missing::Evicted
        } else {
            Missing::Unknown
        }
    }

    /// Marks `id` used now: it goes to the back of the eviction order.
    fn touch(&mut self, id: &str) {
        self.uses += 1;
        let used = self.uses;
        if let Some(entry) = self.records.get_mut(id) {
            entry.used = used;
            self.order.push_back((used, id.to_owned()));
        }
        // Stale entries are dropped as they reach the front; many reads
        // of few records would pile them up, so the order is rebuilt
        // once they outnumber the records.
        if self.order.len() > 2 * self.records.len() + 64 {
            let mut order: Vec<(u64, String)> = (self.records.iter())
                .map(|(id, e)| (e.used, id.clone()))
                .collect();
            order.sort_unstable();
            self.order = order.into();
        }
    }

    /// Evicts `id` if it is past the age cap and its answer is over (age
    /// is checked when a record is asked for: the byte cap bounds what
    /// an old record holds until then).
    fn expire(&mut self, id: &str, now: Instant) {
        let old = self.records.get(id).is_some_and(|e| {
            e.record.status.is_final()
                && now.saturating_duration_since(e.record.created) > self.limits.max_age
        });
        if old {
            self.evict_one(id);
        }
    }

    /// Evicts finished records, least recently used first, until the rest
    /// are within the byte cap; running ones keep their place.
    fn evict(&mut self) {
        let mut running = Vec::new();
        while self.bytes > self.limits.max_bytes {
            let Some((used, id)) = self.order.pop_front() else {
                break;
            };
            match self.records.get(&id) {
                Some(e) if e.used == used && e.record.status.is_final() => self.evict_one(&id),
                Some(e) if e.used == used => running.push((used, id)),
                _ => {} // stale: used again since, deleted or evicted
            }
        }
        for entry in running.into_iter().rev() {
            self.order.push_front(entry);
        }
    }

    fn evict_one(&mut self, id: &str) {
        let Some(entry) = self.records.remove(id) else {
            return;
        };
        self.bytes -= entry.size;
        self.evictions += 1;
        if self.evicted_order.len() >= EVICTED_KEPT {
            if let Some(oldest) = self.evicted_order.pop_front() {
                self.evicted.remove(&oldest);
            }
        }
        let d = digest(id);
        self.evicted.insert(d);
        self.evicted_order.push_back(d);
    }
}

/// An id's 64-bit digest: what is remembered of an evicted id (two ids
/// sharing one would only make an unknown id's 404 say "evicted").
fn digest(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// Whether a caller sees what `owner` stored: a caller with no key of its
/// own (keys not required, or the bridge token) sees everything; a key
/// sees its own.
pub fn may_see(caller: Option<usize>, owner: Option<usize>) -> bool {
    caller.is_none() || caller == owner
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(size: usize, status: Status, now: Instant) -> Record {
        let mut r = Record::new(None, false, Bytes::from(vec![b'x'; size]), now);
        r.status = status;
        r
    }

    #[test]
    fn the_least_recently_used_finished_record_goes_first_and_is_known_as_evicted() {
        let t0 = Instant::now();
        let limits = StoreLimits {
            max_bytes: 3 * (1000 + RECORD_OVERHEAD),
            max_age: Duration::from_secs(60),
        };
        let mut store = Store::new(limits);
        store.insert("a".into(), record(1000, Status::InProgress, t0));
        store.insert("b".into(), record(1000, Status::Completed, t0));
        store.insert("c".into(), record(1000, Status::Completed, t0));
        store.insert("d".into(), record(1000, Status::Completed, t0));
        // `a` runs: it stays, `b` (the least recently used finished) goes.
        assert!(store.get("a", None, t0).is_ok());
        assert_eq!(store.get("b", None, t0).err(), Some(Missing::Evicted));
        assert!(store.get("c", None, t0).is_ok());
        assert!(store.bytes() <= limits.max_bytes);
        assert_eq!(store.get("zz", None, t0).err(), Some(Missing::Unknown));
        // `a` ends: it counts as used then (its asker has yet to read it),
        // so `d`, untouched since it was stored, goes next.
        store.update("a", |r| r.status = Status::Completed);
        store.insert("e".into(), record(1000, Status::Completed, t0));
        assert_eq!(store.get("d", None, t0).err(), Some(Missing::Evicted));
        assert!(store.get("a", None, t0).is_ok());
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn many_reads_of_one_record_keep_the_order_small() {
        let t0 = Instant::now();
        let mut store = Store::new(StoreLimits::default());
        store.insert("r".into(), record(10, Status::Completed, t0));
        for _ in 0..10_000 {
            assert!(store.get("r", None, t0).is_ok());
        }
        assert!(store.order.len() <= 2 * store.len() + 64);
    }

    #[test]
    fn a_record_past_its_age_is_gone_unless_running() {
        let t0 = Instant::now();
        let limits = StoreLimits {
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(10),
        };
        let mut store = Store::new(limits);
        store.insert("old".into(), record(10, Status::Completed, t0));
        store.insert("busy".into(), record(10, Status::InProgress, t0));
        let later = t0 + Duration::from_secs(11);
        assert_eq!(store.get("old", None, later).err(), Some(Missing::Evicted));
        assert!(store.get("busy", None, later).is_ok());
    }

    #[test]
    fn one_key_never_sees_anothers_records() {
        let t0 = Instant::now();
        let mut store = Store::new(StoreLimits::default());
        let mut r = record(10, Status::Completed, t0);
        r.owner = Some(1);
        store.insert("r".into(), r);
        assert_eq!(store.get("r", Some(0), t0).err(), Some(Missing::Unknown));
        assert_eq!(store.remove("r", Some(0)).err(), Some(Missing::Unknown));
        assert!(store.get("r", Some(1), t0).is_ok());
        assert!(
            store.get("r", None, t0).is_ok(),
            "the bridge token sees all"
        );
        assert!(store.remove("r", Some(1)).is_ok());
        assert_eq!(store.get("r", Some(1), t0).err(), Some(Missing::Unknown));
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn events_and_updates_are_counted() {
        let t0 = Instant::now();
        let mut store = Store::new(StoreLimits::default());
        store.insert("r".into(), record(0, Status::InProgress, t0));
        let base = store.bytes();
        store.push_event("r", Bytes::from_static(b"0123456789"));
        assert_eq!(store.bytes(), base + 10 + EVENT_OVERHEAD);
        store.update("r", |r| r.response = Bytes::from_static(b"{}"));
        assert_eq!(store.bytes(), base + 12 + EVENT_OVERHEAD);
    }
}
