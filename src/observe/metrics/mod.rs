//! Prometheus metrics (`GET /metrics`): gathered at scrape time from what each part already
//! keeps (the edge threads' own counters, the snapshot's certificates, the ACME worker's
//! outcomes, the apps, the limits, /proc for the process), so that the hot path pays a few
//! uncontended increments and nothing else. Encoded by `prometheus-client` in the OpenMetrics
//! text format.
//!
//! The proxy, a part above this one, hands its load shedding's counts over as a
//! [`LimitRejections`], so that nothing here imports from it.
//!
//! - `edge`: what one edge thread counts ([`EdgeStats`]).
//! - `families`: every metric family, declared as data, and the encoder that writes them.
//! - `process`: the usual `process_*` figures, from /proc.
//! - `top`: the bounded `site` label set of the request metrics.

mod edge;
mod families;
mod process;
mod top;

pub(crate) use edge::{EdgeStats, HandshakeFailure, Listener};

use crate::apps::Supervisor;
use crate::observe::access_log::AccessLog;
use crate::served::on_demand::OnDemand;
use crate::served::reload::LiveSites;
use crate::served::snapshot::Snapshot;
use edge::{SiteStats, HANDSHAKE_FAILURES};
use families::{ByDomain, Scrape};
use porter_acme::Outcomes;
use porter_store::Recover as _;
use process::Process;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use top::TopSites;

/// The content type of OpenMetrics text.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic Prometheus text format (what `promtool` reads).
pub(crate) const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the limits refused since the start, by the `limit` label of
/// `porter_limit_rejections`: the edge's load shedding, seen from the metrics.
pub(crate) trait LimitRejections: Send + Sync {
    fn rejections(&self) -> Vec<(&'static str, u64)>;
}

/// The parts a server may run without, each counted when it runs.
pub(crate) struct OptionalParts {
    pub(crate) acme: Option<Arc<Outcomes>>,
    pub(crate) access_log: Option<Arc<AccessLog>>,
    pub(crate) on_demand: Option<Arc<OnDemand>>,
    pub(crate) waf: Option<Arc<crate::waf::Stats>>,
    pub(crate) cache: Option<Arc<crate::cache::Cache>>,
}

/// Everything a scrape reads.
pub(crate) struct Metrics {
    edges: Vec<Arc<EdgeStats>>,
    sites: Arc<LiveSites>,
    limits: Arc<dyn LimitRejections>,
    apps: Arc<Supervisor>,
    acme: Option<Arc<Outcomes>>,
    access_log: Option<Arc<AccessLog>>,
    on_demand: Option<Arc<OnDemand>>,
    waf: Option<Arc<crate::waf::Stats>>,
    cache: Option<Arc<crate::cache::Cache>>,
    /// Which sites have a label of their own.
    top: Mutex<TopSites>,
    /// The last exposition's length: the next is written into one allocation of about that
    /// size rather than grown by doubling (with 100,000 sites it is megabytes, and jemalloc
    /// copies on each growth where glibc remapped).
    last_len: std::sync::atomic::AtomicUsize,
}

impl Metrics {
    /// Metrics over these parts; at most `top_sites` sites get a `site` label of their own.
    pub(crate) fn new(
        edges: Vec<Arc<EdgeStats>>,
        sites: Arc<LiveSites>,
        limits: Arc<dyn LimitRejections>,
        apps: Arc<Supervisor>,
        optional: OptionalParts,
        top_sites: usize,
    ) -> Self {
        Metrics {
            edges,
            sites,
            limits,
            apps,
            acme: optional.acme,
            access_log: optional.access_log,
            on_demand: optional.on_demand,
            waf: optional.waf,
            cache: optional.cache,
            top: Mutex::new(TopSites::new(top_sites)),
            last_len: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The exposition of every metric now: OpenMetrics text, or the classic Prometheus text
    /// format (without `openmetrics`), with its content type.
    pub(crate) async fn scrape(&self, openmetrics: bool) -> (String, &'static str) {
        let text = self.openmetrics().await;
        if openmetrics {
            (text, OPENMETRICS)
        } else {
            (classic(&text), PROMETHEUS_TEXT)
        }
    }

    async fn openmetrics(&self) -> String {
        let apps = self.apps.states().await;
        let scrape = self.gather(apps);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(scrape));
        let last = self.last_len.load(std::sync::atomic::Ordering::Relaxed);
        let mut out = String::with_capacity(last + last / 8);
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String does not fail");
        self.last_len
            .store(out.len(), std::sync::atomic::Ordering::Relaxed);
        out
    }

    /// Open client connections on HTTP, HTTPS and HTTP/3.
    pub(crate) fn connections_open(&self) -> [i64; 3] {
        let mut open = [0; 3];
        for edge in &self.edges {
            for (total, n) in open.iter_mut().zip(edge.open_connections()) {
                *total += n;
            }
        }
        open
    }

    fn gather(&self, apps: Vec<(String, &'static str)>) -> Scrape {
        let snapshot = self.sites.current();
        let (certs, staples) = certificates(&snapshot);
        let (requests, handshakes, failures) = self.edges(&snapshot);
        Scrape {
            certs,
            staples,
            requests,
            handshakes,
            failures,
            open: self.connections_open(),
            limits: self.limits.rejections(),
            tls_client_errors: crate::runtime::library_logs::tls_client_errors().collect(),
            apps,
            app_starts: self.apps.counts.starts.load(Ordering::Relaxed),
            app_crashes: self.apps.counts.crashes.load(Ordering::Relaxed),
            acme: self
                .acme
                .as_ref()
                .map(|o| (o.issued(), o.failed(), o.failures())),
            access_log_dropped: self.access_log.as_ref().map(|log| log.dropped()),
            on_demand: self
                .on_demand
                .as_ref()
                .map(|o| o.decisions().collect())
                .unwrap_or_default(),
            waf: self
                .waf
                .as_ref()
                .map(|w| (w.requests(), w.rules()))
                .unwrap_or_default(),
            cache: self.cache.as_ref().map(|cache| {
                let disk = cache.disk_usage().map_or(0, |((used, _, _), _)| used);
                (cache.counts(), [cache.memory_usage().0, disk])
            }),
            upstreams: crate::balance::Balancer::live()
                .iter()
                .map(|b| (Arc::clone(&b.site), b.status()))
                .collect(),
            process: Process::read(),
        }
    }

    /// The edge threads' counts added up: requests by labelled site, then handshakes full and
    /// resumed, and their failures by reason.
    fn edges(&self, snapshot: &Snapshot) -> EdgeCounts {
        let complete = snapshot.is_complete();
        let mut per_site: HashMap<Arc<str>, SiteStats> = HashMap::new();
        let (mut handshakes, mut failures) = ([0; 2], [0; HANDSHAKE_FAILURES.len()]);
        for edge in &self.edges {
            edge.merge_sites(&mut per_site, |site| {
                !complete || snapshot.site(site).is_some()
            });
            add(&mut handshakes, edge.handshakes());
            add(&mut failures, edge.failures());
        }
        let top = &mut self.top.lock().recover();
        (top.series(per_site), handshakes, failures)
    }
}

/// Each served certificate's end of validity, and its staple's, by domain.
fn certificates(snapshot: &Snapshot) -> (ByDomain, ByDomain) {
    let (mut certs, mut staples) = (Vec::new(), Vec::new());
    for site in snapshot.entries() {
        if let Some(cert) = &site.cert {
            certs.push((site.domain.clone(), cert.not_after));
            if let Some(until) = cert.staple_until() {
                staples.push((site.domain.clone(), until));
            }
        }
    }
    (certs, staples)
}

type EdgeCounts = (
    Vec<(Arc<str>, SiteStats)>,
    [u64; 2],
    [u64; HANDSHAKE_FAILURES.len()],
);

/// OpenMetrics text in the classic Prometheus format: a counter family's `HELP` and `TYPE`
/// name its samples (`_total`), and there is no `# EOF` or `# UNIT`. Everything else is the
/// same in both.
fn classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut lines = openmetrics.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            let counter = format!("# TYPE {name} counter");
            if lines.peek() == Some(&counter.as_str()) {
                out.push_str(&format!("# HELP {name}_total{}\n", &rest[name.len()..]));
                out.push_str(&format!("# TYPE {name}_total counter\n"));
                lines.next();
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn add<const N: usize>(total: &mut [u64; N], more: [u64; N]) {
    for (t, m) in total.iter_mut().zip(more) {
        *t += m;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn classic_text_names_counters_by_their_samples() {
        let om = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total{x=\"1\"} 2\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            super::classic(om),
            "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total{x=\"1\"} 2\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n"
        );
    }
}
