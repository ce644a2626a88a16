//! The head of an HTTP response, as a load generator reads it.

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Its length in bytes, the blank line included: the body starts there.
    pub len: usize,
    pub status: u16,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    pub content_length: Option<usize>,
    /// Every header, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a response head from the start of `buf`, or `None` when more
/// bytes are needed.
pub fn response_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let headers: Vec<(String, String)> = response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).trim().to_owned(),
                    )
                })
                .collect();
            let mut head = Head {
                len,
                status: response.code.unwrap_or(0),
                chunked: false,
                content_length: None,
                headers,
            };
            head.chunked = head
                .header("transfer-encoding")
                .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
            head.content_length = match head.header("content-length") {
                Some(v) => Some(v.parse().map_err(|_| format!("bad content-length {v:?}"))?),
                None => None,
            };
            Ok(Some(head))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!("bad response head: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_give_status_framing_and_headers() {
        let head = response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxx")
            .unwrap()
            .unwrap();
        assert_eq!((head.len, head.status, head.chunked), (47, 200, true));
        let head =
            response_head(b"HTTP/1.1 202 \r\nContent-Length: 0\r\nMcp-Session-Id: ab12\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(head.status, 202);
        assert_eq!(head.content_length, Some(0));
        assert_eq!(head.header("mcp-session-id"), Some("ab12"));
        assert!(!head.chunked);
        assert_eq!(response_head(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
        assert!(response_head(b"NOPE\r\n\r\n").is_err());
        assert!(response_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }
}
