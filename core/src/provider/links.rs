//! Agent links: which connections are agents, the session each one
//! registered, which are congested or closing, which the driver opened
//! itself, and the pings that find the silent ones.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{ConnId, Output};
use crate::agent::close::{LinkClose, PINGS_MISSED};
use crate::idmap::IdMap;
use crate::time::later;

/// An agent link as the provider keeps it.
pub(super) struct Link {
    /// The session it registered, if any.
    pub(super) session: Option<String>,
    /// When a frame last came from it; `None` for a link the driver
    /// opened itself (the built-in agent, a hub it dialed), whose silence
    /// says nothing.
    heard: Option<Instant>,
    /// When its frames next count as its session's activity (`None`: the
    /// next frame does): a busy link's frames come thousands a second, and
    /// the session's idle time is read in seconds, so one touch in
    /// [`TOUCH_EVERY`] says it all without a lookup of the session per
    /// frame.
    touch_due: Option<Instant>,
}

/// How often a link's frames count as its session's activity.
const TOUCH_EVERY: Duration = Duration::from_millis(250);

/// Every agent link, by connection.
pub(super) struct Links {
    links: IdMap<ConnId, Link>,
    /// Links the driver opened itself (the built-in agent, a dialed hub),
    /// by the name `/health/deep` checks them under.
    attached: IdMap<ConnId, String>,
    /// Agent links whose backlog is high, or which are closing: no new
    /// requests go to them until they drain (or their connection ends).
    congested: IdMap<ConnId, ()>,
    ping_every: Duration,
    next_ping: Instant,
}

impl Links {
    pub(super) fn new(ping_every: Duration, now: Instant) -> Self {
        Links {
            links: IdMap::default(),
            attached: IdMap::default(),
            congested: IdMap::default(),
            ping_every,
            next_ping: later(now, ping_every),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.links.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    pub(super) fn contains(&self, conn: ConnId) -> bool {
        self.links.contains_key(&conn)
    }

    /// A link the driver opened itself, known as `name`.
    pub(super) fn attach(&mut self, conn: ConnId, name: &str) {
        let link = Link {
            session: None,
            heard: None,
            touch_due: None,
        };
        self.links.insert(conn, link);
        self.attached.insert(conn, name.to_owned());
    }

    /// A link an agent opened, heard from `now`.
    pub(super) fn accept(&mut self, conn: ConnId, now: Instant) {
        let link = Link {
            session: None,
            heard: Some(now),
            touch_due: None,
        };
        self.links.insert(conn, link);
    }

    /// A frame came from `conn`: `None` if it is not a link, else
    /// whether its session's activity is due to be noted
    /// ([`Links::session_due`] notes it), so that a busy link's frame
    /// looks the link up once.
    pub(super) fn heard(&mut self, conn: ConnId, now: Instant) -> Option<bool> {
        let link = self.links.get_mut(&conn)?;
        if let Some(heard) = &mut link.heard {
            *heard = now;
        }
        Some(link.touch_due.is_none_or(|due| now >= due))
    }

    /// The session `conn` registered, when its activity is due to be
    /// noted again (at most once in [`TOUCH_EVERY`]).
    pub(super) fn session_due(&mut self, conn: ConnId, now: Instant) -> Option<&String> {
        let link = self.links.get_mut(&conn)?;
        // The next time is kept rather than the last, so a busy link's
        // frames cost one comparison, not a subtraction of instants each.
        if link.touch_due.is_some_and(|due| now < due) {
            return None;
        }
        link.touch_due = Some(later(now, TOUCH_EVERY));
        link.session.as_ref()
    }

    /// The session `conn` registered, if it is a link that did.
    pub(super) fn session_of(&self, conn: ConnId) -> Option<&String> {
        self.links.get(&conn)?.session.as_ref()
    }

    /// Link `conn` serves session `id` from now on (`None`: none).
    pub(super) fn set_session(&mut self, conn: ConnId, id: Option<String>) {
        if let Some(link) = self.links.get_mut(&conn) {
            link.session = id;
            link.touch_due = None;
        }
    }

    /// The link the driver attached as `name`: its connection, and the
    /// session it registered.
    pub(super) fn attached(&self, name: &str) -> Option<(ConnId, Option<&str>)> {
        let (conn, _) = self.attached.iter().find(|(_, n)| *n == name)?;
        let session = self.links.get(conn).and_then(|l| l.session.as_deref());
        Some((*conn, session))
    }

    /// Whether `conn` gets no new requests for now.
    pub(super) fn is_congested(&self, conn: ConnId) -> bool {
        self.congested.contains_key(&conn)
    }

    /// `conn` gets no new requests until it drains or closes.
    pub(super) fn congest(&mut self, conn: ConnId) {
        self.congested.insert(conn, ());
    }

    /// `conn` drained: whether it was a congested link.
    pub(super) fn drained(&mut self, conn: ConnId) -> bool {
        self.congested.remove(&conn).is_some()
    }

    /// Link `conn`'s connection ended: what it was.
    pub(super) fn close(&mut self, conn: ConnId) -> Option<Link> {
        self.congested.remove(&conn);
        self.attached.remove(&conn);
        self.links.remove(&conn)
    }

    /// Every link, to close them all.
    pub(super) fn conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.links.keys().copied()
    }

    /// When the links are next pinged (never while there are none).
    pub(super) fn due(&self) -> Option<Instant> {
        (!self.links.is_empty()).then_some(self.next_ping)
    }

    /// Pings every agent link when it is time, and closes those from which
    /// nothing came for [`PINGS_MISSED`] pings: an agent whose machine
    /// slept or whose network went away sends no close and no reset, and
    /// the requests routed to it would wait out their whole timeout. Until
    /// its connection ends, a closing link gets no new requests (it counts
    /// as congested).
    pub(super) fn ping(&mut self, now: Instant, out: &mut VecDeque<Output>) {
        if now < self.next_ping {
            return;
        }
        let silence = self.ping_every.saturating_mul(PINGS_MISSED);
        for (conn, link) in self.links.iter() {
            let silent = link
                .heard
                .is_some_and(|heard| now.saturating_duration_since(heard) >= silence);
            let output = match silent {
                true if self.congested.contains_key(conn) => continue,
                true => {
                    self.congested.insert(*conn, ());
                    Output::CloseAgent {
                        conn: *conn,
                        why: LinkClose::Silent,
                    }
                }
                false => Output::ToAgent {
                    conn: *conn,
                    text: crate::agent::message::to_agent::ping(),
                },
            };
            out.push_back(output);
        }
        self.next_ping = later(now, self.ping_every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_secs(10);

    fn pinged(links: &mut Links, at: Instant) -> Vec<(ConnId, bool)> {
        let mut out = VecDeque::new();
        links.ping(at, &mut out);
        let mut seen: Vec<(ConnId, bool)> = out
            .into_iter()
            .map(|o| (o.conn(), matches!(o, Output::CloseAgent { .. })))
            .collect();
        seen.sort();
        seen
    }

    #[test]
    fn a_busy_links_frames_touch_its_session_once_in_a_while() {
        let t0 = Instant::now();
        let mut links = Links::new(EVERY, t0);
        let agent = ConnId(1);
        links.accept(agent, t0);
        assert_eq!(links.session_due(agent, t0), None, "no session yet");
        links.set_session(agent, Some("s1".to_owned()));
        let due = |links: &mut Links, at| links.session_due(agent, at).cloned();
        assert_eq!(
            due(&mut links, t0).as_deref(),
            Some("s1"),
            "the first frame"
        );
        assert_eq!(links.heard(agent, t0 + TOUCH_EVERY / 2), Some(false));
        assert_eq!(due(&mut links, t0 + TOUCH_EVERY / 2), None);
        assert_eq!(links.heard(agent, t0 + TOUCH_EVERY), Some(true));
        assert_eq!(due(&mut links, t0 + TOUCH_EVERY).as_deref(), Some("s1"));
        // A new session is touched by the next frame, however soon.
        links.set_session(agent, Some("s2".to_owned()));
        assert_eq!(due(&mut links, t0 + TOUCH_EVERY).as_deref(), Some("s2"));
        assert_eq!(links.session_due(ConnId(9), t0), None, "not a link");
    }

    #[test]
    fn a_silent_link_is_closed_once_and_a_link_opened_here_never() {
        let t0 = Instant::now();
        let mut links = Links::new(EVERY, t0);
        let (agent, hub) = (ConnId(1), ConnId(2));
        links.accept(agent, t0);
        links.attach(hub, "hub");
        assert_eq!(links.due(), Some(t0 + EVERY));
        assert!(pinged(&mut links, t0).is_empty(), "not due yet");

        let silent = t0 + EVERY * PINGS_MISSED;
        assert_eq!(pinged(&mut links, silent), [(agent, true), (hub, false)]);
        assert!(
            links.is_congested(agent),
            "a closing link takes no requests"
        );
        let later = silent + EVERY;
        assert_eq!(pinged(&mut links, later), [(hub, false)], "closed once");

        assert!(links.close(agent).is_some());
        assert!(!links.is_congested(agent));
        assert_eq!(links.attached("hub").map(|(conn, _)| conn), Some(hub));
    }

    #[test]
    fn a_link_heard_from_is_pinged_not_closed() {
        let t0 = Instant::now();
        let mut links = Links::new(EVERY, t0);
        let agent = ConnId(1);
        links.accept(agent, t0);
        let silent = t0 + EVERY * PINGS_MISSED;
        assert!(links.heard(agent, silent - EVERY).is_some());
        assert!(links.heard(ConnId(9), silent).is_none(), "not a link");
        assert_eq!(pinged(&mut links, silent), [(agent, false)]);
        assert!(!links.drained(agent), "it was never congested");
    }
}
