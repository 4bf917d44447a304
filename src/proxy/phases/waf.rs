//! The WAF's place on a request's path, after the site's own gates and before the upstream:
//! the request as the engine sees it (every header, HTTP/2's `:authority` as `Host` and its
//! cookie fields joined, the body's first bytes up to the site's limit), and what the verdict
//! makes of it. The body read is sent on first, then the rest as it comes: a body longer than
//! the limit streams through unchecked, and the WAF log says so.

use crate::proxy::phases::answer::Own;
use crate::proxy::upstream::body::{ClientBody, Replayed, UpstreamBody};
use crate::proxy::{Conn, Edge};
use bytes::{Bytes, BytesMut};
use http::header::{COOKIE, HOST};
use http::{Request, Version};
use http_body_util::{BodyExt, Either, Empty};
use hyper::body::Body as _;
use porter_store::WafSettings;
use std::sync::Arc;

/// Inspects `req` for `site`; the request to forward, or Porter's answer.
pub(crate) async fn inspect(
    edge: &Edge,
    (site, settings): (&Arc<str>, WafSettings),
    conn: &Conn,
    req: Request<ClientBody>,
) -> Result<Request<UpstreamBody>, Own> {
    // An HTTP/2 WebSocket (CONNECT with a protocol) is the GET its upstream is sent.
    let method = match crate::proxy::upstream::upgrade::is_h2_websocket(&req) {
        true => "GET".to_owned(),
        false => req.method().as_str().to_owned(),
    };
    let (parts, body) = req.into_parts();
    let limit = settings.body_limit as usize;
    let (head, rest, trailers) = read_start(edge, body, limit).await?;
    // The last frame read may go past the limit: all of it goes on, its start is inspected.
    let truncated = rest.is_some() || head.len() > limit;
    let exchange = crate::waf::Exchange {
        id: crate::waf::request_id(),
        client: conn.peer_addr,
        method,
        uri: target(&parts),
        version: match parts.version {
            Version::HTTP_10 => "1.0",
            Version::HTTP_2 => "2.0",
            Version::HTTP_3 => "3.0",
            _ => "1.1",
        },
        headers: headers(&parts),
        body: head.slice(..head.len().min(limit)),
    };
    match edge.waf.inspect(site, settings, exchange, truncated).await {
        crate::waf::Verdict::Pass => {}
        crate::waf::Verdict::Block(id) => return Err(Own::WafBlocked(id)),
        crate::waf::Verdict::Unavailable => return Err(Own::WafUnavailable),
    }
    let body = if head.is_empty() && rest.is_none() && trailers.is_none() {
        Either::Right(Empty::new())
    } else {
        Either::Left(Replayed::read(head, rest, trailers))
    };
    Ok(Request::from_parts(parts, body))
}

/// Reads `body` until `limit` bytes (or more, the last frame whole): what was read, the rest
/// when there is more, and the trailers when it ended with them.
async fn read_start(
    edge: &Edge,
    body: ClientBody,
    limit: usize,
) -> Result<
    (
        Bytes,
        Option<crate::proxy::upstream::idle::IdleTimeout<ClientBody>>,
        Option<http::HeaderMap>,
    ),
    Own,
> {
    if body.is_end_stream() {
        return Ok((Bytes::new(), None, None));
    }
    let mut body = edge.forwarder.reading(body);
    let mut head = BytesMut::new();
    while head.len() < limit {
        match body.frame().await {
            None => return Ok((head.freeze(), None, None)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => head.extend_from_slice(&data),
                Err(frame) => return Ok((head.freeze(), None, frame.into_trailers().ok())),
            },
            Some(Err(_)) => return Err(Own::BodyTimedOut),
        }
    }
    let rest = (!body.is_end_stream()).then_some(body);
    Ok((head.freeze(), rest, None))
}

/// The request target as the client wrote it: origin form, or absolute form when it came so
/// in HTTP/1 (HTTP/2 always has an authority, which becomes `Host`).
fn target(parts: &http::request::Parts) -> String {
    match (parts.version, parts.uri.scheme()) {
        (Version::HTTP_2 | Version::HTTP_3, _) | (_, None) => parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned(),
        _ => parts.uri.to_string(),
    }
}

/// Every header as the engine reads it, `Host` first.
fn headers(parts: &http::request::Parts) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::with_capacity(parts.headers.len() + 1);
    match parts.headers.get(HOST) {
        Some(host) => out.push((b"Host".to_vec(), host.as_bytes().to_vec())),
        None => {
            if let Some(authority) = parts.uri.authority() {
                out.push((b"Host".to_vec(), authority.as_str().as_bytes().to_vec()));
            }
        }
    }
    // HTTP/2 and HTTP/3 may split cookies into fields of their own (RFC 9113 section 8.2.3).
    let h2 = parts.version >= Version::HTTP_2;
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in &parts.headers {
        if name == HOST {
            continue;
        }
        if h2 && name == COOKIE {
            cookies.push(value.as_bytes());
            continue;
        }
        out.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
    }
    if !cookies.is_empty() {
        out.push((b"Cookie".to_vec(), cookies.join(&b"; "[..])));
    }
    out
}
