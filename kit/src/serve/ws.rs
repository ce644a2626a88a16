//! What every runtime's served WebSocket (an agent link, a bridge client)
//! is configured with, and says when it closes: the close code for how a
//! peer broke the protocol, and the close frame that carries it.

use std::io::ErrorKind;

use mcp_provider_core::agent::close::{LinkClose, MAX_FRAME_BYTES};
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::Error;

/// The WebSocket settings of every served link: frames no larger than the
/// agent protocol allows.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

/// What reading a link's frames failed with: the link just ended (`None`:
/// it closed, or its connection broke), or how the peer broke the protocol.
/// A write that timed out (the answer to a ping the reader sent on) means
/// the peer left what it was sent unread for too long: it reads too slowly.
pub fn fault(error: &Error) -> Option<LinkClose> {
    match error {
        Error::Io(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            Some(LinkClose::TooSlow)
        }
        Error::ConnectionClosed | Error::AlreadyClosed | Error::Io(_) => None,
        Error::Utf8(_) => Some(LinkClose::InvalidUtf8),
        Error::Capacity(_) => Some(LinkClose::TooBig),
        _ => Some(LinkClose::Protocol),
    }
}

/// `text` as the server's text frame (whole, unmasked), after `out`: for a
/// runtime that writes a link's frames without its WebSocket instance.
pub fn encode_text(text: &str, out: &mut Vec<u8>) {
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    // Writing into a vector cannot fail.
    let _ = header.format(text.len() as u64, out);
    out.extend_from_slice(text.as_bytes());
}

/// The close frame telling the peer why its link ends.
pub fn close_frame(why: LinkClose) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(why.code()),
        reason: why.reason().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_frame_reads_back_as_the_text_it_was_made_of() {
        use std::io::Cursor;
        use tungstenite::protocol::Role;
        use tungstenite::{Message, WebSocket};
        let texts = ["short", &"x".repeat(200), &"é".repeat(40_000)];
        let mut wire = Vec::new();
        for text in texts {
            encode_text(text, &mut wire);
        }
        let mut client = WebSocket::from_raw_socket(Cursor::new(wire), Role::Client, None);
        for text in texts {
            assert_eq!(client.read().unwrap(), Message::text(text));
        }
    }

    #[test]
    fn a_write_that_timed_out_is_a_peer_too_slow_and_a_broken_socket_is_no_fault() {
        let io = |kind| Error::Io(std::io::Error::from(kind));
        assert_eq!(fault(&io(ErrorKind::TimedOut)), Some(LinkClose::TooSlow));
        assert_eq!(fault(&io(ErrorKind::WouldBlock)), Some(LinkClose::TooSlow));
        assert_eq!(fault(&io(ErrorKind::ConnectionReset)), None);
        assert_eq!(fault(&Error::ConnectionClosed), None);
    }
}
