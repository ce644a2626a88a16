//! `serve` and `bridge` once their settings are read: the secrets,
//! listeners, MCP bridge, trace exporter and audit log a runtime is
//! launched with, and the banner it prints once it serves.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mcp_provider_core::http::Limits;
use mcp_provider_core::Config;
use mcp_provider_kit::bridge::Bridged;
use mcp_provider_kit::outbound::oauth::{OAuthCredentials, Store};
use mcp_provider_kit::serve::audit::AuditSink;
use mcp_provider_kit::telemetry::Traces;
use mcp_provider_kit::{
    ConnLimits, EchoAgentPlan, Launch, RunError, Runtime, AGENT_HUB, ECHO_AGENT,
};

use crate::banner::Banner;
use crate::secrets::{self, Filled, SecretsError};
use crate::settings::sources::Source;
use crate::settings::{BadSettings, Settings};
use crate::{fds, login, reload};

/// Why `serve` could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Settings(#[from] BadSettings),
    #[error("no OS random source: {0}")]
    NoRandom(getrandom::Error),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("cannot listen on {addr}: {source}{}", taken_port(.addr, .source))]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("cannot start the trace exporter: {0}")]
    Traces(io::Error),
    #[error("cannot watch the configuration: {0}")]
    Watch(io::Error),
    #[error("cannot open audit log {}: {source}", path.display())]
    Audit { path: PathBuf, source: io::Error },
    /// The runtime stopped serving.
    #[error(transparent)]
    Run(#[from] RunError),
}

impl ServeError {
    /// Whether the settings are at fault (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, ServeError::Settings(_))
    }
}

/// What to do about a port another program has (nothing when listening
/// failed otherwise).
fn taken_port(addr: &SocketAddr, e: &io::Error) -> String {
    if e.kind() != io::ErrorKind::AddrInUse {
        return String::new();
    }
    format!(
        ". Another program has port {}: an mcp-provider already running (or Ollama, on 11434)? \
         Stop it, or pass --listen with another address (e.g. --listen 127.0.0.1:8790)",
        addr.port()
    )
}

/// The random values `serve` hands out, drawn from the OS at start.
struct Seeds {
    /// What the secrets that may be generated are made of.
    secrets: [u8; 36],
    /// The seed of the core's ids.
    ids: u64,
    /// The core's own secret key.
    core_secret: [u8; 32],
    /// The seed of the bridge's session ids.
    bridge_sessions: [u8; 32],
    /// The seed of the bridge's trace ids.
    bridge_traces: u64,
}

impl Seeds {
    fn draw() -> Result<Seeds, getrandom::Error> {
        fn random<const N: usize>() -> Result<[u8; N], getrandom::Error> {
            let mut bytes = [0; N];
            getrandom::fill(&mut bytes)?;
            Ok(bytes)
        }
        Ok(Seeds {
            secrets: random()?,
            ids: u64::from_le_bytes(random()?),
            core_secret: random()?,
            bridge_sessions: random()?,
            bridge_traces: u64::from_le_bytes(random()?),
        })
    }
}

/// The API keys and bridge token served with: the configured ones, else
/// those generated (or kept from an earlier run).
struct Keys {
    api_keys: Vec<String>,
    bridge_token: String,
}

impl Keys {
    fn of(settings: &Settings, filled: &Filled) -> Keys {
        Keys {
            api_keys: match &filled.api_key {
                Some(key) => vec![key.clone()],
                None => settings.api_key.clone(),
            },
            bridge_token: filled
                .bridge_token
                .clone()
                .or_else(|| settings.bridge_token.clone())
                .unwrap_or_default(),
        }
    }
}

/// Serves with `settings`, read from `source` (and read again from it
/// when its files change, or on SIGHUP: see `reload`).
pub(crate) fn serve<R: Runtime>(settings: Settings, source: Source) -> Result<(), ServeError> {
    let seeds = Seeds::draw().map_err(ServeError::NoRandom)?;
    let filled = secrets::fill(
        &settings.secrets_file,
        settings.api_key.is_empty(),
        settings.bridge_token.is_none(),
        &seeds.secrets,
    )?;
    let keys = Keys::of(&settings, &filled);
    let listeners = bind(&settings.listen_addrs()?)?;
    let banner = Banner::new(&listeners, &settings, &filled);
    let traces = settings
        .telemetry
        .export()?
        .map(Traces::start)
        .transpose()
        .map_err(ServeError::Traces)?;
    let bridge = start_bridge(&settings, source, &seeds, traces.clone())?;
    let mut config = core_config(&settings, &keys, &seeds, traces.as_deref());
    let audit = open_audit(&settings)?;
    config.audit = audit.is_some();
    let limits = conn_limits::<R>(&settings, config.http);
    let launch = Launch {
        config,
        listeners,
        echo: settings.echo_agent.then(|| EchoAgentPlan {
            model: "echo".to_owned(),
            chunk_delay: Duration::from_millis(settings.echo_chunk_delay_ms),
        }),
        agent_hub: settings
            .agent_hub
            .clone()
            .map(|url| (url, keys.bridge_token)),
        limits,
        threads: settings.threads,
        audit,
        bridge,
        traces,
    };
    R::serve(launch, &|| banner.print(R::RUNTIME))?;
    Ok(())
}

/// A listener on each of `addrs`.
fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, ServeError> {
    addrs
        .iter()
        .map(|&addr| TcpListener::bind(addr).map_err(|source| ServeError::Listen { addr, source }))
        .collect()
}

/// The MCP bridge, always there (servers may be added at run time, on
/// `/integrations`), its settings read again when they change.
fn start_bridge(
    settings: &Settings,
    source: Source,
    seeds: &Seeds,
    traces: Option<Arc<Traces>>,
) -> Result<Arc<Bridged>, ServeError> {
    let credentials = OAuthCredentials::new(Store::default_location(), login::servers(settings));
    let bridge = Bridged::start_with(
        settings.bridge.all_servers().map(|s| s.spec()).collect(),
        settings.bridge_limits(),
        seeds.bridge_sessions,
        credentials.clone(),
        traces.map(|traces| (traces, seeds.bridge_traces)),
    );
    bridge.set_names(settings.bridge.names());
    bridge.set_tool_search(settings.bridge.tool_search());
    reload::watch(bridge.clone(), credentials, source, settings.clone())
        .map_err(ServeError::Watch)?;
    Ok(bridge)
}

/// The core's configuration: the settings' own, with the keys, seeds and
/// trace sampling `serve` made, and the agents it expects.
fn core_config(settings: &Settings, keys: &Keys, seeds: &Seeds, traces: Option<&Traces>) -> Config {
    let mut config = settings.core_config(&keys.api_keys, &keys.bridge_token, seeds.ids);
    config.secret = seeds.core_secret;
    config.trace = traces.map(Traces::sampler);
    config.trace_content = traces.is_some_and(Traces::captures_content);
    if settings.echo_agent {
        config.expected_agents.push(ECHO_AGENT.to_owned());
    }
    if settings.agent_hub.is_some() {
        config.expected_agents.push(AGENT_HUB.to_owned());
    }
    config
}

/// The audit log, when one is configured.
fn open_audit(settings: &Settings) -> Result<Option<AuditSink>, ServeError> {
    let Some(path) = &settings.audit_log else {
        return Ok(None);
    };
    let sink = AuditSink::open(path, settings.audit_log_max_bytes).map_err(|source| {
        ServeError::Audit {
            path: path.clone(),
            source,
        }
    })?;
    Ok(Some(sink))
}

/// The caps on editor connections: `max_connections` (else the runtime's
/// default) kept within the limit on open files, raised as far as it goes.
fn conn_limits<R: Runtime>(settings: &Settings, http: Limits) -> ConnLimits {
    let wanted = settings
        .max_connections
        .unwrap_or(R::DEFAULT_MAX_CONNECTIONS);
    let max_connections = match fds::raise_limit() {
        Some(files) => {
            let fits = fds::connections_within(files, R::FILES_PER_CONNECTION);
            if fits < wanted {
                tracing::warn!(
                    "max_connections lowered from {wanted} to {fits}: the limit on open files is {files}"
                );
            }
            wanted.min(fits).max(1)
        }
        None => wanted,
    };
    let read_timeout = Duration::from_secs(settings.read_timeout_secs.max(1));
    ConnLimits {
        max_connections,
        read_timeout,
        http: Limits {
            idle_timeout: read_timeout,
            ..http
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_says_what_to_do() {
        let addr: SocketAddr = "127.0.0.1:8788".parse().unwrap();
        let listen = |kind| {
            ServeError::Listen {
                addr,
                source: io::Error::from(kind),
            }
            .to_string()
        };
        let taken = listen(io::ErrorKind::AddrInUse);
        assert!(
            taken.starts_with("cannot listen on 127.0.0.1:8788: "),
            "{taken}"
        );
        assert!(
            taken.contains(". Another program has port 8788: "),
            "{taken}"
        );
        let refused = listen(io::ErrorKind::PermissionDenied);
        assert!(!refused.contains("Another program"), "{refused}");
    }
}
