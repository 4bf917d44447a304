//! Prometheus metrics (`GET /metrics`): gathered at scrape time from what each part already
//! keeps (the edge threads' own counters, the snapshot's certificates, the ACME worker's
//! outcomes, the apps, the limits), so that the hot path pays a few uncontended increments and
//! nothing else. Encoded by `prometheus-client` in the OpenMetrics text format.
//!
//! - `edge`: what one edge thread counts ([`EdgeStats`]).
//! - `top`: the bounded `site` label set of the request metrics.

mod edge;
mod top;

pub(crate) use edge::{EdgeStats, HandshakeFailure, Listener};

use crate::access_log::AccessLog;
use crate::apps::Supervisor;
use crate::on_demand::OnDemand;
use crate::proxy::Shed;
use crate::reload::LiveSites;
use edge::{Histogram, SiteStats, BUCKETS, HANDSHAKE_FAILURES};
use porter_acme::Outcomes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::fmt::Error;
use std::sync::{Arc, Mutex};
use top::TopSites;

/// The content type of OpenMetrics text.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic Prometheus text format (what `promtool` reads).
pub(crate) const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The parts a server may run without, each counted when it runs.
pub(crate) struct OptionalParts {
    pub(crate) acme: Option<Arc<Outcomes>>,
    pub(crate) access_log: Option<Arc<AccessLog>>,
    pub(crate) on_demand: Option<Arc<OnDemand>>,
    pub(crate) waf: Option<Arc<crate::waf::Stats>>,
}

/// Everything a scrape reads.
pub(crate) struct Metrics {
    edges: Vec<Arc<EdgeStats>>,
    sites: Arc<LiveSites>,
    shed: Arc<Shed>,
    apps: Arc<Supervisor>,
    acme: Option<Arc<Outcomes>>,
    access_log: Option<Arc<AccessLog>>,
    on_demand: Option<Arc<OnDemand>>,
    waf: Option<Arc<crate::waf::Stats>>,
    /// Which sites have a label of their own.
    top: Mutex<TopSites>,
}

impl Metrics {
    /// Metrics over these parts; at most `top_sites` sites get a `site` label of their own.
    pub(crate) fn new(
        edges: Vec<Arc<EdgeStats>>,
        sites: Arc<LiveSites>,
        shed: Arc<Shed>,
        apps: Arc<Supervisor>,
        optional: OptionalParts,
        top_sites: usize,
    ) -> Self {
        Metrics {
            edges,
            sites,
            shed,
            apps,
            acme: optional.acme,
            access_log: optional.access_log,
            on_demand: optional.on_demand,
            waf: optional.waf,
            top: Mutex::new(TopSites::new(top_sites)),
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
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String does not fail");
        out
    }

    /// Open client connections on HTTP and HTTPS.
    pub(crate) fn connections_open(&self) -> [i64; 2] {
        let mut open = [0; 2];
        for edge in &self.edges {
            for (total, n) in open.iter_mut().zip(edge.open_connections()) {
                *total += n;
            }
        }
        open
    }

    fn gather(&self, apps: Vec<(String, &'static str)>) -> Scrape {
        let snapshot = self.sites.current();
        let mut certs = Vec::new();
        let mut staples = Vec::new();
        for site in snapshot.entries() {
            if let Some(cert) = &site.cert {
                certs.push((site.domain.clone(), cert.not_after));
                if let Some(until) = cert.staple_until() {
                    staples.push((site.domain.clone(), until));
                }
            }
        }
        let mut per_site: HashMap<Arc<str>, SiteStats> = HashMap::new();
        let (mut handshakes, mut failures) = ([0; 2], [0; HANDSHAKE_FAILURES.len()]);
        let complete = snapshot.is_complete();
        for edge in &self.edges {
            edge.merge_sites(&mut per_site, |site| {
                !complete || snapshot.site(site).is_some()
            });
            add(&mut handshakes, edge.handshakes());
            add(&mut failures, edge.failures());
        }
        let requests = self
            .top
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .series(per_site);
        Scrape {
            certs,
            staples,
            requests,
            handshakes,
            failures,
            open: self.connections_open(),
            limits: self.shed.totals().collect(),
            tls_client_errors: crate::library_logs::tls_client_errors().collect(),
            apps,
            app_starts: self
                .apps
                .counts
                .starts
                .load(std::sync::atomic::Ordering::Relaxed),
            app_crashes: self
                .apps
                .counts
                .crashes
                .load(std::sync::atomic::Ordering::Relaxed),
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
        }
    }
}

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

type AcmeCounts = (u64, u64, Vec<(porter_store::DomainName, u64)>);

/// What one scrape gathered, encoded by the registry.
#[derive(Debug)]
struct Scrape {
    certs: Vec<(Arc<str>, i64)>,
    staples: Vec<(Arc<str>, i64)>,
    requests: Vec<(Arc<str>, SiteStats)>,
    handshakes: [u64; 2],
    failures: [u64; HANDSHAKE_FAILURES.len()],
    open: [i64; 2],
    limits: Vec<(&'static str, u64)>,
    /// rustls's warnings about what TLS peers sent, by reason.
    tls_client_errors: Vec<(&'static str, u64)>,
    apps: Vec<(String, &'static str)>,
    app_starts: u64,
    app_crashes: u64,
    /// Issued, failed, and failures per domain.
    acme: Option<AcmeCounts>,
    access_log_dropped: Option<u64>,
    /// On-demand TLS decisions (empty when it is off).
    on_demand: Vec<(&'static str, u64)>,
    /// WAF requests by site and action, and rule matches by site and rule.
    waf: WafCounts,
}

type WafCounts = (
    Vec<((Arc<str>, &'static str), u64)>,
    Vec<((Arc<str>, u32), u64)>,
);

/// A histogram's values, for `encode_histogram`.
struct Buckets<'a>(&'a Histogram);

impl EncodeMetric for Buckets<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), Error> {
        let buckets: Vec<(f64, u64)> = BUCKETS.iter().copied().zip(self.0.buckets).collect();
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.0.sum,
            self.0.count,
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A counter's value, without exemplars.
trait Count {
    fn count(self, n: u64) -> Result<(), Error>;
}

impl Count for MetricEncoder<'_> {
    fn count(mut self, n: u64) -> Result<(), Error> {
        self.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&n, None)
    }
}

/// One metric family: its name, help and type, then its series.
fn family<'a>(
    encoder: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &str,
    kind: MetricType,
) -> Result<MetricEncoder<'a>, Error> {
    encoder.encode_descriptor(name, help, None, kind)
}

const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        use MetricType::{Counter, Gauge};
        let mut e = family(
            &mut encoder,
            "porter_cert_not_after_seconds",
            "End of validity of the certificate each site is served with (Unix time).",
            Gauge,
        )?;
        for (domain, not_after) in &self.certs {
            e.encode_family(&[("domain", &**domain)])?
                .encode_gauge(not_after)?;
        }
        let mut e = family(
            &mut encoder,
            "porter_ocsp_staple_valid_until_seconds",
            "Until when each site's stapled OCSP response is valid (Unix time).",
            Gauge,
        )?;
        for (domain, until) in &self.staples {
            e.encode_family(&[("domain", &**domain)])?
                .encode_gauge(until)?;
        }
        if let Some((issued, failed, failures)) = &self.acme {
            let mut e = family(
                &mut encoder,
                "porter_acme_orders",
                "ACME attempts since the start, by result.",
                Counter,
            )?;
            for (result, n) in [("issued", issued), ("failed", failed)] {
                e.encode_family(&[("result", result)])?.count(*n)?;
            }
            let mut e = family(
                &mut encoder,
                "porter_cert_renewal_failures",
                "Failed ACME attempts since the start, by site.",
                Counter,
            )?;
            for (domain, n) in failures {
                e.encode_family(&[("domain", domain.as_str())])?.count(*n)?;
            }
        }
        let mut e = family(
            &mut encoder,
            "porter_tls_handshakes",
            "Completed TLS handshakes, full or resumed.",
            Counter,
        )?;
        for (kind, n) in ["full", "resumed"].iter().zip(&self.handshakes) {
            e.encode_family(&[("kind", *kind)])?.count(*n)?;
        }
        let mut e = family(
            &mut encoder,
            "porter_tls_handshake_failures",
            "Failed TLS handshakes, by reason.",
            Counter,
        )?;
        for ((_, reason), n) in HANDSHAKE_FAILURES.iter().zip(&self.failures) {
            e.encode_family(&[("reason", *reason)])?.count(*n)?;
        }
        let mut e = family(
            &mut encoder,
            "porter_tls_client_errors",
            "What TLS peers sent that rustls warns about (an IP address as SNI, a message out of order, an alert), by reason: counted here, logged once per reason every 10 s.",
            Counter,
        )?;
        for (reason, n) in &self.tls_client_errors {
            e.encode_family(&[("reason", *reason)])?.count(*n)?;
        }
        let mut e = family(
            &mut encoder,
            "porter_http_requests",
            "Requests answered, by site (the busiest have their own label, the rest are `other`, requests for no site `-`) and status class.",
            Counter,
        )?;
        for (site, stats) in &self.requests {
            for (class, n) in CODE_CLASSES.iter().zip(&stats.codes) {
                e.encode_family(&[("site", &**site), ("code_class", *class)])?
                    .count(*n)?;
            }
        }
        let mut e = family(
            &mut encoder,
            "porter_http_request_duration_seconds",
            "From a request's head to the end of its response, by site.",
            MetricType::Histogram,
        )?;
        for (site, stats) in &self.requests {
            Buckets(&stats.duration).encode(e.encode_family(&[("site", &**site)])?)?;
        }
        let mut e = family(
            &mut encoder,
            "porter_upstream_duration_seconds",
            "From sending a request upstream to its response head, by site.",
            MetricType::Histogram,
        )?;
        for (site, stats) in &self.requests {
            Buckets(&stats.upstream).encode(e.encode_family(&[("site", &**site)])?)?;
        }
        let mut e = family(
            &mut encoder,
            "porter_connections_open",
            "Client connections open, by listener.",
            Gauge,
        )?;
        for (listener, n) in ["http", "https"].iter().zip(&self.open) {
            e.encode_family(&[("listener", *listener)])?
                .encode_gauge(n)?;
        }
        let mut e = family(
            &mut encoder,
            "porter_limit_rejections",
            "What a limit refused since the start: connections, handshakes, requests, idle connections closed, seconds over the memory ceiling.",
            Counter,
        )?;
        for (limit, n) in &self.limits {
            e.encode_family(&[("limit", *limit)])?.count(*n)?;
        }
        let mut e = family(
            &mut encoder,
            "porter_app_state",
            "1 for each app's current state.",
            Gauge,
        )?;
        for (app, state) in &self.apps {
            for candidate in crate::apps::STATES {
                e.encode_family(&[("app", app.as_str()), ("state", candidate)])?
                    .encode_gauge(&i64::from(*state == candidate))?;
            }
        }
        for (name, help, n) in [
            (
                "porter_app_starts",
                "App instances started.",
                self.app_starts,
            ),
            (
                "porter_app_crashes",
                "App instances that exited unexpectedly or never became ready.",
                self.app_crashes,
            ),
        ] {
            family(&mut encoder, name, help, Counter)?.count(n)?;
        }
        if let Some(dropped) = self.access_log_dropped {
            family(
                &mut encoder,
                "porter_access_log_dropped_lines",
                "Access log lines dropped because the writer could not keep up.",
                Counter,
            )?
            .count(dropped)?;
        }
        if !self.on_demand.is_empty() {
            let mut e = family(
                &mut encoder,
                "porter_on_demand_handshakes",
                "On-demand TLS: handshakes for names Porter did not serve, by decision (allowed_by_rule, allowed_by_ask, refused, busy, rate_limited, failing).",
                Counter,
            )?;
            for (decision, n) in &self.on_demand {
                e.encode_family(&[("decision", *decision)])?.count(*n)?;
            }
        }
        let (waf_requests, waf_rules) = &self.waf;
        if !waf_requests.is_empty() {
            let mut e = family(
                &mut encoder,
                "porter_waf_requests",
                "Requests of sites with the WAF on, by site and action (passed, detected, blocked, skipped: not inspected).",
                Counter,
            )?;
            for ((site, action), n) in waf_requests {
                e.encode_family(&[("site", &**site), ("action", *action)])?
                    .count(*n)?;
            }
        }
        if !waf_rules.is_empty() {
            let mut e = family(
                &mut encoder,
                "porter_waf_rule_matches",
                "WAF rule matches that counted (exclusions left out), by site and rule id.",
                Counter,
            )?;
            for ((site, rule), n) in waf_rules {
                let rule = rule.to_string();
                e.encode_family(&[("site", &**site), ("rule", rule.as_str())])?
                    .count(*n)?;
            }
        }
        Ok(())
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
