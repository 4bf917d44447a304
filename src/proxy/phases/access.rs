//! A site's client address lists: `deny` first, then, when `allow` is not empty, only the
//! networks in it. An IPv4 client on an IPv6 socket (`::ffff:a.b.c.d`) is matched as IPv4.

use porter_store::Features;
use std::net::IpAddr;

/// Whether `client` may be served by a site with `features`.
pub(crate) fn allowed(features: &Features, client: IpAddr) -> bool {
    if features.allow.is_empty() && features.deny.is_empty() {
        return true;
    }
    let client = client.to_canonical();
    if features.deny.iter().any(|net| net.contains(&client)) {
        return false;
    }
    features.allow.is_empty() || features.allow.iter().any(|net| net.contains(&client))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(allow: &[&str], deny: &[&str]) -> Features {
        Features {
            allow: allow.iter().map(|n| n.parse().unwrap()).collect(),
            deny: deny.iter().map(|n| n.parse().unwrap()).collect(),
            ..Features::default()
        }
    }

    #[test]
    fn deny_comes_first_and_allow_is_a_whitelist() {
        let f = features(&["10.0.0.0/8", "2001:db8::/32"], &["10.1.0.0/16"]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(allowed(&f, ip("10.2.3.4")));
        assert!(allowed(&f, ip("::ffff:10.2.3.4")), "v4-mapped is v4");
        assert!(!allowed(&f, ip("10.1.2.3")));
        assert!(!allowed(&f, ip("192.0.2.1")));
        assert!(allowed(&f, ip("2001:db8::1")));
        assert!(!allowed(&f, ip("2001:db9::1")));
        let deny_only = features(&[], &["192.0.2.0/24"]);
        assert!(!allowed(&deny_only, ip("192.0.2.7")));
        assert!(allowed(&deny_only, ip("198.51.100.1")));
        assert!(allowed(&Features::default(), ip("192.0.2.7")));
    }
}
