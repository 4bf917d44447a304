//! On-demand TLS against pebble (through the test's front, which counts orders) and an ask
//! endpoint of the test's own: an allowed name gets its certificate during its first
//! handshake; a refused one gets `unrecognized_name` and no order; a hundred random names make
//! no order and a repeated refusal is not asked again; twenty handshakes at once for one name
//! make one order; the site rate holds; an ask endpoint that does not answer refuses. Without an
//! endpoint, the operator's rules in the store allow names, follow changes, and the rate and
//! the metrics hold too.

mod common;

use common::acme::{Edge, PebbleOptions, Via};
use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An ask endpoint: yes for `*.yes.test` (naming `there` as the upstream for
/// `*.there.yes.test`, and something that is not an address for `*.bad.yes.test`), no answer
/// for 5 s for `*.slow.test`, no otherwise; counts the asks by name.
fn ask_endpoint(there: &str) -> (String, Arc<Mutex<HashMap<String, usize>>>) {
    let there = there.to_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ask", listener.local_addr().unwrap());
    let asked = Arc::new(Mutex::new(HashMap::new()));
    let counted = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counted = counted.clone();
            let there = there.clone();
            std::thread::spawn(move || {
                let mut line = String::new();
                let mut reader = BufReader::new(&stream);
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let name = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|target| target.split_once("domain="))
                    .map(|(_, name)| name.to_owned())
                    .unwrap_or_default();
                *counted.lock().unwrap().entry(name.clone()).or_insert(0) += 1;
                if name.ends_with(".slow.test") {
                    std::thread::sleep(Duration::from_secs(5));
                }
                let status = if name.ends_with(".yes.test") {
                    "200 OK"
                } else {
                    "403 Forbidden"
                };
                let target = if name.ends_with(".there.yes.test") {
                    format!("Porter-Upstream: {there}\r\n")
                } else if name.ends_with(".bad.yes.test") {
                    "Porter-Upstream: not an address\r\n".to_owned()
                } else {
                    String::new()
                };
                let mut stream = &stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\n{target}Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
            });
        }
    });
    (url, asked)
}

/// Asserts that a handshake for `name` is refused with `unrecognized_name`.
async fn assert_refused(tls: &Arc<rustls::ClientConfig>, https: std::net::SocketAddr, name: &str) {
    let refused = tls_connect(tls.clone(), https, name).await.unwrap_err();
    assert_eq!(
        alert_of(&refused),
        Some(rustls::AlertDescription::UnrecognisedName),
        "{name}"
    );
}

/// A rustls client trusting pebble's issuing root.
fn client(root: &std::path::Path) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(root).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_are_issued_on_demand_only_when_the_endpoint_allows_and_within_the_limits() {
    let there = Backend::start();
    let (ask, asked) = ask_endpoint(&there.addr);
    let backend = Backend::start();
    let edge = tokio::task::spawn_blocking(move || {
        let upstream = backend.addr.clone();
        let edge = Edge::start_via(
            Via::Front,
            PebbleOptions::new,
            &[
                "--on-demand-ask",
                &ask,
                "--on-demand-upstream",
                &upstream,
                "--on-demand-rate",
                "4",
            ],
        );
        (edge, backend)
    })
    .await
    .unwrap();
    let (edge, _backend) = edge;
    let root = edge.root();
    let tls = client(&root);
    let https = edge.porter().https;
    let orders = |edge: &Edge| edge.front().new_orders;

    // An allowed name: served with its new certificate within its first handshake.
    let started = Instant::now();
    let stream = tls_connect(tls.clone(), https, "first.yes.test")
        .await
        .expect("the first handshake gets a certificate");
    let took = started.elapsed();
    eprintln!("first.yes.test: certificate obtained during the handshake in {took:?}");
    let req = http::Request::get("/")
        .header("host", "first.yes.test")
        .body(Default::default())
        .unwrap();
    let (status, _, body) = request(stream, req).await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (200, "hello from backend /")
    );
    assert_eq!(orders(&edge), 1);

    // The answer may name the site's upstream; one that names no address refuses.
    assert_refused(&tls, https, "x.bad.yes.test").await;
    let listed = |edge: &Edge| -> serde_json::Value {
        serde_json::from_str(&edge.porter().ok(&["--json", "site", "list"])).unwrap()
    };
    let sites = listed(&edge);
    assert!(!sites.to_string().contains("x.bad.yes.test"), "{sites}");
    assert!(tls_connect(tls.clone(), https, "x.there.yes.test")
        .await
        .is_ok());
    let site = listed(&edge)
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["domain"] == "x.there.yes.test")
        .cloned()
        .unwrap();
    assert_eq!(site["upstream"], there.addr.as_str(), "{site}");
    assert_eq!(orders(&edge), 2);

    // A refused name: unrecognized_name, no site, no order.
    assert_refused(&tls, https, "nope.no.test").await;
    let sites = edge.porter().ok(&["site", "list"]);
    assert!(!sites.contains("nope.no.test"), "{sites}");
    // Asked once, then remembered.
    for _ in 0..5 {
        assert!(tls_connect(tls.clone(), https, "nope.no.test")
            .await
            .is_err());
    }
    assert_eq!(asked.lock().unwrap()["nope.no.test"], 1);

    // A hundred random names: each asked once, none ordered.
    for i in 0..100 {
        let name = format!("r{i}-{}.no.test", rand::random::<u32>());
        assert!(tls_connect(tls.clone(), https, &name).await.is_err());
    }
    assert_eq!(orders(&edge), 2, "no order for refused names");

    // Twenty handshakes at once for one allowed name: one order, all served.
    let handshakes: Vec<_> = (0..20)
        .map(|_| {
            let tls = tls.clone();
            tokio::spawn(async move { tls_connect(tls, https, "crowd.yes.test").await.is_ok() })
        })
        .collect();
    for handshake in handshakes {
        assert!(
            handshake.await.unwrap(),
            "every waiting handshake is served"
        );
    }
    assert_eq!(orders(&edge), 3, "one order for the twenty");

    // The rate (4 a minute): one more site, then refusals.
    assert!(tls_connect(tls.clone(), https, "third.yes.test")
        .await
        .is_ok());
    assert_refused(&tls, https, "fourth.yes.test").await;
    assert_eq!(orders(&edge), 4);

    // An endpoint that does not answer in time refuses (3 s), rather than holding the client.
    let started = Instant::now();
    assert!(tls_connect(tls.clone(), https, "late.slow.test")
        .await
        .is_err());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(orders(&edge), 4);

    // The front has a runtime of its own: it is dropped off this one.
    tokio::task::spawn_blocking(move || drop(edge))
        .await
        .unwrap();
}

/// The count of on-demand handshakes with `decision` in `/metrics`.
fn decisions(edge: &Edge, decision: &str) -> u64 {
    let (status, text) = edge.porter().api("GET", "/metrics", None);
    assert_eq!(status, 200);
    let series = format!("porter_on_demand_handshakes_total{{decision=\"{decision}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_an_ask_endpoint_only_the_stores_rules_allow_names() {
    let backend = Backend::start();
    let edge = tokio::task::spawn_blocking(move || {
        let upstream = backend.addr.clone();
        let edge = Edge::start_via(
            Via::Front,
            PebbleOptions::new,
            &["--on-demand-upstream", &upstream, "--on-demand-rate", "3"],
        );
        (edge, backend)
    })
    .await
    .unwrap();
    let (edge, _backend) = edge;
    let tls = client(&edge.root());
    let https = edge.porter().https;
    let orders = |edge: &Edge| edge.front().new_orders;

    // No rule yet: refused, without an order.
    assert_refused(&tls, https, "a.rule.test").await;
    // Rules that would allow too much, or are not names, are refused and change nothing.
    for bad in ["test", "*.test", "bad name", "*.*.rule.test"] {
        let out = edge.porter().cli(&["on-demand", "allow", bad]);
        assert!(!out.status.success(), "{bad} was accepted");
    }
    assert!(edge
        .porter()
        .ok(&["on-demand", "rules"])
        .contains("no on-demand rules"));

    edge.porter().ok(&["on-demand", "allow", "*.rule.test"]);
    assert_eq!(edge.porter().ok(&["on-demand", "rules"]), "*.rule.test\n");
    // The edge follows the store within moments, and forgets what it refused under the old
    // rules: the name refused above is served now.
    let first = "a.rule.test";
    let mut look = 0;
    loop {
        look += 1;
        assert!(
            look < 100,
            "the rule never reached the edge, or {first} stayed refused"
        );
        match tls_connect(tls.clone(), https, first).await {
            Ok(_) => break,
            Err(e) => assert_eq!(
                alert_of(&e),
                Some(rustls::AlertDescription::UnrecognisedName)
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(orders(&edge), 1);
    // `*.rule.test` covers the names under it, not rule.test itself.
    assert_refused(&tls, https, "rule.test").await;

    // Ten handshakes at once for ten names under the rule: the site rate (3 a minute, one
    // spent) holds.
    let handshakes: Vec<_> = (0..10)
        .map(|i| {
            let tls = tls.clone();
            tokio::spawn(async move {
                tls_connect(tls, https, &format!("crowd{i}.rule.test"))
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut served = 0;
    for handshake in handshakes {
        served += usize::from(handshake.await.unwrap());
    }
    assert!((1..=3).contains(&served), "{served} of 10 served");
    assert_eq!(orders(&edge), 1 + served);
    assert_eq!(decisions(&edge, "allowed_by_rule"), 1 + served as u64);
    assert_eq!(decisions(&edge, "rate_limited"), 10 - served as u64);
    assert!(decisions(&edge, "refused") >= 2);
    assert_eq!(decisions(&edge, "allowed_by_ask"), 0);

    // Removed: new names are refused by rule again, not only by the spent rate (the sites it
    // let in stay).
    edge.porter().ok(&["on-demand", "disallow", "*.rule.test"]);
    let out = edge.porter().cli(&["on-demand", "disallow", "*.rule.test"]);
    assert!(!out.status.success());
    let mut look = 0;
    loop {
        look += 1;
        assert!(look < 100, "the removal never reached the edge");
        let refused = decisions(&edge, "refused");
        let name = format!("gone{look}.rule.test");
        assert_refused(&tls, https, &name).await;
        if decisions(&edge, "refused") == refused + 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(edge.porter().ok(&["site", "list"]).contains(first));
    tokio::task::spawn_blocking(move || drop(edge))
        .await
        .unwrap();
}
