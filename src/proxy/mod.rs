//! The HTTP side of the edge: route each request by host to its site, then redirect it to
//! HTTPS, forward it, or tunnel it (WebSocket).

mod challenge;
mod connector;
mod forward;
mod headers;
mod held;
mod idle;
mod listener;
mod pool;
mod route;
mod threads;
mod upgrade;

pub(crate) use forward::Forwarder;
pub(crate) use listener::{drain, Limits};
pub(crate) use threads::{EdgeThreads, Shared as EdgeShared};

use crate::reload::LiveSites;
use arc_swap::ArcSwap;
use bytes::Bytes;
use forward::Forwarded;
use http::header::{CONTENT_TYPE, HOST, LOCATION, STRICT_TRANSPORT_SECURITY};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use porter_store::{unix_now, Target};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

/// The body of every response Porter sends.
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, idle::BoxError>;

/// What the connections of one edge thread share: the current snapshot (the same for all
/// threads) and the upstream connections (the thread's own).
pub(crate) struct Edge {
    /// The account daemons sites may point at.
    pub(crate) apps: Arc<crate::apps::Supervisor>,
    /// The ACME challenge answers; swapped by `challenges::run`.
    pub(crate) challenges: Arc<ArcSwap<crate::challenges::Answers>>,
    /// The sites being served.
    pub(crate) sites: Arc<LiveSites>,
    /// Pooled upstream connections.
    pub(crate) forwarder: Forwarder,
    /// The port HTTPS is served on, for redirects (omitted from the URL when 443).
    pub(crate) https_port: u16,
    /// The name used when a TLS client sends no SNI.
    pub(crate) default_sni: Option<String>,
}

/// What is known of the connection a request came on.
pub(crate) struct Conn {
    /// The client's address as `X-Forwarded-For` carries it, made once per connection.
    pub(crate) forwarded_for: HeaderValue,
    /// For HTTPS, the name the certificate was chosen for; `None` on plain HTTP.
    pub(crate) tls_name: Option<String>,
    /// The upstream connection its requests reuse.
    pub(crate) affinity: Arc<pool::Affinity>,
}

impl Conn {
    /// What is known of a new connection from `peer`.
    pub(crate) fn new(
        peer: SocketAddr,
        tls_name: Option<String>,
        affinity: Arc<pool::Affinity>,
    ) -> Self {
        Conn {
            forwarded_for: HeaderValue::from_str(&peer.ip().to_string())
                .expect("an IP address is a valid header value"),
            tls_name,
            affinity,
        }
    }
}

/// A short plain-text answer from Porter itself.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(full(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn full(text: String) -> Body {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed()
}

/// Answers one request.
pub(crate) async fn handle(
    edge: Arc<Edge>,
    conn: Arc<Conn>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let https = conn.tls_name.is_some();
    if !https {
        if let Some(answer) = challenge::http01(&edge.challenges.load(), &req) {
            return answer;
        }
    }
    let host = match route::request_host(&req) {
        Some(host) => host,
        // HTTP/1.0 has no Host: the connection's TLS name is the best statement of intent
        // (and becomes the request's Host below).
        None if https && req.version() == Version::HTTP_10 => {
            Cow::Borrowed(conn.tls_name.as_deref().unwrap_or_default())
        }
        None => return error_response(StatusCode::BAD_REQUEST, "the request names no host"),
    };
    let Ok(snapshot) = edge.sites.serving(&host).await else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "the sites are still loading; try again shortly",
        );
    };
    let Some(site) = snapshot.site(&host) else {
        return if https {
            error_response(
                StatusCode::MISDIRECTED_REQUEST,
                "no site is served under this name",
            )
        } else {
            error_response(StatusCode::NOT_FOUND, "no site is served under this name")
        };
    };
    if let Some(tls_name) = &conn.tls_name {
        // A connection authenticated for one name serves only the names its certificate is
        // served for; anything else is another site's business (RFC 9110 section 15.5.20).
        let same_cert = *tls_name == *host
            || match (snapshot.cert(&host), snapshot.cert(tls_name)) {
                (Some(a), Some(b)) => std::ptr::eq(a, b),
                _ => false,
            };
        if !same_cert {
            return error_response(
                StatusCode::MISDIRECTED_REQUEST,
                "this connection does not serve that name",
            );
        }
    } else if site.has_valid_cert(unix_now()) {
        return redirect_to_https(&req, &host, edge.https_port);
    }
    let site = Arc::clone(site);
    drop(snapshot);
    if let (None, Some(tls_name)) = (req.headers().get(HOST), &conn.tls_name) {
        // The upstream is spoken to in HTTP/1.1, which requires a Host.
        if req.uri().authority().is_none() {
            if let Ok(value) = HeaderValue::from_str(tls_name) {
                req.headers_mut().insert(HOST, value);
            }
        }
    }
    let mut lease = match &site.target {
        Target::Upstream(_) => None,
        Target::App(id) => match edge.apps.acquire(id).await {
            Ok(lease) => Some(lease),
            Err(why) => return unavailable(&why),
        },
    };
    let upstream = match (&site.target, &lease) {
        (_, Some(lease)) => &lease.upstream,
        (Target::Upstream(upstream), None) => upstream,
        (Target::App(_), None) => unreachable!("an app site always has a lease here"),
    };

    let forwarded = Forwarded {
        client: &conn.forwarded_for,
        proto: if https { "https" } else { "http" },
    };
    // HTTP/1 clients send one request at a time: their connection keeps its upstream one.
    let keep = req.version() != Version::HTTP_2;
    if upgrade::is_h2_websocket(&req) {
        let client_upgrade = hyper::upgrade::on(&mut req);
        let upstream_req = upgrade::h1_request_for_h2_websocket(req);
        // Boxed, being rare: the request future is moved and copied whole (and
        // for HTTP/2 allocated per stream), so its size is paid on every request.
        let sent = Box::pin(edge.forwarder.send(
            upstream_req,
            upstream,
            &forwarded,
            true,
            &conn.affinity,
            keep,
        ))
        .await;
        return match sent {
            // The upstream connection becomes the tunnel: its loan ends here, unreturned.
            Ok((mut response, _)) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                let answer = upgrade::h2_response_for_switch(&response);
                upgrade::tunnel(client_upgrade, hyper::upgrade::on(&mut response), lease);
                answer.map(|()| full(String::new()))
            }
            Ok((response, loan)) => edge.forwarder.stream_back(response, lease, Some(loan)),
            Err(error) => error,
        };
    }
    if req.method() == http::Method::CONNECT {
        return error_response(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not proxied");
    }
    let upgrade = req.version() == Version::HTTP_11 && headers::wants_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let req = req.map(|body| edge.forwarder.client_body(body));
    let sent = edge
        .forwarder
        .send(req, upstream, &forwarded, upgrade, &conn.affinity, keep)
        .await;
    match sent {
        Ok((mut response, loan)) => {
            let mut loan = Some(loan);
            if let (Some(client), StatusCode::SWITCHING_PROTOCOLS) =
                (client_upgrade, response.status())
            {
                upgrade::tunnel(client, hyper::upgrade::on(&mut response), lease.take());
                // The upstream connection is the tunnel now, never to be reused.
                loan = None;
            }
            if let (true, Some(hsts)) = (https, &site.hsts) {
                // Only once the certificate is valid, and never over the upstream's own choice.
                if site.has_valid_cert(unix_now())
                    && !response.headers().contains_key(STRICT_TRANSPORT_SECURITY)
                {
                    response
                        .headers_mut()
                        .insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
                }
            }
            edge.forwarder.stream_back(response, lease, loan)
        }
        Err(error) => error,
    }
}

/// `503` with `Retry-After` for an app that cannot serve now.
fn unavailable(why: &crate::apps::Unavailable) -> Response<Body> {
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, &why.to_string());
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// `308 Permanent Redirect` to the same URL over HTTPS.
fn redirect_to_https<B>(req: &Request<B>, host: &str, https_port: u16) -> Response<Body> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let mut response = error_response(
        StatusCode::PERMANENT_REDIRECT,
        "this site is served over HTTPS",
    );
    match HeaderValue::from_str(&format!("https://{host}{port}{path}")) {
        Ok(location) => {
            response.headers_mut().insert(LOCATION, location);
            response
        }
        Err(_) => error_response(StatusCode::BAD_REQUEST, "bad request target"),
    }
}
