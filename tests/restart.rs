//! Zero-downtime restart and upgrade: a new `porter serve` on the same data dir takes over the
//! running one's sockets while clients keep sending (plain and TLS, keep-alive and a connection
//! per request); a successor that fails to start hands everything back; a hostile client on the
//! handover socket changes nothing; SIGHUP stops nothing; a server killed with -9 leaves a
//! discovery file that is recognised as stale.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the load saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    /// Requests sent on a kept-alive connection the server had closed as idle, before any byte
    /// of an answer: resent on a new connection, as browsers and HTTP libraries do.
    retried: AtomicU64,
    failed: AtomicU64,
    /// Connections (TCP or TLS) that could not be opened.
    refused: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn note(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 20 {
            errors.push(what);
        }
    }
}

#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    host: &'static str,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// A new connection for every request.
    close: bool,
    /// `POST /count` with a body (which no client resends on its own) instead of `GET /`.
    post: bool,
}

async fn connect(target: &Target) -> std::io::Result<Box<dyn Io>> {
    match &target.tls {
        None => Ok(Box::new(tokio::net::TcpStream::connect(target.addr).await?)),
        Some(config) => Ok(Box::new(
            tls_connect(config.clone(), target.addr, target.host).await?,
        )),
    }
}

/// The body of each POST.
const POSTED: &str = "name=porter&comment=a+form+a+browser+would+not+send+twice";

enum Failure {
    /// The connection ended before any byte of an answer.
    Closed,
    Other(String),
}

/// One `GET /` on `io`; whether the connection may carry another request.
async fn exchange(io: &mut Box<dyn Io>, target: &Target) -> Result<bool, Failure> {
    let connection = if target.close { "close" } else { "keep-alive" };
    let head = if target.post {
        format!(
            "POST /count HTTP/1.1\r\nHost: {}\r\nConnection: {connection}\r\nContent-Length: {}\r\n\r\n{}",
            target.host,
            POSTED.len(),
            POSTED
        )
    } else {
        format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: {connection}\r\n\r\n",
            target.host
        )
    };
    if let Err(e) = io.write_all(head.as_bytes()).await {
        return Err(if is_closed(&e) {
            Failure::Closed
        } else {
            Failure::Other(format!("write: {e}"))
        });
    }
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match io.read(&mut chunk).await {
            Ok(0) if buf.is_empty() => return Err(Failure::Closed),
            Err(e) if buf.is_empty() && is_closed(&e) => return Err(Failure::Closed),
            Ok(0) => return Err(Failure::Other("the answer's head was cut".into())),
            Err(e) => return Err(Failure::Other(format!("read: {e}"))),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        return Err(Failure::Other(format!(
            "answered {}",
            head.lines().next().unwrap_or("")
        )));
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Failure::Other(format!("no content-length in {head:?}")))?;
    let mut body = buf.len() - end;
    while body < length {
        match io.read(&mut chunk).await {
            Ok(0) => return Err(Failure::Other("the body was cut".into())),
            Ok(n) => body += n,
            Err(e) => return Err(Failure::Other(format!("body: {e}"))),
        }
    }
    Ok(!target.close && !head.contains("connection: close"))
}

fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | UnexpectedEof | BrokenPipe)
}

/// Sends requests to `target` one after the other until `stop`.
async fn client(target: Target, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut conn: Option<Box<dyn Io>> = None;
    while !stop.load(Ordering::Relaxed) {
        let reused = conn.is_some();
        let io = match conn.as_mut() {
            Some(io) => io,
            None => match tokio::time::timeout(Duration::from_secs(5), connect(&target)).await {
                Ok(Ok(io)) => conn.insert(io),
                Ok(Err(e)) => {
                    tally.note(&tally.refused, format!("{}: connect: {e}", target.host));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(_) => {
                    tally.note(
                        &tally.refused,
                        format!("{}: connect timed out", target.host),
                    );
                    continue;
                }
            },
        };
        match tokio::time::timeout(Duration::from_secs(10), exchange(io, &target)).await {
            Ok(Ok(keep)) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                if !keep {
                    conn = None;
                }
            }
            Ok(Err(Failure::Closed)) if reused => {
                tally.retried.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
            Ok(Err(Failure::Closed)) => {
                tally.note(&tally.failed, format!("{}: closed unanswered", target.host));
                conn = None;
            }
            Ok(Err(Failure::Other(e))) => {
                tally.note(&tally.failed, format!("{}: {e}", target.host));
                conn = None;
            }
            Err(_) => {
                tally.note(&tally.failed, format!("{}: no answer in 10 s", target.host));
                conn = None;
            }
        }
    }
}

/// Waits until the load has `more` successful requests beyond now.
async fn served(tally: &Tally, more: u64) {
    let target = tally.ok.load(Ordering::Relaxed) + more;
    eventually(Duration::from_secs(60), "the load goes on", || async {
        tally.ok.load(Ordering::Relaxed) >= target
    })
    .await;
}

/// A server on `data` serving the site `restart.test` over TLS and `plain.test` in clear, both
/// to one backend, once both answer; with a TLS client that trusts it.
async fn serving(
    data: &std::path::Path,
    backend: &Backend,
    ca: &TestCa,
) -> (Porter, Arc<rustls::ClientConfig>) {
    let porter = Porter::start(data, &ONE_CLIENT_ADDRESS);
    ca.serve(data, "restart.test", &backend.addr);
    ok(
        data,
        &["site", "add", "plain.test", "--upstream", &backend.addr],
    );
    let tls = ca.client(&[b"http/1.1"]);
    let (https, http) = (porter.https, porter.http);
    eventually(Duration::from_secs(10), "the TLS site is served", || {
        let tls = tls.clone();
        async move { https_get(tls, https, "restart.test", "/").await.is_ok() }
    })
    .await;
    // A change is served once the edge has applied it, a moment after the CLI returns.
    wait_until(Duration::from_secs(10), "the plain site is served", || {
        plain_status(http, "plain.test", "/") == "200"
    });
    (porter, tls)
}

/// Every client of the load is 127.0.0.1: the per-address handshake limits (200 a second)
/// would refuse what is the load itself, not the restart.
const ONE_CLIENT_ADDRESS: [&str; 4] = [
    "--handshake-rate-per-ip",
    "0",
    "--max-handshakes-per-ip",
    "0",
];

/// [`ONE_CLIENT_ADDRESS`] for a server that replaces the running one.
const TAKING_OVER: [&str; 5] = [
    "--handshake-rate-per-ip",
    "0",
    "--max-handshakes-per-ip",
    "0",
    "--take-over",
];

/// Keep-alive clients that POST one form after another, over TLS and in clear, through ten
/// handovers: every request sent is answered (a request the old server had read, or that came
/// while it drained, is answered with `Connection: close`), none is lost to a connection
/// closed under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_handovers_under_keep_alive_posts_lose_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backend = Backend::start();
    let ca = TestCa::new(dir.path());
    let (mut running, tls) = serving(&data, &backend, &ca).await;
    let (https, http) = (running.https, running.http);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..6 {
        for (addr, host, tls) in [
            (https, "restart.test", Some(tls.clone())),
            (http, "plain.test", None),
        ] {
            let target = Target {
                addr,
                host,
                tls,
                close: false,
                post: true,
            };
            clients.push(tokio::spawn(client(target, tally.clone(), stop.clone())));
        }
    }
    served(&tally, 500).await;
    for round in 0..10 {
        let next = tokio::task::spawn_blocking({
            let data = data.clone();
            move || Porter::start(&data, &TAKING_OVER)
        })
        .await
        .unwrap();
        assert_eq!((next.http, next.https), (http, https), "round {round}");
        let status =
            tokio::task::spawn_blocking(move || running.exits_within(Duration::from_secs(20)))
                .await
                .unwrap();
        assert!(
            status.success(),
            "round {round}: the old server exits cleanly: {status}"
        );
        running = next;
        served(&tally, 300).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok_count, lost, failed, refused) = (
        tally.ok.load(Ordering::Relaxed),
        tally.retried.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
    );
    eprintln!("10 handovers: {ok_count} POSTs answered, {lost} lost to a closed keep-alive connection, {failed} failed, {refused} refused");
    let errors = tally.errors.lock().unwrap().clone();
    assert_eq!((lost, failed, refused), (0, 0, 0), "{errors:#?}");
    assert!(running.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_and_a_binary_swap_under_load_refuse_and_fail_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backend = Backend::start();
    let ca = TestCa::new(dir.path());
    let (mut first, tls) = serving(&data, &backend, &ca).await;
    let (https, http) = (first.https, first.http);

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut targets = Vec::new();
    for close in [false, true] {
        for _ in 0..4 {
            targets.push(Target {
                addr: https,
                host: "restart.test",
                tls: Some(tls.clone()),
                close,
                post: false,
            });
            targets.push(Target {
                addr: http,
                host: "plain.test",
                tls: None,
                close,
                post: false,
            });
        }
    }
    let clients: Vec<_> = targets
        .into_iter()
        .map(|t| tokio::spawn(client(t, tally.clone(), stop.clone())))
        .collect();
    let started = Instant::now();
    served(&tally, 1500).await;

    // A restart: the same binary again on the same data dir.
    let mut second = tokio::task::spawn_blocking({
        let data = data.clone();
        move || Porter::start(&data, &TAKING_OVER)
    })
    .await
    .unwrap();
    assert_eq!(
        (second.http, second.https),
        (http, https),
        "the sockets are the same"
    );
    assert_eq!(second.admin, first.admin, "the admin socket is the same");
    let status = tokio::task::spawn_blocking(move || first.exits_within(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(status.success(), "the old server exits cleanly: {status}");
    served(&tally, 1500).await;
    // The store is the successor's: a change through it is served.
    ok(
        &data,
        &["site", "update", "plain.test", "--upstream", &backend.addr],
    );

    // An upgrade: another binary file.
    let swapped = dir.path().join("porter-upgraded");
    copy_of_porter(&swapped);
    let third = tokio::task::spawn_blocking({
        let data = data.clone();
        move || Porter::start_as(&[swapped.to_str().unwrap()], &data, &TAKING_OVER)
    })
    .await
    .unwrap();
    assert_eq!((third.http, third.https), (http, https));
    let status = tokio::task::spawn_blocking(move || second.exits_within(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(status.success(), "the old server exits cleanly: {status}");
    served(&tally, 1500).await;

    // SIGHUP reopens logs and stops nothing.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &third.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    served(&tally, 100).await;

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (ok_count, retried, failed, refused) = (
        tally.ok.load(Ordering::Relaxed),
        tally.retried.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
    );
    let rate = ok_count as f64 / elapsed;
    eprintln!(
        "load: {ok_count} requests in {elapsed:.1} s ({rate:.0}/s), {retried} resent after an idle close, {failed} failed, {refused} refused"
    );
    let errors = tally.errors.lock().unwrap().clone();
    assert_eq!((failed, refused), (0, 0), "nothing fails: {errors:#?}");
    assert!(
        rate >= 500.0,
        "a steady load of at least 500 requests/s, got {rate:.0}"
    );

    // The last server is the one the CLI finds, and it cleans up after itself.
    let listed = third.ok(&["site", "list", "--json"]);
    assert!(listed.contains("restart.test"), "{listed}");
    let discovery = std::fs::read_to_string(data.join("admin.json")).unwrap();
    assert!(
        discovery.contains(&format!("\"pid\": {}", third.pid())),
        "{discovery}"
    );
    assert!(third.stop().success());
    assert!(
        !data.join("admin.json").exists(),
        "admin.json removed at exit"
    );
    assert!(
        !data.join("handover.sock").exists(),
        "handover.sock removed at exit"
    );
}

/// A successor takes over from `first` (which exits cleanly) and serves `second.test`.
fn taken_over(mut first: Porter, data: &std::path::Path) {
    let second = Porter::start(data, &["--take-over"]);
    assert_eq!(second.http, first.http);
    assert!(first.exits_within(Duration::from_secs(20)).success());
    assert_eq!(plain_status(second.http, "second.test", "/"), "200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_fails_to_start_hands_everything_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backend = Backend::start();
    let mut first = Porter::start(&data, &[]);
    ok(
        &data,
        &["site", "add", "plain.test", "--upstream", &backend.addr],
    );
    // The successor takes the sockets and the store, then cannot bind its metrics address
    // (taken here) and exits.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = taken.local_addr().unwrap().to_string();
    let failed = std::process::Command::new(porter_bin())
        .arg("--data-dir")
        .arg(&data)
        .args(SERVE_ON_LOOPBACK)
        .args(["--metrics", &metrics, "--take-over"])
        .output()
        .unwrap();
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("cannot bind --metrics"), "{stderr}");
    // The old server carries on: it serves, and its store takes writes again.
    assert!(first.running());
    assert_eq!(plain_status(first.http, "plain.test", "/"), "200");
    wait_until(Duration::from_secs(10), "the store is taken back", || {
        cli(
            &data,
            &["site", "add", "second.test", "--upstream", &backend.addr],
        )
        .status
        .success()
    });
    assert_eq!(plain_status(first.http, "second.test", "/"), "200");
    // And a later successor still takes over.
    taken_over(first, &data);
}

/// A second `porter serve` on a data dir a server serves is refused, saying which server and
/// where, and changes nothing; with `--take-over` it replaces it, saying what the running one
/// did that it will not (here: metrics and the access log). Four at once: one takes over.
#[test]
fn a_second_server_is_refused_unless_it_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backend = Backend::start();
    let metrics = common::acme::free_port().to_string();
    let log = dir.path().join("access.log");
    let mut first = Porter::start(
        &data,
        &[
            "--metrics",
            &format!("127.0.0.1:{metrics}"),
            "--access-log",
            log.to_str().unwrap(),
        ],
    );
    ok(
        &data,
        &["site", "add", "plain.test", "--upstream", &backend.addr],
    );
    let second = |extra: &[&str]| cli_within(&data, &[&SERVE_ON_LOOPBACK[..], extra].concat());
    let refused: Vec<_> = std::thread::scope(|s| {
        let tries: Vec<_> = (0..4).map(|_| s.spawn(|| second(&[]))).collect();
        tries.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for out in refused {
        assert_eq!(out.status.code(), Some(1), "refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("a porter server (pid {})", first.pid()))
                && stderr.contains(&first.http.to_string())
                && stderr.contains("--take-over"),
            "{stderr}"
        );
        assert!(!stderr.contains("taking over"), "{stderr}");
    }
    assert!(first.running(), "the running server is left alone");
    assert_eq!(plain_status(first.http, "plain.test", "/"), "200");
    ok(
        &data,
        &["site", "add", "second.test", "--upstream", &backend.addr],
    );
    let discovery: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("admin.json")).unwrap()).unwrap();
    assert_eq!(discovery["pid"], first.pid(), "{discovery}");

    // Taking over without the running server's metrics and access log: said, and done.
    let said = dir.path().join("successor.log");
    let successor = Porter::start_logging(
        &[porter_bin()],
        &data,
        &["--take-over"],
        std::fs::File::create(&said).unwrap(),
    );
    assert!(first.exits_within(Duration::from_secs(20)).success());
    let said = std::fs::read_to_string(&said).unwrap();
    assert!(
        said.contains("taking over drops what the running server does")
            && said.contains("metrics (it has --metrics")
            && said.contains("the access log (it has --access-log"),
        "{said}"
    );
    assert_eq!(plain_status(successor.http, "second.test", "/"), "200");
    assert!(successor.stop().success());
}

/// A panel's provisioning scripts keep running `porter site add` while the server restarts
/// (after a `kill -9`, then 20 stops and starts): every start succeeds (a command that has the
/// store open is waited for; commands started meanwhile step aside), every command either
/// succeeds or exits 5 (worth a retry, and it says so), and every site a command acknowledged
/// is in the store.
#[test]
fn the_server_starts_while_cli_commands_loop_on_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backend = Backend::start();
    Porter::start(&data, &[]).kill9();
    let stop = AtomicBool::new(false);
    let added = Mutex::new(Vec::new());
    let (tally, retried) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        for writer in 0..4 {
            let (stop, added, data, backend) = (&stop, &added, &data, &backend);
            let (tally, retried) = (&tally, &retried);
            s.spawn(move || {
                for n in 0..10_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("w{writer}-{n}.test");
                    let out =
                        cli_within(data, &["site", "add", &name, "--upstream", &backend.addr]);
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    match out.status.code() {
                        Some(0) => added.lock().unwrap().push(name),
                        Some(5) => {
                            assert!(stderr.contains("retry"), "{stderr}");
                            retried.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("site add {name}: exit {other:?}: {stderr}"),
                    }
                    tally.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for round in 0..20 {
            let at = tally.load(Ordering::Relaxed);
            wait_until(Duration::from_secs(30), "the writers go on", || {
                tally.load(Ordering::Relaxed) >= at + 2
            });
            let porter = Porter::start(&data, &[]);
            let first = added.lock().unwrap()[0].clone();
            assert_eq!(
                plain_status(porter.http, &first, "/"),
                "200",
                "round {round}"
            );
            let at = tally.load(Ordering::Relaxed);
            wait_until(Duration::from_secs(30), "the writers go on", || {
                tally.load(Ordering::Relaxed) >= at + 2
            });
            assert!(porter.stop().success(), "round {round}");
        }
        stop.store(true, Ordering::Relaxed);
    });
    let added = added.into_inner().unwrap();
    eprintln!(
        "20 restarts: {} commands, {} acknowledged, {} told to retry",
        tally.load(Ordering::Relaxed),
        added.len(),
        retried.load(Ordering::Relaxed)
    );
    let listed = ok(&data, &["site", "list", "--json"]);
    for name in &added {
        assert!(
            listed.contains(&format!("\"{name}\"")),
            "{name} was acknowledged and lost"
        );
    }
}

#[test]
fn a_hostile_client_on_the_handover_socket_changes_nothing() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backend = Backend::start();
    let mut first = Porter::start(&data, &[]);
    ok(
        &data,
        &["site", "add", "plain.test", "--upstream", &backend.addr],
    );
    let socket = data.join("handover.sock");
    // Garbage, a request cut short, and a client that says nothing and holds on.
    let mut garbage = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    garbage
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = garbage.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing is handed to garbage");
    let mut cut = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    cut.write_all(b"porter hand").unwrap();
    drop(cut);
    let _silent = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    // The server is unaffected: it serves, its store takes writes.
    assert_eq!(plain_status(first.http, "plain.test", "/"), "200");
    ok(
        &data,
        &["site", "add", "second.test", "--upstream", &backend.addr],
    );
    assert!(first.running());
    // A real successor still takes over (once the silent client's time is up).
    taken_over(first, &data);
}

#[test]
fn a_server_killed_without_cleaning_up_leaves_nothing_that_misleads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backend = Backend::start();
    let first = Porter::start(&data, &[]);
    ok(
        &data,
        &["site", "add", "plain.test", "--upstream", &backend.addr],
    );
    first.kill9();
    assert!(data.join("admin.json").exists() && data.join("handover.sock").exists());
    // The CLI does not try the dead server: it reads the store itself.
    let listed = ok(&data, &["site", "list", "--json"]);
    assert!(listed.contains("plain.test"), "{listed}");
    // A new server starts (nothing to take over) and replaces both files.
    let second = Porter::start(&data, &[]);
    assert_eq!(plain_status(second.http, "plain.test", "/"), "200");
}

#[test]
fn connections_opened_ahead_of_need_do_not_hold_the_stop() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let porter = Porter::start(&data, &["--shutdown-grace", "20s"]);
    // As browsers do: connections opened before there is a request to send, one TLS (its
    // handshake started, nothing more) and one plain.
    let _plain = std::net::TcpStream::connect(porter.http).unwrap();
    let mut tls = std::net::TcpStream::connect(porter.https).unwrap();
    use std::io::Write as _;
    tls.write_all(&[0x16, 0x03, 0x01]).unwrap();
    // The connections are accepted (the server counts them) before the stop.
    wait_until(Duration::from_secs(10), "both connections are open", || {
        let (_, metrics) = porter.api("GET", "/metrics", None);
        metrics
            .lines()
            .filter(|l| l.starts_with("porter_connections_open{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
            >= 2.0
    });
    let (status, took) = porter.stop_within(Duration::from_secs(15));
    assert!(status.success());
    assert!(
        took < Duration::from_secs(8),
        "silent connections held the stop for {took:?} (the grace is 20 s; they get 2 s)"
    );
}
