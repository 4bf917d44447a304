//! The WordPress login rate (`site update --wp-login-limit N`): `POST` to `wp-login.php` or
//! `xmlrpc.php` (at any depth: a WordPress may live in a subdirectory), at most N a minute per
//! client and site; beyond, 429 with `Retry-After`. The path is compared as the upstream's PHP
//! would find the file: percent-decoded and without case, so `/WP%2Dlogin.php` counts too.

use crate::proxy::connection::per_ip::client_key;
use crate::proxy::phases::answer::Own;
use crate::proxy::phases::rate::Rates;
use http::{Method, Request};
use std::net::IpAddr;
use std::sync::Arc;

/// Login attempts by site and client (a v6 client by its /64), every edge thread together.
pub(crate) type LoginRates = Rates<(Arc<str>, IpAddr)>;

/// The scripts password guessing goes to.
const SCRIPTS: [&str; 2] = ["wp-login.php", "xmlrpc.php"];

/// Whether `req` may go on under the site's login limit, `per_minute` (`None`: no limit).
pub(crate) fn check<B>(
    rates: &LoginRates,
    per_minute: Option<u32>,
    (site, client): (&Arc<str>, IpAddr),
    req: &Request<B>,
) -> Result<(), Own> {
    let Some(per_minute) = per_minute else {
        return Ok(());
    };
    if req.method() != Method::POST || !is_login(req.uri().path()) {
        return Ok(());
    }
    let burst = f64::from(per_minute);
    rates
        .take_at((Arc::clone(site), client_key(client)), burst / 60.0, burst)
        .map_err(Own::TooMany)
}

/// Whether the last segment of `path`, decoded, is one of [`SCRIPTS`].
fn is_login(path: &str) -> bool {
    let decoded = percent_decoded(path);
    let last = decoded.rsplit(|b| *b == b'/').next().unwrap_or_default();
    SCRIPTS
        .iter()
        .any(|script| last.eq_ignore_ascii_case(script.as_bytes()))
}

/// `path` with every `%XX` decoded (an invalid escape is kept as written).
fn percent_decoded(path: &str) -> Vec<u8> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn login_scripts_are_found_however_they_are_written() {
        for path in [
            "/wp-login.php",
            "/blog/wp-login.php",
            "/WP-LOGIN.PHP",
            "/wp%2Dlogin.php",
            "/xmlrpc.php",
            "//xmlrpc%2ephp",
        ] {
            assert!(super::is_login(path), "{path}");
        }
        for path in [
            "/",
            "/wp-login.php/x",
            "/wp-login.phpx",
            "/wp-admin/",
            "/%zz",
        ] {
            assert!(!super::is_login(path), "{path}");
        }
    }
}
