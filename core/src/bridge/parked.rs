//! A stateless client's call whose server asks the client something
//! midway (sampling, elicitation, roots). The stateless revision has no
//! requests from server to client: a server that needs input answers the
//! call `input_required`, with what it asks and an opaque `requestState`,
//! and the client retries the call with the answers. A server of the
//! session revisions asks its client a request instead, mid-call; for a
//! stateless client the bridge answers the call `input_required` with
//! that request, keeps the server's call running ("parked"), and when the
//! client retries with the state, gives the server the answer and the
//! retry the call's result. A call whose client never comes back is
//! cancelled at the server after [`PARK_TTL`].

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::common::{Parked, Pending, Reply};
use super::registry::{Above, Registry};
use super::{ChildId, ClientId};
use crate::http::Response;
use crate::mcp::{self, Message};
use crate::provider::RequestId;

/// How long a parked call waits for its client's retry.
pub(crate) const PARK_TTL: Duration = Duration::from_secs(300);
/// Calls parked at once, at most; past it a server's request to a
/// stateless client is refused, as when nothing is parked.
pub(crate) const MAX_PARKED: usize = 1024;
/// The key of the one input a parked call asks for.
const INPUT: &str = "input";

impl<H: Above> Registry<H> {
    /// The child asks `method` of a stateless client: if that client has a
    /// call waiting, the call is answered `input_required` with the
    /// request and parked. False when it cannot be (no call waiting, too
    /// many parked): the request is then refused.
    pub(crate) fn park(
        &mut self,
        child: ChildId,
        client: ClientId,
        ask: &Value,
        method: &str,
        params: &Value,
        now: Instant,
    ) -> bool {
        if self.parked.len() >= MAX_PARKED {
            return false;
        }
        // The call the client waits on: its key, its own id and method.
        let waiting = self
            .pending
            .iter()
            .find_map(|(key, pending)| match &pending.reply {
                Reply::Stateless { id, method } if (key.0, key.1) == (child, client) => {
                    Some((key.clone(), id.clone(), method.clone()))
                }
                _ => None,
            });
        let Some(((_, _, call), id, call_method)) = waiting else {
            return false;
        };
        let Some(pending) = self.pending.remove(&(child, client, call.clone())) else {
            return false;
        };
        self.next_request += 1;
        let state =
            crate::auth::derive_token(&[&self.seed, b"parked", &self.next_request.to_le_bytes()]);
        let mut request = json!({"method": method});
        if !params.is_null() {
            request["params"] = params.clone();
        }
        let result = json!({
            "resultType": "input_required",
            "inputRequests": {INPUT: request},
            "requestState": state,
        });
        let answer = mcp::result(&id, result);
        match pending.progress {
            Some(_) => self.end_answer_stream(pending.to, &answer),
            None => self.respond(pending.to, Response::json(200, answer)),
        }
        let parked = Parked {
            child,
            client,
            call,
            method: call_method,
            ask: ask.clone(),
            expires: now + PARK_TTL,
        };
        self.parked.insert(state, parked);
        true
    }

    /// A stateless request for server `spec` that retries a parked call
    /// (its `requestState` names it): the client's answer goes to the
    /// child, and this request waits for the call's result. False when the
    /// state names no call parked for that server.
    pub(crate) fn unpark(
        &mut self,
        to: RequestId,
        spec: usize,
        id: &Value,
        params: &Value,
        now: Instant,
    ) -> bool {
        let Some(state) = params["requestState"].as_str() else {
            return false;
        };
        let server = self.specs.get(spec).map(|s| s.name.as_str());
        let mine = |p: &Parked| self.child(p.child).map(|c| c.spec().name.as_str()) == server;
        if !self.parked.get(state).is_some_and(mine) {
            return false;
        }
        let Some(parked) = self.parked.remove(state) else {
            return false;
        };
        let outcome = match &params["inputResponses"][INPUT] {
            Value::Null => Err(json!({
                "code": mcp::INVALID_PARAMS,
                "message": "the client retried without an answer to the request",
            })),
            answer => Ok(answer.clone()),
        };
        let wait = Pending {
            to,
            reply: Reply::Stateless {
                id: id.clone(),
                method: parked.method,
            },
            progress: None,
        };
        self.pending
            .insert((parked.child, parked.client, parked.call), wait);
        let answer = Message::Response {
            id: parked.ask,
            outcome,
        };
        self.forward(parked.child, parked.client, answer, None, now);
        true
    }

    /// Parked calls whose clients never came back are cancelled at their
    /// child (the client made for them ends).
    pub(crate) fn expire_parked(&mut self, now: Instant) {
        let gone: Vec<String> = self
            .parked
            .iter()
            .filter(|(_, p)| p.expires <= now)
            .map(|(state, _)| state.clone())
            .collect();
        for state in gone {
            if let Some(parked) = self.parked.remove(&state) {
                tracing::debug!("a stateless client never retried its parked call");
                self.release_client(parked.child, parked.client, now);
            }
        }
    }
}
