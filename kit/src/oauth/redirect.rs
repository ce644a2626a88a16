//! The loopback listener the authorization server sends the browser back
//! to (RFC 8252 §7.3): `http://127.0.0.1:PORT/callback`, on a port of the
//! system's choosing unless one is configured. It takes the first request
//! for its path, answers the browser with a page saying it may close the
//! tab, and hands the query to the login; anything else (a favicon) gets
//! 404. Each request is read bounded in size and time.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use mcp_provider_core::time::later;

/// The path the authorization server redirects to.
const PATH: &str = "/callback";
/// The most of a request read (its line is all that is needed).
const MAX_REQUEST: usize = 16 * 1024;
/// How long one connection may take to send its request line, in all: a
/// client that trickles a byte every few seconds must not hold the login.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the listener looks for a connection.
const POLL: Duration = Duration::from_millis(50);

const PAGE: &str = "<!doctype html><meta charset=utf-8><title>MCP Local Provider</title>\
<body style=\"font-family:sans-serif;margin:3em\"><h1>MCP Local Provider</h1>\
<p>The authorization came back to MCP Local Provider. You can close this tab.</p></body>";

/// A listener waiting for one redirect.
pub struct Redirect {
    listener: TcpListener,
    uri: String,
}

impl Redirect {
    /// Listens on 127.0.0.1 at `port` (0: any free one).
    pub fn bind(port: u16) -> Result<Redirect, String> {
        let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
            format!("cannot listen on 127.0.0.1:{port} for the login's redirect: {e}")
        })?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Redirect {
            listener,
            uri: format!("http://127.0.0.1:{port}{PATH}"),
        })
    }

    /// The redirect URI to register and send.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The query of the first request for the redirect's path within
    /// `timeout`.
    pub fn wait(&self, timeout: Duration) -> Result<String, String> {
        let deadline = later(Instant::now(), timeout);
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    // No request outlasts the wait, however many come.
                    let by = later(Instant::now(), READ_TIMEOUT).min(deadline);
                    if let Some(query) = answer(stream, by) {
                        return Ok(query);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
                Err(e) => return Err(format!("the login's redirect listener: {e}")),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the browser did not come back to {} within {} s",
                    self.uri,
                    timeout.as_secs()
                ));
            }
        }
    }
}

/// Reads one request's line by `by` and answers it: the query if it was
/// for the redirect's path.
fn answer(mut stream: TcpStream, by: Instant) -> Option<String> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let line = request_line(&mut stream, by)?;
    let mut words = line.split(' ');
    let (method, target) = (words.next()?, words.next()?);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let ours = method == "GET" && path == PATH;
    let (status, body) = if ours {
        ("200 OK", PAGE)
    } else {
        ("404 Not Found", "not found")
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
    ours.then(|| query.to_owned())
}

/// The request line, once it is all in (at most [`MAX_REQUEST`] bytes
/// read), or nothing if it is not by `by`: each read waits only for what
/// is left.
fn request_line(stream: &mut TcpStream, by: Instant) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buf.contains(&b'\n') {
        let left = by.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).ok()?;
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            return None;
        }
        buf.extend_from_slice(chunk.get(..n)?);
    }
    let end = buf.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(buf.get(..end)?).ok()?;
    Some(line.trim_end_matches('\r').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str, target: &str) -> String {
        let addr = uri.trim_start_matches("http://").split('/').next().unwrap();
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(stream, "GET {target} HTTP/1.1\r\nhost: {addr}\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn the_redirects_query_is_taken_and_the_browser_told_to_close_the_tab() {
        let redirect = Redirect::bind(0).unwrap();
        let uri = redirect.uri().to_owned();
        assert!(uri.starts_with("http://127.0.0.1:") && uri.ends_with("/callback"));
        let browser = std::thread::spawn(move || {
            let miss = get(&uri, "/favicon.ico");
            let hit = get(&uri, "/callback?code=c&state=s");
            (miss, hit)
        });
        assert_eq!(
            redirect.wait(Duration::from_secs(10)).unwrap(),
            "code=c&state=s"
        );
        let (miss, hit) = browser.join().unwrap();
        assert!(miss.starts_with("HTTP/1.1 404"));
        assert!(hit.starts_with("HTTP/1.1 200") && hit.contains("close this tab"));
    }

    /// A client that sends a byte every 100 ms and never a whole line,
    /// at most `bytes` of them.
    fn trickle(uri: &str, bytes: usize) -> std::thread::JoinHandle<()> {
        let addr = uri.trim_start_matches("http://").split('/').next().unwrap();
        let mut stream = TcpStream::connect(addr).unwrap();
        std::thread::spawn(move || {
            for _ in 0..bytes {
                if stream.write_all(b"G").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    }

    /// Runs `redirect.wait(timeout)` on a thread; its result, if it came
    /// within 30 s.
    fn waited(redirect: Redirect, timeout: Duration) -> Option<Result<String, String>> {
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(redirect.wait(timeout));
        });
        result.recv_timeout(Duration::from_secs(30)).ok()
    }

    #[test]
    fn a_trickling_request_holds_the_wait_no_longer_than_it_lasts() {
        let redirect = Redirect::bind(0).unwrap();
        let _trickling = trickle(redirect.uri(), 600);
        let error = waited(redirect, Duration::from_millis(500)).expect("the wait ended");
        assert!(error.unwrap_err().contains("did not come back"));
    }

    #[test]
    fn a_trickling_request_is_dropped_and_the_browser_served_after_it() {
        let redirect = Redirect::bind(0).unwrap();
        let uri = redirect.uri().to_owned();
        let _trickling = trickle(&uri, 600);
        let browser = std::thread::spawn(move || get(&uri, "/callback?code=c&state=s"));
        let query = waited(redirect, Duration::from_secs(60)).expect("the wait ended");
        assert_eq!(query.unwrap(), "code=c&state=s");
        assert!(browser.join().unwrap().starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn nobody_coming_back_is_an_error_in_time() {
        let redirect = Redirect::bind(0).unwrap();
        let error = redirect.wait(Duration::from_millis(100)).unwrap_err();
        assert!(error.contains("did not come back"), "{error}");
    }
}
