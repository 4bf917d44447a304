//! Strict HTTP at the edge, with raw requests a lenient proxy would pass on: the routed
//! authority wins over `Host`, a second `Host` and doubtful transfer codings are refused, a
//! malformed chunked body is the client's fault (400, no upstream blamed) and so is a chunk
//! size over i64::MAX (plain HTTP and TLS, while valid chunked bodies pass whole), the client's
//! own forwarding claims are replaced, `h2c` is not tunnelled, and an HTTP/1.0 upstream's
//! answer reaches an HTTP/1.1 client as HTTP/1.1 with keep-alive.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Porter with `plain.test` (no certificate, so plain HTTP is served) in front of a backend.
struct Setup {
    _dir: tempfile::TempDir,
    _backend: Backend,
    porter: Porter,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start();
    let porter = Porter::start(&dir.path().join("data"), &[]);
    porter.ok(&["site", "add", "plain.test", "--upstream", &backend.addr]);
    wait_until(Duration::from_secs(5), "plain.test is served", || {
        plain_status(porter.http, "plain.test", "/") == "200"
    });
    Setup {
        _dir: dir,
        _backend: backend,
        porter,
    }
}

/// Sends `request` as it is and reads the answer until the connection closes (at most 10 s).
fn raw(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

/// The JSON the backend's `/headers` put in `answer`.
fn echoed(answer: &str) -> serde_json::Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

#[test]
fn the_routed_authority_wins_over_a_host_that_says_otherwise() {
    let s = setup();
    let answer = raw(
        s.porter.http,
        "GET http://plain.test/headers HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    );
    assert!(status_line(&answer).contains("200"), "{answer}");
    let headers = &echoed(&answer)["headers"];
    assert_eq!(headers["host"], "plain.test", "{headers}");
    assert_eq!(headers["x-forwarded-host"], "plain.test", "{headers}");
}

#[test]
fn a_second_host_header_is_refused() {
    let s = setup();
    for second in ["plain.test", "other.example"] {
        let answer = raw(
            s.porter.http,
            &format!("GET /headers HTTP/1.1\r\nHost: plain.test\r\nHost: {second}\r\nConnection: close\r\n\r\n"),
        );
        assert!(status_line(&answer).contains("400"), "{second}: {answer}");
    }
}

#[test]
fn transfer_codings_other_than_one_chunked_are_refused() {
    let s = setup();
    for (coding, status) in [
        ("identity, chunked", "501"),
        ("gzip, chunked", "501"),
        ("chunked, chunked", "400"),
    ] {
        let answer = raw(
            s.porter.http,
            &format!(
                "POST /count HTTP/1.1\r\nHost: plain.test\r\nTransfer-Encoding: {coding}\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            ),
        );
        assert!(status_line(&answer).contains(status), "{coding}: {answer}");
    }
    // One chunked is fine.
    let answer = raw(
        s.porter.http,
        "POST /count HTTP/1.1\r\nHost: plain.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert!(status_line(&answer).contains("200"), "{answer}");
    assert!(answer.ends_with('3'), "{answer}");
}

#[test]
fn a_malformed_chunked_body_is_the_clients_fault() {
    let s = setup();
    for body in [
        "zz\r\nabc\r\n0\r\n\r\n",                     // not a size
        "ffffffffffffffffffffff\r\nabc\r\n0\r\n\r\n", // overflows
        "3\r\nabcdef\r\n0\r\n\r\n",                   // more data than the size
    ] {
        let answer = raw(
            s.porter.http,
            &format!("POST /count HTTP/1.1\r\nHost: plain.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}"),
        );
        assert!(status_line(&answer).contains("400"), "{body:?}: {answer}");
        assert!(
            !answer.contains("upstream"),
            "no upstream is blamed: {answer}"
        );
    }
}

#[test]
fn the_clients_own_forwarding_claims_are_replaced() {
    let s = setup();
    let answer = raw(
        s.porter.http,
        "GET /headers HTTP/1.1\r\nHost: plain.test\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Ssl: on\r\nX-Forwarded-Port: 443\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    );
    let headers = &echoed(&answer)["headers"];
    assert_eq!(headers["x-real-ip"], "127.0.0.1", "{headers}");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{headers}");
    assert!(headers.get("forwarded").is_none(), "{headers}");
    assert_eq!(headers["x-forwarded-proto"], "http", "{headers}");
    for spoofed in ["x-forwarded-ssl", "x-forwarded-port"] {
        assert!(headers.get(spoofed).is_none(), "{spoofed}: {headers}");
    }
}

#[test]
fn an_h2c_upgrade_is_not_passed_on() {
    let s = setup();
    let answer = raw(
        s.porter.http,
        "GET /headers HTTP/1.1\r\nHost: plain.test\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
    );
    assert!(status_line(&answer).contains("200"), "{answer}");
    let headers = &echoed(&answer)["headers"];
    assert!(headers.get("upgrade").is_none(), "{headers}");
    assert!(headers.get("http2-settings").is_none(), "{headers}");
}

/// Python's `http.server`: an HTTP/1.0 daemon, serving `dir`.
struct OldServer {
    _process: Running,
    port: u16,
}

impl OldServer {
    fn start(dir: &std::path::Path) -> OldServer {
        require("python3", "python3");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until(Duration::from_secs(10), "http.server listens", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        OldServer {
            _process: Running::new(child),
            port,
        }
    }
}

#[test]
fn an_http10_upstreams_answer_reaches_an_http11_client_as_http11_with_keep_alive() {
    let s = setup();
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("index.txt"), "old\n").unwrap();
    let old = OldServer::start(files.path());
    s.porter.ok(&[
        "site",
        "add",
        "old.test",
        "--upstream",
        &format!("127.0.0.1:{}", old.port),
    ]);
    let url = format!("http://{}/index.txt", s.porter.http);
    wait_until(Duration::from_secs(5), "old.test is served", || {
        plain_status(s.porter.http, "old.test", "/index.txt") == "200"
    });
    // Two requests, one connection: curl reuses it only when the answer keeps it alive.
    let (ok, out) = curl(&[
        "--http1.1",
        "-sS",
        "-H",
        "Host: old.test",
        "-w",
        "%{http_version} %{num_connects}\n",
        &url,
        "-H",
        "Host: old.test",
        &url,
    ]);
    assert!(ok, "{out}");
    assert_eq!(
        out, "old\n1.1 1\nold\n1.1 0\n",
        "HTTP/1.1, and the connection reused"
    );
}

/// How long until the server closes `stream` while the client sends nothing (at most 15 s).
fn closed_after(mut stream: impl Read) -> Duration {
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) if started.elapsed() > Duration::from_secs(15) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

#[test]
fn clients_that_send_nothing_are_closed_at_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let porter = Porter::start(&dir.path().join("data"), &["--header-timeout", "2s"]);
    ca.serve(&porter.data_dir, "a.test", &backend.addr);

    // Plain HTTP: connected, not a byte sent.
    let silent = TcpStream::connect(porter.http).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let waited = closed_after(silent);
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(6),
        "{waited:?}"
    );

    // TLS: the handshake done, then nothing.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let connect = || {
        runtime.block_on(tls_connect(
            ca.client(&[b"http/1.1"]),
            porter.https,
            "a.test",
        ))
    };
    wait_until(Duration::from_secs(5), "a.test is served", || {
        connect().is_ok()
    });
    let waited = runtime.block_on(async {
        use tokio::io::AsyncReadExt;
        let mut tls = tls_connect(ca.client(&[b"h2"]), porter.https, "a.test")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 1024];
        while tokio::time::timeout(Duration::from_secs(15), tls.read(&mut buf))
            .await
            .is_ok_and(|read| read.is_ok_and(|n| n > 0))
        {}
        started.elapsed()
    });
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(6),
        "{waited:?}"
    );

    // HTTP/2: the preface and SETTINGS, then no request (the server's pings are answered by
    // any HTTP/2 client, so only a deadline closes it).
    let waited = runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = tls_connect(ca.client(&[b"h2"]), porter.https, "a.test")
            .await
            .unwrap();
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 1024];
        while tokio::time::timeout(Duration::from_secs(15), tls.read(&mut buf))
            .await
            .is_ok_and(|read| read.is_ok_and(|n| n > 0))
        {}
        started.elapsed()
    });
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(6),
        "{waited:?}"
    );

    // A client that speaks is served as before.
    assert_eq!(plain_status(porter.http, "a.test", "/"), "308");
}

/// Whether the server closes a new connection at once (within 2 s), rather than waiting for
/// a request.
fn refused_at_once(addr: SocketAddr) -> (bool, TcpStream) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 16];
    let closed = matches!(stream.read(&mut buf), Ok(0))
        || matches!(stream.read(&mut buf), Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset);
    (closed, stream)
}

#[test]
fn one_address_holds_at_most_its_connection_limit() {
    let dir = tempfile::tempdir().unwrap();
    let porter = Porter::start(&dir.path().join("data"), &["--max-connections-per-ip", "3"]);
    // Three kept-alive connections, each known to be accepted: it has had an answer.
    let held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = TcpStream::connect(porter.http).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: nobody.test\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 512];
            assert!(stream.read(&mut buf).unwrap() > 0, "an answer");
            stream
        })
        .collect();
    // Both listeners count together.
    let (closed, _) = refused_at_once(porter.https);
    assert!(
        closed,
        "a fourth connection from the same address is closed at once"
    );
    drop(held);
    // Porter learns of the closes as it reads them: wait for it.
    let mut kept = Vec::new();
    wait_until(
        Duration::from_secs(10),
        "the address has room again once its connections are gone",
        || {
            let (closed, stream) = refused_at_once(porter.http);
            kept.push(stream);
            !closed
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_protocol_alpn_agreed_is_the_one_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let porter = Porter::start(&dir.path().join("data"), &[]);
    ca.serve(&porter.data_dir, "a.test", &backend.addr);
    eventually(Duration::from_secs(5), "a.test is served", || async {
        tls_connect(ca.client(&[b"h2"]), porter.https, "a.test")
            .await
            .is_ok()
    })
    .await;
    /// What the server answers to `opening` on a connection whose ALPN is `alpn`, read until
    /// it closes (at most 10 s).
    async fn answer(ca: &TestCa, addr: SocketAddr, alpn: &[u8], opening: &[u8]) -> Vec<u8> {
        let mut tls = tls_connect(ca.client(&[alpn]), addr, "a.test")
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        tls.write_all(opening).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got)).await;
        got
    }
    let h1 = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

    // HTTP/1.1 on a connection that agreed on h2: closed, not served (no HTTP/1 answer, not
    // even a 400 in plain text).
    let got = answer(&ca, porter.https, b"h2", h1).await;
    assert!(
        !got.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // The HTTP/2 preface on a connection that agreed on HTTP/1.1: closed without an HTTP/2
    // SETTINGS frame (type 4 at byte 3).
    let got = answer(&ca, porter.https, b"http/1.1", preface).await;
    assert!(got.len() < 9 || got[3] != 4, "HTTP/2 was served: {got:?}");
    // Each as agreed is served.
    let got = answer(&ca, porter.https, b"http/1.1", h1).await;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let mut tls = tls_connect(ca.client(&[b"h2"]), porter.https, "a.test")
        .await
        .unwrap();
    tls.write_all(preface).await.unwrap();
    let mut frame = [0u8; 9];
    tls.read_exact(&mut frame).await.unwrap();
    assert_eq!(frame[3], 4, "SETTINGS first: {frame:?}");
}

#[test]
fn an_http10_client_is_answered_with_http11_and_http10_rules() {
    let s = setup();
    for (request, status) in [
        // Proxied, of unknown length (the upstream chunks it).
        ("GET /drip/2 HTTP/1.0\r\nHost: plain.test\r\n\r\n", "200"),
        // Porter's own answer.
        ("GET / HTTP/1.0\r\nHost: nowhere.test\r\n\r\n", "404"),
    ] {
        let started = std::time::Instant::now();
        let answer = raw(s.porter.http, request);
        // RFC 9110 section 2.5: the highest version Porter speaks...
        assert!(
            status_line(&answer).starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        // ...with HTTP/1.0's rules: no chunked coding, the end told by the close, which comes
        // at once (not at the keep-alive timeout).
        assert!(
            !answer.to_ascii_lowercase().contains("transfer-encoding"),
            "{answer}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{answer}");
    }
    let answer = raw(
        s.porter.http,
        "GET /drip/2 HTTP/1.0\r\nHost: plain.test\r\n\r\n",
    );
    assert!(answer.ends_with("drip 2\n"), "{answer}");
}

/// Porter serving `plain.test` over plain HTTP and `a.test` over HTTPS, both in front of one
/// backend.
struct Both {
    _dir: tempfile::TempDir,
    _backend: Backend,
    ca: TestCa,
    porter: Porter,
    runtime: tokio::runtime::Runtime,
}

impl Both {
    fn start() -> Both {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path());
        let backend = Backend::start();
        let porter = Porter::start(&dir.path().join("data"), &[]);
        porter.ok(&["site", "add", "plain.test", "--upstream", &backend.addr]);
        ca.serve(&porter.data_dir, "a.test", &backend.addr);
        let both = Both {
            _dir: dir,
            _backend: backend,
            ca,
            porter,
            runtime: tokio::runtime::Runtime::new().unwrap(),
        };
        wait_until(Duration::from_secs(5), "both sites are served", || {
            ["plain", "tls"].iter().all(|over| {
                let request = "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n";
                status_line(&both.answer(over, request, 0)).contains("200")
            })
        });
        both
    }

    /// What Porter answers to `request` (`{host}` standing for the site's name) sent `over`
    /// plain HTTP or TLS (ALPN http/1.1), its first `bytewise` bytes one write each, then the
    /// rest in one; read until Porter closes (at most 10 s).
    fn answer(&self, over: &str, request: &str, bytewise: usize) -> String {
        self.runtime.block_on(async {
            if over == "tls" {
                let client = self.ca.client(&[b"http/1.1"]);
                let stream = tls_connect(client, self.porter.https, "a.test")
                    .await
                    .unwrap();
                exchange(stream, &request.replace("{host}", "a.test"), bytewise).await
            } else {
                let stream = tokio::net::TcpStream::connect(self.porter.http)
                    .await
                    .unwrap();
                stream.set_nodelay(true).unwrap();
                exchange(stream, &request.replace("{host}", "plain.test"), bytewise).await
            }
        })
    }
}

async fn exchange(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    request: &str,
    bytewise: usize,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (each, rest) = request.as_bytes().split_at(bytewise.min(request.len()));
    for piece in each.chunks(1).chain([rest]) {
        stream.write_all(piece).await.unwrap();
        stream.flush().await.unwrap();
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status and body of each response in `answer`, in order.
fn responses(answer: &str) -> Vec<(&str, &str)> {
    answer
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|response| {
            let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
            (&head[..3.min(head.len())], body)
        })
        .collect()
}

#[test]
fn a_chunk_size_over_i64_max_is_refused_over_plain_http_and_tls() {
    let both = Both::start();
    let good = "POST /count HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    for over in ["plain", "tls"] {
        for size in ["ffffffffffffffff", "8000000000000000"] {
            // After a request that is answered: the framing is followed from one to the next.
            let bad = format!(
                "POST /count HTTP/1.1\r\nHost: {{host}}\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nabc\r\n0\r\n\r\n"
            );
            let answer = both.answer(over, &format!("{good}{bad}"), 0);
            let got = responses(&answer);
            assert_eq!(got.len(), 2, "{over} {size}: {answer}");
            assert_eq!(got[0], ("200", "3"), "{over} {size}: {answer}");
            assert_eq!(got[1].0, "400", "{over} {size}: {answer}");
            assert!(
                !answer.contains("upstream"),
                "no upstream is blamed: {answer}"
            );
            // The size's digits one a write, up to the one that takes it over the bound.
            let head = bad.split("\r\n\r\n").next().unwrap().to_owned() + "\r\n\r\n";
            let sent = head.clone() + size;
            let answer = both.answer(over, &sent, head.len());
            assert!(
                status_line(&answer).contains("400"),
                "{over} {size}: {answer}"
            );
        }
        // i64::MAX itself is a size: the request goes to the upstream, which answers before
        // reading the body.
        let answer = both.answer(
            over,
            "GET /headers HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n7fffffffffffffff\r\nabc",
            0,
        );
        assert!(status_line(&answer).contains("200"), "{over}: {answer}");
        assert_eq!(echoed(&answer)["method"], "GET", "{answer}");
    }
}

#[test]
fn chunked_bodies_with_extensions_and_trailers_still_reach_the_upstream_whole() {
    let both = Both::start();
    let pipelined = [
        // Extensions, white space, upper-case digits and trailers.
        "POST /count HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3;name=value\r\nabc\r\nA \r\n0123456789\r\n0;last\r\nX-Sum: 13\r\n\r\n",
        // A body of known length that looks like an absurd chunk size.
        "PUT /count HTTP/1.1\r\nHost: {host}\r\nContent-Length: 18\r\n\r\nffffffffffffffff\r\n",
        // Leading zeros make no size absurd.
        "POST /count HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n000000000000000000005\r\nhello\r\n0\r\n\r\n",
        "POST /count HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    ]
    .concat();
    for over in ["plain", "tls"] {
        // In one write, and one byte a write (reads that end anywhere in a size line).
        for bytewise in [0, pipelined.len()] {
            let answer = both.answer(over, &pipelined, bytewise);
            assert_eq!(
                responses(&answer),
                [("200", "13"), ("200", "18"), ("200", "5"), ("200", "1")],
                "{over}, {bytewise} bytes one a write: {answer}"
            );
        }
    }
}
