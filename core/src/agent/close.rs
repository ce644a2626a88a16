//! Why an agent link is closed, and the WebSocket close code that tells
//! the agent (RFC 6455 §7.4.1), so an agent can tell a fault of its own
//! from the server going away.

/// The largest frame an agent may send: a whole answer fits many times
/// over, and a peer cannot make a link buffer more than this.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// How many pings of the provider's may pass with nothing heard from the
/// other end before a link is taken as gone, on either end: the provider
/// closes an agent that answered none ([`LinkClose::Silent`]), and an
/// agent dials again when none came.
pub const PINGS_MISSED: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkClose {
    /// The session was revoked.
    Revoked,
    /// The server is shutting down.
    ShuttingDown,
    /// A binary frame: the protocol is JSON text.
    Binary,
    /// A text frame that is not UTF-8.
    InvalidUtf8,
    /// A frame larger than [`MAX_FRAME_BYTES`].
    TooBig,
    /// Anything else that breaks the WebSocket protocol.
    Protocol,
    /// The peer reads too slowly: what waited for it passed the bound.
    TooSlow,
    /// Nothing came from the peer for three pings: it is taken as gone.
    Silent,
    /// The link's session was resumed on another link (its agent came back
    /// before this one was seen to drop).
    Replaced,
}

impl LinkClose {
    pub fn code(self) -> u16 {
        match self {
            LinkClose::Silent | LinkClose::Replaced => 1000,
            LinkClose::ShuttingDown => 1001,
            LinkClose::Protocol => 1002,
            LinkClose::Binary => 1003,
            LinkClose::InvalidUtf8 => 1007,
            LinkClose::Revoked => 1008,
            LinkClose::TooBig => 1009,
            LinkClose::TooSlow => 1013,
        }
    }

    /// The reason sent with the code.
    pub fn reason(self) -> &'static str {
        match self {
            LinkClose::Revoked => "session revoked",
            LinkClose::ShuttingDown => "server shutting down",
            LinkClose::Binary => "binary frames are not part of the agent protocol",
            LinkClose::InvalidUtf8 => "text frame is not valid UTF-8",
            LinkClose::TooBig => "frame too large",
            LinkClose::Protocol => "WebSocket protocol error",
            LinkClose::TooSlow => "read too slowly: too much was waiting",
            LinkClose::Silent => "nothing came from the agent for three pings",
            LinkClose::Replaced => "the session was resumed on another link",
        }
    }
}
