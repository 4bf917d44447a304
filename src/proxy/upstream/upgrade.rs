//! WebSocket through the proxy: HTTP/1.1 `Upgrade` passed through, and RFC 8441 extended
//! CONNECT on HTTP/2 translated to an HTTP/1.1 upgrade towards the upstream. Once both sides
//! have switched, bytes are copied in both directions until either closes.

use crate::apps::Lease;
use crate::proxy::upstream::body::UpstreamBody;
use base64::Engine as _;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Whether this is an RFC 8441 WebSocket request (HTTP/2 CONNECT with `:protocol websocket`).
pub(crate) fn is_h2_websocket<B>(req: &Request<B>) -> bool {
    req.method() == Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// The HTTP/1.1 upgrade request an upstream understands for an RFC 8441 request: a GET with
/// `Upgrade: websocket` and a fresh `Sec-WebSocket-Key` (HTTP/2 has none, RFC 8441 section 5).
pub(crate) fn h1_request_for_h2_websocket<B>(req: Request<B>) -> Request<UpstreamBody> {
    let (mut parts, _) = req.into_parts();
    parts.method = Method::GET;
    let key: [u8; 16] = rand::random();
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    parts
        .headers
        .insert(UPGRADE, HeaderValue::from_static("websocket"));
    parts
        .headers
        .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(
        "sec-websocket-key",
        HeaderValue::from_str(&key).expect("base64 is a valid header value"),
    );
    parts.extensions.remove::<hyper::ext::Protocol>();
    Request::from_parts(parts, Either::Right(Empty::new()))
}

/// The HTTP/2 answer to an upstream's `101 Switching Protocols`: `200` with the negotiated
/// subprotocol and extensions (RFC 8441 section 5).
pub(crate) fn h2_response_for_switch(upstream: &Response<Incoming>) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::OK;
    for name in ["sec-websocket-protocol", "sec-websocket-extensions"] {
        if let Some(value) = upstream.headers().get(name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// Copies bytes both ways once both sides have switched protocols; an app's lease is held
/// until the tunnel closes.
pub(crate) fn tunnel(client: OnUpgrade, upstream: OnUpgrade, lease: Option<Lease>) {
    tokio::spawn(async move {
        let _lease = lease;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(error = %e, "upgraded connection ended");
        }
    });
}
