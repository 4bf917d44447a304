//! Every answer Porter makes itself, rather than relaying the upstream's, in one list rendered
//! in one place: plain text for people, with the status a client acts on.

use crate::apps::Unavailable;
use crate::proxy::upstream::body::{full, Body};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Response, StatusCode};

/// The header that carries the unique id of a request the WAF refused.
const REQUEST_ID: HeaderName = HeaderName::from_static("porter-request-id");

/// An answer of Porter's own.
#[derive(Debug)]
pub(crate) enum Own {
    /// 200: the key authorization of an HTTP-01 challenge (RFC 8555 section 8.3).
    Http01(Bytes),
    /// 308 to this URL over HTTPS: the site has a valid certificate.
    ToHttps(HeaderValue),
    /// A redirect of the site's own (its canonical name, or a path rule).
    Redirect {
        status: StatusCode,
        location: HeaderValue,
    },
    /// 401: the site (or the path) asks for basic auth, in this realm (the site's name).
    Unauthorized(String),
    /// 403: the site does not serve the client's address.
    Forbidden,
    /// 400: the request names no host.
    NoHost,
    /// 400: a target that cannot be redirected.
    BadTarget,
    /// 400: a message no intermediary may pass on (RFC 9112): why.
    Malformed(&'static str),
    /// 408: the request body stopped coming.
    BodyTimedOut,
    /// 501: a transfer coding Porter does not know (RFC 9112 section 6.1).
    UnknownCoding,
    /// 404 on plain HTTP, 421 on HTTPS: no site is served under the name.
    UnknownSite { https: bool },
    /// 421: the connection's certificate does not serve the name (RFC 9110 section 15.5.20).
    OtherCertificate,
    /// 405: CONNECT is not proxied.
    Connect,
    /// 503: before the first full read of the store, the store did not answer in time.
    Loading,
    /// 503: the challenge answers are not known yet; the validator may try again.
    ChallengesLoading,
    /// 503 with `Retry-After`: the site's app cannot serve now.
    App(Unavailable),
    /// 429 with `Retry-After`: the client is over its request rate for the site.
    TooMany(std::time::Duration),
    /// 503 with `Retry-After`: the site (or its upstream) has every request slot taken and
    /// its queue full.
    Busy,
    /// 502: the upstream refused or broke off the exchange.
    Unreachable,
    /// 504: the upstream did not answer in time.
    TimedOut,
    /// 403: the site's WAF refused the request, whose unique id this is.
    WafBlocked(String),
    /// 503 with `Retry-After`: the site's WAF blocks, and could not inspect the request.
    WafUnavailable,
}

impl Own {
    fn status(&self) -> StatusCode {
        match self {
            Own::Http01(_) => StatusCode::OK,
            Own::ToHttps(_) => StatusCode::PERMANENT_REDIRECT,
            Own::Redirect { status, .. } => *status,
            Own::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Own::Forbidden | Own::WafBlocked(_) => StatusCode::FORBIDDEN,
            Own::NoHost | Own::BadTarget | Own::Malformed(_) => StatusCode::BAD_REQUEST,
            Own::BodyTimedOut => StatusCode::REQUEST_TIMEOUT,
            Own::UnknownCoding => StatusCode::NOT_IMPLEMENTED,
            Own::UnknownSite { https: false } => StatusCode::NOT_FOUND,
            Own::UnknownSite { https: true } | Own::OtherCertificate => {
                StatusCode::MISDIRECTED_REQUEST
            }
            Own::Connect => StatusCode::METHOD_NOT_ALLOWED,
            Own::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            Own::Loading
            | Own::ChallengesLoading
            | Own::App(_)
            | Own::Busy
            | Own::WafUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Own::Unreachable => StatusCode::BAD_GATEWAY,
            Own::TimedOut => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn message(&self) -> String {
        match self {
            Own::Http01(_) => String::new(),
            Own::ToHttps(_) => "this site is served over HTTPS".into(),
            Own::Redirect { .. } => "moved".into(),
            Own::Unauthorized(_) => "authentication required".into(),
            Own::Forbidden => "this site is not served to your address".into(),
            Own::NoHost => "the request names no host".into(),
            Own::BadTarget => "bad request target".into(),
            Own::Malformed(why) => (*why).into(),
            Own::BodyTimedOut => "the request body stopped coming".into(),
            Own::UnknownCoding => "unknown transfer coding (only chunked is supported)".into(),
            Own::UnknownSite { .. } => "no site is served under this name".into(),
            Own::OtherCertificate => "this connection does not serve that name".into(),
            Own::Connect => "CONNECT is not proxied".into(),
            Own::Loading => "the sites are still loading; try again shortly".into(),
            Own::ChallengesLoading => "challenge answers are not loaded yet".into(),
            Own::App(why) => why.to_string(),
            Own::TooMany(_) => "too many requests; slow down".into(),
            Own::Busy => "the site is busy; try again shortly".into(),
            Own::Unreachable => "the upstream is unreachable".into(),
            Own::TimedOut => "the upstream did not answer in time".into(),
            Own::WafBlocked(id) => format!(
                "this request was refused by the site's firewall; if you think it should not \
                 have been, give the site's owner this id: {id}"
            ),
            Own::WafUnavailable => "the site's firewall is busy; try again shortly".into(),
        }
    }

    /// The response, with the site's own page for its status when it has one (the headers a
    /// client acts on, such as `Retry-After`, stay).
    pub(crate) fn into_page(
        self,
        pages: &std::collections::BTreeMap<u16, String>,
    ) -> Response<Body> {
        let page = pages.get(&self.status().as_u16()).cloned();
        let mut response = self.into_response();
        if let Some(page) = page {
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            *response.body_mut() = full(page);
        }
        response
    }

    /// The response.
    pub(crate) fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut response = match self {
            Own::Http01(key_authorization) => {
                let mut response = Response::new(full(key_authorization));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                return response;
            }
            other => {
                let mut response = Response::new(full(format!("{}\n", other.message())));
                let headers = response.headers_mut();
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                match other {
                    Own::ToHttps(location) | Own::Redirect { location, .. } => {
                        headers.insert(LOCATION, location);
                    }
                    Own::Unauthorized(realm) => {
                        let challenge = format!("Basic realm=\"{realm}\", charset=\"UTF-8\"");
                        if let Ok(value) = HeaderValue::from_str(&challenge) {
                            headers.insert(WWW_AUTHENTICATE, value);
                        }
                    }
                    Own::App(_) => {
                        headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
                    }
                    Own::Busy | Own::WafUnavailable => {
                        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
                    }
                    Own::WafBlocked(id) => {
                        // Kept when the site has a page of its own for 403.
                        if let Ok(id) = HeaderValue::from_str(&id) {
                            headers.insert(REQUEST_ID, id);
                        }
                    }
                    Own::TooMany(wait) => {
                        // Whole seconds, rounded up: a client back at the second is let in.
                        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                        headers.insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
                    }
                    _ => {}
                }
                response
            }
        };
        *response.status_mut() = status;
        response
    }
}
