//! What a listing asked of several servers at once is for, below the
//! gather that asks it (`gather.rs`) and the endpoints that finish it
//! (`aggregate/`, `openapi.rs`): where each part is asked ([`Source`]),
//! how the parts become the answer ([`Finish`]), and how long and how far
//! a listing reads.

use std::time::Duration;

use serde_json::Value;

use crate::bridge::{ChildId, ClientId};

/// How long a listing waits for its slowest server before it is sent
/// without that server's part.
pub(super) const LISTING_WAIT: Duration = Duration::from_secs(5);

/// Pages of one server's list read at most, and bytes of their JSON: a
/// server still offering more past either is taken at its word so far
/// (and logged).
pub(super) const MAX_PAGES: usize = 32;

/// Where one server's part is asked.
pub(super) struct Source {
    pub(super) server: String,
    pub(super) child: ChildId,
    pub(super) client: ClientId,
    /// A client made for this listing alone: it ends with its answer.
    pub(super) ephemeral: bool,
    /// The `…/list` request's params for this server (its own cursor).
    pub(super) params: Value,
}

/// How the parts become the answer.
pub(super) enum Finish {
    /// The REST API's: every entry tagged with its `server`, the servers
    /// that could not answer named under `unavailable`.
    Tagged,
    /// A page of the aggregate endpoint's listing.
    Merged(Page),
    /// The OpenAPI document of the tools, of `server` alone when named.
    Document { server: Option<String> },
    /// A request of the aggregate endpoint naming a tool or prompt that
    /// was not listed: made once the listing taught its name.
    Resolve(Box<Resolve>),
    /// A request of the aggregate endpoint in search mode, made once every
    /// tool is listed and indexed.
    Index(Box<Resolve>),
    /// A call of `tool` with `params` (its name, arguments and the
    /// request's `_meta`), made once the tool is seen in `server`'s list;
    /// a tool not there is a 404.
    Call {
        server: String,
        tool: String,
        params: Value,
    },
}

impl Finish {
    /// Whether a server's next page is wanted, given its `entries` so far.
    pub(super) fn wants_more(&self, entries: &[Value]) -> bool {
        match self {
            Finish::Tagged | Finish::Merged(_) => false,
            Finish::Document { .. } | Finish::Resolve(_) | Finish::Index(_) => true,
            Finish::Call { tool, .. } => !listed(entries, tool),
        }
    }

    /// What a server that cannot answer is left out of, for the log.
    pub(super) fn what(&self) -> &'static str {
        match self {
            Finish::Tagged | Finish::Merged(_) => "a listing of several servers",
            Finish::Document { .. } => "the OpenAPI document",
            Finish::Resolve(_) => "a listing to find a name called on /mcp",
            Finish::Index(_) => "the tool search's listing",
            Finish::Call { .. } => "an OpenAPI tool call",
        }
    }

    /// How long the gather waits for its slowest server: a call waits as
    /// long as its server may take to start, since it has no other.
    pub(super) fn wait(&self, startup: Duration) -> Duration {
        match self {
            Finish::Call { .. } => startup.max(LISTING_WAIT),
            _ => LISTING_WAIT,
        }
    }
}

/// Whether a tool called `tool` is among `entries`.
pub(super) fn listed(entries: &[Value], tool: &str) -> bool {
    entries.iter().any(|entry| entry["name"] == tool)
}

/// The entries of `key` in a server's answer.
pub(super) fn entries<'a>(answer: &'a Value, key: &str) -> &'a [Value] {
    answer["result"][key].as_array().map_or(&[], Vec::as_slice)
}

/// A request of the aggregate endpoint waiting for a listing.
pub(super) struct Resolve {
    pub(super) id: Value,
    pub(super) method: String,
    pub(super) params: Value,
    /// Its session; none for a stateless request.
    pub(super) session: Option<String>,
}

/// A page of the aggregate listing being gathered: whom to answer, how.
pub(super) struct Page {
    pub(super) id: Value,
    pub(super) method: String,
    /// The session listing; none for a stateless request, answered in
    /// the stateless revision's shape.
    pub(super) session: Option<String>,
}
