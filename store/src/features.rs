//! A site's HTTP features, each off by default: response compression, redirects (canonical
//! host and path rules), basic auth, client address allow/deny lists, custom error pages and
//! the WordPress login rate, the web application firewall, the HTTP cache.
//! [`Features::validate`] holds what the edge relies on, so nothing it cannot serve is stored.

use crate::error::InvalidInput;
use crate::waf::WafSettings;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest custom error page, in bytes.
pub const MAX_ERROR_PAGE: usize = 64 * 1024;
/// Statuses of Porter's own answers a site may give a page of its own.
pub const ERROR_PAGE_STATUSES: [u16; 6] = [401, 403, 429, 502, 503, 504];
/// Redirect statuses a rule may use.
const REDIRECT_STATUSES: [u16; 4] = [301, 302, 307, 308];
/// Most entries in each list (rules, credentials, networks).
const MAX_ENTRIES: usize = 1024;

/// A site's HTTP features.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    /// Compress compressible responses (br, zstd or gzip, as the client accepts).
    #[serde(default, skip_serializing_if = "is_false")]
    pub compress: bool,
    /// Redirect to the other form of the name (with or without `www.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical: Option<Canonical>,
    /// Path redirects, first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirects: Vec<Redirect>,
    /// Who may see which paths; empty: everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basic_auth: Vec<Credential>,
    /// When not empty, only clients in these networks are served (403 for others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<IpNet>,
    /// Clients in these networks get 403 (before `allow` is looked at).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<IpNet>,
    /// Pages (HTML) for Porter's own answers, by status.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub error_pages: BTreeMap<u16, String>,
    /// `POST /wp-login.php` and `/xmlrpc.php` a minute per client, at most (password
    /// guessing); `Some(0)`: no limit; `None`: [`DEFAULT_WP_LOGIN_LIMIT`] when the WAF blocks,
    /// else no limit (see [`Features::wp_login_limit_in_force`]; the same for a site with no
    /// features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wp_login_limit: Option<u32>,
    /// The site's WAF settings; `None`: the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waf: Option<WafSettings>,
    /// The site's HTTP cache; `None`: not cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<crate::CacheSettings>,
}

/// The WordPress login limit of a site whose WAF blocks and that sets none, a minute.
const DEFAULT_WP_LOGIN_LIMIT: u32 = 10;

/// The highest WordPress login rate a site may set, a minute: beyond it the limit stops no
/// guessing.
const MAX_WP_LOGIN_LIMIT: u32 = 600;

fn is_false(b: &bool) -> bool {
    !*b
}

/// Which form of the name is canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Canonical {
    /// `www.example.com` redirects to `example.com`.
    Apex,
    /// `example.com` redirects to `www.example.com`.
    Www,
}

/// A path redirect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    /// The path it applies to (from `/`).
    pub from: String,
    /// Whether every path under `from` is redirected (its rest appended to `to`), or only
    /// `from` itself.
    pub prefix: bool,
    /// Where to: a path on the same site, or an absolute `http(s)://` URL.
    pub to: String,
    /// 301, 302, 307 or 308.
    pub status: u16,
}

impl Redirect {
    /// Reads `FROM TO [STATUS]`: FROM a path, ending in `*` for a prefix; STATUS 301 unless
    /// given.
    pub fn parse(rule: &str) -> Result<Redirect, InvalidInput> {
        let bad = |reason: &str| {
            InvalidInput::Feature(format!(
                "redirect {rule:?}: {reason} (write FROM TO [STATUS], e.g. '/old/* /new/ 301')"
            ))
        };
        let words: Vec<&str> = rule.split_whitespace().collect();
        let (from, to, status) = match words.as_slice() {
            [from, to] => (*from, *to, 301),
            [from, to, status] => (
                *from,
                *to,
                status
                    .parse()
                    .map_err(|_| bad("the status is not a number"))?,
            ),
            _ => return Err(bad("two or three words")),
        };
        let (from, prefix) = match from.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (from, false),
        };
        let redirect = Redirect {
            from: from.to_owned(),
            prefix,
            to: to.to_owned(),
            status,
        };
        redirect.check().map_err(|e| bad(&e))?;
        Ok(redirect)
    }

    fn check(&self) -> Result<(), String> {
        if !self.from.starts_with('/') {
            return Err("FROM must be a path starting with /".into());
        }
        let absolute = self.to.starts_with("https://") || self.to.starts_with("http://");
        if !(self.to.starts_with('/') || absolute) {
            return Err("TO must be a path or an http(s):// URL".into());
        }
        if [&self.from, &self.to].iter().any(|s| {
            s.bytes()
                .any(|b| b.is_ascii_control() || b == b' ' || b >= 0x80)
        }) {
            return Err("paths and URLs are written in ASCII without spaces".into());
        }
        if !REDIRECT_STATUSES.contains(&self.status) {
            return Err(format!("the status must be one of {REDIRECT_STATUSES:?}"));
        }
        Ok(())
    }
}

/// A user who may see the paths under `prefix`, by a password hash (bcrypt or argon2;
/// never a password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The paths it guards (`/`: the whole site).
    pub prefix: String,
    pub user: String,
    /// A bcrypt (`$2a$`, `$2b$`, `$2y$`) or argon2 (`$argon2id$`, ...) hash.
    pub hash: String,
}

impl Credential {
    /// Reads an htpasswd line `USER:HASH` for the paths under `prefix`.
    pub fn parse(line: &str, prefix: &str) -> Result<Credential, InvalidInput> {
        let (user, hash) = line.trim().split_once(':').ok_or_else(|| {
            InvalidInput::Feature(
                "basic auth: write USER:HASH (an htpasswd line, e.g. from `htpasswd -nB USER` or `porter hash-password`)".into(),
            )
        })?;
        let credential = Credential {
            prefix: prefix.to_owned(),
            user: user.to_owned(),
            hash: hash.to_owned(),
        };
        credential.check().map_err(InvalidInput::Feature)?;
        Ok(credential)
    }

    fn check(&self) -> Result<(), String> {
        if !self.prefix.starts_with('/') {
            return Err(format!(
                "basic auth path {:?} must start with /",
                self.prefix
            ));
        }
        if self.user.is_empty()
            || self.user.contains(':')
            || self.user.chars().any(char::is_control)
        {
            return Err(format!(
                "basic auth user {:?}: not empty, no ':'",
                self.user
            ));
        }
        let known = [
            "$2a$",
            "$2b$",
            "$2y$",
            "$argon2id$",
            "$argon2i$",
            "$argon2d$",
        ];
        if !known.iter().any(|k| self.hash.starts_with(k)) {
            return Err(format!(
                "basic auth for {}: only bcrypt ($2y$...) or argon2 ($argon2id$...) hashes are taken, never a password or a weaker hash (make one with `htpasswd -nB {}` or `porter hash-password`)",
                self.user, self.user
            ));
        }
        Ok(())
    }
}

impl Features {
    /// Whether every feature is off.
    pub fn is_default(&self) -> bool {
        *self == Features::default()
    }

    /// The WordPress login limit in force for a site with `features` (`None`: none on), a
    /// minute: the site's own, else the default when `waf_blocks`.
    pub fn wp_login_limit_in_force(features: Option<&Features>, waf_blocks: bool) -> Option<u32> {
        match features.and_then(|f| f.wp_login_limit) {
            Some(0) => None,
            Some(limit) => Some(limit),
            None => waf_blocks.then_some(DEFAULT_WP_LOGIN_LIMIT),
        }
    }

    /// Checks what the edge relies on.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let bad = InvalidInput::Feature;
        if let Some(waf) = &self.waf {
            waf.validate()?;
        }
        if let Some(cache) = &self.cache {
            cache.validate()?;
        }
        for list in [
            self.redirects.len(),
            self.basic_auth.len(),
            self.allow.len(),
            self.deny.len(),
        ] {
            if list > MAX_ENTRIES {
                return Err(bad(format!("at most {MAX_ENTRIES} entries a list")));
            }
        }
        for redirect in &self.redirects {
            redirect.check().map_err(bad)?;
        }
        for credential in &self.basic_auth {
            credential.check().map_err(bad)?;
        }
        if let Some(limit) = self.wp_login_limit {
            if limit > MAX_WP_LOGIN_LIMIT {
                return Err(bad(format!(
                    "the WordPress login limit is 1 to {MAX_WP_LOGIN_LIMIT} a minute (0: none), not {limit}"
                )));
            }
        }
        for (status, page) in &self.error_pages {
            if !ERROR_PAGE_STATUSES.contains(status) {
                return Err(bad(format!(
                    "error page for {status}: only Porter's own answers {ERROR_PAGE_STATUSES:?} take one"
                )));
            }
            if page.len() > MAX_ERROR_PAGE {
                return Err(bad(format!(
                    "error page for {status}: {} bytes, at most {MAX_ERROR_PAGE}",
                    page.len()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_rules_read_and_refuse() {
        let r = Redirect::parse("/old/* /new/ 308").unwrap();
        assert_eq!(
            (r.from.as_str(), r.prefix, r.to.as_str(), r.status),
            ("/old/", true, "/new/", 308)
        );
        let r = Redirect::parse("/a https://b.example/c").unwrap();
        assert_eq!((r.prefix, r.status), (false, 301));
        for bad in [
            "a /b",
            "/a b",
            "/a /b 200",
            "/a",
            "/a /b 301 x",
            "/a\u{7f} /b",
        ] {
            assert!(Redirect::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_take_strong_hashes_only() {
        assert!(Credential::parse("alice:$2y$10$abcdefghijklmnopqrstuu", "/").is_ok());
        assert!(
            Credential::parse("bob:$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", "/admin").is_ok()
        );
        for bad in ["alice:secret", "alice:$apr1$x$y", "alice", ":$2y$10$x"] {
            assert!(Credential::parse(bad, "/").is_err(), "{bad}");
        }
        assert!(Credential::parse("alice:$2y$10$x", "admin").is_err());
    }
}
