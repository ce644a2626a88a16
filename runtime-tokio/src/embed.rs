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

pub use mcp_provider_core::agent::app::{AppMessage as Message, AppRequest as Request};
pub use mcp_provider_core::http::{Request as HttpRequest, Response as HttpResponse};
pub use mcp_provider_core::Config;
use mcp_provider_kit::driver::app::Embedded;
pub use mcp_provider_kit::driver::app::{Agent, Reply};
use mcp_provider_kit::Runtime as _;
use tokio::net::{TcpListener, TcpStream};

use crate::{socket, Tokio};

/// The provider, started on a tokio runtime; clones share it, and its
/// connection cap.
#[derive(Clone)]
pub struct Provider(Embedded<Tokio>);

impl Provider {
    /// Starts the provider (and its timer) on the current tokio runtime.
    /// `config.http` caps each request (head, body) and is the read
    /// timeout: an idle connection has `config.http.idle_timeout` to send
    /// a whole request. It serves at most as many connections at once as
    /// the `mcp-provider-tokio` binary does by default (16,384; see
    /// [`Provider::with_max_connections`]).
    pub fn start(config: Config) -> Self {
        let max_connections = crate::Runtime::DEFAULT_MAX_CONNECTIONS;
        Provider(Embedded::start(config, max_connections))
    }

    /// Serves at most `max` connections at once; one past it is answered
    /// 503 and closed. Keep it under the process's limit on open files:
    /// past that, connections wait unaccepted rather than get the 503.
    /// Call it before serving: the cap is counted from here.
    pub fn with_max_connections(self, max: usize) -> Self {
        Provider(self.0.with_max_connections(max))
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
        self.0.serve_on(listener, app).await;
    }

    /// Serves one connection the application accepted itself, until it
    /// closes, under the same caps as [`Provider::serve_on`]: it counts
    /// against the connection cap (past it, it is answered 503 and closed).
    pub async fn serve(&self, stream: TcpStream) {
        self.0.serve(socket(stream)).await;
    }

    /// Registers `agent` as `name`, serving `models`, for as long as the
    /// provider runs.
    pub fn add_agent(&self, name: &str, models: &[&str], agent: impl Agent) {
        self.0.add_agent(name, models, agent);
    }
}
