//! The HTTP cache through the real binary, with real clients and a real upstream that counts
//! what reaches it (a hyper server on a runtime of its own, stopped like a killed daemon):
//! coalescing of 1,000 concurrent cold requests (HTTP/1.1 and HTTP/2 over TLS), stale-if-error
//! with the upstream gone (from the response, from the site's default, never past
//! `must-revalidate`), a cached hit that does not wake an app stopped when idle, a 1 GiB
//! response streamed in bounded memory and not kept, disk entries found again after a restart
//! and a corrupted one dropped, poisoning attempts that change nothing stored, purges by URL,
//! prefix and tag (and by tag across a three-node fleet on etcd), Vary, HEAD and ranges from a
//! stored GET, and the counters of `cache stats` and the metrics.

mod common;
#[path = "../store/tests/support/etcd.rs"]
mod etcd;

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

// ---------------------------------------------------------------------------------------------
// The upstream: a real HTTP/1.1 server that counts every request it gets, per path.

/// What the upstream saw.
#[derive(Default)]
struct Seen {
    per_path: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
}

impl Seen {
    fn count(&self, path: &str) -> u64 {
        *self.per_path.lock().unwrap().get(path).unwrap_or(&0)
    }
}

/// A counting upstream on 127.0.0.1, on a runtime (and thread) of its own: [`Upstream::kill`]
/// drops the runtime, which closes the listener and every connection at once, as a killed
/// daemon's would be.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Seen>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Reply = Response<BoxBody<Bytes, Infallible>>;

impl Upstream {
    fn start() -> Upstream {
        let seen = Arc::new(Seen::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let accept = async {
                        loop {
                            let Ok((tcp, _)) = listener.accept().await else {
                                continue;
                            };
                            let seen = Arc::clone(&seen);
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |req| {
                                    let seen = Arc::clone(&seen);
                                    async move { Ok::<_, Infallible>(answer(req, &seen).await) }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(tcp), service)
                                    .await;
                            });
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = stopped => {}
                    }
                });
                // Every connection task is dropped with the runtime: their sockets close.
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
        };
        Upstream {
            addr,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Requests for `path` (with its query) so far.
    fn count(&self, path: &str) -> u64 {
        self.seen.count(path)
    }

    /// Stops serving at once: the listener and every open connection close.
    fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        // Nothing listens there any more.
        assert!(
            std::net::TcpStream::connect(self.addr).is_err(),
            "the killed upstream still accepts"
        );
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn full_body(body: impl Into<Bytes>) -> BoxBody<Bytes, Infallible> {
    Full::new(body.into()).boxed()
}

/// `n` bytes of a pattern no two nearby offsets share.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
}

fn one(req: &Request<Incoming>, name: &str) -> String {
    req.headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_else(|| "-".into())
}

/// The upstream's answers, by path:
/// - `/slow/*`: after 300 ms, `max-age=60`
/// - `/sie/*`: `max-age=1, stale-if-error=60`; `/short/*`: `max-age=1`;
///   `/mr/*`: `max-age=1, must-revalidate`; `/nocache/*`: `max-age=60, no-cache`
/// - `/fail-sie/*` and `/fail/*`: the first answer as `/sie/*` and `/short/*`, then `500`
/// - `/reflect/*`: `max-age=60`, the body names the request's `X-Forwarded-Host`,
///   `X-Original-URL`, every `Host` and its body (not the path)
/// - `/tag/*`: `max-age=60` and `Surrogate-Key: t1 t2`; `/tag3/*`: `Surrogate-Key: t3`
/// - `/vary`: `Vary: Accept-Encoding`, the body names the request's `Accept-Encoding`
/// - `/big` (no length) and `/big-length` (with one): 1 GiB, `max-age=60`
/// - `/pattern/N`: N bytes of [`pattern`], `max-age=3600`
/// - anything else: `max-age=60`, "HOST PATH #N" (N: the path's count)
async fn answer(req: Request<Incoming>, seen: &Seen) -> Reply {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let n = {
        let mut counts = seen.per_path.lock().unwrap();
        let n = counts.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    seen.total.fetch_add(1, Ordering::SeqCst);
    let reply = |control: &str, body: BoxBody<Bytes, Infallible>| {
        Response::builder()
            .header("cache-control", control)
            .header("content-type", "text/plain")
            .body(body)
            .unwrap()
    };
    let p = req.uri().path().to_owned();
    if p.starts_with("/slow/") {
        tokio::time::sleep(Duration::from_millis(300)).await;
        return reply("max-age=60", full_body(format!("slow {path}")));
    }
    if p.starts_with("/sie/") {
        return reply(
            "max-age=1, stale-if-error=60",
            full_body(format!("sie {path}")),
        );
    }
    if p.starts_with("/short/") {
        return reply("max-age=1", full_body(format!("short {path}")));
    }
    if p.starts_with("/fail-sie/") || p.starts_with("/fail/") {
        if n > 1 {
            let mut failed = reply("no-store", full_body("down".to_owned()));
            *failed.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return failed;
        }
        let control = if p.starts_with("/fail-sie/") {
            "max-age=1, stale-if-error=60"
        } else {
            "max-age=1"
        };
        return reply(control, full_body(format!("fail {path}")));
    }
    if p.starts_with("/nocache/") {
        return reply("max-age=60, no-cache", full_body(format!("nocache {path}")));
    }
    if p.starts_with("/mr/") {
        return reply(
            "max-age=1, must-revalidate",
            full_body(format!("mr {path}")),
        );
    }
    if p.starts_with("/reflect/") {
        let hosts: Vec<String> = req
            .headers()
            .get_all("host")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let text = format!(
            "xfh={} xou={} hosts={hosts:?}",
            one(&req, "x-forwarded-host"),
            one(&req, "x-original-url"),
        );
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        let body = body.map(|b| String::from_utf8_lossy(&b).into_owned());
        return reply(
            "max-age=60",
            full_body(format!("{text} body={:?}", body.unwrap_or_default())),
        );
    }
    if p.starts_with("/tag/") || p.starts_with("/tag3/") {
        let tags = if p.starts_with("/tag/") {
            "t1 t2"
        } else {
            "t3"
        };
        let mut r = reply("max-age=60", full_body(format!("tagged {path} #{n}")));
        r.headers_mut()
            .insert("surrogate-key", tags.parse().unwrap());
        return r;
    }
    if p == "/vary" {
        let mut r = reply(
            "max-age=60",
            full_body(format!("enc={}", one(&req, "accept-encoding"))),
        );
        r.headers_mut()
            .insert("vary", "Accept-Encoding".parse().unwrap());
        return r;
    }
    if p == "/big" || p == "/big-length" {
        const CHUNK: usize = 256 * 1024;
        let chunk = Bytes::from(vec![b'x'; CHUNK]);
        let chunks = (GIB as usize) / CHUNK;
        let stream = futures_util::stream::iter(
            std::iter::repeat_n(chunk, chunks).map(|c| Ok::<_, Infallible>(Frame::data(c))),
        );
        let mut r = reply("max-age=60", StreamBody::new(stream).boxed());
        if p == "/big-length" {
            r.headers_mut()
                .insert("content-length", GIB.to_string().parse().unwrap());
        }
        return r;
    }
    if let Some(size) = p.strip_prefix("/pattern/") {
        let size: usize = size.parse().unwrap();
        return reply("max-age=3600", full_body(pattern(size)));
    }
    let host = one(&req, "host");
    reply("max-age=60", full_body(format!("{host} {path} #{n}")))
}

// ---------------------------------------------------------------------------------------------
// Clients.

/// A response as the client saw it.
#[derive(Debug)]
struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Got {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn cache_status(&self) -> String {
        self.headers
            .get_all("cache-status")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn hit(&self) -> bool {
        let status = self.cache_status();
        status.starts_with("Porter; hit") && !status.contains("detail=")
    }

    fn forwarded(&self) -> bool {
        self.cache_status().contains("fwd=")
    }
}

/// Sends `req` on a new plain HTTP/1.1 connection to `addr`; the whole response, within 20 s.
async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Got {
    tokio::time::timeout(Duration::from_secs(20), async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let response = sender.send_request(req).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Got {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
    .await
    .expect("a response within 20 s")
}

/// `METHOD http://host/path` through Porter's plain HTTP port with `headers`.
async fn request(
    porter: &Porter,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Got {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    send(porter.http, builder.body(Full::default()).unwrap()).await
}

async fn get(porter: &Porter, host: &str, path: &str) -> Got {
    request(porter, "GET", host, path, &[]).await
}

/// Polls GET `path` on `host` until `done` holds for the response; the response.
async fn get_until(
    porter: &Porter,
    host: &str,
    path: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&Got) -> bool,
) -> Got {
    let deadline = Instant::now() + within;
    loop {
        let got = get(porter, host, path).await;
        if done(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}; last: {} {:?} {}",
            got.status,
            got.cache_status(),
            got.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Raw bytes to Porter's plain HTTP port; what came back before the connection closed or
/// went quiet for a second.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Porter.

struct Setup {
    dir: tempfile::TempDir,
    upstream: Upstream,
    porter: Porter,
}

fn setup(serve: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let porter = Porter::start(&dir.path().join("data"), serve);
    Setup {
        dir,
        upstream,
        porter,
    }
}

/// `site add DOMAIN --upstream UPSTREAM --no-acme --cache on` with `extra` flags, then waits
/// until the site is served.
async fn cached_site(porter: &Porter, upstream: &str, domain: &str, extra: &[&str]) {
    let mut args = vec![
        "site",
        "add",
        domain,
        "--upstream",
        upstream,
        "--no-acme",
        "--cache",
        "on",
    ];
    args.extend(extra);
    porter.ok(&args);
    served(porter, domain).await;
}

/// Waits until `domain` is routed (a path nothing else uses, so no test URL is warmed).
async fn served(porter: &Porter, domain: &str) {
    get_until(
        porter,
        domain,
        "/ready-probe",
        Duration::from_secs(5),
        &format!("{domain} is served"),
        |got| got.status == StatusCode::OK,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 1. Coalescing.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_cold_requests_send_one_upstream() {
    const H1: usize = 800;
    const H2_CONNS: usize = 4;
    const H2_STREAMS: usize = 50;
    let s = setup(&[
        "--max-connections-per-ip",
        "4000",
        "--max-handshakes-per-ip",
        "4000",
        "--handshake-rate-per-ip",
        "100000",
    ]);
    let ca = TestCa::new(s.dir.path());
    ca.serve(&s.porter.data_dir, "co.test", &s.upstream.addr());
    s.porter.ok(&["site", "update", "co.test", "--cache", "on"]);
    let h1 = ca.client(&[b"http/1.1"]);
    let h2 = ca.client(&[b"h2"]);
    let https = s.porter.https;
    eventually(
        Duration::from_secs(5),
        "co.test answers over HTTPS with its cache on",
        || {
            let h1 = h1.clone();
            async move {
                let Ok(tls) = tls_connect(h1, https, "co.test").await else {
                    return false;
                };
                let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                let req = Request::get("/ready-probe")
                    .header("host", "co.test")
                    .body(Full::<Bytes>::default())
                    .unwrap();
                sender.send_request(req).await.is_ok_and(|r| {
                    r.status() == StatusCode::OK && r.headers().contains_key("cache-status")
                })
            }
        },
    )
    .await;

    // Every connection made (and its TLS handshake done) before any request is sent.
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut connecting = Vec::new();
    for i in 0..H1 + H2_CONNS {
        let config = if i < H1 { h1.clone() } else { h2.clone() };
        let gate = Arc::clone(&gate);
        connecting.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            tls_connect(config, https, "co.test").await.unwrap()
        }));
    }
    let mut streams = Vec::new();
    for c in connecting {
        streams.push(c.await.unwrap());
    }
    let (go, _) = tokio::sync::broadcast::channel::<()>(1);
    let path = "/slow/cold";
    let mut answers = Vec::new();
    for stream in streams {
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        if h2 {
            let (sender, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            for _ in 0..H2_STREAMS {
                let mut sender = sender.clone();
                let mut go = go.subscribe();
                answers.push(tokio::spawn(async move {
                    let _ = go.recv().await;
                    let req = Request::get(format!("https://co.test{path}"))
                        .body(Full::<Bytes>::default())
                        .unwrap();
                    let r = sender.send_request(req).await.unwrap();
                    let (parts, body) = r.into_parts();
                    (parts, body.collect().await.unwrap().to_bytes())
                }));
            }
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            let mut go = go.subscribe();
            answers.push(tokio::spawn(async move {
                let _ = go.recv().await;
                let req = Request::get(path)
                    .header("host", "co.test")
                    .body(Full::<Bytes>::default())
                    .unwrap();
                let r = sender.send_request(req).await.unwrap();
                let (parts, body) = r.into_parts();
                (parts, body.collect().await.unwrap().to_bytes())
            }));
        }
    }
    assert_eq!(answers.len(), H1 + H2_CONNS * H2_STREAMS);
    assert_eq!(s.upstream.count(path), 0);
    let started = Instant::now();
    go.send(()).unwrap();
    let mut statuses: HashMap<String, usize> = HashMap::new();
    let (mut versions, mut bodies) = (HashMap::new(), HashMap::new());
    for answer in answers {
        let (parts, body) = tokio::time::timeout(Duration::from_secs(30), answer)
            .await
            .expect("every request answered within 30 s")
            .unwrap();
        assert_eq!(parts.status, StatusCode::OK);
        *versions.entry(format!("{:?}", parts.version)).or_insert(0) += 1;
        *bodies.entry(body).or_insert(0usize) += 1;
        let status = parts
            .headers
            .get("cache-status")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let kind = status.split("; ttl").next().unwrap().to_owned();
        *statuses.entry(kind).or_insert(0) += 1;
    }
    eprintln!(
        "1,000 requests answered in {:?}: {versions:?}, Cache-Status {statuses:?}",
        started.elapsed()
    );
    assert_eq!(versions.get("HTTP/2.0"), Some(&(H2_CONNS * H2_STREAMS)));
    assert_eq!(versions.get("HTTP/1.1"), Some(&H1));
    assert_eq!(bodies.len(), 1, "one body for all: {:?}", bodies.keys());
    assert_eq!(
        bodies.keys().next().unwrap(),
        &Bytes::from(format!("slow {path}"))
    );
    assert_eq!(
        s.upstream.count(path),
        1,
        "1,000 concurrent requests for one cold URL sent exactly one request upstream"
    );
    // They overlapped: many waited on the one fetch.
    let stats = stats_json(&s.porter);
    let site = stats["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["domain"] == "co.test")
        .unwrap_or_else(|| panic!("co.test in {stats}"))
        .clone();
    eprintln!("co.test's counts: {site}");
    assert!(site["coalesced"].as_u64().unwrap() > 0, "{site}");
}

// ---------------------------------------------------------------------------------------------
// 2. stale-if-error.

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_or_killed_upstream_gets_stale_answers_but_never_past_must_revalidate() {
    let mut s = setup(&["--upstream-timeout", "2s"]);
    let up = s.upstream.addr();
    cached_site(&s.porter, &up, "sie.test", &[]).await;
    cached_site(
        &s.porter,
        &up,
        "default.test",
        &["--cache-stale-if-error", "60s"],
    )
    .await;
    // While the upstream answers 500: (site, path, the stale answer's detail, if any).
    let failing = [
        ("sie.test", "/fail-sie/a", Some("stale-if-error")), // the response's stale-if-error=60
        ("sie.test", "/fail/a", None),                       // max-age=1, no default: the 500
        ("default.test", "/fail/b", Some("stale-if-error")), // the site's default
    ];
    // Once it is gone (refused: the cache is disconnected).
    let gone = [
        ("sie.test", "/sie/a", Some("stale-if-error")),
        ("sie.test", "/short/a", Some("upstream-unreachable")), // nothing forbids it
        ("default.test", "/short/b", Some("stale-if-error")),
        ("default.test", "/mr/b", None), // must-revalidate beats everything
        ("sie.test", "/nocache/a", None), // no-cache too
    ];
    let mut bodies = Vec::new();
    for (site, path, _) in failing.iter().chain(&gone) {
        let got = get(&s.porter, site, path).await;
        assert_eq!(got.status, StatusCode::OK, "{site}{path}: {}", got.text());
        assert!(got.forwarded(), "{site}{path}: {}", got.cache_status());
        bodies.push(got.body);
    }
    for (site, path, _) in failing.iter().chain(&gone) {
        if path.starts_with("/nocache/") {
            continue;
        }
        let got = get(&s.porter, site, path).await;
        assert!(
            got.hit(),
            "{site}{path} is stored: {:?}",
            got.cache_status()
        );
    }
    let (failing_bodies, gone_bodies) = bodies.split_at(failing.len());
    check_stale(
        &s,
        &failing,
        failing_bodies,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    s.upstream.kill();
    check_stale(&s, &gone, gone_bodies, StatusCode::BAD_GATEWAY).await;
}

/// Each of `cases` (site, path, the detail of its stale answer, if any), once no longer a fresh
/// hit: stale with its stored body, or `error` (or a 504).
async fn check_stale(
    s: &Setup,
    cases: &[(&str, &str, Option<&str>)],
    bodies: &[Bytes],
    error: StatusCode,
) {
    for ((site, path, stale), body) in cases.iter().zip(bodies) {
        // Once max-age=1 has passed, the cache must go upstream, and finds it failing.
        let got = get_until(
            &s.porter,
            site,
            path,
            Duration::from_secs(5),
            &format!("{site}{path} is no longer a fresh hit"),
            |got| !got.hit(),
        )
        .await;
        eprintln!(
            "{site}{path} with the upstream failing: {} {:?}",
            got.status,
            got.cache_status()
        );
        match stale {
            Some(detail) => {
                assert_eq!(got.status, StatusCode::OK, "{site}{path} served stale");
                assert!(
                    got.cache_status().contains(detail),
                    "{site}{path}: Cache-Status names {detail}: {:?}",
                    got.cache_status()
                );
                assert_eq!(&got.body, body, "{site}{path}: the stored body");
                let age: u64 = got.headers["age"].to_str().unwrap().parse().unwrap();
                assert!(age >= 1, "a stale response's Age is past max-age: {age}");
            }
            None => {
                assert!(
                    got.status == error || got.status == StatusCode::GATEWAY_TIMEOUT,
                    "{site}{path} must not be served stale: {} {:?} {}",
                    got.status,
                    got.cache_status(),
                    got.text()
                );
                assert!(
                    got.cache_status().starts_with("Porter; fwd="),
                    "{site}{path}: an error of a cached site says so in Cache-Status: {:?}",
                    got.cache_status()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. A cached hit does not wake an app stopped when idle.

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_hit_does_not_wake_an_app_stopped_when_idle() {
    require("python3", "python3");
    let s = setup(&[]);
    let marker = s.dir.path().join("starts");
    let app = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/app.py");
    // Each start of the daemon appends a line to the marker file first.
    let command = format!(
        "sh -c 'echo started >> {}; exec python3 {app} \"$0\"' {{port}}",
        marker.display()
    );
    s.porter.ok(&[
        "app",
        "add",
        "web",
        "--command",
        &command,
        "--allow-root",
        "--idle-timeout",
        "2s",
    ]);
    s.porter.ok(&[
        "site",
        "add",
        "web.test",
        "--app",
        "web",
        "--cache",
        "on",
        "--cache-ttl",
        "1h",
    ]);
    let starts = || {
        std::fs::read_to_string(&marker)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let state = || {
        let status: serde_json::Value =
            serde_json::from_str(&s.porter.ok(&["--json", "app", "status", "web"])).unwrap();
        status["state"].as_str().unwrap_or("").to_owned()
    };
    assert_eq!(state(), "stopped");
    let first = get_until(
        &s.porter,
        "web.test",
        "/page",
        Duration::from_secs(15),
        "web.test answers from its app",
        |got| got.status == StatusCode::OK,
    )
    .await;
    assert!(
        first.cache_status().contains("stored"),
        "the app's answer is kept (site ttl 1h): {:?}",
        first.cache_status()
    );
    assert_eq!(starts(), 1, "the app started once");
    let pid = serde_json::from_slice::<serde_json::Value>(&first.body).unwrap()["pid"].clone();

    wait_until(Duration::from_secs(15), "the idle app is stopped", || {
        state() == "stopped"
    });
    for _ in 0..3 {
        let got = get(&s.porter, "web.test", "/page").await;
        assert_eq!(got.status, StatusCode::OK);
        assert!(got.hit(), "a hit: {:?}", got.cache_status());
        assert_eq!(got.body, first.body, "the stored answer");
    }
    assert_eq!(
        state(),
        "stopped",
        "a cached hit left the idle-stopped app stopped"
    );
    assert_eq!(starts(), 1, "a cached hit did not start the app again");

    // A URL that is not stored does start it (the check above can fail).
    let got = get(&s.porter, "web.test", "/other").await;
    assert_eq!(got.status, StatusCode::OK);
    let again = serde_json::from_slice::<serde_json::Value>(&got.body).unwrap()["pid"].clone();
    assert_ne!(again, pid, "a new daemon for the miss");
    assert_eq!(starts(), 2, "the miss started the app");
}

// ---------------------------------------------------------------------------------------------
// 4. A 1 GiB response streams in bounded memory and is not kept.

/// GET `path` on `host` and reads the body, discarding it; the response head and its size.
async fn drain(addr: SocketAddr, host: &str, path: &str) -> (http::response::Parts, u64) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", host)
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let (parts, mut body) = response.into_parts();
    let mut size = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.unwrap().data_ref() {
            size += data.len() as u64;
        }
    }
    (parts, size)
}

/// The head of GET `path`, the connection dropped without reading the body.
async fn head_only(addr: SocketAddr, host: &str, path: &str) -> http::response::Parts {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", host)
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    conn.abort();
    response.into_parts().0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gibibyte_response_streams_in_bounded_memory_and_is_not_kept() {
    let s = setup(&[]);
    cached_site(&s.porter, &s.upstream.addr(), "big.test", &[]).await;
    let pid = s.porter.pid();
    let idle = s.porter.rss_kib();
    let peak = Arc::new(AtomicU64::new(idle));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (Arc::clone(&peak), Arc::clone(&sampling));
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    let (parts, size) = tokio::time::timeout(
        Duration::from_secs(60),
        drain(s.porter.http, "big.test", "/big"),
    )
    .await
    .expect("1 GiB within 60 s");
    let took = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "1 GiB through the cache in {took:?}; RSS idle {idle} KiB, peak {peak} KiB (+{} KiB); Cache-Status {:?}",
        peak - idle,
        parts.headers.get("cache-status")
    );
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(size, GIB, "the whole body");
    assert!(
        peak - idle < 62_500, // 64 MB
        "RSS grew by {} KiB (from {idle} to {peak}) while 1 GiB streamed: not less than 64 MB \
         (DEFECT: the fill holds up to the 64 MiB object limit of a body without a length in \
         memory before it gives up keeping it)",
        peak - idle
    );
    // Not kept: the next request goes upstream again (its body is not read).
    assert_eq!(s.upstream.count("/big"), 1);
    let again = head_only(s.porter.http, "big.test", "/big").await;
    let status = again.headers["cache-status"].to_str().unwrap().to_owned();
    assert!(status.contains("fwd="), "not a hit: {status}");
    eventually(
        Duration::from_secs(2),
        "the second /big reached upstream",
        || async { s.upstream.count("/big") == 2 },
    )
    .await;
    // With a length over the limit, neither.
    let first = head_only(s.porter.http, "big.test", "/big-length").await;
    assert_eq!(first.headers["content-length"], GIB.to_string().as_str());
    let second = head_only(s.porter.http, "big.test", "/big-length").await;
    let status = second.headers["cache-status"].to_str().unwrap().to_owned();
    assert!(
        status.contains("fwd=") && !status.contains("stored"),
        "{status}"
    );
    eventually(
        Duration::from_secs(2),
        "both /big-length requests reached upstream",
        || async { s.upstream.count("/big-length") == 2 },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 5. Disk entries across restarts; a corrupted one is dropped.

/// The files of the disk tier (DIR/xx/NAME).
fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for shard in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if shard.file_name() == "tmp" || !shard.path().is_dir() {
            continue;
        }
        for file in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            files.push(file.path());
        }
    }
    files
}

fn stats_json(porter: &Porter) -> serde_json::Value {
    serde_json::from_str(&porter.ok(&["--json", "cache", "stats"])).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_entries_survive_a_restart_and_a_corrupted_one_is_dropped() {
    let Setup {
        dir,
        upstream,
        porter,
    } = setup(&[]);
    let cache_dir = dir.path().join("cache");
    let data = porter.data_dir.clone();
    let serve = [
        "--cache-dir",
        cache_dir.to_str().unwrap(),
        "--cache-disk",
        "64MiB",
    ];
    porter.stop();
    let porter = Porter::start(&data, &serve);
    cached_site(&porter, &upstream.addr(), "disk.test", &[]).await;
    let path = "/pattern/200000";
    let expected = pattern(200_000);
    let got = get(&porter, "disk.test", path).await;
    assert!(
        got.cache_status().contains("stored"),
        "{:?}",
        got.cache_status()
    );
    assert_eq!(got.body, expected);
    wait_until(Duration::from_secs(5), "the entry is on disk", || {
        cache_files(&cache_dir)
            .iter()
            .any(|f| f.metadata().is_ok_and(|m| m.len() > 200_000))
    });
    assert!(get(&porter, "disk.test", path).await.hit());
    assert_eq!(upstream.count(path), 1);

    let disk_entries = |porter: &Porter| stats_json(porter)["disk"]["entries"].as_u64();
    let restart = |porter: Porter| {
        let status = porter.stop();
        assert!(status.success(), "porter stopped cleanly: {status}");
        let porter = Porter::start(&data, &serve);
        wait_until(
            Duration::from_secs(5),
            "the disk tier has found its files again",
            || disk_entries(&porter).is_some_and(|n| n >= 1),
        );
        porter
    };
    let porter = restart(porter);
    served(&porter, "disk.test").await;
    let got = get(&porter, "disk.test", path).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(
        got.hit(),
        "after a restart the disk entry answers: {:?}",
        got.cache_status()
    );
    assert_eq!(got.body, expected);
    assert_eq!(upstream.count(path), 1, "nothing went upstream");

    // A byte flipped in the middle of the entry's file (its body).
    let status = porter.stop();
    assert!(status.success());
    let files: Vec<PathBuf> = cache_files(&cache_dir)
        .into_iter()
        .filter(|f| f.metadata().is_ok_and(|m| m.len() > 200_000))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&files[0], &bytes).unwrap();
    let porter = Porter::start(&data, &serve);
    served(&porter, "disk.test").await;
    let got = get(&porter, "disk.test", path).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(
        got.body == expected,
        "the corrupted entry was served ({} bytes differ)",
        got.body
            .iter()
            .zip(&expected)
            .filter(|(a, b)| a != b)
            .count()
    );
    assert!(
        got.forwarded(),
        "the corrupted entry is not a hit: {:?}",
        got.cache_status()
    );
    assert_eq!(upstream.count(path), 2, "the request went upstream");
    // And the good copy is kept again, on disk too: written over the dropped one's name, it
    // answers after another restart.
    let got = get(&porter, "disk.test", path).await;
    assert!(
        got.hit() && got.body == expected,
        "{:?}",
        got.cache_status()
    );
    wait_until(Duration::from_secs(5), "the good copy is on disk", || {
        cache_files(&cache_dir).iter().any(|f| {
            std::fs::read(f)
                .is_ok_and(|b| b.len() > 200_000 && b[b.len() / 2] == bytes[middle] ^ 0x20)
        })
    });
    let porter = restart(porter);
    served(&porter, "disk.test").await;
    let got = get(&porter, "disk.test", path).await;
    assert!(
        got.hit() && got.body == expected,
        "the entry stored again answers after a restart: {:?}",
        got.cache_status()
    );
    assert_eq!(upstream.count(path), 2, "nothing more went upstream");
}

// ---------------------------------------------------------------------------------------------
// 6. Cache poisoning.

#[tokio::test(flavor = "multi_thread")]
async fn poisoning_attempts_change_nothing_stored() {
    let s = setup(&[]);
    let up = s.upstream.addr();
    cached_site(&s.porter, &up, "victim.test", &[]).await;
    let clean = get(&s.porter, "victim.test", "/reflect/control").await;
    assert_eq!(clean.status, StatusCode::OK);
    let clean = clean.text();
    eprintln!("a clean request's reflection: {clean}");
    assert!(!clean.contains("evil"), "{clean}");

    // Each attempt on a cold URL of its own, then a clean request for it.
    let mut poisoned = Vec::new();
    let header_attacks: [(&str, &[(&str, &str)]); 3] = [
        ("/reflect/xfh", &[("x-forwarded-host", "evil.test")]),
        ("/reflect/xou", &[("x-original-url", "/admin")]),
        (
            "/reflect/both",
            &[
                ("x-forwarded-host", "evil.test"),
                ("x-original-url", "/admin"),
            ],
        ),
    ];
    for (path, headers) in header_attacks {
        let attack = request(&s.porter, "GET", "victim.test", path, headers).await;
        eprintln!(
            "attack {path} {headers:?}: {} {:?} {}",
            attack.status,
            attack.cache_status(),
            attack.text()
        );
        let after = get(&s.porter, "victim.test", path).await;
        if after.text() != clean {
            poisoned.push(format!("{path} after {headers:?}: {}", after.text()));
        }
    }

    // A second Host header, both orders, on a raw connection.
    for (path, hosts) in [
        ("/reflect/host1", "Host: victim.test\r\nHost: evil.test\r\n"),
        ("/reflect/host2", "Host: evil.test\r\nHost: victim.test\r\n"),
    ] {
        let answer = raw(
            s.porter.http,
            format!("GET {path} HTTP/1.1\r\n{hosts}Connection: close\r\n\r\n").as_bytes(),
        )
        .await;
        eprintln!(
            "two Host fields for {path}: {}",
            answer.lines().next().unwrap_or("")
        );
        let after = get(&s.porter, "victim.test", path).await;
        if after.text() != clean {
            poisoned.push(format!("{path} after two Host fields: {}", after.text()));
        }
    }

    // A fat GET (a body on a GET), with a length and chunked.
    let fat = Request::get("/reflect/fat")
        .header("host", "victim.test")
        .body(Full::new(Bytes::from_static(b"evil-body")))
        .unwrap();
    let attack = send(s.porter.http, fat).await;
    eprintln!(
        "fat GET: {} {:?} {}",
        attack.status,
        attack.cache_status(),
        attack.text()
    );
    let after = get(&s.porter, "victim.test", "/reflect/fat").await;
    if after.text() != clean {
        poisoned.push(format!("/reflect/fat after a fat GET: {}", after.text()));
    }
    let answer = raw(
        s.porter.http,
        b"GET /reflect/fat-chunked HTTP/1.1\r\nHost: victim.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n9\r\nevil-body\r\n0\r\n\r\n",
    )
    .await;
    eprintln!("chunked fat GET: {}", answer.lines().next().unwrap_or(""));
    let after = get(&s.porter, "victim.test", "/reflect/fat-chunked").await;
    if after.text() != clean {
        poisoned.push(format!(
            "/reflect/fat-chunked after a chunked fat GET: {}",
            after.text()
        ));
    }
    assert!(
        poisoned.is_empty(),
        "POISONED: clean requests got what unkeyed parts of earlier requests made \
         (clean: {clean}):\n{}",
        poisoned.join("\n")
    );

    // Two sites on the same upstream path: one's response never answers the other.
    cached_site(&s.porter, &up, "a.test", &[]).await;
    cached_site(&s.porter, &up, "b.test", &[]).await;
    let a = get(&s.porter, "a.test", "/same").await;
    assert!(a.forwarded());
    assert!(get(&s.porter, "a.test", "/same").await.hit());
    let b = get(&s.porter, "b.test", "/same").await;
    assert!(
        b.forwarded(),
        "b.test's first request is not a hit: {:?} {}",
        b.cache_status(),
        b.text()
    );
    assert_eq!(s.upstream.count("/same"), 2);
    assert_ne!(a.body, b.body, "{} / {}", a.text(), b.text());
    let b2 = get(&s.porter, "b.test", "/same").await;
    assert!(b2.hit());
    assert_eq!(b2.body, b.body);
    let a2 = get(&s.porter, "a.test", "/same").await;
    assert_eq!(a2.body, a.body);
}

// ---------------------------------------------------------------------------------------------
// 7. Purges.

/// Runs `porter cache purge` through `porter`.
fn purge(porter: &Porter, args: &[&str]) {
    let mut all = vec!["cache", "purge"];
    all.extend(args);
    porter.ok(&all);
}

#[tokio::test(flavor = "multi_thread")]
async fn purges_by_url_prefix_and_tag_send_the_next_request_upstream() {
    let s = setup(&[]);
    cached_site(&s.porter, &s.upstream.addr(), "purge.test", &[]).await;
    let p = &s.porter;
    let paths = [
        "/one",
        "/two",
        "/pre/a",
        "/pre/b?q=1",
        "/prefixed-not",
        "/tag/x",
        "/tag3/y",
    ];
    for path in paths {
        assert!(get(p, "purge.test", path).await.forwarded());
        assert!(get(p, "purge.test", path).await.hit(), "{path} stored");
    }
    let within = Duration::from_secs(2);
    let gone = |path: &'static str| async move {
        get_until(
            p,
            "purge.test",
            path,
            within,
            &format!("{path} is purged"),
            Got::forwarded,
        )
        .await;
    };
    let kept = |path: &'static str| async move {
        let got = get(p, "purge.test", path).await;
        assert!(
            got.hit(),
            "{path} is still stored: {:?}",
            got.cache_status()
        );
    };

    purge(p, &["purge.test", "/one"]);
    gone("/one").await;
    kept("/two").await;
    assert_eq!(s.upstream.count("/one"), 2);

    purge(p, &["purge.test", "--prefix", "/pre/"]);
    gone("/pre/a").await;
    gone("/pre/b?q=1").await;
    kept("/prefixed-not").await;
    kept("/two").await;

    purge(p, &["purge.test", "--tag", "t2"]);
    gone("/tag/x").await;
    kept("/tag3/y").await;
    kept("/two").await;
    assert_eq!(s.upstream.count("/tag/x"), 2);
    assert_eq!(s.upstream.count("/tag3/y"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_by_tag_through_one_node_empties_all_three() {
    require("etcd", "etcd-server");
    let dir = tempfile::tempdir().unwrap();
    let etcd = etcd::Etcd::start();
    let upstream = Upstream::start();
    let store = etcd.address("cachefleet");
    let nodes: Vec<Porter> = (0..3)
        .map(|i| {
            let node = format!("n{i}");
            Porter::start(
                &dir.path().join(format!("node{i}")),
                &["--store", &store, "--etcd-lease-ttl", "2s", "--node", &node],
            )
        })
        .collect();
    nodes[0].ok(&[
        "site",
        "add",
        "fleet.test",
        "--upstream",
        &upstream.addr(),
        "--no-acme",
        "--cache",
        "on",
    ]);
    for node in &nodes {
        served(node, "fleet.test").await;
    }
    for (i, node) in nodes.iter().enumerate() {
        let got = get(node, "fleet.test", "/tag/page").await;
        assert!(got.forwarded(), "node {i}: {:?}", got.cache_status());
        assert!(get(node, "fleet.test", "/tag/page").await.hit(), "node {i}");
        assert!(get(node, "fleet.test", "/tag3/other").await.forwarded());
    }
    assert_eq!(upstream.count("/tag/page"), 3);

    purge(&nodes[0], &["fleet.test", "--tag", "t1"]);
    let purged = Instant::now();
    for (i, node) in nodes.iter().enumerate() {
        let left = Duration::from_secs(1).saturating_sub(purged.elapsed());
        get_until(
            node,
            "fleet.test",
            "/tag/page",
            left,
            &format!("node {i} has applied the purge within 1 s of it"),
            Got::forwarded,
        )
        .await;
    }
    eprintln!("purged on all three nodes within {:?}", purged.elapsed());
    assert_eq!(upstream.count("/tag/page"), 6);
    for (i, node) in nodes.iter().enumerate() {
        let got = get(node, "fleet.test", "/tag3/other").await;
        assert!(got.hit(), "node {i} keeps the other tag's entry");
    }
    drop(nodes);
    drop(etcd);
}

// ---------------------------------------------------------------------------------------------
// 8. Vary, HEAD, ranges, stats and metrics.

#[tokio::test(flavor = "multi_thread")]
async fn vary_head_range_stats_and_metrics() {
    let s = setup(&["--metrics", "127.0.0.1:0"]);
    cached_site(&s.porter, &s.upstream.addr(), "misc.test", &[]).await;
    let p = &s.porter;
    let (mut hits, mut misses) = (0u64, 0u64);
    let mut tally = |got: &Got| {
        if got.hit() {
            hits += 1;
        } else if got.cache_status().contains("fwd=uri-miss") {
            misses += 1;
        }
    };

    // Vary: Accept-Encoding keeps two variants apart.
    let ae = |enc: &'static str| async move {
        request(p, "GET", "misc.test", "/vary", &[("accept-encoding", enc)]).await
    };
    let gz = ae("gzip").await;
    tally(&gz);
    assert!(gz.forwarded());
    assert_eq!(gz.text(), "enc=gzip");
    let br = ae("br").await;
    tally(&br);
    assert!(br.forwarded(), "another variant: {:?}", br.cache_status());
    assert_eq!(br.text(), "enc=br");
    for (enc, body) in [("gzip", "enc=gzip"), ("br", "enc=br")] {
        let got = ae(enc).await;
        tally(&got);
        assert!(got.hit(), "{enc}: {:?}", got.cache_status());
        assert_eq!(got.text(), body, "the {enc} variant");
    }
    assert_eq!(s.upstream.count("/vary"), 2);

    // HEAD answered from a stored GET.
    let got = get(p, "misc.test", "/pattern/1000").await;
    tally(&got);
    assert_eq!(got.body, pattern(1000));
    let head = request(p, "HEAD", "misc.test", "/pattern/1000", &[]).await;
    tally(&head);
    assert_eq!(head.status, StatusCode::OK);
    assert!(
        head.hit(),
        "HEAD from the GET entry: {:?}",
        head.cache_status()
    );
    assert!(head.body.is_empty());
    assert_eq!(head.headers["content-length"], "1000");

    // A range from the stored full body.
    let ranged = request(
        p,
        "GET",
        "misc.test",
        "/pattern/1000",
        &[("range", "bytes=100-199")],
    )
    .await;
    tally(&ranged);
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert!(ranged.hit(), "{:?}", ranged.cache_status());
    assert_eq!(ranged.headers["content-range"], "bytes 100-199/1000");
    assert_eq!(&ranged.body[..], &pattern(1000)[100..200]);
    let suffix = request(
        p,
        "GET",
        "misc.test",
        "/pattern/1000",
        &[("range", "bytes=-10")],
    )
    .await;
    tally(&suffix);
    assert_eq!(suffix.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&suffix.body[..], &pattern(1000)[990..]);
    assert_eq!(s.upstream.count("/pattern/1000"), 1);
    assert!(hits == 5 && misses == 3, "hits {hits} misses {misses}");

    // `cache stats --json` counts them.
    let stats = stats_json(p);
    let site = stats["sites"]
        .as_array()
        .unwrap_or_else(|| panic!("{stats}"))
        .iter()
        .find(|s| s["domain"] == "misc.test")
        .unwrap_or_else(|| panic!("misc.test in {stats}"))
        .clone();
    eprintln!("cache stats: {site}");
    assert_eq!(site["hits"].as_u64(), Some(hits), "{site}");
    // The probe that waited until the site was served was a miss too.
    assert_eq!(site["misses"].as_u64(), Some(misses + 1), "{site}");
    let text = p.ok(&["cache", "stats", "misc.test"]);
    assert!(text.contains("misc.test"), "{text}");

    // The metrics endpoint.
    let metrics = curl(&[&format!("http://{}/metrics", p.metrics.unwrap())]).1;
    let value = |event: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("porter_cache_events_total{")
                    && l.contains("site=\"misc.test\"")
                    && l.contains(&format!("event=\"{event}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
    };
    assert_eq!(value("hits"), Some(hits), "hits in the metrics");
    assert_eq!(value("misses"), Some(misses + 1), "misses in the metrics");
}
