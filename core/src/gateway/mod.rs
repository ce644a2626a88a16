//! Many bridged servers behind one address: the aggregate endpoint `/mcp`
//! (`aggregate/`), listings asked of every server at once (`gather.rs`,
//! over the shapes of `listing.rs`), the tools as an OpenAPI service
//! (`openapi.rs`), and a new configuration's servers sorted against the
//! old and applied (`reconfigure.rs`).
//!
//! It sits above [`crate::bridge`], which serves each server to its
//! clients and never names this module: the bridge's
//! [`Registry`](crate::bridge::Registry) hands what is the gateway's to
//! its [`Above`](crate::bridge::Above) layer, which
//! [`Gateway`](crate::gateway::Gateway) is.
//! [`Bridge`](crate::gateway::Bridge) is the two together, what a driver runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use serde_json::Value;

use crate::bridge::common::Answered;
use crate::bridge::routes::{Found, Route};
use crate::bridge::{Above, ChildId, ClientId, Registry, SearchFigures};
use crate::http::{Request, Response};
use crate::mcp;
use crate::provider::RequestId;

pub mod aggregate;
mod gather;
mod listing;
mod openapi;
mod reconfigure;

pub use reconfigure::{diff, BadConfiguration, Reconfigured};

use aggregate::names::Names;
use listing::Finish;

/// Every bridged server, its children and the clients' sessions, with
/// the endpoints that span servers: what a driver runs.
pub type Bridge = Registry<Gateway>;

/// What the gateway keeps, beside the registry's servers and sessions.
#[derive(Default)]
pub struct Gateway {
    /// Listings of several servers waiting for their parts.
    gathers: HashMap<u64, gather::Gather>,
    /// Each server's whole lists, by server and list, kept for listing
    /// again (`gather`).
    listings: HashMap<(String, String), gather::Listed>,
    /// Aggregate listings sent without a late server's part, by gather:
    /// its session is told the list changed when the part comes.
    late: BTreeMap<u64, gather::Late>,
    /// The aggregate endpoint's sessions: their members on each server.
    fans: HashMap<String, aggregate::Fan>,
    /// Which server listed each resource, for the aggregate endpoint.
    owners: aggregate::Owners,
    /// How the aggregate endpoint names each server's tools and prompts.
    names: Names,
    /// The names it listed, for calls.
    directory: aggregate::names::Directory,
    /// Servers with an empty prefix named under their name: one of their
    /// names met another server's.
    unbared: BTreeSet<String>,
    /// The tool search on `/mcp`: its setting, index and figures.
    search: aggregate::search::Search,
}

impl Bridge {
    /// Names on the aggregate endpoint `/mcp` joined by `names`'
    /// separator instead of `__`, and no longer than its longest (the
    /// aggregate sessions told their lists changed, when they did).
    pub fn set_names(&mut self, names: Names) {
        if self.above.names != names {
            self.above.names = names;
            self.aggregates_changed();
        }
    }
}

impl Above for Gateway {
    fn open_every(bridge: &mut Bridge, to: RequestId, id: Value, params: Value, now: Instant) {
        bridge.open_aggregate(to, id, params, now);
    }

    fn every_message(
        bridge: &mut Bridge,
        to: RequestId,
        session: &str,
        message: mcp::Message,
        now: Instant,
    ) {
        bridge.aggregate_message(to, session, message, now);
    }

    fn every_stateless(
        bridge: &mut Bridge,
        to: RequestId,
        id: Value,
        method: String,
        params: Value,
        now: Instant,
    ) {
        bridge.aggregate_stateless(to, id, method, params, now);
    }

    fn serves_session(bridge: &Bridge, id: &str) -> bool {
        bridge.above.fans.contains_key(id)
    }

    fn said(
        bridge: &mut Bridge,
        session: &str,
        child: ChildId,
        client: ClientId,
        message: String,
        now: Instant,
    ) -> Option<String> {
        match bridge.above.fans.contains_key(session) {
            true => bridge.member_said(session, child, client, message, now),
            false => Some(message),
        }
    }

    fn session_ended(bridge: &mut Bridge, session: &str) -> Vec<(ChildId, ClientId)> {
        bridge.end_fan(session)
    }

    fn retired(bridge: &mut Bridge, name: &str, now: Instant) {
        bridge.drop_members(name, now);
    }

    fn servers_changed(bridge: &mut Bridge) {
        bridge.aggregates_changed();
    }

    fn gathered(bridge: &mut Bridge, gather: u64, answered: Answered, now: Instant) -> bool {
        bridge.gathered(gather, Some(answered), now)
    }

    fn operation_answer(answer: &Value) -> Response {
        openapi::operation_answer(answer)
    }

    fn route(bridge: &mut Bridge, to: RequestId, request: &Request, found: &Found, now: Instant) {
        match found.route {
            Route::Document => {
                let file = found.params.first().copied();
                bridge.openapi_document(to, request, file, now)
            }
            Route::Operation => bridge.call_operation(to, request, &found.params, now),
            _ => {
                let key = match request.path().trim_start_matches('/') {
                    "resources" => "resources",
                    "prompts" => "prompts",
                    _ => "tools",
                };
                let every = (0..bridge.specs.len()).collect();
                let ask = bridge.traced_ask(to, request, key, now);
                bridge.gather_anew(to, key, every, ask, Finish::Tagged, now);
            }
        }
    }

    fn handle_timeout(bridge: &mut Bridge, now: Instant) {
        bridge.expire_gathers(now);
    }

    fn poll_timeout(bridge: &Bridge) -> Option<Instant> {
        bridge.gathers_deadline()
    }

    fn searches(bridge: &Bridge) -> SearchFigures {
        bridge.above.search.figures()
    }
}
