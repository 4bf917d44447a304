//! On-demand TLS against pebble (through the test's front, which counts orders) and an ask
//! endpoint of the test's own: an allowed name gets its certificate during its first
//! handshake; a refused one gets `unrecognized_name` and no order; a hundred random names make
//! no order and a repeated refusal is not asked again; twenty handshakes at once for one name
//! make one order; the site rate holds; an ask endpoint that does not answer refuses.

mod common;

use common::acme::{Edge, PebbleOptions, Via};
use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An ask endpoint: yes for `*.yes.test`, no answer for 5 s for `*.slow.test`, no otherwise;
/// counts the asks by name.
fn ask_endpoint() -> (String, Arc<Mutex<HashMap<String, usize>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ask", listener.local_addr().unwrap());
    let asked = Arc::new(Mutex::new(HashMap::new()));
    let counted = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counted = counted.clone();
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
                let mut stream = &stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            });
        }
    });
    (url, asked)
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
    let (ask, asked) = ask_endpoint();
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
                "3",
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

    // A refused name: unrecognized_name, no site, no order.
    let refused = tls_connect(tls.clone(), https, "nope.no.test")
        .await
        .unwrap_err();
    assert_eq!(
        alert_of(&refused),
        Some(rustls::AlertDescription::UnrecognisedName)
    );
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
    assert_eq!(orders(&edge), 1, "no order for refused names");

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
    assert_eq!(orders(&edge), 2, "one order for the twenty");

    // The rate (3 a minute): one more site, then refusals.
    assert!(tls_connect(tls.clone(), https, "third.yes.test")
        .await
        .is_ok());
    let over = tls_connect(tls.clone(), https, "fourth.yes.test")
        .await
        .unwrap_err();
    assert_eq!(
        alert_of(&over),
        Some(rustls::AlertDescription::UnrecognisedName)
    );
    assert_eq!(orders(&edge), 3);

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
    assert_eq!(orders(&edge), 3);
    // The front has a runtime of its own: it is dropped off this one.
    tokio::task::spawn_blocking(move || drop(edge))
        .await
        .unwrap();
}
