//! What both runtimes need to dial an agent link (`agent echo`, an agent
//! hub): the WebSocket request carrying the bridge token, and where to
//! connect.

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Request;

/// The handshake request for `url` with `token` as its Bearer credential,
/// and the host and port to open a TCP connection to.
pub fn link_request(url: &str, token: &str) -> Result<(Request, String, u16), String> {
    let mut request = url
        .into_client_request()
        .map_err(|e| format!("bad URL {url}: {e}"))?;
    let auth = format!("Bearer {token}")
        .parse()
        .map_err(|_| "the token contains characters not allowed in a header".to_owned())?;
    request.headers_mut().insert("authorization", auth);
    let host = request.uri().host().unwrap_or("127.0.0.1").to_owned();
    let port = request.uri().port_u16().unwrap_or(80);
    Ok((request, host, port))
}
