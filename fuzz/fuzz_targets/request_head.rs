//! The request head path Porter owns, on heads parsed as hyper parses them (httparse): the
//! framing checks, the host a request is routed by, and the head the upstream gets. Checks
//! what must hold for every head: the upstream's `Host` is the routed authority, no hop-by-hop
//! header and no client forwarding claim gets through, and the target is origin-form.
#![no_main]
#![allow(dead_code)]

#[path = "../../src/proxy/phases/headers.rs"]
mod headers;
#[path = "../../src/proxy/phases/route.rs"]
mod route;

use http::header::{HeaderName, HeaderValue, CONNECTION, HOST};
use libfuzzer_sys::fuzz_target;

/// `data` as hyper would give it to Porter, if it would.
fn parse(data: &[u8]) -> Option<http::Request<()>> {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Request::new(&mut fields);
    head.parse(data).ok()?;
    let mut builder = http::Request::builder()
        .method(head.method?)
        .uri(head.path?)
        .version(if head.version? == 0 {
            http::Version::HTTP_10
        } else {
            http::Version::HTTP_11
        });
    for field in head.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(field.value).ok()?;
        builder = builder.header(name, value);
    }
    builder.body(()).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some(req) = parse(data) else { return };
    let framed = headers::well_formed(req.headers());
    if req.headers().get_all(HOST).iter().count() > 1 {
        assert!(framed.is_err(), "a second Host was let through");
    }
    if framed.is_err() {
        return;
    }
    let routed = route::request_host(&req).map(|h| h.into_owned());
    if let Some(host) = &routed {
        assert!(!host.is_empty());
        assert!(!host.bytes().any(|b| b.is_ascii_uppercase()), "{host}");
        assert!(!host.ends_with('.') && !host.starts_with('.'), "{host}");
        assert!(!host.contains(".."), "{host}");
    }
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    let upgrade = headers::wants_upgrade(req.headers());
    let named: Vec<String> = req
        .headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .filter(|t| !t.is_empty())
        .collect();
    let (mut parts, ()) = req.into_parts();
    let client = HeaderValue::from_static("192.0.2.1");
    headers::upstream_head(&mut parts, &client, "https", upgrade);

    // The routed authority is the upstream's Host, whatever the client's Host said.
    if let Some(authority) = authority {
        assert_eq!(parts.headers.get_all(HOST).iter().count(), 1);
        assert_eq!(parts.headers[HOST], authority.as_str());
    }
    assert!(parts.headers.get_all(HOST).iter().count() <= 1);
    // Porter's forwarding headers alone, once each.
    assert_eq!(parts.headers.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(parts.headers["x-forwarded-for"], "192.0.2.1");
    assert_eq!(parts.headers["x-real-ip"], "192.0.2.1");
    assert!(parts.headers.get("forwarded").is_none());
    // Nothing hop-by-hop, nothing the client named as such.
    for gone in ["keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding"] {
        assert!(parts.headers.get(gone).is_none(), "{gone} got through");
    }
    if !upgrade {
        assert!(parts.headers.get("upgrade").is_none());
        assert!(parts.headers.get(CONNECTION).is_none());
        for token in &named {
            let forwarding = matches!(
                token.as_str(),
                "host" | "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" | "x-real-ip"
            );
            if !forwarding {
                assert!(parts.headers.get(token.as_str()).is_none(), "{token} got through");
            }
        }
    }
    assert!(parts.uri.authority().is_none() && parts.uri.scheme().is_none());
    assert_eq!(parts.version, http::Version::HTTP_11);
});
