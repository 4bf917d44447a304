//! One request's path through the edge, as a pipeline of named phases, each with one concern:
//! 0. [`well_formed`]: what no intermediary may pass on is refused (duplicate `Host`,
//!    transfer codings other than one `chunked`); the Host is read here, once ([`handle`]);
//! 1. [`route`]: the site the request is for, or an answer of Porter's own (an ACME challenge,
//!    a redirect to HTTPS, an unknown name, a connection whose certificate is another site's);
//! 2. [`gate`]: what the site's features say first (allow/deny lists, redirects, basic auth,
//!    the WordPress login limit), then the WAF (`crate::proxy::phases::waf`);
//! 3. [`admit`]: whether it may go on now (no plain CONNECT; the client's rate); a request
//!    that goes upstream then takes a slot of the site and of its upstream (see
//!    [`Admission`](crate::proxy::Admission));
//! 4. [`fetch`]: the response. For a site with the cache on, first **the cache**
//!    (`crate::proxy::cached`): a stored response answers when RFC 9111 allows, else the
//!    request goes on to the upstream there and its response is kept as it streams back.
//!    Upstream ([`forward`]): where the request goes ([`upstream_peer`]: the site's upstream,
//!    or its app, started on demand; a cached answer never wakes an app), what the upstream must
//!    get that the client left out ([`upstream_request`]), then the exchange
//!    ([`Forwarder::send`](crate::proxy::Forwarder)), WebSocket tunnels included;
//! 5. [`outgoing`]: the response on its way back to the client, before it streams (HSTS,
//!    HTTP version, compression), whether it came from the cache or the upstream.
//!
//! A site with features gets its own pages for Porter's answers (`into_page`).

use crate::apps::Lease;
use crate::balance::{Balancer, To};
use crate::proxy::logged::{Finishing, Started};
use crate::proxy::phases::answer::Own;
use crate::proxy::upstream::body::{full, Body, ClientBody, Unread, UpstreamBody};
use crate::proxy::upstream::forward::Forwarded;
use crate::proxy::upstream::held::Holding;
use crate::proxy::upstream::pool::Loan;
use crate::proxy::{
    phases::access, phases::basic_auth, phases::headers, phases::redirect, phases::route,
    upstream::compress, upstream::upgrade, Conn, Edge,
};
use crate::served::snapshot::SiteEntry;
use futures_util::FutureExt as _;
use http::header::{HOST, STRICT_TRANSPORT_SECURITY};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use porter_store::{unix_now, Features, Target, Upstream, WafMode, WafSettings};
use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Answers one request hyper read (HTTP/1.1 or HTTP/2), counting it for metrics and logging
/// it when there is an access log.
pub(crate) fn handle(
    edge: Arc<Edge>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> impl Future<Output = Response<Body>> {
    // Every response, Porter's own ones included, holds a body left unread (see `ClientBody`).
    let (req, unread) = ClientBody::of(req);
    answer(edge, conn, req, unread)
}

/// Answers one request of any HTTP version, as [`handle`] does; `unread` is where its body
/// goes when it is dropped unread.
pub(crate) fn answer(
    edge: Arc<Edge>,
    conn: Arc<Conn>,
    req: Request<ClientBody>,
    unread: Option<Unread>,
) -> impl Future<Output = Response<Body>> {
    // Not an async fn of its own: it would keep a second slot for the request, which every
    // request's future then carries.
    let at = Instant::now();
    let host = route::request_host(&req).map(Cow::into_owned);
    let logged = edge
        .access_log
        .clone()
        .map(|log| (Started::of(&req, &conn, host.as_deref()), log));
    serve(edge.clone(), conn, req, host).map(move |served| {
        let response = served.response.unwrap_or_else(Own::into_response);
        Finishing::new(edge, served.site, at, logged).when_sent(response, served.upstream, unread)
    })
}

/// What [`serve`] made of a request.
struct Served {
    /// Its site (the metrics' label), when it is for one.
    site: Option<Arc<str>>,
    /// How long the upstream took to answer with its head, when it was forwarded.
    upstream: Option<Duration>,
    /// The response, or Porter's own answer.
    response: Result<Response<Body>, Own>,
}

/// The phases in order; `host` is the one the request names, if any.
async fn serve(
    edge: Arc<Edge>,
    conn: Arc<Conn>,
    mut req: Request<ClientBody>,
    host: Option<String>,
) -> Served {
    let refused = |own| Served {
        site: None,
        upstream: None,
        response: Err(own),
    };
    let conn = from_fleet(&edge, conn, &mut req, host.as_deref());
    if let Err(own) = well_formed(&req) {
        return refused(own);
    }
    let site = match route(&edge, &conn, &req, host.as_deref()).await {
        Ok(site) => site,
        Err(own) => return refused(own),
    };
    let domain = Arc::clone(&site.domain);
    let mut upstream = None;
    let waf = edge
        .waf
        .settings(site.features.as_ref().and_then(|f| f.waf.as_ref()));
    let response = match (site.features.is_some(), waf) {
        // The common case pays two branches for the features it does not use.
        (false, None) => {
            let req = req.map(|body| edge.forwarder.client_body(body));
            fetch(edge, conn, site, req, &mut upstream).await
        }
        (_, waf) => {
            let blocks = waf.as_ref().is_some_and(|w| w.mode == WafMode::Block);
            let host = host.as_deref().unwrap_or(&site.domain);
            let gated = match gate(&edge, &site, (host, blocks), &conn, &req).await {
                Ok(()) => inspect(&edge, &conn, &site, waf, req).await,
                Err(own) => Err(own),
            };
            let response = match gated {
                Ok(req) => fetch(edge, conn, Arc::clone(&site), req, &mut upstream).await,
                Err(own) => Err(own),
            };
            match site.features.as_deref() {
                Some(features) => response.or_else(|own| Ok(own_page(features, own))),
                _ => response,
            }
        }
    };
    Served {
        site: Some(domain),
        upstream,
        response,
    }
}

/// Porter's own answer as a site with features gives it: its page, and on a cached site its
/// `Cache-Status`.
fn own_page(features: &Features, own: Own) -> Response<Body> {
    let status = features
        .cache
        .is_some()
        .then(|| crate::proxy::cached::own_status(&own));
    let mut page = own.into_page(&features.error_pages);
    if let Some(status) = status {
        status.add_to(page.headers_mut());
    }
    page
}

/// A request another node of the fleet forwarded (its mark is taken off every request) is
/// served as the HTTPS request of its client it was.
fn from_fleet<B>(
    edge: &Edge,
    conn: Arc<Conn>,
    req: &mut Request<B>,
    host: Option<&str>,
) -> Arc<Conn> {
    match edge.fleet.as_ref().and_then(|f| f.take(req.headers_mut())) {
        Some(client) if conn.tls_name.is_none() => match host {
            Some(host) => Arc::new(conn.forwarded(client, host.to_owned())),
            None => conn,
        },
        _ => conn,
    }
}

/// The WAF's inspection of `req` when it is on for `site` (see `crate::proxy::phases::waf`).
async fn inspect(
    edge: &Edge,
    conn: &Conn,
    site: &SiteEntry,
    waf: Option<&WafSettings>,
    req: Request<ClientBody>,
) -> Result<Request<UpstreamBody>, Own> {
    match waf {
        Some(settings) => {
            crate::proxy::phases::waf::inspect(edge, (&site.domain, settings.clone()), conn, req)
                .await
        }
        None => Ok(req.map(|body| edge.forwarder.client_body(body))),
    }
}

/// Phases 3 to 5 for a request of `site`; `upstream_time` is set when it is forwarded.
///
/// Not an async fn: its arguments would stay in its future beside the forwarding future,
/// which holds them itself, and the request future is moved and copied whole (for HTTP/2
/// allocated per stream), so every byte of it is paid on every request.
fn fetch(
    edge: Arc<Edge>,
    conn: Arc<Conn>,
    site: Arc<SiteEntry>,
    req: Request<UpstreamBody>,
    upstream_time: &mut Option<Duration>,
) -> impl Future<Output = Result<Response<Body>, Own>> + '_ {
    use futures_util::future::Either;
    let coding = match &site.features {
        Some(features) if features.compress && req.method() != http::Method::HEAD => {
            compress::chosen(req.headers())
        }
        _ => None,
    };
    let https = conn.tls_name.is_some();
    // A tunnel's answer goes back as it is.
    let tunnel = upgrade::is_h2_websocket(&req);
    let cache = match (&edge.cache, &site.features) {
        (Some(cache), Some(features)) if features.cache.is_some() => Some(Arc::clone(cache)),
        _ => None,
    };
    let outgoing_site = Arc::clone(&site);
    let forwarding = match (admit(&edge, &site, &conn, &req), cache) {
        (Err(own), _) => Either::Left(std::future::ready(Err(own))),
        // The cache's slot: a stored response, or the upstream's kept as it streams (boxed:
        // what it holds is not paid by the sites without a cache).
        (Ok(()), Some(cache)) => {
            let cached = crate::proxy::cached::Cached {
                cache,
                edge,
                conn,
                site,
                forward: forward_boxed,
            };
            Either::Right(Either::Left(Box::pin(cached.fetch(req))))
        }
        (Ok(()), None) => Either::Right(Either::Right(forward(edge, conn, site, req))),
    };
    // A map, not an async block: `.await` in one would move the forwarding future into a
    // second slot.
    forwarding.map(move |forwarded| {
        let (response, took) = forwarded?;
        *upstream_time = took;
        Ok(match tunnel {
            true => response,
            false => outgoing(&outgoing_site, https, response, coding),
        })
    })
}

/// [`forward`], boxed: what the cache sends upstream with, in the background too.
fn forward_boxed(
    edge: Arc<Edge>,
    conn: Arc<Conn>,
    site: Arc<SiteEntry>,
    req: Request<UpstreamBody>,
) -> std::pin::Pin<Box<dyn Future<Output = crate::proxy::cached::Forwarded> + Send>> {
    Box::pin(forward(edge, conn, site, req))
}

/// Phases 3 and 4: admission, then the upstream's response, streamed back holding what the
/// request holds until its body is done, and how long its head took.
async fn forward(
    edge: Arc<Edge>,
    conn: Arc<Conn>,
    site: Arc<SiteEntry>,
    mut req: Request<UpstreamBody>,
) -> Result<(Response<Body>, Option<Duration>), Own> {
    // Slots bound what goes upstream: an answer from the cache takes none.
    let slots = edge.admission.slots(&site).await?;
    // A site with several upstreams starts its app only when the app is the one picked.
    let lease = match site.balance {
        None => upstream_peer(&edge, &site, &conn).await?,
        Some(_) => None,
    };
    upstream_request(&edge, &conn, lease.as_ref(), &mut req);
    let https = conn.tls_name.is_some();
    let forwarded = Forwarded {
        client: &conn.forwarded_for,
        proto: if https { "https" } else { "http" },
        site: &site.domain,
    };
    let holding = Holding {
        lease,
        loan: None,
        slots,
        picked: None,
    };
    if upgrade::is_h2_websocket(&req) {
        // Boxed, being rare (see `fetch`).
        let to = (&*site, &forwarded);
        return Box::pin(h2_websocket(&edge, &conn, req, to, holding))
            .await
            .map(|response| (response, None));
    }
    let asked = Instant::now();
    let (response, holding) = exchange(&edge, &conn, req, (&site, &forwarded), holding).await?;
    let took = asked.elapsed();
    Ok((edge.forwarder.stream_back(response, holding), Some(took)))
}

/// Sends `req` to `upstream` and waits for the response's head. An HTTP/1.1 upgrade the
/// upstream accepts becomes a tunnel: its upstream connection is never reused, and a tunnel
/// lives long and sends no requests, so it holds no request slot.
async fn exchange(
    edge: &Edge,
    conn: &Conn,
    mut req: Request<UpstreamBody>,
    (site, forwarded): (&SiteEntry, &Forwarded<'_>),
    mut holding: Holding,
) -> Result<(Response<Incoming>, Holding), Own> {
    // HTTP/1 clients send one request at a time: their connection keeps its upstream one.
    let keep = req.version() <= Version::HTTP_11;
    let upgrade = req.version() == Version::HTTP_11 && headers::wants_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut response, loan) = match &site.balance {
        None => {
            let upstream = upstream_of(site, holding.lease.as_ref());
            edge.forwarder
                .send(req, upstream, forwarded, upgrade, &conn.affinity, keep)
                .await?
        }
        // Boxed: what it holds is not paid by the sites with one upstream.
        Some(balancer) => {
            let to = (site, balancer, forwarded);
            Box::pin(balanced(edge, conn, req, to, (upgrade, keep), &mut holding)).await?
        }
    };
    holding.loan = Some(loan);
    if let (Some(client), StatusCode::SWITCHING_PROTOCOLS) = (client_upgrade, response.status()) {
        upgrade::tunnel(
            client,
            hyper::upgrade::on(&mut response),
            holding.lease.take(),
        );
        holding.loan = None;
        holding.slots = (None, None);
        holding.picked = None;
    }
    Ok((response, holding))
}

/// [`exchange`] on a site with several upstreams: the one its policy picks, then, when that
/// one failed the request before it got it (or timed out on an idempotent one without a
/// body), once another, within the site's retry budget. Each outcome counts for the health of
/// the upstream it came from; the one that answered is held with the response.
async fn balanced(
    edge: &Edge,
    conn: &Conn,
    mut req: Request<UpstreamBody>,
    (site, balancer, forwarded): (&SiteEntry, &Arc<Balancer>, &Forwarded<'_>),
    (upgrade, keep): (bool, bool),
    holding: &mut Holding,
) -> Result<(Response<Incoming>, Loan), Own> {
    let key = balancer.key(conn.peer, req.headers());
    let mut failed_on = None;
    loop {
        let picked = balancer.pick(key, failed_on);
        let may_retry = failed_on.is_none() && balancer.retries();
        let lease = match picked.member().to {
            To::Upstream(_) => None,
            To::App => match upstream_peer(edge, site, conn).await {
                Ok(lease) => lease,
                Err(own) => {
                    picked.failed("the app did not start", true);
                    if may_retry && balancer.spend_retry() {
                        failed_on = Some(picked.index());
                        continue;
                    }
                    return Err(own);
                }
            },
        };
        let upstream = match (&picked.member().to, &lease) {
            (To::Upstream(upstream), _) => upstream,
            (To::App, lease) => &lease.as_ref().expect("an app member has a lease").upstream,
        };
        if lease.is_some() {
            // `forward` added the Host; an app's lease may add the fleet's mark.
            upstream_request(edge, conn, lease.as_ref(), &mut req);
        }
        let sent = match may_retry {
            true => {
                let to = (upstream, balancer.try_timeout());
                let send = edge.forwarder.send_retryable(
                    req,
                    to,
                    forwarded,
                    upgrade,
                    &conn.affinity,
                    keep,
                );
                send.await
            }
            false => {
                let send =
                    edge.forwarder
                        .send(req, upstream, forwarded, upgrade, &conn.affinity, keep);
                send.await
            }
        };
        match sent {
            Ok((response, loan)) => {
                match response.status().as_u16() {
                    status @ 500.. => picked.failed(&format!("answered {status}"), false),
                    _ => picked.succeeded(),
                }
                holding.lease = lease;
                holding.picked = Some(picked);
                return Ok((response, loan));
            }
            Err(failed) => {
                if let Some(fault) = &failed.fault {
                    picked.failed(fault, true);
                }
                match failed.unsent {
                    Some(unsent)
                        if may_retry && failed.fault.is_some() && balancer.spend_retry() =>
                    {
                        tracing::debug!(site = %balancer.site, upstream = %picked.member().name, "retrying on another upstream");
                        failed_on = Some(picked.index());
                        req = unsent;
                    }
                    _ => return Err(failed.own),
                }
            }
        }
    }
}

/// An HTTP/2 WebSocket (RFC 8441 extended CONNECT), sent upstream as an HTTP/1.1 upgrade;
/// once switched, the upstream connection is the tunnel (its loan ends here, unreturned, and
/// its slots are let go).
async fn h2_websocket(
    edge: &Edge,
    conn: &Conn,
    mut req: Request<UpstreamBody>,
    (site, forwarded): (&SiteEntry, &Forwarded<'_>),
    mut holding: Holding,
) -> Result<Response<Body>, Own> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let upstream_req = upgrade::h1_request_for_h2_websocket(req);
    let (mut response, loan) = match &site.balance {
        None => {
            let upstream = upstream_of(site, holding.lease.as_ref());
            let affinity = &conn.affinity;
            let send = edge
                .forwarder
                .send(upstream_req, upstream, forwarded, true, affinity, true);
            send.await?
        }
        Some(balancer) => {
            let to = (site, balancer, forwarded);
            balanced(edge, conn, upstream_req, to, (true, true), &mut holding).await?
        }
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        holding.loan = Some(loan);
        return Ok(edge.forwarder.stream_back(response, holding));
    }
    let answer = upgrade::h2_response_for_switch(&response);
    upgrade::tunnel(
        client_upgrade,
        hyper::upgrade::on(&mut response),
        holding.lease,
    );
    Ok(answer.map(|()| full("")))
}

/// Phase 5: the response as the client gets it, compressed in `coding` when the site
/// compresses.
fn outgoing(
    site: &SiteEntry,
    https: bool,
    mut response: Response<Body>,
    coding: Option<compress::Coding>,
) -> Response<Body> {
    client_response(site, https, &mut response);
    match coding {
        Some(coding) => compress::encode(coding, response),
        None => response,
    }
}

/// Refuses what no intermediary may pass on (see [`headers::well_formed`]).
fn well_formed<B>(req: &Request<B>) -> Result<(), Own> {
    // hyper refuses these itself; h3 passes them on (RFC 9114 section 4.2).
    if req.version() == Version::HTTP_3 {
        if let Some(why) = headers::connection_specific(req.headers()) {
            return Err(Own::Malformed(why));
        }
        if headers::content_length(req.headers()).is_err() {
            return Err(Own::Malformed("a Content-Length that is not one number"));
        }
    }
    headers::well_formed(req.headers()).map_err(|unfit| match unfit {
        headers::Unfit::Malformed(why) => Own::Malformed(why),
        headers::Unfit::UnknownCoding => Own::UnknownCoding,
    })
}

/// The site `req` is for; `host` is the one it names.
async fn route(
    edge: &Edge,
    conn: &Conn,
    req: &Request<ClientBody>,
    host: Option<&str>,
) -> Result<Arc<SiteEntry>, Own> {
    let https = conn.tls_name.is_some();
    if !https {
        if let Some(token) = crate::proxy::phases::challenge::token(req) {
            // Boxed, being rare: every request's future would carry its size otherwise.
            if let Some(answer) = Box::pin(crate::proxy::phases::challenge::http01(
                &edge.challenges,
                token,
            ))
            .await
            {
                return Err(answer);
            }
        }
    }
    let host = match host {
        Some(host) => host,
        // HTTP/1.0 has no Host: the connection's TLS name is the best statement of intent
        // (and becomes the request's Host, see `upstream_request`).
        None if https && req.version() == Version::HTTP_10 => {
            conn.tls_name.as_deref().unwrap_or_default()
        }
        None => return Err(Own::NoHost),
    };
    let snapshot = edge.sites.serving(host).await.map_err(|_| Own::Loading)?;
    let site = snapshot.site(host).ok_or(Own::UnknownSite { https })?;
    if let Some(tls_name) = &conn.tls_name {
        // A connection authenticated for one name serves only the names its certificate is
        // served for; anything else is another site's business (RFC 9110 section 15.5.20).
        let same_cert = tls_name == host
            || match (snapshot.cert(host), snapshot.cert(tls_name)) {
                (Some(a), Some(b)) => std::ptr::eq(a, b),
                _ => false,
            };
        if !same_cert {
            return Err(Own::OtherCertificate);
        }
    } else if site.cert.is_some() {
        // A site with a certificate is HTTPS-only, expired or not: its clients may hold HSTS
        // for it, and an expired certificate is renewed, never a reason for clear text.
        return Err(to_https(req, host, edge.https_port));
    }
    Ok(Arc::clone(site))
}

/// What a site's features say before anything else is done: its address lists, then its
/// redirects (for `host`), then its basic auth, then its WordPress login limit (its own, or
/// the default when its WAF blocks; counting only what would reach the upstream).
async fn gate<B>(
    edge: &Edge,
    site: &SiteEntry,
    (host, waf_blocks): (&str, bool),
    conn: &Conn,
    req: &Request<B>,
) -> Result<(), Own> {
    let features = site.features.as_deref();
    if let Some(features) = features {
        if !access::allowed(features, conn.peer) {
            return Err(Own::Forbidden);
        }
        if let Some(redirect) = redirect::answer(features, req, host, conn.tls_name.is_some()) {
            return Err(redirect);
        }
        basic_auth::check(&site.domain, features, req).await?;
    }
    let login_limit = Features::wp_login_limit_in_force(features, waf_blocks);
    crate::proxy::phases::wp_login::check(
        &edge.wp_logins,
        login_limit,
        (&site.domain, conn.peer),
        req,
    )
}

/// Whether the request may go on now: never a plain CONNECT (HTTP/2 WebSockets arrive as
/// CONNECT with a protocol, RFC 8441: those are tunnelled); then the client's rate for the
/// site, whether the cache answers or the upstream (whose slots [`forward`] takes).
fn admit<B>(edge: &Edge, site: &SiteEntry, conn: &Conn, req: &Request<B>) -> Result<(), Own> {
    if req.method() == http::Method::CONNECT && !upgrade::is_h2_websocket(req) {
        return Err(Own::Connect);
    }
    edge.admission.within_rate(site, conn.peer)
}

/// The app's lease when the site is served by an app (started now if it is not running, or
/// on the node of the fleet it runs on).
async fn upstream_peer(edge: &Edge, site: &SiteEntry, conn: &Conn) -> Result<Option<Lease>, Own> {
    match &site.target {
        Target::Upstream(_) => Ok(None),
        Target::App(id) => edge
            .apps
            .acquire(id, conn.from_fleet)
            .await
            .map(Some)
            .map_err(Own::App),
    }
}

/// Where the request goes: its app's address when the site is an app's, else its upstream.
fn upstream_of<'a>(site: &'a SiteEntry, lease: Option<&'a Lease>) -> &'a Upstream {
    match (&site.target, lease) {
        (_, Some(lease)) => &lease.upstream,
        (Target::Upstream(upstream), None) => upstream,
        (Target::App(_), None) => unreachable!("an app site always has a lease here"),
    }
}

/// Adds what the upstream needs and the client left out: a Host, and the fleet's mark on a
/// request for an app that runs on another node.
fn upstream_request<B>(edge: &Edge, conn: &Conn, lease: Option<&Lease>, req: &mut Request<B>) {
    if let (None, Some(tls_name)) = (req.headers().get(HOST), &conn.tls_name) {
        // The upstream is spoken to in HTTP/1.1, which requires a Host.
        if req.uri().authority().is_none() {
            if let Ok(value) = HeaderValue::from_str(tls_name) {
                req.headers_mut().insert(HOST, value);
            }
        }
    }
    if let (Some(fleet), Some(lease)) = (&edge.fleet, lease) {
        if lease.to_other_node() {
            req.headers_mut()
                .insert(crate::proxy::upstream::fleet::HEADER, fleet.mark(conn.peer));
        }
    }
}

/// Speaks Porter's own HTTP version (RFC 9110 section 6.2: an HTTP/1.0 upstream's answer goes
/// to an HTTP/1.1 client as HTTP/1.1, keep-alive included) and adds the site's HSTS header,
/// over HTTPS once its certificate is valid, and never over the upstream's own choice.
fn client_response<B>(site: &SiteEntry, https: bool, response: &mut Response<B>) {
    if response.version() == Version::HTTP_10 {
        *response.version_mut() = Version::HTTP_11;
    }
    if let (true, Some(hsts)) = (https, &site.hsts) {
        if site.has_valid_cert(unix_now())
            && !response.headers().contains_key(STRICT_TRANSPORT_SECURITY)
        {
            response
                .headers_mut()
                .insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
}

/// The same URL over HTTPS.
fn to_https<B>(req: &Request<B>, host: &str, https_port: u16) -> Own {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    match HeaderValue::from_str(&format!("https://{host}{port}{path}")) {
        Ok(location) => Own::ToHttps(location),
        Err(_) => Own::BadTarget,
    }
}
