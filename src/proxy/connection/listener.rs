//! Accept loops for the HTTPS and plain HTTP listeners: a bound on open connections, deadlines
//! on the handshake and on request headers, one task per connection (a panic stays in it), and
//! a graceful close of every connection on shutdown.

use crate::observe::metrics::{HandshakeFailure, Listener};
use crate::proxy::connection::ceiling::MemoryCeiling;
use crate::proxy::connection::chunk_size::ChunkSize;
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
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    pub(crate) fn handshake(&self, peer: IpAddr) -> Option<Option<Counted>> {
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
    F: Fn(TcpStream, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    // When this thread last asked its idle connections to make room.
    let mut made_room: Option<Instant> = None;
    while let Some((stream, peer)) = accept(&listener, shutdown).await {
        make_room(edge, limits, &mut made_room);
        let Some(held) = hold(edge, limits, kind, &stream) else {
            continue;
        };
        match &limits.proxy_protocol {
            Some(proxy) if !proxy.trusts(peer.ip()) => limits.shed.note(Reason::ProxyProtocol),
            // The client is known once the header is read, in the connection's own task.
            Some(_) => {
                let behind = behind_proxy(stream, peer, held, limits.clone(), accepted.clone());
                tracker.spawn(behind);
            }
            None => match limits.per_ip.admit(peer.ip()) {
                Some(counted) => {
                    let task = accepted(stream, peer);
                    tracker.spawn(async move {
                        task.await;
                        drop((held, counted));
                    });
                }
                None => limits.shed.note(Reason::ConnectionsPerIp),
            },
        }
    }
}

/// The next connection on `listener`, or `None` once `shutdown` has come.
async fn accept(
    listener: &TcpListener,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            result = listener.accept() => match result {
                Ok(pair) => return Some(pair),
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    crate::runtime::log_limit::limited!(warn, "accept failed", error = %e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Near the connection limit, asks idle keep-alive connections to close, so that new clients
/// are not the ones refused. At most once a second (`made_room` says when it last did): each
/// call wakes every connection.
fn make_room(edge: &Edge, limits: &Limits, made_room: &mut Option<Instant>) {
    if limits.connections.available_permits() < limits.crowded_below
        && made_room.is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
    {
        *made_room = Some(Instant::now());
        edge.crowded.notify_waiters();
    }
}

/// What an accepted connection holds while it is open (its slot among the open connections,
/// and its count as open), or `None` when the memory ceiling or the connection limit refuse it.
fn hold(
    edge: &Edge,
    limits: &Arc<Limits>,
    kind: Listener,
    stream: &TcpStream,
) -> Option<impl Send + 'static> {
    if limits.memory.over() {
        // Counted by the ceiling's watch, once a second.
        return None;
    }
    let Ok(permit) = limits.connections.clone().try_acquire_owned() else {
        limits.shed.note(Reason::Connections);
        return None;
    };
    let _ = stream.set_nodelay(true);
    Some((permit, edge.stats.open(kind)))
}

/// A connection from a trusted balancer: its PROXY header names the client, which is then
/// bounded like any other and served with `accepted`, `held` until it ends.
async fn behind_proxy<F, Fut>(
    mut stream: TcpStream,
    peer: SocketAddr,
    held: impl Send + 'static,
    limits: Arc<Limits>,
    accepted: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()>,
{
    let timeout = limits.handshake_timeout;
    let Some(client) = limits_client(&limits, &mut stream, peer, timeout).await else {
        return;
    };
    let Some(counted) = limits.per_ip.admit(client.ip()) else {
        limits.shed.note(Reason::ConnectionsPerIp);
        return;
    };
    accepted(stream, client).await;
    drop((held, counted));
}

/// The client a trusted balancer names in its PROXY header; `None` (counted) when it names
/// none in time.
async fn limits_client(
    limits: &Limits,
    stream: &mut TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<SocketAddr> {
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
    let https = Https {
        edge: edge.clone(),
        config,
        builder: Arc::new(http_builder(&limits)),
        limits: limits.clone(),
        shutdown: shutdown.clone(),
    };
    let accepted = move |stream, peer: SocketAddr| {
        // Refused, or counted, before the connection's task is made.
        let handshaking = https.limits.handshake(peer.ip());
        serve_tls(stream, peer, handshaking, https.clone())
    };
    let listening = (listener, Listener::Https);
    accept_loop(listening, &edge, &limits, &shutdown, &tracker, accepted).await;
}

/// What every HTTPS connection's task shares.
#[derive(Clone)]
struct Https {
    edge: Arc<Edge>,
    config: Arc<ServerConfig>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Arc<Limits>,
    shutdown: CancellationToken,
}

/// Serves one HTTPS connection: its TLS handshake, when `handshaking` allows one, then HTTP.
async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    handshaking: Option<Option<Counted>>,
    https: Https,
) {
    let Https {
        edge,
        config,
        builder,
        limits,
        shutdown,
    } = https;
    // Everything up to the connection is made in this block, so that none of it (the
    // handshake's result holds the whole TLS stream) outlives it: a local whose scope spans
    // the last await keeps a slot in this task for the connection's life, even once moved out
    // (2.4 KiB of every idle connection).
    let serving = {
        // Closed at once, before a byte is read.
        let Some(handshaking) = handshaking else {
            return;
        };
        // Boxed, like the connection in `serve_connection`: each phase then costs its own
        // size only while it runs.
        let accepted = Box::pin(unless_stopped(
            tokio::time::timeout(
                limits.handshake_timeout,
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
        let Some((stream, name)) = accepted.and_then(|outcome| handshaken(outcome, peer, &edge))
        else {
            return;
        };
        let session = stream.get_ref().1;
        edge.stats
            .handshake(session.handshake_kind() == Some(rustls::HandshakeKind::Resumed));
        let agreed = Agreed::from_alpn(session.alpn_protocol());
        let session = Some((name, session));
        let conn = Arc::new(Conn::new(peer, session, edge.forwarder.affinity()));
        let stream = opened(stream, &conn, limits.header_timeout, agreed);
        let shed = limits.shed.clone();
        serve_connection(stream, edge, conn, &builder, shutdown, shed)
    };
    serving.await;
}

/// The TLS stream and server name a handshake ended with, or `None` (counted) when it was
/// refused or timed out.
fn handshaken<S>(
    outcome: Result<Result<Option<(S, String)>, tls::Refused>, tokio::time::error::Elapsed>,
    peer: SocketAddr,
    edge: &Edge,
) -> Option<(S, String)> {
    match outcome {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(refused)) => {
            tracing::debug!(%peer, %refused, "TLS connection refused");
            edge.stats.handshake_failed(failure(&refused));
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            edge.stats.handshake_failed(HandshakeFailure::Timeout);
            None
        }
    }
}

/// `stream` as HTTP is served on it: its first request awaited and the protocol ALPN
/// `agreed` held to, HTTP/1.0 answered with HTTP/1.1 status lines, and its request chunk
/// sizes bounded unless it is HTTP/2.
fn opened<IO>(
    stream: IO,
    conn: &Arc<Conn>,
    header_timeout: Duration,
    agreed: Agreed,
) -> FirstRequest<StatusLine<ChunkSize<IO>, Arc<Conn>>, Arc<Conn>> {
    let stream = ChunkSize::new(stream, agreed != Agreed::H2);
    let stream = StatusLine::new(stream, conn.clone());
    FirstRequest::new(stream, header_timeout, conn.clone(), agreed)
}

/// `work`'s output, or `None` once a stop has come and [`FIRST_REQUEST_GRACE`] has passed
/// since: a handshake under way at the stop may finish, a stalled one does not hold the stop.
async fn unless_stopped<F: Future>(work: F, shutdown: &CancellationToken) -> Option<F::Output> {
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
    let accepted = {
        let (edge, limits, shutdown) = (edge.clone(), limits.clone(), shutdown.clone());
        move |stream, peer| {
            let (edge, builder, shutdown) = (edge.clone(), builder.clone(), shutdown.clone());
            let (header_timeout, shed) = (limits.header_timeout, limits.shed.clone());
            async move {
                let conn = Arc::new(Conn::new(peer, None, edge.forwarder.affinity()));
                let stream = opened(stream, &conn, header_timeout, Agreed::Nothing);
                serve_connection(stream, edge, conn, &builder, shutdown, shed).await;
            }
        }
    };
    let listening = (listener, Listener::Http);
    accept_loop(listening, &edge, &limits, &shutdown, &tracker, accepted).await;
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
) -> impl Future<Output = ()> + 'b
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let crowding = edge.clone();
    let watched = conn.clone();
    let stopping = shutdown.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
        let (edge, conn) = (edge.clone(), conn.clone());
        let handling = conn.handling();
        let (last, http10) = arrived(&conn, req.version(), &stopping);
        // HTTPS responses offer HTTP/3 when it is on.
        let alt_svc = conn.tls_name.as_ref().and(edge.alt_svc.clone());
        // Boxed: hyper moves the request's future into each HTTP/2 stream's task, and tokio
        // into the task's cell, a copy of its whole size each time; a box moves as a pointer.
        Box::pin(async move {
            let mut response = handle(edge, conn, req).await;
            drop(handling);
            if let Some(alt_svc) = alt_svc {
                response
                    .headers_mut()
                    .entry(http::header::ALT_SVC)
                    .or_insert(alt_svc);
            }
            Ok::<_, Infallible>(finished(response, last, http10))
        })
    });
    let mut connection =
        Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
    async move {
        let mut closing = false;
        let result = loop {
            tokio::select! {
                // In order: the connection is what wakes this task nearly every time, and no
                // random draw per wake-up.
                biased;
                result = connection.as_mut() => break result,
                _ = shutdown.cancelled() => {
                    // The connection is served meanwhile, and may end on its own.
                    tokio::select! {
                        result = connection.as_mut() => break result,
                        () = closable(&watched) => {}
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

/// Notes a request of `version` arriving on `conn`: whether its response is the connection's
/// last (a request that comes during the drain is answered, and its connection closed after),
/// and the connection to tell when the response answers HTTP/1.0.
fn arrived(
    conn: &Arc<Conn>,
    version: hyper::Version,
    stopping: &CancellationToken,
) -> (bool, Option<Arc<Conn>>) {
    if version == hyper::Version::HTTP_2 {
        conn.http2.store(true, Ordering::Relaxed);
    }
    let last = stopping.is_cancelled() && version < hyper::Version::HTTP_2;
    let http10 = (version == hyper::Version::HTTP_10).then(|| conn.clone());
    (last, http10)
}

/// `response` as it leaves, with what [`arrived`] noted of its request.
fn finished<B>(
    mut response: hyper::Response<B>,
    last: bool,
    http10: Option<Arc<Conn>>,
) -> hyper::Response<B> {
    if let Some(conn) = http10 {
        conn.http10_answer.store(true, Ordering::Relaxed);
    }
    if last && response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Ends, once a stop has come, when the connection `watched` may be closed.
async fn closable(watched: &Conn) {
    // A connection accepted just before the stop may have its first request on the way, which
    // its client cannot know to send again: it is answered first, if it comes within
    // FIRST_REQUEST_GRACE (a connection opened ahead of need, as browsers do, would otherwise
    // hold the stop for its whole first-request deadline). Later requests on a kept-alive
    // connection a client does resend when it closes.
    let waited = Instant::now();
    while !watched.answered.load(Ordering::Relaxed) && waited.elapsed() < FIRST_REQUEST_GRACE {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // HTTP/1.1 has no way to say "no more requests" but on a response: closing a kept-alive
    // connection between two requests loses the one its client may be sending right then. Its
    // requests are answered with `Connection: close` from now on (which ends it), and it is
    // closed here only once it has been quiet for DRAIN_QUIET. HTTP/2 has GOAWAY, sent at once.
    if watched.http2.load(Ordering::Relaxed) {
        return;
    }
    let mut quiet_since = None;
    loop {
        tokio::time::sleep(DRAIN_POLL).await;
        if !watched.quiet() {
            quiet_since = None;
        } else if quiet_since.get_or_insert_with(Instant::now).elapsed() >= DRAIN_QUIET {
            return;
        }
    }
}
