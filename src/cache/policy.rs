//! RFC 9111 for a shared cache: which responses may be stored (section 3), how long they stay
//! fresh (4.2.1, heuristics 4.2.2), their age (4.2.3), and whether a stored response may answer
//! a request as it is, stale (RFC 5861's `stale-while-revalidate` and `stale-if-error`), or only
//! once revalidated (4.2.4, 4.3).

use crate::cache::control::{Directives, Seconds};
use http::header::{HeaderMap, AUTHORIZATION, DATE, EXPIRES, LAST_MODIFIED, SET_COOKIE, VARY};
use http::{Method, StatusCode};
use porter_store::CacheSettings;
use std::time::{SystemTime, UNIX_EPOCH};

/// Statuses whose responses may be given a heuristic freshness (RFC 9110 section 15.1).
const HEURISTIC: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];
/// Statuses this cache understands, for `must-understand` (section 5.2.2.3).
const UNDERSTOOD: [u16; 16] = [
    200, 203, 204, 300, 301, 302, 303, 307, 308, 400, 403, 404, 405, 410, 414, 501,
];
/// Longest heuristic freshness (a week): 10 % of a file's age past this guesses too far.
const MAX_HEURISTIC: u64 = 7 * 24 * 3600;

/// Why a response is not stored (for `Cache-Status`'s detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotStored {
    Method,
    Status,
    NoStore,
    Private,
    Authorization,
    SetCookie,
    VaryStar,
    NotCacheable,
}

/// Whether the response to `method` with `req_headers` may be stored; if so, how long it stays
/// fresh, seconds.
pub(crate) fn storable(
    method: &Method,
    req_headers: &HeaderMap,
    status: StatusCode,
    headers: &HeaderMap,
    settings: &CacheSettings,
) -> Result<u64, NotStored> {
    if method != Method::GET {
        return Err(NotStored::Method);
    }
    let request = Directives::of_request(req_headers);
    let (response, targeted) = Directives::of_response(headers);
    let code = status.as_u16();
    // Partial content and 304s complete nothing stored here; 1xx are not final.
    if !(200..600).contains(&code) || code == 206 || code == 304 {
        return Err(NotStored::Status);
    }
    if response.must_understand {
        if !UNDERSTOOD.contains(&code) {
            return Err(NotStored::Status);
        }
    } else if response.no_store {
        return Err(NotStored::NoStore);
    }
    if request.no_store {
        return Err(NotStored::NoStore);
    }
    if response.private {
        return Err(NotStored::Private);
    }
    if req_headers.contains_key(AUTHORIZATION)
        && !(response.public || response.must_revalidate || response.s_maxage.value().is_some())
    {
        return Err(NotStored::Authorization);
    }
    // A session cookie kept for everyone is the worst thing a shared cache can do: responses
    // that set one are never stored, whatever they say.
    if headers.contains_key(SET_COOKIE) {
        return Err(NotStored::SetCookie);
    }
    if vary_names(headers).any(|name| name == "*") {
        return Err(NotStored::VaryStar);
    }
    let explicit = response.s_maxage.is_set()
        || response.max_age.is_set()
        || (!targeted && headers.contains_key(EXPIRES));
    let heuristic = HEURISTIC.contains(&code) || response.public;
    if !(explicit || heuristic || response.no_cache) {
        return Err(NotStored::NotCacheable);
    }
    Ok(lifetime(&response, targeted, headers, heuristic, settings))
}

impl Seconds {
    fn is_set(self) -> bool {
        self != Seconds::Absent
    }
}

/// The freshness lifetime of a response (section 4.2.1), seconds.
fn lifetime(
    response: &Directives,
    targeted: bool,
    headers: &HeaderMap,
    heuristic: bool,
    settings: &CacheSettings,
) -> u64 {
    for explicit in [response.s_maxage, response.max_age] {
        match explicit {
            Seconds::Value(v) => return v,
            Seconds::Invalid => return 0,
            Seconds::Absent => {}
        }
    }
    let date = http_date(headers, DATE);
    if !targeted {
        if let Some(expires) = headers.get(EXPIRES) {
            // An invalid date, "0" included, is in the past (section 5.3); so are two.
            if headers.get_all(EXPIRES).iter().nth(1).is_some() {
                return 0;
            }
            return match (parse_http_date(expires.as_bytes()), date) {
                (Some(expires), Some(date)) => secs_between(date, expires),
                (Some(expires), None) => secs_between(SystemTime::now(), expires),
                (None, _) => 0,
            };
        }
    }
    if !heuristic {
        return 0;
    }
    match (http_date(headers, LAST_MODIFIED), date) {
        (Some(modified), Some(date)) if modified < date => {
            (secs_between(modified, date) / 10).min(MAX_HEURISTIC)
        }
        _ => u64::from(settings.default_ttl),
    }
}

fn secs_between(from: SystemTime, to: SystemTime) -> u64 {
    to.duration_since(from).map_or(0, |d| d.as_secs())
}

/// The field `name` of `headers` as a date.
pub(crate) fn http_date(headers: &HeaderMap, name: http::header::HeaderName) -> Option<SystemTime> {
    headers
        .get(name)
        .and_then(|v| parse_http_date(v.as_bytes()))
}

/// An HTTP-date in any of its three forms (RFC 9110 section 5.6.7).
pub(crate) fn parse_http_date(value: &[u8]) -> Option<SystemTime> {
    crate::cache::dates::parse(value)
}

/// The times that make a stored response's age (section 4.2.3), Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Times {
    /// When the request that got it was sent.
    pub(crate) request_ms: u64,
    /// When it arrived.
    pub(crate) response_ms: u64,
    /// Its age when it arrived (corrected_initial_age), seconds.
    pub(crate) initial_age: u64,
    /// Its freshness lifetime, seconds.
    pub(crate) lifetime: u64,
}

impl Times {
    /// The times of a response with `headers` that took from `request_ms` to `response_ms`.
    pub(crate) fn of(
        headers: &HeaderMap,
        request_ms: u64,
        response_ms: u64,
        lifetime: u64,
    ) -> Times {
        let date_ms = http_date(headers, DATE).map(unix_ms);
        let apparent = date_ms.map_or(0, |date| response_ms.saturating_sub(date) / 1000);
        // The first value counts (of the first line, or of a list); one that is not a
        // number is ignored.
        let age_value = headers
            .get(http::header::AGE)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .and_then(|v| v.split([',', ';']).next())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let delay = response_ms.saturating_sub(request_ms) / 1000;
        Times {
            request_ms,
            response_ms,
            initial_age: apparent.max(age_value + delay),
            lifetime,
        }
    }

    /// Its current age at `now_ms`, seconds.
    pub(crate) fn age(&self, now_ms: u64) -> u64 {
        self.initial_age + now_ms.saturating_sub(self.response_ms) / 1000
    }
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What may be done with a stored response for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// Served as it is.
    Fresh,
    /// Served stale, by the request's leave (`max-stale`).
    StaleAllowed,
    /// Served stale while it is refreshed in the background.
    WhileRevalidating,
    /// Only once revalidated; served stale if the upstream fails within `stale-if-error`
    /// (`if_error`), or cannot be reached and nothing forbids a stale answer (`if_unreachable`:
    /// the cache is "disconnected", RFC 9111 section 4.2.4).
    Revalidate {
        if_error: bool,
        if_unreachable: bool,
    },
}

/// Whether a response stored with `times` and directives `response` may answer a request
/// with `req_headers` at `now_ms` (section 4.2.4; RFC 5861), and its current age.
pub(crate) fn reuse(
    req_headers: &HeaderMap,
    response: &Directives,
    times: &Times,
    settings: &CacheSettings,
    now_ms: u64,
) -> (Reuse, u64) {
    let request = Directives::of_request(req_headers);
    let age = times.age(now_ms);
    let staleness = age.saturating_sub(times.lifetime);
    let strict = response.must_revalidate
        || response.proxy_revalidate
        || response.s_maxage.value().is_some();
    let window = |own: Seconds, default: u32| own.value().unwrap_or(u64::from(default));
    // A window of 0 (none given, or `stale-if-error=0`) allows nothing.
    let error_window = window(response.stale_if_error, settings.stale_if_error)
        .max(request.stale_if_error.value().unwrap_or(0));
    let if_error =
        !strict && error_window > 0 && staleness <= error_window && age >= times.lifetime;
    let if_unreachable = !strict && !request.no_cache && !response.no_cache;
    let revalidate = Reuse::Revalidate {
        if_error,
        if_unreachable,
    };
    if request.no_cache || response.no_cache {
        return (revalidate, age);
    }
    if matches!(request.max_age, Seconds::Value(max) if age > max) {
        return (revalidate, age);
    }
    if let Seconds::Value(min) = request.min_fresh {
        if times.lifetime.saturating_sub(age) < min || age >= times.lifetime {
            return (revalidate, age);
        }
    }
    if age < times.lifetime {
        return (Reuse::Fresh, age);
    }
    if !strict {
        if let Some(limit) = request.max_stale {
            if limit.is_none_or(|limit| staleness <= limit) {
                return (Reuse::StaleAllowed, age);
            }
        }
        if staleness
            < window(
                response.stale_while_revalidate,
                settings.stale_while_revalidate,
            )
        {
            return (Reuse::WhileRevalidating, age);
        }
    }
    (revalidate, age)
}

/// Whether a request's `only-if-cached` asks for no upstream at all (section 5.2.1.7).
pub(crate) fn only_if_cached(req_headers: &HeaderMap) -> bool {
    Directives::of_request(req_headers).only_if_cached
}

/// The names in a response's `Vary`, lowercased.
pub(crate) fn vary_names(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers.get_all(VARY).iter().flat_map(|line| {
        String::from_utf8_lossy(line.as_bytes())
            .split(',')
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect::<Vec<_>>()
    })
}

/// A request field's value as `Vary` compares it (section 4.1): its lines joined, the spaces
/// around commas dropped; `None` when absent.
pub(crate) fn vary_value(req_headers: &HeaderMap, name: &str) -> Option<Vec<u8>> {
    let mut lines = req_headers.get_all(name).iter().peekable();
    lines.peek()?;
    let mut value = Vec::new();
    for line in lines {
        for part in line.as_bytes().split(|b| *b == b',') {
            if !value.is_empty() {
                value.push(b',');
            }
            value.extend_from_slice(part.trim_ascii());
        }
    }
    Some(value)
}

/// Whether the method may change what the target holds, so that stored responses for it (and
/// for its `Location` and `Content-Location`) are invalidated (section 4.4).
pub(crate) fn is_unsafe(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn stored(pairs: &[(&'static str, &str)]) -> Result<u64, NotStored> {
        storable(
            &Method::GET,
            &HeaderMap::new(),
            StatusCode::OK,
            &headers(pairs),
            &CacheSettings::default(),
        )
    }

    #[test]
    fn storability_and_lifetimes() {
        assert_eq!(stored(&[("cache-control", "max-age=60")]), Ok(60));
        assert_eq!(
            stored(&[("cache-control", "max-age=60, s-maxage=5")]),
            Ok(5)
        );
        assert_eq!(
            stored(&[("cache-control", "no-store")]),
            Err(NotStored::NoStore)
        );
        assert_eq!(
            stored(&[("cache-control", "private")]),
            Err(NotStored::Private)
        );
        assert_eq!(
            stored(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]),
            Err(NotStored::SetCookie)
        );
        assert_eq!(stored(&[("vary", "a, *")]), Err(NotStored::VaryStar));
        assert_eq!(stored(&[("expires", "0")]), Ok(0));
        let date = httpdate::fmt_http_date(SystemTime::now());
        let modified = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(1000));
        assert_eq!(
            stored(&[("date", &date), ("last-modified", &modified)]),
            Ok(100)
        );
    }

    #[test]
    fn reuse_follows_request_and_response_directives() {
        let settings = CacheSettings::default();
        let of = |h: &HeaderMap| Directives::of_response(h).0;
        let times = Times {
            request_ms: 0,
            response_ms: 0,
            initial_age: 0,
            lifetime: 100,
        };
        let fresh = headers(&[]);
        let at = |s: u64| s * 1000;
        assert_eq!(
            reuse(&fresh, &of(&fresh), &times, &settings, at(50)).0,
            Reuse::Fresh
        );
        let max_age = headers(&[("cache-control", "max-age=10")]);
        assert!(matches!(
            reuse(&max_age, &of(&fresh), &times, &settings, at(50)).0,
            Reuse::Revalidate { .. }
        ));
        let swr = headers(&[("cache-control", "max-age=100, stale-while-revalidate=30")]);
        assert_eq!(
            reuse(&fresh, &of(&swr), &times, &settings, at(120)).0,
            Reuse::WhileRevalidating
        );
        let sie = headers(&[("cache-control", "max-age=100, stale-if-error=30")]);
        assert_eq!(
            reuse(&fresh, &of(&sie), &times, &settings, at(120)).0,
            Reuse::Revalidate {
                if_error: true,
                if_unreachable: true
            }
        );
        let strict = headers(&[(
            "cache-control",
            "max-age=100, must-revalidate, stale-if-error=30",
        )]);
        let any_stale = headers(&[("cache-control", "max-stale")]);
        assert_eq!(
            reuse(&any_stale, &of(&strict), &times, &settings, at(120)).0,
            Reuse::Revalidate {
                if_error: false,
                if_unreachable: false
            }
        );
        assert_eq!(
            reuse(&any_stale, &of(&fresh), &times, &settings, at(120)).0,
            Reuse::StaleAllowed
        );
    }
}
