//! A certificate that expires while Porter serves it: its site keeps redirecting plain HTTP to
//! HTTPS (it promised HSTS; clear text would be a downgrade), HTTPS clients are shown the
//! expired certificate (and refuse it), the expiry is logged at warning level as it nears and
//! at the moment it passes, and other sites are untouched.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn an_expired_certificate_keeps_its_site_https_only_and_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backend = Backend::start();
    let ca = TestCa::new(dir.path());
    let log = dir.path().join("porter.log");
    // Porter's own log, to a file (JSON lines).
    let capture = format!("exec \"$0\" \"$@\" 2>>{}", log.display());
    let porter = Porter::start_as(
        &["sh", "-c", &capture, porter_bin()],
        &data,
        &["--log-format", "json"],
    );
    porter.ok(&["site", "add", "short.test", "--upstream", &backend.addr]);
    porter.ok(&["site", "add", "clear.test", "--upstream", &backend.addr]);
    let not_after = time::OffsetDateTime::now_utc() + time::Duration::seconds(4);
    let (chain, key) = ca.issue_until(&["short.test"], not_after);
    porter.ok(&[
        "cert",
        "import",
        "short.test",
        "--cert",
        chain.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let said = |what: &str| {
        lines().into_iter().any(|l| {
            l["level"] == "WARN"
                && l["domain"] == "short.test"
                && l["message"].as_str().is_some_and(|m| m.contains(what))
        })
    };
    wait_until(
        Duration::from_secs(10),
        "the nearing expiry is logged",
        || said("expires soon"),
    );
    wait_until(Duration::from_secs(10), "the redirect to HTTPS", || {
        plain_status(porter.http, "short.test", "/") == "308"
    });
    wait_until(Duration::from_secs(15), "the expiry is logged", || {
        said("expired")
    });
    // Expired: still HTTPS-only.
    assert_eq!(plain_status(porter.http, "short.test", "/"), "308");
    let resolve = format!("short.test:{}:127.0.0.1", porter.https.port());
    let url = format!("https://short.test:{}/", porter.https.port());
    let (ok_https, _) = curl(&[
        "--cacert",
        ca.ca_path().to_str().unwrap(),
        "--resolve",
        &resolve,
        &url,
    ]);
    assert!(!ok_https, "curl refuses the expired certificate");
    // The site without a certificate is served in clear, as before.
    assert_eq!(plain_status(porter.http, "clear.test", "/"), "200");
    // Each warning once (the next one an hour later), not once a check.
    let expired_lines = lines()
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("certificate expired"))
        })
        .count();
    assert_eq!(expired_lines, 1);
}
