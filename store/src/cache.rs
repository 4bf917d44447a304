//! A site's HTTP cache settings and the purges an operator asks for. The cache itself lives in
//! each node's memory and disk; purges go through the store so that every node of a fleet
//! applies them.

use crate::error::InvalidInput;
use crate::DomainName;
use serde::{Deserialize, Serialize};

/// Largest object a site may let the cache keep, bytes (1 GiB).
pub const MAX_CACHE_OBJECT: u64 = 1 << 30;
/// Largest object kept when a site sets none, bytes (64 MiB).
pub const DEFAULT_CACHE_OBJECT: u64 = 64 << 20;
/// Longest allowance a site may set (default freshness, stale allowances), seconds (a year).
const MAX_ALLOWANCE: u32 = 365 * 24 * 3600;
/// Most bypass rules (paths and cookies together).
const MAX_BYPASS: usize = 256;

/// A site's cache settings; a site with none is not cached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheSettings {
    /// Freshness given to a storable response that states none and has no `Last-Modified`
    /// to guess from, seconds; 0: such responses are stored only to be revalidated.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub default_ttl: u32,
    /// How long a stale response may be served while it is refreshed in the background, when
    /// the response says nothing (`stale-while-revalidate`), seconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stale_while_revalidate: u32,
    /// How long a stale response may be served when the upstream fails (5xx, time-out,
    /// refused, an app still starting), when the response says nothing (`stale-if-error`),
    /// seconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stale_if_error: u32,
    /// Paths under which nothing is cached (each from `/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bypass_paths: Vec<String>,
    /// Cookies whose presence in a request bypasses the cache (a signed-in visitor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bypass_cookies: Vec<String>,
    /// Largest response body kept, bytes; `None`: [`DEFAULT_CACHE_OBJECT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_object: Option<u64>,
    /// The most of a node's cache memory the site's responses may hold, bytes; `None`: no
    /// bound but the tier's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_share: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl CacheSettings {
    /// The largest body kept, bytes.
    pub fn max_object(&self) -> u64 {
        self.max_object.unwrap_or(DEFAULT_CACHE_OBJECT)
    }

    /// Whether a request for `path` carrying `cookies` (the `Cookie` header's values) goes
    /// around the cache.
    pub fn bypasses<'a>(&self, path: &str, mut cookies: impl Iterator<Item = &'a [u8]>) -> bool {
        if self
            .bypass_paths
            .iter()
            .any(|p| path.starts_with(p.as_str()))
        {
            return true;
        }
        !self.bypass_cookies.is_empty()
            && cookies.any(|header| {
                header.split(|b| *b == b';').any(|pair| {
                    let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
                    let name = name.trim_ascii();
                    self.bypass_cookies.iter().any(|c| c.as_bytes() == name)
                })
            })
    }

    /// Checks what the edge relies on.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let bad = |why: String| InvalidInput::Feature(format!("cache: {why}"));
        for (name, value) in [
            ("default freshness", self.default_ttl),
            ("stale-while-revalidate", self.stale_while_revalidate),
            ("stale-if-error", self.stale_if_error),
        ] {
            if value > MAX_ALLOWANCE {
                return Err(bad(format!(
                    "{name} is at most a year ({MAX_ALLOWANCE} s), not {value} s"
                )));
            }
        }
        if self.bypass_paths.len() + self.bypass_cookies.len() > MAX_BYPASS {
            return Err(bad(format!("at most {MAX_BYPASS} bypass rules")));
        }
        for path in &self.bypass_paths {
            if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err(bad(format!(
                    "bypass path {path:?} must start with / and hold no space or control character"
                )));
            }
        }
        for cookie in &self.bypass_cookies {
            if cookie.is_empty() || !cookie.bytes().all(is_token_byte) {
                return Err(bad(format!(
                    "bypass cookie {cookie:?}: a cookie name (letters, digits, !#$%&'*+-.^_`|~)"
                )));
            }
        }
        match self.max_object {
            Some(0) => Err(bad("the largest object is at least 1 byte".into())),
            Some(n) if n > MAX_CACHE_OBJECT => Err(bad(format!(
                "the largest object is at most 1 GiB ({MAX_CACHE_OBJECT} bytes), not {n}"
            ))),
            _ => Ok(()),
        }
    }
}

/// A byte of an HTTP token (RFC 9110 section 5.6.2).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What a purge removes from a site's cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeScope {
    /// One URL: its path and query (`/a/b?c`), every variant and method.
    Url(String),
    /// Every URL whose path starts with this (`/assets/`).
    Prefix(String),
    /// Every response that named this tag in `Surrogate-Key` or `Cache-Tag`.
    Tag(String),
    /// Everything of the site.
    All,
}

/// One purge, applied by every node that reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purge {
    /// Unique among purges (its time and a random part): the store keeps each once.
    pub id: String,
    pub domain: DomainName,
    pub scope: PurgeScope,
    /// When it was asked for (Unix milliseconds): what was stored before is gone.
    pub at_ms: u64,
}

/// How long the store keeps a purge, seconds: a node that was away longer starts with an
/// empty memory tier and checks its disk entries against what is still there.
pub const PURGE_KEPT: u64 = 24 * 3600;

/// Purges asked for before this time (Unix milliseconds) are forgotten.
pub(crate) fn purge_horizon_ms() -> u64 {
    crate::unix_now_ms().saturating_sub(PURGE_KEPT * 1000)
}

impl PurgeScope {
    /// Checks what the edge relies on.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let bad = |why: String| InvalidInput::Feature(format!("purge: {why}"));
        match self {
            PurgeScope::Url(path) | PurgeScope::Prefix(path) => {
                if !path.starts_with('/')
                    || path.len() > 8192
                    || path.bytes().any(|b| b <= b' ' || b == 0x7f)
                {
                    return Err(bad(format!(
                        "{path:?}: a path from / (with its query for a URL), no space or control character"
                    )));
                }
            }
            PurgeScope::Tag(tag) => {
                if tag.is_empty()
                    || tag.len() > 1024
                    || tag.bytes().any(|b| b <= b' ' || b == 0x7f || b == b',')
                {
                    return Err(bad(format!(
                        "tag {tag:?}: 1 to 1024 visible characters, no comma"
                    )));
                }
            }
            PurgeScope::All => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_refuse_what_the_edge_cannot_use() {
        assert!(CacheSettings::default().validate().is_ok());
        let bad = [
            CacheSettings {
                default_ttl: MAX_ALLOWANCE + 1,
                ..Default::default()
            },
            CacheSettings {
                bypass_paths: vec!["admin".into()],
                ..Default::default()
            },
            CacheSettings {
                bypass_cookies: vec!["a b".into()],
                ..Default::default()
            },
            CacheSettings {
                max_object: Some(MAX_CACHE_OBJECT + 1),
                ..Default::default()
            },
        ];
        for settings in bad {
            assert!(settings.validate().is_err(), "{settings:?}");
        }
    }

    #[test]
    fn bypass_by_path_prefix_and_cookie_name() {
        let settings = CacheSettings {
            bypass_paths: vec!["/wp-admin/".into()],
            bypass_cookies: vec!["session".into()],
            ..Default::default()
        };
        let none: [&[u8]; 0] = [];
        assert!(settings.bypasses("/wp-admin/x", none.into_iter()));
        assert!(!settings.bypasses("/blog", none.into_iter()));
        assert!(settings.bypasses("/blog", [&b"a=1; session=x"[..]].into_iter()));
        assert!(!settings.bypasses("/blog", [&b"a=session; sessionx=1"[..]].into_iter()));
    }

    #[test]
    fn purge_scopes_are_checked() {
        assert!(PurgeScope::Url("/a?b=c".into()).validate().is_ok());
        assert!(PurgeScope::Tag("product-12".into()).validate().is_ok());
        for bad in [
            PurgeScope::Url("a".into()),
            PurgeScope::Prefix("/a b".into()),
            PurgeScope::Tag(String::new()),
            PurgeScope::Tag("a,b".into()),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
