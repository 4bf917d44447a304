//! Automatic certificates against a real ACME server (pebble): issuance by HTTP-01 and
//! TLS-ALPN-01 with fallback, many sites at once, short-lived certificates renewed again and
//! again, crash in the middle of an order, failures retried on the backoff schedule while the
//! old certificate keeps being served, External Account Binding, and ARI.

mod common;

use common::acme::{cert_row, free_port, AcmeFront, Edge, Pebble, PebbleOptions, Via};
use common::*;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use std::time::{Duration, Instant};

#[test]
fn http01_issues_a_trusted_certificate_within_five_seconds() {
    let edge = Edge::start(PebbleOptions::new, &["--acme-challenge", "http-01"]);
    let started = Instant::now();
    edge.add("a.test");
    edge.wait_served("a.test", Duration::from_secs(5));
    eprintln!(
        "a.test served with an ACME certificate {:?} after site add",
        started.elapsed()
    );
    let row = edge.status("a.test");
    assert_eq!(row["status"], "valid", "{row}");
    assert_eq!(row["source"], "acme");
    assert_eq!(row["challenge"], "http-01");
    assert!(row["renew_at"].is_string(), "{row}");
    // pebble without a responder URL, like Let's Encrypt since 2025: normal, no error.
    assert_eq!(row["ocsp"]["status"], "no_responder", "{row}");
    assert!(row["ocsp"]["error"].is_null(), "{row}");
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
    let edge = Edge::start(
        |_, https| PebbleOptions::new(free_port(), https),
        &["--acme-challenge", "http-01"],
    );
    edge.add("c.test");
    edge.wait_served("c.test", Duration::from_secs(15));
    let row = edge.status("c.test");
    assert_eq!(row["challenge"], "tls-alpn-01", "{row}");
    assert_eq!(row["attempts"], 0);
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn unix(rfc3339: &Value) -> i64 {
    let text = rfc3339
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {rfc3339}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

#[test]
fn fifty_sites_added_at_once_are_all_issued_with_bounded_concurrency_and_one_order_each() {
    let edge = Edge::start_via(Via::Front, PebbleOptions::new, &["--acme-concurrency", "4"]);
    let domains: Vec<String> = (0..50).map(|i| format!("s{i}.test")).collect();
    for domain in &domains {
        edge.add(domain);
    }
    wait_until(
        Duration::from_secs(90),
        "all 50 sites have a valid certificate",
        || edge.valid_certs() == 50,
    );
    let root = edge.root();
    for domain in domains.iter().step_by(7) {
        assert_eq!(
            edge.get(domain, &root).as_deref(),
            Some("hello from backend /"),
            "{domain}"
        );
    }
    let front = edge.front();
    assert_eq!(front.new_orders, 50, "one order per site, no duplicates");
    assert_eq!(front.finalized, 50);
    assert!(
        front.max_open_orders <= 4,
        "at most 4 orders at once, saw {}",
        front.max_open_orders
    );
}

#[test]
fn two_hundred_sites_added_by_sixteen_writers_at_once_are_all_issued_with_thirty_two_orders_open() {
    let edge = Edge::start_via(
        Via::Front,
        PebbleOptions::new,
        &["--acme-concurrency", "32", "--acme-rate", "100"],
    );
    let data = edge.porter().data_dir.clone();
    let upstream = edge.backend.addr.clone();
    std::thread::scope(|scope| {
        for w in 0..16 {
            let (data, upstream) = (&data, &upstream);
            scope.spawn(move || {
                for i in (w..200).step_by(16) {
                    ok(
                        data,
                        &["site", "add", &format!("m{i}.test"), "--upstream", upstream],
                    );
                }
            });
        }
    });
    let started = Instant::now();
    wait_until(
        Duration::from_secs(240),
        "all 200 sites have a valid certificate",
        || edge.valid_certs() == 200,
    );
    eprintln!(
        "200 certificates issued {:?} after the last site add",
        started.elapsed()
    );
    let root = edge.root();
    for i in (0..200).step_by(23) {
        let domain = format!("m{i}.test");
        assert_eq!(
            edge.get(&domain, &root).as_deref(),
            Some("hello from backend /"),
            "{domain}"
        );
    }
    let front = edge.front();
    assert_eq!(front.new_orders, 200, "one order per site, no duplicates");
    assert!(
        front.max_open_orders <= 32,
        "at most 32 orders at once, saw {}",
        front.max_open_orders
    );
}

#[test]
fn short_lived_certificates_renew_again_and_again_without_dropping_connections() {
    let edge = Edge::start(
        |http, https| PebbleOptions {
            validity: Some(30),
            ..PebbleOptions::new(http, https)
        },
        &[],
    );
    edge.add("short.test");
    edge.wait_served("short.test", Duration::from_secs(10));
    let root = edge.root();
    let ca = {
        let pem = std::fs::read_to_string(&root).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Full handshakes only, so that each connection shows the certificate served now.
        config.resumption = rustls::client::Resumption::disabled();
        std::sync::Arc::new(config)
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let https = edge.porter().https;
    // A keep-alive connection opened on the first certificate.
    let (mut sender, first_leaf) = runtime.block_on(async {
        let stream = tls_connect(ca.clone(), https, "short.test").await.unwrap();
        let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        (sender, leaf)
    });
    // The connection opened on the first certificate keeps serving (a request now and then,
    // as a browser's would; a silent one is closed at the header timeout) across renewals.
    let mut get = || {
        runtime.block_on(async {
            let req = http::Request::get("/")
                .header("host", "short.test")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            sender.ready().await.unwrap();
            let response = sender.send_request(req).await.unwrap();
            let status = response.status();
            // Read to the end, so that the connection takes the next request.
            http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap();
            status
        })
    };
    let mut serials = vec![edge.served_serial("short.test")];
    wait_until(Duration::from_secs(70), "two renewals", || {
        assert_eq!(get(), 200);
        let serial = edge.served_serial("short.test");
        if serials.last() != Some(&serial) {
            serials.push(serial);
        }
        serials.len() >= 3
    });
    let row = edge.status("short.test");
    assert_eq!(row["status"], "valid", "{row}");
    assert_eq!(row["attempts"], 0, "{row}");
    assert_eq!(get(), 200);
    let fresh = runtime
        .block_on(tls_connect(ca, https, "short.test"))
        .unwrap();
    let fresh_leaf = fresh.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    assert!(
        fresh_leaf != first_leaf,
        "a new connection gets the renewed certificate"
    );
}

#[test]
fn kill_9_in_the_middle_of_an_order_then_restart_obtains_the_certificate_once() {
    let mut edge = Edge::start_via(
        Via::Front,
        |http, https| PebbleOptions {
            slow_validation: true,
            ..PebbleOptions::new(http, https)
        },
        &[],
    );
    edge.add("crash.test");
    wait_until(Duration::from_secs(10), "an order is in flight", || {
        edge.status("crash.test")["order_in_flight"] == true
    });
    edge.porter.take().unwrap().kill9();
    edge.restart();
    edge.wait_served("crash.test", Duration::from_secs(60));
    let row = edge.status("crash.test");
    assert_eq!(row["status"], "valid", "{row}");
    assert_eq!(row["order_in_flight"], false, "{row}");
    assert_eq!(
        edge.front().finalized,
        1,
        "exactly one certificate was issued"
    );
}

#[test]
fn refused_names_and_an_unreachable_ca_are_retried_on_the_backoff_schedule_keeping_the_old_certificate(
) {
    let mut edge = Edge::start(
        |http, https| PebbleOptions {
            blocklist: vec!["blocked".into()],
            ..PebbleOptions::new(http, https)
        },
        &[],
    );
    edge.add("x.blocked");
    edge.add("ok.test");
    wait_until(Duration::from_secs(10), "the refusal is recorded", || {
        edge.status("x.blocked")["attempts"] == 1
    });
    let row = edge.status("x.blocked");
    assert_eq!(row["status"], "failing", "{row}");
    assert!(
        row["last_error"]
            .as_str()
            .unwrap()
            .contains("rejectedIdentifier"),
        "{row}"
    );
    let wait = unix(&row["next_attempt"]) - now();
    assert!(
        (45..=70).contains(&wait),
        "first retry about a minute later, got {wait}s: {row}"
    );

    // The CA goes away; a renewal fails, is scheduled again, and the old certificate stays.
    edge.wait_served("ok.test", Duration::from_secs(10));
    let serial = edge.served_serial("ok.test");
    edge.pebble.stop();
    edge.porter().ok(&["cert", "renew", "ok.test"]);
    wait_until(
        Duration::from_secs(40),
        "the failed renewal is recorded",
        || edge.status("ok.test")["attempts"] == 1,
    );
    let row = edge.status("ok.test");
    assert_eq!(row["status"], "valid", "{row}");
    // The error names the CA, the step and the cause, not just "client error (Connect)".
    let error = row["last_error"].as_str().unwrap_or_default();
    let directory = format!("CA {}: ", edge.directory());
    assert!(error.starts_with(&directory), "{row}");
    assert!(error.contains("Connection refused"), "{row}");
    assert!(row["next_attempt"].is_string(), "{row}");
    assert_eq!(
        edge.served_serial("ok.test"),
        serial,
        "the old certificate is still served"
    );
}

#[test]
fn a_ca_that_forgot_its_accounts_gets_a_new_one_and_issuance_carries_on() {
    let mut edge = Edge::start(PebbleOptions::new, &[]);
    edge.add("before.test");
    edge.wait_served("before.test", Duration::from_secs(10));
    let accounts = |edge: &Edge| -> Vec<String> {
        let backup: Value = serde_json::from_str(&edge.porter().ok(&["store", "export"])).unwrap();
        backup["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["credentials"].to_string())
            .collect()
    };
    let first = accounts(&edge);
    assert_eq!(first.len(), 1);
    // The CA starts over (as after a reset): its accounts are gone.
    edge.pebble.stop();
    edge.pebble.resume();
    let started = Instant::now();
    edge.add("after.test");
    wait_until(
        Duration::from_secs(30),
        "a certificate from the new account",
        || edge.status("after.test")["status"] == "valid",
    );
    eprintln!("issued {:?} after the CA reset", started.elapsed());
    let second = accounts(&edge);
    assert_eq!(second.len(), 1, "the account is replaced, not added");
    assert_ne!(second, first, "a new account");
}

#[test]
fn a_name_the_first_ca_refuses_comes_from_the_next_whose_ari_window_it_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (http, https) = (free_port(), free_port());
    let refusing = Pebble::start(
        &dir.path().join("first"),
        PebbleOptions {
            blocklist: vec!["fallback.test".into()],
            ..PebbleOptions::new(http, https)
        },
    );
    let second = Pebble::start(&dir.path().join("second"), PebbleOptions::new(http, https));
    // The second CA offers ARI (through the test's front), with a window of its own.
    let second_front = AcmeFront::start(&second, true);
    let window = (now() + 600, now() + 900);
    second_front.state.lock().unwrap().window = Some(window);
    // One file with both CAs' HTTPS roots.
    let roots = dir.path().join("roots.pem");
    let pem = |path: &std::path::Path| std::fs::read_to_string(path).unwrap();
    std::fs::write(&roots, pem(&refusing.https_root) + &pem(&second.https_root)).unwrap();
    let backend = Backend::start();
    let (http_flag, https_flag) = (format!("127.0.0.1:{http}"), format!("127.0.0.1:{https}"));
    let porter = Porter::start(
        &dir.path().join("data"),
        &[
            "--acme-agree-tos",
            "--acme-directory",
            &refusing.directory,
            "--acme-directory",
            &second_front.directory,
            "--acme-ca-root",
            roots.to_str().unwrap(),
            "--acme-fallback-after",
            "1",
            "--http",
            &http_flag,
            "--https",
            &https_flag,
        ],
    );
    let status = |domain: &str| cert_row(&porter, domain);
    porter.ok(&["site", "add", "fallback.test", "--upstream", &backend.addr]);
    porter.ok(&["site", "add", "first.test", "--upstream", &backend.addr]);
    wait_until(Duration::from_secs(30), "both are issued", || {
        status("fallback.test")["status"] == "valid" && status("first.test")["status"] == "valid"
    });
    let row = status("fallback.test");
    assert_eq!(
        row["ca"], second_front.directory,
        "from the second CA: {row}"
    );
    let row = status("first.test");
    assert_eq!(row["ca"], refusing.directory, "from the first CA: {row}");
    assert_eq!(
        row["renew_why"], "lifetime ratio",
        "the first has no ARI: {row}"
    );
    // The second CA's certificate follows the second CA's renewal window.
    wait_until(
        Duration::from_secs(10),
        "the second CA's window is used",
        || {
            let row = status("fallback.test");
            row["renew_why"] == "ARI window"
                && (window.0..=window.1).contains(&unix(&row["renew_at"]))
        },
    );
}

#[test]
fn a_challenge_that_cannot_succeed_is_reported_and_retried() {
    // Neither validation port leads to Porter.
    let edge = Edge::start(|_, _| PebbleOptions::new(free_port(), free_port()), &[]);
    edge.add("nowhere.test");
    wait_until(Duration::from_secs(30), "the failure is recorded", || {
        edge.status("nowhere.test")["attempts"] == 1
    });
    let row = edge.status("nowhere.test");
    assert_eq!(row["status"], "failing", "{row}");
    assert!(
        row["last_error"]
            .as_str()
            .unwrap()
            .contains("challenge failed"),
        "{row}"
    );
    assert!(unix(&row["next_attempt"]) > now() + 30, "{row}");
}

#[test]
fn external_account_binding_works_with_the_right_key_and_says_why_with_a_wrong_one() {
    use base64::Engine as _;
    let hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
    let wrong = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([8u8; 32]);
    let eab = |http, https| PebbleOptions {
        eab: Some(("kid-1".into(), hmac.clone())),
        ..PebbleOptions::new(http, https)
    };
    let edge = Edge::start(eab, &["--acme-eab-kid", "kid-1", "--acme-eab-hmac", &hmac]);
    edge.add("eab.test");
    edge.wait_served("eab.test", Duration::from_secs(10));

    let eab = |http, https| PebbleOptions {
        eab: Some(("kid-1".into(), hmac.clone())),
        ..PebbleOptions::new(http, https)
    };
    let edge = Edge::start(eab, &["--acme-eab-kid", "kid-1", "--acme-eab-hmac", &wrong]);
    edge.add("eab2.test");
    wait_until(Duration::from_secs(10), "the refusal is recorded", || {
        edge.status("eab2.test")["attempts"] == 1
    });
    let error = edge.status("eab2.test")["last_error"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(
        error.contains("externalaccountbinding") || error.contains("external account"),
        "{error}"
    );
}

#[test]
fn the_ca_renewal_window_moves_the_renewal_time_and_renewals_say_what_they_replace() {
    let edge = Edge::start_via(Via::FrontWithAri, PebbleOptions::new, &[]);
    let window = (now() + 600, now() + 900);
    edge.front().window = Some(window);
    edge.add("ari.test");
    edge.wait_served("ari.test", Duration::from_secs(10));
    wait_until(
        Duration::from_secs(10),
        "the renewal time follows the window",
        || {
            let row = edge.status("ari.test");
            row["renew_at"].is_string() && (window.0..=window.1).contains(&unix(&row["renew_at"]))
        },
    );
    let serial = edge.status("ari.test")["serial"]
        .as_str()
        .unwrap()
        .to_owned();

    edge.porter().ok(&["cert", "renew", "ari.test"]);
    wait_until(Duration::from_secs(10), "the renewal is issued", || {
        edge.status("ari.test")["serial"].as_str() != Some(serial.as_str())
    });
    let replaces = edge.front().replaces.clone();
    assert_eq!(replaces.len(), 1, "{replaces:?}");
    use base64::Engine as _;
    let serial_b64 =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hex::decode(&serial).unwrap());
    assert!(
        replaces[0].ends_with(&format!(".{serial_b64}")),
        "{replaces:?} should name serial {serial}"
    );
}

#[test]
fn wildcards_without_a_dns_zone_are_explained_and_never_ordered() {
    let edge = Edge::start_via(Via::Front, PebbleOptions::new, &[]);
    let out = edge.porter().ok(&[
        "site",
        "add",
        "*.wild.test",
        "--upstream",
        &edge.backend.addr,
    ]);
    assert!(
        out.contains("validated over DNS-01 only") && out.contains("porter dns add"),
        "{out}"
    );
    edge.add("plain.test");
    edge.wait_served("plain.test", Duration::from_secs(10));
    let row = edge.status("*.wild.test");
    assert_eq!(row["status"], "wildcard", "{row}");
    assert!(
        row["note"].as_str().unwrap().contains("or import one"),
        "{row}"
    );
    assert_eq!(row["attempts"], 0);
    assert_eq!(edge.front().new_orders, 1, "only plain.test was ordered");
    let renew = edge.porter().cli(&["cert", "renew", "*.wild.test"]);
    assert!(!renew.status.success());
}

#[test]
fn revoke_revokes_at_the_ca_and_replaces() {
    let edge = Edge::start(PebbleOptions::new, &[]);
    edge.add("rev.test");
    edge.wait_served("rev.test", Duration::from_secs(10));
    let serial = edge.served_serial("rev.test");
    edge.porter().ok(&["cert", "revoke", "rev.test"]);
    wait_until(Duration::from_secs(15), "a replacement is served", || {
        edge.served_serial("rev.test") != serial
    });
    assert!(revoked_at_the_ca(&edge, &serial));
    assert_eq!(edge.status("rev.test")["status"], "valid");
}

/// Whether pebble says the certificate with `serial` is revoked.
fn revoked_at_the_ca(edge: &Edge, serial: &str) -> bool {
    let (ok, status) = curl(&[
        "--cacert",
        edge.pebble.https_root.to_str().unwrap(),
        &format!("{}/cert-status-by-serial/{serial}", edge.pebble.management),
    ]);
    ok && status.contains("Revoked")
}

#[test]
fn renew_and_revoke_asked_while_an_attempt_is_in_flight_are_both_carried_out() {
    let edge = Edge::start_via(Via::Front, PebbleOptions::new, &[]);
    edge.add("busy.test");
    edge.wait_served("busy.test", Duration::from_secs(10));
    let first = edge.served_serial("busy.test");
    let hold = |on: bool| edge.front().hold_finalize = on;
    let held = || {
        wait_until(
            Duration::from_secs(15),
            "a renewal waits at finalize",
            || edge.front().held == 1,
        )
    };

    // A revocation of the served certificate asked while its renewal is in flight.
    hold(true);
    edge.porter().ok(&["cert", "renew", "busy.test"]);
    held();
    edge.porter().ok(&["cert", "revoke", "busy.test"]);
    hold(false);
    wait_until(
        Duration::from_secs(15),
        "the first certificate is revoked",
        || revoked_at_the_ca(&edge, &first),
    );
    let second = edge.served_serial("busy.test");
    assert_ne!(second, first);
    assert!(!revoked_at_the_ca(&edge, &second), "only the one asked for");

    // A renewal asked again while the first one is in flight.
    hold(true);
    edge.porter().ok(&["cert", "renew", "busy.test"]);
    held();
    edge.porter().ok(&["cert", "renew", "busy.test"]);
    hold(false);
    wait_until(
        Duration::from_secs(15),
        "both renewals are carried out",
        || edge.front().finalized == 4,
    );
    // Settled: nothing is asked any more, so the renewal is planned weeks ahead again.
    wait_until(Duration::from_secs(10), "the requests are settled", || {
        unix(&edge.status("busy.test")["renew_at"]) > now() + 86_400
    });
    assert_eq!(edge.front().new_orders, 4, "one order per certificate");
    let last = edge.status("busy.test")["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(edge.served_serial("busy.test"), last);
    assert_ne!(last, second);
}

#[test]
fn removing_a_site_ends_its_acme_work_without_a_certificate() {
    let edge = Edge::start_via(
        Via::Front,
        |http, https| PebbleOptions {
            slow_validation: true,
            ..PebbleOptions::new(http, https)
        },
        &[],
    );
    edge.add("gone.test");
    wait_until(Duration::from_secs(10), "an order is in flight", || {
        edge.status("gone.test")["order_in_flight"] == true
    });
    edge.porter().ok(&["site", "remove", "gone.test"]);
    // Long enough for a slow validation to end and the order to be finalized, were it going on.
    edge.add("other.test");
    edge.wait_served("other.test", Duration::from_secs(30));
    assert_eq!(edge.front().finalized, 1, "only other.test was finalized");
    assert!(edge.status("gone.test").is_null());
}
