//! The connection cap, as every runtime applies it: connections are
//! counted while open. At the cap, a connection that has waited at least
//! [`RECLAIM_AFTER`] for its client's next request is closed to make room,
//! the one idle the longest first: a client holding connections it does
//! not use must not lock others out. Only when none is idle that long is
//! the new one answered `503`, and held briefly so its client reads the
//! answer before the close. A connection mid-request, answering, streaming
//! or carrying an agent link is never reclaimed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use mcp_provider_core::http::ServerConn;

/// How long a refused connection is held open, reading what its client
/// sent, so that closing it does not reset the connection before the client
/// reads the `503`.
pub const REFUSAL_HOLD: Duration = Duration::from_millis(500);

/// Refused connections a runtime holds at once; more are closed at once.
pub const REFUSALS_HELD: usize = 256;

/// How long a connection must have waited for its client before it may be
/// reclaimed. A client that was just answered is likely to send its next
/// request in a moment (an editor's next turn, a pool's kept connection):
/// closing it then would race that request.
pub const RECLAIM_AFTER: Duration = Duration::from_secs(5);

/// Closes an idle connection from outside its task or thread (wakes it to
/// end, or shuts its socket): called at most once, by whoever reclaims it.
pub type Reclaim = Arc<dyn Fn() + Send + Sync>;

/// Whether `http` waits for its client's next request with nothing of it
/// read: no request is being answered, none is partly in, and the client
/// has not shut its side. The driver calls [`Admitted::idle`] only then,
/// and only once everything it encoded is written.
pub fn waiting(http: &ServerConn) -> bool {
    http.is_idle() && http.buffered() == 0 && http.wants_read()
}

/// Open connections, against the cap; clones share them.
#[derive(Clone)]
pub struct Admission {
    slots: Arc<Mutex<Slots>>,
}

/// The count and every counted connection's place, under one lock. A
/// connection's turns between busy and idle (two a request) change only
/// its own place, without the lock; the places are searched only at the
/// cap, for the one idle the longest.
struct Slots {
    max: usize,
    open: usize,
    places: HashMap<u64, Arc<Place>>,
    next: u64,
    /// What the places' idle times count from.
    origin: Instant,
}

/// Where one admitted connection stands, as a number: [`BUSY`],
/// [`RECLAIMED`] (its slot went to another connection), or waiting for
/// its client since that many nanoseconds after [`Slots::origin`], plus
/// one.
struct Place {
    standing: AtomicU64,
    /// Given with its first wait.
    reclaim: OnceLock<Reclaim>,
}

const BUSY: u64 = 0;
const RECLAIMED: u64 = u64::MAX;

/// An admitted connection, counted until dropped (however its task or
/// thread ends).
pub struct Admitted {
    slots: Arc<Mutex<Slots>>,
    id: u64,
    place: Arc<Place>,
    origin: Instant,
}

impl Admission {
    pub fn new(max_connections: usize) -> Self {
        Admission {
            slots: Arc::new(Mutex::new(Slots {
                max: max_connections,
                open: 0,
                places: HashMap::new(),
                next: 0,
                origin: Instant::now(),
            })),
        }
    }

    /// Counts a new connection in at `now`: under the cap, or in the slot
    /// of the connection idle the longest if it has been for
    /// [`RECLAIM_AFTER`] (that one is reclaimed). `None` when neither
    /// (then answer it [`mcp_provider_core::too_many_connections`]).
    pub fn admit(&self, now: Instant) -> Option<Admitted> {
        let (admitted, reclaimed) = {
            let mut slots = lock(&self.slots);
            let reclaimed = match slots.open < slots.max {
                true => None,
                false => Some(slots.reclaim_idlest(now)?),
            };
            if reclaimed.is_none() {
                slots.open += 1;
            }
            slots.next += 1;
            let (id, origin) = (slots.next, slots.origin);
            let place = Arc::new(Place {
                standing: AtomicU64::new(BUSY),
                reclaim: OnceLock::new(),
            });
            slots.places.insert(id, place.clone());
            let admitted = Admitted {
                slots: self.slots.clone(),
                id,
                place,
                origin,
            };
            (admitted, reclaimed)
        };
        // Outside the lock: closing may take the connection's own.
        if let Some(reclaim) = reclaimed {
            reclaim();
        }
        Some(admitted)
    }
}

impl Slots {
    /// Takes the slot of the connection idle the longest, if it has been
    /// for [`RECLAIM_AFTER`]: its place is marked reclaimed (unless it
    /// went busy as it was chosen: then the next is tried) and its
    /// reclaim returned, to be called outside the lock.
    fn reclaim_idlest(&mut self, now: Instant) -> Option<Reclaim> {
        // Nobody has waited that long before the places' origin.
        let ripe = now
            .checked_sub(RECLAIM_AFTER)
            .filter(|at| *at >= self.origin)
            .map(|at| since(self.origin, at))?;
        // Each failed try means a connection went busy meanwhile: bounded.
        for _ in 0..self.places.len() {
            let (id, standing) = self
                .places
                .iter()
                .map(|(id, place)| (*id, place.standing.load(Ordering::Acquire)))
                .filter(|&(_, standing)| standing != BUSY && standing != RECLAIMED)
                .min_by_key(|&(_, standing)| standing)?;
            if standing > ripe {
                return None;
            }
            let place = self.places.get(&id)?;
            // Set before the place first went idle, so present here; taken
            // first all the same, so that no place is marked reclaimed
            // without its owner being told.
            let reclaim = place.reclaim.get().cloned()?;
            let taken = place.standing.compare_exchange(
                standing,
                RECLAIMED,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            if taken.is_ok() {
                self.places.remove(&id);
                return Some(reclaim);
            }
        }
        None
    }
}

/// `at` as a place's standing: nanoseconds since `origin`, plus one (never
/// [`BUSY`]; [`RECLAIMED`] only some 584 years on).
fn since(origin: Instant, at: Instant) -> u64 {
    let nanos = u64::try_from(at.saturating_duration_since(origin).as_nanos());
    nanos.unwrap_or(u64::MAX).min(RECLAIMED - 2) + 1
}

impl Admitted {
    /// The connection waits for its client's next request from `now`
    /// (see [`waiting`]): it may be reclaimed, with `reclaim`, from
    /// [`RECLAIM_AFTER`] on. Idle already, it keeps its place.
    pub fn idle(&mut self, reclaim: &Reclaim, now: Instant) {
        if self.place.standing.load(Ordering::Relaxed) != BUSY {
            return;
        }
        self.place.reclaim.get_or_init(|| reclaim.clone());
        // Only this connection moves its place away from busy.
        self.place
            .standing
            .store(since(self.origin, now), Ordering::Release);
    }

    /// The client sent something: the connection is no longer idle. False
    /// if it was reclaimed meanwhile: it must close.
    pub fn busy(&mut self) -> bool {
        let standing = self.place.standing.load(Ordering::Acquire);
        match standing {
            BUSY => true,
            RECLAIMED => false,
            idle => self
                .place
                .standing
                .compare_exchange(idle, BUSY, Ordering::AcqRel, Ordering::Acquire)
                .is_ok(),
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut slots = lock(&self.slots);
        // A reclaimed connection's slot was counted for its taker already.
        if self.place.standing.swap(RECLAIMED, Ordering::AcqRel) != RECLAIMED {
            slots.places.remove(&self.id);
            slots.open -= 1;
        }
    }
}

fn lock(slots: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
    // Each change is whole before anything that could panic.
    slots.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A reclaim that counts its calls.
    fn counted() -> (Reclaim, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let reclaim: Reclaim = Arc::new(move || {
            seen.fetch_add(1, Ordering::SeqCst);
        });
        (reclaim, calls)
    }

    #[test]
    fn admits_up_to_the_cap_and_again_once_one_closes() {
        let now = Instant::now();
        let cap = Admission::new(2);
        let a = cap.admit(now);
        let b = cap.admit(now);
        assert!(a.is_some() && b.is_some());
        assert!(cap.admit(now).is_none());
        drop(a);
        assert!(cap.admit(now).is_some());
    }

    #[test]
    fn at_the_cap_the_connection_idle_the_longest_is_reclaimed_first() {
        let cap = Admission::new(3);
        let start = Instant::now();
        let mut conns: Vec<Admitted> = (0..3).map(|_| cap.admit(start).unwrap()).collect();
        let reclaims: Vec<_> = (0..3).map(|_| counted()).collect();
        // Idle in the order 2, 0, 1, a second apart.
        for (i, at) in [(2, 0), (0, 1), (1, 2)] {
            conns[i].idle(&reclaims[i].0, start + Duration::from_secs(at));
        }
        let calls = || {
            reclaims
                .iter()
                .map(|(_, c)| c.load(Ordering::SeqCst))
                .collect::<Vec<_>>()
        };
        // Not idle long enough yet: refused.
        assert!(cap
            .admit(start + RECLAIM_AFTER - Duration::from_millis(1))
            .is_none());
        assert_eq!(calls(), [0, 0, 0]);
        let later = start + RECLAIM_AFTER + Duration::from_secs(2);
        let _new = cap.admit(later).expect("the longest idle made room");
        assert_eq!(calls(), [0, 0, 1]);
        let _newer = cap.admit(later).expect("the next longest made room");
        assert_eq!(calls(), [1, 0, 1]);
        // The reclaimed learn it, and their slots are not counted twice.
        assert!(!conns[2].busy() && !conns[0].busy());
        drop(conns.remove(2));
        drop(conns.remove(0));
        // The last idle one gets busy before a third newcomer: refused.
        assert!(conns[0].busy());
        assert!(cap.admit(later).is_none());
        assert_eq!(calls(), [1, 0, 1]);
    }

    #[test]
    fn a_busy_connection_is_never_reclaimed_and_idle_keeps_its_place() {
        let cap = Admission::new(2);
        let start = Instant::now();
        let late = start + RECLAIM_AFTER * 10;
        let (reclaim, calls) = counted();
        let mut first = cap.admit(start).unwrap();
        let mut second = cap.admit(start).unwrap();
        first.idle(&reclaim, start);
        second.idle(&reclaim, start + Duration::from_secs(1));
        // Marked idle again later, the first stays the longest idle.
        first.idle(&reclaim, start + Duration::from_secs(2));
        assert!(first.busy());
        assert!(second.busy(), "busy again: out of reach");
        assert!(cap.admit(late).is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        first.idle(&reclaim, start);
        drop(second);
        // A slot under the cap is taken before anyone is reclaimed.
        assert!(cap.admit(late).is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn connections_turning_on_many_threads_at_the_cap_leave_nothing_counted() {
        let cap = Admission::new(4);
        let start = Instant::now();
        let (reclaim, calls) = counted();
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let (cap, reclaim) = (cap.clone(), reclaim.clone());
                std::thread::spawn(move || {
                    // Each thread keeps up to two connections open: twice
                    // the cap in all, so admissions meet it all the time.
                    let mut open: std::collections::VecDeque<Admitted> = Default::default();
                    for i in 0..2_000u32 {
                        let now = start + RECLAIM_AFTER * (i + t % 3);
                        for conn in open.iter_mut() {
                            // Reclaimed ones learn it; the others go busy.
                            let _ = conn.busy();
                            conn.idle(&reclaim, now);
                        }
                        if let Some(conn) = cap.admit(now) {
                            open.push_back(conn);
                        }
                        if open.len() > 2 {
                            open.pop_front();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(
            calls.load(Ordering::SeqCst) > 0,
            "the cap was met and idle ones reclaimed"
        );
        let slots = lock(&cap.slots);
        assert_eq!(slots.open, 0, "every slot given back");
        assert!(slots.places.is_empty());
    }
}
