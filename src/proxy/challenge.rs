//! HTTP-01 (RFC 8555 section 8.3): `/.well-known/acme-challenge/TOKEN` on the plain HTTP
//! listener is answered from the challenge answers in memory before routing.

use super::{error_response, Body};
use crate::challenges::{Answers, Lookup};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

const PREFIX: &str = "/.well-known/acme-challenge/";

/// The answer to an HTTP-01 validation request, or `None` when the request is not one Porter
/// holds a challenge for (it is then routed like any other).
pub(crate) fn http01<B>(answers: &Answers, req: &Request<B>) -> Option<Response<Body>> {
    let token = req.uri().path().strip_prefix(PREFIX)?;
    if token.is_empty() || token.contains('/') {
        return None;
    }
    match answers.http01(token) {
        Lookup::Found(key_authorization) => {
            let mut response = Response::new(
                Full::new(key_authorization)
                    .map_err(|never| match never {})
                    .boxed(),
            );
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            Some(response)
        }
        Lookup::Absent => None,
        // The store may hold it but has not answered yet: the validator may try again.
        Lookup::Unknown => Some(error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "challenge answers are not loaded yet",
        )),
    }
}
