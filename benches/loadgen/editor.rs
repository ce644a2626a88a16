//! The editor end of a run: one task per stream asking for a streamed
//! answer over HTTP (or, for the direct baseline, over a bare socket) and
//! checking every chunk as it is read.

use std::sync::Arc;

use smol::channel::Sender;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::lock::Semaphore;
use smol::net::TcpStream;

use mcp_provider_benches::head::response_head;

use crate::agent::Event;
use crate::stamp::{Check, Clock};
use crate::wire::{Decoder, Framing, Item};
use crate::{Api, Mode};

/// What every editor shares.
pub struct Plan {
    /// `host:port` of the provider, or of the direct baseline's listener.
    pub addr: String,
    pub direct: bool,
    pub api: Api,
    pub api_key: String,
    pub model: String,
    pub mode: Mode,
    pub chunks: u32,
    pub clock: Clock,
    /// Bounds how many editors are connecting at once.
    pub connecting: Semaphore,
    /// Latency mode: each read chunk is reported to the agent end.
    pub agent: Sender<Event>,
    /// Each editor reports once: its first chunk arrived, or it failed.
    pub opened: Sender<()>,
    /// The system message each request carries first, if any.
    pub context: String,
}

/// `bytes` of text like an editor's context: source lines, with the
/// quotes, backslashes and line breaks a JSON writer must escape.
pub fn context(bytes: usize) -> String {
    const LINE: &str =
        "    let path = \"src\\main.rs\"; // a line of the file the editor has open\n";
    LINE.chars().cycle().take(bytes).collect()
}

/// How one stream went.
pub struct Outcome {
    pub check: Check,
    pub ttfc_ns: Option<u64>,
    pub error: Option<String>,
}

pub async fn run(plan: Arc<Plan>, stream: u32) -> Outcome {
    let mut check = Check::new(stream, plan.chunks);
    let mut opened = false;
    let mut started = 0;
    let error = talk(&plan, stream, &mut check, &mut opened, &mut started)
        .await
        .err();
    if !opened {
        let _ = plan.opened.send(()).await;
    }
    Outcome {
        ttfc_ns: check.first_read_ns.map(|t| t.saturating_sub(started)),
        check,
        error,
    }
}

/// Opens the stream and reads it to its end; `started` is when it began
/// connecting (after waiting for its turn), for the time to first chunk.
async fn talk(
    plan: &Plan,
    stream: u32,
    check: &mut Check,
    opened: &mut bool,
    started: &mut u64,
) -> Result<(), String> {
    let permit = plan.connecting.acquire().await;
    *started = plan.clock.ns();
    let mut socket = TcpStream::connect(plan.addr.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", plan.addr))?;
    let _ = socket.set_nodelay(true);
    socket
        .write_all(&request(plan, stream))
        .await
        .map_err(|e| format!("request not sent: {e}"))?;
    let mut buf = vec![0u8; 8 * 1024];
    let mut decoder = if plan.direct {
        drop(permit);
        Decoder::new(Framing::Frames, false)
    } else {
        let (decoder, rest) = read_head(plan, &mut socket, &mut buf).await?;
        drop(permit);
        let mut decoder = decoder;
        decoder.push(&rest)?;
        decoder
    };
    let mut read_ns = plan.clock.ns();
    loop {
        while let Some(item) = decoder.next_item()? {
            match item {
                Item::Content(text) => {
                    let Some(index) = check.on_content(&text, read_ns) else {
                        continue;
                    };
                    if !std::mem::replace(opened, true) {
                        let _ = plan.opened.send(()).await;
                    }
                    if plan.mode == Mode::Latency {
                        let _ = plan.agent.send(Event::Read { stream, index }).await;
                    }
                }
                Item::Done => return Ok(()),
                Item::Skip => {}
            }
        }
        let n = socket
            .read(&mut buf)
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        read_ns = plan.clock.ns();
        if n == 0 {
            return if plan.direct && check.complete() {
                Ok(())
            } else {
                Err("the connection closed before the stream ended".to_owned())
            };
        }
        decoder.push(&buf[..n])?;
    }
}

/// Reads the response head; returns a decoder for the body and any body
/// bytes read with the head.
async fn read_head(
    plan: &Plan,
    socket: &mut TcpStream,
    buf: &mut [u8],
) -> Result<(Decoder, Vec<u8>), String> {
    let mut head = Vec::new();
    loop {
        let n = socket
            .read(buf)
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        if n == 0 {
            return Err("the connection closed before a response".to_owned());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(h) = response_head(&head)? {
            if h.status != 200 {
                let body = String::from_utf8_lossy(&head[h.len..]);
                return Err(format!("HTTP {}: {}", h.status, body.trim()));
            }
            let framing = match plan.api {
                Api::Openai => Framing::Sse,
                Api::Ollama => Framing::Ndjson,
            };
            return Ok((Decoder::new(framing, h.chunked), head.split_off(h.len)));
        }
    }
}

/// The bytes an editor sends to open stream `stream`.
fn request(plan: &Plan, stream: u32) -> Vec<u8> {
    if plan.direct {
        return format!("{stream}\n").into_bytes();
    }
    let user = serde_json::json!({"role": "user", "content": stream.to_string()});
    let messages = match plan.context.is_empty() {
        true => vec![user],
        false => vec![
            serde_json::json!({"role": "system", "content": plan.context}),
            user,
        ],
    };
    let body = serde_json::json!({
        "model": plan.model,
        "stream": true,
        "messages": messages,
    })
    .to_string();
    let path = match plan.api {
        Api::Openai => "/v1/chat/completions",
        Api::Ollama => "/api/chat",
    };
    format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        plan.addr,
        plan.api_key,
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_is_the_bytes_asked_for_and_needs_escaping() {
        for bytes in [0, 1, 71, 72, 73, 65_536] {
            assert_eq!(context(bytes).len(), bytes);
        }
        let text = context(200);
        let escaped = serde_json::to_string(&text).unwrap();
        assert!(escaped.contains("\\\"") && escaped.contains("\\\\") && escaped.contains("\\n"));
    }
}
