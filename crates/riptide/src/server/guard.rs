//! The server's outer defences, applied before any handler runs: who the
//! client is (X-Forwarded-For only from trusted proxies), which Host it
//! asked for (DNS rebinding), whether a cookie-authenticated state change
//! came from our own pages (CSRF), how fast it may call the API, and how
//! large and slow its request body may be.
//!
//! Rate-limit tables are bounded: when full, expired entries go first,
//! then the oldest, so a flood of new addresses cannot grow memory.

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::AppState;
use super::error::ApiError;

/// Entries a rate-limit table holds at most.
const TABLE_CAP: usize = 10_000;

/// Who sent a request, as far as we can trust it.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub ip: IpAddr,
    /// The request reached the server (or the trusted proxy) over TLS.
    pub https: bool,
    /// The TCP peer itself is on this machine and no proxy forwarded it.
    pub local: bool,
}

/// The client address: the TCP peer, unless the peer is a trusted proxy,
/// then the right-most X-Forwarded-For entry that is not a trusted proxy.
pub fn client_of(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> Client {
    let peer_ip = canonical(peer.ip());
    if !trusted.contains(&peer_ip) {
        return Client {
            ip: peer_ip,
            https: false,
            local: peer_ip.is_loopback(),
        };
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(canonical)
        .collect();
    let ip = forwarded
        .iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .or(forwarded.first())
        .copied()
        .unwrap_or(peer_ip);
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    Client {
        ip,
        https,
        local: forwarded.is_empty() && peer_ip.is_loopback(),
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `host[:port]` of the request, lower-cased.
pub fn request_host(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..=h.len()]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let bare = strip_port(host);
    allowed.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == host || a == bare
    })
}

/// The authority (`host[:port]`) of an Origin or Referer URL.
fn url_authority(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(rest[..end].to_ascii_lowercase())
}

/// Whether an unsafe request was sent by a page of this server: its
/// Origin (or, without one, its Referer) names the host it was sent to.
/// `None` when the browser sent neither.
pub fn same_origin(headers: &HeaderMap) -> Option<bool> {
    let host = request_host(headers)?;
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .ok()
            .and_then(url_authority)
            .is_some_and(|a| a == host);
        return Some(ok);
    }
    headers.get(header::REFERER).map(|r| {
        r.to_str()
            .ok()
            .and_then(url_authority)
            .is_some_and(|a| a == host)
    })
}

pub fn is_unsafe(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Failed logins per key in a window; locked once the limit is reached.
pub struct LoginLimiter {
    max: u32,
    window: Duration,
    table: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    pub fn new(max: u32, window: Duration) -> LoginLimiter {
        LoginLimiter {
            max: max.max(1),
            window,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(retry_after)` when `key` is locked out now.
    pub fn locked(&self, key: &str) -> Option<Duration> {
        let t = self.table.lock();
        let (n, since) = t.get(key)?;
        let left = self.window.checked_sub(since.elapsed())?;
        (*n >= self.max).then_some(left.max(Duration::from_secs(1)))
    }

    pub fn failed(&self, key: &str) {
        let mut t = self.table.lock();
        if t.len() >= TABLE_CAP && !t.contains_key(key) {
            let window = self.window;
            t.retain(|_, (_, since)| since.elapsed() < window);
            if t.len() >= TABLE_CAP
                && let Some(oldest) = t
                    .iter()
                    .min_by_key(|(_, (_, s))| *s)
                    .map(|(k, _)| k.clone())
            {
                t.remove(&oldest);
            }
        }
        let e = t.entry(key.to_string()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= self.window {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }

    pub fn succeeded(&self, key: &str) {
        self.table.lock().remove(key);
    }
}

/// A token bucket per client address for the API.
pub struct RateLimiter {
    per_minute: f64,
    table: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: f64::from(per_minute.max(1)),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` when `ip` has no request left.
    pub fn take(&self, ip: IpAddr) -> Result<(), Duration> {
        let mut t = self.table.lock();
        let cap = self.per_minute;
        let rate = cap / 60.0;
        if t.len() >= TABLE_CAP && !t.contains_key(&ip) {
            // Full buckets carry no information: forget them first.
            t.retain(|_, (tokens, at)| *tokens + at.elapsed().as_secs_f64() * rate < cap);
            if t.len() >= TABLE_CAP
                && let Some(oldest) = t.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k)
            {
                t.remove(&oldest);
            }
        }
        let (tokens, at) = t.entry(ip).or_insert((cap, Instant::now()));
        *tokens = (*tokens + at.elapsed().as_secs_f64() * rate).min(cap);
        *at = Instant::now();
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                ((1.0 - *tokens) / rate).ceil().max(1.0),
            ))
        }
    }
}

/// An error answer: an HTML page for the pages (a browser shows it to a
/// person), JSON for everything else.
pub fn refuse(path: &str, status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    if super::auth::is_page(path) {
        let title = status.canonical_reason().unwrap_or("Error");
        return super::pages::render(status, super::pages::Page::error(title, &message));
    }
    ApiError::new(status, message).into_response()
}

pub fn too_many(retry_after: Duration, what: &str) -> Response {
    let secs = retry_after.as_secs().max(1);
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("{what}; try again in {secs} s"),
    )
    .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// Outermost layer: resolves the client, refuses foreign Host headers,
/// rate-limits the API, buffers the body within size and time limits, and
/// adds security headers to every answer.
pub async fn outer(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
    let client = client_of(peer, req.headers(), &app.cfg.http.trusted_proxies);
    req.extensions_mut().insert(client);
    let host_ok =
        request_host(req.headers()).is_some_and(|h| host_allowed(&h, &app.cfg.http.allowed_hosts));
    if !host_ok {
        // DNS rebinding: a page on another name that resolves to us must
        // not be able to talk to the server with the user's privileges.
        return with_security_headers(refuse(
            req.uri().path(),
            StatusCode::MISDIRECTED_REQUEST,
            "this server does not answer to that host name; add it to http.allowed_hosts in riptide.toml",
        ));
    }
    let path = req.uri().path().to_string();
    if path.starts_with("/api/")
        && let Err(wait) = app.api_limiter.take(client.ip)
    {
        return with_security_headers(too_many(wait, "too many API requests"));
    }
    if is_unsafe(req.method()) || req.headers().contains_key(header::CONTENT_LENGTH) {
        let limit = if path == "/api/v1/torrents" || path == "/downloads/add" {
            app.cfg.http.max_torrent_bytes * 2 + 4096
        } else {
            app.cfg.http.max_body_bytes
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return with_security_headers(too_large(&path, limit));
        }
        let (parts, body) = req.into_parts();
        let read =
            tokio::time::timeout(app.cfg.http.body_timeout, axum::body::to_bytes(body, limit))
                .await;
        let bytes = match read {
            Err(_) => {
                return with_security_headers(refuse(
                    &path,
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time; retry on a better connection",
                ));
            }
            Ok(Err(_)) => return with_security_headers(too_large(&path, limit)),
            Ok(Ok(b)) => b,
        };
        req = Request::from_parts(parts, Body::from(bytes));
    }
    with_security_headers(next.run(req).await)
}

fn too_large(path: &str, limit: usize) -> Response {
    refuse(
        path,
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request is larger than {} KiB; torrent files and forms are never that large",
            limit / 1024
        ),
    )
}

fn with_security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; \
             worker-src 'self' blob:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ]);
        let peer: SocketAddr = "10.0.0.5:1234".parse().unwrap();
        let c = client_of(peer, &h, &[]);
        assert_eq!(c.ip.to_string(), "10.0.0.5");
        assert!(!c.https);
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4, 6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = client_of(peer, &h, &[proxy]);
        // The right-most untrusted entry: the left one could be forged.
        assert_eq!(c.ip.to_string(), "6.6.6.6");
        assert!(c.https && !c.local);
        let local: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let c = client_of(local, &h, &[]);
        assert!(c.local);
        let c = client_of(local, &h, &["127.0.0.1".parse().unwrap()]);
        assert!(!c.local, "a forwarded request is not local");
    }

    #[test]
    fn hosts_and_origins() {
        let allowed = vec!["localhost".to_string(), "127.0.0.1".into(), "[::1]".into()];
        assert!(host_allowed("localhost:8080", &allowed));
        assert!(host_allowed("[::1]:8080", &allowed));
        assert!(!host_allowed("evil.example:8080", &allowed));
        assert!(!host_allowed("127.0.0.1.evil.example", &allowed));
        let h = headers(&[
            ("host", "localhost:8080"),
            ("origin", "http://localhost:8080"),
        ]);
        assert_eq!(same_origin(&h), Some(true));
        let h = headers(&[
            ("host", "localhost:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert_eq!(same_origin(&h), Some(false));
        let h = headers(&[("host", "localhost:8080"), ("origin", "null")]);
        assert_eq!(same_origin(&h), Some(false));
        let h = headers(&[
            ("host", "localhost:8080"),
            ("referer", "http://localhost:8080/downloads"),
        ]);
        assert_eq!(same_origin(&h), Some(true));
        let h = headers(&[("host", "localhost:8080")]);
        assert_eq!(same_origin(&h), None);
    }

    #[test]
    fn login_lockout_and_bounded_tables() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            l.failed("ann");
        }
        assert!(l.locked("ann").is_none());
        l.failed("ann");
        assert!(l.locked("ann").is_some());
        for i in 0..(TABLE_CAP + 10) {
            l.failed(&format!("k{i}"));
        }
        assert!(l.table.lock().len() <= TABLE_CAP);
        let r = RateLimiter::new(2);
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        assert!(r.take(ip).is_ok() && r.take(ip).is_ok());
        assert!(r.take(ip).is_err());
    }
}
