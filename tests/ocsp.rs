//! OCSP stapling against a real signer: pebble puts the responder in the AIA, `openssl ocsp`
//! signs the answers (with pebble's intermediate) behind the test's loopback fixture. Checked
//! with `openssl s_client -status`: the staple, a restart that staples before any new fetch, a
//! failing responder (the still-valid response stays, an expired one is never stapled), and a
//! `revoked` answer that gets the certificate replaced.

mod common;

use common::acme::{Edge, PebbleOptions, Via};
use common::ocsp::OcspResponder;
use common::*;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Porter (ACME from pebble) with pebble's certificates pointing at `responder`.
fn start(minutes: u32) -> (Edge, OcspResponder) {
    let work = tempfile::tempdir().unwrap();
    let responder = OcspResponder::start(&work.path().join("ocsp"), minutes);
    let url = responder.url.clone();
    let edge = Edge::start_via(
        Via::Direct,
        move |http, https| PebbleOptions {
            ocsp_url: Some(url),
            ..PebbleOptions::new(http, https)
        },
        &[],
    );
    let issuer = edge.pebble.intermediate(edge.dir.path());
    *responder.state.issuer.lock().unwrap() = Some(issuer);
    std::mem::forget(work); // the responder writes there until the test ends
    (edge, responder)
}

/// What `openssl s_client -status` says about the staple for `domain`.
fn staple(edge: &Edge, domain: &str) -> String {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &edge.porter().https.to_string(),
            "-servername",
            domain,
            "-status",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stapled_good(edge: &Edge, domain: &str) -> bool {
    let out = staple(edge, domain);
    out.contains("OCSP Response Status: successful") && out.contains("Cert Status: good")
}

#[test]
fn responses_are_verified_stapled_and_survive_a_restart_without_a_new_fetch() {
    let (mut edge, responder) = start(60);
    edge.add("a.test");
    edge.wait_served("a.test", Duration::from_secs(10));
    wait_until(
        Duration::from_secs(10),
        "a good response is stapled",
        || stapled_good(&edge, "a.test"),
    );
    let row = edge.status("a.test");
    assert_eq!(row["ocsp"]["status"], "good", "{row}");
    assert!(
        row["ocsp"]["next_refresh"].is_string() && row["ocsp"]["valid_until"].is_string(),
        "{row}"
    );

    let answered = responder.state.answered.load(Ordering::SeqCst);
    assert!(edge.porter.take().unwrap().stop().success());
    responder.state.up.store(false, Ordering::SeqCst);
    edge.restart();
    assert!(
        stapled_good(&edge, "a.test"),
        "the first handshake after a restart is stapled"
    );
    assert_eq!(
        responder.state.answered.load(Ordering::SeqCst),
        answered,
        "no new fetch was needed"
    );
}

#[test]
fn a_failing_responder_keeps_the_valid_response_and_an_expired_one_is_never_stapled() {
    // One-minute responses: refreshed after 30 s, expired after 60 s.
    let (edge, responder) = start(1);
    edge.add("f.test");
    edge.wait_served("f.test", Duration::from_secs(10));
    wait_until(
        Duration::from_secs(10),
        "a good response is stapled",
        || stapled_good(&edge, "f.test"),
    );
    responder.state.up.store(false, Ordering::SeqCst);
    wait_until(Duration::from_secs(45), "the refresh fails", || {
        edge.status("f.test")["ocsp"]["error"].is_string()
    });
    let row = edge.status("f.test");
    // Good, with the refresh failing.
    assert_eq!(row["ocsp"]["status"], "good", "{row}");
    assert!(row["ocsp"]["error"].is_string(), "{row}");
    assert!(
        stapled_good(&edge, "f.test"),
        "the still-valid response is stapled"
    );
    wait_until(
        Duration::from_secs(45),
        "the expired response is no longer stapled",
        || staple(&edge, "f.test").contains("OCSP response: no response sent"),
    );
    // The response it has is out of date and no new one comes.
    assert_eq!(edge.status("f.test")["ocsp"]["status"], "stale");
}

#[test]
fn a_revoked_answer_gets_an_acme_certificate_replaced() {
    let (edge, responder) = start(1);
    edge.add("r.test");
    edge.wait_served("r.test", Duration::from_secs(10));
    wait_until(
        Duration::from_secs(10),
        "a good response is stapled",
        || stapled_good(&edge, "r.test"),
    );
    let serial = edge.served_serial("r.test");
    responder
        .state
        .revoked
        .lock()
        .unwrap()
        .insert(serial.to_uppercase());
    wait_until(
        Duration::from_secs(60),
        "the revoked certificate is replaced",
        || edge.served_serial("r.test") != serial,
    );
    wait_until(
        Duration::from_secs(15),
        "the replacement is stapled as good",
        || stapled_good(&edge, "r.test"),
    );
}
