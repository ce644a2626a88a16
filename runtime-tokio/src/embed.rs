//! The provider inside a tokio application: its routes served beside the
//! application's own, answered by agents written in the application.
//!
//! [`Provider::start`] starts the core on the current runtime, and
//! [`Provider::add_agent`] registers an [`Agent`] that answers in-process.
//! [`Provider::serve_on`] then serves a listener: the application answers
//! the requests it claims, the provider every other one (the OpenAI,
//! Anthropic and Ollama APIs, the agent link, the dashboard), each
//! connection in a task of its own under the provider's caps. An
//! application that accepts connections itself hands the provider its own
//! with [`Provider::serve`], under the same caps.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use mcp_provider_core::agent::app::AppAgent;
pub use mcp_provider_core::agent::app::{AppMessage as Message, AppRequest as Request};
pub use mcp_provider_core::http::{Request as HttpRequest, Response as HttpResponse};
pub use mcp_provider_core::Config;
use mcp_provider_kit::in_process::{InProcess, ToProvider};
use mcp_provider_kit::task_link::TaskBell;
use mcp_provider_kit::{ConnLimits, Runtime};
use tokio::net::{TcpListener, TcpStream};

use crate::server::{self, Gate, Shared};

/// An agent written in the application: it answers each request by
/// sending text through its [`Reply`].
pub trait Agent: Send + Sync + 'static {
    /// Answers `request`; the answer ends when `reply` is dropped.
    fn answer(&self, request: Request, reply: Reply) -> impl Future<Output = ()> + Send;
}

/// The provider, started on a tokio runtime; clones share it, and its
/// connection cap.
#[derive(Clone)]
pub struct Provider {
    shared: Shared,
    limits: ConnLimits,
    gate: Gate,
}

impl Provider {
    /// Starts the provider (and its timer) on the current tokio runtime.
    /// `config.http` caps each request (head, body) and is the read
    /// timeout: an idle connection has `config.http.idle_timeout` to send
    /// a whole request. It serves at most as many connections at once as
    /// the `mcp-provider-tokio` binary does by default (16,384; see
    /// [`Provider::with_max_connections`]).
    pub fn start(config: Config) -> Self {
        let max_connections = crate::Tokio::DEFAULT_MAX_CONNECTIONS;
        let limits = ConnLimits {
            max_connections,
            read_timeout: config.http.idle_timeout,
            http: config.http,
        };
        Provider {
            shared: server::start(config, None),
            limits,
            gate: Gate::new(max_connections),
        }
    }

    /// Serves at most `max` connections at once; one past it is answered
    /// 503 and closed. Keep it under the process's limit on open files:
    /// past that, connections wait unaccepted rather than get the 503.
    /// Call it before serving: the cap is counted from here.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.limits.max_connections = max;
        self.gate = Gate::new(max);
        self
    }

    /// Accepts connections on `listener` for as long as the application
    /// runs (it never returns), each served in a task of its own under the
    /// provider's caps: the connection cap, the read timeout, the caps on a
    /// request's head and body. Every request, on any connection, is read
    /// whole by the provider and offered to `app` first: what it answers
    /// (`Some`, with a whole body) is the application's route; everything
    /// else (`None`) is the provider's. `app` answers at once: it runs on
    /// the connection's task.
    pub async fn serve_on<F>(&self, listener: TcpListener, app: F)
    where
        F: Fn(&HttpRequest) -> Option<HttpResponse> + Send + Sync + 'static,
    {
        let (shared, gate) = (self.shared.clone(), self.gate.clone());
        server::accept_loop(shared, listener, self.limits, gate, Some(Arc::new(app))).await;
    }

    /// Serves one connection the application accepted itself, until it
    /// closes, under the same caps as [`Provider::serve_on`]: it counts
    /// against the connection cap (past it, it is answered 503 and closed).
    pub async fn serve(&self, stream: TcpStream) {
        if let Some((stream, _open)) = self.gate.admit(stream) {
            server::connection(self.shared.clone(), stream, self.limits, None).await;
        }
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
