//! Automatic certificates against a real ACME server (pebble): issuance by HTTP-01 and
//! TLS-ALPN-01 with fallback, many sites at once, short-lived certificates renewed again and
//! again, crash in the middle of an order, failures retried on the backoff schedule while the
//! old certificate keeps being served, External Account Binding, and ARI.

mod common;

use common::acme::{free_port, Pebble, PebbleOptions};
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Porter on chosen loopback ports in front of a backend, pointed at a pebble.
struct Edge {
    dir: tempfile::TempDir,
    pebble: Pebble,
    backend: Backend,
    porter: Option<Porter>,
    flags: Vec<String>,
}

impl Edge {
    /// Starts pebble (configured by `options` from Porter's ports) and Porter with `extra` flags.
    fn start(options: impl FnOnce(u16, u16) -> PebbleOptions, extra: &[&str]) -> Edge {
        let dir = tempfile::tempdir().unwrap();
        let (http, https) = (free_port(), free_port());
        let pebble = Pebble::start(&dir.path().join("pebble"), options(http, https));
        let mut flags = pebble.porter_flags();
        flags.extend(["--http".into(), format!("127.0.0.1:{http}"), "--https".into(), format!("127.0.0.1:{https}")]);
        flags.extend(extra.iter().map(|s| s.to_string()));
        let mut edge = Edge {
            dir,
            pebble,
            backend: Backend::start(),
            porter: None,
            flags,
        };
        edge.restart();
        edge
    }

    fn restart(&mut self) {
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        self.porter = Some(Porter::start(&self.dir.path().join("data"), &flags));
    }

    fn porter(&self) -> &Porter {
        self.porter.as_ref().unwrap()
    }

    fn add(&self, domain: &str) {
        self.porter().ok(&["site", "add", domain, "--upstream", &self.backend.addr]);
    }

    /// `cert list --json` row of `domain`.
    fn status(&self, domain: &str) -> Value {
        let list: Value = serde_json::from_str(&self.porter().ok(&["--json", "cert", "list"])).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|row| row["domain"] == domain)
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn root(&self) -> PathBuf {
        self.pebble.issuing_root(&self.dir.path().join("issuing-root.pem"))
    }

    /// GET https://DOMAIN/ through Porter, verified against `root`; the body on success.
    fn get(&self, domain: &str, root: &Path) -> Option<String> {
        let port = self.porter().https.port();
        let resolve = format!("{domain}:{port}:127.0.0.1");
        let (ok, body) = curl(&["--cacert", root.to_str().unwrap(), "--resolve", &resolve, &format!("https://{domain}:{port}/")]);
        ok.then_some(body)
    }

    /// Waits until `domain` serves a certificate that verifies against pebble's root.
    fn wait_served(&self, domain: &str, within: Duration) {
        let root = self.root();
        wait_until(within, &format!("{domain} is served with a certificate from pebble"), || {
            self.get(domain, &root).as_deref() == Some("hello from backend /")
        });
    }
}

#[test]
fn http01_issues_a_trusted_certificate_within_five_seconds() {
    let edge = Edge::start(PebbleOptions::new, &["--acme-challenge", "http-01"]);
    let started = Instant::now();
    edge.add("a.test");
    edge.wait_served("a.test", Duration::from_secs(5));
    eprintln!("a.test served with an ACME certificate {:?} after site add", started.elapsed());
    let row = edge.status("a.test");
    assert_eq!(row["status"], "valid", "{row}");
    assert_eq!(row["source"], "acme");
    assert_eq!(row["challenge"], "http-01");
    assert!(row["renew_at"].is_string(), "{row}");
}

#[test]
fn tls_alpn01_issues_a_trusted_certificate_within_five_seconds() {
    let edge = Edge::start(PebbleOptions::new, &["--acme-challenge", "tls-alpn-01"]);
    edge.add("b.test");
    edge.wait_served("b.test", Duration::from_secs(5));
    assert_eq!(edge.status("b.test")["challenge"], "tls-alpn-01");
}

#[test]
fn a_failing_challenge_type_falls_back_to_the_other_and_is_remembered() {
    // The validator's HTTP-01 port leads nowhere: only TLS-ALPN-01 can succeed.
    let edge = Edge::start(|_, https| PebbleOptions::new(free_port(), https), &["--acme-challenge", "http-01"]);
    edge.add("c.test");
    edge.wait_served("c.test", Duration::from_secs(15));
    let row = edge.status("c.test");
    assert_eq!(row["challenge"], "tls-alpn-01", "{row}");
    assert_eq!(row["attempts"], 0);
}
