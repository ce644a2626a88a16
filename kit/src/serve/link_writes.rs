//! What an agent link's writer does with the outputs it took from its
//! mailbox, the same in both runtimes: send each frame in order, stop at a
//! close (sent last, with its reason), and report the backlog the batch
//! held once written.

use std::collections::VecDeque;

use mcp_provider_core::agent::close::LinkClose;
use mcp_provider_core::Output;

/// One batch of a link's outputs, as its writer carries it out.
#[derive(Debug, Default, PartialEq)]
pub struct LinkWrites {
    /// Text frames to send, in order.
    pub texts: Vec<String>,
    /// Close the link after them, saying why; nothing is sent after.
    pub close: Option<LinkClose>,
    /// The backlog the batch held: once written, report it
    /// ([`crate::serve::hub::Hub::written`]).
    pub bytes: usize,
}

impl LinkWrites {
    /// Takes `outputs` from the front up to and including a close.
    pub fn take(outputs: &mut VecDeque<Output>) -> Self {
        let mut writes = LinkWrites::default();
        while let Some(output) = outputs.pop_front() {
            writes.bytes += output.backlog_bytes();
            match output.into_link() {
                Some(Ok(text)) => writes.texts.push(text),
                Some(Err(why)) => {
                    writes.close = Some(why);
                    break;
                }
                None => {}
            }
        }
        writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_provider_core::ConnId;

    #[test]
    fn frames_go_in_order_and_nothing_after_a_close() {
        let conn = ConnId(1);
        let text = |t: &str| Output::ToAgent {
            conn,
            text: t.to_owned(),
        };
        let mut outputs = VecDeque::from([
            text("a"),
            text("bc"),
            Output::CloseAgent {
                conn,
                why: LinkClose::TooSlow,
            },
            text("late"),
        ]);
        let writes = LinkWrites::take(&mut outputs);
        assert_eq!(writes.texts, ["a", "bc"]);
        assert_eq!(writes.close, Some(LinkClose::TooSlow));
        assert_eq!(writes.bytes, 3, "the backlog of what was taken");
        assert_eq!(outputs.len(), 1, "what follows a close is not taken");
    }
}
