//! HTTP byte ranges (RFC 9110 §14): parsing the `Range` header and building
//! `200`/`206`/`416` responses over any seekable reader.
//!
//! Only single ranges are served. A multi-range request gets its first
//! range as an ordinary `206` (RFC 9110 lets a server ignore the rest), so a
//! client never makes us build multipart bodies. `bytes=0-1` — Safari's
//! probe — is just a two-byte range.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::future::Future;
use std::ops::Range;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::io::ReaderStream;

/// Longest `Range` header we bother to parse.
const MAX_HEADER: usize = 1024;
/// Bytes per body chunk.
const CHUNK: usize = 64 * 1024;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum RangeSpec {
    /// `a-b` (inclusive) or `a-` (`end` None).
    From { start: u64, end: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("Range header is not a byte range this server understands")]
    Malformed,
    #[error("requested range is outside the file")]
    Unsatisfiable,
}

/// Parses a `Range` header value; returns the first range of a list.
pub fn parse(value: &str) -> Result<RangeSpec, RangeError> {
    if value.len() > MAX_HEADER {
        return Err(RangeError::Malformed);
    }
    let rest = value
        .trim()
        .strip_prefix("bytes=")
        .ok_or(RangeError::Malformed)?;
    let first = rest.split(',').next().ok_or(RangeError::Malformed)?.trim();
    let (a, b) = first.split_once('-').ok_or(RangeError::Malformed)?;
    let num = |s: &str| -> Result<u64, RangeError> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(RangeError::Malformed);
        }
        // Absurd numbers are unsatisfiable, not malformed: no file is that big.
        s.parse::<u64>().map_err(|_| RangeError::Unsatisfiable)
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return Ok(RangeSpec::Suffix(num(b)?));
    }
    let start = num(a)?;
    let end = if b.is_empty() { None } else { Some(num(b)?) };
    if end.is_some_and(|e| e < start) {
        return Err(RangeError::Unsatisfiable);
    }
    Ok(RangeSpec::From { start, end })
}

/// The byte range of a file of `len` bytes that a spec selects.
pub fn resolve(spec: RangeSpec, len: u64) -> Result<Range<u64>, RangeError> {
    match spec {
        RangeSpec::From { start, end } => {
            if start >= len {
                return Err(RangeError::Unsatisfiable);
            }
            let end = end.map_or(len, |e| e.saturating_add(1).min(len));
            Ok(start..end)
        }
        RangeSpec::Suffix(n) => {
            if n == 0 || len == 0 {
                return Err(RangeError::Unsatisfiable);
            }
            Ok(len.saturating_sub(n)..len)
        }
    }
}

/// What the response describes.
pub struct Resource<'a> {
    pub len: u64,
    pub content_type: &'a str,
    /// Strong validator, quoted (e.g. `"abc-0-1234"`).
    pub etag: &'a str,
}

/// Answers a GET or HEAD for `resource`. `open(range)` is called only when
/// a body is sent and must return a reader positioned at `range.start`; the
/// body ends at `range.end`.
pub async fn respond<R, F, Fut, E>(
    method: &Method,
    headers: &HeaderMap,
    resource: Resource<'_>,
    open: F,
) -> Response
where
    R: AsyncRead + Send + Unpin + 'static,
    F: FnOnce(Range<u64>) -> Fut,
    Fut: Future<Output = Result<R, E>>,
    E: std::fmt::Display,
{
    let len = resource.len;
    let mut base = HeaderMap::new();
    base.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(resource.content_type) {
        base.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(resource.etag) {
        base.insert(header::ETAG, v);
    }
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == resource.etag || t.trim() == "*")
        })
    {
        return (StatusCode::NOT_MODIFIED, base).into_response();
    }
    // If-Range with another validator: the client's copy is stale, send all.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == resource.etag);
    let range = match headers.get(header::RANGE).map(|v| v.to_str()) {
        Some(_) if !if_range_ok => None,
        None => None,
        Some(Err(_)) => Some(Err(RangeError::Malformed)),
        Some(Ok(v)) => Some(parse(v).and_then(|spec| resolve(spec, len))),
    };
    let (status, span) = match range {
        None => (StatusCode::OK, 0..len),
        Some(Ok(r)) => (StatusCode::PARTIAL_CONTENT, r),
        Some(Err(e)) => {
            let mut h = base;
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).expect("ascii"),
            );
            return (StatusCode::RANGE_NOT_SATISFIABLE, h, e.to_string()).into_response();
        }
    };
    let mut h = base;
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(span.end - span.start),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {}-{}/{len}", span.start, span.end - 1))
                .expect("ascii"),
        );
    }
    if method == Method::HEAD {
        return (status, h).into_response();
    }
    let reader = match open(span.clone()).await {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot open the file: {e}"),
            )
                .into_response();
        }
    };
    let body = Body::from_stream(ReaderStream::with_capacity(
        reader.take(span.end - span.start),
        CHUNK,
    ));
    (status, h, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_forms() {
        assert_eq!(
            parse("bytes=0-1"),
            Ok(RangeSpec::From {
                start: 0,
                end: Some(1)
            })
        );
        assert_eq!(
            parse("bytes=100-"),
            Ok(RangeSpec::From {
                start: 100,
                end: None
            })
        );
        assert_eq!(parse("bytes=-500"), Ok(RangeSpec::Suffix(500)));
        assert_eq!(
            parse(" bytes= 5 - 9 , 20-30"),
            Ok(RangeSpec::From {
                start: 5,
                end: Some(9)
            })
        );
        assert_eq!(parse("bytes=9-5"), Err(RangeError::Unsatisfiable));
        assert_eq!(
            parse("bytes=99999999999999999999999-"),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(parse("items=0-1"), Err(RangeError::Malformed));
        assert_eq!(parse("bytes=a-b"), Err(RangeError::Malformed));
        assert_eq!(parse("bytes=-"), Err(RangeError::Malformed));
        assert_eq!(parse("bytes=+1-2"), Err(RangeError::Malformed));
    }

    #[test]
    fn resolves_against_length() {
        let r = |s: &str, len| parse(s).and_then(|x| resolve(x, len));
        assert_eq!(r("bytes=0-1", 10), Ok(0..2));
        assert_eq!(r("bytes=5-", 10), Ok(5..10));
        assert_eq!(r("bytes=5-100", 10), Ok(5..10));
        assert_eq!(r("bytes=-3", 10), Ok(7..10));
        assert_eq!(r("bytes=-30", 10), Ok(0..10));
        assert_eq!(r("bytes=10-", 10), Err(RangeError::Unsatisfiable));
        assert_eq!(r("bytes=-0", 10), Err(RangeError::Unsatisfiable));
        assert_eq!(r("bytes=0-", 0), Err(RangeError::Unsatisfiable));
    }

    proptest! {
        #[test]
        fn any_header_resolves_inside_the_file_or_errors(h in ".{0,80}", len in 0u64..u64::MAX) {
            if let Ok(spec) = parse(&h)
                && let Ok(r) = resolve(spec, len) {
                    prop_assert!(r.start < r.end && r.end <= len);
                }
        }

        #[test]
        fn numeric_ranges(a in any::<u64>(), b in any::<u64>(), len in 1u64..1 << 50) {
            let h = format!("bytes={a}-{b}");
            match parse(&h).and_then(|s| resolve(s, len)) {
                Ok(r) => {
                    prop_assert!(a <= b && a < len);
                    prop_assert_eq!(r.start, a);
                    prop_assert_eq!(r.end, b.saturating_add(1).min(len));
                }
                Err(_) => prop_assert!(a > b || a >= len),
            }
        }
    }
}
