//! HTTP-01 (RFC 8555 section 8.3): `/.well-known/acme-challenge/TOKEN` on the plain HTTP
//! listener is answered from the store before routing, so that every edge sharing the store can
//! answer for a challenge any of them started.

use super::{error_response, Body};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use porter_store::Store;

const PREFIX: &str = "/.well-known/acme-challenge/";

/// The answer to an HTTP-01 validation request, or `None` when the request is not one Porter
/// holds a challenge for (it is then routed like any other).
pub(crate) async fn http01<B>(store: &dyn Store, req: &Request<B>) -> Option<Response<Body>> {
    let token = req.uri().path().strip_prefix(PREFIX)?;
    if token.is_empty() || token.contains('/') {
        return None;
    }
    match store.http01(token).await {
        Ok(Some(challenge)) => {
            let mut response = Response::new(
                Full::new(Bytes::from(challenge.key_authorization))
                    .map_err(|never| match never {})
                    .boxed(),
            );
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            Some(response)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the challenge store");
            Some(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "challenge store unavailable",
            ))
        }
    }
}
