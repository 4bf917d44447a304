//! The request path of a site whose cache is on (the cache's slot in `request`): a stored
//! response answers when RFC 9111 lets it; otherwise the request goes upstream (one fetch per
//! URL at a time, the others waiting on it), revalidating what is stored when it can, and the
//! response is kept as it streams back. Stale responses answer while they are refreshed in the
//! background (`stale-while-revalidate`) or when the upstream fails (`stale-if-error`). Unsafe
//! methods invalidate what they may have changed.

use crate::cache::answer::{self, Status};
use crate::cache::entry::{Entry, Key};
use crate::cache::fill::{Fill, Filling, Head};
use crate::cache::policy::{self, Reuse, Times};
use crate::cache::stats::{self, SiteStats};
use crate::cache::{Cache, Flight, FlightGuard, COALESCE_WAIT};
use crate::proxy::phases::answer::Own;
use crate::proxy::upstream::body::{full, Body, UpstreamBody};
use crate::proxy::{Conn, Edge};
use crate::served::snapshot::SiteEntry;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_LOCATION, COOKIE, ETAG,
    IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED,
    LOCATION, RANGE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Either, Empty};
use porter_store::{unix_now_ms, CacheSettings};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The response from the upstream, streamed back holding what the request holds, and how long
/// the upstream took to answer with its head.
pub(crate) type Forwarded = Result<(Response<Body>, Option<Duration>), Own>;
/// Sends a request upstream (`request::forward`), boxed for a background refresh.
pub(crate) type Forward = fn(
    Arc<Edge>,
    Arc<Conn>,
    Arc<SiteEntry>,
    Request<UpstreamBody>,
) -> Pin<Box<dyn Future<Output = Forwarded> + Send>>;

/// Fields that belong to one connection, never kept (RFC 9111 section 3.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "trailer",
    "proxy-authenticate",
];
/// Fields a `304` does not change in what is stored (RFC 9111 section 3.2).
const KEPT_ON_304: [HeaderName; 2] = [CONTENT_LENGTH, http::header::CONTENT_ENCODING];
/// Request fields that frameworks let change what a response says (its URL, method or host)
/// while the cache key cannot see them: a request with one goes around the cache, so that it
/// can never change what is stored for everyone (cache poisoning). `X-Forwarded-Host` is not
/// here: Porter sets it itself.
const UNKEYED: [&str; 11] = [
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-host",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "forwarded",
];
/// A client's conditions: answered by the cache from the whole response, never sent upstream
/// with a request whose response is to be kept.
const CONDITIONS: [HeaderName; 5] = [
    IF_NONE_MATCH,
    IF_MODIFIED_SINCE,
    IF_MATCH,
    IF_UNMODIFIED_SINCE,
    IF_RANGE,
];
static SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
static CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// One request of a cached site.
pub(crate) struct Cached {
    pub(crate) cache: Arc<Cache>,
    pub(crate) edge: Arc<Edge>,
    pub(crate) conn: Arc<Conn>,
    pub(crate) site: Arc<SiteEntry>,
    pub(crate) forward: Forward,
}

impl Cached {
    fn settings(&self) -> &CacheSettings {
        static OFF: CacheSettings = CacheSettings {
            default_ttl: 0,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            bypass_paths: Vec::new(),
            bypass_cookies: Vec::new(),
            max_object: None,
            max_share: None,
        };
        self.site
            .features
            .as_ref()
            .and_then(|f| f.cache.as_ref())
            .unwrap_or(&OFF)
    }

    fn forward(
        &self,
        req: Request<UpstreamBody>,
    ) -> Pin<Box<dyn Future<Output = Forwarded> + Send>> {
        (self.forward)(
            Arc::clone(&self.edge),
            Arc::clone(&self.conn),
            Arc::clone(&self.site),
            req,
        )
    }

    fn key(&self, req: &Request<UpstreamBody>) -> Key {
        Key {
            site: Arc::clone(&self.site.domain),
            https: self.conn.tls_name.is_some(),
            target: req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .into(),
        }
    }

    /// The response for `req`.
    pub(crate) async fn fetch(self, req: Request<UpstreamBody>) -> Forwarded {
        let stats = self.cache.site_stats(&self.site.domain);
        if policy::is_unsafe(req.method()) {
            return self.unsafe_method(req, &stats).await;
        }
        if let Some(why) = self.around(&req) {
            stats.count(stats::BYPASS);
            return tagged(self.forward(req).await, forward_status(why));
        }
        let key = self.key(&req);
        let Some((entry, reuse, age)) = self.lookup(&key, &req).await else {
            if policy::only_if_cached(req.headers()) {
                return Err(Own::TimedOut);
            }
            return self.miss(req, key, &stats).await;
        };
        let ttl = entry.times.lifetime as i64 - age as i64;
        match reuse {
            Reuse::Fresh | Reuse::StaleAllowed => {
                stats.count(stats::HITS);
                Ok((serve(&entry, &req, age, Status::Hit { ttl }, &stats), None))
            }
            Reuse::WhileRevalidating => {
                stats.count(stats::STALE);
                let why = "stale-while-revalidate";
                let answer = serve(&entry, &req, age, Status::Stale { ttl, why }, &stats);
                if let Flight::Lead(guard) = self.cache.flight(&key) {
                    self.refresh_later(&req, key, entry, guard);
                }
                Ok((answer, None))
            }
            Reuse::Revalidate {
                if_error,
                if_unreachable,
            } => {
                if policy::only_if_cached(req.headers()) {
                    return Err(Own::TimedOut);
                }
                let stale = (if_error, if_unreachable);
                self.revalidate(req, key, entry, stale, &stats).await
            }
        }
    }

    /// The variant of `key` stored for `req`, what may be done with it now, and its age.
    async fn lookup(
        &self,
        key: &Key,
        req: &Request<UpstreamBody>,
    ) -> Option<(Arc<Entry>, Reuse, u64)> {
        let entry = self
            .cache
            .variants(key)
            .await?
            .select(req.headers())
            .cloned()?;
        let (reuse, age) = policy::reuse(
            req.headers(),
            &entry.directives,
            &entry.times,
            self.settings(),
            unix_now_ms(),
        );
        Some((entry, reuse, age))
    }

    /// Why `req` goes around the cache, if it does: a method the cache does not answer, an
    /// upgrade, a field the key cannot see or a body, or the site's bypass rules.
    fn around(&self, req: &Request<UpstreamBody>) -> Option<&'static str> {
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return Some("method");
        }
        let cookies = req
            .headers()
            .get_all(COOKIE)
            .iter()
            .map(HeaderValue::as_bytes);
        let around = crate::proxy::phases::headers::wants_upgrade(req.headers())
            || unkeyed(req.headers())
            || self.settings().bypasses(req.uri().path(), cookies);
        around.then_some("bypass")
    }

    /// An unsafe method goes upstream; when it succeeds, what it may have changed is
    /// invalidated: its URL, and its `Location` and `Content-Location` on the same site.
    async fn unsafe_method(&self, req: Request<UpstreamBody>, stats: &SiteStats) -> Forwarded {
        stats.count(stats::BYPASS);
        let key = self.key(&req);
        let (mut response, took) = self.forward(req).await?;
        let status = response.status();
        if status.is_success() || status.is_redirection() {
            self.cache.invalidate(&key);
            for field in [LOCATION, CONTENT_LOCATION] {
                if let Some(target) = response
                    .headers()
                    .get(field)
                    .and_then(|v| same_site_target(v.as_bytes(), &self.site.domain))
                {
                    for https in [false, true] {
                        self.cache.invalidate(&Key {
                            site: Arc::clone(&self.site.domain),
                            https,
                            target: target.as_str().into(),
                        });
                    }
                }
            }
        }
        forward_status("method").add_to(response.headers_mut());
        Ok((response, took))
    }

    /// Nothing stored answers: one request fetches, those that come meanwhile wait on it
    /// (up to [`COALESCE_WAIT`]), then look again.
    async fn miss(&self, req: Request<UpstreamBody>, key: Key, stats: &SiteStats) -> Forwarded {
        if req.method() == Method::HEAD {
            stats.count(stats::MISSES);
            return tagged(self.forward(req).await, forward_status("miss"));
        }
        match self.cache.flight(&key) {
            Flight::Lead(guard) => {
                stats.count(stats::MISSES);
                self.fill(req, key, Some(guard), false).await
            }
            Flight::Wait(mut done) => {
                stats.count(stats::COALESCED);
                let _ = tokio::time::timeout(COALESCE_WAIT, done.wait_for(|done| *done)).await;
                if let Some((entry, Reuse::Fresh, age)) = self.lookup(&key, &req).await {
                    stats.count(stats::HITS);
                    let ttl = entry.times.lifetime as i64 - age as i64;
                    return Ok((serve(&entry, &req, age, Status::Hit { ttl }, stats), None));
                }
                stats.count(stats::MISSES);
                self.fill(req, key, None, true).await
            }
        }
    }

    /// Fetches the whole response (the client's own conditions and range are answered here
    /// from it), keeping it as it streams when it may be stored.
    async fn fill(
        &self,
        req: Request<UpstreamBody>,
        key: Key,
        guard: Option<FlightGuard>,
        collapsed: bool,
    ) -> Forwarded {
        let client = req.headers().clone();
        let (mut parts, body) = req.into_parts();
        for field in CONDITIONS {
            parts.headers.remove(field);
        }
        let ranged = parts.headers.contains_key(RANGE);
        let req = Request::from_parts(parts, body);
        let sent_ms = unix_now_ms();
        let (response, took) = self.forward(req).await?;
        let (response, stored) = self.keep(&client, &key, response, sent_ms, guard, ranged);
        let mut response = if stored && answer::not_modified(&client, response.headers()) {
            // The client has it: a 304, while the fill goes on without it.
            let (mut parts, _) = response.into_parts();
            parts.status = StatusCode::NOT_MODIFIED;
            parts.headers.remove(CONTENT_LENGTH);
            Response::from_parts(parts, full(""))
        } else {
            response
        };
        let status = Status::Forward {
            why: "uri-miss",
            stored,
            collapsed,
        };
        status.add_to(response.headers_mut());
        Ok((response, took))
    }

    /// Wraps `response`'s body to be kept, when it may be: the response and whether it is.
    fn keep(
        &self,
        client: &HeaderMap,
        key: &Key,
        response: Response<Body>,
        sent_ms: u64,
        guard: Option<FlightGuard>,
        ranged: bool,
    ) -> (Response<Body>, bool) {
        let settings = self.settings();
        let limit = self.cache.fill_limit(settings.max_object());
        let lifetime = policy::storable(
            &Method::GET,
            client,
            response.status(),
            response.headers(),
            settings,
        );
        let too_big = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|len| len > limit);
        let Ok(lifetime) = lifetime else {
            return (response, false);
        };
        if too_big || (ranged && response.status() == StatusCode::PARTIAL_CONTENT) {
            return (response, false);
        }
        let head = Head {
            status: response.status(),
            headers: stored_headers(response.headers()),
            times: Times::of(response.headers(), sent_ms, unix_now_ms(), lifetime),
            vary: vary_of(client, response.headers()),
            tags: tags_of(response.headers()),
        };
        let fill = Fill {
            cache: Arc::clone(&self.cache),
            key: key.clone(),
            head,
            limit,
            share: settings.max_share,
            guard,
        };
        let response = response.map(|body| Filling::new(body, fill).boxed());
        (response, true)
    }

    /// Asks the upstream whether `entry` is still good (with its validators): a `304` keeps
    /// it (its fields updated), another response replaces it; a failure answers with it stale
    /// when `stale` allows: (within `stale-if-error`, the upstream unreachable and nothing
    /// forbids it).
    async fn revalidate(
        &self,
        req: Request<UpstreamBody>,
        key: Key,
        entry: Arc<Entry>,
        (if_error, if_unreachable): (bool, bool),
        stats: &SiteStats,
    ) -> Forwarded {
        let client = req.headers().clone();
        let method = req.method().clone();
        let guard = match self.cache.flight(&key) {
            Flight::Lead(guard) => Some(guard),
            Flight::Wait(_) => None,
        };
        let sent_ms = unix_now_ms();
        let (parts, body) = req.into_parts();
        let upstream = Request::from_parts(conditional(parts, &entry), body);
        let fetched = self.forward(upstream).await;
        let unreachable = matches!(
            &fetched,
            Err(Own::Unreachable | Own::TimedOut | Own::App(_) | Own::Busy)
        );
        let failed = unreachable
            || matches!(&fetched, Ok((response, _)) if response.status().is_server_error());
        if (failed && if_error) || (unreachable && if_unreachable) {
            stats.count(stats::STALE);
            let why = if if_error {
                "stale-if-error"
            } else {
                "upstream-unreachable"
            };
            return Ok((stale(&entry, (&method, &client), why, stats), None));
        }
        let (response, took) = fetched?;
        if response.status() == StatusCode::NOT_MODIFIED {
            stats.count(stats::REVALIDATED);
            let fresh = self.freshened(&client, &entry, response.headers(), sent_ms);
            let age = fresh.times.age(unix_now_ms());
            let status = Status::Revalidated {
                status: 304,
                stored: true,
            };
            let answer = answered(&fresh, (&method, &client), age, status, stats);
            self.cache.store(&key, fresh, self.settings().max_share);
            drop(guard);
            return Ok((answer, took));
        }
        stats.count(stats::MISSES);
        let (mut response, stored) = self.keep(&client, &key, response, sent_ms, guard, false);
        let status = Status::Revalidated {
            status: response.status().as_u16(),
            stored,
        };
        status.add_to(response.headers_mut());
        Ok((response, took))
    }

    /// `entry` with the fields of a `304` (section 4.3.4) and its new times.
    fn freshened(
        &self,
        client: &HeaderMap,
        entry: &Entry,
        update: &HeaderMap,
        sent_ms: u64,
    ) -> Entry {
        let mut headers = entry.headers.clone();
        let fields: Vec<&HeaderName> = update
            .keys()
            .filter(|name| !KEPT_ON_304.contains(name) && !HOP_BY_HOP.contains(&name.as_str()))
            .collect();
        for name in fields {
            headers.remove(name);
            for value in update.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let lifetime = policy::storable(
            &Method::GET,
            client,
            entry.status,
            &headers,
            self.settings(),
        )
        .unwrap_or(0);
        let times = Times::of(&headers, sent_ms, unix_now_ms(), lifetime);
        let tags = tags_of(&headers);
        Entry::new(
            (entry.status, headers),
            entry.body.clone(),
            times,
            entry.vary.clone(),
            tags,
        )
    }

    /// Revalidates `entry` in the background (once: `guard` leads the key's fetch), the
    /// client having been answered with it stale.
    fn refresh_later(
        &self,
        req: &Request<UpstreamBody>,
        key: Key,
        entry: Arc<Entry>,
        guard: FlightGuard,
    ) {
        let mut upstream = Request::new(Either::Right(Empty::new()));
        *upstream.method_mut() = Method::GET;
        *upstream.uri_mut() = req.uri().clone();
        *upstream.version_mut() = req.version();
        *upstream.headers_mut() = req.headers().clone();
        let (parts, body) = upstream.into_parts();
        let upstream = Request::from_parts(conditional(parts, &entry), body);
        let client = req.headers().clone();
        let this = Cached {
            cache: Arc::clone(&self.cache),
            edge: Arc::clone(&self.edge),
            conn: Arc::clone(&self.conn),
            site: Arc::clone(&self.site),
            forward: self.forward,
        };
        tokio::spawn(async move {
            let sent_ms = unix_now_ms();
            let Ok((response, _)) = this.forward(upstream).await else {
                return;
            };
            if response.status() == StatusCode::NOT_MODIFIED {
                let fresh = this.freshened(&client, &entry, response.headers(), sent_ms);
                this.cache.store(&key, fresh, this.settings().max_share);
                return;
            }
            // Dropped unread: a fill goes on reading it in the background.
            let _ = this.keep(&client, &key, response, sent_ms, Some(guard), false);
        });
    }
}

/// The request with the stored response's validators in place of the client's conditions.
fn conditional(mut parts: http::request::Parts, entry: &Entry) -> http::request::Parts {
    for field in CONDITIONS {
        parts.headers.remove(field);
    }
    parts.headers.remove(RANGE);
    if let Some(etag) = entry.headers.get(ETAG) {
        parts.headers.insert(IF_NONE_MATCH, etag.clone());
    }
    if let Some(modified) = entry.headers.get(LAST_MODIFIED) {
        parts.headers.insert(IF_MODIFIED_SINCE, modified.clone());
    }
    parts
}

/// `entry` answering stale for a request of `method` with `client`'s fields, because of `why`.
fn stale(
    entry: &Entry,
    request: (&Method, &HeaderMap),
    why: &'static str,
    stats: &SiteStats,
) -> Response<Body> {
    let age = entry.times.age(unix_now_ms());
    let ttl = entry.times.lifetime as i64 - age as i64;
    answered(entry, request, age, Status::Stale { ttl, why }, stats)
}

/// The answer `entry` makes for `req`, counted.
fn serve(
    entry: &Entry,
    req: &Request<UpstreamBody>,
    age: u64,
    status: Status,
    stats: &SiteStats,
) -> Response<Body> {
    answered(entry, (req.method(), req.headers()), age, status, stats)
}

/// The answer `entry` makes for a request of `method` with `client`'s fields, its body bytes
/// counted.
fn answered(
    entry: &Entry,
    (method, client): (&Method, &HeaderMap),
    age: u64,
    status: Status,
    stats: &SiteStats,
) -> Response<Body> {
    let answer = answer::respond(entry, method, client, age, status);
    stats.add(stats::BYTES_SERVED, answer.body().len() as u64);
    answer.map(full)
}

/// The `Cache-Status` of an answer of Porter's own on a cached site: the upstream failed, or
/// the request was refused before the cache was looked at.
pub(crate) fn own_status(own: &Own) -> Status {
    let why = match own {
        Own::Unreachable | Own::TimedOut | Own::App(_) | Own::Busy => "uri-miss",
        _ => "bypass",
    };
    forward_status(why)
}

fn forward_status(why: &'static str) -> Status {
    Status::Forward {
        why,
        stored: false,
        collapsed: false,
    }
}

/// `forwarded` with `status` added to its `Cache-Status`.
fn tagged(forwarded: Forwarded, status: Status) -> Forwarded {
    forwarded.map(|(mut response, took)| {
        status.add_to(response.headers_mut());
        (response, took)
    })
}

/// Whether a request carries a field the key cannot see that may change the response, or a
/// body (a "fat GET": what it says is not part of the key either).
fn unkeyed(headers: &HeaderMap) -> bool {
    UNKEYED.iter().any(|name| headers.contains_key(*name))
        || headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .is_some_and(|len| len.as_bytes() != b"0")
}

/// What is kept of a response's fields: all but those of its connection.
fn stored_headers(headers: &HeaderMap) -> HeaderMap {
    let mut kept = headers.clone();
    for name in HOP_BY_HOP {
        kept.remove(name);
    }
    for listed in headers.get_all(CONNECTION) {
        for name in String::from_utf8_lossy(listed.as_bytes()).split(',') {
            kept.remove(name.trim());
        }
    }
    kept
}

/// The request's values of the fields the response's `Vary` names.
fn vary_of(client: &HeaderMap, response: &HeaderMap) -> Vec<(String, Option<Vec<u8>>)> {
    policy::vary_names(response)
        .map(|name| {
            let value = policy::vary_value(client, &name);
            (name, value)
        })
        .collect()
}

/// A response's purge tags: `Surrogate-Key` (space-separated) and `Cache-Tag` (commas).
fn tags_of(headers: &HeaderMap) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for (field, separator) in [(&SURROGATE_KEY, ' '), (&CACHE_TAG, ',')] {
        for line in headers.get_all(field) {
            let line = String::from_utf8_lossy(line.as_bytes());
            tags.extend(
                line.split(separator)
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    tags.truncate(64);
    tags
}

/// The path and query of `location` when it is on `site` (a path, or an absolute URL of it).
fn same_site_target(location: &[u8], site: &str) -> Option<String> {
    let location = std::str::from_utf8(location).ok()?.trim();
    if location.starts_with('/') && !location.starts_with("//") {
        return Some(location.to_owned());
    }
    let uri: http::Uri = location.parse().ok()?;
    let host = uri.host()?;
    host.eq_ignore_ascii_case(site)
        .then(|| uri.path_and_query().map_or("/", |p| p.as_str()).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_on_the_same_site_only() {
        assert_eq!(same_site_target(b"/a?b", "x.test").as_deref(), Some("/a?b"));
        assert_eq!(
            same_site_target(b"https://X.test/c", "x.test").as_deref(),
            Some("/c")
        );
        assert_eq!(same_site_target(b"https://y.test/c", "x.test"), None);
        assert_eq!(same_site_target(b"//y.test/c", "x.test"), None);
    }

    #[test]
    fn tags_from_both_fields() {
        let mut headers = HeaderMap::new();
        headers.insert(&SURROGATE_KEY, HeaderValue::from_static("a  b"));
        headers.insert(&CACHE_TAG, HeaderValue::from_static("c, d"));
        assert_eq!(tags_of(&headers), ["a", "b", "c", "d"]);
    }
}
