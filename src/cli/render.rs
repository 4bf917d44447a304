//! Printing what commands answer for a person: tables and short texts (`--json` prints the
//! answers as they are instead).

use super::cert_check::Report;
use crate::apps::AppStatus;
use crate::control::admin::{AdminCommand, Answer};
use crate::control::ops::apps::AppView;
use crate::control::ops::cache::{CacheStats, Tier};
use crate::control::ops::certs::CertView;
use crate::control::ops::status::{ServerView, StatusView};
use crate::control::ops::upstreams::UpstreamView;
use crate::control::ops::SiteView;
use porter_acme::AcmeAction;

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".into())
}

/// What `command` answered, for a person.
pub(super) fn render(command: &AdminCommand, answer: Answer) -> String {
    match answer {
        Answer::Sites(sites) => sites_table(sites),
        Answer::Site(site) => render_site(command, *site),
        // `cert status` renders its own rows (`certs_table`).
        Answer::Certs(certs) => certs_table(certs, false),
        Answer::Cert(cert) => render_cert(command, &cert),
        Answer::Apps(apps) => apps_table(apps),
        Answer::App(app) => {
            let verb = if matches!(command, AdminCommand::AddApp { .. }) {
                "added"
            } else {
                "updated"
            };
            format!("{verb} app {} ({})\n", app.id, app.command)
        }
        Answer::AppStatus(s) => render_app_status(s),
        Answer::Logs { logs } => format!("{logs}\n"),
        Answer::Removed { removed } => {
            let what = match command {
                AdminCommand::RemoveApp { .. } => "app",
                AdminCommand::RemoveDnsZone { .. } => "DNS zone",
                _ => "site",
            };
            format!("removed {what} {removed}\n")
        }
        Answer::Status(status) => render_status(status),
        Answer::Backup(_) => unreachable!("export writes its own output"),
        Answer::DnsZones(zones) => table(
            &["ZONE", "SERVER", "TSIG KEY", "ALGORITHM"],
            zones
                .into_iter()
                .map(|z| vec![z.zone, z.server, z.tsig_name, z.tsig_alg])
                .collect(),
        ),
        Answer::DnsZone(z) => format!(
            "DNS zone {} updated at {} with key {} ({})\n",
            z.zone, z.server, z.tsig_name, z.tsig_alg
        ),
        Answer::OnDemandRules(rules) if rules.is_empty() => {
            "no on-demand rules: only the ask endpoint (if any) allows names\n".into()
        }
        Answer::OnDemandRules(rules) => rules.join("\n") + "\n",
        Answer::Nodes(nodes) => nodes_table(nodes),
        Answer::Waf(status) => format!(
            "rules: {}\nengine: {}\ndefault mode: {}\n",
            status.rules,
            status.engine.as_deref().unwrap_or(
                "not loaded (no site has needed it yet, or it failed: see `porter waf reload`)"
            ),
            status.default_mode
        ),
        Answer::Purged(purge) => purged(&purge),
        Answer::CacheStats(stats) => cache_stats(stats),
        Answer::Imported(n) => format!(
            "imported {} apps, {} sites, {} certificates, {} ACME accounts\n",
            n.apps, n.sites, n.certs, n.accounts
        ),
    }
}

fn sites_table(sites: Vec<SiteView>) -> String {
    table(
        &["DOMAIN", "UPSTREAM", "ACME", "FEATURES"],
        sites
            .into_iter()
            .map(|s| {
                vec![
                    s.domain,
                    upstreams_cell(s.upstream, &s.upstreams),
                    if s.acme { "yes" } else { "no" }.into(),
                    s.features.summary(),
                ]
            })
            .collect(),
    )
}

/// A site's upstreams, those the running server does not see up marked with their state.
fn upstreams_cell(joined: String, upstreams: &[UpstreamView]) -> String {
    if upstreams
        .iter()
        .all(|u| u.state.as_deref().is_none_or(|s| s == "up"))
    {
        return joined;
    }
    let each: Vec<String> = upstreams
        .iter()
        .map(|u| match u.state.as_deref() {
            Some(state) if state != "up" => format!("{} ({state})", u.address),
            _ => u.address.clone(),
        })
        .collect();
    each.join(", ")
}

/// A site added or updated, or its upstreams (`site status`).
fn render_site(command: &AdminCommand, site: SiteView) -> String {
    if matches!(command, AdminCommand::SiteStatus { .. }) {
        return site_status(site);
    }
    if matches!(command, AdminCommand::UpdateSite { .. }) {
        let hsts = match site.hsts_max_age {
            Some(max_age) => format!("hsts max-age {max_age}"),
            None => "hsts: the server's --hsts-default".into(),
        };
        return format!(
            "updated site {} -> {} ({hsts})\n",
            site.domain, site.upstream
        );
    }
    let note = site
        .note
        .map(|n| format!("note: {n}\n"))
        .unwrap_or_default();
    format!("added site {} -> {}\n{note}", site.domain, site.upstream)
}

/// `site status`: the site, then one row per upstream.
fn site_status(site: SiteView) -> String {
    let Some(balance) = &site.balance else {
        return format!("{} -> {} (one upstream)\n", site.domain, site.upstream);
    };
    let check = match &balance.health_check {
        Some(c) => format!("GET {} every {}s, {}", c.path, c.interval_s, c.status),
        None => "none".into(),
    };
    let mut out = format!(
        "{}: {}, health check {check}, retries {}\n",
        site.domain,
        balance.policy,
        if balance.retries { "on" } else { "off" }
    );
    let rows = site
        .upstreams
        .into_iter()
        .map(|u| {
            let count = |n: Option<u64>| n.map_or_else(|| "-".into(), |n| n.to_string());
            vec![
                u.address,
                u.weight.to_string(),
                or_dash(u.state),
                or_dash(u.since),
                count(u.in_flight.map(u64::from)),
                count(u.requests),
                count(u.failures),
                or_dash(u.last_error),
            ]
        })
        .collect();
    let head = [
        "UPSTREAM",
        "WEIGHT",
        "STATE",
        "SINCE",
        "IN-FLIGHT",
        "REQUESTS",
        "FAILURES",
        "LAST-ERROR",
    ];
    out.push_str(&table(&head, rows));
    out
}

/// A certificate imported, or an ACME request recorded.
fn render_cert(command: &AdminCommand, cert: &CertView) -> String {
    match command {
        AdminCommand::RequestAcme { action, .. } => {
            let what = match action {
                AcmeAction::Renew => "renewal",
                AcmeAction::Revoke => "revocation and replacement",
            };
            format!(
                "{what} of {} requested; `porter cert status` shows its progress\n",
                cert.domain
            )
        }
        _ => format!(
            "imported certificate for {} ({}), valid until {}\n",
            cert.domain,
            cert.names.join(", "),
            or_dash(cert.not_after.clone())
        ),
    }
}

fn nodes_table(nodes: Vec<porter_store::Node>) -> String {
    if nodes.is_empty() {
        return "no nodes: the embedded store has no fleet (serve with --store etcd://...)\n"
            .into();
    }
    table(
        &["NODE", "ADDRESS", "PID", "UP SINCE"],
        nodes
            .into_iter()
            .map(|n| {
                vec![
                    n.name,
                    n.addr,
                    n.pid.to_string(),
                    crate::control::ops::rfc3339(n.started_at),
                ]
            })
            .collect(),
    )
}

/// A WAF log entry on one line, for a person.
pub(super) fn waf_line(entry: &crate::waf::Entry) -> String {
    let rules: Vec<String> = entry
        .rules
        .iter()
        .map(|r| format!("{} {} ({})", r.id, r.msg, r.var))
        .collect();
    format!(
        "{} {} {} {} {} {} score {}/{} pl{} id {}{}: {}",
        entry.time,
        entry.action,
        entry.site,
        entry.client,
        entry.method,
        entry.uri,
        entry.score,
        entry.threshold,
        entry.paranoia,
        entry.id,
        if entry.body_truncated {
            " (body beyond the limit not inspected)"
        } else {
            ""
        },
        rules.join("; ")
    )
}

/// Counts by what they count, as `3 running, 1 idle`.
fn counts(map: &std::collections::BTreeMap<String, usize>) -> String {
    if map.is_empty() {
        return "none".to_owned();
    }
    map.iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn render_status(status: StatusView) -> String {
    let mut out = format!("porter {}\n", status.version);
    match &status.server {
        Some(server) => out.push_str(&render_server(server)),
        None => out.push_str("server: not running (read from the store)\n"),
    }
    match &status.content {
        Some(c) => out.push_str(&format!(
            "sites: {}\ncertificates: {}\nACME orders in flight: {}, failing: {}\nOCSP refreshes due: {}\napps defined: {}\n",
            c.sites,
            counts(&c.certificates),
            c.acme_orders_pending,
            c.acme_failing,
            c.ocsp_refresh_due,
            c.apps
        )),
        None => out.push_str("sites, certificates: the store did not answer in time\n"),
    }
    let state = match (&status.store.failure, status.store.unreachable_since) {
        (None, _) => "ok".to_owned(),
        (Some(failure), Some(since)) => format!(
            "UNREACHABLE since {} ({} s; serving from memory, ACME and OCSP work paused): {failure}",
            crate::control::ops::rfc3339(since),
            porter_store::unix_now() - since
        ),
        (Some(failure), None) => format!("writes failing: {failure}"),
    };
    out.push_str(&format!(
        "store: {state}\nstore path: {} ({} KiB)\nstore operations past their deadline: {}\n",
        status.store.path,
        status.store.size_bytes / 1024,
        status.store.stalled_operations
    ));
    out
}

/// The running server's lines of `porter status`.
fn render_server(server: &ServerView) -> String {
    let mut out = format!(
        "server: running, pid {}, up {}s, {} edge threads\n",
        server.pid, server.uptime_s, server.edge_threads
    );
    for (name, addr) in &server.listeners {
        out.push_str(&format!("  {name:<8} {addr}\n"));
    }
    let open = server
        .connections_open
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    out.push_str(&format!("connections open: {open}\n"));
    out.push_str(&format!("apps: {}\n", counts(&server.apps)));
    match (server.acme, &server.acme_ca) {
        (Some(true), ca) => out.push_str(&format!("ACME: on ({})\n", or_dash(ca.clone()))),
        (Some(false), _) => out.push_str("ACME: off (no --acme-agree-tos)\n"),
        (None, _) => {}
    }
    out
}

/// A purge recorded: `purge of shop.example /a?b sent to every node`.
fn purged(purge: &porter_store::Purge) -> String {
    use porter_store::PurgeScope;
    let what = match &purge.scope {
        PurgeScope::Url(url) => format!("{} {url}", purge.domain),
        PurgeScope::Prefix(prefix) => format!("{} prefix {prefix}", purge.domain),
        PurgeScope::Tag(tag) => format!("{} tag {tag}", purge.domain),
        PurgeScope::All => format!("all of {}", purge.domain),
    };
    format!("purge of {what} sent to every node\n")
}

/// Most characters of a domain in the `cache stats` table, so that a row of its widest
/// numbers fits 100 columns.
const CACHE_DOMAIN_WIDTH: usize = 24;

/// A count in at most 5 characters: exact below 100,000, then `123k`, `4.5M`, ...
fn count(n: u64) -> String {
    if n < 100_000 {
        return n.to_string();
    }
    const UNITS: [&str; 6] = ["k", "M", "G", "T", "P", "E"];
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    // Up a unit where rounding would print 1000 of this one.
    while value >= 999.5 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if value < 9.95 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

/// `cache stats`: the tiers, then a row of counters per site.
pub(super) fn cache_stats(stats: CacheStats) -> String {
    use crate::runtime::size::show;
    let tier = |t: &Tier| {
        format!(
            "{} of {}, {} entries",
            show(t.used_bytes),
            show(t.capacity_bytes),
            t.entries
        )
    };
    let mut out = format!("memory: {}\n", tier(&stats.memory));
    match &stats.disk {
        Some(disk) => out.push_str(&format!("disk: {} in {}\n", tier(&disk.tier), disk.dir)),
        None => out.push_str("disk: none (serve --cache-dir)\n"),
    }
    if stats.sites.is_empty() {
        out.push_str("no counters: no cached site has had a request since the server started\n");
        return out;
    }
    out + &table(
        &[
            "DOMAIN",
            "HITS",
            "MISSES",
            "STALE",
            "BYPASS",
            "COALESCED",
            "REVAL",
            "STORED",
            "EVICTED",
            "SERVED",
        ],
        stats
            .sites
            .into_iter()
            .map(|s| {
                let mut row = vec![fit(&s.domain, CACHE_DOMAIN_WIDTH)];
                row.extend(
                    [
                        s.hits,
                        s.misses,
                        s.stale,
                        s.bypass,
                        s.coalesced,
                        s.revalidated,
                        s.stored,
                        s.evictions,
                    ]
                    .map(count),
                );
                row.push(show(s.bytes_served));
                row
            })
            .collect(),
    )
}

/// Most characters of a domain in the default `cert status` table, so that a row fits 100
/// columns (`--wide` and `--json` show it whole).
const DOMAIN_WIDTH: usize = 36;

/// Most characters of an issuer there.
const ISSUER_WIDTH: usize = 22;

/// `text` cut to `width` characters, the cut marked.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let kept: String = text.chars().take(width - 1).collect();
    kept + "~"
}

/// The issuer as a person names it: the organisation of its distinguished name, else its
/// common name, else the whole name.
fn issuer_name(dn: &str) -> &str {
    let attribute = |key: &str| {
        dn.split(", ")
            .find_map(|part| part.strip_prefix(key))
            .filter(|value| !value.is_empty())
    };
    attribute("O=").or_else(|| attribute("CN=")).unwrap_or(dn)
}

/// When the ACME worker renews it, from now: `in 28d 4h`, or `due` once the time has come.
fn next_renewal(c: &CertView) -> String {
    let at = c.renew_at.as_deref().and_then(|at| {
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()
    });
    match at {
        Some(at) => match at.unix_timestamp() - porter_store::unix_now() {
            left if left <= 0 => "due".into(),
            left => format!("in {}", time_left(left)),
        },
        None => "-".into(),
    }
}

/// `cert status`: what fits 100 columns, or every column (`wide`).
pub(super) fn certs_table(certs: Vec<CertView>, wide: bool) -> String {
    if wide {
        return wide_certs_table(certs);
    }
    table(
        &["DOMAIN", "STATE", "EXPIRES IN", "ISSUER", "NEXT RENEWAL"],
        certs
            .into_iter()
            .map(|c| {
                vec![
                    fit(&c.domain, DOMAIN_WIDTH),
                    c.status.clone(),
                    c.expires_in_s.map_or("-".into(), time_left),
                    c.issuer
                        .as_deref()
                        .map_or("-".into(), |i| fit(issuer_name(i), ISSUER_WIDTH)),
                    next_renewal(&c),
                ]
            })
            .collect(),
    )
}

fn wide_certs_table(certs: Vec<CertView>) -> String {
    table(
        &[
            "DOMAIN",
            "STATUS",
            "SOURCE",
            "KEY",
            "NOT AFTER",
            "LEFT",
            "RENEW AT",
            "WHY",
            "ATTEMPTS",
            "NEXT ATTEMPT",
            "OCSP",
            "SERVED",
            "LAST ERROR / NOTE",
        ],
        certs.into_iter().map(wide_cert_row).collect(),
    )
}

fn wide_cert_row(c: CertView) -> Vec<String> {
    let source = match (c.source, c.ca) {
        (Some(source), Some(ca)) => format!("{source}:{ca}"),
        (source, _) => or_dash(source),
    };
    let ocsp = match &c.ocsp {
        Some(ocsp) => match (ocsp.status, &ocsp.valid_until) {
            (crate::control::ops::certs::OcspState::Good, Some(until)) => {
                format!("{} until {until}", ocsp.words())
            }
            _ => ocsp.words().to_owned(),
        },
        None => "-".into(),
    };
    vec![
        c.domain,
        c.status,
        source,
        or_dash(c.key_type),
        or_dash(c.not_after),
        c.expires_in_s.map_or("-".into(), time_left),
        or_dash(c.renew_at),
        or_dash(c.renew_why),
        c.attempts.to_string(),
        or_dash(c.next_attempt),
        ocsp,
        match c.served {
            Some(true) => "yes".into(),
            Some(false) => "NO".into(),
            None => "-".into(),
        },
        or_dash(c.last_error.or(c.note)),
    ]
}

/// `cert status --check`: the plugin's lines, or its result as JSON.
pub(super) fn check_report(report: &Report, json: bool) -> anyhow::Result<String> {
    Ok(match json {
        true => serde_json::to_string_pretty(report)? + "\n",
        false => report.text(),
    })
}

/// Time left, as `41d 3h`, `5h 12m`, or `expired`.
fn time_left(seconds: i64) -> String {
    match seconds {
        s if s <= 0 => "expired".into(),
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}

fn apps_table(apps: Vec<AppView>) -> String {
    table(
        &["ID", "LISTEN", "IDLE TIMEOUT", "HEALTH", "COMMAND"],
        apps.into_iter()
            .map(|a| {
                vec![
                    a.id,
                    a.listen,
                    format!("{}s", a.idle_timeout_s),
                    a.health,
                    a.command,
                ]
            })
            .collect(),
    )
}

fn render_app_status(s: AppStatus) -> String {
    let mut out = format!("app {}: {}\n", s.id, s.state);
    let mut line = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            out.push_str(&format!("  {k:<10} {v}\n"));
        }
    };
    line("pid", s.pid.map(|p| p.to_string()));
    line("uptime", s.uptime_s.map(|u| format!("{u}s")));
    line("restarts", Some(s.restarts.to_string()));
    line("last exit", s.last_exit);
    line("memory", s.memory_kib.map(|m| format!("{m} KiB")));
    line("in flight", Some(s.in_flight.to_string()));
    line("error", s.error);
    out
}

/// Left-aligned columns separated by two spaces.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ops::cache::{DiskTier, SiteCounters};

    #[test]
    fn counts_fit_five_characters() {
        for (n, shown) in [
            (99_999, "99999"),
            (100_000, "100k"),
            (999_499, "999k"),
            (999_500, "1.0M"),
            (12_345_678, "12M"),
        ] {
            assert_eq!(count(n), shown);
        }
        for n in [
            0,
            99_999,
            100_000,
            9_949_999,
            9_950_000,
            999_999_999,
            u64::MAX,
        ] {
            assert!(count(n).len() <= 5, "{n}: {}", count(n));
        }
    }

    #[test]
    fn cache_stats_fit_100_columns() {
        let widest = SiteCounters {
            domain: "a-rather-long-name.of-a-shop.example".into(),
            hits: u64::MAX,
            misses: 9_949_999,
            stale: 99_999,
            bypass: u64::MAX,
            coalesced: u64::MAX,
            revalidated: u64::MAX,
            stored: u64::MAX,
            bytes_served: (1 << 40) - 1,
            evictions: u64::MAX,
        };
        let stats = CacheStats {
            memory: Tier {
                used_bytes: 12 << 20,
                capacity_bytes: 256 << 20,
                entries: 1042,
            },
            disk: Some(DiskTier {
                tier: Tier {
                    used_bytes: 3 << 29,
                    capacity_bytes: 10 << 30,
                    entries: 20_311,
                },
                dir: "/var/cache/porter".into(),
            }),
            sites: vec![widest],
        };
        let text = cache_stats(stats);
        assert!(
            text.starts_with("memory: 12 MiB of 256 MiB, 1042 entries\n"),
            "{text}"
        );
        assert!(text.contains("disk: 1.5 GiB of 10 GiB, 20311 entries in /var/cache/porter"));
        for line in text.lines() {
            assert!(
                line.chars().count() <= 100,
                "{} columns: {line}",
                line.len()
            );
        }
        assert!(text.contains("a-rather-long-name.of-a~"), "{text}");
    }
}
