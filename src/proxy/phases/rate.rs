//! Rates as token buckets, one per key: a key (a client's address for its TLS handshakes, a
//! client and a site for requests) may go `rate` times a second on average and `burst` times
//! at once; past that it is told how long until it may go again. The table is bounded: when
//! full, buckets that have refilled (they say nothing a new one would not) are dropped, and a
//! key that still finds no room is let through uncounted, logged once a minute, rather than
//! taking memory an address spread could exhaust.

use porter_store::Recover as _;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept at most (about 64 bytes each).
const MAX_BUCKETS: usize = 100_000;

/// The rate allowed per key.
pub(crate) struct Rates<K> {
    /// Tokens a second; 0 for no limit.
    rate: f64,
    burst: f64,
    table: Mutex<Table<K>>,
}

struct Table<K> {
    buckets: HashMap<K, Bucket>,
    /// When an uncounted request was last logged.
    warned: Option<Instant>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refilled(self, now: Instant, rate: f64, burst: f64) -> f64 {
        (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(burst)
    }
}

impl<K: Hash + Eq> Rates<K> {
    /// `rate` a second per key, `burst` at once (twice the rate when 0); `rate` 0 for no
    /// limit.
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        Rates {
            rate: f64::from(rate),
            burst: f64::from(if burst == 0 {
                rate.saturating_mul(2)
            } else {
                burst
            })
            .max(1.0),
            table: Mutex::new(Table {
                buckets: HashMap::new(),
                warned: None,
            }),
        }
    }

    /// Takes a token for `key`, or says how long until one is there.
    pub(crate) fn take(&self, key: K) -> Result<(), Duration> {
        self.take_at(key, self.rate, self.burst)
    }

    /// [`Rates::take`] at a rate of the caller's (tokens a second, `burst` at once), for
    /// tables whose keys each carry their own rate.
    pub(crate) fn take_at(&self, key: K, rate: f64, burst: f64) -> Result<(), Duration> {
        if rate == 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut table = self.table.lock().recover();
        let Table { buckets, warned } = &mut *table;
        if !buckets.contains_key(&key) && buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, bucket| bucket.refilled(now, rate, burst) < burst);
            if buckets.len() >= MAX_BUCKETS {
                if warned.is_none_or(|at| now.duration_since(at) > Duration::from_secs(60)) {
                    *warned = Some(now);
                    tracing::warn!(
                        buckets = MAX_BUCKETS,
                        "a rate table is full of active keys; new ones are not counted"
                    );
                }
                return Ok(());
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let tokens = bucket.refilled(now, rate, burst);
        bucket.at = now;
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            Ok(())
        } else {
            bucket.tokens = tokens;
            Err(Duration::from_secs_f64((1.0 - tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::connection::per_ip::client_key;
    use std::net::IpAddr;
    use std::sync::Arc;

    fn site(name: &str) -> Arc<str> {
        name.into()
    }

    fn key(site: &Arc<str>, client: IpAddr) -> (Arc<str>, IpAddr) {
        (Arc::clone(site), client_key(client))
    }

    #[test]
    fn a_client_gets_its_burst_then_its_rate_per_site() {
        let rates = Rates::new(2, 3);
        let (a, b) = (site("a.test"), site("b.test"));
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(rates.take(key(&a, client)).is_ok());
        }
        let wait = rates.take(key(&a, client)).unwrap_err();
        assert!(
            wait <= Duration::from_millis(500) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // Another site, another client: their own buckets.
        assert!(rates.take(key(&b, client)).is_ok());
        assert!(rates.take(key(&a, "192.0.2.2".parse().unwrap())).is_ok());
        // The same /64 is the same client.
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        for _ in 0..3 {
            assert!(rates.take(key(&a, v6)).is_ok());
        }
        assert!(rates.take(key(&a, "2001:db8::2".parse().unwrap())).is_err());
    }

    #[test]
    fn the_table_stays_bounded() {
        let rates = Rates::new(1, 1);
        let a = site("a.test");
        for n in 0..(MAX_BUCKETS as u32 + 10) {
            let client = IpAddr::V4(n.into());
            assert!(
                rates.take(key(&a, client)).is_ok(),
                "first request of {client}"
            );
        }
        assert_eq!(rates.table.lock().recover().buckets.len(), MAX_BUCKETS);
    }

    #[test]
    fn no_rate_counts_nothing() {
        let rates = Rates::new(0, 0);
        for _ in 0..100 {
            assert!(rates
                .take(key(&site("a.test"), "192.0.2.1".parse().unwrap()))
                .is_ok());
        }
        assert!(rates.table.lock().recover().buckets.is_empty());
    }
}
