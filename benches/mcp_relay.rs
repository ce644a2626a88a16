//! What the MCP baseline relays (`stdio_relay`, `http_relay`) share: the
//! clients served on one thread, each client's requests one after another,
//! the messages a relay answers itself, the members of a message they look
//! at, a message's id swapped for another, and a JSON response written.
//! What differs is how a request is passed on ([`PassOn`]).

use std::future::Future;
use std::io;
use std::rc::Rc;

use serde::Deserialize;
use serde_json::value::RawValue;
use smol::io::{AsyncWrite, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::LocalExecutor;

use crate::request::Requests;

/// How a relay passes a client's request on to its server.
pub trait PassOn: 'static {
    /// The server's `initialize` result, given to every client.
    fn init_result(&self) -> &str;
    /// Passes on `body`, a request whose id is `id` (borrowed from it); its
    /// answer is written to `socket` (now, or by another task later).
    fn pass_on(
        &self,
        socket: &mut TcpStream,
        body: &str,
        id: &RawValue,
    ) -> impl Future<Output = io::Result<()>>;
}

/// Serves `relay`'s clients on a loopback port of its own, on `executor`,
/// after printing `NAME listening on http://ADDR`.
pub async fn serve<R: PassOn>(
    executor: &LocalExecutor<'static>,
    name: &str,
    relay: Rc<R>,
) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{name} listening on http://{}", listener.local_addr()?);
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        executor.spawn(connection(socket, relay.clone())).detach();
    }
}

/// One client's connection: its requests, one after another.
async fn connection<R: PassOn>(mut socket: TcpStream, relay: Rc<R>) -> io::Result<()> {
    let mut requests = Requests::default();
    while let Some((_, body)) = requests.next(&mut socket).await {
        let body = String::from_utf8_lossy(&body);
        if let Some(id) = answer_here(&mut socket, &body, relay.init_result()).await? {
            relay.pass_on(&mut socket, &body, id).await?;
        }
    }
    Ok(())
}

/// The members of a JSON-RPC message the relays look at, borrowed from it.
#[derive(Deserialize)]
pub struct Envelope<'a> {
    #[serde(borrow)]
    pub id: Option<&'a RawValue>,
    #[serde(borrow)]
    pub method: Option<&'a RawValue>,
    #[serde(borrow)]
    pub result: Option<&'a RawValue>,
}

/// The protocol revision the relays ask their server for.
pub const VERSION: &str = "2025-06-18";

/// The notification that ends a client's side of the handshake.
pub const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// The `initialize` request a relay opens its one session with, under the
/// id `0`, as the client `name`.
pub fn initialize_request(name: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{VERSION}","capabilities":{{}},"clientInfo":{{"name":"{name}","version":"1"}}}}}}"#
    )
}

/// `message` with its top-level id (`id`, borrowed from it) spelled `new`.
pub fn with_id(message: &str, id: &RawValue, new: &str) -> String {
    let at = (id.get().as_ptr() as usize).saturating_sub(message.as_ptr() as usize);
    let end = at + id.get().len();
    let mut out = String::with_capacity(message.len() + new.len());
    out.push_str(message.get(..at).unwrap_or_default());
    out.push_str(new);
    out.push_str(message.get(end..).unwrap_or_default());
    out
}

/// Writes one response: `status` (with any extra header lines) and a JSON
/// body.
pub async fn respond(
    socket: &mut (impl AsyncWrite + Unpin),
    status: &str,
    body: &str,
) -> io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await
}

/// A client's message, `body`: answered on `socket` when the relay answers
/// it itself (`initialize`, with the server's own result `init_result`; a
/// notification; what is not JSON-RPC), or the request's id, for the relay
/// to pass it on.
pub async fn answer_here<'a>(
    socket: &mut (impl AsyncWrite + Unpin),
    body: &'a str,
    init_result: &str,
) -> io::Result<Option<&'a RawValue>> {
    let Ok(envelope) = serde_json::from_str::<Envelope>(body) else {
        respond(socket, "400 Bad Request", "").await?;
        return Ok(None);
    };
    let Some(id) = envelope.id else {
        respond(socket, "202 Accepted", "").await?;
        return Ok(None);
    };
    if envelope.method.map(RawValue::get) == Some("\"initialize\"") {
        let answer = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{init_result}}}"#,
            id.get()
        );
        respond(socket, "200 OK\r\nMcp-Session-Id: relay", &answer).await?;
        return Ok(None);
    }
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_level_id_is_replaced_and_nothing_else() {
        let message = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"id":7}}"#;
        let envelope: Envelope = serde_json::from_str(message).unwrap();
        assert_eq!(
            with_id(message, envelope.id.unwrap(), "123"),
            r#"{"jsonrpc":"2.0","id":123,"method":"tools/call","params":{"id":7}}"#
        );
        let answer = r#"{"result":{"id":"x"},"jsonrpc":"2.0","id":123}"#;
        let envelope: Envelope = serde_json::from_str(answer).unwrap();
        assert_eq!(
            with_id(answer, envelope.id.unwrap(), "\"a\""),
            r#"{"result":{"id":"x"},"jsonrpc":"2.0","id":"a"}"#
        );
    }

    #[test]
    fn a_relay_answers_initialize_and_notifications_and_passes_on_the_rest() {
        smol::block_on(async {
            let mut written = Vec::new();
            let init = r#"{"jsonrpc":"2.0","id":"a","method":"initialize","params":{}}"#;
            assert!(answer_here(&mut written, init, r#"{"v":1}"#)
                .await
                .unwrap()
                .is_none());
            let text = String::from_utf8(std::mem::take(&mut written)).unwrap();
            assert!(text.starts_with("HTTP/1.1 200 OK\r\nMcp-Session-Id: relay\r\n"));
            assert!(text.ends_with(r#"{"jsonrpc":"2.0","id":"a","result":{"v":1}}"#));

            let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
            assert!(answer_here(&mut written, note, "{}")
                .await
                .unwrap()
                .is_none());
            assert!(written.starts_with(b"HTTP/1.1 202 Accepted\r\n"));
            written.clear();

            let call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call"}"#;
            let id = answer_here(&mut written, call, "{}").await.unwrap();
            assert_eq!(id.map(RawValue::get), Some("9"));
            assert!(written.is_empty());

            assert!(answer_here(&mut written, "nope", "{}")
                .await
                .unwrap()
                .is_none());
            assert!(written.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
        });
    }
}
