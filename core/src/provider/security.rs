//! Who may ask: local-only Host/Origin checks, CORS, keys and rate limits.

use std::time::Instant;

use std::collections::HashMap;
use std::time::Duration;

use crate::api::Guard;
use crate::auth::{bearer, find_key, LastPresented};
use crate::config::Config;
use crate::error::ApiError;
use crate::http::{Fields, Request};
use crate::limiter::TokenBucket;

/// Headers sent to a browser preflight from an allowed origin.
const CORS_ALLOW_HEADERS: &str = "authorization, content-type, x-mcp-session, x-api-key";

/// OpenAI's rate-limit headers: limit, remaining, time to full.
const RATE_HEADERS_REQUESTS: [&str; 3] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
];
const RATE_HEADERS_TOKENS: [&str; 3] = [
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

/// Whether a host name (no port) is this machine's loopback.
fn is_loopback_name(host: &str) -> bool {
    // What nearly every local client sends, checked before the rest.
    if host == "127.0.0.1" {
        return true;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || ends_with_ignoring_case(host, ".localhost")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `text` ends with `suffix`, ASCII letters of either case alike
/// (checked on every request's `Host`: no lower-cased copy).
fn ends_with_ignoring_case(text: &str, suffix: &str) -> bool {
    text.len()
        .checked_sub(suffix.len())
        .and_then(|start| text.as_bytes().get(start..))
        .is_some_and(|end| end.eq_ignore_ascii_case(suffix.as_bytes()))
}

/// A key a browser's WebSocket offers as a subprotocol, `bearer.<key>`
/// (a page cannot set `Authorization` on a WebSocket).
fn protocol_bearer(request: &Request) -> Option<&str> {
    request
        .header("sec-websocket-protocol")?
        .split(',')
        .find_map(|p| p.trim().strip_prefix("bearer."))
}

/// `host[:port]` or `[v6]:port` without the port.
fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    // Read from the end, a byte at a time: a port is a few digits, and
    // every request's `Host` passes here.
    let digits = authority
        .bytes()
        .rev()
        .take_while(u8::is_ascii_digit)
        .count();
    let before = authority.len() - digits;
    match authority
        .get(..before)
        .and_then(|rest| rest.strip_suffix(':'))
    {
        Some(host) => host,
        None => authority,
    }
}

/// DNS-rebinding protection and CORS: refuses a non-local `Host` or a
/// foreign `Origin`; for an allowed origin, adds the CORS headers.
pub(super) fn check_origin(
    config: &Config,
    request: &Request,
    extra: &mut Fields,
) -> Result<(), ApiError> {
    if let Some(host) = request.header("host") {
        let name = strip_port(host.trim_ascii());
        let allowed = is_loopback_name(name)
            || config
                .allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name));
        if !allowed {
            return Err(ApiError::forbidden(format!(
                    "Host `{host}` is not allowed: this server only answers requests addressed to localhost"
                )));
        }
    }
    if let Some(origin) = request.header("origin") {
        let local = origin.split_once("://").is_some_and(|(scheme, rest)| {
            matches!(scheme, "http" | "https")
                && is_loopback_name(strip_port(rest.trim_end_matches('/')))
        });
        if !local && !config.cors_origins.iter().any(|o| o == origin) {
            return Err(ApiError::forbidden(format!(
                "Origin `{origin}` is not allowed"
            )));
        }
        extra.push(("access-control-allow-origin", origin.to_owned().into()));
        extra.push(("vary", "Origin".into()));
        if request.method == "OPTIONS" {
            extra.push((
                "access-control-allow-methods",
                "GET, POST, DELETE, OPTIONS".into(),
            ));
            extra.push(("access-control-allow-headers", CORS_ALLOW_HEADERS.into()));
            extra.push(("access-control-max-age", "600".into()));
        }
    }
    Ok(())
}

/// A missing or wrong credential's 401, saying where the right one is
/// when the embedder said ([`crate::Config::credentials_hint`]): a
/// first-time user without the key needs that as much as one with a
/// stale key.
fn refused(config: &Config, what: &str) -> ApiError {
    match config.credentials_hint.as_str() {
        "" => ApiError::unauthorized(what),
        hint => ApiError::unauthorized(format!("{what} {hint}")),
    }
}

/// Checks the credential a route needs (`last`: what its connection
/// presented before). Returns the API key's index (the rate-limit
/// bucket), `None` for open or anonymous access.
pub(super) fn authorize(
    config: &Config,
    request: &Request,
    guard: Guard,
    last: &mut LastPresented,
) -> Result<Option<usize>, ApiError> {
    let presented = bearer(request.header("authorization"))
        .or(request.header("x-api-key"))
        .or_else(|| protocol_bearer(request))
        .map(|secret| last.digest(secret));
    match guard {
        Guard::Open => Ok(None),
        Guard::BridgeToken => match presented {
            Some(t) if config.bridge_token.matches(t) => Ok(None),
            Some(_) => Err(refused(config, "Invalid bridge token.")),
            None => Err(refused(
                config,
                "Missing bridge token: send `Authorization: Bearer <bridge token>`.",
            )),
        },
        Guard::Observer | Guard::Owner if !config.require_api_key => Ok(None),
        Guard::Observer | Guard::Owner => {
            let Some(t) = presented else {
                return Err(refused(
                    config,
                    "Send the API key or the bridge token: `Authorization: Bearer <key>`.",
                ));
            };
            if config.bridge_token.matches(t) {
                return Ok(None);
            }
            let key = find_key(&config.api_keys, t)
                .ok_or_else(|| refused(config, "Neither an API key nor the bridge token."))?;
            // An owner's key names what it owns; an observer's names nothing.
            Ok(matches!(guard, Guard::Owner).then_some(key))
        }
        Guard::ApiKey if !config.require_api_key => Ok(None),
        Guard::ApiKey => match presented {
            Some(k) => find_key(&config.api_keys, k)
                .map(Some)
                .ok_or_else(|| refused(config, "Incorrect API key provided.")),
            None => Err(refused(
                config,
                "You didn't provide an API key: send `Authorization: Bearer <key>`.",
            )),
        },
    }
}

/// The rate limits of every API key: requests and tokens per minute.
pub(super) struct RateLimits {
    requests_per_minute: u64,
    tokens_per_minute: u64,
    buckets: HashMap<Option<usize>, Buckets>,
}

#[derive(Debug)]
struct Buckets {
    requests: Option<TokenBucket>,
    tokens: Option<TokenBucket>,
}

impl RateLimits {
    pub(super) fn new(requests_per_minute: u64, tokens_per_minute: u64) -> Self {
        RateLimits {
            requests_per_minute,
            tokens_per_minute,
            buckets: HashMap::new(),
        }
    }

    fn buckets(&mut self, key: Option<usize>, now: Instant) -> &mut Buckets {
        let (rpm, tpm) = (self.requests_per_minute, self.tokens_per_minute);
        self.buckets.entry(key).or_insert_with(|| Buckets {
            requests: (rpm > 0).then(|| TokenBucket::new(rpm, now)),
            tokens: (tpm > 0).then(|| TokenBucket::new(tpm, now)),
        })
    }

    /// Admits one request costing `tokens` (estimated), or answers 429. The
    /// `x-ratelimit-*` headers describe the key's buckets either way.
    pub(super) fn admit(
        &mut self,
        key: Option<usize>,
        tokens: u64,
        now: Instant,
        extra: &mut Fields,
    ) -> Result<(), ApiError> {
        if self.requests_per_minute == 0 && self.tokens_per_minute == 0 {
            return Ok(());
        }
        let b = self.buckets(key, now);
        let mut denied = None;
        if let Some(bucket) = b.requests.as_mut() {
            if let Err(wait) = bucket.try_take(1, now) {
                denied = Some(("requests", wait));
            }
        }
        if denied.is_none() {
            if let Some(bucket) = b.tokens.as_mut() {
                if let Err(wait) = bucket.try_take(tokens.min(bucket.capacity()), now) {
                    // Give back the request slot taken above.
                    if let Some(r) = b.requests.as_mut() {
                        r.refund(1);
                    }
                    denied = Some(("tokens", wait));
                }
            }
        }
        let described = [
            (&b.requests, RATE_HEADERS_REQUESTS),
            (&b.tokens, RATE_HEADERS_TOKENS),
        ];
        for (bucket, [limit, remaining, reset]) in described {
            if let Some(bucket) = bucket {
                extra.push((limit, bucket.capacity().to_string().into()));
                extra.push((remaining, bucket.remaining().to_string().into()));
                extra.push((reset, format!("{}s", ceil_secs(bucket.until_full())).into()));
            }
        }
        match denied {
            None => Ok(()),
            Some((what, wait)) => Err(ApiError::rate_limited(
                format!(
                    "Rate limit reached for {what} per minute; retry in {} s.",
                    ceil_secs(wait)
                ),
                ceil_secs(wait),
            )),
        }
    }

    /// Charges tokens used beyond the estimate once the answer is complete.
    pub(super) fn charge(&mut self, key: Option<usize>, tokens: u64, now: Instant) {
        if let Some(bucket) = self.buckets.get_mut(&key).and_then(|b| b.tokens.as_mut()) {
            bucket.charge(tokens, now);
        }
    }
}

/// Seconds, for `Retry-After` and reset headers: rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_ports() {
        for ok in [
            "localhost",
            "127.0.0.1",
            "127.8.0.1",
            "[::1]",
            "::1",
            "app.localhost",
            "App.LocalHost",
        ] {
            assert!(is_loopback_name(ok), "{ok}");
        }
        for bad in [
            "evil.com",
            "localhost.evil.com",
            "evillocalhost",
            "10.0.0.1",
            "0.0.0.0",
            "é.localhos",
        ] {
            assert!(!is_loopback_name(bad), "{bad}");
        }
        assert_eq!(strip_port("localhost:8788"), "localhost");
        assert_eq!(strip_port("[::1]:8788"), "::1");
        assert_eq!(strip_port("evil.com"), "evil.com");
    }
}
