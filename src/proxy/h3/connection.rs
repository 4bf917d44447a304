//! One HTTP/3 connection: its handshake (within the handshake timeout), then its requests, each
//! in a task of its own answered by the request path HTTP/1.1 and HTTP/2 take
//! (`request::answer`), its response written back with a bound on how long a client may stall
//! it. At a stop the connection says GOAWAY, finishes the requests it took, and closes with
//! H3_NO_ERROR.

use super::body::RequestBody;
use super::resumed::Handshaken;
use crate::observe::metrics::HandshakeFailure;
use crate::proxy::connection::listener::Limits;
use crate::proxy::connection::per_ip::Counted;
use crate::proxy::phases::headers::content_length;
use crate::proxy::request::answer;
use crate::proxy::upstream::body::{Body, ClientBody};
use crate::proxy::upstream::idle::BoxError;
use crate::proxy::{Conn, Edge};
use bytes::Bytes;
use h3::error::Code;
use h3::server::{RequestResolver, RequestStream};
use http::header::{HeaderName, CONNECTION, DATE, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt as _;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Streams a client may break off before they are answered (reset with their head), and the
/// share of its streams they may be, before its connection is closed with H3_EXCESSIVE_LOAD:
/// a client that opens and resets streams as fast as it can (CVE-2023-44487 on HTTP/2) makes
/// the edge work for nothing, while a browser cancels a few when its user moves on.
const BROKEN_OFF: u32 = 100;
const H3_EXCESSIVE_LOAD: u32 = 0x107;

/// How long a client may leave a response unread (no flow-control credit) before its stream is
/// reset: QUIC's idle timeout never fires for a client that acknowledges packets.
const SEND_STALL: Duration = Duration::from_secs(30);

type Connection = h3::server::Connection<h3_quinn::Connection, Bytes>;
type Send = RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;

/// Serves the connection `connecting` becomes, until it ends or `shutdown` and its drain.
pub(super) async fn serve(
    connecting: Result<quinn::Connecting, quinn::ConnectionError>,
    handshaking: Handshaking,
    edge: Arc<Edge>,
    limits: Arc<Limits>,
    shutdown: CancellationToken,
) {
    let connecting = async { connecting?.await };
    let quic = match tokio::time::timeout(limits.handshake_timeout, connecting).await {
        Ok(Ok(quic)) => quic,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "QUIC handshake failed");
            edge.stats.handshake_failed(failure(&e));
            return;
        }
        Err(_) => {
            tracing::debug!("QUIC handshake timed out");
            edge.stats.handshake_failed(HandshakeFailure::Timeout);
            return;
        }
    };
    drop(handshaking);
    let peer = quic.remote_address();
    let handshaken = quic
        .handshake_data()
        .and_then(|data| data.downcast::<Handshaken>().ok());
    let resumed = handshaken.as_ref().is_some_and(|h| h.resumed);
    // The resolver chose a certificate for this name (or the default name).
    let name = handshaken
        .and_then(|h| {
            crate::tls::server_name(h.data.server_name.as_deref(), edge.default_sni.as_deref())
        })
        .unwrap_or_default();
    edge.stats.handshake(resumed);
    let conn = Arc::new(Conn::quic(peer, (name, resumed), edge.forwarder.affinity()));
    let closer = quic.clone();
    let built = h3::server::builder()
        .max_field_section_size(limits.max_header_size as u64)
        // No grease: h3 sends its frame at the end of the first response, after the data,
        // and a client that reads the end of a response from its last frame (aioquic) then
        // never sees that response end.
        .send_grease(false)
        .build(h3_quinn::Connection::new(quic))
        .await;
    let mut h3: Connection = match built {
        Ok(h3) => h3,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "HTTP/3 connection not set up");
            return;
        }
    };
    let requests = TaskTracker::new();
    let mut closing = false;
    let (broken_off, mut taken) = (Arc::new(AtomicU32::new(0)), 0u32);
    loop {
        tokio::select! {
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) if closing => {
                    // h3 lets through the stream its own GOAWAY names; RFC 9114 section 5.2
                    // says that one is not processed (see the shutdown below).
                    requests.spawn(reject(resolver, limits.header_timeout));
                }
                Ok(Some(resolver)) => {
                    taken = taken.saturating_add(1);
                    let broken = broken_off.load(Ordering::Relaxed);
                    if broken > BROKEN_OFF && broken.saturating_mul(2) > taken {
                        tracing::debug!(%peer, broken, taken, "HTTP/3 connection closed: its client breaks off its streams");
                        closer.close(quinn::VarInt::from_u32(H3_EXCESSIVE_LOAD), b"streams broken off");
                        break;
                    }
                    let to = (edge.clone(), conn.clone(), limits.clone());
                    requests.spawn(request(resolver, to, broken_off.clone()));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "HTTP/3 connection ended");
                    break;
                }
            },
            _ = shutdown.cancelled(), if !closing => {
                closing = true;
                requests.close();
                // GOAWAY with the id after the last stream taken: h3 adds its argument to
                // that stream's id, so 1 names the first one not taken (0 would say the last
                // one taken was not processed).
                if h3.shutdown(1).await.is_err() {
                    break;
                }
            }
            () = requests.wait(), if closing => break,
        }
    }
    requests.close();
    requests.wait().await;
    // Dropping the connection closes it with H3_NO_ERROR.
}

/// How a failed QUIC handshake is counted.
fn failure(e: &quinn::ConnectionError) -> HandshakeFailure {
    use quinn::ConnectionError as E;
    match e {
        // rustls says access_denied when the resolver has no certificate for the name.
        E::TransportError(e) if e.code == quinn::TransportErrorCode::crypto(49) => {
            HandshakeFailure::UnknownName
        }
        E::TimedOut => HandshakeFailure::Timeout,
        E::ConnectionClosed(_) | E::ApplicationClosed(_) | E::Reset => HandshakeFailure::Closed,
        _ => HandshakeFailure::Protocol,
    }
}

/// Answers a stream that came after GOAWAY: rejected, so that its client may send it again
/// elsewhere.
async fn reject(resolver: RequestResolver<h3_quinn::Connection, Bytes>, wait: Duration) {
    if let Ok(Ok((_, mut stream))) = tokio::time::timeout(wait, resolver.resolve_request()).await {
        stream.stop_sending(Code::H3_REQUEST_REJECTED);
        stream.stop_stream(Code::H3_REQUEST_REJECTED);
    }
}

/// One request: its head (within the header timeout), then its answer, written back; counted
/// in `broken_off` when its client reset it with its head.
async fn request(
    resolver: RequestResolver<h3_quinn::Connection, Bytes>,
    (edge, conn, limits): (Arc<Edge>, Arc<Conn>, Arc<Limits>),
    broken_off: Arc<AtomicU32>,
) {
    let resolved = tokio::time::timeout(limits.header_timeout, resolver.resolve_request()).await;
    let (req, stream) = match resolved {
        Ok(Ok(resolved)) => resolved,
        // Reset before its head could be read (quinn drops what a reset stream held), or
        // malformed, or no head in time: nothing to answer.
        Ok(Err(e)) => {
            tracing::debug!(peer = %conn.peer_addr, error = %e, "HTTP/3 request refused");
            broken_off.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Err(_) => {
            broken_off.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let (mut send, recv) = stream.split();
    // HEAD is answered without content, as hyper does on HTTP/1.1 and HTTP/2.
    let head = req.method() == Method::HEAD;
    if req.headers().len() > limits.max_headers {
        let too_many = own(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let _ = respond(&mut send, too_many, head).await;
        return;
    }
    // A malformed length is refused on the request path before the body is read.
    let declared = content_length(req.headers()).ok().flatten();
    let mut body = RequestBody::new(recv, declared);
    // Without a length, what follows the head is awaited (a client that waits for `100
    // Continue` excepted): a request without a body then goes upstream without one.
    if declared.is_none() && !req.headers().contains_key(EXPECT) {
        let _ = tokio::time::timeout(limits.header_timeout, body.settled()).await;
    }
    if body.broken_off() {
        broken_off.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let body = ClientBody::other(Box::pin(body));
    let handling = conn.handling();
    let response = answer(edge, conn, req.map(|()| body), None).await;
    drop(handling);
    if let Err(e) = respond(&mut send, response, head).await {
        tracing::debug!(error = %e, "HTTP/3 response not sent in full");
        send.stop_stream(Code::H3_REQUEST_CANCELLED);
    }
}

/// A response of Porter's own with no body.
fn own(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(crate::proxy::upstream::body::full(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// Headers that describe one connection, which HTTP/3 forbids (RFC 9114 section 4.2); an
/// HTTP/1.1 upstream may send them.
const CONNECTION_SPECIFIC: [HeaderName; 5] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Writes `response` to `send`: its head, its body as it comes (unless it answers a `head`
/// request), its trailers, then the stream's end; each write waits for the client's
/// flow-control credit, at most [`SEND_STALL`].
async fn respond(send: &mut Send, response: Response<Body>, head: bool) -> Result<(), BoxError> {
    let (mut parts, mut body) = response.into_parts();
    for name in &CONNECTION_SPECIFIC {
        parts.headers.remove(name);
    }
    // hyper adds it on HTTP/1.1 and HTTP/2; h3 does not.
    if !parts.headers.contains_key(DATE) {
        let now = httpdate::fmt_http_date(SystemTime::now());
        if let Ok(date) = HeaderValue::from_str(&now) {
            parts.headers.insert(DATE, date);
        }
    }
    within(send.send_response(Response::from_parts(parts, ()))).await?;
    while let Some(frame) = body.frame().await.filter(|_| !head) {
        match frame?.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) => within(send.send_data(data)).await?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    within(send.send_trailers(trailers)).await?;
                }
                break;
            }
        }
    }
    within(send.finish()).await?;
    Ok(())
}

/// A write to the client, failed when it has waited [`SEND_STALL`] for flow-control credit.
async fn within(
    write: impl std::future::Future<Output = Result<(), h3::error::StreamError>>,
) -> Result<(), BoxError> {
    Ok(tokio::time::timeout(SEND_STALL, write).await??)
}

/// A handshake counted as under way, node-wide and for its client's address, until dropped.
pub(super) struct Handshaking {
    under_way: Arc<AtomicUsize>,
    _counted: Option<Counted>,
}

impl Handshaking {
    /// Counts a handshake in `under_way`, and `counted` for its client's address.
    pub(super) fn start(under_way: &Arc<AtomicUsize>, counted: Option<Counted>) -> Handshaking {
        under_way.fetch_add(1, Ordering::Relaxed);
        Handshaking {
            under_way: under_way.clone(),
            _counted: counted,
        }
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.under_way.fetch_sub(1, Ordering::Relaxed);
    }
}
