//! What one edge thread counts: handshakes, open connections, and per site its requests by
//! status class with their durations. Each edge thread has its own [`EdgeStats`], so that
//! counting touches no cache line another thread writes; a scrape adds them up.

use crate::runtime::hash::Fnv;
use porter_store::Recover as _;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the duration histograms' buckets; the last one is +Inf.
pub(crate) const BUCKETS: [f64; 12] = [
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    f64::MAX,
];

/// Durations counted into [`BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Histogram {
    /// Observations per bucket (not cumulative).
    pub(crate) buckets: [u64; BUCKETS.len()],
    pub(crate) sum: f64,
    pub(crate) count: u64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let seconds = d.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len() - 1);
        self.buckets[bucket] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    pub(crate) fn add(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    pub(crate) fn minus(&self, base: &Histogram) -> Histogram {
        let mut out = self.clone();
        for (a, b) in out.buckets.iter_mut().zip(base.buckets) {
            *a = a.saturating_sub(b);
        }
        out.sum = (out.sum - base.sum).max(0.0);
        out.count = out.count.saturating_sub(base.count);
        out
    }
}

/// One site's requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SiteStats {
    /// Responses by status class: 1xx to 5xx.
    pub(crate) codes: [u64; 5],
    /// From the request's head to the end of its response.
    pub(crate) duration: Histogram,
    /// From sending to the upstream to its response head (forwarded requests only).
    pub(crate) upstream: Histogram,
}

impl SiteStats {
    pub(crate) fn requests(&self) -> u64 {
        self.codes.iter().sum()
    }

    pub(crate) fn add(&mut self, other: &SiteStats) {
        for (a, b) in self.codes.iter_mut().zip(other.codes) {
            *a += b;
        }
        self.duration.add(&other.duration);
        self.upstream.add(&other.upstream);
    }

    pub(crate) fn minus(&self, base: &SiteStats) -> SiteStats {
        let mut codes = self.codes;
        for (a, b) in codes.iter_mut().zip(base.codes) {
            *a = a.saturating_sub(b);
        }
        SiteStats {
            codes,
            duration: self.duration.minus(&base.duration),
            upstream: self.upstream.minus(&base.upstream),
        }
    }
}

/// The label of requests for no site Porter serves (unknown names, malformed requests):
/// never the name asked for, which a client could vary without end.
pub(crate) const NO_SITE: &str = "-";

/// Why a TLS handshake failed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HandshakeFailure {
    /// A name no site serves (or no SNI and no default).
    UnknownName,
    /// Not within the handshake timeout.
    Timeout,
    /// The client went away.
    Closed,
    /// Anything else: not TLS, no shared version or cipher, a bad message.
    Protocol,
}

pub(crate) const HANDSHAKE_FAILURES: [(HandshakeFailure, &str); 4] = [
    (HandshakeFailure::UnknownName, "unknown_name"),
    (HandshakeFailure::Timeout, "timeout"),
    (HandshakeFailure::Closed, "closed"),
    (HandshakeFailure::Protocol, "protocol"),
];

/// A listener, for the open connections gauge.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Listener {
    Http,
    Https,
    /// HTTP/3 over QUIC.
    Quic,
}

/// One edge thread's counts.
#[derive(Debug, Default)]
pub(crate) struct EdgeStats {
    /// Full and resumed handshakes.
    handshakes: [AtomicU64; 2],
    failures: [AtomicU64; HANDSHAKE_FAILURES.len()],
    /// Open connections on the HTTP and HTTPS listeners, and over QUIC.
    open: [AtomicI64; 3],
    /// Per site; the lock is this thread's own but for a scrape's moment. FNV: the keys are
    /// the names of sites the operator added (requests for others count as [`NO_SITE`]), hashed
    /// on every request.
    sites: Mutex<HashMap<Arc<str>, SiteStats, BuildHasherDefault<Fnv>>>,
}

impl EdgeStats {
    pub(crate) fn handshake(&self, resumed: bool) {
        self.handshakes[usize::from(resumed)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handshake_failed(&self, why: HandshakeFailure) {
        self.failures[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection open on `listener` until the guard is dropped.
    pub(crate) fn open(self: &Arc<Self>, listener: Listener) -> OpenConnection {
        self.open[listener as usize].fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone(), listener)
    }

    /// Counts a finished request of `site`.
    pub(crate) fn request(
        &self,
        site: Option<&Arc<str>>,
        status: u16,
        duration: Duration,
        upstream: Option<Duration>,
    ) {
        let class = usize::from((status / 100).clamp(1, 5) - 1);
        let mut sites = self.sites.lock().recover();
        let stats = match site {
            Some(site) => match sites.get_mut(&**site) {
                Some(stats) => stats,
                None => sites.entry(site.clone()).or_default(),
            },
            None => sites.entry(NO_SITE.into()).or_default(),
        };
        stats.codes[class] += 1;
        stats.duration.observe(duration);
        if let Some(upstream) = upstream {
            stats.upstream.observe(upstream);
        }
    }

    /// Full and resumed handshakes.
    pub(crate) fn handshakes(&self) -> [u64; 2] {
        self.handshakes
            .each_ref()
            .map(|c| c.load(Ordering::Relaxed))
    }

    pub(crate) fn failures(&self) -> [u64; HANDSHAKE_FAILURES.len()] {
        self.failures.each_ref().map(|c| c.load(Ordering::Relaxed))
    }

    /// Open connections on HTTP, HTTPS and QUIC.
    pub(crate) fn open_connections(&self) -> [i64; 3] {
        self.open.each_ref().map(|c| c.load(Ordering::Relaxed))
    }

    /// Adds this thread's per-site counts into `into`, dropping sites `keep` refuses (removed
    /// ones), so that the map stays as big as the sites served.
    pub(crate) fn merge_sites(
        &self,
        into: &mut HashMap<Arc<str>, SiteStats>,
        keep: impl Fn(&str) -> bool,
    ) {
        let mut sites = self.sites.lock().recover();
        sites.retain(|site, _| &**site == NO_SITE || keep(site));
        for (site, stats) in sites.iter() {
            into.entry(site.clone()).or_default().add(stats);
        }
    }
}

/// A connection counted open.
pub(crate) struct OpenConnection(Arc<EdgeStats>, Listener);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open[self.1 as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_site_class_and_bucket() {
        let stats = EdgeStats::default();
        let site: Arc<str> = "a.test".into();
        stats.request(
            Some(&site),
            200,
            Duration::from_millis(3),
            Some(Duration::from_millis(2)),
        );
        stats.request(Some(&site), 503, Duration::from_secs(20), None);
        stats.request(None, 421, Duration::from_millis(1), None);
        let mut merged = HashMap::new();
        stats.merge_sites(&mut merged, |_| true);
        let a = &merged[&site];
        assert_eq!(a.codes, [0, 1, 0, 0, 1]);
        assert_eq!(a.duration.buckets[0], 1);
        assert_eq!(
            a.duration.buckets[BUCKETS.len() - 1],
            1,
            "20 s lands in +Inf"
        );
        assert_eq!((a.upstream.count, a.duration.count), (1, 2));
        assert_eq!(merged[NO_SITE].codes[3], 1);
        let mut again = HashMap::new();
        stats.merge_sites(&mut again, |_| false);
        assert_eq!(
            again.len(),
            1,
            "a removed site's counts go; the no-site row stays"
        );
    }
}
