//! `agent mcp` between its waits, the same in every runtime: what each
//! input does to the core's host agent, and the host's stdin read on a
//! thread of its own. A runtime only waits (for an input or the agent's
//! deadline) and writes what the agent has for the host and the link.

use std::io::Read;
use std::time::Instant;

use mcp_provider_core::agent::host::HostAgent;

use crate::agent::dial::{FromLink, LinkEnd};
use crate::{RemoteHost, RunError};

/// What `agent mcp`'s loop waits for.
pub enum Input {
    /// From the link of this number (see `agent exec`'s).
    Link(u64, FromLink),
    Host(Vec<u8>),
    HostClosed,
}

/// Inputs waiting for the agent: the stdin reader waits past this.
pub const HOST_INPUTS: usize = 64;

/// How serving one link ended.
pub enum Ended {
    Link(LinkEnd),
    /// The host closed stdin or stdout: `agent mcp` is done.
    Host,
}

/// The host's agent across links, and the number of the link it serves.
pub struct Host {
    pub agent: HostAgent,
    /// Frames of earlier links are stragglers, and dropped.
    pub link: u64,
}

impl Host {
    pub fn new(remote: &RemoteHost) -> Self {
        Host {
            agent: HostAgent::new(remote.plan.clone()),
            link: 0,
        }
    }

    /// Handles what waiting found (`None`: the agent's deadline passed);
    /// returns how serving the link ended, when it did. When the link
    /// ended, the agent is told, and the next link gets the next number.
    pub fn handle(&mut self, input: Option<Input>) -> Option<Ended> {
        let now = Instant::now();
        match input {
            None => self.agent.handle_timeout(now),
            Some(Input::Host(bytes)) => self.agent.handle_host_bytes(&bytes, now),
            Some(Input::Link(n, FromLink::Frame(frame))) if n == self.link => {
                self.agent.handle_provider_message(&frame)
            }
            Some(Input::Link(n, FromLink::Closed(end))) if n == self.link => {
                self.agent.link_lost();
                self.link += 1;
                return Some(Ended::Link(end));
            }
            Some(Input::Link(..)) => {}
            Some(Input::HostClosed) => return Some(Ended::Host),
        }
        None
    }
}

/// Reads the host's stdin on a thread of its own until it ends, passing
/// each read, then its end, to `send` (which says false once nobody
/// listens). A thread in every runtime: stdin cannot be waited on without
/// blocking, and the async runtimes would give it a thread anyway.
pub fn read_stdin(send: impl Fn(Input) -> bool + Send + 'static) -> Result<(), RunError> {
    let read = move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = stdin.read(&mut buf) {
            if !send(Input::Host(buf.get(..n).unwrap_or_default().to_vec())) {
                return;
            }
        }
        send(Input::HostClosed);
    };
    std::thread::Builder::new()
        .name("mcp-stdin".into())
        .spawn(read)
        .map(drop)
        .map_err(RunError::cannot("start the stdin thread"))
}

#[cfg(test)]
mod tests {
    use mcp_provider_core::agent::host::HostPlan;

    use super::*;

    #[test]
    fn a_link_ends_once_and_its_stragglers_are_dropped() {
        let plan = HostPlan {
            model: "mcp".into(),
            sampling: false,
        };
        let mut host = Host {
            agent: HostAgent::new(plan),
            link: 0,
        };
        let closed = |n| Some(Input::Link(n, FromLink::Closed(LinkEnd::Closed(None))));
        assert!(matches!(host.handle(closed(0)), Some(Ended::Link(_))));
        assert_eq!(host.link, 1);
        // The first link's end, seen again, is a straggler now.
        assert!(host.handle(closed(0)).is_none());
        assert!(host.handle(None).is_none());
        assert!(matches!(host.handle(closed(1)), Some(Ended::Link(_))));
        assert!(matches!(
            host.handle(Some(Input::HostClosed)),
            Some(Ended::Host)
        ));
    }
}
