//! TLS that is fast and strict, through the real binary and real clients: session resumption
//! with TLS 1.3 and 1.2 tickets under keys kept in the store (so a restart keeps resuming), a
//! clean full handshake once a ticket outlives its keys, TLS 1.2 minimum with ECDHE + AEAD only
//! and X25519 first, and HSTS per site.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A Porter serving `a.test` (imported certificate) in front of a backend.
struct Setup {
    dir: tempfile::TempDir,
    ca: TestCa,
    backend: Backend,
    porter: Option<Porter>,
    extra: Vec<String>,
}

impl Setup {
    fn start(extra: &[&str]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path());
        let backend = Backend::start();
        let data = dir.path().join("data");
        ca.serve(&data, "a.test", &backend.addr);
        let mut setup = Setup {
            dir,
            ca,
            backend,
            porter: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        setup.restart();
        setup
    }

    fn restart(&mut self) {
        if let Some(porter) = self.porter.take() {
            assert!(porter.stop().success());
        }
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        self.porter = Some(Porter::start(&self.dir.path().join("data"), &extra));
    }

    fn porter(&self) -> &Porter {
        self.porter.as_ref().unwrap()
    }

    /// The response headers of `https://a.test/` (lowercase).
    fn https_headers(&self) -> String {
        let port = self.porter().https.port();
        curl(&[
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--cacert",
            self.ca.ca_path().to_str().unwrap(),
            "--resolve",
            &format!("a.test:{port}:127.0.0.1"),
            &format!("https://a.test:{port}/"),
        ])
        .1
        .to_lowercase()
    }

    /// One HTTP/1.0 exchange with `openssl s_client`; returns what it printed.
    fn s_client(&self, args: &[&str]) -> String {
        require("openssl", "openssl");
        let out = run_with_input(
            Command::new("openssl")
                .args([
                    "s_client",
                    "-connect",
                    &self.porter().https.to_string(),
                    "-servername",
                    "a.test",
                    "-ign_eof",
                ])
                .args(["-CAfile", self.ca.ca_path().to_str().unwrap()])
                .args(args),
            b"GET / HTTP/1.0\r\nHost: a.test\r\n\r\n",
        );
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Whether a handshake with the session in `session` was resumed (`-sess_in`), after
    /// saving a fresh one there (`-sess_out`) when `save` is set.
    fn handshake(&self, version: &str, session: &Path, save: bool) -> String {
        let session = session.to_str().unwrap();
        let mode = if save { "-sess_out" } else { "-sess_in" };
        let out = self.s_client(&[version, mode, session]);
        assert!(
            out.contains("hello from backend /"),
            "the request went through: {out}"
        );
        out
    }
}

fn reused(out: &str, version: &str) -> bool {
    out.contains(&format!("Reused, {version}"))
}

#[test]
fn sessions_resume_with_tls13_and_tls12_tickets_and_across_a_restart() {
    let mut s = Setup::start(&[]);
    for (flag, name) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let session = s.dir.path().join(format!("session{flag}"));
        let first = s.handshake(flag, &session, true);
        assert!(first.contains(&format!("New, {name}")), "{first}");
        let again = s.handshake(flag, &session, false);
        assert!(reused(&again, name), "{name} resumes: {again}");
    }
    s.restart();
    for (flag, name) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let session = s.dir.path().join(format!("session{flag}"));
        let out = s.handshake(flag, &session, false);
        assert!(reused(&out, name), "{name} resumes after a restart: {out}");
    }
    let keys = s.porter().ok(&["--json", "site", "list"]);
    assert!(!keys.contains("secret"), "{keys}");
}

#[test]
fn a_ticket_older_than_its_keys_falls_back_to_a_full_handshake() {
    let s = Setup::start(&["--tls-ticket-rotation", "2s"]);
    let session = s.dir.path().join("session");
    s.handshake("-tls1_3", &session, true);
    let mut last = String::new();
    wait_until(
        Duration::from_secs(20),
        "the old ticket is no longer honoured",
        || {
            last = s.handshake("-tls1_3", &session, false);
            last.contains("New, TLSv1.3")
        },
    );
    assert!(!last.contains("alert"), "the fallback is clean: {last}");
}

#[test]
fn only_tls12_and_13_with_ecdhe_and_aead_and_x25519_first() {
    let s = Setup::start(&[]);
    let out = s.s_client(&["-tls1_3"]);
    assert!(out.contains("Server Temp Key: X25519"), "{out}");
    for refused in [
        vec!["-tls1_1"],
        vec!["-tls1"],
        vec!["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"],
        vec!["-tls1_2", "-cipher", "AES128-GCM-SHA256"],
    ] {
        let out = s.s_client(&refused);
        assert!(
            !out.contains("hello from backend"),
            "{refused:?} must be refused: {out}"
        );
    }
    let out = s.s_client(&["-tls1_2"]);
    assert!(
        out.contains("Cipher is ECDHE-ECDSA-AES128-GCM-SHA256")
            || out.contains("Cipher is ECDHE-ECDSA-CHACHA20-POLY1305"),
        "{out}"
    );
    assert!(out.contains("Compression: NONE"), "{out}");
}

#[test]
fn hsts_is_sent_for_sites_with_a_valid_certificate_and_can_be_turned_off() {
    // The platform turns HSTS on for its sites (it is off by default).
    let s = Setup::start(&["--hsts-default", "1y"]);
    let headers = || s.https_headers();
    assert!(
        headers().contains("strict-transport-security: max-age=31536000"),
        "{}",
        headers()
    );
    s.porter()
        .ok(&["site", "update", "a.test", "--hsts-max-age", "600"]);
    wait_until(Duration::from_secs(1), "the new max-age is sent", || {
        headers().contains("max-age=600")
    });
    s.porter()
        .ok(&["site", "update", "a.test", "--hsts-max-age", "0"]);
    wait_until(Duration::from_secs(1), "HSTS is off", || {
        !headers().contains("strict-transport-security")
    });
    // Plain HTTP never carries it.
    s.porter()
        .ok(&["site", "add", "plain.test", "--upstream", &s.backend.addr]);
    let (_, plain) = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "Host: plain.test",
        &format!("http://{}/", s.porter().http),
    ]);
    assert!(
        !plain.to_lowercase().contains("strict-transport-security"),
        "{plain}"
    );
}

/// HSTS locks a site's visitors out for its whole max-age when its HTTPS breaks: a platform
/// turns it on for its customers deliberately (`--hsts-default`), and a site's own setting
/// wins over the platform's.
#[test]
fn hsts_is_off_by_default_and_the_platform_default_applies_to_sites_without_their_own() {
    let mut s = Setup::start(&[]);
    let headers = s.https_headers();
    assert!(headers.starts_with("http/"), "an answer: {headers}");
    assert!(!headers.contains("strict-transport-security"), "{headers}");

    s.extra = vec!["--hsts-default".into(), "1y".into()];
    s.restart();
    let headers = s.https_headers();
    assert!(
        headers.contains("strict-transport-security: max-age=31536000"),
        "{headers}"
    );
    s.porter()
        .ok(&["site", "update", "a.test", "--hsts-max-age", "0"]);
    wait_until(
        Duration::from_secs(1),
        "the site's own setting wins",
        || !s.https_headers().contains("strict-transport-security"),
    );
}
