//! The HTTP cache (RFC 9111, shared): one per node, used by the sites that turn it on.
//!
//! - `control` reads cache directives (`Cache-Control`, and RFC 9213's targeted fields),
//!   `dates` HTTP dates;
//! - `policy` decides what is stored, for how long, and whether a stored response may answer;
//! - `entry` is what is kept (a response with its age's times, `Vary` values and tags) and
//!   its checked file form; `disk` the disk tier; `fill` the body that streams to its first
//!   client while it is kept; `answer` the responses made from what is kept (`Age`, `HEAD`,
//!   ranges, `304`s, `Cache-Status`); `stats` the counts per site.
//!
//! Tiers: memory (quick_cache: weighted by bytes, a CLOCK-Pro-like policy with a ghost queue,
//! so a scan of one-off URLs does not flush the popular ones), then disk when `--cache-dir` is
//! given (every stored response is written there too, and found again after a restart).
//! Concurrent misses for one key wait on one fetch ([`Cache::flight`]). The request path that
//! uses all this is `crate::proxy::cached`. This module may use `runtime` and the store's types.

pub(crate) mod answer;
pub(crate) mod control;
mod dates;
mod disk;
pub(crate) mod entry;
pub(crate) mod fill;
pub(crate) mod policy;
pub(crate) mod purges;
pub(crate) mod stats;

use crate::cache::entry::{Entry, Key, Variants};
use crate::cache::stats::{SiteStats, Stats};
use porter_store::{Purge, PurgeScope, Recover};
use quick_cache::sync::Cache as Tier;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a request waits for another's fetch of the same key before going on its own.
pub(crate) const COALESCE_WAIT: Duration = Duration::from_secs(10);
/// URLs the memory tier expects to hold, to size itself.
const EXPECTED_ENTRIES: usize = 10_000;

/// The node's cache settings (`porter serve --cache-memory/--cache-dir/--cache-disk`).
#[derive(Debug, Clone)]
pub(crate) struct Tiers {
    pub(crate) memory: u64,
    pub(crate) disk: Option<(PathBuf, u64)>,
}

#[derive(Clone)]
struct ByWeight;

impl Weighter<Key, Variants> for ByWeight {
    fn weight(&self, _key: &Key, variants: &Variants) -> u64 {
        variants.weight().max(1)
    }
}

/// Counts what the memory tier evicts, per site.
#[derive(Clone)]
struct CountEvictions(Arc<Stats>);

impl Lifecycle<Key, Variants> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), key: Key, variants: Variants) {
        let site = self.0.site(&key.site);
        site.count(stats::EVICTIONS);
        site.hold(-(variants.weight() as i64));
    }
}

type Memory = Tier<Key, Variants, ByWeight, DefaultHashBuilder, CountEvictions>;

/// One node's cache.
pub(crate) struct Cache {
    memory: Memory,
    memory_capacity: u64,
    disk: Option<disk::Disk>,
    flights: Mutex<HashMap<Key, watch::Receiver<bool>>>,
    stats: Arc<Stats>,
    /// Bytes the fills under way hold, all together (see [`Cache::reserve`]).
    filling: AtomicU64,
}

/// What [`Cache::flight`] says about a key.
pub(crate) enum Flight {
    /// No fetch under way: this request fetches, and releases the waiters when the guard goes.
    Lead(FlightGuard),
    /// Another request fetches: wait on this.
    Wait(watch::Receiver<bool>),
}

/// Held by the request that fetches a key; dropping it (stored, found uncacheable, failed or
/// abandoned) lets the waiters go.
pub(crate) struct FlightGuard {
    cache: Arc<Cache>,
    key: Key,
    done: watch::Sender<bool>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.cache.flights.lock().recover().remove(&self.key);
        let _ = self.done.send(true);
    }
}

impl Cache {
    /// A cache with these tiers; the disk tier's files are found again in the background.
    pub(crate) fn new(tiers: &Tiers) -> std::io::Result<Cache> {
        let stats = Arc::new(Stats::default());
        let disk = match &tiers.disk {
            Some((dir, capacity)) => Some(disk::Disk::open(dir, *capacity)?),
            None => None,
        };
        Ok(Cache {
            memory: Memory::with(
                EXPECTED_ENTRIES,
                tiers.memory.max(1),
                ByWeight,
                DefaultHashBuilder::default(),
                CountEvictions(Arc::clone(&stats)),
            ),
            memory_capacity: tiers.memory,
            disk,
            flights: Mutex::new(HashMap::new()),
            stats,
            filling: AtomicU64::new(0),
        })
    }

    /// The counts of `site`.
    pub(crate) fn site_stats(&self, site: &str) -> Arc<SiteStats> {
        self.stats.site(site)
    }

    /// The variants kept for `key`: from memory, else from disk (then kept in memory again).
    pub(crate) async fn variants(&self, key: &Key) -> Option<Variants> {
        if let Some(found) = self.memory.get(key) {
            return Some(found);
        }
        let found = self.disk.as_ref()?.read(key).await?;
        // Back in memory when it fits there (else the tier would count its refusal as an
        // eviction).
        if found.weight() <= self.memory_capacity / 8 {
            self.keep(key.clone(), found.clone());
        }
        Some(found)
    }

    /// The largest body worth collecting for a site whose largest object is `max_object`:
    /// without a disk tier, no more than memory keeps of one object.
    pub(crate) fn fill_limit(&self, max_object: u64) -> u64 {
        match self.disk {
            Some(_) => max_object,
            None => max_object.min(self.memory_capacity / 8),
        }
    }

    /// Takes `n` more bytes for a fill under way, unless the fills together would hold more
    /// than a quarter of the memory tier (many large downloads at once stay bounded: a fill
    /// refused here streams on, uncached).
    pub(crate) fn reserve(&self, n: u64) -> bool {
        let budget = (self.memory_capacity / 4).max(1 << 20);
        self.filling
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held + n <= budget).then_some(held + n)
            })
            .is_ok()
    }

    /// Gives back what [`Cache::reserve`] took.
    pub(crate) fn release(&self, n: u64) {
        self.filling.fetch_sub(n, Ordering::Relaxed);
    }

    /// Keeps `entry` for `key`, in place of the variant it replaces, unless the site would
    /// hold more than `share` bytes of memory.
    pub(crate) fn store(&self, key: &Key, entry: Entry, share: Option<u64>) {
        let site = self.stats.site(&key.site);
        let weight = entry.weight();
        // One object never takes more than an eighth of the memory tier.
        let fits = weight <= self.memory_capacity / 8;
        if !fits && self.disk.is_none() {
            return;
        }
        let current = self.memory.get(key).unwrap_or_default();
        let grows = weight.saturating_sub(current.weight());
        if share.is_some_and(|share| site.held() + grows > share) {
            return;
        }
        let variants = current.with(Arc::new(entry));
        site.count(stats::STORED);
        if let Some(disk) = &self.disk {
            disk.put(key.clone(), variants.clone());
        }
        if fits {
            self.keep(key.clone(), variants);
        } else {
            self.forget(key);
        }
    }

    /// Puts `variants` in memory, counting the bytes the site holds. What it replaces is
    /// taken out first: the tier takes a replacement for an eviction of the old value.
    fn keep(&self, key: Key, variants: Variants) {
        self.forget(&key);
        self.stats.site(&key.site).hold(variants.weight() as i64);
        self.memory.insert(key, variants);
    }

    /// Takes `key` out of memory, counting the bytes the site holds.
    fn forget(&self, key: &Key) {
        if let Some((_, gone)) = self.memory.remove(key) {
            self.stats.site(&key.site).hold(-(gone.weight() as i64));
        }
    }

    /// Forgets every variant of `key` (after an unsafe method, section 4.4).
    pub(crate) fn invalidate(&self, key: &Key) {
        self.forget(key);
        if let Some(disk) = &self.disk {
            disk.remove(key.clone());
        }
    }

    /// Either leads the fetch of `key` or waits on the one under way.
    pub(crate) fn flight(self: &Arc<Self>, key: &Key) -> Flight {
        let mut flights = self.flights.lock().recover();
        if let Some(waiting) = flights.get(key) {
            return Flight::Wait(waiting.clone());
        }
        let (done, waiting) = watch::channel(false);
        flights.insert(key.clone(), waiting);
        Flight::Lead(FlightGuard {
            cache: Arc::clone(self),
            key: key.clone(),
            done,
        })
    }

    /// Applies a purge to both tiers: what it names, stored before it was asked for (so that
    /// applying it again, as a node that starts does, removes nothing newer).
    pub(crate) fn purge(&self, purge: &Purge) {
        let site = purge.domain.as_str();
        let at = purge.at_ms;
        let keyed = |key: &Key| {
            &*key.site == site
                && match &purge.scope {
                    PurgeScope::Url(target) => &*key.target == target,
                    PurgeScope::Prefix(prefix) => key.path().starts_with(prefix.as_str()),
                    PurgeScope::Tag(_) | PurgeScope::All => true,
                }
        };
        let tagged = |tags: &[String]| match &purge.scope {
            PurgeScope::Tag(tag) => tags.iter().any(|t| t == tag),
            _ => true,
        };
        let gone = |e: &Entry| e.times.response_ms <= at && tagged(&e.tags);
        let touched: Vec<(Key, Variants)> = match &purge.scope {
            PurgeScope::Url(target) => [false, true]
                .into_iter()
                .filter_map(|https| {
                    let key = Key {
                        site: site.into(),
                        https,
                        target: target.as_str().into(),
                    };
                    self.memory.get(&key).map(|v| (key, v))
                })
                .collect(),
            _ => self.memory.iter().filter(|(key, _)| keyed(key)).collect(),
        };
        for (key, variants) in touched {
            match variants.without(gone) {
                Some(kept) if kept.0.len() == variants.0.len() => {}
                Some(kept) => self.keep(key, kept),
                None => self.forget(&key),
            }
        }
        if let Some(disk) = &self.disk {
            disk.remove_where(|key, meta| keyed(key) && meta.stored_ms <= at && tagged(&meta.tags));
        }
    }

    /// The memory tier's bytes held, entries (URLs) and capacity.
    pub(crate) fn memory_usage(&self) -> (u64, usize, u64) {
        (
            self.memory.weight(),
            self.memory.len(),
            self.memory_capacity,
        )
    }

    /// The disk tier's bytes held, files and capacity, and its directory, when there is one.
    pub(crate) fn disk_usage(&self) -> Option<((u64, usize, u64), &std::path::Path)> {
        self.disk.as_ref().map(|disk| (disk.usage(), disk.dir()))
    }

    /// The per-site counts, for metrics.
    pub(crate) fn counts(&self) -> Vec<(Arc<str>, [u64; stats::COUNTS])> {
        self.stats.all()
    }
}
