//! What both runtimes do the same way on agent links: the WebSocket
//! request that dials one with the bridge token, the `101` head that
//! accepts one, the backoff between attempts to reach a provider or an
//! agent hub, how long an agent waits on a provider that went silent,
//! what an agent process does when its link ends, and where the bridge
//! token `serve` generated is kept.

use std::path::PathBuf;
use std::time::Duration;

use mcp_provider_core::agent::close::{LinkClose, PINGS_MISSED};
use mcp_provider_core::http::websocket_accept;
use mcp_provider_core::Upgrade;
use mcp_provider_core::{Backoff, Doubling};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::{Request, Response};
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::CloseFrame;

/// Where an agent process dials, with which bridge token, and whether it
/// dials again when the link ends.
#[derive(Debug, Clone)]
pub struct Link {
    pub url: String,
    pub token: String,
    /// Stop when the link ends instead of reconnecting (`--once`).
    pub once: bool,
}

/// How long a write to an agent hub's link may wait for the hub to read:
/// the hub is no editor connection with a read timeout of its own, so it
/// gets a minute, the editors' default. Past it the link ends and the hub
/// is dialed again (a hub that stops reading would otherwise hold the
/// link's writer, then its reader, whose pongs wait for that write).
pub const HUB_STALL: Duration = Duration::from_secs(60);

/// The variable an agent process takes its bridge token from, and that
/// the secrets file `serve` keeps sets.
pub const BRIDGE_TOKEN_VAR: &str = "MCP_PROVIDER_BRIDGE_TOKEN";

/// Where `serve` keeps the secrets it generates, and where an agent
/// started on the same machine without a token finds its bridge token:
/// `$XDG_STATE_HOME/mcp-provider/env`, else `~/.local/state/mcp-provider/env`
/// (empty when neither variable is set: nothing is kept).
pub fn default_secrets_file() -> String {
    state_dir().map_or_else(String::new, |d| {
        d.join("env").to_string_lossy().into_owned()
    })
}

/// The folder this program keeps state in (generated secrets, OAuth
/// logins): `$XDG_STATE_HOME/mcp-provider`, else
/// `~/.local/state/mcp-provider`; `None` when neither variable is set.
pub fn state_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .map(|d| d.join("mcp-provider"))
}

/// Why dialing a provider failed.
#[derive(Debug)]
pub enum DialError {
    /// Dialing again cannot help: the provider refused the bridge token,
    /// or the URL is not one to dial.
    Final(String),
    /// Nothing answered, or the handshake failed: the provider may be
    /// starting.
    Unreachable(String),
}

impl DialError {
    pub fn message(self) -> String {
        match self {
            DialError::Final(why) | DialError::Unreachable(why) => why,
        }
    }
}

/// The error for a failed WebSocket handshake with `url`: a refused token
/// says where the right one is kept.
pub fn handshake_failed(url: &str, e: tungstenite::Error) -> DialError {
    match e {
        tungstenite::Error::Http(response) if matches!(response.status().as_u16(), 401 | 403) => {
            let file = default_secrets_file();
            DialError::Final(format!(
                "the provider at {url} refused the bridge token ({}). Its token is the one `serve` printed at start; \
                 unless configured, it is kept in {} as {}: pass it with --token or set that variable",
                response.status(),
                if file.is_empty() { "the secrets file" } else { &file },
                BRIDGE_TOKEN_VAR,
            ))
        }
        e => DialError::Unreachable(format!("WebSocket handshake with {url} failed: {e}")),
    }
}

/// What a remote agent's link reader passes on.
pub enum FromLink {
    Frame(String),
    Closed(LinkEnd),
}

/// How an agent's link ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEnd {
    /// The provider closed it, with this close code (none: no close frame
    /// or no code in it).
    Closed(Option<u16>),
    /// The connection failed.
    Failed(String),
}

impl LinkEnd {
    /// The end a close frame (if any) says.
    pub fn from_close(frame: Option<&CloseFrame>) -> LinkEnd {
        LinkEnd::Closed(frame.map(|f| u16::from(f.code)))
    }
}

/// What an agent process does when its link ends.
#[derive(Debug, PartialEq, Eq)]
enum AfterLink {
    /// Dial again, after telling the user this line.
    Reconnect(String),
    /// Stop.
    Stop(Stop),
}

/// Why an agent stops dialing its provider.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// It is done: its session was revoked (its notice was shown), or its
    /// one link (`--once`) closed.
    Done,
    /// It fails, for this reason: dialing again would not help.
    Failed(String),
}

impl Stop {
    /// What the agent process ends with.
    pub fn outcome(self) -> Result<(), LinkStopped> {
        match self {
            Stop::Done => Ok(()),
            Stop::Failed(why) => Err(LinkStopped(why)),
        }
    }
}

/// Why an agent process fails: its provider refused it, or ended its link
/// for a fault that dialing again would repeat.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LinkStopped(pub String);

impl From<DialError> for LinkStopped {
    fn from(e: DialError) -> LinkStopped {
        LinkStopped(e.message())
    }
}

/// The policy for an agent whose link ended: a server going away (1001),
/// a dropped connection or a link cut for reading too slowly is dialed
/// again, as the protocol says; a revoked session (1008) stops quietly
/// (its notice was shown), and a close that names a fault of the agent's
/// own stops with it, since dialing again would repeat it.
fn after_link(url: &str, end: LinkEnd, once: bool) -> AfterLink {
    let going_away = LinkClose::ShuttingDown.code();
    let revoked = LinkClose::Revoked.code();
    let too_slow = LinkClose::TooSlow.code();
    match end {
        LinkEnd::Closed(Some(code)) if code == revoked => AfterLink::Stop(Stop::Done),
        LinkEnd::Closed(_) | LinkEnd::Failed(_) if once => AfterLink::Stop(match end {
            LinkEnd::Failed(e) => Stop::Failed(e),
            LinkEnd::Closed(_) => Stop::Done,
        }),
        LinkEnd::Closed(Some(code)) if code == going_away => AfterLink::Reconnect(format!(
            "The provider at {url} is shutting down; reconnecting when it is back (Ctrl-C to stop)…"
        )),
        LinkEnd::Closed(Some(code)) if code == too_slow || code == 1000 => {
            AfterLink::Reconnect(format!(
                "The provider at {url} closed the link (code {code}); reconnecting (Ctrl-C to stop)…"
            ))
        }
        LinkEnd::Closed(None) => AfterLink::Reconnect(format!(
            "The link to {url} closed; reconnecting (Ctrl-C to stop)…"
        )),
        LinkEnd::Closed(Some(code)) => AfterLink::Stop(Stop::Failed(format!(
            "the provider at {url} closed the link with code {code}: see docs/agent-protocol.md, Close codes"
        ))),
        LinkEnd::Failed(e) => AfterLink::Reconnect(format!(
            "The provider at {url} went away ({e}); reconnecting (Ctrl-C to stop)…"
        )),
    }
}

/// Why an agent link's handshake request cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum LinkRequestError {
    #[error("bad URL {url}: {source}")]
    BadUrl {
        url: String,
        source: tungstenite::Error,
    },
    #[error("the token contains characters not allowed in a header")]
    BadToken,
}

/// The handshake request for `url` with `token` as its Bearer credential,
/// and the host and port to open a TCP connection to.
pub fn link_request(url: &str, token: &str) -> Result<(Request, String, u16), LinkRequestError> {
    let mut request = url
        .into_client_request()
        .map_err(|source| LinkRequestError::BadUrl {
            url: url.to_owned(),
            source,
        })?;
    let auth = format!("Bearer {token}")
        .parse()
        .map_err(|_| LinkRequestError::BadToken)?;
    request.headers_mut().insert("authorization", auth);
    let host = request.uri().host().unwrap_or("127.0.0.1").to_owned();
    let port = request.uri().port_u16().unwrap_or(80);
    Ok((request, host, port))
}

/// The header field of an agent link's `101` that says how often the
/// provider pings the agent, in whole seconds.
pub const PING_INTERVAL_HEADER: &str = "x-mcp-ping-interval";

/// How often a provider that does not say pings its agents (the
/// protocol's interval, and every provider's before the header).
const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);

/// How long dialing a provider (connecting and the WebSocket handshake)
/// may take: one that accepts and never answers is tried again later,
/// not waited on forever.
pub const LINK_DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The `101 Switching Protocols` head accepting `upgrade`.
pub fn accept_head(upgrade: &Upgrade) -> bytes::Bytes {
    let every = upgrade.ping_every().map(|d| d.as_secs().max(1).to_string());
    let mut fields = Vec::with_capacity(2);
    if let Some(protocol) = upgrade.protocol() {
        fields.push(("sec-websocket-protocol", protocol));
    }
    if let Some(every) = &every {
        fields.push((PING_INTERVAL_HEADER, every.as_str()));
    }
    websocket_accept(&derive_accept_key(upgrade.key().as_bytes()), &fields)
}

/// How long an agent hears nothing from its provider, or waits for it to
/// read, before it takes the link as lost: a provider that vanished
/// without closing (a machine asleep or cut off, a process stopped) sends
/// no close and no reset, and the agent would wait on it forever. It is
/// three of the pings the provider's `101` (`response`) says it sends.
pub fn silence_limit(response: &Response) -> Duration {
    let every = response
        .headers()
        .get(PING_INTERVAL_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map_or(DEFAULT_PING_INTERVAL, |secs| {
            Duration::from_secs(secs.clamp(1, 3600))
        });
    every * PINGS_MISSED
}

/// What a read or write of a provider's link fails with once the link was
/// silent for its limit.
#[derive(Debug)]
pub struct Silent(pub Duration);

impl std::fmt::Display for Silent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "nothing came from the provider, or went to it, for {} s ({PINGS_MISSED} of its pings)",
            self.0.as_secs()
        )
    }
}

impl std::error::Error for Silent {}

/// How a link ended whose read or write failed with `e`: [`Silent`], or,
/// on a socket whose reads and writes wait at most `limit`, one that
/// waited that long, is named as such.
pub fn link_failed(e: &tungstenite::Error, limit: Option<Duration>) -> LinkEnd {
    if let tungstenite::Error::Io(io) = e {
        if let Some(silent) = io.get_ref().and_then(|e| e.downcast_ref::<Silent>()) {
            return LinkEnd::Failed(silent.to_string());
        }
        let waited = matches!(
            io.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        );
        if let Some(limit) = limit.filter(|_| waited) {
            return LinkEnd::Failed(Silent(limit).to_string());
        }
    }
    LinkEnd::Failed(format!("agent link failed: {e}"))
}

/// Dialing a provider again after an agent's link ended, as both runtimes
/// do it: [`Redial::after`] says whether to (telling the user), each wait
/// comes from a [`Backoff`] on [`LINK_BACKOFF`], and a failed attempt either waits again or,
/// when dialing cannot help (a refused token), stops the agent.
pub struct Redial {
    backoff: Backoff,
}

impl Redial {
    /// Whether to dial again after `end`: a redial, with the user told
    /// through `tell`, or the outcome to stop with.
    pub fn after(link: &Link, end: LinkEnd, tell: fn(&str)) -> Result<Redial, Stop> {
        match after_link(&link.url, end, link.once) {
            AfterLink::Stop(stop) => Err(stop),
            AfterLink::Reconnect(line) => {
                tell(&line);
                Ok(Redial {
                    backoff: Backoff::new(LINK_BACKOFF),
                })
            }
        }
    }

    /// How long to wait before the next attempt.
    pub fn wait(&mut self) -> Duration {
        self.backoff.next_wait()
    }

    /// An attempt failed: wait and try again, or stop with why.
    pub fn failed(&self, e: DialError) -> Result<(), Stop> {
        match e {
            DialError::Final(why) => Err(Stop::Failed(why)),
            DialError::Unreachable(_) => Ok(()),
        }
    }
}

/// Waits between attempts to reach a provider or an agent hub: 0.1 s,
/// doubling up to 30 s, back to 0.1 s once a connection succeeds.
pub const LINK_BACKOFF: Doubling = Doubling {
    first: Duration::from_millis(100),
    most: Duration::from_secs(30),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(LINK_BACKOFF);
        let waits: Vec<u64> = (0..12).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(&waits[..4], [100, 200, 400, 800]);
        assert_eq!(*waits.last().unwrap(), 30_000);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(100));
    }

    #[test]
    fn an_agent_reconnects_unless_revoked_at_fault_or_told_once() {
        let url = "ws://127.0.0.1:8788/v1/agent";
        let again = |end| matches!(after_link(url, end, false), AfterLink::Reconnect(_));
        assert!(again(LinkEnd::Closed(Some(1001))));
        assert!(again(LinkEnd::Closed(None)));
        assert!(again(LinkEnd::Closed(Some(1013))));
        assert!(again(LinkEnd::Failed("reset".into())));
        assert_eq!(
            after_link(url, LinkEnd::Closed(Some(1008)), false),
            AfterLink::Stop(Stop::Done)
        );
        let AfterLink::Stop(Stop::Failed(why)) =
            after_link(url, LinkEnd::Closed(Some(1009)), false)
        else {
            panic!("a frame too large is the agent's own fault");
        };
        assert!(why.contains("1009"), "{why}");
        assert_eq!(
            after_link(url, LinkEnd::Closed(Some(1001)), true),
            AfterLink::Stop(Stop::Done)
        );
        assert_eq!(
            after_link(url, LinkEnd::Failed("reset".into()), true),
            AfterLink::Stop(Stop::Failed("reset".into()))
        );
    }

    #[test]
    fn the_accept_head_carries_the_rfc_6455_example_key() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==".to_owned();
        let agent = Upgrade::Agent(key.clone(), Duration::from_secs(30));
        let head = String::from_utf8(accept_head(&agent).to_vec()).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"));
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert!(head.ends_with("x-mcp-ping-interval: 30\r\n\r\n"), "{head}");
        assert!(!head.contains("sec-websocket-protocol"));
        let head = accept_head(&Upgrade::Bridge(key, Some("mcp-bridge"))).to_vec();
        let head = String::from_utf8(head).unwrap();
        assert!(
            head.ends_with("sec-websocket-protocol: mcp-bridge\r\n\r\n"),
            "{head}"
        );
    }

    #[test]
    fn an_agent_waits_three_of_the_pings_its_provider_names() {
        let said = |value: Option<&str>| {
            let mut response = Response::new(None);
            if let Some(value) = value {
                response
                    .headers_mut()
                    .insert(PING_INTERVAL_HEADER, value.parse().unwrap());
            }
            silence_limit(&response).as_secs()
        };
        assert_eq!(said(Some("1")), 3);
        assert_eq!(said(Some(" 20 ")), 60);
        // Nothing said, or nothing usable: the protocol's 30 s.
        assert_eq!(said(None), 90);
        assert_eq!(said(Some("soon")), 90);
        assert_eq!(said(Some("-5")), 90);
        // Bounded either way: never spinning, never forever.
        assert_eq!(said(Some("0")), 3);
        assert_eq!(said(Some("99999999999999999999")), 90);
        assert_eq!(said(Some("86400")), 3 * 3600);
        let silent = LinkEnd::Failed(Silent(Duration::from_secs(90)).to_string());
        let timed_out = |kind: std::io::ErrorKind| tungstenite::Error::Io(kind.into());
        let waited = timed_out(std::io::ErrorKind::WouldBlock);
        assert_eq!(link_failed(&waited, Some(Duration::from_secs(90))), silent);
        let said = std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            Silent(Duration::from_secs(90)),
        );
        assert_eq!(link_failed(&tungstenite::Error::Io(said), None), silent);
        let reset = timed_out(std::io::ErrorKind::ConnectionReset);
        assert_ne!(link_failed(&reset, Some(Duration::from_secs(90))), silent);
        assert_ne!(link_failed(&waited, None), silent);
    }
}
