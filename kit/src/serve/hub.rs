//! The provider as every task or thread of a runtime shares it: its
//! switchboard under one lock, fresh connection ids, the guard that
//! detaches a connection however its task or thread ends, and the report a
//! writer makes of what it wrote. A runtime supplies only how to wake a
//! connection ([`Bell`]) and its timer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use mcp_provider_core::agent::message::FromAgent;
use mcp_provider_core::backlog::Backlog;
use mcp_provider_core::bridge::SocketFrame;
use mcp_provider_core::http::{HttpError, Request};
use mcp_provider_core::Switchboard;
use mcp_provider_core::{ConnId, Output, Provider, Upgrade};

use crate::bridge::{Bridged, Post, Posted, ReadStdout, Reporter, Serving};
use crate::few::Few;
use crate::outbound::upstream::Carriers;
use crate::serve::audit::AuditSink;
use crate::serve::burst::Burst;
use crate::serve::mailbox::{Bell, Bells, Inbox, Mailbox};
use crate::telemetry::Traces;

pub struct Hub<B: Bell> {
    core: Mutex<Switchboard<Mailbox<B>>>,
    next_conn: AtomicU64,
    /// Wakes the runtime's timer when an earlier deadline was armed.
    wake: Box<dyn Fn() + Send + Sync>,
    /// The MCP bridge, when servers are bridged: `/mcp/…` requests go to
    /// it once the provider has checked them.
    bridge: OnceLock<Arc<Bridged>>,
    /// Where finished spans go, when traces are exported.
    traces: OnceLock<Arc<Traces>>,
}

impl<B: Bell> Hub<B> {
    /// The hub of `provider`, writing its audit lines to `audit` if given;
    /// `wake` wakes the runtime's timer.
    pub fn new(
        provider: Provider,
        audit: Option<AuditSink>,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Arc<Self> {
        let mut board = Switchboard::new(provider);
        if let Some(sink) = audit {
            board.set_audit(Box::new(move |line| sink.offer(line)));
        }
        Arc::new(Hub {
            core: Mutex::new(board),
            next_conn: AtomicU64::new(1),
            wake: Box::new(wake),
            bridge: OnceLock::new(),
            traces: OnceLock::new(),
        })
    }

    /// Exports the provider's spans through `traces` from now on (set
    /// once, before serving).
    pub fn set_traces(&self, traces: Arc<Traces>) {
        let exporter = traces.clone();
        self.lock()
            .set_spans(Box::new(move |span| exporter.send(span)));
        let _ = self.traces.set(traces);
    }

    /// Serves `bridged` beside the provider: its answers are posted to the
    /// connections like the provider's, its figures handed to the
    /// provider; children's stdout read with `read_stdout`, and remote
    /// servers' exchanges carried by `carriers`, when the runtime has its
    /// own (see [`Serving`]).
    pub fn attach_bridge(
        self: &Arc<Self>,
        bridged: Arc<Bridged>,
        read_stdout: Option<ReadStdout>,
        carriers: Option<Carriers>,
    ) {
        let hub = Arc::downgrade(self);
        let post: Post = Box::new(move |outputs| {
            hub.upgrade()
                .map_or_else(Posted::default, |hub| hub.post(outputs))
        });
        let hub = Arc::downgrade(self);
        let report: Reporter = Box::new(move |report| {
            if let Some(hub) = hub.upgrade() {
                hub.with(|p, _| p.handle_bridge_report(report));
            }
        });
        bridged.serve(Serving {
            post,
            report,
            read_stdout,
            carriers,
        });
        let _ = self.bridge.set(bridged);
    }

    /// A text frame from a client of the bridge's WebSocket.
    pub fn socket_text(&self, id: ConnId, text: &str) {
        if let Some(bridge) = self.bridge.get() {
            // Parsed before the bridge is locked: a large frame holds up
            // no other client while it is read.
            let frame = SocketFrame::parse(text);
            bridge.with(|b, now| b.handle_socket_frame(id, frame, now));
        }
    }

    /// Posts outputs made outside the provider; the connections are woken
    /// when the caller calls [`Posted::wake`]. Names the bridge clients
    /// whose unread output passed the bound: the bridge cuts their streams
    /// (they reconnect and resume), so memory stays bounded.
    fn post(&self, outputs: Few<Output>) -> Posted {
        let mut bells = Bells::default();
        let mut slow = Vec::new();
        let mut board = self.lock();
        for output in outputs {
            let conn = output.conn();
            let post = |mailbox: &Mailbox<B>, output| mailbox.post(output, &mut bells);
            if board.post(output, post) {
                slow.push(conn);
            }
        }
        drop(board);
        Posted {
            slow,
            // Bells ring when dropped.
            wake: Box::new(move || drop(bells)),
        }
    }

    /// The switchboard (for the timer: its armed deadline).
    pub fn lock(&self) -> MutexGuard<'_, Switchboard<Mailbox<B>>> {
        // A panic while holding the lock is a bug; keep serving regardless.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh connection: the guard that detaches it when dropped, its
    /// mailbox, and the backlog its writer reports to.
    pub fn connect(self: &Arc<Self>) -> (Attached<B>, Inbox<B>, Backlog) {
        let id = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = Mailbox::pair();
        let backlog = self.lock().attach(id, tx);
        let attached = Attached {
            hub: self.clone(),
            id,
        };
        (attached, rx, backlog)
    }

    /// Runs `f` on the provider, then posts everything it output and
    /// wakes the connections posted to.
    pub fn with<R>(&self, f: impl FnOnce(&mut Provider, Instant) -> R) -> R {
        self.with_deferred(&mut Bells::default(), f)
    }

    /// [`Hub::with`], leaving the connections posted to in `bells` to be
    /// woken later: a caller handling a burst rings once at its end.
    fn with_deferred<R>(
        &self,
        bells: &mut Bells<B>,
        f: impl FnOnce(&mut Provider, Instant) -> R,
    ) -> R {
        let post = |mailbox: &Mailbox<B>, output| mailbox.post(output, bells);
        let traced = |p: &mut Provider, now| {
            if let Some(traces) = self.traces.get() {
                traces.report_dropped(p);
            }
            f(p, now)
        };
        let (result, rearm) = self.lock().with(Instant::now(), traced, post);
        if rearm {
            (self.wake)();
        }
        result
    }

    /// Hands the provider link `id`'s `burst` of agent frames under one
    /// lock, empties it, and wakes the connections its frames (and any
    /// before them) posted to. Each frame is parsed first, outside the
    /// lock, so a large frame never holds the provider while it is read.
    pub fn hand_over(&self, id: ConnId, burst: &mut Burst, bells: &mut Bells<B>) {
        self.take_over(id, burst, bells);
        bells.ring();
    }

    /// [`Hub::hand_over`] without waking anyone yet: the connections posted
    /// to are added to `bells`, for a later burst's hand-over to wake.
    pub fn take_over(&self, id: ConnId, burst: &mut Burst, bells: &mut Bells<B>) {
        if !burst.is_empty() {
            // Sized up front: a burst is hundreds of frames, and growing
            // the vector as it fills would copy them all again and again.
            let mut messages = Vec::with_capacity(burst.len());
            messages.extend(burst.frames().map(FromAgent::parse));
            self.with_deferred(bells, |p, now| {
                for message in messages {
                    p.handle_agent_message(id, message, now);
                }
            });
            burst.clear();
        }
    }

    /// Hands the provider every request `poll` yields for connection `id`
    /// (its [`mcp_provider_core::http::ServerConn::poll_request`]), up to
    /// and including an error, whose answer ends the connection.
    pub fn pump(
        &self,
        id: ConnId,
        mut poll: impl FnMut() -> Result<Option<Request>, HttpError>,
    ) -> Pumped {
        let mut pumped = Pumped::default();
        loop {
            match poll() {
                Ok(Some(request)) => {
                    pumped.upgrade |= request.is_websocket_upgrade();
                    pumped.handled = true;
                    // Each bridge route's rule is on its row of the
                    // bridge's table; a path with none is the provider's.
                    let routed = self.bridge.get().and_then(|bridge| {
                        let guard =
                            mcp_provider_core::bridge::guard(&request.method, request.path())?;
                        Some((bridge, guard))
                    });
                    match routed {
                        Some((bridge, guard)) => {
                            if self.with(|p, now| p.admit_bridge(id, &request, guard, now)) {
                                bridge.handle_request(id, request);
                            }
                        }
                        _ => {
                            pumped.provider = true;
                            self.with(|p, now| p.handle_request(id, request, now));
                        }
                    }
                }
                Ok(None) => return pumped,
                Err(e) => {
                    pumped.handled = true;
                    self.with(|p, _| p.handle_http_error(id, &e));
                    return pumped;
                }
            }
        }
    }

    /// The writer of `id` carried out outputs worth `bytes` of its
    /// backlog; the provider hears when a high backlog drained.
    pub fn written(&self, id: ConnId, backlog: &Backlog, bytes: usize) {
        if backlog.written(bytes) {
            self.with(|p, _| p.handle_drained(id));
        }
    }

    /// The peer of `id` shut its sending side (a read returned 0). An
    /// editor may do that and still wait for its answer; a client of the
    /// bridge has left: its calls are cancelled now, not when the child
    /// answers (which may be never), so neither the child's slots nor
    /// this connection are held for it.
    pub fn peer_shut(&self, id: ConnId) {
        if let Some(bridge) = self.bridge.get() {
            bridge.handle_conn_closed(id);
        }
    }

    fn disconnect(&self, id: ConnId) {
        let mut bells = Bells::default();
        let post = |mailbox: &Mailbox<B>, output| mailbox.post(output, &mut bells);
        if self.lock().detach(id, Instant::now(), post) {
            (self.wake)();
        }
        if let Some(bridge) = self.bridge.get() {
            bridge.handle_conn_closed(id);
        }
    }
}

/// Who is on the other end of an upgraded connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// An agent link: frames to the provider.
    Agent,
    /// A client of the bridge's WebSocket envelope: frames to the bridge.
    BridgeClient,
}

impl From<&Upgrade> for Peer {
    fn from(upgrade: &Upgrade) -> Self {
        match upgrade {
            Upgrade::Agent(..) => Peer::Agent,
            Upgrade::Bridge(..) => Peer::BridgeClient,
        }
    }
}

/// What [`Hub::pump`] handed on.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pumped {
    /// A request or an error was handed to the provider.
    pub handled: bool,
    /// One of them asked to upgrade to an agent link.
    pub upgrade: bool,
    /// One of them went to the provider (rather than the bridge), which
    /// may have posted an invocation to an agent link's task.
    pub provider: bool,
}

/// A connection attached to the provider; detached when dropped, however
/// the task or thread that holds it ends (a panic included).
pub struct Attached<B: Bell> {
    hub: Arc<Hub<B>>,
    pub id: ConnId,
}

impl<B: Bell> Drop for Attached<B> {
    fn drop(&mut self) {
        self.hub.disconnect(self.id);
    }
}

impl<B: Bell> crate::serve::shutdown::Stop for Arc<Hub<B>> {
    fn begin(&self) {
        self.with(|p, _| p.shut_down());
        if let Some(bridge) = self.bridge.get() {
            bridge.stop();
        }
    }

    fn flushed(&self) -> bool {
        self.lock().queued() == 0 && self.bridge.get().is_none_or(|b| b.stopped())
    }

    fn finish(&self) {
        if let Some(bridge) = self.bridge.get() {
            bridge.kill_all();
        }
        if let Some(traces) = self.traces.get() {
            // The spans the wind-down finished, then the last export.
            self.with(|_, _| ());
            if let Some(bridge) = self.bridge.get() {
                bridge.with(|_, _| ());
            }
            traces.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::SystemTime;

    use bytes::Bytes;
    use mcp_provider_core::Config;
    use serde_json::{json, Value};

    use super::*;
    use crate::serve::mailbox::tests::TestBell;

    fn hub() -> Arc<Hub<TestBell>> {
        let config = Config::new(&["key"], "bridge");
        let provider = Provider::new(config, Instant::now(), SystemTime::now());
        Hub::new(provider, None, || {})
    }

    /// An editor's request with the editor key.
    fn request(method: &str, path: &str, body: Value) -> Request {
        let headers = vec![
            ("host".to_owned(), "127.0.0.1".to_owned()),
            ("authorization".to_owned(), "Bearer key".to_owned()),
        ];
        let body = Bytes::from(body.to_string());
        match Request::new(method, path, headers, body) {
            Ok(request) => request,
            Err(e) => panic!("a canonical path: {e:?}"),
        }
    }

    /// What was posted to `inbox` since it was last rung, once it was.
    fn rung(inbox: &Inbox<TestBell>) -> Vec<Output> {
        assert!(inbox.waiter().try_recv().is_ok(), "the mailbox was rung");
        let mut outputs = VecDeque::new();
        inbox.take(&mut outputs);
        outputs.into()
    }

    /// The frames among `outputs` for an agent, as JSON.
    fn frames(outputs: Vec<Output>) -> Vec<Value> {
        let text = |o| match o {
            Output::ToAgent { text, .. } => serde_json::from_str(&text).ok(),
            _ => None,
        };
        outputs.into_iter().filter_map(text).collect()
    }

    /// An agent attached to `hub`, registered for model `m` by a burst.
    fn agent(hub: &Arc<Hub<TestBell>>) -> (Attached<TestBell>, Inbox<TestBell>) {
        let (attached, inbox, _) = hub.connect();
        hub.with(|p, _| p.open_agent(attached.id, "agent"));
        let mut burst = Burst::default();
        let register = json!({"type": "register", "agent_id": "a1", "models": ["m"],
            "allowed_scopes": ["inference"]});
        burst.push(&register.to_string());
        burst.push(r#"{"type":"no such type"}"#);
        hub.hand_over(attached.id, &mut burst, &mut Bells::default());
        assert!(burst.is_empty(), "handed over whole");
        let kinds: Vec<Value> = frames(rung(&inbox))
            .into_iter()
            .map(|f| f["type"].clone())
            .collect();
        assert_eq!(kinds, ["registered", "error"], "each frame, in order");
        (attached, inbox)
    }

    #[test]
    fn pump_hands_on_requests_up_to_and_including_an_error() {
        let hub = hub();
        let (editor, inbox, _) = hub.connect();
        let mut polled = VecDeque::from([
            Ok(Some(request("GET", "/v1/models", Value::Null))),
            Err(HttpError::Malformed("a test's")),
            Ok(Some(request("GET", "/api/version", Value::Null))),
        ]);
        let pumped = hub.pump(editor.id, || polled.pop_front().unwrap_or(Ok(None)));
        assert!(pumped.handled && !pumped.upgrade);
        assert_eq!(polled.len(), 1, "nothing past the error is read");
        let statuses: Vec<u16> = rung(&inbox)
            .iter()
            .filter_map(|o| match o {
                Output::Respond { response, .. } | Output::Refuse { response, .. } => {
                    Some(response.status)
                }
                _ => None,
            })
            .collect();
        assert_eq!(statuses, [200, 400]);
    }

    #[test]
    fn a_burst_reaches_the_provider_in_order_and_a_dropped_editor_is_cancelled() {
        let hub = hub();
        let (_agent, agent_inbox) = agent(&hub);
        let (editor, _editor_inbox, _) = hub.connect();
        let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let chat = request("POST", "/v1/chat/completions", chat);
        let mut once = Some(chat);
        hub.pump(editor.id, || Ok(once.take()));
        let invoked = frames(rung(&agent_inbox));
        assert_eq!(invoked.len(), 1);
        assert_eq!(invoked[0]["type"], "model_invoke");
        // However its task ends, the editor's attachment detaches it.
        drop(editor);
        let cancelled = frames(rung(&agent_inbox));
        assert_eq!(cancelled.len(), 1);
        assert_eq!(cancelled[0]["type"], "cancel");
        assert_eq!(cancelled[0]["id"], invoked[0]["id"]);
    }
}
