//! Forwarding one request to its upstream over a reused connection (see `pool`), with
//! streaming bodies, and mapping failures to the status that says whose fault they are (502
//! refused or broken, 504 timed out). A request the upstream never saw, or an idempotent one
//! without a body that it dropped with a connection that had been idle, is sent once more on a
//! new connection; what still fails says whether another upstream may take the request
//! ([`Failed`]).

use crate::proxy::phases::answer::Own;
use crate::proxy::phases::headers;
use crate::proxy::upstream::body::{Body, ClientBody, Replayed, UpstreamBody};
use crate::proxy::upstream::held::{Held, Holding};
use crate::proxy::upstream::idle::IdleTimeout;
use crate::proxy::upstream::pool::{Affinity, Loan, Pool};
use crate::runtime::log_limit::limited;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Empty};
use hyper::body::Incoming;
use porter_store::Upstream;
use std::sync::Arc;
use std::time::Duration;

/// The upstream connections and the deadlines of an exchange.
pub(crate) struct Forwarder {
    pool: Arc<Pool>,
    /// For the upstream's response headers, and for body data in either direction.
    timeout: Duration,
    /// Bytes a second a request body must keep up while Porter waits for it; 0 for none.
    min_body_rate: u32,
}

/// Who is asking, as far as the upstream needs to know (what `X-Forwarded-*` carry), and for
/// which site (what a failure's log line names).
pub(crate) struct Forwarded<'a> {
    /// The client's address as `X-Forwarded-For` carries it.
    pub(crate) client: &'a HeaderValue,
    /// `https` or `http`, for `X-Forwarded-Proto`.
    pub(crate) proto: &'static str,
    /// The site's domain.
    pub(crate) site: &'a str,
}

impl Forwarder {
    /// Gives up connecting after `connect_timeout`, waiting for response headers or for body
    /// data after `timeout`, and on a request body slower than `min_body_rate` bytes a second.
    pub(crate) fn new(connect_timeout: Duration, timeout: Duration, min_body_rate: u32) -> Self {
        Forwarder {
            pool: Pool::new(connect_timeout),
            timeout,
            min_body_rate,
        }
    }

    /// Closes idle upstream connections as they expire, until `shutdown`.
    pub(crate) fn reap_idle(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> impl std::future::Future<Output = ()> {
        Arc::clone(&self.pool).reap(shutdown)
    }

    /// The upstream connection a new client connection will keep.
    pub(crate) fn affinity(&self) -> Arc<Affinity> {
        Affinity::new(Arc::clone(&self.pool))
    }

    /// The client's request body, bounded by the idle deadline and the minimum rate (nothing to
    /// bound when empty).
    pub(crate) fn client_body(&self, body: ClientBody) -> UpstreamBody {
        use hyper::body::Body as _;
        if body.is_end_stream() {
            Either::Right(Empty::new())
        } else {
            Either::Left(Replayed::streaming(self.reading(body)))
        }
    }

    /// The client's request body, bounded by the idle deadline and the minimum rate.
    pub(crate) fn reading(&self, body: ClientBody) -> IdleTimeout<ClientBody> {
        IdleTimeout::new(body, self.timeout).with_min_rate(self.min_body_rate)
    }

    /// A streamed upstream response as the body type Porter answers with, bounded by the idle
    /// deadline. What it holds (the app's lease, the upstream connection's loan, the request's
    /// slots) is held until the body is done.
    pub(crate) fn stream_back(
        &self,
        response: Response<Incoming>,
        holding: Holding,
    ) -> Response<Body> {
        response.map(|body| Held::new(IdleTimeout::new(body, self.timeout), holding).boxed())
    }

    /// Rewrites `req` for `upstream` (see [`rewrite`]) and sends it on a connection of
    /// `affinity`'s. `keep`: the client sends its requests one at a time (HTTP/1), so its
    /// connection keeps the upstream connection for the next one.
    pub(crate) async fn send(
        &self,
        req: Request<UpstreamBody>,
        upstream: &Upstream,
        forwarded: &Forwarded<'_>,
        upgrade: bool,
        affinity: &Arc<Affinity>,
        keep: bool,
    ) -> Result<(Response<Incoming>, Loan), Box<Failed>> {
        // One expression, no named request or exchange: a named value moved into the awaited
        // future keeps a slot of its own in this future's state, which every request then
        // copies around (and HTTP/2 allocates per stream).
        let exchanged = tokio::time::timeout(
            self.timeout,
            self.exchange(
                rewrite(req, forwarded, upgrade),
                (forwarded.site, upstream),
                affinity,
                keep,
            ),
        )
        .await;
        match exchanged {
            Err(_) => Err(Failed::timed_out(None)),
            Ok(exchanged) => exchanged.map(received),
        }
    }

    /// [`Forwarder::send`] for a request that another upstream may take if this one fails
    /// it: what it fails with holds the request when the upstream never got it, and a copy of
    /// an idempotent request without a body that the upstream broke off or whose response
    /// head did not come within `head_timeout` (the server's upstream timeout when `None` or
    /// shorter).
    pub(crate) async fn send_retryable(
        &self,
        req: Request<UpstreamBody>,
        (upstream, head_timeout): (&Upstream, Option<Duration>),
        forwarded: &Forwarded<'_>,
        upgrade: bool,
        affinity: &Arc<Affinity>,
        keep: bool,
    ) -> Result<(Response<Incoming>, Loan), Box<Failed>> {
        let req = rewrite(req, forwarded, upgrade);
        let copy = replayable(&req);
        let timeout = head_timeout.map_or(self.timeout, |t| t.min(self.timeout));
        let exchange = self.exchange(req, (forwarded.site, upstream), affinity, keep);
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err(Failed::timed_out(copy)),
            Ok(Ok(exchanged)) => Ok(received(exchanged)),
            // The upstream broke off after the request went out: an idempotent one without a
            // body means the same sent again (RFC 9110 section 9.2.2).
            Ok(Err(mut failed)) => {
                if failed.unsent.is_none() && failed.fault.is_some() {
                    failed.unsent = copy;
                }
                Err(failed)
            }
        }
    }

    /// Sends `request` on a connection of `affinity`'s and waits for the response headers.
    async fn exchange(
        &self,
        mut request: Request<UpstreamBody>,
        (site, upstream): (&str, &Upstream),
        affinity: &Arc<Affinity>,
        keep: bool,
    ) -> Result<(Response<Incoming>, Loan), Box<Failed>> {
        let (mut sender, idle_since) = match affinity.checkout(upstream).await {
            Ok(checked_out) => checked_out,
            Err(e) => return Err(connect_error(&e, site, upstream, request)),
        };
        // A connection idle for a while may be closed by the upstream just as the request
        // goes out on it. Only then is a copy kept, to send again on a new connection.
        let mut replay = idle_since
            .filter(|since| since.elapsed() >= MAY_BE_STALE_AFTER)
            .and_then(|_| replayable(&request));
        let mut retried = false;
        loop {
            let mut loan = affinity.lend(upstream, sender, keep);
            let mut e = match loan.sender().try_send_request(request).await {
                Ok(response) => return Ok((response, loan)),
                Err(e) => e,
            };
            let again = match e.take_message() {
                // The upstream closed the idle connection as the request was about to go
                // out: nothing was sent, so a new connection may take it.
                Some(unsent) => Some(unsent),
                None if closed_before_answering(e.error()) => replay.take(),
                None => None,
            };
            match again {
                // Once.
                Some(again) if !retried => {
                    (request, retried) = (again, true);
                    sender = match Box::pin(self.pool.connect(upstream)).await {
                        Ok(sender) => sender,
                        Err(e) => return Err(connect_error(&e, site, upstream, request)),
                    };
                }
                // Unsent twice: another upstream may take it.
                again => return Err(exchange_error(&e.into_error(), site, upstream, again)),
            }
        }
    }
}

/// Why an exchange failed (boxed where it is returned: it is rare, and a request's future
/// would otherwise carry its size on every request): Porter's answer, the request when the upstream never got it (or an
/// idempotent one's copy), for another upstream to take, and what the upstream did wrong
/// (`None` when it was the client: a malformed or too slow body).
pub(crate) struct Failed {
    pub(crate) own: Own,
    pub(crate) unsent: Option<Request<UpstreamBody>>,
    pub(crate) fault: Option<String>,
}

impl Failed {
    fn timed_out(copy: Option<Request<UpstreamBody>>) -> Box<Failed> {
        Box::new(Failed {
            own: Own::TimedOut,
            unsent: copy,
            fault: Some("no response head in time".into()),
        })
    }
}

impl From<Box<Failed>> for Own {
    fn from(failed: Box<Failed>) -> Own {
        failed.own
    }
}

/// A response head as it goes on: without the upstream's hop-by-hop headers.
fn received((mut response, loan): (Response<Incoming>, Loan)) -> (Response<Incoming>, Loan) {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    headers::strip_hop_by_hop(response.headers_mut(), switching);
    (response, loan)
}

/// How long a connection must have been idle for its upstream to possibly be closing it: web
/// servers close idle keep-alive connections after a few seconds (Node.js and Apache after 5).
const MAY_BE_STALE_AFTER: Duration = Duration::from_secs(1);

/// A copy of `request` to send a second time, when that means the same as sending it once
/// (an idempotent method, RFC 9110 section 9.2.2) and it has no body.
fn replayable(request: &Request<UpstreamBody>) -> Option<Request<UpstreamBody>> {
    use http::Method;
    let idempotent = [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(request.method());
    if !idempotent || !matches!(request.body(), Either::Right(_)) {
        return None;
    }
    let mut copy = Request::new(Either::Right(Empty::new()));
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

/// Whether the upstream closed the connection without answering (rather than answering
/// something broken or too late).
fn closed_before_answering(e: &hyper::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    e.is_incomplete_message()
        || std::error::Error::source(e)
            .and_then(|source| source.downcast_ref::<std::io::Error>())
            .is_some_and(|io| matches!(io.kind(), ConnectionReset | BrokenPipe | ConnectionAborted))
}

/// `req` as the upstream gets it (see [`headers::upstream_head`]). Inlined: called from two
/// places, the compiler would otherwise call it, copying the request in and out (callgrind:
/// +1.2 % of a request's instructions).
#[inline(always)]
fn rewrite(
    req: Request<UpstreamBody>,
    forwarded: &Forwarded<'_>,
    upgrade: bool,
) -> Request<UpstreamBody> {
    let (mut parts, body) = req.into_parts();
    headers::upstream_head(&mut parts, forwarded.client, forwarded.proto, upgrade);
    Request::from_parts(parts, body)
}

/// 504 when connecting timed out, 502 otherwise; `request` never left.
fn connect_error(
    e: &std::io::Error,
    site: &str,
    upstream: &Upstream,
    request: Request<UpstreamBody>,
) -> Box<Failed> {
    limited!(warn, site = site, "cannot connect to upstream", %upstream, error = %e);
    Box::new(Failed {
        own: match e.kind() {
            std::io::ErrorKind::TimedOut => Own::TimedOut,
            _ => Own::Unreachable,
        },
        unsent: Some(request),
        fault: Some(format!("connecting: {e}")),
    })
}

/// 502: the upstream broke the exchange off or answered something that is not HTTP; but when
/// the client's body failed (malformed chunks, or too slow), the client is answered and no
/// upstream is blamed. `unsent`: the request, when it never left.
fn exchange_error(
    e: &hyper::Error,
    site: &str,
    upstream: &Upstream,
    unsent: Option<Request<UpstreamBody>>,
) -> Box<Failed> {
    if e.is_user() {
        let slow = std::error::Error::source(e)
            .is_some_and(|s| s.is::<crate::proxy::upstream::idle::Slow>());
        tracing::debug!(error = %e, "the client's request body failed");
        let own = if slow {
            Own::BodyTimedOut
        } else {
            Own::Malformed("the request body is malformed")
        };
        return Box::new(Failed {
            own,
            unsent: None,
            fault: None,
        });
    }
    limited!(warn, site = site, "failed talking to upstream", %upstream, error = %e);
    Box::new(Failed {
        own: Own::Unreachable,
        unsent,
        fault: Some(e.to_string()),
    })
}
