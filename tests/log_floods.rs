//! Logs no client can flood: 10,000 TLS handshakes with an IP address as SNI (which rustls
//! warns about) and 10,000 requests to a site whose upstream is down add a handful of lines
//! to Porter's log, each naming its site where there is one and carrying how many of its kind
//! were left out; every handshake and every request is accounted for in those counts, and the
//! handshakes are counted in `/metrics`.

mod common;

use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

const FLOOD: usize = 10_000;

/// Porter's log lines (JSON) in `log`.
fn lines(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A TLS 1.3 ClientHello naming `127.0.0.1` in its SNI extension: an IP address, which RFC
/// 6066 section 3 forbids there (rustls clients refuse to send one, browsers and `wrk` do).
fn hello_with_ip_sni() -> Vec<u8> {
    fn extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
        out.extend(kind.to_be_bytes());
        out.extend((data.len() as u16).to_be_bytes());
        out.extend(data);
    }
    let name = b"127.0.0.1";
    let mut sni = ((name.len() + 3) as u16).to_be_bytes().to_vec();
    sni.push(0); // host_name
    sni.extend((name.len() as u16).to_be_bytes());
    sni.extend(name);
    let mut extensions = Vec::new();
    extension(&mut extensions, 0, &sni);
    extension(&mut extensions, 43, &[2, 3, 4]); // supported_versions: TLS 1.3
    extension(&mut extensions, 10, &[0, 2, 0, 0x1d]); // supported_groups: x25519
    extension(&mut extensions, 13, &[0, 2, 4, 3]); // signature_algorithms: ecdsa_secp256r1_sha256
    let mut key_share = vec![0, 36, 0, 0x1d, 0, 32];
    key_share.extend([9; 32]);
    extension(&mut extensions, 51, &key_share);
    let mut body = vec![3, 3];
    body.extend([7; 32]); // random
    body.extend([0, 0, 2, 0x13, 0x01, 1, 0]); // no session id, TLS_AES_128_GCM_SHA256, null compression
    body.extend((extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    let mut handshake = vec![1]; // client_hello
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![22, 3, 1];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// `FLOOD` handshakes with an IP address as SNI, from 100 loopback addresses (each within the
/// per-address handshake rate), 50 at a time; each waits for Porter to close.
async fn ip_sni_flood(https: SocketAddr) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let hello = std::sync::Arc::new(hello_with_ip_sni());
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..50u8 {
        let hello = hello.clone();
        tasks.spawn(async move {
            for n in 0..FLOOD / 50 {
                let from = Ipv4Addr::new(127, 0, 1, ((n % 2) * 50) as u8 + worker + 1);
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind((from, 0).into()).unwrap();
                let mut stream = socket.connect(https).await.unwrap();
                stream.write_all(&hello).await.unwrap();
                let mut sink = Vec::new();
                let read =
                    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink))
                        .await;
                assert!(read.is_ok(), "Porter closes the connection");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// `FLOOD` requests for `host` over 20 keep-alive connections; each is answered 502.
async fn dead_upstream_flood(http: SocketAddr, host: &'static str) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        tasks.spawn(async move {
            let stream = tokio::net::TcpStream::connect(http).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            for _ in 0..FLOOD / 20 {
                sender.ready().await.unwrap();
                let request = http::Request::get("/")
                    .header("host", host)
                    .body(Empty::<bytes::Bytes>::new())
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.status(), 502);
                response.into_body().collect().await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// The lines whose message starts with `what`, and what they account for: themselves and the
/// lines they say were left out.
fn accounted<'a>(lines: &'a [serde_json::Value], what: &str) -> (Vec<&'a serde_json::Value>, u64) {
    let kind: Vec<_> = lines
        .iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with(what)))
        .collect();
    let n = kind
        .iter()
        .map(|l| {
            let suppressed = l["suppressed"].as_u64().unwrap_or_else(|| panic!("{l}"));
            // A summary line stands for what it counts; a line of the kind also for itself.
            suppressed
                + u64::from(
                    !l["message"]
                        .as_str()
                        .unwrap()
                        .contains(" more in the last "),
                )
        })
        .sum();
    (kind, n)
}

#[test]
fn floods_of_bad_handshakes_and_dead_upstreams_add_a_handful_of_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("porter.log");
    let capture = format!("exec \"$0\" \"$@\" 2>>{}", log.display());
    let porter = Porter::start_as(
        &["sh", "-c", &capture, porter_bin()],
        &data,
        &["--log-format", "json", "--metrics", "127.0.0.1:0"],
    );
    // A closed loopback port as the upstream: every request is refused at once.
    let dead = format!("127.0.0.1:{}", common::acme::free_port());
    porter.ok(&[
        "site",
        "add",
        "dead.test",
        "--upstream",
        &dead,
        "--allow-unreachable",
    ]);
    // Until the site is served, requests are answered 404 without trying the upstream.
    wait_until(Duration::from_secs(10), "the site is served", || {
        plain_status(porter.http, "dead.test", "/") == "502"
    });
    let before = lines(&log).len();

    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        tokio::join!(
            ip_sni_flood(porter.https),
            dead_upstream_flood(porter.http, "dead.test")
        )
    });
    let flooded = started.elapsed();

    // What was left out at the end is summed up an interval after the last line of its kind.
    let (mut sni, mut upstream) = (0, 0);
    wait_until(
        Duration::from_secs(30),
        "every handshake and request is accounted for in the log",
        || {
            let now = lines(&log);
            sni = accounted(&now[before..], "TLS clients sent an illegal SNI").1;
            // The whole log: the one request that saw the site served came before the flood.
            upstream = accounted(&now, "cannot connect to upstream").1;
            sni >= FLOOD as u64 && upstream > FLOOD as u64
        },
    );
    let all = lines(&log);
    let added = &all[before..];
    eprintln!(
        "log floods: {FLOOD} handshakes with an IP as SNI and {FLOOD} requests to a dead upstream in {flooded:?} added {} lines",
        added.len()
    );
    for line in added {
        eprintln!("  {line}");
    }
    assert!(added.len() < 20, "{} lines added", added.len());
    assert_eq!(upstream, FLOOD as u64 + 1, "each request counted once");
    assert!(
        sni >= FLOOD as u64,
        "each handshake counted at least once: {sni}"
    );
    let (upstream_lines, _) = accounted(added, "cannot connect to upstream");
    for line in &upstream_lines {
        assert_eq!(line["site"], "dead.test", "{line}");
        assert!(line["other_sites"] != true, "{line}");
    }
    assert!(
        upstream_lines
            .iter()
            .any(|l| l["suppressed"].as_u64().unwrap() > 1000),
        "a line carries the count of those left out"
    );

    let metrics = format!("http://{}/metrics", porter.metrics.unwrap());
    let (ok, text) = curl(&[&metrics]);
    assert!(ok);
    let counted: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("porter_tls_client_errors_total{reason=\"illegal_sni\"} "))
        .unwrap_or_else(|| panic!("no illegal_sni count: {text}"))
        .parse()
        .unwrap();
    assert!(counted >= FLOOD as f64, "{counted}");
    assert!(porter.stop().success());
}
