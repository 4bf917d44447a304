//! The operator's side of the HTTP cache: a site's cache settings (`site add|update --cache*`
//! and the same fields in the API), purges (`cache purge`, recorded in the store for every
//! node to apply), and the shape of the running server's counters that `cache stats` prints.

use super::OpError;
use crate::runtime::{duration, size};
use porter_store::{CacheSettings, DomainName, Features, Purge, PurgeScope, Store, StoreError};
use serde::{Deserialize, Serialize};

/// What `site add` and `site update` change in a site's cache; what is not given stays.
/// Any setting given to a site without the cache turns it on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
pub(crate) struct CacheChange {
    /// Cache the site's responses at the edge (RFC 9111): on|off. `off` forgets its cache
    /// settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "on|off", value_parser = super::on_off)]
    pub(crate) cache: Option<bool>,
    /// Freshness of a storable response that states none and cannot be guessed from its
    /// Last-Modified, like 5m; 0 (the default): stored only to be revalidated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "DURATION")]
    pub(crate) cache_ttl: Option<String>,
    /// How long a stale response is served while it is refreshed in the background, when the
    /// response says nothing (stale-while-revalidate); 0: not at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "DURATION")]
    pub(crate) cache_stale_while_revalidate: Option<String>,
    /// How long a stale response is served when the upstream fails, when the response says
    /// nothing (stale-if-error); 0: not at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "DURATION")]
    pub(crate) cache_stale_if_error: Option<String>,
    /// A path prefix never cached (from /). Repeat for more; replaces the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long = "cache-bypass-path", value_name = "PATH")]
    pub(crate) cache_bypass_paths: Option<Vec<String>>,
    /// Remove every bypass path.
    #[serde(default, skip_serializing_if = "is_false")]
    #[arg(long, conflicts_with = "cache_bypass_paths")]
    pub(crate) no_cache_bypass_paths: bool,
    /// A cookie whose presence bypasses the cache (a signed-in visitor's). Repeat for more;
    /// replaces the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long = "cache-bypass-cookie", value_name = "NAME")]
    pub(crate) cache_bypass_cookies: Option<Vec<String>>,
    /// Remove every bypass cookie.
    #[serde(default, skip_serializing_if = "is_false")]
    #[arg(long, conflicts_with = "cache_bypass_cookies")]
    pub(crate) no_cache_bypass_cookies: bool,
    /// The largest response body kept, like 64MiB (the default), at most 1GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "SIZE")]
    pub(crate) cache_max_object: Option<String>,
    /// The most of the node's cache memory the site's responses may hold, like 64MiB
    /// (`0`: no bound but the tier's own, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "SIZE")]
    pub(crate) cache_max_share: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn refused(message: String) -> OpError {
    OpError::Refused(message)
}

/// An allowance written as a duration (0 for none), in the seconds the store keeps.
fn allowance(flag: &str, text: &str) -> Result<u32, OpError> {
    let seconds = duration::seconds_or_zero(text).map_err(|e| refused(format!("--{flag}: {e}")))?;
    // Beyond u32 is beyond a year too, which `CacheSettings::validate` refuses in its words.
    u32::try_from(seconds).map_err(|_| refused(format!("--{flag} {text:?}: at most a year")))
}

impl CacheChange {
    /// Whether a setting is given (clearing a list is not one: it turns nothing on).
    fn sets(&self) -> bool {
        self.cache_ttl.is_some()
            || self.cache_stale_while_revalidate.is_some()
            || self.cache_stale_if_error.is_some()
            || self.cache_bypass_paths.is_some()
            || self.cache_bypass_cookies.is_some()
            || self.cache_max_object.is_some()
            || self.cache_max_share.is_some()
    }

    /// Applies the change to `next` (its checks are `Features::validate`'s, run by the
    /// caller on the whole).
    pub(crate) fn apply(&self, next: &mut Features) -> Result<(), OpError> {
        let clears = self.no_cache_bypass_paths || self.no_cache_bypass_cookies;
        match self.cache {
            Some(false) if self.sets() || clears => {
                return Err(refused(
                    "--cache off forgets the site's cache settings: it takes no other --cache flag"
                        .into(),
                ))
            }
            Some(false) => {
                next.cache = None;
                return Ok(());
            }
            Some(true) => {
                next.cache.get_or_insert_with(CacheSettings::default);
            }
            None if self.sets() => {
                next.cache.get_or_insert_with(CacheSettings::default);
            }
            None => {}
        }
        match next.cache.as_mut() {
            Some(cache) => self.set(cache),
            None => Ok(()),
        }
    }

    /// Sets the values this change gives in `cache`.
    fn set(&self, cache: &mut CacheSettings) -> Result<(), OpError> {
        for (flag, text, field) in [
            ("cache-ttl", &self.cache_ttl, &mut cache.default_ttl),
            (
                "cache-stale-while-revalidate",
                &self.cache_stale_while_revalidate,
                &mut cache.stale_while_revalidate,
            ),
            (
                "cache-stale-if-error",
                &self.cache_stale_if_error,
                &mut cache.stale_if_error,
            ),
        ] {
            if let Some(text) = text {
                *field = allowance(flag, text)?;
            }
        }
        if self.no_cache_bypass_paths {
            cache.bypass_paths.clear();
        }
        if let Some(paths) = &self.cache_bypass_paths {
            cache.bypass_paths.clone_from(paths);
        }
        if self.no_cache_bypass_cookies {
            cache.bypass_cookies.clear();
        }
        if let Some(cookies) = &self.cache_bypass_cookies {
            cache.bypass_cookies.clone_from(cookies);
        }
        let bytes = |flag: &str, text: &str| {
            size::size(text).map_err(|e| refused(format!("--{flag}: {e}")))
        };
        if let Some(text) = &self.cache_max_object {
            cache.max_object = Some(bytes("cache-max-object", text)?);
        }
        if let Some(text) = &self.cache_max_share {
            cache.max_share = Some(bytes("cache-max-share", text)?).filter(|n| *n > 0);
        }
        Ok(())
    }
}

/// A site's cache settings in a table's features column: `cache ttl 5m swr 30s sie 1h
/// bypass 2 max 8 MiB` (what is not the default).
pub(crate) fn summary(cache: &CacheSettings) -> String {
    let mut out = String::from("cache");
    for (name, seconds) in [
        ("ttl", cache.default_ttl),
        ("swr", cache.stale_while_revalidate),
        ("sie", cache.stale_if_error),
    ] {
        if seconds > 0 {
            out.push_str(&format!(" {name} {}", duration::show(seconds.into())));
        }
    }
    let bypass = cache.bypass_paths.len() + cache.bypass_cookies.len();
    if bypass > 0 {
        out.push_str(&format!(" bypass {bypass}"));
    }
    if let Some(bytes) = cache.max_object {
        out.push_str(&format!(" max {}", size::show(bytes)));
    }
    if let Some(bytes) = cache.max_share {
        out.push_str(&format!(" share {}", size::show(bytes)));
    }
    out
}

/// `cache purge` and `POST /v1/cache/purge`: what to remove from a site's cache, exactly one
/// of a URL, a path prefix, a tag, or all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[command(group(
    clap::ArgGroup::new("what")
        .required(true)
        .args(["url", "prefix", "tag", "all"])
))]
pub(crate) struct PurgeRequest {
    /// The site.
    pub(crate) domain: String,
    /// One URL, every variant: its path and query (/a/b?c), or the whole
    /// https://DOMAIN/a/b?c.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(value_name = "URL_PATH")]
    pub(crate) url: Option<String>,
    /// Every URL whose path starts with P (/assets/).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "P")]
    pub(crate) prefix: Option<String>,
    /// Every response that named tag T in Surrogate-Key or Cache-Tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "T")]
    pub(crate) tag: Option<String>,
    /// Everything the site has in the cache.
    #[serde(default, skip_serializing_if = "is_false")]
    #[arg(long)]
    pub(crate) all: bool,
}

impl PurgeRequest {
    /// The scope asked for (exactly one), a whole URL read as its path and query.
    fn scope(&self, domain: &DomainName) -> Result<PurgeScope, OpError> {
        let scope = match (&self.url, &self.prefix, &self.tag, self.all) {
            (Some(url), None, None, false) => PurgeScope::Url(url_target(domain, url)?),
            (None, Some(prefix), None, false) => PurgeScope::Prefix(prefix.clone()),
            (None, None, Some(tag), false) => PurgeScope::Tag(tag.clone()),
            (None, None, None, true) => PurgeScope::All,
            _ => {
                return Err(refused(
                    "give exactly one of a URL, a prefix, a tag, or all".into(),
                ))
            }
        };
        scope.validate().map_err(StoreError::from)?;
        Ok(scope)
    }
}

/// The path and query of `url`: as given when it is one (`/a?b`), else those of an
/// `http(s)://` URL on `domain` (or, for a wildcard site, on a name it covers).
fn url_target(domain: &DomainName, url: &str) -> Result<String, OpError> {
    if url.starts_with('/') {
        return Ok(url.to_owned());
    }
    let not_a_url = || {
        refused(format!(
            "{url:?}: give a path from / (with its query) or an http(s)://{domain}/... URL"
        ))
    };
    let uri: http::Uri = url.parse().map_err(|_| not_a_url())?;
    let (Some("http" | "https"), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Err(not_a_url());
    };
    let host = DomainName::parse(host).map_err(|_| not_a_url())?;
    let covered = host == *domain
        || DomainName::parent_wildcard(host.as_str()).as_deref() == Some(domain.as_str());
    if !covered {
        return Err(refused(format!("{url:?} is not on {domain}")));
    }
    Ok(uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned()))
}

/// Records a purge of a site whose cache is on, for every node to apply.
pub(crate) async fn purge(store: &dyn Store, req: PurgeRequest) -> Result<Purge, OpError> {
    let domain = DomainName::parse(&req.domain).map_err(StoreError::from)?;
    let site = store
        .site(&domain)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("site {domain}")))?;
    if site.features.cache.is_none() {
        return Err(refused(format!(
            "{domain} does not use the cache, so there is nothing to purge (`porter site update {domain} --cache on` turns it on)"
        )));
    }
    let scope = req.scope(&domain)?;
    let at_ms = porter_store::unix_now_ms();
    let purge = Purge {
        // Sorts by time; the random part keeps two purges of one millisecond apart.
        id: format!("{at_ms:013}-{}", hex::encode(rand::random::<[u8; 4]>())),
        domain,
        scope,
        at_ms,
    };
    store.put_purge(purge.clone()).await?;
    Ok(purge)
}

/// What the running server's cache holds and did (`GET /v1/cache/stats`), since it started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CacheStats {
    pub(crate) memory: Tier,
    /// `None`: no disk tier (`serve` without `--cache-dir`).
    pub(crate) disk: Option<DiskTier>,
    pub(crate) sites: Vec<SiteCounters>,
}

/// The counters of `cache`.
pub(crate) fn stats_of(cache: &crate::cache::Cache) -> CacheStats {
    use crate::cache::stats as n;
    let tier = |(used, entries, capacity): (u64, usize, u64)| Tier {
        used_bytes: used,
        capacity_bytes: capacity,
        entries: entries as u64,
    };
    CacheStats {
        memory: tier(cache.memory_usage()),
        disk: cache.disk_usage().map(|(usage, dir)| DiskTier {
            tier: tier(usage),
            dir: dir.display().to_string(),
        }),
        sites: cache
            .counts()
            .into_iter()
            .map(|(site, c)| SiteCounters {
                domain: site.to_string(),
                hits: c[n::HITS],
                misses: c[n::MISSES],
                stale: c[n::STALE],
                bypass: c[n::BYPASS],
                coalesced: c[n::COALESCED],
                revalidated: c[n::REVALIDATED],
                stored: c[n::STORED],
                bytes_served: c[n::BYTES_SERVED],
                evictions: c[n::EVICTIONS],
            })
            .collect(),
    }
}

/// One tier's use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tier {
    pub(crate) used_bytes: u64,
    pub(crate) capacity_bytes: u64,
    pub(crate) entries: u64,
}

/// The disk tier's use, and where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DiskTier {
    #[serde(flatten)]
    pub(crate) tier: Tier,
    pub(crate) dir: String,
}

/// One cached site's counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SiteCounters {
    pub(crate) domain: String,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    /// Stale responses served (while revalidating, or on an upstream error).
    pub(crate) stale: u64,
    /// Requests that went around the cache (bypass rules, methods, `no-store` requests).
    pub(crate) bypass: u64,
    /// Requests that waited for another's upstream fetch.
    pub(crate) coalesced: u64,
    /// Stored responses revalidated with the upstream.
    pub(crate) revalidated: u64,
    /// Responses written to the cache.
    pub(crate) stored: u64,
    pub(crate) bytes_served: u64,
    pub(crate) evictions: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(f: impl FnOnce(&mut CacheChange)) -> CacheChange {
        let mut change = CacheChange::default();
        f(&mut change);
        change
    }

    #[test]
    fn a_setting_turns_the_cache_on_and_off_forgets_it() {
        let mut features = Features::default();
        change(|c| c.cache_ttl = Some("5m".into()))
            .apply(&mut features)
            .unwrap();
        let cache = features.cache.clone().unwrap();
        assert_eq!(cache.default_ttl, 300);
        change(|c| c.cache = Some(true))
            .apply(&mut features)
            .unwrap();
        assert_eq!(features.cache, Some(cache), "on keeps what is set");
        change(|c| c.cache = Some(false))
            .apply(&mut features)
            .unwrap();
        assert_eq!(features.cache, None);
        change(|c| c.no_cache_bypass_paths = true)
            .apply(&mut features)
            .unwrap();
        assert_eq!(features.cache, None, "clearing a list turns nothing on");
        assert!(change(|c| {
            c.cache = Some(false);
            c.cache_ttl = Some("1m".into());
        })
        .apply(&mut features)
        .is_err());
    }

    #[test]
    fn values_are_read_or_refused() {
        let mut features = Features::default();
        change(|c| {
            c.cache_stale_if_error = Some("1d".into());
            c.cache_stale_while_revalidate = Some("0".into());
            c.cache_bypass_paths = Some(vec!["/admin/".into()]);
            c.cache_max_object = Some("8MiB".into());
        })
        .apply(&mut features)
        .unwrap();
        let cache = features.cache.as_ref().unwrap();
        assert_eq!(
            (cache.stale_if_error, cache.max_object),
            (86_400, Some(8 << 20))
        );
        assert_eq!(summary(cache), "cache sie 1d bypass 1 max 8 MiB");
        for bad in [
            change(|c| c.cache_ttl = Some("-1s".into())),
            change(|c| c.cache_ttl = Some("99999999999d".into())),
            change(|c| c.cache_max_object = Some("lots".into())),
        ] {
            assert!(bad.apply(&mut features.clone()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_whole_url_is_read_as_its_path_on_the_site() {
        let site = DomainName::parse("shop.example").unwrap();
        let wildcard = DomainName::parse("*.example.com").unwrap();
        assert_eq!(url_target(&site, "/a?b=1").unwrap(), "/a?b=1");
        assert_eq!(
            url_target(&site, "https://Shop.Example:8443/a/b?c").unwrap(),
            "/a/b?c"
        );
        assert_eq!(url_target(&site, "http://shop.example").unwrap(), "/");
        assert_eq!(
            url_target(&wildcard, "https://a.example.com/x").unwrap(),
            "/x"
        );
        for bad in [
            "https://other.example/a",
            "ftp://shop.example/a",
            "shop.example/a",
        ] {
            assert!(url_target(&site, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stats_read_the_endpoints_json() {
        let json = r#"{"memory":{"used_bytes":1,"capacity_bytes":2,"entries":3},
            "disk":{"used_bytes":4,"capacity_bytes":5,"entries":6,"dir":"/var/cache/porter"},
            "sites":[{"domain":"a.test","hits":1,"misses":2,"stale":3,"bypass":4,"coalesced":5,
            "revalidated":6,"stored":7,"bytes_served":8,"evictions":9}]}"#;
        let stats: CacheStats = serde_json::from_str(json).unwrap();
        assert_eq!(stats.disk.as_ref().unwrap().tier.entries, 6);
        let back = serde_json::to_value(&stats).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(json).unwrap()
        );
        let none: CacheStats = serde_json::from_str(
            r#"{"memory":{"used_bytes":0,"capacity_bytes":0,"entries":0},"disk":null,"sites":[]}"#,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(none).unwrap()["disk"],
            serde_json::Value::Null
        );
    }
}
