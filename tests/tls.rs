//! TLS termination driven through the real binary: certificates follow the store live, names
//! Porter does not serve are refused with `unrecognized_name`, and clients without SNI get the
//! default site or nothing.

mod common;

use common::*;
use rustls::AlertDescription;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn leaf_of(stream: &TlsStream) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn leaf_der(chain_pem: &std::path::Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_file_iter(chain_pem)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn site_and_certificate_changes_are_live() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let porter = Porter::start(&dir.path().join("data"), &[]);
    let client = ca.client(&[b"h2", b"http/1.1"]);

    let refused = tls_connect(client.clone(), porter.https, "a.test")
        .await
        .unwrap_err();
    assert_eq!(
        alert_of(&refused),
        Some(AlertDescription::UnrecognisedName),
        "{refused}"
    );

    let (chain, _) = ca.serve(&porter.data_dir, "a.test", &backend.addr);
    let served_within = std::time::Instant::now();
    eventually(
        Duration::from_secs(1),
        "a.test is served over HTTPS",
        || async {
            matches!(https_get(client.clone(), porter.https, "a.test", "/hi").await,
                 Ok((status, _, body)) if status == 200 && body == "hello from backend /hi")
        },
    )
    .await;
    eprintln!(
        "served {:?} after the import returned",
        served_within.elapsed()
    );

    // Replacing the certificate is seen by the next handshake.
    let stream = tls_connect(client.clone(), porter.https, "a.test")
        .await
        .unwrap();
    assert_eq!(leaf_of(&stream), leaf_der(&chain));
    let (chain2, key2) = ca.issue(&["a.test", "www.a.test"]);
    porter.ok(&[
        "cert",
        "import",
        "a.test",
        "--cert",
        chain2.to_str().unwrap(),
        "--key",
        key2.to_str().unwrap(),
    ]);
    let new_leaf = leaf_der(&chain2);
    eventually(
        Duration::from_secs(1),
        "the new certificate is served",
        || async {
            tls_connect(client.clone(), porter.https, "a.test")
                .await
                .is_ok_and(|s| leaf_of(&s) == new_leaf)
        },
    )
    .await;
    // The connection made before the change still works.
    let (status, _, _) = request(
        stream,
        http::Request::get("https://a.test/")
            .body(Default::default())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);

    porter.ok(&["site", "remove", "a.test"]);
    eventually(
        Duration::from_secs(1),
        "a removed site is refused",
        || async {
            tls_connect(client.clone(), porter.https, "a.test")
                .await
                .is_err_and(|e| alert_of(&e) == Some(AlertDescription::UnrecognisedName))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_missing_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let porter = Porter::start(&dir.path().join("data"), &[]);
    ca.serve(&porter.data_dir, "a.test", &backend.addr);
    // A site without a certificate is not served over TLS either.
    porter.ok(&["site", "add", "plain.test", "--upstream", &backend.addr]);
    let client = ca.client(&[b"http/1.1"]);
    eventually(Duration::from_secs(2), "a.test is served", || async {
        tls_connect(client.clone(), porter.https, "a.test")
            .await
            .is_ok()
    })
    .await;

    for name in ["b.test", "plain.test", "x.a.test"] {
        let e = tls_connect(client.clone(), porter.https, name)
            .await
            .unwrap_err();
        assert_eq!(
            alert_of(&e),
            Some(AlertDescription::UnrecognisedName),
            "{name}: {e}"
        );
    }
    let e = tls_connect_as(client.clone(), porter.https, "a.test", false)
        .await
        .unwrap_err();
    assert_eq!(
        alert_of(&e),
        Some(AlertDescription::HandshakeFailure),
        "no SNI: {e}"
    );

    // openssl agrees on the alert.
    require("openssl", "openssl");
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &porter.https.to_string(),
            "-servername",
            "b.test",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("unrecognized name"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn default_sni_serves_clients_without_sni_and_http10_without_host() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let data = dir.path().join("data");
    let (chain, _) = ca.serve(&data, "a.test", &backend.addr);
    let porter = Porter::start(&data, &["--default-sni", "a.test"]);

    let mut stream = tls_connect_as(ca.client(&[]), porter.https, "a.test", false)
        .await
        .unwrap();
    assert_eq!(leaf_of(&stream), leaf_der(&chain));
    stream
        .write_all(b"GET /headers HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .unwrap()
        .ok();
    // RFC 9110 section 2.5: answered in the highest version Porter speaks.
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The upstream is spoken to in HTTP/1.1, which requires a Host: the connection's name.
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let seen: serde_json::Value = serde_json::from_str(body).expect(&answer);
    assert_eq!(seen["path"], "/headers");
    assert_eq!(seen["headers"]["host"], "a.test", "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wildcard_sites_serve_one_label_below() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let porter = Porter::start(&dir.path().join("data"), &[]);
    ca.serve(&porter.data_dir, "*.w.test", &backend.addr);
    let client = ca.client(&[b"h2"]);
    eventually(Duration::from_secs(2), "x.w.test is served", || async {
        matches!(https_get(client.clone(), porter.https, "x.w.test", "/").await, Ok((s, _, _)) if s == 200)
    })
    .await;
    let e = tls_connect(client.clone(), porter.https, "y.x.w.test")
        .await
        .unwrap_err();
    assert_eq!(alert_of(&e), Some(AlertDescription::UnrecognisedName));
}

#[test]
fn a_connection_that_does_not_open_with_a_client_hello_gets_an_alert() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let porter = Porter::start(&dir.path().join("data"), &[]);
    ca.serve(&porter.data_dir, "a.test", &backend.addr);
    // A handshake record holding a Finished (type 20) where the ClientHello should be, as
    // tlsfuzzer's "skip Client Hello" sends.
    let mut record = vec![22, 3, 1, 0, 16, 20, 0, 0, 12];
    record.extend_from_slice(&[0u8; 12]);
    let mut stream = std::net::TcpStream::connect(porter.https).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&record).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    // A fatal (2) unexpected_message (10) alert (21), as a rustls connection sends; not a
    // bare close.
    assert!(
        answer.len() >= 7 && answer[0] == 21 && answer[5] == 2 && answer[6] == 10,
        "{answer:?}"
    );
}

/// The first flight's bytes `sent` in one write to `porter`: what came back before the close,
/// and how long the close took.
fn answer_to(porter: &Porter, sent: &[u8]) -> (Vec<u8>, Duration) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(porter.https).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = std::time::Instant::now();
    stream.write_all(sent).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (answer, started.elapsed())
}

/// A ClientHello for `name`, as a rustls client's first flight.
fn client_hello(ca: &TestCa, name: &str) -> Vec<u8> {
    let server_name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut client = rustls::ClientConnection::new(ca.client(&[b"h2"]), server_name).unwrap();
    let mut flight = Vec::new();
    client.write_tls(&mut flight).unwrap();
    flight
}

#[test]
fn a_wrong_first_message_or_a_heartbeat_gets_unexpected_message_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    // A handshake timeout no answer below may wait for.
    let porter = Porter::start(&dir.path().join("data"), &["--handshake-timeout", "60s"]);
    ca.serve(&porter.data_dir, "a.test", &backend.addr);
    let resolve = format!("a.test:{}:127.0.0.1", porter.https.port());
    let url = format!("https://a.test:{}/", porter.https.port());
    let ca_path = ca.ca_path();
    let curl_args = [
        "--cacert",
        ca_path.to_str().unwrap(),
        "--resolve",
        &resolve,
        &url,
    ];
    wait_until(Duration::from_secs(10), "a.test is served", || {
        status_code(&curl_args) == "200"
    });
    let hello = client_hello(&ca, "a.test");
    // RFC 8446 section 4: a handshake message of the wrong type (a ServerHello here, whose
    // body does not decode) is unexpected_message, not decode_error.
    let server_hello = [22, 3, 1, 0, 8, 2, 0, 0, 4, 3, 3, 0, 0];
    // RFC 8446 section 5: a record of a type TLS 1.3 does not have (heartbeat, 24), in the
    // same packet as the ClientHello.
    let heartbeat = [&hello[..], &[24, 3, 3, 0, 3, 1, 0, 0]].concat();
    for (what, sent) in [
        ("ServerHello", &server_hello[..]),
        ("heartbeat", &heartbeat),
    ] {
        let (answer, took) = answer_to(&porter, sent);
        // A fatal (2) unexpected_message (10) alert (21), then the close.
        assert_eq!(answer, [21, 3, 3, 0, 2, 2, 10], "{what}");
        assert!(
            took < Duration::from_secs(5),
            "{what}: closed after {took:?}"
        );
    }
}

/// A rustls client on aws-lc-rs that trusts `ca` and offers `groups`, in that order, with a
/// key share for the first.
fn client_offering(
    ca: &TestCa,
    groups: &[&'static dyn rustls::crypto::SupportedKxGroup],
) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = rustls::crypto::CryptoProvider {
        kx_groups: groups.to_vec(),
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    std::sync::Arc::new(config)
}

/// Connects with `config`, asks for `/`: the group negotiated, whether the handshake took a
/// retry, and the status line.
async fn negotiated(
    config: std::sync::Arc<rustls::ClientConfig>,
    porter: &Porter,
) -> (
    Option<rustls::NamedGroup>,
    Option<rustls::HandshakeKind>,
    String,
) {
    let mut stream = tls_connect(config, porter.https, "a.test").await.unwrap();
    let (_, conn) = stream.get_ref();
    let group = conn.negotiated_key_exchange_group().map(|g| g.name());
    let kind = conn.handshake_kind();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // tokio-rustls keeps what the socket did not take at once until a flush.
    stream.flush().await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    (group, kind, text.lines().next().unwrap_or("").to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn post_quantum_key_exchange_is_chosen_by_clients_that_prefer_it_and_classical_stays() {
    use rustls::crypto::aws_lc_rs::kx_group::{SECP256R1, X25519, X25519MLKEM768};
    use rustls::{HandshakeKind, NamedGroup};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let porter = Porter::start(&dir.path().join("data"), &[]);
    ca.serve(&porter.data_dir, "a.test", &backend.addr);
    let hybrid = client_offering(&ca, &[X25519MLKEM768, X25519]);
    wait_until(Duration::from_secs(10), "a.test is served", || {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                tls_connect(hybrid.clone(), porter.https, "a.test")
                    .await
                    .is_ok()
            })
        })
    });
    // What current browsers do: the hybrid first, with its key share.
    let (group, kind, status) = negotiated(hybrid.clone(), &porter).await;
    assert_eq!(group, Some(NamedGroup::X25519MLKEM768));
    assert_eq!(kind, Some(HandshakeKind::Full), "no retry");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // Clients without it (OpenSSL 3.0, older browsers) keep their classical group, no retry.
    for (groups, expected) in [
        (&[X25519][..], NamedGroup::X25519),
        (&[X25519, X25519MLKEM768][..], NamedGroup::X25519),
        (&[SECP256R1][..], NamedGroup::secp256r1),
    ] {
        let (group, kind, status) = negotiated(client_offering(&ca, groups), &porter).await;
        assert_eq!(group, Some(expected), "{groups:?}");
        assert_eq!(kind, Some(HandshakeKind::Full), "{groups:?}");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }
    // 64 at once, each with its own ML-KEM encapsulation.
    let all = (0..64).map(|_| {
        let config = hybrid.clone();
        let porter = &porter;
        async move { negotiated(config, porter).await }
    });
    for (group, _, status) in futures_util::future::join_all(all).await {
        assert_eq!(group, Some(NamedGroup::X25519MLKEM768));
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }
}

#[test]
fn a_post_quantum_key_share_that_is_not_a_key_gets_an_alert_and_others_are_served() {
    use rustls::crypto::aws_lc_rs::kx_group::{X25519, X25519MLKEM768};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let porter = Porter::start(&dir.path().join("data"), &[]);
    ca.serve(&porter.data_dir, "a.test", &backend.addr);
    let hybrid = client_offering(&ca, &[X25519MLKEM768, X25519]);
    let server_name = rustls_pki_types::ServerName::try_from("a.test").unwrap();
    let mut client = rustls::ClientConnection::new(hybrid.clone(), server_name).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    // The key share entry: group 0x11ec, 1216 bytes, the ML-KEM-768 encapsulation key first.
    // Coefficients of 0xfff are above the modulus: FIPS 203's input check refuses the key.
    let at = hello
        .windows(4)
        .position(|w| w == [0x11, 0xec, 0x04, 0xc0])
        .expect("the hello carries a hybrid key share")
        + 4;
    hello[at..at + 1184].fill(0xff);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let served = || {
        runtime.block_on(async {
            let (group, _, status) = negotiated(hybrid.clone(), &porter).await;
            group == Some(rustls::NamedGroup::X25519MLKEM768) && status.contains(" 200 ")
        })
    };
    wait_until(Duration::from_secs(10), "a.test is served", served);
    let (answer, took) = answer_to(&porter, &hello);
    // A fatal (2) illegal_parameter (47) alert, at once, then the close.
    assert_eq!(answer, [21, 3, 3, 0, 2, 2, 47]);
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    assert!(served(), "the next client is served");
}
