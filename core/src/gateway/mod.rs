//! Many bridged servers behind one address: the aggregate endpoint `/mcp`
//! (`aggregate/`), listings asked of every server at once (`gather.rs`,
//! over the shapes of `listing.rs`), the tools as an OpenAPI service
//! (`openapi.rs`), and a new configuration's servers sorted against the
//! old and applied (`reconfigure.rs`).
//!
//! [`Bridge`](crate::gateway::Bridge) is what a driver runs: it owns the bridge's `Registry` of
//! servers, children and sessions (`crate::bridge`), and claims the routes that span servers (`GET /tools`,
//! `/resources` and `/prompts` without `?server=` when several servers
//! are bridged, and the OpenAPI service's) before the registry sees a
//! request. The registry never names this module: what it needs of the
//! gateway (a request at `/mcp`, a member's message for an aggregate
//! session, a gather's part, a server that ended) it queues as an
//! `Event` among its outputs, which the bridge handles in their order
//! after every input, as if where each was queued.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use serde_json::{json, Value};

use crate::bridge::common::{error, missed, Reply};
use crate::bridge::routes::{self, Found, Miss, Route};
use crate::bridge::traced::Answering;
use crate::bridge::{
    BridgedServer, ChildId, ClientId, Event, Limits, Queued, Registry, Report, Routed, ServerSpec,
    SocketFrame,
};
use crate::error::Dialect;
use crate::http::Request;
use crate::provider::{ConnId, RequestId};
use crate::telemetry::{Span, Tracer};

pub mod aggregate;
mod gather;
mod listing;
mod openapi;
mod reconfigure;

pub use reconfigure::{diff, BadConfiguration, Reconfigured};

use aggregate::names::Names;
use listing::Finish;
use openapi::{arguments, no_such_tool, tool_name};
use reconfigure::check;

/// Every bridged server, its children and the clients' sessions (the
/// registry's), with the endpoints that span servers: what a driver runs.
pub struct Bridge {
    /// The servers, their children and the clients' sessions.
    registry: Registry,
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
    /// What the driver carries out, the registry's outputs and the
    /// gateway's in the order they were made.
    out: VecDeque<Routed>,
}

/// A route of the gateway's own.
enum Claim<'a> {
    /// `GET /tools` (`/resources`, `/prompts`) of every server.
    List(&'static str),
    /// `GET /openapi.json` or `/openapi/{file}`.
    Document(Option<&'a str>),
    /// `POST /tools/{server}/{tool}`.
    Operation(Vec<&'a str>),
}

impl Bridge {
    pub fn new(specs: Vec<ServerSpec>, limits: Limits, seed: [u8; 32], now: Instant) -> Self {
        Bridge {
            registry: Registry::new(specs, limits, seed, now),
            gathers: HashMap::new(),
            listings: HashMap::new(),
            late: BTreeMap::new(),
            fans: HashMap::new(),
            owners: aggregate::Owners::default(),
            names: Names::default(),
            directory: aggregate::names::Directory::default(),
            unbared: BTreeSet::new(),
            search: aggregate::search::Search::default(),
            out: VecDeque::new(),
        }
    }

    /// The bridge, recording spans with `tracer` (it records none
    /// without one).
    pub fn with_tracer(mut self, tracer: Tracer) -> Self {
        self.registry = self.registry.with_tracer(tracer);
        self
    }

    /// The next finished span, for the driver to export.
    pub fn poll_span(&mut self) -> Option<Span> {
        self.registry.poll_span()
    }

    /// Spans this bridge dropped because they were not drained in time.
    pub fn spans_dropped(&self) -> u64 {
        self.registry.spans_dropped()
    }

    /// The tracer, for a test to set up.
    #[cfg(test)]
    pub(crate) fn tracer_mut(&mut self) -> &mut Tracer {
        self.registry.tracer_mut()
    }

    // ---- getters ----

    /// The shape a refusal of a request for `path` takes: MCP clients
    /// read one of their transports' as JSON-RPC, the REST API's callers
    /// like the provider's own routes.
    pub fn refusal_dialect(path: &str) -> Dialect {
        Registry::refusal_dialect(path)
    }

    /// Every child there is, by id.
    pub fn children(&self) -> impl Iterator<Item = (ChildId, &BridgedServer)> {
        self.registry.children()
    }

    #[cfg(test)]
    pub(crate) fn child(&self, id: ChildId) -> Option<&BridgedServer> {
        self.registry.child(id)
    }

    pub fn sessions(&self) -> usize {
        self.registry.sessions()
    }

    /// The servers bridged now: the configured ones, then those added at
    /// run time.
    pub fn specs(&self) -> &[ServerSpec] {
        self.registry.specs()
    }

    /// The figures now.
    pub fn report(&self) -> Report {
        Report {
            searches: self.search.figures(),
            ..self.registry.report()
        }
    }

    // ---- input ----

    /// A request for a bridge path (one [`crate::bridge::guard`] knows):
    /// `/mcp` and `/mcp/NAME` (Streamable HTTP, both generations),
    /// `/mcp/NAME/sse` and `/mcp/NAME/messages` (HTTP+SSE), and the REST
    /// API, events and WebSocket of the registry; the routes that span
    /// servers are the gateway's, claimed first.
    pub fn handle_request(&mut self, conn: ConnId, request: Request, now: Instant) {
        let to = RequestId::of(conn, &request);
        let found = routes::find(&request.method, request.path());
        match found
            .as_ref()
            .ok()
            .and_then(|found| self.claim(&request, found))
        {
            Some(claim) => {
                self.registry.clock(now);
                self.serve(to, &request, claim, now);
            }
            None => self.registry.handle_request(to, &request, found, now),
        }
        self.handle_queued();
    }

    /// The connection closed, or its peer shut its sending side (an MCP
    /// client never half-closes to wait for an answer: it left). Its event
    /// stream ends, and each call it waited for is cancelled at the child
    /// and answered with an error. A Streamable HTTP session stays until
    /// `DELETE`; an HTTP+SSE one ends with its stream.
    pub fn handle_conn_closed(&mut self, conn: ConnId, now: Instant) {
        self.registry.handle_conn_closed(conn, now);
        self.handle_queued();
    }

    /// A text frame from a WebSocket client ([`SocketFrame::parse`], then
    /// [`Bridge::handle_socket_frame`]).
    pub fn handle_socket_text(&mut self, conn: ConnId, text: &str, now: Instant) {
        self.handle_socket_frame(conn, SocketFrame::parse(text), now);
    }

    /// A frame from a WebSocket client, parsed.
    pub fn handle_socket_frame(&mut self, conn: ConnId, frame: SocketFrame, now: Instant) {
        self.registry.handle_socket_frame(conn, frame, now);
        self.handle_queued();
    }

    /// A lazy server's last run, read back from `file` (its
    /// [`kept_file`](crate::bridge::kept_file)) where [`Routed::Keep`] had
    /// it written: its children answer from it while they are stopped. A
    /// file that is not a kept run is ignored (its server starts to list,
    /// as on a first run).
    pub fn handle_kept(&mut self, file: &str, contents: &[u8], now: Instant) {
        self.registry.handle_kept(file, contents, now);
        self.handle_queued();
    }

    pub fn handle_spawned(&mut self, child: ChildId, now: Instant) {
        self.registry.handle_spawned(child, now);
        self.handle_queued();
    }

    pub fn handle_spawn_failed(&mut self, child: ChildId, error: &str, now: Instant) {
        self.registry.handle_spawn_failed(child, error, now);
        self.handle_queued();
    }

    /// How a remote server is doing, as its client saw last.
    pub fn handle_remote_status(
        &mut self,
        child: ChildId,
        status: crate::upstream::Status,
        now: Instant,
    ) {
        self.registry.handle_remote_status(child, status, now);
        self.handle_queued();
    }

    /// A remote server answers the coming `initialize` with no session.
    pub fn handle_child_sessionless(&mut self, child: ChildId, now: Instant) {
        self.registry.handle_child_sessionless(child, now);
        self.handle_queued();
    }

    pub fn handle_child_line<'a>(
        &mut self,
        child: ChildId,
        line: impl Into<crate::mcp::Line<'a>>,
        now: Instant,
    ) {
        self.registry.handle_child_line(child, line, now);
        self.handle_queued();
    }

    /// The child exited; `said` is the end of what it wrote on stderr
    /// (empty when unknown), for the clients' error.
    pub fn handle_child_exit(&mut self, child: ChildId, said: &str, now: Instant) {
        self.registry.handle_child_exit(child, said, now);
        self.handle_queued();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.registry.handle_timeout(now);
        self.handle_queued();
    }

    /// `conn` has too much unread: its event stream ends (the session
    /// holds what follows, boundedly, for a reconnect with
    /// `Last-Event-ID`), its WebSocket closes, and a call whose answer
    /// streams to it (its progress first) is cancelled at the child.
    pub fn handle_slow_conn(&mut self, conn: ConnId, now: Instant) {
        self.registry.handle_slow_conn(conn, now);
        self.handle_queued();
    }

    /// How the login [`Routed::Login`] asked for began: the page to open
    /// (the user signs in there, and the server takes the redirect), or
    /// why it could not.
    pub fn handle_login_started(&mut self, to: RequestId, started: Result<String, String>) {
        self.registry.handle_login_started(to, started);
        self.handle_queued();
    }

    // ---- commands ----

    /// Stops every child (the process is shutting down).
    pub fn stop(&mut self, now: Instant) {
        self.registry.stop(now);
        self.handle_queued();
    }

    /// Names on the aggregate endpoint `/mcp` joined by `names`'
    /// separator instead of `__`, and no longer than its longest (the
    /// aggregate sessions told their lists changed, when they did).
    pub fn set_names(&mut self, names: Names) {
        if self.names != names {
            self.names = names;
            self.aggregates_changed();
            self.handle_queued();
        }
    }

    /// Takes a new configuration: `specs`, every server it names, and
    /// `limits`, which sessions follow at once and children started from
    /// now on (a running child keeps those it started with). A server that
    /// was removed or changed ends (`Registry::retire`); the outputs to
    /// carry out (streams that end, children to stop) are queued for
    /// [`Bridge::poll_output`]. A bad configuration changes nothing.
    pub fn reconfigure(
        &mut self,
        specs: Vec<ServerSpec>,
        limits: Limits,
        now: Instant,
    ) -> Result<Reconfigured, BadConfiguration> {
        check(&specs)?;
        let diff = diff(self.registry.specs(), self.registry.configured(), &specs);
        for name in diff.removed.iter().chain(&diff.changed) {
            self.registry.retire(name, now);
        }
        // What ending them told the gateway is done before the specs change.
        self.handle_queued();
        let taken: Vec<ServerSpec> = specs
            .into_iter()
            .filter(|s| !diff.shadowed.contains(&s.name))
            .collect();
        self.registry.configure(taken, limits);
        if !diff.added.is_empty() {
            self.aggregates_changed();
        }
        self.handle_queued();
        Ok(diff)
    }

    // ---- output ----

    pub fn poll_timeout(&self) -> Option<Instant> {
        let registry = self.registry.poll_timeout();
        registry.into_iter().chain(self.gathers_deadline()).min()
    }

    pub fn poll_output(&mut self) -> Option<Routed> {
        self.out.pop_front()
    }

    /// Takes what the registry queued: its outputs for the driver, and its
    /// events, each handled where it was queued (what the handling queues
    /// comes before what was queued after the event).
    fn handle_queued(&mut self) {
        while let Some(queued) = self.registry.poll_queued() {
            match queued {
                Queued::Out(routed) => self.out.push_back(routed),
                Queued::Up(event) => {
                    let rest = self.registry.set_aside();
                    self.handle_event(event);
                    self.registry.requeue(rest);
                }
            }
        }
    }

    /// What the registry tells the gateway.
    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Open {
                to,
                id,
                params,
                now,
            } => self.open_aggregate(to, id, params, now),
            Event::Message {
                to,
                session,
                message,
                now,
            } => self.aggregate_message(to, &session, message, now),
            Event::Stateless {
                to,
                id,
                method,
                params,
                now,
            } => self.aggregate_stateless(to, id, method, params, now),
            Event::Said {
                session,
                child,
                client,
                message,
                now,
            } => {
                if let Some(message) = self.member_said(&session, child, client, message, now) {
                    self.registry.tell_session(&session, message);
                }
            }
            Event::SessionEnded { session } => self.end_fan(&session),
            Event::Retired { server, now } => self.drop_members(&server, now),
            Event::ServersChanged => self.aggregates_changed(),
            Event::Gathered { answered, now } => {
                let (child, client, ephemeral) =
                    (answered.child, answered.client, answered.ephemeral);
                let goes_on = self.gathered(answered.gather, Some(answered), now);
                if ephemeral && !goes_on {
                    self.registry.release_client(child, client, now);
                }
            }
            Event::Operation { to, answer } => {
                self.registry
                    .respond(to, openapi::operation_answer(&answer));
            }
            Event::Tick(now) => self.expire_gathers(now),
        }
    }

    // ---- the routes that span servers ----

    /// The gateway's route `request` is for, if it is one of them.
    fn claim<'a>(&self, request: &Request, found: &Found<'a>) -> Option<Claim<'a>> {
        let params = &found.params;
        match found.route {
            Route::Document => Some(Claim::Document(params.first().copied())),
            Route::Operation => Some(Claim::Operation(params.to_vec())),
            Route::List if routes::query(request, "server").is_none() && self.specs().len() > 1 => {
                let key = match request.path().trim_start_matches('/') {
                    "resources" => "resources",
                    "prompts" => "prompts",
                    _ => "tools",
                };
                Some(Claim::List(key))
            }
            _ => None,
        }
    }

    /// A request for one of the gateway's routes.
    fn serve(&mut self, to: RequestId, request: &Request, claim: Claim, now: Instant) {
        match claim {
            Claim::Document(file) => self.openapi_document(to, request, file, now),
            Claim::Operation(params) => self.call_operation(to, request, &params, now),
            Claim::List(key) => {
                let every = (0..self.specs().len()).collect();
                let ask = self.traced_ask(to, request, key, now);
                self.gather_anew(to, key, every, ask, Finish::Tagged, now);
            }
        }
    }

    /// `GET /openapi.json` (no `file`), or `GET /openapi/{file}` (`file` is
    /// `NAME.json`): the document of every server, or of server `NAME`.
    pub(super) fn openapi_document(
        &mut self,
        to: RequestId,
        request: &Request,
        file: Option<&str>,
        now: Instant,
    ) {
        let Some(file) = file else {
            let every = (0..self.registry.specs().len()).collect();
            let ask = self.traced_ask(to, request, "tools", now);
            let finish = Finish::Document { server: None };
            return self.gather_anew(to, "tools", every, ask, finish, now);
        };
        let Some(name) = file.strip_suffix(".json") else {
            return self
                .registry
                .respond(to, error(404, "a server's document is /openapi/NAME.json"));
        };
        match self.registry.spec_named(Some(name)) {
            Ok(spec) => {
                let server = Some(name.to_owned());
                let ask = self.traced_ask(to, request, "tools", now);
                let finish = Finish::Document { server };
                self.gather_anew(to, "tools", vec![spec], ask, finish, now);
            }
            Err(response) => self.registry.respond(to, response),
        }
    }

    /// `POST /tools/{server}/{tool}`: the server's list is read (`gather`),
    /// then the tool called by the same client ([`Bridge::call_listed`]).
    /// A tool the server's filter leaves out is refused here, before the
    /// server is even started.
    pub(super) fn call_operation(
        &mut self,
        to: RequestId,
        request: &Request,
        params: &[&str],
        now: Instant,
    ) {
        let [server, segment] = params else {
            return self.registry.respond(to, missed(Miss::Path));
        };
        let spec = match self.registry.spec_named(Some(*server)) {
            Ok(spec) => spec,
            Err(response) => return self.registry.respond(to, response),
        };
        let Some(tool) = tool_name(segment) else {
            return self.registry.respond(to, no_such_tool(server, segment));
        };
        if !self
            .registry
            .specs()
            .get(spec)
            .is_some_and(|s| s.tools.allows(&tool))
        {
            return self.registry.respond(to, no_such_tool(server, &tool));
        }
        let arguments = match arguments(&request.body) {
            Ok(arguments) => arguments,
            Err(response) => return self.registry.respond(to, response),
        };
        let mut params = json!({"name": tool, "arguments": arguments});
        let (method, http) = ("tools/call", Answering::Http(to));
        self.registry
            .traces()
            .request(http, Some(request), method, None, &mut params, None, now);
        // The list read first is part of the call: asked under its span.
        let ask = match params.get("_meta") {
            Some(meta) => json!({"_meta": meta}),
            None => Value::Null,
        };
        let finish = Finish::Call {
            server: (*server).to_owned(),
            tool,
            params,
        };
        self.gather_anew(to, "tools", vec![spec], ask, finish, now);
    }

    /// Starts the span of `request`, a listing of `key` answered from
    /// every server's list (when tracing), and gives what to ask each
    /// server with: its `_meta`, so each server's CLIENT span is a child
    /// of it; `Value::Null` when not tracing.
    pub(super) fn traced_ask(
        &mut self,
        to: RequestId,
        request: &Request,
        key: &str,
        now: Instant,
    ) -> Value {
        let mut ask = json!({});
        let method = format!("{key}/list");
        self.registry.traces().request(
            Answering::Http(to),
            Some(request),
            &method,
            None,
            &mut ask,
            None,
            now,
        );
        match ask.get("_meta") {
            Some(_) => ask,
            None => Value::Null,
        }
    }

    /// Calls `tool`, seen in `server`'s list, by `asker`, the client that
    /// read the list (and closes with the call's answer), or, when the
    /// list was a kept one, by a client of its own. Whether `asker` goes
    /// on.
    pub(super) fn call_listed(
        &mut self,
        asker: Option<(ChildId, ClientId)>,
        to: RequestId,
        server: &str,
        params: Value,
        now: Instant,
    ) -> bool {
        let Some(caller) = asker else {
            let caller = self.registry.spec_named(Some(server)).and_then(|spec| {
                let caller = self.registry.ephemeral_client(spec, false, now);
                caller.map_err(|full| error(503, &full.message()))
            });
            match caller {
                Ok(caller) => {
                    self.registry
                        .ask(caller, to, "tools/call", params, Reply::Operation, now)
                }
                Err(response) => self.registry.respond(to, response),
            }
            return false;
        };
        self.registry
            .ask(caller, to, "tools/call", params, Reply::Operation, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::provider::Output;

    #[test]
    fn what_handling_an_event_outputs_comes_where_the_event_was_queued() {
        let now = Instant::now();
        let spec = ServerSpec::new("files", vec!["files-mcp".into()]);
        let mut bridge = Bridge::new(vec![spec], Limits::default(), [1; 32], now);
        let to = |conn| RequestId {
            conn: ConnId(conn),
            seq: 0,
        };
        let login = |conn| Routed::Login {
            to: to(conn),
            server: "files".to_owned(),
        };
        bridge.registry.push(login(1));
        let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": []}});
        bridge.registry.up(Event::Operation { to: to(2), answer });
        bridge.registry.push(login(3));
        bridge.handle_queued();
        let conns: Vec<u64> = std::iter::from_fn(|| bridge.poll_output())
            .map(|routed| match routed {
                Routed::Login { to, .. } | Routed::Http(Output::Respond { to, .. }) => to.conn.0,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(conns, [1, 2, 3]);
    }
}
