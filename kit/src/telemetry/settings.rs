//! What the exporter is configured with, and the parsing of the two values
//! the OpenTelemetry variables write in a form of their own: the endpoint
//! (a base URL that gets `/v1/traces`, or the traces URL itself) and the
//! headers (`key=value,key2=value2`, values URL-encoded).

use std::fmt;
use std::time::Duration;

use mcp_provider_core::http::{BadUrl, Url};
use mcp_provider_core::telemetry::otlp::{Format, Resource};
use mcp_provider_core::telemetry::Sampler;

/// The path OTLP/HTTP takes traces at, added to a base endpoint.
pub const TRACES_PATH: &str = "/v1/traces";

/// An exporter's settings, checked.
#[derive(Clone)]
pub struct Settings {
    /// Where batches are posted (the whole URL, path included).
    pub url: Url,
    pub format: Format,
    /// Sent with every export. Credentials, often: never logged or shown.
    pub headers: Vec<(String, String)>,
    pub resource: Resource,
    pub sampler: Sampler,
    /// Spans carry content: prompts, answers, tool arguments and results.
    pub capture_content: bool,
    /// How long one export may take, connecting included.
    pub timeout: Duration,
    /// How long a span waits for its batch to fill before it is sent.
    pub schedule_delay: Duration,
    /// Spans in one export at most.
    pub max_batch: usize,
    /// Spans waiting to be sent at most; past it, new ones are dropped.
    pub max_queue: usize,
}

impl Settings {
    /// The settings for `url` with the OpenTelemetry SDK's defaults.
    pub fn new(url: Url, resource: Resource) -> Self {
        Settings {
            url,
            format: Format::Protobuf,
            headers: Vec::new(),
            resource,
            sampler: Sampler::default(),
            capture_content: false,
            timeout: Duration::from_secs(10),
            schedule_delay: Duration::from_secs(1),
            max_batch: 512,
            max_queue: 2048,
        }
    }
}

/// Header values hidden: they are credentials.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Settings")
            .field("url", &self.url)
            .field("format", &self.format)
            .field("headers (values hidden)", &headers)
            .field("resource", &self.resource)
            .field("sampler", &self.sampler)
            .field("capture_content", &self.capture_content)
            .field("timeout", &self.timeout)
            .field("schedule_delay", &self.schedule_delay)
            .field("max_batch", &self.max_batch)
            .field("max_queue", &self.max_queue)
            .finish()
    }
}

/// The traces URL: `traces_endpoint` as it is, else `endpoint` with
/// [`TRACES_PATH`] added (as `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and
/// `OTEL_EXPORTER_OTLP_ENDPOINT` say); `None` when neither is given.
pub fn traces_url(
    endpoint: Option<&str>,
    traces_endpoint: Option<&str>,
) -> Result<Option<Url>, BadUrl> {
    let url = match (traces_endpoint, endpoint) {
        (Some(url), _) => url.trim().to_owned(),
        (None, Some(base)) => format!("{}{TRACES_PATH}", base.trim().trim_end_matches('/')),
        (None, None) => return Ok(None),
    };
    Url::parse(&url).map(Some)
}

/// Why `key=value,…` headers cannot be read: the entry is named by its
/// place (from 1), never by its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadHeaders {
    #[error("entry {0} is not key=value")]
    NotKeyValue(usize),
    #[error("entry {place} ({key}) is not URL-encoded UTF-8")]
    NotEncoded { place: usize, key: String },
    #[error("entry {place}: {why}")]
    Header { place: usize, why: BadHeader },
}

/// Why a header cannot be sent: it names the header, never its value
/// (often a credential).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadHeader {
    #[error("`{0}` is not a header name")]
    Name(String),
    #[error("the value of `{0}` holds a control character")]
    ControlCharacter(String),
}

/// Headers written `key=value,key2=value2` with URL-encoded values (the
/// W3C Baggage form `OTEL_EXPORTER_OTLP_HEADERS` takes). An error names
/// the entry by its place, never its value.
pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>, BadHeaders> {
    let mut headers = Vec::new();
    for (i, entry) in text.split(',').enumerate() {
        if entry.trim().is_empty() {
            continue;
        }
        let place = i + 1;
        let (key, value) = entry
            .split_once('=')
            .ok_or(BadHeaders::NotKeyValue(place))?;
        let key = key.trim();
        let value = percent_decode(value.trim()).ok_or_else(|| BadHeaders::NotEncoded {
            place,
            key: key.to_owned(),
        })?;
        check_header(key, &value).map_err(|why| BadHeaders::Header { place, why })?;
        headers.push((key.to_owned(), value));
    }
    Ok(headers)
}

/// Whether `key: value` can be sent as a header line: a token for the
/// name, no control characters (a line break would start another header)
/// in the value.
pub fn check_header(key: &str, value: &str) -> Result<(), BadHeader> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if key.is_empty() || !key.bytes().all(token) {
        return Err(BadHeader::Name(key.to_owned()));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(BadHeader::ControlCharacter(key.to_owned()));
    }
    Ok(())
}

/// `%XX` escapes decoded; `None` for a bad escape or bytes that are not
/// UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generic_endpoint_gets_the_traces_path_and_the_traces_one_is_used_as_is() {
        let url = |e, t| traces_url(e, t).unwrap().map(|u: Url| u.to_string());
        assert_eq!(
            url(Some("http://127.0.0.1:6006"), None).as_deref(),
            Some("http://127.0.0.1:6006/v1/traces")
        );
        assert_eq!(
            url(Some("https://collector.example/otlp/"), None).as_deref(),
            Some("https://collector.example/otlp/v1/traces")
        );
        assert_eq!(
            url(Some("http://a:1"), Some("http://b:2/custom")).as_deref(),
            Some("http://b:2/custom")
        );
        assert_eq!(url(None, None), None);
        let bad = traces_url(Some("127.0.0.1:4318"), None)
            .unwrap_err()
            .to_string();
        assert!(bad.contains("127.0.0.1:4318"), "{bad}");
        assert!(traces_url(None, Some("ftp://x/")).is_err());
    }

    #[test]
    fn headers_are_key_value_pairs_with_url_encoded_values() {
        assert_eq!(
            parse_headers("api-key=abc%3D%3D, x-team = a%20b ,,").unwrap(),
            [
                ("api-key".to_owned(), "abc==".to_owned()),
                ("x-team".to_owned(), "a b".to_owned()),
            ]
        );
        assert_eq!(parse_headers("").unwrap(), []);
        let no_equals = parse_headers("a=1,secret-token").unwrap_err().to_string();
        assert!(no_equals.contains("entry 2"), "{no_equals}");
        assert!(!no_equals.contains("secret-token"), "{no_equals}");
        let injected = parse_headers("a=x%0d%0aHost: evil")
            .unwrap_err()
            .to_string();
        assert!(injected.contains("control"), "{injected}");
        assert!(!injected.contains("evil"), "{injected}");
        assert!(parse_headers("bad name=1").is_err());
        assert!(parse_headers("a=%zz").is_err());
        assert!(parse_headers("a=%ff").is_err());
        assert!(parse_headers("a=%4").is_err());
    }

    #[test]
    fn debug_hides_header_values() {
        let mut settings = Settings::new(
            Url::parse("http://127.0.0.1:4318/v1/traces").unwrap(),
            Resource::new("svc", "1"),
        );
        settings.headers = parse_headers("authorization=Bearer%20s3cret").unwrap();
        let shown = format!("{settings:?}");
        assert!(
            shown.contains("authorization") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
