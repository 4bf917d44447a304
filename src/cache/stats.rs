//! What the cache did, per site: the counts `porter cache stats` and the metrics show.

use porter_store::Recover;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Answered from the cache, fresh (or stale by the request's leave).
pub(crate) const HITS: usize = 0;
/// Fetched from the upstream: nothing stored could answer.
pub(crate) const MISSES: usize = 1;
/// Answered stale (while revalidating, or because the upstream failed).
pub(crate) const STALE: usize = 2;
/// Went around the cache (method, bypass rule, a request that cannot be stored).
pub(crate) const BYPASS: usize = 3;
/// Waited on another request's fetch of the same URL.
pub(crate) const COALESCED: usize = 4;
/// Stored responses revalidated with the upstream (a 304 kept them).
pub(crate) const REVALIDATED: usize = 5;
/// Responses stored.
pub(crate) const STORED: usize = 6;
/// Body bytes answered from the cache.
pub(crate) const BYTES_SERVED: usize = 7;
/// URLs the memory tier evicted for room.
pub(crate) const EVICTIONS: usize = 8;
/// How many counts a site has.
pub(crate) const COUNTS: usize = 9;
/// The counts' names, in order (the JSON keys and the metrics' `result` labels).
pub(crate) const NAMES: [&str; COUNTS] = [
    "hits",
    "misses",
    "stale",
    "bypass",
    "coalesced",
    "revalidated",
    "stored",
    "bytes_served",
    "evictions",
];
/// Most sites counted; beyond, the rest share one row (a bound on memory).
const MAX_SITES: usize = 100_000;

/// One site's counts, and the bytes it holds in memory.
#[derive(Default)]
pub(crate) struct SiteStats([AtomicU64; COUNTS], AtomicI64);

impl SiteStats {
    /// Bytes its responses hold in the memory tier (as far as its changes were seen).
    pub(crate) fn held(&self) -> u64 {
        self.1.load(Ordering::Relaxed).max(0) as u64
    }

    /// Records `n` more (or fewer) bytes held.
    pub(crate) fn hold(&self, n: i64) {
        self.1.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn count(&self, which: usize) {
        self.add(which, 1);
    }

    pub(crate) fn add(&self, which: usize, n: u64) {
        self.0[which].fetch_add(n, Ordering::Relaxed);
    }

    fn read(&self) -> [u64; COUNTS] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

/// Every site's counts.
#[derive(Default)]
pub(crate) struct Stats(RwLock<HashMap<Arc<str>, Arc<SiteStats>>>);

impl Stats {
    /// `site`'s counts, made on first use.
    pub(crate) fn site(&self, site: &str) -> Arc<SiteStats> {
        if let Some(found) = self.0.read().recover().get(site) {
            return Arc::clone(found);
        }
        let mut all = self.0.write().recover();
        let name: Arc<str> = if all.len() < MAX_SITES {
            site.into()
        } else {
            "(other)".into()
        };
        Arc::clone(all.entry(name).or_default())
    }

    pub(crate) fn all(&self) -> Vec<(Arc<str>, [u64; COUNTS])> {
        let mut all: Vec<_> = self
            .0
            .read()
            .recover()
            .iter()
            .map(|(site, stats)| (Arc::clone(site), stats.read()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}
