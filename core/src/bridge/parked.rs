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

//!
//! The registry parks and takes back the calls (`stateless.rs`); what
//! a parked call is and how long it waits are here.

use std::time::Duration;

/// How long a parked call waits for its client's retry.
pub(crate) const PARK_TTL: Duration = Duration::from_secs(300);
/// Calls parked at once, at most; past it a server's request to a
/// stateless client is refused, as when nothing is parked.
pub(crate) const MAX_PARKED: usize = 1024;
/// The key of the one input a parked call asks for.
pub(crate) const INPUT: &str = "input";
