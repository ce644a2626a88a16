//! The provider inside an application: its routes served beside the
//! application's own, answered by agents written in the application.
//!
//! [`Embedded::start`] starts the core on the application's executor, and
//! [`Embedded::add_agent`] registers an [`Agent`] that answers in-process.
//! [`Embedded::serve_on`] then serves a listener: the application answers
//! the requests it claims, the provider every other one (the OpenAI,
//! Anthropic and Ollama APIs, the agent link, the dashboard), each
//! connection in a task of its own under the provider's caps. An
//! application that accepts connections itself hands the provider its own
//! with [`Embedded::serve`], under the same caps.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use mcp_provider_core::agent::app::{AppAgent, AppRequest};
use mcp_provider_core::http::{Request, Response};
use mcp_provider_core::Config;

use super::link::{Shared, TaskBell};
use super::server::{self, Gate};
use super::Executor;
use crate::serve::in_process::{InProcess, ToProvider};
use crate::ConnLimits;

/// An agent written in the application: it answers each request by
/// sending text through its [`Reply`].
pub trait Agent: Send + Sync + 'static {
    /// Answers `request`; the answer ends when `reply` is dropped.
    fn answer(&self, request: AppRequest, reply: Reply) -> impl Future<Output = ()> + Send;
}

/// The provider, started on the executor `E`; clones share it, and its
/// connection cap.
pub struct Embedded<E> {
    shared: Shared,
    limits: ConnLimits,
    gate: Gate,
    executor: PhantomData<fn() -> E>,
}

impl<E> Clone for Embedded<E> {
    fn clone(&self) -> Self {
        Embedded {
            shared: self.shared.clone(),
            limits: self.limits,
            gate: self.gate.clone(),
            executor: PhantomData,
        }
    }
}

impl<E: Executor> Embedded<E> {
    /// Starts the provider (and its timer). `config.http` caps each
    /// request (head, body) and is the read timeout; at most
    /// `max_connections` are served at once.
    pub fn start(config: Config, max_connections: usize) -> Self {
        let limits = ConnLimits {
            max_connections,
            read_timeout: config.http.idle_timeout,
            http: config.http,
        };
        Embedded {
            shared: server::start::<E>(config, None),
            limits,
            gate: Gate::new(max_connections),
            executor: PhantomData,
        }
    }

    /// Serves at most `max` connections at once, counted from here.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.limits.max_connections = max;
        self.gate = Gate::new(max);
        self
    }

    /// Accepts connections on `listener` for as long as the application
    /// runs, each in a task of its own under the provider's caps; every
    /// request is offered to `app` first, and what it answers is its own.
    pub async fn serve_on<F>(&self, listener: E::TcpListener, app: F)
    where
        F: Fn(&Request) -> Option<Response> + Send + Sync + 'static,
    {
        let (shared, gate) = (self.shared.clone(), self.gate.clone());
        server::accept_loop::<E>(shared, listener, self.limits, gate, Some(Arc::new(app))).await;
    }

    /// Serves one connection the application accepted itself, until it
    /// closes; it counts against the connection cap.
    pub async fn serve(&self, stream: E::Tcp) {
        if let Some((stream, mut open)) = self.gate.admit::<E>(stream) {
            let shared = self.shared.clone();
            server::connection::<E>(shared, stream, self.limits, None, &mut open).await;
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
        E::spawn(async move {
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
                    E::spawn(async move { agent.answer(request, reply).await });
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
