//! Header rewriting between client and upstream: hop-by-hop headers out (RFC 9110 section 7.6.1),
//! `X-Forwarded-*` set by Porter alone. Pure functions, table-tested.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};

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

/// Sets `X-Forwarded-For`, `-Proto` and `-Host`, replacing anything the client sent.
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    headers.insert(X_FORWARDED_FOR, client.clone());
    headers.insert(X_REAL_IP, client.clone());
    // A client's own claim of where it comes from must not reach the upstream as Porter's.
    headers.remove(http::header::FORWARDED);
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
        set_forwarded(&mut h, &HeaderValue::from_static("::1"), "http", None);
        assert!(!h.contains_key("x-forwarded-host"));
    }
}
