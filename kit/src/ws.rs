//! What every runtime's agent link says when it closes: the close code for
//! how a peer broke the protocol, and the close frame that carries it.

use mcp_provider_core::agent::close::LinkClose;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Error;

/// What reading a link's frames failed with: the link just ended (`None`:
/// it closed, or its connection broke), or how the peer broke the protocol.
pub fn fault(error: &Error) -> Option<LinkClose> {
    match error {
        Error::ConnectionClosed | Error::AlreadyClosed | Error::Io(_) => None,
        Error::Utf8(_) => Some(LinkClose::InvalidUtf8),
        Error::Capacity(_) => Some(LinkClose::TooBig),
        _ => Some(LinkClose::Protocol),
    }
}

/// The close frame telling the peer why its link ends.
pub fn close_frame(why: LinkClose) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(why.code()),
        reason: why.reason().into(),
    }
}
