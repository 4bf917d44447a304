//! Accept loops for the HTTPS and plain HTTP listeners: a bound on open connections, deadlines
//! on the handshake and on request headers, one task per connection (a panic stays in it), and
//! a graceful close of every connection on shutdown.

use crate::observe::metrics::{HandshakeFailure, Listener};
use crate::proxy::connection::ceiling::MemoryCeiling;
use crate::proxy::connection::first_request::{Agreed, FirstRequest};
use crate::proxy::connection::per_ip::{client_key, Counted, PerIp};
use crate::proxy::connection::proxy_protocol::ProxyProtocol;
use crate::proxy::connection::shed::{Reason, Shed};
use crate::proxy::connection::status_line::StatusLine;
use crate::proxy::phases::rate::Rates;
use crate::proxy::request::handle;
use crate::proxy::{Conn, Edge};
use crate::tls;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Bounds on what clients may hold.
pub(crate) struct Limits {
    /// Open client connections across both listeners; more are closed at accept.
    pub(crate) connections: Arc<Semaphore>,
    /// Open client connections of each client address, both listeners together.
    pub(crate) per_ip: Arc<PerIp>,
    /// TLS handshakes under way of each client address.
    pub(crate) handshakes_per_ip: Arc<PerIp>,
    /// New TLS handshakes of each client address.
    pub(crate) handshake_rate: Rates<IpAddr>,
    /// Time allowed for a TLS handshake.
    pub(crate) handshake_timeout: Duration,
    /// Time allowed for a connection's first request, for a request's headers to arrive, and
    /// for an idle HTTP/1 keep-alive.
    pub(crate) header_timeout: Duration,
    /// Largest request head, in bytes.
    pub(crate) max_header_size: usize,
    /// Most header fields in a request.
    pub(crate) max_headers: usize,
    /// What is refused, for the log.
    pub(crate) shed: Arc<Shed>,
    /// Over it, new connections are refused.
    pub(crate) memory: Arc<MemoryCeiling>,
    /// Below this many free connection slots, idle keep-alive connections are closed to make
    /// room (new clients come before idle ones).
    pub(crate) crowded_below: usize,
    /// When set, every connection opens with a PROXY header from a trusted source.
    pub(crate) proxy_protocol: Option<ProxyProtocol>,
}

impl Limits {
    /// Whether `peer` may start a TLS handshake now (refused before its ClientHello is read,
    /// the cheapest point), with what counts it while it is under way.
    fn handshake(&self, peer: IpAddr) -> Option<Option<Counted>> {
        if self.handshake_rate.take(client_key(peer)).is_err() {
            self.shed.note(Reason::HandshakeRate);
            return None;
        }
        let counted = self.handshakes_per_ip.admit(peer);
        if counted.is_none() {
            self.shed.note(Reason::HandshakesPerIp);
        }
        counted
    }
}

/// How long a stop waits for the first request of a connection that has sent none yet.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(2);
/// How long an HTTP/1.1 connection must have been idle before a stop closes it: a client
/// under way sends its next request well within this, and has it answered.
const DRAIN_QUIET: Duration = Duration::from_secs(1);
/// How often a draining HTTP/1.1 connection looks whether it has become quiet.
const DRAIN_POLL: Duration = Duration::from_millis(50);

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_size)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_size as u32)
        .enable_connect_protocol()
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Accepts connections on `listener` with `accepted` until `shutdown`, then closes them
/// gracefully; `tracker` learns of every connection task.
async fn accept_loop<F, Fut>(
    (listener, kind): (TcpListener, Listener),
    edge: &Edge,
    limits: &Arc<Limits>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
    accepted: F,
) where
    F: Fn(TcpStream, std::net::SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    // When this thread last asked its idle connections to make room.
    let mut made_room: Option<std::time::Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = listener.accept() => match result {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    crate::runtime::log_limit::limited!(warn, "accept failed", error = %e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if limits.connections.available_permits() < limits.crowded_below
            && made_room.is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            // Near the limit: idle keep-alive connections go first, so that new clients are
            // not the ones refused. At most once a second: each call wakes every connection.
            made_room = Some(std::time::Instant::now());
            edge.crowded.notify_waiters();
        }
        if limits.memory.over() {
            // Counted by the ceiling's watch, once a second.
            continue;
        }
        let Ok(permit) = limits.connections.clone().try_acquire_owned() else {
            limits.shed.note(Reason::Connections);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let open = edge.stats.open(kind);
        if let Some(proxy) = &limits.proxy_protocol {
            if !proxy.trusts(peer.ip()) {
                limits.shed.note(Reason::ProxyProtocol);
                continue;
            }
            // The client is known once the header is read, in the connection's own task.
            let (accepted, limits) = (accepted.clone(), limits.clone());
            tracker.spawn(async move {
                let mut stream = stream;
                let timeout = limits.handshake_timeout;
                let client = match limits_client(&limits, &mut stream, peer, timeout).await {
                    Some(client) => client,
                    None => return,
                };
                let Some(counted) = limits.per_ip.admit(client.ip()) else {
                    limits.shed.note(Reason::ConnectionsPerIp);
                    return;
                };
                accepted(stream, client).await;
                drop((permit, counted, open));
            });
            continue;
        }
        let Some(counted) = limits.per_ip.admit(peer.ip()) else {
            limits.shed.note(Reason::ConnectionsPerIp);
            continue;
        };
        let task = accepted(stream, peer);
        tracker.spawn(async move {
            task.await;
            drop((permit, counted, open));
        });
    }
}

/// The client a trusted balancer names in its PROXY header; `None` (counted) when it names
/// none in time.
async fn limits_client(
    limits: &Limits,
    stream: &mut TcpStream,
    peer: std::net::SocketAddr,
    timeout: Duration,
) -> Option<std::net::SocketAddr> {
    let proxy = limits.proxy_protocol.as_ref()?;
    match proxy.client(stream, peer, timeout).await {
        Ok(client) => Some(client),
        Err(refused) => {
            tracing::debug!(%peer, ?refused, "connection without a valid PROXY header closed");
            limits.shed.note(Reason::ProxyProtocol);
            None
        }
    }
}

/// Closes `tracker` and gives the connections it holds `grace` to finish.
pub(crate) async fn drain(tracker: &TaskTracker, grace: Duration) {
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            open = tracker.len(),
            "connections still open after the grace period"
        );
    }
}

/// Serves HTTPS (HTTP/1.1 and HTTP/2 by ALPN) on `listener` until `shutdown`.
pub(crate) async fn serve_https(
    listener: TcpListener,
    edge: Arc<Edge>,
    config: Arc<ServerConfig>,
    limits: Arc<Limits>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let builder = Arc::new(http_builder(&limits));
    accept_loop(
        (listener, Listener::Https),
        &edge,
        &limits,
        &shutdown,
        &tracker,
        {
            let (edge, limits, shutdown) = (edge.clone(), limits.clone(), shutdown.clone());
            move |stream, peer| {
                let (edge, config, builder, shutdown) = (
                    edge.clone(),
                    config.clone(),
                    builder.clone(),
                    shutdown.clone(),
                );
                let (handshake_timeout, header_timeout) =
                    (limits.handshake_timeout, limits.header_timeout);
                let shed = limits.shed.clone();
                let handshaking = limits.handshake(peer.ip());
                async move {
                    // Everything up to the connection is made in this block, so that none of it
                    // (the handshake's result holds the whole TLS stream) outlives it: a local
                    // whose scope spans the last await keeps a slot in this task for the
                    // connection's life, even once moved out (2.4 KiB of every idle connection).
                    let serving = {
                        // Closed at once, before a byte is read.
                        let Some(handshaking) = handshaking else {
                            return;
                        };
                        // Boxed, like the connection in `serve_connection`: each phase then costs
                        // its own size only while it runs.
                        let accepted = Box::pin(unless_stopped(
                            tokio::time::timeout(
                                handshake_timeout,
                                tls::accept(
                                    stream,
                                    &config,
                                    (&edge.sites, edge.on_demand.as_deref()),
                                    &edge.challenges,
                                    edge.default_sni.as_deref(),
                                ),
                            ),
                            &shutdown,
                        ))
                        .await;
                        drop(handshaking);
                        let Some(accepted) = accepted else {
                            return;
                        };
                        let (stream, name) = match accepted {
                            Ok(Ok(Some(pair))) => pair,
                            Ok(Ok(None)) => return,
                            Ok(Err(refused)) => {
                                tracing::debug!(%peer, %refused, "TLS connection refused");
                                edge.stats.handshake_failed(failure(&refused));
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                edge.stats.handshake_failed(HandshakeFailure::Timeout);
                                return;
                            }
                        };
                        edge.stats.handshake(
                            stream.get_ref().1.handshake_kind()
                                == Some(rustls::HandshakeKind::Resumed),
                        );
                        let session = Some((name, stream.get_ref().1));
                        let conn = Arc::new(Conn::new(peer, session, edge.forwarder.affinity()));
                        let agreed = Agreed::from_alpn(stream.get_ref().1.alpn_protocol());
                        let stream = StatusLine::new(stream, conn.clone());
                        let stream =
                            FirstRequest::new(stream, header_timeout, conn.clone(), agreed);
                        serve_connection(stream, edge, conn, &builder, shutdown, shed)
                    };
                    serving.await;
                }
            }
        },
    )
    .await;
}

/// `work`'s output, or `None` once a stop has come and [`FIRST_REQUEST_GRACE`] has passed
/// since: a handshake under way at the stop may finish, a stalled one does not hold the stop.
async fn unless_stopped<F: std::future::Future>(
    work: F,
    shutdown: &CancellationToken,
) -> Option<F::Output> {
    tokio::select! {
        output = work => Some(output),
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(FIRST_REQUEST_GRACE).await;
        } => None,
    }
}

/// How a refused TLS connection is counted.
fn failure(refused: &tls::Refused) -> HandshakeFailure {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    match refused {
        tls::Refused::UnknownName(_) | tls::Refused::NoServerName => HandshakeFailure::UnknownName,
        tls::Refused::Handshake(e)
            if matches!(e.kind(), UnexpectedEof | ConnectionReset | BrokenPipe) =>
        {
            HandshakeFailure::Closed
        }
        tls::Refused::Handshake(_) => HandshakeFailure::Protocol,
    }
}

/// Serves plain HTTP on `listener` until `shutdown`.
pub(crate) async fn serve_http(
    listener: TcpListener,
    edge: Arc<Edge>,
    limits: Arc<Limits>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let builder = Arc::new(http_builder(&limits));
    accept_loop(
        (listener, Listener::Http),
        &edge,
        &limits,
        &shutdown,
        &tracker,
        {
            let (edge, limits, shutdown) = (edge.clone(), limits.clone(), shutdown.clone());
            move |stream, peer| {
                let (edge, builder, shutdown) = (edge.clone(), builder.clone(), shutdown.clone());
                let (header_timeout, shed) = (limits.header_timeout, limits.shed.clone());
                async move {
                    let conn = Arc::new(Conn::new(peer, None, edge.forwarder.affinity()));
                    let stream = StatusLine::new(stream, conn.clone());
                    let stream =
                        FirstRequest::new(stream, header_timeout, conn.clone(), Agreed::Nothing);
                    serve_connection(stream, edge, conn, &builder, shutdown, shed).await;
                }
            }
        },
    )
    .await;
}

/// Serves HTTP on `io` until it ends or `shutdown`, closing it early (gracefully) when the
/// edge is crowded and it is idle. Not an `async fn`: the connection (which takes `io` in) is
/// made and boxed at once, so the future returned does not also keep a second, dead slot for
/// `io`, which for TLS is the whole rustls connection.
fn serve_connection<'b, IO>(
    io: IO,
    edge: Arc<Edge>,
    conn: Arc<Conn>,
    builder: &'b auto::Builder<TokioExecutor>,
    shutdown: CancellationToken,
    shed: Arc<Shed>,
) -> impl std::future::Future<Output = ()> + 'b
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let crowding = edge.clone();
    let watched = conn.clone();
    let stopping = shutdown.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
        let (edge, conn) = (edge.clone(), conn.clone());
        let handling = conn.handling();
        let version = req.version();
        if version == hyper::Version::HTTP_2 {
            conn.http2.store(true, Ordering::Relaxed);
        }
        // A request that comes during the drain is answered, and its connection closed after.
        let last = stopping.is_cancelled() && version < hyper::Version::HTTP_2;
        let http10 = (version == hyper::Version::HTTP_10).then(|| conn.clone());
        async move {
            let mut response = handle(edge, conn, req).await;
            drop(handling);
            if let Some(conn) = http10 {
                conn.http10_answer.store(true, Ordering::Relaxed);
            }
            if last && response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(response)
        }
    });
    let mut connection =
        Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
    async move {
        let mut closing = false;
        let result = 'serving: loop {
            tokio::select! {
                // In order: the connection is what wakes this task nearly every time, and no
                // random draw per wake-up.
                biased;
                result = connection.as_mut() => break result,
                _ = shutdown.cancelled() => {
                    // A connection accepted just before the stop may have its first request on
                    // the way, which its client cannot know to send again: it is answered
                    // first, if it comes within FIRST_REQUEST_GRACE (a connection opened
                    // ahead of need, as browsers do, would otherwise hold the stop for its
                    // whole first-request deadline). Later requests on a kept-alive connection
                    // a client does resend when it closes.
                    let waited = std::time::Instant::now();
                    while !watched.answered.load(Ordering::Relaxed)
                        && waited.elapsed() < FIRST_REQUEST_GRACE
                    {
                        tokio::select! {
                            result = connection.as_mut() => break 'serving result,
                            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                        }
                    }
                    // HTTP/1.1 has no way to say "no more requests" but on a response: closing
                    // a kept-alive connection between two requests loses the one its client
                    // may be sending right then. Its requests are answered with `Connection:
                    // close` from now on (which ends it), and it is closed here only once it
                    // has been quiet for DRAIN_QUIET. HTTP/2 has GOAWAY, sent at once.
                    if !watched.http2.load(Ordering::Relaxed) {
                        let mut quiet_since = None;
                        loop {
                            tokio::select! {
                                result = connection.as_mut() => break 'serving result,
                                _ = tokio::time::sleep(DRAIN_POLL) => {}
                            }
                            if !watched.quiet() {
                                quiet_since = None;
                            } else if quiet_since
                                .get_or_insert_with(std::time::Instant::now)
                                .elapsed()
                                >= DRAIN_QUIET
                            {
                                break;
                            }
                        }
                    }
                    connection.as_mut().graceful_shutdown();
                    break connection.await;
                }
                _ = crowding.crowded.notified(), if !closing => {
                    if watched.idle() {
                        // What is under way finishes; the connection closes after it.
                        closing = true;
                        shed.note(Reason::Idle);
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}
