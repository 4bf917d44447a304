//! The metric families, declared once each as data ([`FAMILIES`]: name, type, help, and how
//! its series are read from a [`Scrape`]), and the one encoder that writes any of them.

use super::edge::{Histogram, SiteStats, BUCKETS, HANDSHAKE_FAILURES};
use super::process::Process;
use crate::balance::MemberStatus;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType::{self, Counter, Gauge};
use std::fmt::Error;
use std::sync::Arc;

/// A time (Unix seconds) by domain.
pub(super) type ByDomain = Vec<(Arc<str>, i64)>;

type AcmeCounts = (u64, u64, Vec<(porter_store::DomainName, u64)>);

type WafCounts = (
    Vec<((Arc<str>, &'static str), u64)>,
    Vec<((Arc<str>, u32), u64)>,
);

/// What one scrape gathered, encoded by the registry.
#[derive(Debug)]
pub(super) struct Scrape {
    pub(super) certs: ByDomain,
    pub(super) staples: ByDomain,
    pub(super) requests: Vec<(Arc<str>, SiteStats)>,
    pub(super) handshakes: [u64; 2],
    pub(super) failures: [u64; HANDSHAKE_FAILURES.len()],
    pub(super) open: [i64; 3],
    pub(super) limits: Vec<(&'static str, u64)>,
    /// rustls's warnings about what TLS peers sent, by reason.
    pub(super) tls_client_errors: Vec<(&'static str, u64)>,
    pub(super) apps: Vec<(String, &'static str)>,
    pub(super) app_starts: u64,
    pub(super) app_crashes: u64,
    /// Issued, failed, and failures per domain.
    pub(super) acme: Option<AcmeCounts>,
    pub(super) access_log_dropped: Option<u64>,
    /// On-demand TLS decisions (empty when it is off).
    pub(super) on_demand: Vec<(&'static str, u64)>,
    /// WAF requests by site and action, and rule matches by site and rule.
    pub(super) waf: WafCounts,
    /// The HTTP cache: counts by site (in `cache::stats::NAMES` order), then bytes held in
    /// memory and on disk (`None` when the node has no cache).
    pub(super) cache: Option<CacheCounts>,
    /// Each balanced site's upstreams.
    pub(super) upstreams: Vec<(Arc<str>, Vec<MemberStatus>)>,
    /// This process, where /proc can be read.
    pub(super) process: Option<Process>,
}

pub(super) type CacheCounts = (
    Vec<(Arc<str>, [u64; crate::cache::stats::COUNTS])>,
    [u64; 2],
);

/// One metric family.
pub(super) struct Family {
    /// Its name; a counter's samples add `_total`.
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    /// Whether this scrape has the family (`None`: always); a part that is off has none.
    shown: Option<fn(&Scrape) -> bool>,
    /// Writes its series.
    series: fn(&Scrape, &mut Series<'_>) -> Result<(), Error>,
}

/// One sample's value, of its family's type.
#[derive(Clone, Copy)]
enum Value<'a> {
    Counter(u64),
    FloatCounter(f64),
    Gauge(i64),
    FloatGauge(f64),
    Histogram(&'a Histogram),
}

impl Value<'_> {
    fn is(&self, kind: MetricType) -> bool {
        matches!(
            (self, kind),
            (
                Value::Counter(_) | Value::FloatCounter(_),
                MetricType::Counter
            ) | (Value::Gauge(_) | Value::FloatGauge(_), MetricType::Gauge)
                | (Value::Histogram(_), MetricType::Histogram)
        )
    }

    fn write(self, e: &mut MetricEncoder) -> Result<(), Error> {
        match self {
            Value::Counter(n) => e.encode_counter::<NoLabelSet, _, u64>(&n, None),
            Value::FloatCounter(x) => e.encode_counter::<NoLabelSet, _, f64>(&x, None),
            Value::Gauge(n) => e.encode_gauge(&n),
            Value::FloatGauge(x) => e.encode_gauge(&x),
            Value::Histogram(h) => {
                let buckets: Vec<(f64, u64)> = BUCKETS.iter().copied().zip(h.buckets).collect();
                e.encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)
            }
        }
    }
}

/// The series of the family being written.
pub(super) struct Series<'e> {
    encoder: MetricEncoder<'e>,
    kind: MetricType,
}

impl Series<'_> {
    /// Writes the sample of the series with `labels` (none: the family's only series).
    fn add(&mut self, labels: &[(&str, &str)], value: Value) -> Result<(), Error> {
        debug_assert!(
            value.is(self.kind),
            "a sample of another type than its family"
        );
        if labels.is_empty() {
            value.write(&mut self.encoder)
        } else {
            value.write(&mut self.encoder.encode_family(&labels)?)
        }
    }

    /// One counter per label value, under the label `name`.
    fn counts<'a>(
        &mut self,
        name: &str,
        counts: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Result<(), Error> {
        for (label, n) in counts {
            self.add(&[(name, label)], Value::Counter(n))?;
        }
        Ok(())
    }

    /// A family of one series, from this process's figures.
    fn process(&mut self, scrape: &Scrape, value: fn(&Process) -> Value) -> Result<(), Error> {
        match &scrape.process {
            Some(process) => self.add(&[], value(process)),
            None => Ok(()),
        }
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        for family in FAMILIES {
            if family.shown.is_none_or(|shown| shown(self)) {
                let encoder =
                    encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
                (family.series)(
                    self,
                    &mut Series {
                        encoder,
                        kind: family.kind,
                    },
                )?;
            }
        }
        Ok(())
    }
}

const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// What `porter_build_info` says of this binary: what is known when it is compiled.
const BUILD: [(&str, &str); 3] = [
    ("version", env!("CARGO_PKG_VERSION")),
    ("arch", std::env::consts::ARCH),
    ("os", std::env::consts::OS),
];

/// Every family, in the order of the exposition.
static FAMILIES: &[Family] = &[
    Family {
        name: "porter_cert_not_after_seconds",
        help: "End of validity of the certificate each site is served with (Unix time).",
        kind: Gauge,
        shown: None,
        series: |s, out| {
            for (domain, not_after) in &s.certs {
                out.add(&[("domain", domain)], Value::Gauge(*not_after))?;
            }
            Ok(())
        },
    },
    Family {
        name: "porter_ocsp_staple_valid_until_seconds",
        help: "Until when each site's stapled OCSP response is valid (Unix time).",
        kind: Gauge,
        shown: None,
        series: |s, out| {
            for (domain, until) in &s.staples {
                out.add(&[("domain", domain)], Value::Gauge(*until))?;
            }
            Ok(())
        },
    },
    Family {
        name: "porter_acme_orders",
        help: "ACME attempts since the start, by result.",
        kind: Counter,
        shown: Some(|s| s.acme.is_some()),
        series: |s, out| match &s.acme {
            Some((issued, failed, _)) => {
                out.counts("result", [("issued", *issued), ("failed", *failed)])
            }
            None => Ok(()),
        },
    },
    Family {
        name: "porter_cert_renewal_failures",
        help: "Failed ACME attempts since the start, by site.",
        kind: Counter,
        shown: Some(|s| s.acme.is_some()),
        series: |s, out| match &s.acme {
            Some((_, _, failures)) => {
                out.counts("domain", failures.iter().map(|(d, n)| (d.as_str(), *n)))
            }
            None => Ok(()),
        },
    },
    Family {
        name: "porter_tls_handshakes",
        help: "Completed TLS handshakes, full or resumed.",
        kind: Counter,
        shown: None,
        series: |s, out| out.counts("kind", ["full", "resumed"].into_iter().zip(s.handshakes)),
    },
    Family {
        name: "porter_tls_handshake_failures",
        help: "Failed TLS handshakes, by reason.",
        kind: Counter,
        shown: None,
        series: |s, out| {
            let reasons = HANDSHAKE_FAILURES.iter().map(|(_, reason)| *reason);
            out.counts("reason", reasons.zip(s.failures))
        },
    },
    Family {
        name: "porter_tls_client_errors",
        help: "What TLS peers sent that rustls warns about (an IP address as SNI, a message out of order, an alert), by reason: counted here, logged once per reason every 10 s.",
        kind: Counter,
        shown: None,
        series: |s, out| out.counts("reason", s.tls_client_errors.iter().copied()),
    },
    Family {
        name: "porter_http_requests",
        help: "Requests answered, by site (the busiest have their own label, the rest are `other`, requests for no site `-`) and status class.",
        kind: Counter,
        shown: None,
        series: |s, out| {
            for (site, stats) in &s.requests {
                for (class, n) in CODE_CLASSES.iter().zip(stats.codes) {
                    out.add(&[("site", site), ("code_class", class)], Value::Counter(n))?;
                }
            }
            Ok(())
        },
    },
    Family {
        name: "porter_http_request_duration_seconds",
        help: "From a request's head to the end of its response, by site.",
        kind: MetricType::Histogram,
        shown: None,
        series: |s, out| {
            for (site, stats) in &s.requests {
                out.add(&[("site", site)], Value::Histogram(&stats.duration))?;
            }
            Ok(())
        },
    },
    Family {
        name: "porter_upstream_duration_seconds",
        help: "From sending a request upstream to its response head, by site.",
        kind: MetricType::Histogram,
        shown: None,
        series: |s, out| {
            for (site, stats) in &s.requests {
                out.add(&[("site", site)], Value::Histogram(&stats.upstream))?;
            }
            Ok(())
        },
    },
    Family {
        name: "porter_connections_open",
        help: "Client connections open, by listener.",
        kind: Gauge,
        shown: None,
        series: |s, out| {
            for (listener, n) in ["http", "https", "http3"].into_iter().zip(s.open) {
                out.add(&[("listener", listener)], Value::Gauge(n))?;
            }
            Ok(())
        },
    },
    Family {
        name: "porter_limit_rejections",
        help: "What a limit refused since the start: connections, handshakes, requests, idle connections closed, seconds over the memory ceiling, QUIC clients sent a Retry to prove their address.",
        kind: Counter,
        shown: None,
        series: |s, out| out.counts("limit", s.limits.iter().copied()),
    },
    Family {
        name: "porter_app_state",
        help: "1 for each app's current state.",
        kind: Gauge,
        shown: None,
        series: |s, out| {
            for (app, state) in &s.apps {
                for candidate in crate::apps::STATES {
                    let labels = [("app", app.as_str()), ("state", candidate)];
                    out.add(&labels, Value::Gauge(i64::from(*state == candidate)))?;
                }
            }
            Ok(())
        },
    },
    Family {
        name: "porter_upstream_requests",
        help: "Requests sent to each upstream of the sites with several.",
        kind: Counter,
        shown: None,
        series: |s, out| {
            upstreams(s).try_for_each(|(labels, m)| out.add(&labels, Value::Counter(m.requests)))
        },
    },
    Family {
        name: "porter_upstream_failures",
        help: "Requests an upstream failed (refused, reset, timed out, or answered 5xx), per upstream of the sites with several.",
        kind: Counter,
        shown: None,
        series: |s, out| {
            upstreams(s).try_for_each(|(labels, m)| out.add(&labels, Value::Counter(m.failures)))
        },
    },
    Family {
        name: "porter_upstream_state",
        help: "1 for each upstream's current state (up, down, probation), per upstream of the sites with several.",
        kind: Gauge,
        shown: None,
        series: |s, out| {
            upstreams(s).try_for_each(|([site, upstream], m)| {
                crate::balance::State::NAMES.iter().try_for_each(|state| {
                    let labels = [site, upstream, ("state", state)];
                    out.add(&labels, Value::Gauge(i64::from(m.state.name() == *state)))
                })
            })
        },
    },
    Family {
        name: "porter_app_starts",
        help: "App instances started.",
        kind: Counter,
        shown: None,
        series: |s, out| out.add(&[], Value::Counter(s.app_starts)),
    },
    Family {
        name: "porter_app_crashes",
        help: "App instances that exited unexpectedly or never became ready.",
        kind: Counter,
        shown: None,
        series: |s, out| out.add(&[], Value::Counter(s.app_crashes)),
    },
    Family {
        name: "porter_access_log_dropped_lines",
        help: "Access log lines dropped because the writer could not keep up.",
        kind: Counter,
        shown: Some(|s| s.access_log_dropped.is_some()),
        series: |s, out| out.add(&[], Value::Counter(s.access_log_dropped.unwrap_or(0))),
    },
    Family {
        name: "porter_on_demand_handshakes",
        help: "On-demand TLS: handshakes for names Porter did not serve, by decision (allowed_by_rule, allowed_by_ask, refused, busy, rate_limited, failing).",
        kind: Counter,
        shown: Some(|s| !s.on_demand.is_empty()),
        series: |s, out| out.counts("decision", s.on_demand.iter().copied()),
    },
    Family {
        name: "porter_waf_requests",
        help: "Requests of sites with the WAF on, by site and action (passed, detected, blocked, skipped: not inspected).",
        kind: Counter,
        shown: Some(|s| !s.waf.0.is_empty()),
        series: |s, out| {
            for ((site, action), n) in &s.waf.0 {
                out.add(&[("site", site), ("action", action)], Value::Counter(*n))?;
            }
            Ok(())
        },
    },
    Family {
        name: "porter_waf_rule_matches",
        help: "WAF rule matches that counted (exclusions left out), by site and rule id.",
        kind: Counter,
        shown: Some(|s| !s.waf.1.is_empty()),
        series: |s, out| {
            for ((site, rule), n) in &s.waf.1 {
                let rule = rule.to_string();
                out.add(&[("site", site), ("rule", &rule)], Value::Counter(*n))?;
            }
            Ok(())
        },
    },
    Family {
        name: "porter_cache_events",
        help: "HTTP cache, by site and event (hits, misses, stale, bypass, coalesced, revalidated, stored, evictions).",
        kind: Counter,
        shown: Some(|s| s.cache.is_some()),
        series: |s, out| {
            use crate::cache::stats::{BYTES_SERVED, NAMES};
            for (site, counts) in s.cache.iter().flat_map(|c| &c.0) {
                for (i, (event, n)) in NAMES.iter().zip(counts).enumerate() {
                    if i != BYTES_SERVED {
                        out.add(&[("site", site), ("event", event)], Value::Counter(*n))?;
                    }
                }
            }
            Ok(())
        },
    },
    Family {
        name: "porter_cache_served_bytes",
        help: "HTTP cache: body bytes answered from the cache, by site.",
        kind: Counter,
        shown: Some(|s| s.cache.is_some()),
        series: |s, out| {
            for (site, counts) in s.cache.iter().flat_map(|c| &c.0) {
                let n = counts[crate::cache::stats::BYTES_SERVED];
                out.add(&[("site", site)], Value::Counter(n))?;
            }
            Ok(())
        },
    },
    Family {
        name: "porter_cache_held_bytes",
        help: "HTTP cache: bytes held, by tier (memory, disk).",
        kind: Gauge,
        shown: Some(|s| s.cache.is_some()),
        series: |s, out| {
            let held = s.cache.as_ref().map_or([0; 2], |c| c.1);
            for (tier, n) in ["memory", "disk"].into_iter().zip(held) {
                out.add(&[("tier", tier)], Value::Gauge(n as i64))?;
            }
            Ok(())
        },
    },
    Family {
        name: "porter_build_info",
        help: "1, labelled with the version, architecture and OS Porter was built for.",
        kind: Gauge,
        shown: None,
        series: |_, out| out.add(&BUILD, Value::Gauge(1)),
    },
    Family {
        name: "process_cpu_seconds",
        help: "Total user and system CPU time spent in seconds.",
        kind: Counter,
        shown: Some(|s| s.process.is_some()),
        series: |s, out| out.process(s, |p| Value::FloatCounter(p.cpu_seconds)),
    },
    Family {
        name: "process_resident_memory_bytes",
        help: "Resident memory size in bytes.",
        kind: Gauge,
        shown: Some(|s| s.process.is_some()),
        series: |s, out| out.process(s, |p| Value::Gauge(p.resident_bytes)),
    },
    Family {
        name: "process_virtual_memory_bytes",
        help: "Virtual memory size in bytes.",
        kind: Gauge,
        shown: Some(|s| s.process.is_some()),
        series: |s, out| out.process(s, |p| Value::Gauge(p.virtual_bytes)),
    },
    Family {
        name: "process_open_fds",
        help: "Number of open file descriptors.",
        kind: Gauge,
        shown: Some(|s| s.process.is_some()),
        series: |s, out| out.process(s, |p| Value::Gauge(p.open_fds)),
    },
    Family {
        name: "process_max_fds",
        help: "Maximum number of open file descriptors.",
        kind: Gauge,
        shown: Some(|s| s.process.is_some()),
        series: |s, out| out.process(s, |p| Value::Gauge(p.max_fds)),
    },
    Family {
        name: "process_start_time_seconds",
        help: "Start time of the process since unix epoch in seconds.",
        kind: Gauge,
        shown: Some(|s| s.process.is_some()),
        series: |s, out| out.process(s, |p| Value::FloatGauge(p.start_time_seconds)),
    },
];

/// Each upstream of the sites with several: its `site` and `upstream` labels, and its figures.
fn upstreams(s: &Scrape) -> impl Iterator<Item = ([(&str, &str); 2], &MemberStatus)> {
    s.upstreams.iter().flat_map(|(site, members)| {
        members
            .iter()
            .map(move |m| ([("site", &**site), ("upstream", m.name.as_str())], m))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    /// A scrape in which every part runs and has counted something.
    fn full() -> Scrape {
        let mut stats = SiteStats::default();
        stats.codes[1] = 2;
        Scrape {
            certs: vec![("a.test".into(), 100)],
            staples: vec![("a.test".into(), 50)],
            requests: vec![("a.test".into(), stats)],
            handshakes: [3, 4],
            failures: [1; HANDSHAKE_FAILURES.len()],
            open: [5, 6, 7],
            limits: vec![("queue", 7)],
            tls_client_errors: vec![("alert", 9)],
            apps: vec![("shop".into(), "ready")],
            app_starts: 10,
            app_crashes: 11,
            acme: Some((
                12,
                13,
                vec![(porter_store::DomainName::parse("b.test").unwrap(), 14)],
            )),
            access_log_dropped: Some(15),
            on_demand: vec![("refused", 16)],
            waf: (
                vec![(("a.test".into(), "blocked"), 17)],
                vec![(("a.test".into(), 942100), 18)],
            ),
            cache: Some((
                vec![("a.test".into(), [19; crate::cache::stats::COUNTS])],
                [20, 21],
            )),
            upstreams: vec![(
                "a.test".into(),
                vec![MemberStatus {
                    name: "127.0.0.1:22".into(),
                    state: crate::balance::State::Probation,
                    since: 23,
                    in_flight: 24,
                    requests: 25,
                    failures: 26,
                    last_error: None,
                }],
            )],
            process: Process::read(),
        }
    }

    #[test]
    fn every_family_is_written_once_with_samples_of_its_type() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(full()));
        let mut text = String::new();
        // A sample of another type than its family's fails a debug assertion here.
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for family in FAMILIES {
            let described = format!("\n# TYPE {} ", family.name);
            assert_eq!(
                text.matches(&described).count(),
                1,
                "{}: {text}",
                family.name
            );
            let sample = text
                .lines()
                .find(|l| l.starts_with(family.name) && !l.starts_with('#'));
            assert!(sample.is_some(), "no sample of {}: {text}", family.name);
        }
    }
}
