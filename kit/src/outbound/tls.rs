//! TLS for dialing `https` servers, with rustls (no OpenSSL): the
//! system's roots (or the bundled Mozilla set where the system has none),
//! or a server's own `ca_file` for a private CA. A configuration is built
//! once per set of roots and shared.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// Where Linux distributions and macOS keep their bundle of roots.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A TLS stream to a server.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("`{path}` holds no certificate")]
    NoCertificate { path: String },
    #[error("`{path}`: {source}")]
    Pem {
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("`{path}`: a certificate cannot be used: {source}")]
    Unusable { path: String, source: rustls::Error },
    #[error("{0}")]
    Protocols(rustls::Error),
}

/// The client configuration trusting `ca_file`'s roots, or the system's
/// (`SSL_CERT_FILE` first, as OpenSSL-based tools honour it).
pub fn client_config(ca_file: Option<&str>) -> Result<Arc<ClientConfig>, TlsError> {
    static BUILT: OnceLock<Mutex<HashMap<Option<String>, Arc<ClientConfig>>>> = OnceLock::new();
    let built = BUILT.get_or_init(Mutex::default);
    let key = ca_file.map(str::to_owned);
    if let Some(config) = built.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(config.clone());
    }
    let roots = match ca_file {
        Some(path) => {
            let roots = pem_roots(path)?;
            if roots.is_empty() {
                return Err(TlsError::NoCertificate {
                    path: path.to_owned(),
                });
            }
            roots
        }
        None => system_roots(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocols)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
    built
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, config.clone());
    Ok(config)
}

/// A TLS client to `host`, its bytes carried by its caller.
pub fn client(host: &str, config: Arc<ClientConfig>) -> io::Result<ClientConnection> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not a server name"))?;
    ClientConnection::new(config, name).map_err(io::Error::other)
}

/// TLS over `socket` to `host`, its handshake done by `deadline`: a
/// server that accepts the connection and never speaks TLS (or trickles
/// it) would otherwise hold the dialing thread for good. The socket is
/// left with no timeout, as it came.
pub fn connect(
    socket: TcpStream,
    host: &str,
    config: Arc<ClientConfig>,
    deadline: Instant,
) -> io::Result<TlsStream> {
    let mut stream = StreamOwned::new(client(host, config)?, socket);
    let mut until = Until {
        socket: &stream.sock,
        deadline,
    };
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut until)?;
    }
    stream.sock.set_read_timeout(None)?;
    stream.sock.set_write_timeout(None)?;
    Ok(stream)
}

/// A socket each of whose reads and writes may wait only for what is left
/// until `deadline`, so however many the handshake takes, together they
/// end by it.
struct Until<'a> {
    socket: &'a TcpStream,
    deadline: Instant,
}

impl Until<'_> {
    /// Sets the socket's timeouts to what is left, or says it is late.
    fn arm(&self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        self.socket.set_read_timeout(Some(left))?;
        self.socket.set_write_timeout(Some(left))
    }
}

/// A socket's timeout (`WouldBlock` on Unix, which rustls would take for
/// a non-blocking socket's "not yet") as the error it is.
fn timed_out(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => late(),
        _ => e,
    }
}

fn late() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake in time")
}

impl Read for Until<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        self.socket.read(buf).map_err(timed_out)
    }
}

impl Write for Until<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        self.socket.write(buf).map_err(timed_out)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.socket.flush()
    }
}

/// Every certificate in a PEM file.
fn pem_roots(path: &str) -> Result<RootCertStore, TlsError> {
    let pem = |source| TlsError::Pem {
        path: path.to_owned(),
        source,
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(pem)?;
    for cert in certs {
        let cert = cert.map_err(pem)?;
        roots.add(cert).map_err(|source| TlsError::Unusable {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// The system's roots, or the bundled ones when it has none.
fn system_roots() -> RootCertStore {
    let env = std::env::var("SSL_CERT_FILE").ok();
    let found = env
        .iter()
        .map(String::as_str)
        .chain(SYSTEM_BUNDLES)
        .find_map(|path| pem_roots(path).ok().filter(|roots| !roots.is_empty()));
    found.unwrap_or_else(|| RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    /// A server with a certificate from a CA of its own; a client that
    /// trusts that CA's file talks to it, one that trusts only the system
    /// does not.
    #[test]
    fn a_private_ca_is_trusted_only_when_given() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let dir = std::env::temp_dir().join(format!("mcp-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();

        let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
        let server_config = Arc::new(server_config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let serving = std::thread::spawn(move || {
            for _ in 0..2 {
                let (socket, _) = listener.accept().unwrap();
                let conn = rustls::ServerConnection::new(server_config.clone()).unwrap();
                let mut tls = StreamOwned::new(conn, socket);
                let mut buf = [0u8; 5];
                if tls.read_exact(&mut buf).is_ok() {
                    let _ = tls.write_all(b"world");
                    let _ = tls.flush();
                }
            }
        });
        let dial = |ca: Option<&str>| -> io::Result<[u8; 5]> {
            let socket = TcpStream::connect(("127.0.0.1", port))?;
            let config = client_config(ca).map_err(io::Error::other)?;
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut tls = connect(socket, "localhost", config, deadline)?;
            tls.write_all(b"hello")?;
            let mut buf = [0u8; 5];
            tls.read_exact(&mut buf)?;
            Ok(buf)
        };
        assert!(dial(None).is_err(), "an unknown CA is refused");
        assert_eq!(&dial(ca_file.to_str()).unwrap(), b"world");
        serving.join().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A server that takes the connection and never says a word: the
    /// handshake gives up at its deadline.
    #[test]
    fn a_silent_server_ends_the_handshake_at_its_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_held, _) = listener.accept().unwrap();
        let config = client_config(None).unwrap();
        let deadline = Instant::now() + Duration::from_millis(200);
        let error = connect(socket, "localhost", config, deadline)
            .err()
            .unwrap();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_an_error() {
        let path = std::env::temp_dir().join(format!("mcp-tls-empty-{}", std::process::id()));
        std::fs::write(&path, "not a certificate").unwrap();
        assert!(client_config(path.to_str()).is_err());
        let _ = std::fs::remove_file(path);
    }
}
