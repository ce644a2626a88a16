//! WebSocket agent links on blocking sockets: one thread reads frames, one
//! writes them, each with its own tungstenite instance on a clone of the
//! same socket.
//!
//! Both instances write (the reader answers the peer's pings and close
//! itself), so every write goes through one lock: tungstenite hands a
//! whole buffer of complete frames to each `write`, and [`LinkHalf`] writes
//! it out entirely before letting the other half in, so frames never
//! interleave.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_provider_cli::dial::link_request;
use mcp_provider_core::{ConnId, Output};
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

use crate::shared::{Mailbox, Shared};

/// One side of a link's socket; writes are whole and exclusive.
pub struct LinkHalf {
    stream: TcpStream,
    write_lock: Arc<Mutex<()>>,
}

impl LinkHalf {
    /// Two halves of `stream` sharing one write lock.
    pub fn pair(stream: &TcpStream) -> io::Result<(LinkHalf, LinkHalf)> {
        let write_lock = Arc::new(Mutex::new(()));
        let half = |stream| LinkHalf {
            stream,
            write_lock: write_lock.clone(),
        };
        Ok((half(stream.try_clone()?), half(stream.try_clone()?)))
    }
}

impl Read for LinkHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for LinkHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.stream.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads an agent's frames into the provider until the link closes.
pub fn read_frames(shared: &Shared, id: ConnId, mut ws: WebSocket<LinkHalf>) {
    loop {
        match ws.read() {
            Ok(Message::Text(text)) => {
                shared.with(|p, now| p.handle_agent_text(id, text.as_str(), now))
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = ws.get_ref().stream.shutdown(Shutdown::Both);
}

/// Writes the provider's messages for an agent until its mailbox closes or
/// the provider closes the link.
pub fn write_frames(mail: &Mailbox, mut ws: WebSocket<LinkHalf>) {
    while let Ok(output) = mail.recv() {
        let open = match output {
            Output::ToAgent { text, .. } => ws.send(Message::text(text)).is_ok(),
            Output::CloseAgent { .. } => {
                let _ = ws.close(None);
                let _ = ws.flush();
                false
            }
            _ => true,
        };
        if !open {
            break;
        }
    }
    // Ends the reading half too, if it is still waiting for frames.
    let _ = ws.get_ref().stream.shutdown(Shutdown::Both);
}

/// Serves an established link: a writer thread for the mailbox, frames
/// read on this thread; returns once both have ended.
pub fn serve(
    shared: &Shared,
    id: ConnId,
    mail: Mailbox,
    reader: WebSocket<LinkHalf>,
    writer: WebSocket<LinkHalf>,
) {
    let spawned = std::thread::Builder::new()
        .name(format!("link-{}-writer", id.0))
        .stack_size(crate::conn::WRITER_STACK)
        .spawn(move || write_frames(&mail, writer));
    match spawned {
        Ok(handle) => {
            read_frames(shared, id, reader);
            shared.disconnect(id);
            let _ = handle.join();
        }
        Err(e) => {
            tracing::warn!("cannot start a link writer thread: {e}");
            shared.disconnect(id);
        }
    }
}

/// Opens a WebSocket to `url` with the bridge token, as a client: the
/// reading instance (holding any bytes read past the handshake) and a
/// writing one.
pub fn dial(url: &str, token: &str) -> Result<(WebSocket<LinkHalf>, WebSocket<LinkHalf>), String> {
    let (request, host, port) = link_request(url, token)?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (read_half, write_half) =
        LinkHalf::pair(&tcp).map_err(|e| format!("cannot use the socket: {e}"))?;
    let (reader, _) = tungstenite::client(request, read_half)
        .map_err(|e| format!("WebSocket handshake with {url} failed: {e}"))?;
    let writer = WebSocket::from_raw_socket(write_half, Role::Client, None);
    Ok((reader, writer))
}

/// Dials out to an agent hub and serves that connection as an agent link,
/// reconnecting with backoff (0.1 s doubling up to 30 s) whenever it drops.
pub fn dial_hub(shared: &Shared, url: &str, token: &str) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match dial(url, token) {
            Ok((reader, writer)) => {
                tracing::info!("agent hub {url} connected");
                backoff = Duration::from_millis(100);
                let (id, mail) = shared.connect();
                shared.with(|p, _| p.open_agent(id));
                serve(shared, id, mail, reader, writer);
                tracing::warn!("agent hub {url} disconnected");
            }
            Err(e) => tracing::warn!("agent hub: {e}"),
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
