//! What an operator and a monitoring system see, with real clients: `cert status` for an
//! imported certificate, an ACME one from pebble with a good OCSP staple, one whose CA offers
//! no OCSP and a failing renewal (pebble stopped); `--check` exit codes 0 to 3 in four set-ups,
//! a site without a certificate within its grace, after it, and on a server with ACME off;
//! `/metrics` read by Prometheus's own `promtool`, its counters moving under concurrent traffic
//! and handshakes, a bounded site label set under a client that invents names, the process
//! metrics and the build's against what the test sees of the server; the token on
//! every route of the OpenAPI document; and `porter status`, also on a stalled store.

mod common;

use common::acme::{Edge, PebbleOptions, Via};
use common::ocsp::OcspResponder;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn row<'a>(rows: &'a Value, domain: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["domain"] == domain)
        .unwrap_or_else(|| panic!("no row for {domain} in {rows}"))
}

/// `cert status --check ARGS` on `data_dir`: its exit code and output.
fn check(data_dir: &Path, args: &[&str]) -> (i32, String) {
    let mut all = vec!["cert", "status", "--check"];
    all.extend(args);
    let out: Output = cli(data_dir, &all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The check's report once it exits with `level` (1 WARNING, 2 CRITICAL) with `args`, within
/// 10 s (a grace passing).
fn check_until(data_dir: &Path, args: &[&str], level: i32) -> String {
    let mut out = String::new();
    wait_until(
        Duration::from_secs(10),
        &format!("the check exits {level}"),
        || {
            let (code, text) = check(data_dir, args);
            out = text;
            code == level
        },
    );
    out
}

#[test]
fn cert_status_shows_every_column_for_acme_ocsp_imported_and_failing_certificates() {
    let work = tempfile::tempdir().unwrap();
    let responder = OcspResponder::start(&work.path().join("ocsp"), 60);
    let url = responder.url.clone();
    let mut edge = Edge::start_via(
        Via::Direct,
        move |http, https| PebbleOptions {
            ocsp_url: Some(url),
            ..PebbleOptions::new(http, https)
        },
        &[],
    );
    *responder.state.issuer.lock().unwrap() = Some(edge.pebble.intermediate(edge.dir.path()));
    edge.add("acme.test");
    edge.wait_served("acme.test", Duration::from_secs(20));
    wait_until(Duration::from_secs(15), "a good staple", || {
        edge.status("acme.test")["ocsp"]["status"] == "good"
    });
    let ca = TestCa::new(work.path());
    let data = edge.porter().data_dir.clone();
    let (chain, key) = ca.issue(&["imported.test"]);
    ok(
        &data,
        &[
            "site",
            "add",
            "imported.test",
            "--upstream",
            &edge.backend.addr,
            "--no-acme",
        ],
    );
    ok(
        &data,
        &[
            "cert",
            "import",
            "imported.test",
            "--cert",
            chain.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );

    // Pebble goes away: a new site's first order fails, and keeps failing.
    edge.pebble.stop();
    edge.add("failing.test");
    wait_until(Duration::from_secs(20), "the order fails", || {
        edge.status("failing.test")["attempts"].as_u64() >= Some(1)
    });

    let rows = json(&ok(&data, &["--json", "cert", "status"]));
    let acme = row(&rows, "acme.test");
    assert_eq!(acme["status"], "valid", "{acme}");
    assert_eq!(acme["source"], "acme", "{acme}");
    let ca = acme["ca"].as_str().unwrap_or_default();
    assert!(
        ca.starts_with("https://127.0.0.1:"),
        "the CA's directory URL: {acme}"
    );
    assert_eq!(acme["key_type"], "ECDSA P-256", "{acme}");
    assert!(acme["expires_in_s"].as_i64().unwrap() > 0, "{acme}");
    assert!(acme["renew_at"].is_string(), "{acme}");
    assert_eq!(acme["renew_why"], "lifetime ratio", "{acme}");
    assert_eq!(acme["ocsp"]["status"], "good", "{acme}");
    assert!(acme["ocsp"]["valid_until"].is_string(), "{acme}");
    assert_eq!(
        acme["served"], true,
        "the edge serves the stored one: {acme}"
    );

    let imported = row(&rows, "imported.test");
    assert_eq!(imported["source"], "imported", "{imported}");
    assert_eq!(imported["ocsp"]["status"], "no_responder", "{imported}");
    assert!(imported["renew_at"].is_null(), "{imported}");
    assert_eq!(imported["served"], true, "{imported}");

    let failing = row(&rows, "failing.test");
    assert_eq!(failing["status"], "failing", "{failing}");
    assert!(failing["last_error"].is_string(), "{failing}");
    assert!(failing["next_attempt"].is_string(), "{failing}");

    // The table has the same facts.
    let table = ok(&data, &["cert", "status", "--wide"]);
    let header = table.lines().next().unwrap();
    for column in ["SOURCE", "KEY", "LEFT", "RENEW AT", "WHY", "OCSP", "SERVED"] {
        assert!(header.contains(column), "{header}");
    }
    let acme_line = table.lines().find(|l| l.starts_with("acme.test")).unwrap();
    assert!(
        acme_line.contains(&format!("acme:{ca}"))
            && acme_line.contains("ECDSA P-256")
            && acme_line.contains("lifetime ratio")
            && acme_line.contains("good until"),
        "{acme_line}"
    );
    // Filters.
    let failing_only = json(&ok(&data, &["--json", "cert", "status", "--failing"]));
    assert_eq!(failing_only.as_array().unwrap().len(), 1, "{failing_only}");
    let named = json(&ok(&data, &["--json", "cert", "status", "imported.test"]));
    assert_eq!(named.as_array().unwrap().len(), 1, "{named}");
    let soon = json(&ok(
        &data,
        &["--json", "cert", "status", "--expiring-within", "1d"],
    ));
    let soon: Vec<&Value> = soon
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["domain"])
        .collect();
    assert_eq!(
        soon,
        ["failing.test"],
        "only the site without a certificate"
    );
    // A failing renewal is a warning for a monitoring system.
    let (code, out) = check(&data, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("PORTER CERTS WARNING - 2 certificates"),
        "{out}"
    );
    assert!(out.contains("failing.test: renewal failing"), "{out}");
    // The same without a server: read from the store.
    edge.porter.take().unwrap().stop();
    let rows = json(&ok(&data, &["--json", "cert", "status"]));
    assert!(row(&rows, "acme.test")["served"].is_null(), "{rows}");
    assert_eq!(row(&rows, "acme.test")["ocsp"]["status"], "good", "{rows}");
}

#[test]
fn check_exit_codes_follow_the_plugin_convention() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new(work.path());
    let backend = Backend::start();
    let data = work.path().join("data");
    let porter = Porter::start(&data, &[]);
    ca.serve(&data, "a.test", &backend.addr);
    ca.serve(&data, "b.test", &backend.addr);

    // Healthy: 90-day certificates.
    let (code, out) = check(&data, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(
            "PORTER CERTS OK - 2 certificates, next expiry in 90 days | certificates=2"
        ),
        "{out}"
    );
    // Expiring within the warning window.
    let (code, out) = check(&data, &["--warn", "100d"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("PORTER CERTS WARNING"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("WARNING: ")).count(),
        2,
        "{out}"
    );

    // Expired: a certificate valid for three more seconds, then not.
    ok(
        &data,
        &["site", "add", "short.test", "--upstream", &backend.addr],
    );
    let not_after = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let (chain, key) = ca.issue_until(&["short.test"], not_after);
    ok(
        &data,
        &[
            "cert",
            "import",
            "short.test",
            "--cert",
            chain.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    let mut out = String::new();
    wait_until(
        Duration::from_secs(10),
        "the short certificate expires",
        || {
            out = check(&data, &[]).1;
            out.contains("short.test: expired")
        },
    );
    assert!(out.starts_with("PORTER CERTS CRITICAL"), "{out}");
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with("CRITICAL: short.test: expired"),
        "the problem follows the summary: {out}"
    );
    drop(porter);

    // Unreadable: a data dir that is a file.
    let file = work.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let (code, out) = check(&file, &[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("PORTER CERTS UNKNOWN - "), "{out}");
    assert!(out.contains("not a directory"), "{out}");
}

#[test]
fn check_gives_sites_without_a_certificate_a_grace_and_knows_when_acme_is_off() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new(work.path());
    let backend = Backend::start();
    let data = work.path().join("data");
    // No --acme-agree-tos: ACME is off.
    let porter = Porter::start(&data, &[]);
    ca.serve(&data, "a.test", &backend.addr);
    let status = ok(&data, &["status"]);
    assert!(status.contains("ACME: off"), "{status}");
    let s = json(&ok(&data, &["--json", "status"]));
    assert_eq!(s["server"]["acme"], false, "{s}");

    // A site waiting for a certificate to be imported: nothing to say within its grace ...
    ok(
        &data,
        &[
            "site",
            "add",
            "import.test",
            "--upstream",
            &backend.addr,
            "--no-acme",
        ],
    );
    let (code, out) = check(&data, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(
            "PORTER CERTS OK - 1 certificates, next expiry in 90 days, 1 sites without one | "
        ),
        "{out}"
    );
    // ... a warning after it, critical later.
    let out = check_until(&data, &["--grace", "1s"], 1);
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with("WARNING: import.test: no certificate for "),
        "{out}"
    );
    assert!(out.contains("import a certificate"), "{out}");
    let out = check_until(&data, &["--grace", "1s", "--critical-after", "2s"], 2);
    assert!(
        out.contains("CRITICAL: import.test: no certificate for "),
        "{out}"
    );
    // Bad thresholds are refused as usage errors, and change nothing.
    let refused = cli(&data, &["cert", "status", "--check", "--grace", "0s"]);
    assert_eq!(refused.status.code(), Some(2));

    // A site that waits for ACME, on a server with ACME off, never gets one: critical at once.
    ok(
        &data,
        &["site", "add", "acme.test", "--upstream", &backend.addr],
    );
    let (code, out) = check(&data, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with("PORTER CERTS CRITICAL - 1 certificates"),
        "{out}"
    );
    assert!(
        out.contains("CRITICAL: acme.test: no certificate, and the running server has ACME off"),
        "{out}"
    );

    // Sites added by several writers while the check runs: every output is well formed,
    // and the lines stay bounded.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (data, upstream) = (data.clone(), backend.addr.clone());
            std::thread::spawn(move || {
                for i in 0..15 {
                    ok(
                        &data,
                        &[
                            "site",
                            "add",
                            &format!("w{w}-{i}.test"),
                            "--upstream",
                            &upstream,
                        ],
                    );
                }
            })
        })
        .collect();
    let mut checks = 0;
    while !writers.iter().all(|w| w.is_finished()) {
        let (code, out) = check(&data, &[]);
        assert_eq!(code, 2, "{out}");
        assert!(out.starts_with("PORTER CERTS CRITICAL - "), "{out}");
        assert_eq!(out.lines().next().unwrap().matches('|').count(), 1, "{out}");
        checks += 1;
    }
    for w in writers {
        w.join().unwrap();
    }
    let (code, out) = check(&data, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(" sites=63 "), "{out}");
    assert_eq!(out.lines().count(), 1 + 50 + 1, "{out}");
    assert!(
        out.lines().last().unwrap().starts_with("... and 11 more"),
        "61 sites wait for ACME (import.test is within its grace): {out}"
    );
    eprintln!("{checks} checks ran while 60 sites were added");

    // No server: unknown (nothing is served or renewed), with what the store says.
    drop(porter);
    let (code, out) = check(&data, &["--grace", "1s", "--critical-after", "2s"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.starts_with("PORTER CERTS UNKNOWN - no porter server runs on this data dir"),
        "{out}"
    );
    assert!(
        out.contains("CRITICAL: import.test: no certificate for "),
        "{out}"
    );
    // `porter status` says so too, with the exit code of `systemctl status`.
    let out = cli(&data, &["status"]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("server: not running") && text.contains("sites: 63"),
        "{text}"
    );
    let out = cli(&data, &["--json", "status"]);
    assert_eq!(out.status.code(), Some(3));
    let s = json(&String::from_utf8_lossy(&out.stdout));
    assert!(s["server"].is_null(), "{s}");
    assert_eq!(s["content"]["sites"], 63, "{s}");

    // Turning ACME on for a site starts its wait over.
    let waited = |data: &Path| {
        let rows = json(&ok(data, &["--json", "cert", "status", "import.test"]));
        row(&rows, "import.test")["waiting_s"].as_i64().unwrap()
    };
    let before = waited(&data);
    assert!(before >= 2, "{before}");
    ok(&data, &["site", "update", "import.test", "--acme", "true"]);
    let after = waited(&data);
    assert!(after < before, "{after} after {before}");
}

#[test]
fn check_gives_a_new_site_its_grace_while_acme_obtains_its_certificate() {
    let edge = Edge::start_via(Via::Front, PebbleOptions::new, &[]);
    let data = edge.porter().data_dir.clone();
    let s = json(&ok(&data, &["--json", "status"]));
    assert_eq!(s["server"]["acme"], true, "{s}");
    assert!(ok(&data, &["status"]).contains("ACME: on (127.0.0.1:"));
    // The order stays in flight at its finalize.
    edge.front().hold_finalize = true;
    edge.add("new.test");
    wait_until(Duration::from_secs(20), "the finalize is held", || {
        edge.front().held >= 1
    });
    let (code, out) = check(&data, &[]);
    assert_eq!(code, 0, "within the grace: {out}");
    assert!(
        out.contains("0 certificates, 1 sites without one | "),
        "{out}"
    );
    let out = check_until(&data, &["--grace", "1s"], 1);
    assert!(
        out.contains("WARNING: new.test: no certificate for ") && out.contains("(pending)"),
        "{out}"
    );
    edge.front().hold_finalize = false;
    edge.wait_served("new.test", Duration::from_secs(20));
    let (code, out) = check(&data, &["--grace", "1s"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("without one"), "{out}");
}

/// GET `url` with curl, with `headers`; (status, body).
fn get(url: &str, headers: &[&str]) -> (String, String) {
    let mut args = vec!["-w", "\n%{http_code}"];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(url);
    let (_, out) = curl(&args);
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
    (code.to_owned(), body.to_owned())
}

/// The value of the sample `name{labels}` (labels as written, in order).
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

fn promtool(text: &str) {
    require("promtool", "prometheus");
    let out = run_with_input(
        Command::new("promtool").args(["check", "metrics"]),
        text.as_bytes(),
    );
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_parse_move_under_traffic_and_keep_a_bounded_label_set() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new(work.path());
    let backend = Backend::start();
    let data = work.path().join("data");
    let porter = Porter::start(&data, &["--metrics", "127.0.0.1:0", "--metrics-sites", "3"]);
    let sites: Vec<String> = (0..6).map(|i| format!("s{i}.test")).collect();
    for site in &sites {
        ca.serve(&data, site, &backend.addr);
    }
    let metrics = format!("http://{}/metrics", porter.metrics.unwrap());
    let scrape = || {
        let (code, body) = get(&metrics, &[]);
        assert_eq!(code, "200", "{body}");
        body
    };
    let before = scrape();
    promtool(&before);

    // 12 clients at once: each a TLS connection per site with two requests (the second
    // connection of a client resumes its session), and plain requests for invented names.
    let client = ca.client(&[b"http/1.1"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let (client, sites, addr) = (client.clone(), sites.clone(), porter.https);
            tasks.push(tokio::spawn(async move {
                for site in &sites {
                    for _ in 0..2 {
                        let (status, _, _) =
                            https_get(client.clone(), addr, site, "/").await.unwrap();
                        assert_eq!(status, 200);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    std::thread::scope(|scope| {
        for c in 0..8 {
            let http = porter.http;
            scope.spawn(move || {
                for n in 0..25 {
                    assert_eq!(
                        plain_status(http, &format!("made-up-{c}-{n}.test"), "/"),
                        "404"
                    );
                }
            });
        }
    });
    // Handshakes that fail: a name nobody serves.
    let unknown = runtime.block_on(tls_connect(client.clone(), porter.https, "nobody.test"));
    assert!(unknown.is_err());

    let after = scrape();
    promtool(&after);
    let count = |text: &str, series: &str| sample(text, series).unwrap_or(0.0);
    let full = count(&after, "porter_tls_handshakes_total{kind=\"full\"}")
        - count(&before, "porter_tls_handshakes_total{kind=\"full\"}");
    let resumed = count(&after, "porter_tls_handshakes_total{kind=\"resumed\"}");
    assert!(
        full >= 1.0 && resumed >= 1.0 && full + resumed >= 144.0,
        "{after}"
    );
    assert!(
        count(
            &after,
            "porter_tls_handshake_failures_total{reason=\"unknown_name\"}"
        ) >= 1.0,
        "{after}"
    );
    // 200 requests for 200 invented names: one series, "-".
    assert!(
        count(
            &after,
            "porter_http_requests_total{site=\"-\",code_class=\"4xx\"}"
        ) >= 200.0,
        "{after}"
    );
    assert!(
        !after.contains("made-up"),
        "invented names never become labels"
    );
    // Six sites with traffic, three labels: the rest are `other`, and nothing is lost.
    let labelled: Vec<&str> = after
        .lines()
        .filter(|l| l.starts_with("porter_http_requests_total{site=\"s") && l.contains("2xx"))
        .collect();
    assert!(labelled.len() <= 3, "{labelled:?}");
    let two_xx: f64 = after
        .lines()
        .filter(|l| {
            l.starts_with("porter_http_requests_total{") && l.contains("code_class=\"2xx\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    let before_2xx: f64 = before
        .lines()
        .filter(|l| {
            l.starts_with("porter_http_requests_total{") && l.contains("code_class=\"2xx\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(two_xx - before_2xx, 144.0, "{after}");
    assert!(
        count(
            &after,
            "porter_http_request_duration_seconds_count{site=\"other\"}"
        ) >= 1.0,
        "{after}"
    );
    assert!(
        after.contains("porter_cert_not_after_seconds{domain=\"s0.test\"}"),
        "{after}"
    );
    assert!(
        after.contains("porter_upstream_duration_seconds_bucket{"),
        "{after}"
    );
    // An open connection is counted while it is open.
    let held = std::net::TcpStream::connect(porter.http).unwrap();
    wait_until(
        Duration::from_secs(5),
        "the open connection is counted",
        || count(&scrape(), "porter_connections_open{listener=\"http\"}") >= 1.0,
    );
    drop(held);
    // OpenMetrics for a scraper that asks for it.
    let (code, om) = get(
        &metrics,
        &["Accept: application/openmetrics-text; version=1.0.0"],
    );
    assert_eq!(code, "200");
    assert!(om.ends_with("# EOF\n"), "{om}");
    // The metrics listener serves nothing else.
    let (code, _) = get(&format!("http://{}/v1/sites", porter.metrics.unwrap()), &[]);
    assert_eq!(code, "404");
}

/// Seconds since the Unix epoch now.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn metrics_describe_the_process_and_the_build() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new(work.path());
    let backend = Backend::start();
    let data = work.path().join("data");
    let launched = unix_now();
    let porter = Porter::start(&data, &["--metrics", "127.0.0.1:0"]);
    let ready = unix_now();
    ca.serve(&data, "a.test", &backend.addr);
    let metrics = format!("http://{}/metrics", porter.metrics.unwrap());
    let scrape = || {
        let (code, body) = get(&metrics, &[]);
        assert_eq!(code, "200", "{body}");
        body
    };
    let value = |text: &str, name: &str| {
        sample(text, name).unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let before = scrape();
    promtool(&before);

    // The kernel's boot time is in whole seconds: the start may read up to a second early.
    let start = value(&before, "process_start_time_seconds");
    assert!(
        launched - 2.0 <= start && start <= ready + 1.0,
        "{start} not between {launched} and {ready}"
    );
    let resident = value(&before, "process_resident_memory_bytes");
    let rss = (porter.rss_kib() * 1024) as f64;
    assert!(
        resident > 0.0 && resident > rss / 2.0 && resident < rss * 2.0,
        "{resident} bytes resident, /proc says {rss}"
    );
    assert!(value(&before, "process_virtual_memory_bytes") >= resident);
    let (open, max) = (
        value(&before, "process_open_fds"),
        value(&before, "process_max_fds"),
    );
    assert!(open > 0.0 && open <= max, "{open} of {max} fds");
    // Connections held open are open descriptors of the server.
    let held: Vec<_> = (0..20)
        .map(|_| std::net::TcpStream::connect(porter.http).unwrap())
        .collect();
    wait_until(Duration::from_secs(5), "the held connections' fds", || {
        value(&scrape(), "process_open_fds") >= open + 20.0
    });
    drop(held);

    // Handshakes and requests cost the server CPU time.
    let cpu = value(&before, "process_cpu_seconds_total");
    let client = ca.client(&[b"http/1.1"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    wait_until(Duration::from_secs(30), "CPU time grows under load", || {
        runtime.block_on(async {
            for _ in 0..20 {
                let (status, _, _) = https_get(client.clone(), porter.https, "a.test", "/")
                    .await
                    .unwrap();
                assert_eq!(status, 200);
            }
        });
        value(&scrape(), "process_cpu_seconds_total") > cpu
    });

    let build = before
        .lines()
        .find(|l| l.starts_with("porter_build_info{"))
        .unwrap_or_else(|| panic!("no porter_build_info in {before}"));
    assert!(
        build.starts_with(&format!(
            "porter_build_info{{version=\"{}\",",
            env!("CARGO_PKG_VERSION")
        )) && build.ends_with("} 1"),
        "{build}"
    );
    // OpenMetrics names the CPU counter's sample the same way.
    let (_, om) = get(
        &metrics,
        &["Accept: application/openmetrics-text; version=1.0.0"],
    );
    assert!(om.contains("\nprocess_cpu_seconds_total "), "{om}");
    assert!(om.contains("# TYPE process_cpu_seconds counter\n"), "{om}");
}

#[test]
fn every_admin_route_refuses_a_missing_or_wrong_token() {
    let work = tempfile::tempdir().unwrap();
    let porter = Porter::start(&work.path().join("data"), &[]);
    let doc: Value = json(include_str!("../src/control/admin/openapi.json"));
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/metrics") && paths.len() >= 10);
    let mut checked = 0;
    for (template, item) in paths {
        let path = template
            .replace("{domain}", "a.test")
            .replace("{id}", "shop");
        for method in item.as_object().unwrap().keys() {
            let url = format!("http://{}{path}", porter.admin);
            let method = method.to_uppercase();
            for auth in [None, Some("Bearer wrong"), Some("Basic YTpi")] {
                let mut args = vec!["-X", &method, "-o", "/dev/null", "-w", "%{http_code}"];
                let header;
                if let Some(auth) = auth {
                    header = format!("Authorization: {auth}");
                    args.extend(["-H", &header]);
                }
                args.extend(["-d", "{}", &url]);
                let (_, code) = curl(&args);
                assert_eq!(code, "401", "{method} {path} with {auth:?}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 3 * 17, "{checked}");
    // With the token, the document and the metrics are served.
    let (status, body) = porter.api("GET", "/v1/openapi.json", None);
    assert_eq!(status, 200);
    assert_eq!(json(&body)["openapi"], "3.1.0");
    let (status, body) = porter.api("GET", "/metrics", None);
    assert_eq!(status, 200);
    promtool(&body);
}

#[test]
fn status_reports_the_server_and_answers_on_a_stalled_store() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new(work.path());
    let backend = Backend::start();
    let data = work.path().join("data");
    let stall = work.path().join("stall");
    let porter = Porter::start(
        &data,
        &[
            "--test-store-stall-file",
            stall.to_str().unwrap(),
            "--edge-threads",
            "2",
        ],
    );
    ca.serve(&data, "a.test", &backend.addr);
    ok(
        &data,
        &[
            "site",
            "add",
            "b.test",
            "--upstream",
            &backend.addr,
            "--no-acme",
        ],
    );
    let held: Vec<_> = (0..3)
        .map(|_| std::net::TcpStream::connect(porter.http).unwrap())
        .collect();
    let status = || json(&ok(&data, &["--json", "status"]));
    wait_until(
        Duration::from_secs(5),
        "the held connections are counted",
        || status()["server"]["connections_open"]["http"].as_i64() >= Some(3),
    );
    let s = status();
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["server"]["edge_threads"], 2, "{s}");
    assert_eq!(
        s["server"]["listeners"]["https"],
        porter.https.to_string(),
        "{s}"
    );
    assert_eq!(s["server"]["listeners"]["admin"], porter.admin, "{s}");
    assert_eq!(s["content"]["sites"], 2, "{s}");
    assert_eq!(s["content"]["certificates"]["valid"], 1, "{s}");
    assert_eq!(s["content"]["certificates"]["none"], 1, "{s}");
    assert!(s["store"]["size_bytes"].as_u64().unwrap() > 0, "{s}");
    assert!(
        s["store"]["path"].as_str().unwrap().ends_with("store"),
        "{s}"
    );
    let text = ok(&data, &["status"]);
    assert!(
        text.contains("server: running") && text.contains("certificates: 1 none, 1 valid"),
        "{text}"
    );
    drop(held);

    // A stalled store: status still answers, without what it could not read.
    std::fs::write(&stall, b"").unwrap();
    let started = std::time::Instant::now();
    let (code, body) = porter.api("GET", "/v1/status", None);
    assert_eq!(code, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let s = json(&body);
    assert!(s["content"].is_null(), "{s}");
    assert_eq!(s["server"]["edge_threads"], 2, "{s}");
    std::fs::remove_file(&stall).unwrap();
    wait_until(Duration::from_secs(10), "the store answers again", || {
        status()["content"]["sites"] == 2
    });
}
