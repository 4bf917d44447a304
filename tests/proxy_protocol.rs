//! The PROXY protocol behind a load balancer: version 1 (from curl, and written by hand) and
//! version 2 (binary, IPv4 and IPv6, `LOCAL`), over plain HTTP and before a TLS handshake. The
//! address in the header is the client's for `X-Forwarded-For`, `X-Real-IP` and deny lists;
//! a source not trusted, a missing, malformed or unfinished header close the connection; many
//! balancer connections at once each keep their own client.

mod common;

use common::*;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A version 2 header naming `client` (to `server`); `LOCAL` when `client` is `None`.
fn v2(client: Option<SocketAddr>, server: SocketAddr) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    let Some(client) = client else {
        header.extend([0x20, 0x00, 0, 0]);
        return header;
    };
    let mut addresses = Vec::new();
    let family = match (client.ip(), server.ip()) {
        (IpAddr::V4(c), IpAddr::V4(s)) => {
            addresses.extend(c.octets());
            addresses.extend(s.octets());
            0x11
        }
        (IpAddr::V6(c), server) => {
            let s = match server {
                IpAddr::V6(s) => s,
                IpAddr::V4(s) => s.to_ipv6_mapped(),
            };
            addresses.extend(c.octets());
            addresses.extend(s.octets());
            0x21
        }
        _ => unreachable!("v4 client to a v4 server in these tests"),
    };
    addresses.extend(client.port().to_be_bytes());
    addresses.extend(server.port().to_be_bytes());
    // A TLV, as balancers add (PP2_TYPE_AUTHORITY): skipped.
    addresses.extend([0x02, 0x00, 0x05]);
    addresses.extend(b"x.com");
    header.extend([0x21, family]);
    header.extend((addresses.len() as u16).to_be_bytes());
    header.extend(addresses);
    header
}

fn v1(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    // Both addresses in the client's family (a v4 server as seen on a v6 socket).
    let (family, server_ip) = match (client.ip(), server.ip()) {
        (IpAddr::V6(_), IpAddr::V4(s)) => ("TCP6", IpAddr::V6(s.to_ipv6_mapped())),
        (IpAddr::V6(_), s) => ("TCP6", s),
        (_, s) => ("TCP4", s),
    };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        client.ip(),
        server_ip,
        client.port(),
        server.port()
    )
    .into_bytes()
}

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends `preamble` then `GET /headers` for `host` in clear; the backend's view of the request
/// headers, or `None` when the connection was closed without an answer.
async fn headers_seen(
    source: &str,
    to: SocketAddr,
    preamble: &[u8],
    host: &str,
) -> Option<(u16, serde_json::Value)> {
    let mut stream = connect_from(source, to).await;
    let request = format!("GET /headers HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let mut all = preamble.to_vec();
    all.extend(request.as_bytes());
    // The server may close before reading it all (an untrusted source): that is the answer.
    let _ = stream.write_all(&all).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    if answer.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    Some((
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    ))
}

struct Setup {
    _dir: tempfile::TempDir,
    _backend: Backend,
    porter: Porter,
    ca: TestCa,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start();
    let ca = TestCa::new(dir.path());
    let data = dir.path().join("data");
    let porter = Porter::start(
        &data,
        &[
            "--proxy-protocol",
            "127.0.0.1,10.0.0.0/8",
            "--handshake-timeout",
            "2s",
        ],
    );
    porter.ok(&["site", "add", "plain.test", "--upstream", &backend.addr]);
    porter.ok(&["site", "add", "guarded.test", "--upstream", &backend.addr]);
    porter.ok(&["site", "update", "guarded.test", "--deny", "203.0.113.0/24"]);
    ca.serve(&data, "tls.test", &backend.addr);
    Setup {
        _dir: dir,
        _backend: backend,
        porter,
        ca,
    }
}

#[tokio::test]
async fn the_header_names_the_client_for_every_version_and_family() {
    let s = setup();
    let http = s.porter.http;
    let client4: SocketAddr = "203.0.113.7:40001".parse().unwrap();
    let client6: SocketAddr = "[2001:db8::7]:40002".parse().unwrap();
    for (preamble, expected) in [
        (v1(client4, http), "203.0.113.7"),
        (v1(client6, http), "2001:db8::7"),
        (v2(Some(client4), http), "203.0.113.7"),
        (v2(Some(client6), http), "2001:db8::7"),
        (v2(None, http), "127.0.0.1"),
        (b"PROXY UNKNOWN\r\n".to_vec(), "127.0.0.1"),
    ] {
        let (status, seen) = headers_seen("127.0.0.1", http, &preamble, "plain.test")
            .await
            .unwrap_or_else(|| panic!("an answer for {expected}"));
        assert_eq!(status, 200);
        assert_eq!(seen["headers"]["x-forwarded-for"], expected, "{seen}");
        assert_eq!(seen["headers"]["x-real-ip"], expected, "{seen}");
    }
    // The real client is the one deny lists see.
    let denied = headers_seen("127.0.0.1", http, &v1(client4, http), "guarded.test").await;
    assert_eq!(denied.map(|(status, _)| status), Some(403));
    let other: SocketAddr = "198.51.100.1:1".parse().unwrap();
    let allowed = headers_seen("127.0.0.1", http, &v2(Some(other), http), "guarded.test").await;
    assert_eq!(allowed.map(|(status, _)| status), Some(200));

    // curl's own version 1 header (its real address).
    let (_, out) = curl(&[
        "--haproxy-protocol",
        "-H",
        "Host: plain.test",
        &format!("http://{http}/headers"),
    ]);
    let seen: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1", "{seen}");

    // Before a TLS handshake.
    let https = s.porter.https;
    let mut tcp = TcpStream::connect(https).await.unwrap();
    tcp.write_all(&v2(Some(client6), https)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("tls.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(s.ca.client(&[b"http/1.1"]))
        .connect(name, tcp)
        .await
        .unwrap();
    let req = http::Request::get("/headers")
        .header("host", "tls.test")
        .body(Default::default())
        .unwrap();
    let (status, _, body) = request(tls, req).await;
    assert_eq!(status, 200);
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["headers"]["x-forwarded-for"], "2001:db8::7", "{seen}");
}

#[tokio::test]
async fn untrusted_missing_and_malformed_headers_are_closed() {
    let s = setup();
    let http = s.porter.http;
    let client: SocketAddr = "203.0.113.7:40001".parse().unwrap();
    // A valid header from a source not trusted (127.0.0.2): a client claiming an address.
    assert!(
        headers_seen("127.0.0.2", http, &v1(client, http), "plain.test")
            .await
            .is_none()
    );
    // A trusted source without a header.
    assert!(headers_seen("127.0.0.1", http, b"", "plain.test")
        .await
        .is_none());
    // Malformed headers.
    for bad in [
        &b"PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n"[..],
        b"PROXY TCP9 1.2.3.4 5.6.7.8 1 2\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x99\x11\x00\x0c",
        &[b'A'; 5000],
    ] {
        assert!(
            headers_seen("127.0.0.1", http, bad, "plain.test")
                .await
                .is_none(),
            "{:?}",
            String::from_utf8_lossy(&bad[..bad.len().min(40)])
        );
    }
    // A header that never ends is closed at the handshake timeout (2 s here).
    let mut stuck = TcpStream::connect(http).await.unwrap();
    stuck.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), stuck.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "closed: {closed:?}"
    );
    // Over TLS too: no header, no handshake.
    let tcp = TcpStream::connect(s.porter.https).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("tls.test").unwrap();
    let refused = tokio_rustls::TlsConnector::from(s.ca.client(&[b"http/1.1"]))
        .connect(name, tcp)
        .await;
    assert!(refused.is_err());
    // The server still serves balancers, and counts what it closed.
    let ok = headers_seen("127.0.0.1", http, &v1(client, http), "plain.test").await;
    assert_eq!(ok.map(|(status, _)| status), Some(200));
    let (_, metrics) = s.porter.api("GET", "/metrics", None);
    let closed: u64 = metrics
        .lines()
        .find(|l| l.starts_with("porter_limit_rejections_total{limit=\"proxy_protocol\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(closed >= 8, "{closed} counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_balancer_connections_at_once_each_keep_their_client() {
    let s = setup();
    let http = s.porter.http;
    let tasks: Vec<_> = (0..64u16)
        .map(|i| {
            tokio::spawn(async move {
                let client: SocketAddr = format!("198.51.100.{}:{}", i + 1, 20000 + i)
                    .parse()
                    .unwrap();
                let preamble = if i % 2 == 0 {
                    v1(client, http)
                } else {
                    v2(Some(client), http)
                };
                let (status, seen) = headers_seen("127.0.0.1", http, &preamble, "plain.test")
                    .await
                    .expect("an answer");
                assert_eq!(status, 200);
                assert_eq!(seen["headers"]["x-forwarded-for"], client.ip().to_string());
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}
