//! Responses made from what the cache keeps: the stored head with its current `Age`, no body
//! for `HEAD`, a `304` when the client's own validators match (RFC 9110 section 13), one range
//! of the whole body as a `206` (section 14), and `Cache-Status` (RFC 9211) on every response
//! of a cached site.

use crate::cache::entry::Entry;
use crate::cache::policy::parse_http_date;
use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT_RANGES, AGE, CONTENT_LENGTH, CONTENT_RANGE, ETAG,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, RANGE,
};
use http::{Method, Response, StatusCode};

/// RFC 9211's field.
pub(crate) static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// `Cache-Status` values (RFC 9211 section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Hit {
        ttl: i64,
    },
    /// Answered stale: while revalidating, or the upstream failed.
    Stale {
        ttl: i64,
        why: &'static str,
    },
    /// Went to the upstream; `stored` when the response was kept; `collapsed` when it waited
    /// on another request's fetch first.
    Forward {
        why: &'static str,
        stored: bool,
        collapsed: bool,
    },
    /// Revalidated: the upstream's status, and whether the stored response was kept.
    Revalidated {
        status: u16,
        stored: bool,
    },
}

impl Status {
    pub(crate) fn value(self) -> HeaderValue {
        let text = match self {
            Status::Hit { ttl } => format!("Porter; hit; ttl={ttl}"),
            Status::Stale { ttl, why } => format!("Porter; hit; ttl={ttl}; detail={why}"),
            Status::Forward {
                why,
                stored,
                collapsed,
            } => format!(
                "Porter; fwd={why}{}{}",
                if stored { "; stored" } else { "" },
                if collapsed { "; collapsed" } else { "" }
            ),
            Status::Revalidated { status, stored } => format!(
                "Porter; fwd=stale; fwd-status={status}{}",
                if stored { "; stored" } else { "" }
            ),
        };
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("Porter"))
    }

    /// Adds this to `headers`, after any `Cache-Status` of caches before this one.
    pub(crate) fn add_to(self, headers: &mut HeaderMap) {
        headers.append(&CACHE_STATUS, self.value());
    }
}

/// The response `entry` makes for a request of `method` with `req_headers`, `age` seconds old.
pub(crate) fn respond(
    entry: &Entry,
    method: &Method,
    req_headers: &HeaderMap,
    age: u64,
    status: Status,
) -> Response<Bytes> {
    let mut headers = entry.headers.clone();
    headers.insert(AGE, HeaderValue::from(age));
    status.add_to(&mut headers);
    let full = entry.status == StatusCode::OK;
    if full && not_modified(req_headers, &entry.headers) {
        headers.remove(CONTENT_LENGTH);
        return made(StatusCode::NOT_MODIFIED, headers, Bytes::new());
    }
    let (code, body) = match full.then(|| range_of(req_headers, entry)).flatten() {
        Some(Ok((start, end))) => {
            let len = entry.body.len();
            headers.insert(
                CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
                    .unwrap_or(HeaderValue::from_static("bytes */0")),
            );
            (StatusCode::PARTIAL_CONTENT, entry.body.slice(start..=end))
        }
        Some(Err(())) => {
            let unsatisfiable = format!("bytes */{}", entry.body.len());
            headers.insert(
                CONTENT_RANGE,
                HeaderValue::from_str(&unsatisfiable)
                    .unwrap_or(HeaderValue::from_static("bytes */0")),
            );
            (StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new())
        }
        None => (entry.status, entry.body.clone()),
    };
    if full {
        headers
            .entry(ACCEPT_RANGES)
            .or_insert(HeaderValue::from_static("bytes"));
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        body
    };
    made(code, headers, body)
}

fn made(status: StatusCode, headers: HeaderMap, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Whether the client's validators match the stored response (section 13.1.2, 13.1.3).
pub(crate) fn not_modified(req_headers: &HeaderMap, stored: &HeaderMap) -> bool {
    if let Some(inm) = req_headers.get(IF_NONE_MATCH) {
        let Some(etag) = stored.get(ETAG) else {
            return false;
        };
        let opaque = |tag: &[u8]| -> Vec<u8> {
            let tag = tag.trim_ascii();
            tag.strip_prefix(b"W/").unwrap_or(tag).to_vec()
        };
        let ours = opaque(etag.as_bytes());
        return inm.as_bytes() == b"*"
            || inm
                .as_bytes()
                .split(|b| *b == b',')
                .any(|tag| opaque(tag) == ours);
    }
    match (
        req_headers
            .get(IF_MODIFIED_SINCE)
            .and_then(|v| parse_http_date(v.as_bytes())),
        stored
            .get(LAST_MODIFIED)
            .and_then(|v| parse_http_date(v.as_bytes())),
    ) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// The one byte range a request asks of `entry` (inclusive), `Err` when unsatisfiable, `None`
/// when the whole body goes (no `Range`, several ranges, another unit, a stale `If-Range`).
fn range_of(req_headers: &HeaderMap, entry: &Entry) -> Option<Result<(usize, usize), ()>> {
    let spec = req_headers.get(RANGE)?.to_str().ok()?.trim();
    if let Some(if_range) = req_headers.get(IF_RANGE) {
        let strong_match = entry.headers.get(ETAG).is_some_and(|etag| {
            !etag.as_bytes().starts_with(b"W/") && etag.as_bytes() == if_range.as_bytes()
        });
        let date_match = entry.headers.get(LAST_MODIFIED) == Some(if_range);
        if !(strong_match || date_match) {
            return None;
        }
    }
    let ranges = spec.strip_prefix("bytes=")?;
    if ranges.contains(',') {
        return None;
    }
    let len = entry.body.len();
    let (first, last) = ranges.trim().split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        let suffix: usize = last.parse().ok()?;
        if suffix == 0 || len == 0 {
            return Some(Err(()));
        }
        (len.saturating_sub(suffix), len - 1)
    } else {
        let start: usize = first.parse().ok()?;
        let end = if last.is_empty() {
            len.saturating_sub(1)
        } else {
            let end: usize = last.parse().ok()?;
            if end < start {
                return None;
            }
            end.min(len.saturating_sub(1))
        };
        if start >= len {
            return Some(Err(()));
        }
        (start, end)
    };
    Some(Ok(range))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::policy::Times;

    fn entry() -> Entry {
        let mut headers = HeaderMap::new();
        headers.insert(ETAG, HeaderValue::from_static("\"abc\""));
        let times = Times {
            request_ms: 0,
            response_ms: 0,
            initial_age: 0,
            lifetime: 10,
        };
        Entry::new(
            (StatusCode::OK, headers),
            Bytes::from_static(b"0123456789"),
            times,
            Vec::new(),
            Vec::new(),
        )
    }

    fn get(pairs: &[(&'static str, &'static str)], method: Method) -> Response<Bytes> {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.insert(*k, HeaderValue::from_static(v));
        }
        respond(&entry(), &method, &headers, 3, Status::Hit { ttl: 7 })
    }

    #[test]
    fn ranges_validators_and_head() {
        let r = get(&[], Method::GET);
        assert_eq!(
            (r.status(), &r.body()[..]),
            (StatusCode::OK, &b"0123456789"[..])
        );
        assert_eq!(r.headers()[AGE], "3");
        assert_eq!(r.headers()[&CACHE_STATUS], "Porter; hit; ttl=7");
        let r = get(&[("range", "bytes=2-4")], Method::GET);
        assert_eq!(
            (r.status(), &r.body()[..]),
            (StatusCode::PARTIAL_CONTENT, &b"234"[..])
        );
        assert_eq!(r.headers()[CONTENT_RANGE], "bytes 2-4/10");
        let r = get(&[("range", "bytes=-3")], Method::GET);
        assert_eq!(&r.body()[..], b"789");
        let r = get(&[("range", "bytes=20-")], Method::GET);
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        let r = get(
            &[("range", "bytes=0-1"), ("if-range", "\"old\"")],
            Method::GET,
        );
        assert_eq!(r.status(), StatusCode::OK);
        let r = get(&[("if-none-match", "W/\"abc\"")], Method::GET);
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let r = get(&[], Method::HEAD);
        assert!(r.body().is_empty());
        assert_eq!(r.headers()[CONTENT_LENGTH], "10");
    }
}
