//! An agent attached to the provider in memory — the built-in echo agent,
//! or an application's own when the provider is embedded: its frames go
//! to and from the provider with no socket between. A runtime waits on
//! the agent's mailbox and drives the agent; everything else is here.

use std::collections::VecDeque;
use std::sync::Arc;

use mcp_provider_core::backlog::Backlog;
use mcp_provider_core::{ConnId, Output};

use crate::serve::hub::{Attached, Hub};
use crate::serve::mailbox::{Bell, Inbox};

/// The agent's end of its place on the provider; detached when dropped.
pub struct InProcess<B: Bell> {
    to: ToProvider<B>,
    /// Detaches the agent when dropped.
    _attached: Attached<B>,
    backlog: Backlog,
    mail: Inbox<B>,
    /// Taken out of the mailbox, not handed to the agent yet.
    outputs: VecDeque<Output>,
}

/// Hands an in-process agent's frames to the provider; clones share it.
pub struct ToProvider<B: Bell> {
    hub: Arc<Hub<B>>,
    id: ConnId,
}

impl<B: Bell> Clone for ToProvider<B> {
    fn clone(&self) -> Self {
        ToProvider {
            hub: self.hub.clone(),
            id: self.id,
        }
    }
}

impl<B: Bell> InProcess<B> {
    /// Attaches an agent that `/health/deep` calls `name`.
    pub fn attach(hub: &Arc<Hub<B>>, name: &str) -> (Self, ToProvider<B>) {
        let (attached, mail, backlog) = hub.connect();
        let id = attached.id;
        hub.with(|p, _| p.open_agent(id, name));
        let to = ToProvider {
            hub: hub.clone(),
            id,
        };
        let agent = InProcess {
            to: to.clone(),
            _attached: attached,
            backlog,
            mail,
            outputs: VecDeque::new(),
        };
        (agent, to)
    }

    /// What to wait on before [`InProcess::next_frame`] has more.
    pub fn waiter(&self) -> &B::Waiter {
        self.mail.waiter()
    }

    /// The next frame the provider sent the agent, if one is here now.
    pub fn next_frame(&mut self) -> Option<String> {
        loop {
            if self.outputs.is_empty() {
                self.mail.take(&mut self.outputs);
            }
            let output = self.outputs.pop_front()?;
            let to = &self.to;
            to.hub.written(to.id, &self.backlog, output.backlog_bytes());
            if let Output::ToAgent { text, .. } = output {
                return Some(text);
            }
        }
    }
}

impl<B: Bell> ToProvider<B> {
    /// Hands the provider `frames`, in order, as if they came over a link.
    pub fn send(&self, frames: &[String]) {
        if frames.is_empty() {
            return;
        }
        self.hub.with(|p, now| {
            for frame in frames {
                p.handle_agent_text(self.id, frame, now);
            }
        });
    }
}
