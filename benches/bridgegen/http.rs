//! One MCP client of the bridge: a keep-alive TCP connection, a Streamable
//! HTTP session on it, and its requests and answers read whole.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use mcp_provider_benches::head::response_head;
use mcp_provider_core::http::ChunkedDecoder;
use serde_json::Value;

use crate::rpc;
use crate::Caller;

/// Where the clients go and with what key.
#[derive(Clone)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
    pub api_key: String,
    /// Where requests go: `/mcp/{server}`, or `/mcp` (every server).
    pub path: String,
    /// The bridged server's echo tool as named there: `echo`, or
    /// `{server}__echo` on `/mcp`.
    pub echo_tool: String,
    /// The length each call's message is padded to.
    pub message_bytes: usize,
}

impl Target {
    /// Server `server` at `addr`, through `/mcp` when `aggregate`.
    pub fn new(addr: String, api_key: String, server: &str, aggregate: bool) -> Target {
        let (path, echo_tool) = match aggregate {
            true => ("/mcp".to_owned(), format!("{server}__echo")),
            false => (format!("/mcp/{server}"), "echo".to_owned()),
        };
        Target {
            addr,
            api_key,
            path,
            echo_tool,
            message_bytes: 0,
        }
    }
}

/// An HTTP answer read whole.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub session: Option<String>,
    pub body: String,
}

/// A client with its own connection and MCP session.
pub struct Session {
    target: Target,
    socket: TcpStream,
    /// The session id from the `initialize` answer.
    id: String,
    /// The revision the server chose, for the `MCP-Protocol-Version` header.
    version: String,
    next_id: u64,
    /// The request being written and the message it carries.
    request: Vec<u8>,
    body: String,
    message: String,
    /// Bytes read and not yet used.
    read: Vec<u8>,
    /// Which client of the run this is, for its messages.
    client: usize,
}

/// No answer within this long fails the call.
const TIMEOUT: Duration = Duration::from_secs(30);

impl Session {
    /// Connects and opens a session: `initialize`, then
    /// `notifications/initialized`.
    pub fn open(target: &Target, client: usize) -> Result<Session, String> {
        let mut s = Session::connect(target, client)?;
        let answer = s.post(&rpc::initialize(0))?;
        if answer.status != 200 {
            return Err(format!(
                "initialize: HTTP {}: {}",
                answer.status, answer.body
            ));
        }
        let result = rpc::result_of(rpc::answer_in_body(&answer.body, &answer.content_type)?, 0)?;
        s.id = answer
            .session
            .ok_or("the initialize answer has no Mcp-Session-Id")?;
        s.version = result["protocolVersion"]
            .as_str()
            .unwrap_or(rpc::PROTOCOL_VERSION)
            .to_owned();
        let answer = s.post(rpc::INITIALIZED)?;
        if answer.status != 202 && answer.status != 200 {
            return Err(format!("notifications/initialized: HTTP {}", answer.status));
        }
        Ok(s)
    }

    /// A new connection for the session `id` opened earlier (its
    /// [`Session::id`]) at revision `version`.
    pub fn resume(
        target: &Target,
        client: usize,
        (id, version): (String, String),
    ) -> Result<Session, String> {
        let mut s = Session::connect(target, client)?;
        s.id = id;
        s.version = version;
        Ok(s)
    }

    /// The session id and revision, to [`Session::resume`] it later.
    pub fn id(&self) -> (String, String) {
        (self.id.clone(), self.version.clone())
    }

    fn connect(target: &Target, client: usize) -> Result<Session, String> {
        let socket = TcpStream::connect(&target.addr)
            .map_err(|e| format!("cannot connect to {}: {e}", target.addr))?;
        let _ = socket.set_nodelay(true);
        socket
            .set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        Ok(Session {
            target: target.clone(),
            socket,
            id: String::new(),
            version: String::new(),
            next_id: 1,
            request: Vec::with_capacity(1024),
            body: String::new(),
            message: String::new(),
            read: Vec::with_capacity(16 * 1024),
            client,
        })
    }

    /// Calls a tool and returns its result.
    pub fn call_tool(&mut self, tool: &str, arguments: Value) -> Result<Value, String> {
        let id = self.take_id();
        let answer = self.post(&rpc::tool_call(id, tool, arguments))?;
        rpc::result_of(&self.expect_200(answer)?, id)
    }

    fn take_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The JSON-RPC answer of a 200, or the HTTP error.
    fn expect_200(&self, answer: Answer) -> Result<String, String> {
        if answer.status != 200 {
            return Err(format!("HTTP {}: {}", answer.status, answer.body.trim()));
        }
        rpc::answer_in_body(&answer.body, &answer.content_type).map(str::to_owned)
    }

    /// POSTs one JSON-RPC message and reads the answer.
    fn post(&mut self, json: &str) -> Result<Answer, String> {
        self.request.clear();
        let _ = write!(
            self.request,
            "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n",
            self.target.path, self.target.addr, self.target.api_key
        );
        if !self.id.is_empty() {
            let _ = write!(
                self.request,
                "Mcp-Session-Id: {}\r\nMCP-Protocol-Version: {}\r\n",
                self.id, self.version
            );
        }
        let _ = write!(self.request, "Content-Length: {}\r\n\r\n", json.len());
        self.request.extend_from_slice(json.as_bytes());
        self.socket
            .write_all(&self.request)
            .map_err(|e| format!("request not sent: {e}"))?;
        read_answer(&mut self.socket, &mut self.read)
    }
}

impl Caller for Session {
    fn call(&mut self, call: u64) -> Result<(), String> {
        let id = self.take_id();
        let mut message = std::mem::take(&mut self.message);
        let mut body = std::mem::take(&mut self.body);
        rpc::echo_message(&mut message, self.client, call, self.target.message_bytes);
        rpc::echo_call(&mut body, &self.target.echo_tool, id, &message);
        let outcome = self
            .post(&body)
            .and_then(|answer| self.expect_200(answer))
            .and_then(|answer| rpc::check_echo(&answer, id, &message));
        self.message = message;
        self.body = body;
        outcome
    }
}

/// Reads one whole answer from `socket`, with `buf` holding what was read
/// before and keeping what is read past its end.
pub fn read_answer(socket: &mut impl Read, buf: &mut Vec<u8>) -> Result<Answer, String> {
    let mut chunk = [0u8; 16 * 1024];
    let head = loop {
        if let Some(head) = response_head(buf)? {
            break head;
        }
        fill(socket, buf, &mut chunk)?;
    };
    buf.drain(..head.len);
    let body = if head.chunked {
        let mut decoder = ChunkedDecoder::default();
        let mut raw = BytesMut::new();
        let mut body = BytesMut::new();
        loop {
            raw.extend_from_slice(buf);
            buf.clear();
            let ended = decoder
                .decode(&mut raw, &mut body, 16 << 20, 64 * 1024)
                .map_err(|e| format!("bad chunked body: {e:?}"))?;
            if ended {
                // What follows belongs to the next answer.
                buf.extend_from_slice(&raw);
                break body.to_vec();
            }
            fill(socket, buf, &mut chunk)?;
        }
    } else if let Some(len) = head.content_length {
        while buf.len() < len {
            fill(socket, buf, &mut chunk)?;
        }
        buf.drain(..len).collect()
    } else if head.status == 204 || head.status == 304 {
        Vec::new()
    } else {
        return Err(format!(
            "HTTP {}: neither Content-Length nor chunked",
            head.status
        ));
    };
    Ok(Answer {
        status: head.status,
        content_type: head.header("content-type").unwrap_or("").to_owned(),
        session: head.header("mcp-session-id").map(str::to_owned),
        body: String::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?,
    })
}

fn fill(socket: &mut impl Read, buf: &mut Vec<u8>, chunk: &mut [u8]) -> Result<(), String> {
    let n = socket
        .read(chunk)
        .map_err(|e| format!("read failed: {e}"))?;
    if n == 0 {
        return Err("the connection closed before the answer ended".to_owned());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes a few at a time, as a socket may.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn answers_with_length_or_chunked_are_read_whole_at_any_split() {
        let wire = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: s1\r\n\
                     content-length: 14\r\n\r\n{\"id\":1,\"a\":2}\
                     HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"id\"\r\n4\r\n:2}\n\r\n0\r\n\r\n\
                     HTTP/1.1 202 \r\ncontent-length: 0\r\n\r\n";
        for split in [1, 3, 17, wire.len()] {
            let mut socket = Trickle(wire, split);
            let mut buf = Vec::new();
            let first = read_answer(&mut socket, &mut buf).unwrap();
            assert_eq!(first.status, 200);
            assert_eq!(first.session.as_deref(), Some("s1"));
            assert_eq!(first.content_type, "application/json");
            assert_eq!(first.body, "{\"id\":1,\"a\":2}");
            let second = read_answer(&mut socket, &mut buf).unwrap();
            assert_eq!((second.status, second.body.as_str()), (200, "{\"id\":2}\n"));
            let third = read_answer(&mut socket, &mut buf).unwrap();
            assert_eq!((third.status, third.body.as_str()), (202, ""));
            assert!(read_answer(&mut socket, &mut buf)
                .unwrap_err()
                .contains("closed"));
        }
    }

    #[test]
    fn a_cut_or_unframed_answer_is_an_error() {
        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc";
        assert!(read_answer(&mut Trickle(cut, 4), &mut Vec::new()).is_err());
        let unframed = b"HTTP/1.1 200 OK\r\n\r\nabc";
        assert!(read_answer(&mut Trickle(unframed, 4), &mut Vec::new())
            .unwrap_err()
            .contains("neither"));
    }
}
