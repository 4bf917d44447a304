//! Which host a request is for: `:authority` (HTTP/2, or an absolute-form URI) or `Host`,
//! lowercased, without port or trailing dot. Pure functions, table-tested.

use http::header::HOST;
use http::Request;
use std::borrow::Cow;

/// The host name a request addresses, normalised for lookup, or `None` when it names none.
pub(crate) fn request_host<B>(req: &Request<B>) -> Option<Cow<'_, str>> {
    let raw = match req.uri().authority() {
        Some(authority) => authority.host(),
        None => req.headers().get(HOST)?.to_str().ok()?,
    };
    normalise_host(raw)
}

/// Strips a port and a trailing dot and lowercases; IPv6 literals are kept in brackets.
/// Borrows when nothing needs lowercasing, as with nearly every client.
pub(crate) fn normalise_host(raw: &str) -> Option<Cow<'_, str>> {
    let raw = raw.trim();
    let host = if raw.starts_with('[') {
        &raw[..=raw.find(']')?]
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    // An empty label (`a..test`, `.a.test`, `a.test..`) names no host: refused here rather
    // than routed as a name no site can have (found by fuzzing).
    if host.is_empty() || host.starts_with('.') || host.ends_with('.') || host.contains("..") {
        None
    } else if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for (raw, want) in [
            ("Example.COM", Some("example.com")),
            ("example.com:8443", Some("example.com")),
            ("example.com.", Some("example.com")),
            ("[::1]:443", Some("[::1]")),
            ("", None),
            (":443", None),
            ("a:b:c", None),
            ("A..:8443", None),
            (".a.test", None),
            ("a..test", None),
        ] {
            assert_eq!(normalise_host(raw).as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn authority_wins_over_host_header() {
        let req = Request::builder()
            .uri("https://a.test:8443/x")
            .header(HOST, "b.test")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req).as_deref(), Some("a.test"));
        let req = Request::builder()
            .uri("/x")
            .header(HOST, "B.test:80")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req).as_deref(), Some("b.test"));
        let req = Request::builder().uri("/x").body(()).unwrap();
        assert_eq!(request_host(&req), None);
    }
}
