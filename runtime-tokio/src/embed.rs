//! The provider inside a tokio application: its routes served on
//! connections the application accepts, answered by agents written in the
//! application.
//!
//! [`Provider::start`] starts the core on the current runtime;
//! [`Provider::serve`] serves one accepted connection (the OpenAI,
//! Anthropic and Ollama APIs, the agent link, the dashboard), and
//! [`Provider::add_agent`] registers an [`Agent`] that answers in-process.
//! The application keeps its listener and decides which connections are
//! the provider's.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use mcp_provider_core::agent::app::AppAgent;
pub use mcp_provider_core::agent::app::{AppMessage as Message, AppRequest as Request};
pub use mcp_provider_core::Config;
use mcp_provider_kit::in_process::{InProcess, ToProvider};
use mcp_provider_kit::ConnLimits;
use tokio::net::TcpStream;

use mcp_provider_kit::task_link::TaskBell;

use crate::server::{self, Shared};

/// An agent written in the application: it answers each request by
/// sending text through its [`Reply`].
pub trait Agent: Send + Sync + 'static {
    /// Answers `request`; the answer ends when `reply` is dropped.
    fn answer(&self, request: Request, reply: Reply) -> impl Future<Output = ()> + Send;
}

/// The provider, started on a tokio runtime; clones share it.
#[derive(Clone)]
pub struct Provider {
    shared: Shared,
    limits: ConnLimits,
}

impl Provider {
    /// Starts the provider (and its timer) on the current tokio runtime.
    pub fn start(config: Config) -> Self {
        let limits = ConnLimits {
            // The application accepts, so it decides how many.
            max_connections: usize::MAX,
            read_timeout: config.http.idle_timeout,
            http: config.http,
        };
        Provider {
            shared: server::start(config, None),
            limits,
        }
    }

    /// Serves one connection the application accepted, until it closes.
    pub async fn serve(&self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        server::connection(self.shared.clone(), stream, self.limits).await;
    }

    /// Registers `agent` as `name`, serving `models`, for as long as the
    /// provider runs.
    pub fn add_agent(&self, name: &str, models: &[&str], agent: impl Agent) {
        let (mut inbox, to) = InProcess::attach(&self.shared, name);
        let link = Link {
            to,
            state: Arc::new(Mutex::new(AppAgent::new(name, name, models))),
        };
        link.flush();
        let agent = Arc::new(agent);
        tokio::spawn(async move {
            while inbox.waiter().recv().await.is_ok() {
                while let Some(frame) = inbox.next_frame() {
                    link.state().handle_message(&frame);
                }
                link.flush();
                loop {
                    let Some(request) = link.state().poll_request() else {
                        break;
                    };
                    let (agent, id) = (agent.clone(), request.id.clone());
                    let reply = Reply {
                        id,
                        link: link.clone(),
                    };
                    tokio::spawn(async move { agent.answer(request, reply).await });
                }
            }
        });
    }
}

/// An application agent's place on the provider.
#[derive(Clone)]
struct Link {
    to: ToProvider<TaskBell>,
    state: Arc<Mutex<AppAgent>>,
}

impl Link {
    fn state(&self) -> MutexGuard<'_, AppAgent> {
        // Its state stays whole whatever panicked while holding it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands the provider the frames the agent made.
    fn flush(&self) {
        let frames: Vec<String> = {
            let mut state = self.state();
            std::iter::from_fn(|| state.poll_transmit()).collect()
        };
        self.to.send(&frames);
    }
}

/// Where an answer's text goes; dropping it ends the answer.
pub struct Reply {
    id: String,
    link: Link,
}

impl Reply {
    /// Sends the next piece of the answer. False once the editor is gone
    /// (it disconnected, or its request timed out): stop answering.
    pub fn send(&self, text: &str) -> bool {
        let open = {
            let mut state = self.link.state();
            state.send(&self.id, text);
            state.is_open(&self.id)
        };
        self.link.flush();
        open
    }

    /// Ends the answer with an error the editor sees.
    pub fn fail(self, message: &str) {
        self.link.state().fail(&self.id, message);
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.link.state().finish(&self.id);
        self.link.flush();
    }
}
