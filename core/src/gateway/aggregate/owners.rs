//! Which server a resource URI read on `/mcp` goes to. Every server's
//! URIs share one space there, so no server may take another's reads:
//!
//! - a URI belongs to the **first server in the configuration's order**
//!   that claims it, by listing it or by a URI template whose literal
//!   beginning (up to its first `{`) the URI starts with. A server later
//!   in the configuration that lists the same URI, or a template broad
//!   enough to cover it, does not get it; the conflict is logged, once
//!   for each URI and server (and no more than [`MAX_CONFLICTS_LOGGED`]
//!   in all). The configuration's order, not the order listings came
//!   in: which server reads a URI never depends on which answered first,
//!   and the user decides it by ordering their servers.
//! - what a server claims is remembered for that server, bounded for
//!   that server ([`MAX_URIS`], [`MAX_URI_BYTES`], [`MAX_TEMPLATES`]): a
//!   server listing more loses its own oldest, never another's;
//! - a server removed takes its claims with it.
//!
//! A server's configured URI beginnings (`ServerSpec::resources`) come
//! before all of this (`Bridge::resource_owner`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// URIs remembered of one server's listings: past this its oldest go.
pub(super) const MAX_URIS: usize = 10_000;

/// Bytes of URIs remembered of one server's listings: past this its
/// oldest go.
pub(super) const MAX_URI_BYTES: usize = 4 << 20;

/// URI templates remembered of one server: past this its oldest go.
pub(super) const MAX_TEMPLATES: usize = 256;

/// Conflicts logged in all: a server listing many URIs another has
/// listed already fills the log no further.
pub(super) const MAX_CONFLICTS_LOGGED: usize = 1024;

/// What each server claims, by server name.
#[derive(Default)]
pub(in crate::gateway) struct Owners {
    claims: BTreeMap<String, Claims>,
    /// The conflicts logged: a URI and the server that lost it.
    logged: BTreeSet<(String, String)>,
}

/// One server's claims.
#[derive(Default)]
struct Claims {
    /// The URIs it listed.
    uris: Learned,
    /// Its templates' literal beginnings (never empty).
    starts: Learned,
}

/// A bounded set of strings that lets its oldest go first; learning one
/// again makes it the newest.
#[derive(Default)]
struct Learned {
    at: HashMap<String, u64>,
    order: BTreeMap<u64, String>,
    next: u64,
    bytes: usize,
}

impl Learned {
    fn learn(&mut self, item: &str, max: usize, max_bytes: usize) {
        self.next += 1;
        match self.at.get_mut(item) {
            Some(n) => {
                self.order.remove(n);
                *n = self.next;
            }
            None => {
                self.at.insert(item.to_owned(), self.next);
                self.bytes += item.len();
            }
        }
        self.order.insert(self.next, item.to_owned());
        while self.at.len() > max || self.bytes > max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.at.remove(&oldest);
            self.bytes -= oldest.len();
        }
    }

    fn contains(&self, item: &str) -> bool {
        self.at.contains_key(item)
    }
}

impl Claims {
    fn covers(&self, uri: &str) -> bool {
        self.uris.contains(uri) || self.starts.at.keys().any(|s| uri.starts_with(s.as_str()))
    }
}

impl Owners {
    /// `server` listed `uri`. `order`: the servers on `/mcp`, in the
    /// configuration's order.
    pub(super) fn learn_uri(&mut self, server: &str, uri: &str, order: &[String]) {
        let claims = self.claims.entry(server.to_owned()).or_default();
        claims.uris.learn(uri, MAX_URIS, MAX_URI_BYTES);
        let claimants: Vec<String> = order
            .iter()
            .filter(|s| self.covers(s, uri))
            .cloned()
            .collect();
        if let Some((owner, others)) = claimants.split_first() {
            for other in others {
                self.conflict(uri, owner, other);
            }
        }
    }

    /// `server` listed a resource template, `uriTemplate`: it claims the
    /// URIs that start like it (none, when it starts with a variable).
    pub(super) fn learn_template(&mut self, server: &str, template: &str) {
        let start = template.split('{').next().unwrap_or_default();
        if start.is_empty() {
            return;
        }
        let claims = self.claims.entry(server.to_owned()).or_default();
        claims.starts.learn(start, MAX_TEMPLATES, usize::MAX);
    }

    /// The server `uri` belongs to: the first of `order` that claims it.
    pub(super) fn owner<'a>(&self, uri: &str, order: &'a [String]) -> Option<&'a str> {
        order
            .iter()
            .find(|server| self.covers(server, uri))
            .map(String::as_str)
    }

    /// Server `server` is gone: what it claimed goes with it.
    pub(in crate::gateway) fn forget(&mut self, server: &str) {
        self.claims.remove(server);
        self.logged.retain(|(_, loser)| loser != server);
    }

    /// How many URIs `server`'s listings are remembered by.
    #[cfg(test)]
    pub(super) fn uris_of(&self, server: &str) -> usize {
        self.claims.get(server).map_or(0, |c| c.uris.at.len())
    }

    /// The conflicts logged: each URI with the server that lost it.
    #[cfg(test)]
    pub(super) fn conflicts(&self) -> Vec<(String, String)> {
        self.logged.iter().cloned().collect()
    }

    fn covers(&self, server: &str, uri: &str) -> bool {
        self.claims.get(server).is_some_and(|c| c.covers(uri))
    }

    /// Logs, once, that `loser` claims `uri` too.
    fn conflict(&mut self, uri: &str, owner: &str, loser: &str) {
        if self.logged.len() >= MAX_CONFLICTS_LOGGED
            || !self.logged.insert((uri.to_owned(), loser.to_owned()))
        {
            return;
        }
        tracing::warn!(
            uri,
            server = loser,
            owner,
            "two MCP servers claim a resource URI on /mcp: reads go to the one first in the configuration"
        );
        if self.logged.len() == MAX_CONFLICTS_LOGGED {
            tracing::warn!(
                "{MAX_CONFLICTS_LOGGED} resource URIs claimed by two servers are logged: no more will be"
            );
        }
    }
}
