//! Response compression, for the sites that turn it on: br, zstd or gzip as the client's
//! `Accept-Encoding` prefers (ties go to br, then zstd, then gzip), for compressible types of
//! at least [`MIN_SIZE`] bytes (or of unknown size), encoded as the upstream's body streams in:
//! no whole body is held. Never for a response that is already encoded, marked
//! `Cache-Control: no-transform` (RFC 9111 section 5.2.2.6), partial (206, `Content-Range`),
//! without a body, an event stream (whose events must not wait for a full block), or for a
//! `HEAD` request.

use crate::proxy::upstream::body::Body;
use crate::proxy::upstream::idle::BoxError;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use async_compression::Level;
use futures_util::TryStreamExt as _;
use http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

/// Smaller bodies gain too little to pay for the encoder.
const MIN_SIZE: u64 = 1024;

/// A content coding Porter encodes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Br,
    Zstd,
    Gzip,
}

impl Coding {
    const PREFERRED: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }
}

/// The coding to answer a request with these headers in, if it accepts one.
pub(crate) fn chosen(request: &HeaderMap) -> Option<Coding> {
    let mut weights = [None::<f32>; 3];
    let mut any = None::<f32>;
    for value in request.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let token = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if token == "*" {
                any = Some(q);
            } else if let Some(at) = Coding::PREFERRED
                .iter()
                .position(|c| token.eq_ignore_ascii_case(c.token()))
            {
                weights[at] = Some(q);
            }
        }
    }
    let mut best: Option<(Coding, f32)> = None;
    for (coding, weight) in Coding::PREFERRED.into_iter().zip(weights) {
        let q = weight.or(any).unwrap_or(0.0);
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((coding, q));
        }
    }
    best.map(|(coding, _)| coding)
}

/// Whether a response with these headers is worth encoding, and may be.
fn worth_it(status: StatusCode, headers: &HeaderMap) -> bool {
    if status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        )
    {
        return false;
    }
    let encoded = headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let no_transform = headers.get_all(CACHE_CONTROL).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("no-transform"))
    });
    if encoded || no_transform || headers.contains_key(CONTENT_RANGE) {
        return false;
    }
    let small = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|length| length < MIN_SIZE);
    !small && headers.get(CONTENT_TYPE).is_some_and(compressible)
}

/// Text and the structured formats that are text underneath; not images (but SVG), audio,
/// video, archives or fonts already compressed (woff, woff2).
fn compressible(content_type: &HeaderValue) -> bool {
    let Ok(value) = content_type.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "text/event-stream" {
        return false;
    }
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/javascript"
                | "application/x-javascript"
                | "application/xml"
                | "application/wasm"
                | "application/manifest+json"
                | "image/svg+xml"
                | "image/x-icon"
                | "font/ttf"
                | "font/otf"
                | "application/vnd.ms-fontobject"
        )
}

/// `response` encoded in `coding` when it is worth it, else as it is.
pub(crate) fn encode(coding: Coding, response: Response<Body>) -> Response<Body> {
    if !worth_it(response.status(), response.headers()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let headers = &mut parts.headers;
    headers.remove(CONTENT_LENGTH);
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
    let varies = headers.get_all(VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case("accept-encoding"))
        })
    });
    if !varies {
        headers.append(VARY, HeaderValue::from_static("accept-encoding"));
    }
    // The encoded bytes differ from the upstream's: a strong validator would be a lie.
    if let Some(etag) = headers.get(ETAG) {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(weak) = HeaderValue::from_bytes(&weak) {
                headers.insert(ETAG, weak);
            }
        }
    }
    let input = StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
    let encoder: Box<dyn AsyncRead + Send + Sync + Unpin> = match coding {
        Coding::Br => Box::new(BrotliEncoder::with_quality(input, Level::Precise(4))),
        Coding::Zstd => Box::new(ZstdEncoder::with_quality(input, Level::Precise(3))),
        Coding::Gzip => Box::new(GzipEncoder::with_quality(input, Level::Precise(5))),
    };
    let output = ReaderStream::with_capacity(encoder, 16 * 1024)
        .map_ok(Frame::data)
        .map_err(BoxError::from);
    Response::from_parts(parts, StreamBody::new(output).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Option<Coding> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        chosen(&headers)
    }

    #[test]
    fn the_client_weights_win_then_porters_order() {
        assert_eq!(accept("gzip, deflate, br, zstd"), Some(Coding::Br));
        assert_eq!(accept("gzip;q=1, br;q=0.5"), Some(Coding::Gzip));
        assert_eq!(accept("zstd, gzip"), Some(Coding::Zstd));
        assert_eq!(accept("br;q=0, gzip"), Some(Coding::Gzip));
        assert_eq!(accept("*"), Some(Coding::Br));
        assert_eq!(accept("*;q=0, gzip;q=0"), None);
        assert_eq!(accept("identity"), None);
        assert_eq!(chosen(&HeaderMap::new()), None);
    }

    #[test]
    fn only_what_gains_and_may_be_transformed_is_encoded() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, HeaderValue::from_static(v));
            }
            h
        };
        let ok = StatusCode::OK;
        assert!(worth_it(
            ok,
            &headers(&[("content-type", "text/html; charset=utf-8")])
        ));
        assert!(worth_it(
            ok,
            &headers(&[
                ("content-type", "application/json"),
                ("content-length", "5000")
            ])
        ));
        assert!(!worth_it(
            ok,
            &headers(&[("content-type", "text/html"), ("content-length", "100")])
        ));
        assert!(!worth_it(ok, &headers(&[("content-type", "image/png")])));
        assert!(!worth_it(
            ok,
            &headers(&[("content-type", "text/html"), ("content-encoding", "gzip")])
        ));
        assert!(!worth_it(
            ok,
            &headers(&[
                ("content-type", "text/html"),
                ("cache-control", "public, No-Transform")
            ])
        ));
        assert!(!worth_it(
            ok,
            &headers(&[("content-type", "text/event-stream")])
        ));
        assert!(!worth_it(
            StatusCode::PARTIAL_CONTENT,
            &headers(&[("content-type", "text/html")])
        ));
    }
}
