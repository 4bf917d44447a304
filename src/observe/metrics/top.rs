//! A bounded label set for per-site request metrics: the busiest sites (by requests since the
//! last scrape) get a `site` label of their own, up to a number; the rest are summed as
//! `other`. Every series stays monotonic, as Prometheus counters must: a site that gets a label
//! counts from the scrape before (what `other` showed of it stays there), one that loses it (a
//! busier site took its place) or is removed gives its whole count to `other`.

use super::edge::{SiteStats, NO_SITE};
use std::collections::HashMap;
use std::sync::Arc;

/// The label of the sites without one of their own.
pub(crate) const OTHER: &str = "other";

/// Which sites have a label of their own, across scrapes.
#[derive(Debug)]
pub(crate) struct TopSites {
    limit: usize,
    /// The labelled sites, with what they had counted when they got the label.
    labelled: HashMap<Arc<str>, SiteStats>,
    /// Every site's totals at the last scrape.
    last: HashMap<Arc<str>, SiteStats>,
    /// The last totals of sites that are gone.
    retired: SiteStats,
}

impl TopSites {
    pub(crate) fn new(limit: usize) -> Self {
        TopSites {
            limit,
            labelled: HashMap::new(),
            last: HashMap::new(),
            retired: SiteStats::default(),
        }
    }

    /// The series to expose for `now` (every site's totals): the labelled sites, `other`, and
    /// the requests for no site.
    pub(crate) fn series(
        &mut self,
        now: HashMap<Arc<str>, SiteStats>,
    ) -> Vec<(Arc<str>, SiteStats)> {
        for (site, last) in &self.last {
            if !now.contains_key(site) {
                self.labelled.remove(site);
                self.retired.add(last);
            }
        }
        self.promote(&now);
        let mut other = self.retired.clone();
        let mut series = Vec::with_capacity(self.labelled.len() + 2);
        for (site, stats) in &now {
            match self.labelled.get(site) {
                Some(baseline) => {
                    other.add(baseline);
                    series.push((site.clone(), stats.minus(baseline)));
                }
                None if &**site == NO_SITE => series.push((site.clone(), stats.clone())),
                None => other.add(stats),
            }
        }
        series.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        series.push((OTHER.into(), other));
        self.last = now;
        series
    }

    /// Gives the busiest sites without a label one: while there is room, then in place of a
    /// clearly quieter labelled site.
    fn promote(&mut self, now: &HashMap<Arc<str>, SiteStats>) {
        let recent = |site: &Arc<str>, stats: &SiteStats| {
            stats.requests()
                - self
                    .last
                    .get(site)
                    .map_or(0, |l| l.requests().min(stats.requests()))
        };
        let mut candidates: Vec<(u64, &Arc<str>)> = now
            .iter()
            .filter(|(site, _)| &***site != NO_SITE && !self.labelled.contains_key(*site))
            .map(|(site, stats)| (recent(site, stats), site))
            .filter(|(recent, _)| *recent > 0)
            .collect();
        candidates.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let mut promoted = Vec::new();
        for (busy, site) in candidates {
            if self.labelled.len() + promoted.len() < self.limit {
                promoted.push(site.clone());
                continue;
            }
            // Full: a site takes the place of the quietest labelled one only when clearly
            // busier, so that labels do not flap between sites of like traffic.
            let quietest = self
                .labelled
                .keys()
                .map(|s| (now.get(s).map_or(0, |st| recent(s, st)), s.clone()))
                .min();
            match quietest {
                Some((quiet, demoted)) if busy > 2 * quiet + 10 => {
                    self.labelled.remove(&demoted);
                    promoted.push(site.clone());
                }
                _ => break,
            }
        }
        for site in promoted {
            // What `other` has shown of it so far (nothing, for a site new since then).
            let baseline = self.last.get(&site).cloned().unwrap_or_default();
            self.labelled.insert(site, baseline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(pairs: &[(&str, u64)]) -> HashMap<Arc<str>, SiteStats> {
        pairs
            .iter()
            .map(|(site, n)| {
                let mut stats = SiteStats::default();
                stats.codes[1] = *n;
                (Arc::from(*site), stats)
            })
            .collect()
    }

    fn get(series: &[(Arc<str>, SiteStats)], site: &str) -> Option<u64> {
        series
            .iter()
            .find(|(s, _)| &**s == site)
            .map(|(_, stats)| stats.requests())
    }

    #[test]
    fn labels_are_bounded_and_every_series_only_grows() {
        let mut top = TopSites::new(2);
        let s = top.series(totals(&[("a", 100), ("b", 50), ("c", 1), ("-", 3)]));
        assert_eq!(
            (get(&s, "a"), get(&s, "b"), get(&s, "c")),
            (Some(100), Some(50), None)
        );
        assert_eq!(get(&s, OTHER), Some(1));
        assert_eq!(get(&s, "-"), Some(3));

        // c becomes much busier than b: it takes b's label, counting from the last scrape
        // (what other showed of it stays there); b's whole count goes to other.
        let s = top.series(totals(&[("a", 200), ("b", 51), ("c", 500), ("-", 3)]));
        assert_eq!(
            (get(&s, "a"), get(&s, "b"), get(&s, "c")),
            (Some(200), None, Some(499))
        );
        assert_eq!(get(&s, OTHER), Some(1 + 51));

        // a is removed: its whole count goes to other.
        let s = top.series(totals(&[("b", 52), ("c", 600), ("-", 3)]));
        assert_eq!(get(&s, "c"), Some(599));
        assert_eq!(get(&s, "a"), None);
        assert_eq!(
            get(&s, "b"),
            Some(1),
            "b has room again, from the last scrape"
        );
        assert_eq!(get(&s, OTHER), Some(200 + 1 + 51));
        assert!(s.len() <= 2 + 2);
    }
}
