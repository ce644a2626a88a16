//! The loopback listener the authorization server sends the browser back
//! to (RFC 8252 §7.3): `http://127.0.0.1:PORT/callback`, on a port of the
//! system's choosing unless one is configured. It takes the first request
//! for its path that is the login's (its `state`), answers the browser
//! with a page saying it may close the tab, and hands the query to the
//! login. Any process on this machine can reach the port, so a request
//! that is not the login's gets 400 and the wait goes on (only the last
//! refusal is kept, to say why should nothing else come); anything else
//! (a favicon) gets 404. Each request is read bounded in size and time,
//! one at a time.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use mcp_provider_core::oauth::OAuthError;
use mcp_provider_core::time::later;

use super::browser::Opened;

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

const REFUSED_PAGE: &str = "<!doctype html><meta charset=utf-8><title>MCP Local Provider</title>\
<body style=\"font-family:sans-serif;margin:3em\"><h1>MCP Local Provider</h1>\
<p>This is not the redirect of the login under way (its <code>state</code> is not the login's), \
so it is refused. The login still waits for the browser it opened.</p></body>";

/// What became of one request to the listener.
enum Answered {
    /// The login's redirect, with this query.
    Taken(String),
    /// A request for the redirect's path that is not the login's: why.
    Refused(OAuthError),
    /// Anything else, or nothing read in time.
    Other,
}

/// A listener waiting for one redirect.
pub struct Redirect {
    listener: TcpListener,
    uri: String,
}

/// Why the login's redirect cannot be listened for.
#[derive(Debug, thiserror::Error)]
pub enum RedirectError {
    #[error("cannot listen on 127.0.0.1:{port} for the login's redirect: {source}")]
    Listen { port: u16, source: std::io::Error },
    #[error("{0}")]
    Socket(std::io::Error),
}

/// Why no redirect came back for the login.
#[derive(Debug, thiserror::Error)]
pub enum NoRedirect {
    #[error("the login's redirect listener: {0}")]
    Listener(std::io::Error),
    /// The wait ended, as `ended` says; `refused`: why the last request
    /// for the redirect's path was not the login's, if one came.
    #[error("{}{ended}", .refused.as_ref().map(|why| format!("{why}; ")).unwrap_or_default())]
    Ended {
        refused: Option<OAuthError>,
        ended: WaitEnded,
    },
}

/// How a wait for the redirect ended without it.
#[derive(Debug, thiserror::Error)]
pub enum WaitEnded {
    /// The browser opened for the login failed, as its launcher said.
    #[error("{0} before the login's redirect came back")]
    BrowserFailed(String),
    #[error("the browser did not come back to {uri} within {} s", .timeout.as_secs())]
    TimedOut { uri: String, timeout: Duration },
}

impl Redirect {
    /// Listens on 127.0.0.1 at `port` (0: any free one).
    pub fn bind(port: u16) -> Result<Redirect, RedirectError> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .map_err(|source| RedirectError::Listen { port, source })?;
        let port = listener.local_addr().map_err(RedirectError::Socket)?.port();
        listener
            .set_nonblocking(true)
            .map_err(RedirectError::Socket)?;
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
    /// `timeout` that `ours` takes (what it refuses is answered with an
    /// error page). The wait ends early once the browser opened for the
    /// login, if any, has ended with a failure.
    pub fn wait(
        &self,
        timeout: Duration,
        ours: &dyn Fn(&str) -> Result<(), OAuthError>,
        browser: Option<&Opened>,
    ) -> Result<String, NoRedirect> {
        let deadline = later(Instant::now(), timeout);
        let mut refused = None;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    // No request outlasts the wait, however many come.
                    let by = later(Instant::now(), READ_TIMEOUT).min(deadline);
                    match answer(stream, by, ours) {
                        Answered::Taken(query) => return Ok(query),
                        Answered::Refused(why) => refused = Some(why),
                        Answered::Other => {}
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
                Err(e) => return Err(NoRedirect::Listener(e)),
            }
            let ended = if let Some(failure) = browser.and_then(Opened::failed) {
                WaitEnded::BrowserFailed(failure)
            } else if Instant::now() >= deadline {
                WaitEnded::TimedOut {
                    uri: self.uri.clone(),
                    timeout,
                }
            } else {
                continue;
            };
            return Err(NoRedirect::Ended { refused, ended });
        }
    }
}

/// Reads one request's line by `by` and answers it: the redirect's path
/// with a query `ours` takes, or refuses, or anything else.
fn answer(
    mut stream: TcpStream,
    by: Instant,
    ours: &dyn Fn(&str) -> Result<(), OAuthError>,
) -> Answered {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let Some(line) = request_line(&mut stream, by) else {
        return Answered::Other;
    };
    let mut words = line.split(' ');
    let target = match (words.next(), words.next()) {
        (Some("GET"), Some(target)) => target,
        _ => "",
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (status, body, answered) = if path != PATH {
        ("404 Not Found", "not found", Answered::Other)
    } else {
        match ours(query) {
            Ok(()) => ("200 OK", PAGE, Answered::Taken(query.to_owned())),
            Err(why) => ("400 Bad Request", REFUSED_PAGE, Answered::Refused(why)),
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
    answered
}

/// The request line, once the whole head is in (at most [`MAX_REQUEST`]
/// bytes read), or nothing if it is not by `by`: each read waits only for
/// what is left.
fn request_line(stream: &mut TcpStream, by: Instant) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !head_ended(&buf) {
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

/// Whether `buf` holds a whole request head (its blank line).
fn head_ended(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes any query.
    fn any(_: &str) -> Result<(), OAuthError> {
        Ok(())
    }

    /// Takes the query with `state=s` alone.
    fn state_s(query: &str) -> Result<(), OAuthError> {
        if query.split('&').any(|pair| pair == "state=s") {
            Ok(())
        } else {
            Err(OAuthError::Refused("not this login's `state`".to_owned()))
        }
    }

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
            redirect.wait(Duration::from_secs(10), &any, None).unwrap(),
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

    /// Runs `redirect.wait(timeout, …)`, taking any query, on a thread; its result, if it came
    /// within 30 s.
    fn waited(redirect: Redirect, timeout: Duration) -> Option<Result<String, NoRedirect>> {
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(redirect.wait(timeout, &any, None));
        });
        result.recv_timeout(Duration::from_secs(30)).ok()
    }

    #[test]
    fn a_trickling_request_holds_the_wait_no_longer_than_it_lasts() {
        let redirect = Redirect::bind(0).unwrap();
        let _trickling = trickle(redirect.uri(), 600);
        let error = waited(redirect, Duration::from_millis(500)).expect("the wait ended");
        assert!(error.unwrap_err().to_string().contains("did not come back"));
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
    fn forged_redirects_are_refused_and_the_browser_still_taken_after_them() {
        let redirect = Redirect::bind(0).unwrap();
        let uri = redirect.uri().to_owned();
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(redirect.wait(Duration::from_secs(60), &state_s, None));
        });
        // A flood of them: each is answered, none is kept.
        for _ in 0..200 {
            let forged = get(&uri, "/callback?code=evil&state=forged");
            assert!(forged.starts_with("HTTP/1.1 400"), "{forged}");
            assert!(forged.contains("still waits"));
        }
        assert!(get(&uri, "/callback?code=evil").starts_with("HTTP/1.1 400"));
        let hit = get(&uri, "/callback?code=c&state=s");
        assert!(hit.starts_with("HTTP/1.1 200"), "{hit}");
        let query = result.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(query.unwrap(), "code=c&state=s");
    }

    #[test]
    fn a_wait_that_ends_after_a_forged_redirect_says_so() {
        let redirect = Redirect::bind(0).unwrap();
        let uri = redirect.uri().to_owned();
        let forger = std::thread::spawn(move || get(&uri, "/callback?code=evil&state=forged"));
        let error = redirect
            .wait(Duration::from_secs(2), &state_s, None)
            .unwrap_err()
            .to_string();
        assert!(forger.join().unwrap().starts_with("HTTP/1.1 400"));
        assert!(error.starts_with("not this login's `state`; "), "{error}");
        assert!(error.contains("did not come back"), "{error}");
    }

    #[test]
    fn a_browser_that_fails_ends_the_wait_before_its_time() {
        let redirect = Redirect::bind(0).unwrap();
        let browser = super::super::browser::launch("false", &[]).unwrap();
        let started = Instant::now();
        let error = redirect
            .wait(Duration::from_secs(60), &state_s, Some(&browser))
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(
            error.contains("the browser (false) ended with exit status: 1"),
            "{error}"
        );
    }

    #[test]
    fn nobody_coming_back_is_an_error_in_time() {
        let redirect = Redirect::bind(0).unwrap();
        let error = redirect
            .wait(Duration::from_millis(100), &any, None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("did not come back"), "{error}");
    }
}
