//! Forwarding one request to its upstream over pooled connections, with streaming bodies, and
//! mapping failures to the status that says whose fault they are (502 refused, 504 timed out).

use super::connector::{self, UpstreamConnector};
use super::headers;
use super::held::Held;
use super::idle::IdleTimeout;
use super::{error_response, Body};
use crate::apps::Lease;
use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use porter_store::Upstream;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

/// What a request to an upstream carries: the client's streamed body, or nothing (a WebSocket
/// handshake translated from HTTP/2).
pub(crate) type UpstreamBody = Either<IdleTimeout<Incoming>, Empty<Bytes>>;

/// The pooled upstream client and its deadlines.
pub(crate) struct Forwarder {
    client: Client<UpstreamConnector, UpstreamBody>,
    /// Each upstream's URI authority, made once (a request then only clones it).
    authorities: RwLock<HashMap<Upstream, Authority>>,
    /// For the upstream's response headers, and for body data in either direction.
    timeout: Duration,
}

/// Who is asking, as far as the upstream needs to know.
pub(crate) struct Origin<'a> {
    /// The client's address as `X-Forwarded-For` carries it.
    pub(crate) client: &'a HeaderValue,
    /// `https` or `http`, for `X-Forwarded-Proto`.
    pub(crate) proto: &'static str,
}

impl Forwarder {
    /// A client that gives up connecting after `connect_timeout`, and waiting for response
    /// headers or for body data after `timeout`.
    pub(crate) fn new(connect_timeout: Duration, timeout: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .set_host(false)
            .build(UpstreamConnector {
                timeout: connect_timeout,
            });
        Forwarder {
            client,
            authorities: RwLock::new(HashMap::new()),
            timeout,
        }
    }

    /// The client's request body, bounded by the idle deadline (nothing to bound when empty).
    pub(crate) fn client_body(&self, body: Incoming) -> UpstreamBody {
        use hyper::body::Body as _;
        if body.is_end_stream() {
            Either::Right(Empty::new())
        } else {
            Either::Left(IdleTimeout::new(body, self.timeout))
        }
    }

    /// A streamed upstream response as the body type Porter answers with, bounded by the idle
    /// deadline.
    /// The lease of an app, if the site has one, is held until the body is done.
    pub(crate) fn stream_back(
        &self,
        response: Response<Incoming>,
        lease: Option<Lease>,
    ) -> Response<Body> {
        response.map(|body| Held::new(IdleTimeout::new(body, self.timeout), lease).boxed())
    }

    /// Rewrites `req` for `upstream` (absolute URI, HTTP/1.1, hop-by-hop headers out,
    /// `Host` kept, `X-Forwarded-*` set) and sends it.
    pub(crate) async fn send(
        &self,
        req: Request<UpstreamBody>,
        upstream: &Upstream,
        origin: &Origin<'_>,
        upgrade: bool,
    ) -> Result<Response<Incoming>, Response<Body>> {
        let (mut parts, body) = req.into_parts();
        let host = parts.headers.get(HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        headers::strip_hop_by_hop(&mut parts.headers, upgrade);
        headers::set_forwarded(
            &mut parts.headers,
            origin.client,
            origin.proto,
            host.as_ref(),
        );
        if let Some(host) = host {
            parts.headers.insert(HOST, host);
        }
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(self.authority(upstream).ok_or_else(|| {
            error_response(
                StatusCode::BAD_GATEWAY,
                "the upstream address is not usable",
            )
        })?);
        uri.path_and_query = Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        parts.uri = Uri::from_parts(uri)
            .map_err(|_| error_response(StatusCode::BAD_REQUEST, "bad request target"))?;
        parts.version = Version::HTTP_11;
        let request = Request::from_parts(parts, body);
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => Err(error_response(
                StatusCode::GATEWAY_TIMEOUT,
                "the upstream did not answer in time",
            )),
            Ok(Ok(mut response)) => {
                let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
                headers::strip_hop_by_hop(response.headers_mut(), switching);
                Ok(response)
            }
            Ok(Err(e)) => Err(upstream_error(e, upstream)),
        }
    }
}

impl Forwarder {
    fn authority(&self, upstream: &Upstream) -> Option<Authority> {
        if let Some(authority) = self
            .authorities
            .read()
            .expect("authorities lock")
            .get(upstream)
        {
            return Some(authority.clone());
        }
        let authority = Authority::try_from(connector::authority(upstream)).ok()?;
        let mut cache = self.authorities.write().expect("authorities lock");
        if cache.len() >= AUTHORITY_CACHE {
            // Bounded: a store of many upstreams only costs a re-parse now and then.
            cache.clear();
        }
        cache.insert(upstream.clone(), authority.clone());
        Some(authority)
    }
}

/// Most upstream authorities kept.
const AUTHORITY_CACHE: usize = 65_536;

/// 504 when the upstream timed out, 502 for everything else that went wrong on its side.
fn upstream_error(e: hyper_util::client::legacy::Error, upstream: &Upstream) -> Response<Body> {
    let timed_out =
        std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source()).any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        });
    let what = if e.is_connect() {
        "cannot connect to"
    } else {
        "failed talking to"
    };
    tracing::warn!(%upstream, error = ?e, "{what} upstream");
    if timed_out {
        error_response(
            StatusCode::GATEWAY_TIMEOUT,
            "the upstream did not answer in time",
        )
    } else {
        error_response(StatusCode::BAD_GATEWAY, "the upstream is unreachable")
    }
}
