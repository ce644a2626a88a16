//! Many clients sharing one child: who asked what, under which id.
//!
//! Every request written to the child carries an id the bridge assigns (a
//! counter that never repeats for the bridge's life), so two clients using
//! the same id cannot see each other's answers; the client's own id is put
//! back on the answer. Progress tokens and the ids of the child's own
//! requests to clients are remapped the same way. Every map here shrinks
//! when a call ends or a client closes, and none grows past
//! `max_in_flight`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use super::filter::ToolFilter;
use super::generation::{self, Declared, Generation, Outcome, Round};
use super::relisten::Relisten;
use super::traced::{self, About, Failure, Lent};
use super::verbatim::{FromClient, Verbatim};
use super::{BridgeOutput, ClientId, INTERNAL_ERROR, REQUEST_TIMEOUT, SERVER_ERROR};
use crate::mcp::{self, Message, Params};
use crate::telemetry::{Kind, Span, SpanContext, Tracer};
use crate::time::later;
use crate::upstream::Outline;

/// The protocol revision asked of the child when no client named one.
pub(crate) const DEFAULT_PROTOCOL_VERSION: &str = "2025-11-25";

/// What may happen to a client request now, as the lifecycle decides.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Route {
    /// The child is running: write it at once (at this instant).
    Send(Instant),
    /// The child is not ready: hold it until the handshake is done.
    Queue,
    /// Answer it at once with this error.
    Refuse(String),
}

/// What a line from the child means for the lifecycle.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FromChild {
    Nothing,
    /// The bridge's `initialize` was answered and the result cached.
    Initialized,
    /// The bridge's `initialize` was answered with an error.
    InitializeFailed(String),
    /// The bridge's request for list `key` (see [`Mux::ask_list`]) was
    /// answered.
    Listed(&'static str, Result<Value, Value>),
}

pub(crate) struct Mux {
    /// Names the server in errors.
    name: String,
    max_in_flight: usize,
    next_client: u64,
    /// The next id for a request to the child.
    next_id: u64,
    next_token: u64,
    /// The next id for a child's request passed on to a client.
    next_ask: u64,
    /// Requests to the child with an id below this were sent before its
    /// last answer: they cannot show it hung. Only an answer counts as a
    /// sign of life (the child reads its input); a child that stopped
    /// reading may still log notifications.
    heard_from: u64,
    /// Lines from the child that were not JSON-RPC: the first is a
    /// warning, the rest (a child printing to stdout) only debug output.
    bad_lines: u64,
    clients: BTreeSet<ClientId>,
    /// What each client said of itself in its `initialize`: the child's
    /// requests (`sampling`, `roots`, `elicitation`…) go only to a client
    /// that declared it can answer, and a stateless child gets it in every
    /// request's envelope.
    declared: BTreeMap<ClientId, Declared>,
    /// One child for every client (not one per session).
    shared: bool,
    /// The tools its clients may see and call.
    tools: ToolFilter,
    /// Client calls waiting for the handshake, oldest first.
    queue: VecDeque<Call>,
    /// Client calls written to the child, by child id (so in the order
    /// sent).
    calls: BTreeMap<u64, Sent>,
    /// The bridge's own requests to the child, by child id.
    internal: BTreeMap<u64, Internal>,
    /// Remapped progress tokens: the client and its own token.
    tokens: BTreeMap<u64, (ClientId, Value)>,
    /// The child's requests waiting for a client's answer, by the id the
    /// client sees.
    asks: BTreeMap<u64, Ask>,
    /// Calls a stateless child answered with `input_required`, waiting for
    /// their client's answers before they are retried.
    rounds: BTreeMap<u64, (Caller, Round)>,
    next_round: u64,
    /// Who is subscribed to each resource.
    subscribers: BTreeMap<String, BTreeSet<ClientId>>,
    /// The `initialize` params the child gets on every start.
    init_params: Option<Value>,
    /// The child's `initialize` result, replayed to every client.
    init_result: Option<Value>,
    /// What the child speaks, learned at each start's handshake.
    generation: Generation,
    /// Counts the child's handshakes and its `list_changed`
    /// notifications: a listing kept from an earlier count is stale.
    lists: u64,
    /// Why the child refused `initialize`, while `server/discover` tells
    /// whether it speaks the stateless generation instead.
    refused_initialize: Option<String>,
    /// Whether the server answered `initialize` with no session to keep
    /// (a remote server's stateless transport): it has no way to ask a
    /// client anything there, so the stateless revision is tried next.
    sessionless: bool,
    /// Whether the stateless revision is asked for first, before the
    /// session handshake, whatever the server keeps: the child of a remote
    /// server that serves the clients of that revision (see
    /// [`Mux::prefer_stateless`]).
    modern: bool,
    /// The `initialize` result kept while `server/discover` is tried on a
    /// sessionless server, in case it speaks no stateless revision.
    upgrading: Option<Value>,
    /// The registry's tracer, while it is lent for an input: each call
    /// written to the child then gets a CLIENT span (see `traced`).
    lent: Option<Lent>,
    /// Whether the server is a remote one, reached over the network
    /// rather than a child's stdio.
    remote: bool,
    /// A stateless remote server's listen stream, which brings what it
    /// says of its own (see `relisten`).
    relisten: Relisten,
}

/// A client request: who to answer and what it holds on to.
#[derive(Debug)]
struct Caller {
    client: ClientId,
    /// The client's own id, put back on the answer.
    id: Value,
    token: Option<u64>,
    /// The resource this call subscribed the client to, undone if it fails.
    subscribed: Option<String>,
    /// The request came in the stateless generation's envelope: its
    /// answer goes back as the child gave it.
    enveloped: bool,
    /// A `tools/list` whose answer the server's tool filter applies to.
    filtered: bool,
}

#[derive(Debug)]
struct Call {
    caller: Caller,
    method: String,
    params: Params,
    /// The request as the client wrote it, while its params are all the
    /// child needs.
    verbatim: Option<Verbatim>,
}

#[derive(Debug)]
struct Sent {
    caller: Caller,
    sent_at: Instant,
    /// When it was sent, or its last progress came: a call that shows
    /// none for long enough times out.
    progressed_at: Instant,
    /// The method and params a session client sent a stateless child, kept
    /// to retry the call after an `input_required` answer.
    request: Option<(String, Value)>,
    /// Its CLIENT span, when traced: from when it was written until its
    /// answer came. Boxed: a call is moved in and out of `calls`, and most
    /// are not traced.
    span: Option<Box<Span>>,
}

/// However much progress a call shows, it may last at most this many of
/// its timeouts in all: a server that reports progress forever would
/// otherwise hold the call, and what it holds, for good (the MCP spec's
/// maximum regardless of progress).
pub(crate) const MOST_TIMEOUTS: u32 = 10;

impl Sent {
    /// When the call times out: `timeout` after it was sent or last showed
    /// progress, and never later than [`MOST_TIMEOUTS`] of them after it
    /// was sent.
    fn due(&self, timeout: Duration) -> Instant {
        let most = later(self.sent_at, timeout.saturating_mul(MOST_TIMEOUTS));
        later(self.progressed_at, timeout).min(most)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Initialize,
    /// `server/discover`, asked of a child that refused `initialize`.
    Discover,
    /// `server/discover`, asked before any `initialize` by the child that
    /// speaks for the stateless revision's clients (`again`: asked a
    /// second time, at a revision the server named as one it speaks).
    DiscoverFirst {
        again: bool,
    },
    Ping,
    /// A subscription renewed after a restart, or released when its last
    /// subscriber closed.
    Subscription,
    /// A list of a lazy server's, to keep (see `lazy`).
    Listing(&'static str),
    /// The logging level a client set while a lazy server was stopped.
    Level,
    /// The bridge's own `subscriptions/listen` at a stateless remote
    /// server: answered only when the stream ends.
    Listen,
}

#[derive(Debug)]
struct Internal {
    purpose: Purpose,
    sent_at: Instant,
}

/// A request passed on to a client.
#[derive(Debug)]
struct Ask {
    client: ClientId,
    from: Asker,
}

/// Who waits for a client's answer.
#[derive(Debug)]
enum Asker {
    /// The child, under its own id, put back on the answer.
    Child(Value),
    /// An `input_required` round, under the key the child gave.
    Round(u64, String),
}

impl Mux {
    /// `shared`: the child serves every client, so its handshake declares
    /// what any of them may answer (see [`initialize_params`]).
    pub(crate) fn new(name: &str, max_in_flight: usize, shared: bool, tools: ToolFilter) -> Self {
        Mux {
            name: name.to_owned(),
            shared,
            tools,
            max_in_flight,
            next_client: 1,
            next_id: 1,
            next_token: 1,
            next_ask: 1,
            heard_from: 0,
            bad_lines: 0,
            clients: BTreeSet::new(),
            queue: VecDeque::new(),
            calls: BTreeMap::new(),
            declared: BTreeMap::new(),
            internal: BTreeMap::new(),
            tokens: BTreeMap::new(),
            asks: BTreeMap::new(),
            rounds: BTreeMap::new(),
            next_round: 1,
            subscribers: BTreeMap::new(),
            init_params: None,
            init_result: None,
            generation: Generation::Session,
            lists: 0,
            refused_initialize: None,
            sessionless: false,
            modern: false,
            upgrading: None,
            lent: None,
            remote: false,
            relisten: Relisten::default(),
        }
    }

    /// The server is a remote one, reached over the network.
    pub(crate) fn over_network(&mut self) {
        self.remote = true;
    }

    /// Traces the calls written during the input at `now` with `tracer`.
    pub(crate) fn lend_tracer(&mut self, tracer: Tracer, now: Instant) {
        self.lent = Some(Lent { tracer, now });
    }

    /// The tracer lent, given back.
    pub(crate) fn take_tracer(&mut self) -> Option<Tracer> {
        self.lent.take().map(|lent| lent.tracer)
    }

    /// The server's answer to the coming `initialize` keeps no session.
    pub(crate) fn handle_sessionless(&mut self) {
        self.sessionless = true;
    }

    /// Speak the stateless revision to the server whenever it offers it,
    /// even one that keeps sessions: this child's clients speak it too.
    pub(crate) fn prefer_stateless(&mut self) {
        self.modern = true;
    }

    // Getters.

    pub(crate) fn clients(&self) -> usize {
        self.clients.len()
    }

    pub(crate) fn has_client(&self, client: ClientId) -> bool {
        self.clients.contains(&client)
    }

    /// Client calls sent, queued, or waiting for their client's input.
    pub(crate) fn in_flight(&self) -> usize {
        self.calls.len() + self.queue.len() + self.rounds.len()
    }

    pub(crate) fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// What a listing kept from the child is checked against: it changes
    /// with each handshake and each `list_changed` the child sends.
    pub(crate) fn lists(&self) -> u64 {
        self.lists
    }

    pub(crate) fn initialize_result(&self) -> Option<&Value> {
        self.init_result.as_ref()
    }

    /// A lazy server's `initialize` result from its last run, replayed to
    /// clients until a handshake gives the child's own.
    pub(crate) fn recall_initialize(&mut self, result: Value) {
        self.init_result.get_or_insert(result);
    }

    /// No client, and nothing for the child to do for one.
    pub(crate) fn is_idle(&self) -> bool {
        self.clients.is_empty() && self.in_flight() == 0 && self.asks.is_empty()
    }

    /// When the oldest client call still unanswered was sent, among those
    /// sent after the child's last answer: how long the child has answered
    /// nothing while owing a call an answer.
    pub(crate) fn call_silent_since(&self) -> Option<Instant> {
        Some(self.calls.range(self.heard_from..).next()?.1.sent_at)
    }

    /// When the next call still waiting for the child times out, each
    /// allowed `timeout` without progress (see [`Sent::due`]).
    pub(crate) fn next_call_timeout(&self, timeout: Duration) -> Option<Instant> {
        self.calls.values().map(|sent| sent.due(timeout)).min()
    }

    /// Calls that have shown no progress for `timeout` end: the child is
    /// told each is cancelled (so what it holds is let go), and its client
    /// gets a timeout error, `message`.
    pub(crate) fn time_out(
        &mut self,
        now: Instant,
        timeout: Duration,
        message: &str,
        out: &mut VecDeque<BridgeOutput>,
    ) {
        let late: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, sent)| sent.due(timeout) <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(sent) = self.calls.remove(&id) {
                let params = json!({"requestId": id, "reason": message});
                out.push_back(child_notification("notifications/cancelled", params));
                let failure = Failure::error(Some(REQUEST_TIMEOUT), message);
                self.end_call(sent.span, Some(failure));
                let error = json!({"code": REQUEST_TIMEOUT, "message": message});
                self.finish(sent.caller, Err(&error), out);
            }
        }
    }

    /// When the oldest of the bridge's own requests (a `ping`) still
    /// unanswered was sent, among those sent after the child's last answer.
    pub(crate) fn ping_silent_since(&self) -> Option<Instant> {
        let waiting = self.internal.range(self.heard_from..);
        // A listen stream is answered only when it ends.
        let mut owed = waiting.filter(|(_, i)| i.purpose != Purpose::Listen);
        Some(owed.next()?.1.sent_at)
    }

    #[cfg(test)]
    pub(crate) fn sizes(&self) -> [usize; 7] {
        [
            self.queue.len(),
            self.calls.len(),
            self.internal.len(),
            self.tokens.len(),
            self.asks.len(),
            self.subscribers.len(),
            self.rounds.len(),
        ]
    }

    // Input from clients.

    pub(crate) fn open_client(&mut self) -> ClientId {
        let client = ClientId(self.next_client);
        self.next_client += 1;
        self.clients.insert(client);
        client
    }

    /// Forgets a client: its calls are cancelled at the child, the child's
    /// requests to it are refused, its subscriptions released.
    pub(crate) fn close_client(
        &mut self,
        client: ClientId,
        route: &Route,
        out: &mut VecDeque<BridgeOutput>,
    ) {
        if !self.clients.remove(&client) {
            return;
        }
        self.declared.remove(&client);
        let rounds: Vec<u64> = self
            .rounds
            .iter()
            .filter(|(_, (caller, _))| caller.client == client)
            .map(|(n, _)| *n)
            .collect();
        for n in rounds {
            if let Some((caller, _)) = self.rounds.remove(&n) {
                self.forget(&caller);
            }
        }
        let (gone, kept): (VecDeque<Call>, VecDeque<Call>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|call| call.caller.client == client);
        self.queue = kept;
        for call in gone {
            self.forget(&call.caller);
        }
        let sent: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, sent)| sent.caller.client == client)
            .map(|(id, _)| *id)
            .collect();
        for id in sent {
            if let Some(sent) = self.calls.remove(&id) {
                self.forget(&sent.caller);
                self.end_call(sent.span, Some(Failure::cancelled("the client closed")));
                let params = json!({"requestId": id, "reason": "the client closed"});
                out.push_back(child_notification("notifications/cancelled", params));
            }
        }
        let asked: Vec<u64> = self
            .asks
            .iter()
            .filter(|(_, ask)| ask.client == client)
            .map(|(id, _)| *id)
            .collect();
        for id in asked {
            if let Some(Ask {
                from: Asker::Child(child_id),
                ..
            }) = self.asks.remove(&id)
            {
                let message = "the client that was asked went away";
                out.push_back(child_answer(mcp::error(
                    &child_id,
                    INTERNAL_ERROR,
                    message,
                    None,
                )));
            }
        }
        let mut released = Vec::new();
        self.subscribers.retain(|uri, who| {
            let last = who.remove(&client) && who.is_empty();
            if last {
                released.push(uri.clone());
            }
            !who.is_empty()
        });
        if let Route::Send(now) = *route {
            if self.listens_upstream() {
                return self.renew_listen(now, out);
            }
            for uri in released {
                self.send_internal(
                    Purpose::Subscription,
                    "resources/unsubscribe",
                    json!({"uri": uri}),
                    now,
                    out,
                );
            }
        }
    }

    pub(crate) fn handle_client_message(
        &mut self,
        client: ClientId,
        message: impl Into<FromClient>,
        route: Route,
        out: &mut VecDeque<BridgeOutput>,
    ) {
        let FromClient { message, verbatim } = message.into();
        if !self.clients.contains(&client) {
            tracing::debug!(server = %self.name, ?client, "message from a closed client dropped");
            return;
        }
        match message {
            Message::Request { id, method, params } => {
                let call = (method, params, verbatim);
                self.handle_client_request(client, id, call, route, out)
            }
            Message::Notification { method, params } => match method.as_str() {
                // The bridge did the handshake with the child itself.
                "notifications/initialized" => {}
                "notifications/cancelled" => self.cancel(client, params.into(), out),
                _ => match route {
                    Route::Send(_) => out.push_back(child_notification(&method, params)),
                    Route::Queue | Route::Refuse(_) => {
                        tracing::debug!(server = %self.name, %method, "notification for a child not running dropped")
                    }
                },
            },
            Message::Response { id, outcome } => self.answer_ask(client, &id, outcome, route, out),
        }
    }

    fn handle_client_request(
        &mut self,
        client: ClientId,
        id: Value,
        (method, mut params, verbatim): (String, Params, Option<Verbatim>),
        route: Route,
        out: &mut VecDeque<BridgeOutput>,
    ) {
        let reply = |message: String, out: &mut VecDeque<BridgeOutput>| {
            out.push_back(BridgeOutput::ToClient {
                client,
                message,
                answers: Some(mcp::id_text(&id)),
            });
        };
        let send_at = match route {
            Route::Refuse(reason) => {
                return reply(mcp::error(&id, SERVER_ERROR, &reason, None), out)
            }
            Route::Send(now) => Some(now),
            Route::Queue => None,
        };
        if method == "tools/call" && !self.tools.is_open() {
            let tool = params.name().as_str().unwrap_or_default();
            if !self.tools.allows(tool) {
                let message = format!("Unknown tool: {tool}");
                return reply(mcp::error(&id, mcp::INVALID_PARAMS, &message, None), out);
            }
        }
        let uri = match method.as_str() {
            "resources/subscribe" | "resources/unsubscribe" => {
                params.get("uri").and_then(Value::as_str).map(str::to_owned)
            }
            _ => None,
        };
        if method == "initialize" {
            self.declared
                .insert(client, Declared::from_initialize(&params));
        }
        // Answered here, without the child.
        match (method.as_str(), &uri) {
            ("initialize", _) => {
                if let Some(cached) = self.initialize_answer(&params) {
                    // Answered from a lazy server's last run before any
                    // handshake: the child's is then this client's.
                    if self.init_params.is_none() {
                        self.init_params = Some(initialize_params(Some(&params), self.shared));
                    }
                    return reply(mcp::result(&id, cached), out);
                }
            }
            ("resources/subscribe", Some(uri)) => {
                if let Some(who) = self.subscribers.get_mut(uri) {
                    who.insert(client);
                    return reply(mcp::result(&id, json!({})), out);
                }
                if self.subscribers.len() >= self.max_in_flight {
                    let message = format!(
                        "too many resource subscriptions on MCP server '{}'",
                        self.name
                    );
                    return reply(mcp::error(&id, SERVER_ERROR, &message, None), out);
                }
            }
            ("resources/unsubscribe", Some(uri)) => {
                let others = match self.subscribers.get(uri) {
                    Some(who) if who.contains(&client) => who.len() > 1,
                    _ => return reply(mcp::result(&id, json!({})), out),
                };
                // Only the last subscriber's unsubscribe reaches a running
                // child; a child not running has none to release.
                if others || send_at.is_none() {
                    self.unsubscribe_locally(uri, client);
                    return reply(mcp::result(&id, json!({})), out);
                }
            }
            _ => {}
        }
        if self.in_flight() >= self.max_in_flight {
            let message = format!("too many calls in flight to MCP server '{}'", self.name);
            return reply(mcp::error(&id, SERVER_ERROR, &message, None), out);
        }
        let mut subscribed = None;
        match (method.as_str(), uri) {
            ("initialize", _) if self.init_params.is_none() => {
                self.init_params = Some(initialize_params(Some(&params), self.shared));
            }
            ("resources/subscribe", Some(uri)) => {
                self.subscribers
                    .entry(uri.clone())
                    .or_default()
                    .insert(client);
                subscribed = Some(uri);
            }
            ("resources/unsubscribe", Some(uri)) => self.unsubscribe_locally(&uri, client),
            _ => {}
        }
        let token = self.remap_token(client, &mut params);
        let enveloped = generation::is_enveloped(params.meta());
        if enveloped {
            // A stateless client says what it can do in every request.
            self.declared
                .insert(client, Declared::from_envelope(&params));
        }
        let filtered = method == "tools/list" && !self.tools.is_open();
        let call = Call {
            caller: Caller {
                client,
                id,
                token,
                subscribed,
                enveloped,
                filtered,
            },
            method,
            params,
            verbatim,
        };
        match send_at {
            Some(now) => self.send(call, now, out),
            None => self.queue.push_back(call),
        }
    }

    /// A client gave up on one of its calls: the child is told under its
    /// own id, and the call is forgotten so a late answer is dropped.
    fn cancel(&mut self, client: ClientId, mut params: Value, out: &mut VecDeque<BridgeOutput>) {
        let Some(request_id) = params.get("requestId").cloned() else {
            return;
        };
        let mine = |caller: &Caller| caller.client == client && caller.id == request_id;
        let sent = self
            .calls
            .iter()
            .find(|(_, sent)| mine(&sent.caller))
            .map(|(id, _)| *id);
        if let Some(child_id) = sent {
            if let Some(sent) = self.calls.remove(&child_id) {
                self.forget(&sent.caller);
                self.end_call(sent.span, Some(Failure::cancelled("the client cancelled")));
            }
            if let Some(object) = params.as_object_mut() {
                object.insert("requestId".into(), json!(child_id));
            }
            out.push_back(child_notification("notifications/cancelled", params));
        } else if let Some(at) = self.queue.iter().position(|call| mine(&call.caller)) {
            if let Some(call) = self.queue.remove(at) {
                self.forget(&call.caller);
            }
        }
    }

    /// A client answered one of the child's requests, or one of an
    /// `input_required` round.
    fn answer_ask(
        &mut self,
        client: ClientId,
        id: &Value,
        outcome: Result<Value, Value>,
        route: Route,
        out: &mut VecDeque<BridgeOutput>,
    ) {
        let ask = id.as_u64().and_then(|n| match self.asks.get(&n) {
            Some(ask) if ask.client == client => self.asks.remove(&n),
            _ => None,
        });
        match ask.map(|ask| ask.from) {
            Some(Asker::Child(child_id)) => {
                out.push_back(child_answer(mcp::response(&child_id, outcome.as_ref())))
            }
            Some(Asker::Round(round, key)) => self.answer_round(round, key, outcome, route, out),
            None => {
                tracing::debug!(server = %self.name, %id, "answer to no pending request dropped")
            }
        }
    }

    /// One answer of an `input_required` round: the call is retried once
    /// every request is answered, and fails with the client's error if one
    /// is refused.
    fn answer_round(
        &mut self,
        round: u64,
        key: String,
        outcome: Result<Value, Value>,
        route: Route,
        out: &mut VecDeque<BridgeOutput>,
    ) {
        let of_round = |ask: &Ask| matches!(ask.from, Asker::Round(r, _) if r == round);
        let Some((_, waiting)) = self.rounds.get_mut(&round) else {
            return;
        };
        match outcome {
            Ok(answer) => {
                waiting.answers.insert(key, answer);
                if self.asks.values().any(of_round) {
                    return;
                }
            }
            Err(error) => {
                self.asks.retain(|_, ask| !of_round(ask));
                if let Some((caller, _)) = self.rounds.remove(&round) {
                    self.finish(caller, Err(&error), out);
                }
                return;
            }
        }
        let Some((caller, done)) = self.rounds.remove(&round) else {
            return;
        };
        let call = retry(caller, done);
        match route {
            Route::Send(now) => self.send(call, now, out),
            Route::Queue => self.queue.push_back(call),
            Route::Refuse(reason) => {
                let error = json!({"code": SERVER_ERROR, "message": reason});
                self.finish(call.caller, Err(&error), out);
            }
        }
    }

    /// The cached `initialize` result, as this client's `initialize` is
    /// answered. A session child speaks only the version it answered with,
    /// whatever this client asked; for a stateless child the bridge speaks
    /// each session client's version itself.
    fn initialize_answer(&self, asked: &Value) -> Option<Value> {
        let mut cached = self.init_result.clone()?;
        if self.generation == Generation::Stateless {
            let version = asked["protocolVersion"].as_str().unwrap_or_default();
            cached["protocolVersion"] = json!(mcp::negotiate(version));
        }
        Some(cached)
    }

    // Input from the child.

    pub(crate) fn handle_child_line<'a>(
        &mut self,
        line: impl Into<mcp::Line<'a>>,
        now: Instant,
        out: &mut VecDeque<BridgeOutput>,
    ) -> FromChild {
        let line = line.into();
        if let Some(answer) = line.answer() {
            self.heard_from = self.next_id;
            // A client's call needing no translation (nor a tool filter):
            // its answer goes on as the child wrote it, under the client's id.
            let plain = |sent: &Sent| sent.request.is_none() && !sent.caller.filtered;
            if self.calls.get(&answer.id).is_some_and(plain) {
                if let Some(sent) = self.calls.remove(&answer.id) {
                    let failure =
                        (sent.span.as_ref()).and_then(|_| Failure::of_raw(answer.outcome));
                    self.end_call(sent.span, failure);
                    let failed = answer.outcome.is_err();
                    let message = |id: &Value| mcp::response_text(id, answer.outcome);
                    self.finish_with(sent.caller, failed, message, out);
                    return FromChild::Nothing;
                }
            }
        }
        let line = line.text;
        let message = match mcp::parse(line) {
            Ok(message) => message,
            Err(invalid) => {
                self.bad_lines += 1;
                if self.bad_lines == 1 {
                    tracing::warn!(server = %self.name, "a line from the MCP server is not JSON-RPC and was ignored (stdout is for protocol messages only): {}", invalid.message);
                } else {
                    tracing::debug!(server = %self.name, "line from the MCP server ignored: {}", invalid.message);
                }
                return FromChild::Nothing;
            }
        };
        match message {
            Message::Response { id, outcome } => {
                self.heard_from = self.next_id;
                return self.handle_child_response(&id, outcome, now, out);
            }
            Message::Request { id, method, params } => {
                self.handle_child_request(id, &method, params.into(), out)
            }
            Message::Notification { method, params } => {
                if method.ends_with("/list_changed") {
                    self.lists += 1;
                }
                self.handle_child_notification(line, &method, params.into(), now, out)
            }
        }
        FromChild::Nothing
    }

    fn handle_child_response(
        &mut self,
        id: &Value,
        outcome: Result<Value, Value>,
        now: Instant,
        out: &mut VecDeque<BridgeOutput>,
    ) -> FromChild {
        let Some(n) = id.as_u64() else {
            tracing::debug!(server = %self.name, %id, "answer under an id the bridge never used dropped");
            return FromChild::Nothing;
        };
        if let Some(sent) = self.calls.remove(&n) {
            self.handle_call_answer(sent, outcome, now, out);
            return FromChild::Nothing;
        }
        match (self.internal.remove(&n).map(|i| i.purpose), outcome) {
            (Some(Purpose::DiscoverFirst { again }), outcome) => {
                self.handle_discovered_first(again, outcome, now, out)
            }
            (Some(Purpose::Initialize), Ok(result))
                if std::mem::take(&mut self.sessionless) && !self.modern =>
            {
                // Only the stateless revision lets such a server ask its
                // clients anything: spoken if it answers `server/discover`.
                self.upgrading = Some(result);
                let params = self.discover_params();
                self.send_internal(Purpose::Discover, "server/discover", params, now, out);
                FromChild::Nothing
            }
            (Some(Purpose::Initialize), Ok(result)) => {
                self.init_result = Some(result);
                FromChild::Initialized
            }
            (Some(Purpose::Initialize), Err(error)) if self.modern => {
                // `server/discover` was refused already.
                FromChild::InitializeFailed(format!(
                    "refused server/discover and initialize: {}",
                    error_message(&error)
                ))
            }
            (Some(Purpose::Initialize), Err(error)) => {
                // Perhaps a child of the stateless generation: it would
                // answer `server/discover`.
                self.refused_initialize = Some(error_message(&error));
                let params = self.discover_params();
                self.send_internal(Purpose::Discover, "server/discover", params, now, out);
                FromChild::Nothing
            }
            (Some(Purpose::Discover), outcome) => self.handle_discovered(outcome),
            (Some(Purpose::Listen), outcome) => {
                self.relisten.ended(n, outcome.as_ref(), now);
                FromChild::Nothing
            }
            (Some(Purpose::Listing(key)), outcome) => FromChild::Listed(key, outcome),
            (Some(purpose), Err(error)) => {
                tracing::debug!(server = %self.name, ?purpose, %error, "the MCP server refused a request of the bridge");
                FromChild::Nothing
            }
            (Some(_), Ok(_)) => FromChild::Nothing,
            (None, _) => {
                tracing::debug!(server = %self.name, %id, "answer to no pending request dropped");
                FromChild::Nothing
            }
        }
    }

    /// The child's answer to a client call. A session client's call to a
    /// stateless child may come back `input_required`: its round begins.
    fn handle_call_answer(
        &mut self,
        mut sent: Sent,
        mut outcome: Result<Value, Value>,
        now: Instant,
        out: &mut VecDeque<BridgeOutput>,
    ) {
        if let Some(span) = sent.span.take() {
            self.end_call(Some(span), Failure::of_value(outcome.as_ref()));
        }
        if let (true, Ok(result)) = (sent.caller.filtered, &mut outcome) {
            self.tools.apply_to_listing(result);
        }
        let Some((method, params)) = sent.request else {
            return self.finish(sent.caller, outcome.as_ref(), out);
        };
        let result = match outcome {
            Ok(result) => result,
            Err(error) => return self.finish(sent.caller, Err(&error), out),
        };
        match generation::session_result(result) {
            Outcome::Complete(result) => self.finish(sent.caller, Ok(&result), out),
            Outcome::InputRequired { requests, state } => {
                let round = Round {
                    method,
                    params,
                    state,
                    answers: serde_json::Map::new(),
                };
                self.ask_round(sent.caller, round, requests, now, out)
            }
        }
    }

    /// The answer to the `server/discover` asked before any handshake:
    /// a server speaking a stateless revision this bridge does is spoken
    /// to in it; one that names the revisions it speaks instead of the one
    /// asked is asked once more at one of them; any other answer (a
    /// method not found, an HTTP refusal, no revision in common) leaves
    /// the session handshake.
    fn handle_discovered_first(
        &mut self,
        again: bool,
        outcome: Result<Value, Value>,
        now: Instant,
        out: &mut VecDeque<BridgeOutput>,
    ) -> FromChild {
        let version = self.handshake_version();
        match outcome {
            Ok(found) => {
                if let Some(result) = generation::initialize_result(&found, version) {
                    self.generation = Generation::Stateless;
                    self.init_result = Some(result);
                    return FromChild::Initialized;
                }
            }
            Err(error) => match generation::supported_instead(&error).filter(|_| !again) {
                Some(instead) => {
                    let params = self.discover_params_at(instead);
                    let purpose = Purpose::DiscoverFirst { again: true };
                    self.send_internal(purpose, "server/discover", params, now, out);
                    return FromChild::Nothing;
                }
                None => {
                    tracing::debug!(server = %self.name, error = %error, "the MCP server refused server/discover: the session handshake follows");
                }
            },
        }
        let params = self.init_params.clone().unwrap_or(Value::Null);
        self.send_internal(Purpose::Initialize, "initialize", params, now, out);
        FromChild::Nothing
    }

    /// The answer to the `server/discover` asked of a child that refused
    /// `initialize`: whether it is a stateless child this bridge can speak
    /// to.
    fn handle_discovered(&mut self, outcome: Result<Value, Value>) -> FromChild {
        if let Some(session_result) = self.upgrading.take() {
            let version = self.handshake_version();
            let stateless = outcome
                .ok()
                .and_then(|found| generation::initialize_result(&found, version));
            if stateless.is_some() {
                self.generation = Generation::Stateless;
            }
            self.init_result = Some(stateless.unwrap_or(session_result));
            return FromChild::Initialized;
        }
        let refused = self.refused_initialize.take().unwrap_or_default();
        let version = self.handshake_version();
        match outcome.map(|found| generation::initialize_result(&found, version)) {
            Ok(Some(result)) => {
                self.generation = Generation::Stateless;
                self.init_result = Some(result);
                FromChild::Initialized
            }
            Ok(None) => FromChild::InitializeFailed(format!(
                "refused initialize ({refused}) and speaks no stateless revision this bridge does"
            )),
            Err(_) => FromChild::InitializeFailed(format!("refused initialize: {refused}")),
        }
    }

    /// `server/discover` in the envelope of the client the handshake
    /// speaks for, at the newest stateless revision.
    fn discover_params(&self) -> Value {
        self.discover_params_at(mcp::NEWEST_STATELESS_VERSION)
    }

    /// `server/discover` in the envelope of the client the handshake
    /// speaks for, at stateless revision `version`.
    fn discover_params_at(&self, version: &str) -> Value {
        generation::discover_params(self.init_params.as_ref().unwrap_or(&Value::Null), version)
    }

    /// The child asks a client something (sampling, roots, elicitation):
    /// the client whose call it is working on, taken to be the one with the
    /// most recent call still unanswered.
    fn handle_child_request(
        &mut self,
        id: Value,
        method: &str,
        params: Value,
        out: &mut VecDeque<BridgeOutput>,
    ) {
        if method == "ping" {
            out.push_back(child_answer(mcp::result(&id, json!({}))));
            return;
        }
        let refuse = |message: &str, out: &mut VecDeque<BridgeOutput>| {
            out.push_back(child_answer(mcp::error(&id, INTERNAL_ERROR, message, None)));
        };
        let Some(client) = self.client_for(method, &params) else {
            return refuse(
                &format!("no connected client can answer {method}: none declared that capability"),
                out,
            );
        };
        if self.asks.len() >= self.max_in_flight {
            return refuse(
                &format!("too many requests waiting for clients; {method} refused"),
                out,
            );
        }
        let ask = self.next_ask;
        self.next_ask += 1;
        let message = request_line(ask, method, params);
        self.asks.insert(
            ask,
            Ask {
                client,
                from: Asker::Child(id),
            },
        );
        out.push_back(BridgeOutput::ToClient {
            client,
            message,
            answers: None,
        });
    }

    /// Who answers the child's `method`: a client that declared the
    /// capability it needs (and the sub-capability: `sampling.tools` for a
    /// request offering tools, `elicitation.url` for a URL). Over stdio a
    /// request says nothing of the call it serves, except through a
    /// progress token it carries; otherwise the capable client of the most
    /// recent call in flight is the best guess (certain with one client at
    /// a time, or `per-session`). With no call in flight (a server asking
    /// for roots once initialized), the most recently connected capable
    /// client answers; with calls in flight and none of them a capable
    /// client's, the request is refused rather than shown to a client whose
    /// call it is not.
    fn client_for(&self, method: &str, params: &Value) -> Option<ClientId> {
        let (capability, sub) = match method {
            "sampling/createMessage" => {
                let tools = params.get("tools").is_some_and(|t| !t.is_null());
                ("sampling", tools.then_some("tools"))
            }
            "elicitation/create" => ("elicitation", (params["mode"] == "url").then_some("url")),
            "roots/list" => ("roots", None),
            _ => {
                return self
                    .calls
                    .values()
                    .next_back()
                    .map(|sent| sent.caller.client)
            }
        };
        let able = |client: &ClientId| {
            self.clients.contains(client)
                && self.declared.get(client).is_some_and(|declared| {
                    let has = &declared.capabilities[capability];
                    !has.is_null() && sub.is_none_or(|sub| !has[sub].is_null())
                })
        };
        let by_token = params["_meta"]["progressToken"]
            .as_u64()
            .and_then(|token| self.tokens.get(&token))
            .map(|(client, _)| *client);
        if let Some(client) = by_token.filter(able) {
            return Some(client);
        }
        if self.calls.is_empty() {
            return self.declared.keys().rev().copied().find(able);
        }
        self.calls
            .values()
            .rev()
            .map(|sent| sent.caller.client)
            .find(able)
    }

    fn handle_child_notification(
        &mut self,
        line: &str,
        method: &str,
        mut params: Value,
        now: Instant,
        out: &mut VecDeque<BridgeOutput>,
    ) {
        match method {
            // What the server's listen stream of the bridge's own hears:
            // nothing for a client.
            "notifications/subscriptions/acknowledged" => self.relisten.acknowledged(),
            "notifications/progress" => {
                let token = params.get("progressToken").and_then(Value::as_u64);
                let Some((client, original)) = token.and_then(|t| self.tokens.get(&t)) else {
                    tracing::debug!(server = %self.name, "progress for no call in flight dropped");
                    return;
                };
                let client = *client;
                if let Some(sent) = self.calls.values_mut().find(|s| s.caller.token == token) {
                    sent.progressed_at = now;
                }
                if let Some(object) = params.as_object_mut() {
                    object.insert("progressToken".into(), original.clone());
                }
                let message = notification_line(method, params);
                out.push_back(BridgeOutput::ToClient {
                    client,
                    message,
                    answers: None,
                });
            }
            "notifications/resources/updated" => {
                let uri = params.get("uri").and_then(Value::as_str);
                for client in uri
                    .and_then(|uri| self.subscribers.get(uri))
                    .into_iter()
                    .flatten()
                {
                    out.push_back(BridgeOutput::ToClient {
                        client: *client,
                        message: line.to_owned(),
                        answers: None,
                    });
                }
            }
            "notifications/cancelled" => {
                // The child gave up on one of its own requests to a client.
                let request_id = params.get("requestId");
                let ask = self
                    .asks
                    .iter()
                    .find(
                        |(_, ask)| matches!(&ask.from, Asker::Child(id) if Some(id) == request_id),
                    )
                    .map(|(n, _)| *n);
                let Some(ask) = ask.and_then(|n| self.asks.remove(&n).map(|a| (n, a))) else {
                    return;
                };
                if let Some(object) = params.as_object_mut() {
                    object.insert("requestId".into(), json!(ask.0));
                }
                let message = notification_line(method, params);
                out.push_back(BridgeOutput::ToClient {
                    client: ask.1.client,
                    message,
                    answers: None,
                });
            }
            _ => {
                for client in &self.clients {
                    out.push_back(BridgeOutput::ToClient {
                        client: *client,
                        message: line.to_owned(),
                        answers: None,
                    });
                }
            }
        }
    }

    // Commands from the lifecycle.

    /// Sends the bridge's own handshake, with the params of the first
    /// client `initialize` seen (or defaults), the same on every start.
    /// The child that speaks for the stateless revision's clients asks
    /// `server/discover` first, in that revision's envelope, and falls back
    /// to `initialize` only if the server does not speak it (see
    /// [`Mux::handle_discovered_first`]).
    pub(crate) fn send_initialize(&mut self, now: Instant, out: &mut VecDeque<BridgeOutput>) {
        let params = self
            .init_params
            .get_or_insert_with(|| initialize_params(None, self.shared))
            .clone();
        self.refused_initialize = None;
        self.upgrading = None;
        self.generation = Generation::Session;
        if self.modern {
            let params = self.discover_params();
            let purpose = Purpose::DiscoverFirst { again: false };
            self.send_internal(purpose, "server/discover", params, now, out);
        } else {
            self.send_internal(Purpose::Initialize, "initialize", params, now, out);
        }
    }

    /// The protocol version the bridge's handshake asked for.
    fn handshake_version(&self) -> &str {
        self.init_params
            .as_ref()
            .and_then(|p| p["protocolVersion"].as_str())
            .unwrap_or(DEFAULT_PROTOCOL_VERSION)
    }

    /// The handshake is done: confirms it, renews the subscriptions a
    /// restarted child lost, then sends what waited, in order.
    pub(crate) fn handle_ready(&mut self, now: Instant, out: &mut VecDeque<BridgeOutput>) {
        self.lists += 1;
        if self.generation == Generation::Session {
            out.push_back(child_notification("notifications/initialized", Value::Null));
        }
        let queued: BTreeSet<&str> = self
            .queue
            .iter()
            .filter_map(|call| call.caller.subscribed.as_deref())
            .collect();
        // A server heard through the bridge's listen stream follows its
        // clients' resources there (see `renew_listen`).
        let renew: Vec<String> = match self.listens_upstream() {
            true => Vec::new(),
            false => (self.subscribers.keys())
                .filter(|uri| !queued.contains(uri.as_str()))
                .cloned()
                .collect(),
        };
        for uri in renew {
            self.send_internal(
                Purpose::Subscription,
                "resources/subscribe",
                json!({"uri": uri}),
                now,
                out,
            );
        }
        while let Some(call) = self.queue.pop_front() {
            match (self.initialize_answer(&call.params), call.method.as_str()) {
                (Some(cached), "initialize") => {
                    let message = mcp::result(&call.caller.id, cached);
                    out.push_back(BridgeOutput::ToClient {
                        client: call.caller.client,
                        message,
                        answers: Some(mcp::id_text(&call.caller.id)),
                    });
                    self.forget(&call.caller);
                }
                _ => self.send(call, now, out),
            }
        }
        self.renew_listen(now, out);
    }

    /// Whether the server's own notifications come on a listen stream of
    /// the bridge's: a remote server spoken to in the stateless revision.
    fn listens_upstream(&self) -> bool {
        self.generation == Generation::Stateless && self.remote
    }

    /// Opens, replaces or cancels the bridge's listen stream at a
    /// stateless remote server so that it asks for what the clients need
    /// now: each list the server offers, and every resource a client
    /// follows (a session client's `resources/subscribe`, a listen
    /// stream's filter). Called when that may have changed, and when a
    /// stream that ended may be opened again ([`Mux::listen_due`]).
    pub(crate) fn renew_listen(&mut self, now: Instant, out: &mut VecDeque<BridgeOutput>) {
        if !self.listens_upstream() {
            return;
        }
        let capabilities = self.init_result.as_ref().map(|r| &r["capabilities"]);
        let wanted = Relisten::filter(
            capabilities.unwrap_or(&Value::Null),
            self.subscribers.keys(),
        );
        let plan = self.relisten.plan(wanted, now);
        if let Some(id) = plan.cancel {
            self.internal.remove(&id);
            let params = json!({"requestId": id, "reason": "the notifications wanted changed"});
            out.push_back(child_notification("notifications/cancelled", params));
        }
        if let Some(filter) = plan.open {
            let declared =
                Declared::from_initialize(self.init_params.as_ref().unwrap_or(&Value::Null));
            let params = json!({"notifications": filter.clone()});
            let params = generation::params_for(self.generation, params, &declared);
            let id = self.send_internal(Purpose::Listen, "subscriptions/listen", params, now, out);
            self.relisten.opened(id, filter);
        }
    }

    /// When the listen stream at a stateless remote server that ended is
    /// to be opened again.
    pub(crate) fn listen_due(&self) -> Option<Instant> {
        self.relisten.due()
    }

    /// A health ping, unless one sent since the child's last answer is
    /// still unanswered. One sent before it, the child has passed over
    /// (some servers never answer `ping`): it is given up, so that a new
    /// one asks again — kept, no probe would be sent, and the probe's
    /// deadline, past, would stay the next one. The stateless generation
    /// has no `ping`: such a child is asked `server/discover`.
    /// Asks the child for the first page of list `key` for the bridge
    /// itself: its answer comes back as [`FromChild::Listed`].
    pub(crate) fn ask_list(
        &mut self,
        key: &'static str,
        now: Instant,
        out: &mut VecDeque<BridgeOutput>,
    ) {
        let params = generation::params_for(self.generation, json!({}), &Declared::default());
        let method = super::lazy::list_method(key);
        self.send_internal(Purpose::Listing(key), method, params, now, out);
    }

    /// Gives the child the logging level a client set while it was
    /// stopped (its answer goes nowhere).
    pub(crate) fn set_level(
        &mut self,
        params: Value,
        now: Instant,
        out: &mut VecDeque<BridgeOutput>,
    ) {
        let params = generation::params_for(self.generation, params, &Declared::default());
        self.send_internal(Purpose::Level, "logging/setLevel", params, now, out);
    }

    /// Tells every client `method` (a notification with no params).
    pub(crate) fn tell_clients(&self, method: &str, out: &mut VecDeque<BridgeOutput>) {
        for client in &self.clients {
            out.push_back(BridgeOutput::ToClient {
                client: *client,
                message: notification_line(method, Value::Null),
                answers: None,
            });
        }
    }

    pub(crate) fn send_ping(&mut self, now: Instant, out: &mut VecDeque<BridgeOutput>) {
        let heard_from = self.heard_from;
        self.internal
            .retain(|&id, i| i.purpose != Purpose::Ping || id >= heard_from);
        if self.internal.values().any(|i| i.purpose == Purpose::Ping) {
            return;
        }
        let (method, params) = match self.generation {
            Generation::Session => ("ping", Value::Null),
            Generation::Stateless => ("server/discover", self.discover_params()),
        };
        self.send_internal(Purpose::Ping, method, params, now, out);
    }

    /// The child will answer nothing more (it exited, hung or is being
    /// stopped): every call sent to it is answered with this error, the
    /// bridge's own requests forgotten, and clients told the child's
    /// requests to them are off.
    pub(crate) fn fail_sent(&mut self, code: i64, message: &str, out: &mut VecDeque<BridgeOutput>) {
        for (_, sent) in std::mem::take(&mut self.calls) {
            self.end_call(sent.span, Some(Failure::error(Some(code), message)));
            let error = json!({"code": code, "message": message});
            self.finish(sent.caller, Err(&error), out);
        }
        self.internal.clear();
        self.relisten.closed();
        for (ask, Ask { client, .. }) in std::mem::take(&mut self.asks) {
            let params = json!({"requestId": ask, "reason": message});
            let message = notification_line("notifications/cancelled", params);
            out.push_back(BridgeOutput::ToClient {
                client,
                message,
                answers: None,
            });
        }
        for (_, (caller, _)) in std::mem::take(&mut self.rounds) {
            let error = json!({"code": code, "message": message});
            self.finish(caller, Err(&error), out);
        }
    }

    /// Answers every call still waiting for the child with this error.
    pub(crate) fn fail_queued(
        &mut self,
        code: i64,
        message: &str,
        out: &mut VecDeque<BridgeOutput>,
    ) {
        for call in std::mem::take(&mut self.queue) {
            let error = json!({"code": code, "message": message});
            self.finish(call.caller, Err(&error), out);
        }
    }

    fn send(&mut self, call: Call, now: Instant, out: &mut VecDeque<BridgeOutput>) {
        let stateless = self.generation == Generation::Stateless;
        if stateless && call.method == "ping" {
            // The stateless generation has no `ping`: the bridge answers.
            return self.finish(call.caller, Ok(&json!({})), out);
        }
        let subscription = matches!(
            call.method.as_str(),
            "resources/subscribe" | "resources/unsubscribe"
        );
        if subscription && self.listens_upstream() {
            // Nor a subscription: the bridge's listen stream follows
            // what its clients do.
            self.finish(call.caller, Ok(&json!({})), out);
            return self.renew_listen(now, out);
        }
        let request = (stateless && !call.caller.enveloped)
            .then(|| (call.method.clone(), (*call.params).clone()));
        let verbatim = call
            .verbatim
            .filter(|_| self.passes_verbatim(&call.caller, &call.method, &call.params));
        let declared = self.declared.get(&call.caller.client);
        let mut params = generation::params_for(
            self.generation,
            call.params,
            declared.unwrap_or(&Declared::default()),
        );
        let id = self.next_id;
        self.next_id += 1;
        let span = self.call_span(id, &call.method, &mut params);
        let verbatim = verbatim.filter(|_| span.is_none());
        out.push_back(child_request(id, &call.method, params, verbatim));
        self.calls.insert(
            id,
            Sent {
                caller: call.caller,
                sent_at: now,
                progressed_at: now,
                request,
                span,
            },
        );
    }

    /// Whether a call goes to the child as its client wrote it: a session
    /// child takes the params unchanged (no envelope to take off, no
    /// progress token renamed), and nothing the bridge keeps was read from
    /// them — no tool filter's name, no subscription's URI, no handshake's
    /// capabilities — for what the bridge read must be what the child
    /// reads, even of a member given twice.
    fn passes_verbatim(&self, caller: &Caller, method: &str, params: &Params) -> bool {
        let plain = params.is_filled_object() && params.meta().is_null();
        let read_here = matches!(
            method,
            "initialize" | "resources/subscribe" | "resources/unsubscribe"
        );
        plain
            && !read_here
            && self.generation == Generation::Session
            && caller.token.is_none()
            && self.tools.is_open()
    }

    /// A stateless child needs its session client's input before it
    /// answers: the bridge asks the client each request, the session way,
    /// and holds the call until every answer is in.
    fn ask_round(
        &mut self,
        caller: Caller,
        round: Round,
        requests: Vec<(String, String, Value)>,
        now: Instant,
        out: &mut VecDeque<BridgeOutput>,
    ) {
        if requests.is_empty() {
            return self.send(retry(caller, round), now, out);
        }
        if self.asks.len() + requests.len() > self.max_in_flight {
            let message = "too many requests waiting for clients; the call's input was refused";
            let error = json!({"code": SERVER_ERROR, "message": message});
            return self.finish(caller, Err(&error), out);
        }
        let number = self.next_round;
        self.next_round += 1;
        for (key, method, params) in requests {
            let ask = self.next_ask;
            self.next_ask += 1;
            let message = request_line(ask, &method, params);
            out.push_back(BridgeOutput::ToClient {
                client: caller.client,
                message,
                answers: None,
            });
            let from = Asker::Round(number, key);
            self.asks.insert(
                ask,
                Ask {
                    client: caller.client,
                    from,
                },
            );
        }
        self.rounds.insert(number, (caller, round));
    }

    /// Sends a request of the bridge's own: its id.
    fn send_internal(
        &mut self,
        purpose: Purpose,
        method: &str,
        params: impl Into<Params>,
        now: Instant,
        out: &mut VecDeque<BridgeOutput>,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        out.push_back(child_request(id, method, params.into(), None));
        self.internal.insert(
            id,
            Internal {
                purpose,
                sent_at: now,
            },
        );
        id
    }

    /// The CLIENT span of call `id` as it is written, when tracing: a
    /// child of the span whose context `params._meta` carries (the
    /// client's request's), its own context put there instead.
    fn call_span(&mut self, id: u64, method: &str, params: &mut Params) -> Option<Box<Span>> {
        let lent = self.lent.as_mut()?;
        // Traced, the params carry the span's context: from their tree.
        let params: &mut Value = params;
        let parent = SpanContext::from_meta(&params["_meta"]);
        let id = json!(id);
        let about = About {
            method,
            id: Some(&id),
            params,
        };
        let mut span = traced::start(
            &mut lent.tracer,
            Kind::Client,
            &about,
            parent.as_ref(),
            lent.now,
        )?;
        // How the server is reached, as spans name it.
        let transport = if self.remote { "tcp" } else { "pipe" };
        span.set("network.transport", transport);
        let version = self.init_result.as_ref().map(|r| &r["protocolVersion"]);
        if let Some(version) = version.and_then(Value::as_str) {
            span.set("mcp.protocol.version", version);
        }
        traced::carry(&span.context, params);
        Some(Box::new(span))
    }

    /// Ends a call's CLIENT span, if it has one.
    fn end_call(&mut self, span: Option<Box<Span>>, failure: Option<Failure>) {
        if let (Some(span), Some(lent)) = (span, self.lent.as_mut()) {
            traced::end(&mut lent.tracer, *span, failure, lent.now);
        }
    }

    /// Answers a call that ended and lets go of what it held.
    fn finish<R: Serialize + ?Sized>(
        &mut self,
        caller: Caller,
        outcome: Result<&R, &R>,
        out: &mut VecDeque<BridgeOutput>,
    ) {
        let failed = outcome.is_err();
        self.finish_with(caller, failed, |id| mcp::response(id, outcome), out);
    }

    /// [`Mux::finish`] with the answer `message` writes under the
    /// client's id (`failed`: an error).
    fn finish_with(
        &mut self,
        caller: Caller,
        failed: bool,
        message: impl FnOnce(&Value) -> String,
        out: &mut VecDeque<BridgeOutput>,
    ) {
        self.forget(&caller);
        if let (true, Some(uri)) = (failed, &caller.subscribed) {
            self.unsubscribe_locally(uri, caller.client);
        }
        if self.clients.contains(&caller.client) {
            out.push_back(BridgeOutput::ToClient {
                client: caller.client,
                message: message(&caller.id),
                answers: Some(mcp::id_text(&caller.id)),
            });
        }
    }

    fn forget(&mut self, caller: &Caller) {
        if let Some(token) = caller.token {
            self.tokens.remove(&token);
        }
    }

    fn unsubscribe_locally(&mut self, uri: &str, client: ClientId) {
        if let Some(who) = self.subscribers.get_mut(uri) {
            who.remove(&client);
            if who.is_empty() {
                self.subscribers.remove(uri);
            }
        }
    }

    /// Swaps a request's `_meta.progressToken` for one unique to the
    /// bridge, so progress from the child reaches only this client.
    fn remap_token(&mut self, client: ClientId, params: &mut Params) -> Option<u64> {
        // Read first: only params with a token are changed (and written
        // again from their tree).
        let asked = params.meta().get("progressToken")?;
        if !(asked.is_string() || asked.is_number()) {
            return None;
        }
        let slot = params.get_mut("_meta")?.get_mut("progressToken")?;
        let token = self.next_token;
        self.next_token += 1;
        let original = std::mem::replace(slot, json!(token));
        self.tokens.insert(token, (client, original));
        Some(token)
    }
}

/// A call after its `input_required` round: the client's params with the
/// answers and the child's state.
fn retry(caller: Caller, round: Round) -> Call {
    Call {
        caller,
        params: generation::retry_params(&round.params, round.answers, round.state).into(),
        method: round.method,
        verbatim: None,
    }
}

/// A JSON-RPC error object's message, or the whole object.
fn error_message(error: &Value) -> String {
    error
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| error.to_string(), str::to_owned)
}

/// The `initialize` params for the child: the protocol version,
/// capabilities and client info a client asked with, or defaults. A shared
/// child is told every client capability the bridge can route (each of its
/// requests then goes to a client that declared it, or is refused): with
/// the first client's alone, a server that offers sampling or elicitation
/// only to clients that can answer would never offer it to any.
fn initialize_params(asked: Option<&Value>, shared: bool) -> Value {
    let field = |key: &str, fallback: Value| {
        asked
            .and_then(|params| params.get(key))
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(fallback)
    };
    let mut capabilities = field("capabilities", json!({}));
    if let (true, Some(declared)) = (shared, capabilities.as_object_mut()) {
        declared.insert("sampling".into(), json!({"context": {}, "tools": {}}));
        declared.insert("elicitation".into(), json!({"form": {}, "url": {}}));
        declared.insert("roots".into(), json!({"listChanged": true}));
    }
    json!({
        "protocolVersion": field("protocolVersion", json!(DEFAULT_PROTOCOL_VERSION)),
        "capabilities": capabilities,
        "clientInfo": field(
            "clientInfo",
            json!({"name": "mcp-local-provider", "version": env!("CARGO_PKG_VERSION")}),
        ),
    })
}

/// A request, with no `params` member when there are none (a strict peer
/// may refuse `"params": null`).
/// A request of the bridge's for the child, with its outline (what a
/// remote server's client reads of it: read here from the parts rather
/// than from the text again).
fn child_request(
    id: u64,
    method: &str,
    params: Params,
    verbatim: Option<Verbatim>,
) -> BridgeOutput {
    let outline = Outline::of_parts(Some(method), Some(&json!(id)), &params);
    let line = match verbatim {
        Some(verbatim) => verbatim.line(id),
        None => request_line(id, method, params),
    };
    BridgeOutput::ToChild { line, outline }
}

/// A notification for the child, with its outline.
fn child_notification(method: &str, params: impl Into<Params>) -> BridgeOutput {
    let params = params.into();
    let outline = Outline::of_parts(Some(method), None, &params);
    let line = notification_line(method, params);
    BridgeOutput::ToChild { line, outline }
}

/// An answer for the child: it has no outline (no method, no id a
/// remote server's client reads).
fn child_answer(line: String) -> BridgeOutput {
    BridgeOutput::ToChild {
        line,
        outline: Outline::default(),
    }
}

fn request_line(id: u64, method: &str, params: impl Into<Params>) -> String {
    let params = params.into();
    if params.is_null() {
        json!({"jsonrpc": "2.0", "id": id, "method": method}).to_string()
    } else {
        mcp::request(&json!(id), method, params)
    }
}

fn notification_line(method: &str, params: impl Into<Params>) -> String {
    let params = params.into();
    if params.is_null() {
        json!({"jsonrpc": "2.0", "method": method}).to_string()
    } else {
        mcp::notification(method, params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: Value, method: &str, params: Value) -> Message {
        Message::Request {
            id,
            method: method.into(),
            params: params.into(),
        }
    }

    fn child_lines(out: &mut VecDeque<BridgeOutput>) -> Vec<Value> {
        out.drain(..)
            .filter_map(|o| match o {
                BridgeOutput::ToChild { line, .. } => serde_json::from_str(&line).ok(),
                _ => None,
            })
            .collect()
    }

    /// A child that speaks for the stateless revision's clients, asked
    /// for its handshake: the first request it was sent.
    fn modern_child_starting(out: &mut VecDeque<BridgeOutput>) -> (Mux, Value) {
        let mut mux = Mux::new("far", 8, true, ToolFilter::default());
        mux.prefer_stateless();
        mux.send_initialize(Instant::now(), out);
        let mut sent = child_lines(out);
        assert_eq!(sent.len(), 1, "{sent:?}");
        (mux, sent.remove(0))
    }

    fn answer(
        mux: &mut Mux,
        to: &Value,
        outcome: Value,
        out: &mut VecDeque<BridgeOutput>,
    ) -> FromChild {
        let mut line = json!({"jsonrpc": "2.0", "id": to["id"]});
        let member = if outcome.get("code").is_some() {
            "error"
        } else {
            "result"
        };
        line[member] = outcome;
        mux.handle_child_line(&line.to_string(), Instant::now(), out)
    }

    #[test]
    fn the_child_for_stateless_clients_asks_server_discover_before_any_initialize() {
        let mut out = VecDeque::new();
        let (mut mux, first) = modern_child_starting(&mut out);
        assert_eq!(first["method"], "server/discover");
        let meta = &first["params"]["_meta"];
        assert_eq!(meta[mcp::PROTOCOL_VERSION_META], "2026-07-28");
        assert!(meta[mcp::CLIENT_CAPABILITIES_META]["sampling"].is_object());
        assert_eq!(
            meta[generation::CLIENT_INFO_META]["name"],
            "mcp-local-provider"
        );
        let offered = json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}});
        assert_eq!(
            answer(&mut mux, &first, offered, &mut out),
            FromChild::Initialized
        );
        assert_eq!(mux.generation, Generation::Stateless);
        assert_eq!(
            mux.initialize_result().unwrap()["capabilities"],
            json!({"tools": {}})
        );
        assert!(child_lines(&mut out).is_empty(), "no initialize follows");
    }

    #[test]
    fn a_revision_refused_as_unsupported_is_asked_again_once_at_one_the_server_names() {
        let mut out = VecDeque::new();
        let (mut mux, first) = modern_child_starting(&mut out);
        let unsupported = json!({"code": mcp::UNSUPPORTED_PROTOCOL_VERSION, "message": "no",
            "data": {"supported": ["2099-01-01", "2026-07-28"]}});
        assert_eq!(
            answer(&mut mux, &first, unsupported.clone(), &mut out),
            FromChild::Nothing
        );
        let again = child_lines(&mut out).remove(0);
        assert_eq!(again["method"], "server/discover");
        assert_ne!(again["id"], first["id"], "a fresh id");
        assert_eq!(
            again["params"]["_meta"][mcp::PROTOCOL_VERSION_META],
            "2026-07-28"
        );
        // Refused again: the session handshake, not a third ask.
        answer(&mut mux, &again, unsupported, &mut out);
        let initialize = child_lines(&mut out).remove(0);
        assert_eq!(initialize["method"], "initialize");
        // None in common: the session handshake at once.
        let (mut mux, first) = modern_child_starting(&mut out);
        let foreign = json!({"code": mcp::UNSUPPORTED_PROTOCOL_VERSION, "message": "no",
            "data": {"supported": ["2099-01-01"]}});
        answer(&mut mux, &first, foreign, &mut out);
        assert_eq!(child_lines(&mut out)[0]["method"], "initialize");
    }

    #[test]
    fn a_server_refusing_discovery_gets_the_session_handshake_and_keeps_it() {
        let refusals = [
            json!({"code": mcp::METHOD_NOT_FOUND, "message": "Method not found"}),
            json!({"code": SERVER_ERROR, "message": "the remote MCP server answered HTTP 405 Method Not Allowed"}),
            json!({"supportedVersions": ["2025-11-25"], "capabilities": {}}),
        ];
        for refusal in refusals {
            let mut out = VecDeque::new();
            let (mut mux, first) = modern_child_starting(&mut out);
            assert_eq!(
                answer(&mut mux, &first, refusal, &mut out),
                FromChild::Nothing
            );
            let initialize = child_lines(&mut out).remove(0);
            assert_eq!(initialize["method"], "initialize");
            assert_eq!(
                initialize["params"]["protocolVersion"],
                DEFAULT_PROTOCOL_VERSION
            );
            // A server keeping no session is not asked again either.
            mux.handle_sessionless();
            let result = json!({"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "s", "version": "1"}});
            assert_eq!(
                answer(&mut mux, &initialize, result, &mut out),
                FromChild::Initialized
            );
            assert_eq!(mux.generation, Generation::Session);
            assert!(child_lines(&mut out).is_empty());
        }
        let (mut mux, first) = modern_child_starting(&mut VecDeque::new());
        let mut out = VecDeque::new();
        answer(
            &mut mux,
            &first,
            json!({"code": mcp::METHOD_NOT_FOUND, "message": "no"}),
            &mut out,
        );
        let initialize = child_lines(&mut out).remove(0);
        let refused = answer(
            &mut mux,
            &initialize,
            json!({"code": -32600, "message": "bad"}),
            &mut out,
        );
        assert!(matches!(refused, FromChild::InitializeFailed(why) if why.contains("bad")));
    }

    fn client_lines(out: &mut VecDeque<BridgeOutput>) -> Vec<(ClientId, Value)> {
        out.drain(..)
            .filter_map(|o| match o {
                BridgeOutput::ToClient {
                    client, message, ..
                } => Some((client, serde_json::from_str(&message).ok()?)),
                _ => None,
            })
            .collect()
    }

    /// A remote server's child for stateless clients, spoken to in that
    /// revision by a server offering tools and resources, with one client.
    fn stateless_remote(t0: Instant, out: &mut VecDeque<BridgeOutput>) -> (Mux, ClientId) {
        let (mut mux, first) = modern_child_starting(out);
        mux.over_network();
        let offered = json!({"supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {"listChanged": true}, "resources": {"subscribe": true}}});
        assert_eq!(
            answer(&mut mux, &first, offered, out),
            FromChild::Initialized
        );
        let client = mux.open_client();
        mux.handle_ready(t0, out);
        (mux, client)
    }

    #[test]
    fn a_stateless_remote_server_is_listened_to_for_what_the_clients_follow() {
        let t0 = Instant::now();
        let mut out = VecDeque::new();
        let (mut mux, client) = stateless_remote(t0, &mut out);
        let listen = child_lines(&mut out).remove(0);
        assert_eq!(listen["method"], "subscriptions/listen");
        assert_eq!(
            listen["params"]["notifications"],
            json!({"toolsListChanged": true, "resourcesListChanged": true})
        );
        assert_eq!(
            listen["params"]["_meta"][mcp::PROTOCOL_VERSION_META],
            "2026-07-28"
        );
        // A stream open for long is no sign the server stopped answering.
        assert_eq!(mux.ping_silent_since(), None);
        // A client subscribes: answered by the bridge, the stream replaced
        // by one that follows the resource too.
        let subscribe = request(json!(1), "resources/subscribe", json!({"uri": "file:///a"}));
        mux.handle_client_message(client, subscribe, Route::Send(t0), &mut out);
        let (to_child, to_client): (Vec<_>, Vec<_>) = out
            .drain(..)
            .partition(|o| matches!(o, BridgeOutput::ToChild { .. }));
        let answered = client_lines(&mut to_client.into_iter().collect());
        assert_eq!(
            answered,
            [(client, json!({"jsonrpc": "2.0", "id": 1, "result": {}}))]
        );
        let sent = child_lines(&mut to_child.into_iter().collect());
        assert_eq!(sent[0]["method"], "notifications/cancelled");
        assert_eq!(sent[0]["params"]["requestId"], listen["id"]);
        let replaced = &sent[1];
        assert_eq!(replaced["method"], "subscriptions/listen");
        assert_eq!(
            replaced["params"]["notifications"]["resourceSubscriptions"],
            json!(["file:///a"])
        );
        // What the stream brings is the child's own news.
        let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged", "params": {}});
        mux.handle_child_line(&ack.to_string(), t0, &mut out);
        assert!(out.is_empty(), "{out:?}");
        let lists = mux.lists();
        let changed = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        mux.handle_child_line(&changed.to_string(), t0, &mut out);
        assert_eq!(mux.lists(), lists + 1);
        let updated = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "file:///a"}});
        mux.handle_child_line(&updated.to_string(), t0, &mut out);
        let heard: Vec<Value> = client_lines(&mut out)
            .into_iter()
            .map(|(_, m)| m["method"].clone())
            .collect();
        assert_eq!(
            heard,
            [
                "notifications/tools/list_changed",
                "notifications/resources/updated"
            ]
        );
        // The stream ends: opened again once its wait is over, not before.
        let ended = json!({"code": SERVER_ERROR, "message": "the connection broke"});
        answer(&mut mux, replaced, ended, &mut out);
        let due = mux.listen_due().unwrap();
        assert!(due > t0);
        mux.renew_listen(t0, &mut out);
        assert!(out.is_empty());
        mux.renew_listen(due, &mut out);
        let again = child_lines(&mut out).remove(0);
        assert_eq!(again["method"], "subscriptions/listen");
        assert_eq!(
            again["params"]["notifications"],
            replaced["params"]["notifications"]
        );
        // The last subscriber leaves: the stream follows the lists alone.
        mux.close_client(client, &Route::Send(due), &mut out);
        let sent = child_lines(&mut out);
        assert_eq!(
            sent[1]["params"]["notifications"],
            listen["params"]["notifications"]
        );
    }

    #[test]
    fn a_stateless_remote_server_without_listen_is_not_asked_again() {
        let t0 = Instant::now();
        let mut out = VecDeque::new();
        let (mut mux, client) = stateless_remote(t0, &mut out);
        let listen = child_lines(&mut out).remove(0);
        let none = json!({"code": mcp::METHOD_NOT_FOUND, "message": "Method not found"});
        answer(&mut mux, &listen, none, &mut out);
        assert_eq!(mux.listen_due(), None);
        let subscribe = request(json!(1), "resources/subscribe", json!({"uri": "file:///a"}));
        mux.handle_client_message(client, subscribe, Route::Send(t0), &mut out);
        assert!(child_lines(&mut out).is_empty());
    }

    #[test]
    fn requests_without_params_are_written_without_a_params_member() {
        assert_eq!(
            request_line(3, "ping", Value::Null),
            r#"{"id":3,"jsonrpc":"2.0","method":"ping"}"#
        );
        let line: Value = serde_json::from_str(&notification_line("n", json!({"a": 1}))).unwrap();
        assert_eq!(line["params"], json!({"a": 1}));
    }

    /// A call whose params the child takes as they are goes to it as its
    /// client wrote it (member order and number spelling kept), only the
    /// bridge's id in place of the client's; one whose params the bridge
    /// changes (a progress token renamed) or reads (a tool filter) is
    /// written anew.
    #[test]
    fn a_call_goes_as_written_unless_the_bridge_changes_or_reads_its_params() {
        let written = r#"{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"echo","arguments":{"z":1,"a":[1.50]}}}"#;
        let with_token = written.replace(
            r#""name":"echo","#,
            r#""_meta":{"progressToken":7},"name":"echo","#,
        );
        let filtered = ToolFilter {
            allow: vec!["echo".into()],
            exclude: Vec::new(),
        };
        for (filter, text, as_written) in [
            (ToolFilter::default(), written.to_owned(), true),
            (ToolFilter::default(), with_token, false),
            (filtered, written.to_owned(), false),
        ] {
            let mut mux = Mux::new("s", 8, true, filter);
            let mut out = VecDeque::new();
            let client = mux.open_client();
            let read = FromClient::parse(&text).unwrap();
            mux.handle_client_message(client, read, Route::Send(Instant::now()), &mut out);
            let lines: Vec<String> = out
                .drain(..)
                .filter_map(|o| match o {
                    BridgeOutput::ToChild { line, .. } => Some(line),
                    _ => None,
                })
                .collect();
            assert_eq!(lines.len(), 1, "{lines:?}");
            let expected = text.replace(r#""id":"c-1""#, r#""id":1"#);
            assert_eq!(lines[0] == expected, as_written, "{}", lines[0]);
            let line: Value = serde_json::from_str(&lines[0]).unwrap();
            assert_eq!(
                (&line["id"], &line["method"]),
                (&json!(1), &json!("tools/call"))
            );
            assert_eq!(line["params"]["arguments"]["a"], json!([1.5]));
        }
    }

    #[test]
    fn the_handshake_takes_the_first_clients_version_capabilities_and_info() {
        let asked = json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {"sampling": {}},
            "clientInfo": {"name": "inspector", "version": "1"},
            "_meta": {"progressToken": 1},
        });
        assert_eq!(
            initialize_params(Some(&asked), false),
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {"sampling": {}},
                "clientInfo": {"name": "inspector", "version": "1"},
            })
        );
        let default = initialize_params(None, false);
        assert_eq!(default["protocolVersion"], DEFAULT_PROTOCOL_VERSION);
        assert_eq!(default["capabilities"], json!({}));
    }

    #[test]
    fn a_shared_child_is_told_every_capability_the_bridge_can_route() {
        let asked = json!({"capabilities": {"experimental": {"x": {}}}});
        let caps = &initialize_params(Some(&asked), true)["capabilities"];
        assert_eq!(caps["sampling"], json!({"context": {}, "tools": {}}));
        assert_eq!(caps["elicitation"], json!({"form": {}, "url": {}}));
        assert_eq!(caps["roots"]["listChanged"], true);
        assert_eq!(caps["experimental"], json!({"x": {}}));
        assert!(initialize_params(None, true)["capabilities"]["sampling"].is_object());
    }

    #[test]
    fn only_requests_sent_after_the_last_answer_show_the_child_silent() {
        let t0 = Instant::now();
        let t1 = t0 + std::time::Duration::from_secs(1);
        let mut mux = Mux::new("s", 8, true, ToolFilter::default());
        let mut out = VecDeque::new();
        let a = mux.open_client();
        mux.handle_client_message(
            a,
            request(json!(1), "tools/list", Value::Null),
            Route::Send(t0),
            &mut out,
        );
        assert_eq!(mux.call_silent_since(), Some(t0));
        assert_eq!(mux.ping_silent_since(), None);
        // A line that answers nothing is no sign the child reads its input.
        mux.handle_child_line("not json", Instant::now(), &mut out);
        let log = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#;
        mux.handle_child_line(log, Instant::now(), &mut out);
        assert_eq!(mux.call_silent_since(), Some(t0));
        mux.send_ping(t1, &mut out);
        assert_eq!(mux.ping_silent_since(), Some(t1));
        // An answer, even to another request, is.
        mux.handle_child_line(r#"{"jsonrpc":"2.0","id":99,"result":{}}"#, t1, &mut out);
        assert_eq!(
            (mux.call_silent_since(), mux.ping_silent_since()),
            (None, None)
        );
        let ids: Vec<Value> = child_lines(&mut out)
            .into_iter()
            .map(|l| l["id"].clone())
            .collect();
        assert_eq!(ids, [json!(1), json!(2)]);
    }
}
