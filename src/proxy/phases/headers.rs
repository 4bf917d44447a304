//! The request head between client and upstream: what no intermediary may pass on is refused
//! (RFC 9112), the routed authority becomes `Host`, hop-by-hop headers go (RFC 9110 section
//! 7.6.1), `X-Forwarded-*` are set by Porter alone. Pure functions, table-tested and fuzzed
//! (`fuzz/`, which compiles this file on its own: it uses `http` alone).

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, PROXY_AUTHORIZATION, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::uri::PathAndQuery;
use http::{Uri, Version};

/// Why a request head may not be passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unfit {
    /// A message no intermediary may pass on: why.
    Malformed(&'static str),
    /// A transfer coding other than `chunked` (RFC 9112 section 6.1).
    UnknownCoding,
}

/// Refuses what no intermediary may pass on (RFC 9112): more than one `Host`, and transfer
/// codings other than one `chunked` (a body framed differently by Porter and the upstream is
/// how requests are smuggled).
pub(crate) fn well_formed(headers: &HeaderMap) -> Result<(), Unfit> {
    if headers.get_all(HOST).iter().nth(1).is_some() {
        return Err(Unfit::Malformed("more than one Host header"));
    }
    let codings = headers.get_all(TRANSFER_ENCODING);
    if codings.iter().next().is_none() {
        return Ok(());
    }
    let mut chunked = 0;
    for coding in codings
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(str::trim)
    {
        if !coding.eq_ignore_ascii_case("chunked") {
            return Err(Unfit::UnknownCoding);
        }
        chunked += 1;
    }
    if chunked > 1 {
        return Err(Unfit::Malformed("chunked is applied more than once"));
    }
    Ok(())
}

/// What makes an HTTP/2 or HTTP/3 request malformed though HTTP/1.1 allows it: a field that
/// describes one connection (RFC 9114 section 4.2, RFC 9113 section 8.2.2), or a `TE` other
/// than `trailers`.
pub(crate) fn connection_specific(headers: &HeaderMap) -> Option<&'static str> {
    const NAMED: [(HeaderName, &str); 5] = [
        (CONNECTION, "a Connection header in HTTP/3"),
        (KEEP_ALIVE, "a Keep-Alive header in HTTP/3"),
        (PROXY_CONNECTION, "a Proxy-Connection header in HTTP/3"),
        (TRANSFER_ENCODING, "a Transfer-Encoding header in HTTP/3"),
        (UPGRADE, "an Upgrade header in HTTP/3"),
    ];
    if let Some((_, why)) = NAMED.iter().find(|(name, _)| headers.contains_key(name)) {
        return Some(why);
    }
    let te = headers.get_all(TE).iter();
    te.into_iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
        .then_some("a TE header other than trailers")
}

/// The length `Content-Length` gives (`Ok(None)`: none); an error when it is not one number
/// (fields that repeat the same number are one, RFC 9110 section 8.6). hyper checks this on
/// HTTP/1.1 and HTTP/2; h3 does not.
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.to_str().map_err(|_| ())?.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            let n: u64 = part.parse().map_err(|_| ())?;
            if length.is_some_and(|seen| seen != n) {
                return Err(());
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// Makes `parts` the head the upstream gets: origin-form target, HTTP/1.1, hop-by-hop headers
/// out (an upgrade kept when `upgrade`), `Host` the routed authority, `X-Forwarded-*` and
/// `X-Real-IP` set for `client` over `proto`.
pub(crate) fn upstream_head(
    parts: &mut http::request::Parts,
    client: &HeaderValue,
    proto: &'static str,
    upgrade: bool,
) {
    // The authority the request was routed by wins over a `Host` that says otherwise (RFC 9112
    // section 3.2.2, RFC 9113 section 8.3.1): the upstream must see the name it serves.
    let host = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| parts.headers.get(HOST).cloned());
    strip_hop_by_hop(&mut parts.headers, upgrade);
    set_forwarded(&mut parts.headers, client, proto, host.as_ref());
    if let Some(host) = host {
        parts.headers.insert(HOST, host);
    }
    parts.uri = Uri::from(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    parts.version = Version::HTTP_11;
}

// Names as constants: a `&str` name is parsed at every use, and a non-standard one is copied
// into a new allocation each time it is inserted.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers that describe one connection and never travel past a proxy.
const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    PROXY_AUTHORIZATION,
];

/// Whether the request asks for an HTTP/1.1 protocol upgrade (WebSocket). `h2c` is never one:
/// it is cleartext HTTP/2 with Porter itself, not something to tunnel to an upstream (and over
/// TLS it is not allowed at all, RFC 9113 section 3.1); its `Upgrade` header is dropped.
pub(crate) fn wants_upgrade(headers: &HeaderMap) -> bool {
    let protocols = headers.get(UPGRADE).and_then(|v| v.to_str().ok());
    protocols.is_some_and(|p| p.split(',').any(|p| !p.trim().eq_ignore_ascii_case("h2c")))
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers, including those the `Connection` header names. With `upgrade`,
/// the `Upgrade` header and `Connection: upgrade` are kept so the upgrade can pass through.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass over the names finds which are present; most messages carry none or only
    // `Connection`, and each removal of an absent name would still cost a hash and a probe.
    let present = headers.keys().fold(0u8, |present, name| {
        HOP_BY_HOP
            .iter()
            .position(|hop| hop == name)
            .map_or(present, |i| present | 1 << i)
    });
    if present == 0 {
        return;
    }
    let kept_upgrade = upgrade.then(|| headers.get(UPGRADE).cloned()).flatten();
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter(|t| {
            // `keep-alive` and `close` are the usual tokens: one goes anyway, one is no header.
            !t.eq_ignore_ascii_case("close")
                && !HOP_BY_HOP
                    .iter()
                    .any(|hop| t.eq_ignore_ascii_case(hop.as_str()))
        })
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for (i, name) in HOP_BY_HOP.into_iter().enumerate() {
        if present & 1 << i != 0 {
            headers.remove(name);
        }
    }
    if let Some(value) = kept_upgrade {
        headers.insert(UPGRADE, value);
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Sets `X-Forwarded-For`, `-Proto`, `-Host` and `X-Real-IP`, replacing anything the client
/// sent, and drops the client's other forwarding claims.
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    // A client's own claim of where it comes from must not reach the upstream as Porter's:
    // `Forwarded`, and every `X-Forwarded-*` Porter does not set (`-Port`, `-Ssl`, `-Scheme`,
    // `-Prefix`: frameworks trust them for the scheme and the URL they build).
    headers.remove(http::header::FORWARDED);
    let claimed = |name: &HeaderName| name.as_str().starts_with("x-forwarded-");
    if headers.keys().any(claimed) {
        let names: Vec<HeaderName> = headers.keys().filter(|n| claimed(n)).cloned().collect();
        for name in names {
            headers.remove(name);
        }
    }
    headers.insert(X_FORWARDED_FOR, client.clone());
    headers.insert(X_REAL_IP, client.clone());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
        None => headers.remove(X_FORWARDED_HOST),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn strips_hop_by_hop_and_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
    }

    #[test]
    fn connection_specific_fields_are_named() {
        for (field, value) in [
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
        ] {
            let h = map(&[("accept", "*/*"), (field, value)]);
            assert!(connection_specific(&h).is_some(), "{field}: {value}");
        }
        let fine = map(&[("te", "trailers"), ("accept", "*/*"), ("cookie", "a=1")]);
        assert_eq!(connection_specific(&fine), None);
    }

    #[test]
    fn content_length_is_one_number() {
        assert_eq!(content_length(&map(&[])), Ok(None));
        assert_eq!(
            content_length(&map(&[("content-length", "42")])),
            Ok(Some(42))
        );
        assert_eq!(
            content_length(&map(&[("content-length", "7, 7")])),
            Ok(Some(7))
        );
        for bad in [
            "five",
            "-1",
            "+5",
            "",
            "1 2",
            "5, 6",
            "99999999999999999999999",
        ] {
            let h = map(&[("content-length", bad)]);
            assert_eq!(content_length(&h), Err(()), "{bad:?}");
        }
    }

    #[test]
    fn strips_only_what_is_hop_by_hop() {
        let end_to_end = [("accept", "*/*"), ("cookie", "a=1"), ("x-custom", "2")];
        let mut h = map(&end_to_end);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, map(&end_to_end));
        let mut h = map(&[
            ("accept", "*/*"),
            ("connection", "close"),
            ("proxy-connection", "x"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, map(&[("accept", "*/*")]));
    }

    #[test]
    fn keeps_an_upgrade_through() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["sec-websocket-key"], "k");
        assert!(!wants_upgrade(&map(&[("upgrade", "websocket")])));
    }

    #[test]
    fn forwarded_headers_replace_the_clients() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "evil"),
            ("x-forwarded-ssl", "on"),
            ("x-forwarded-port", "443"),
        ]);
        set_forwarded(
            &mut h,
            &HeaderValue::from_static("127.0.0.2"),
            "https",
            Some(&HeaderValue::from_static("a.test")),
        );
        assert_eq!(h["x-forwarded-for"], "127.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.test");
        assert!(!h.contains_key("x-forwarded-ssl") && !h.contains_key("x-forwarded-port"));
        set_forwarded(&mut h, &HeaderValue::from_static("::1"), "http", None);
        assert!(!h.contains_key("x-forwarded-host"));
    }
}
