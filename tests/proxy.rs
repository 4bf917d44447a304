//! Routing and forwarding through the real binary to a real HTTP daemon: HTTP/1.1 and HTTP/2
//! from curl and rustls, forwarded headers, refusals of unknown hosts, HTTPS redirects, upstream
//! failures, unix sockets, 100 MB bodies streamed in both directions in bounded memory, and the
//! edge threads, down to their drain at shutdown.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

/// A running Porter with `a.test` (certificate) and `plain.test` (none) in front of a backend.
struct Setup {
    _dir: tempfile::TempDir,
    ca: TestCa,
    backend: Backend,
    porter: Porter,
}

fn setup(extra: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let porter = Porter::start(&dir.path().join("data"), extra);
    ca.serve(&porter.data_dir, "a.test", &backend.addr);
    porter.ok(&["site", "add", "plain.test", "--upstream", &backend.addr]);
    wait_until(Duration::from_secs(2), "a.test answers over HTTPS", || {
        curl_https(&porter, &ca, &["-o", "/dev/null", "https://a.test:PORT/"]).0
    });
    Setup {
        _dir: dir,
        ca,
        backend,
        porter,
    }
}

/// curl against Porter's HTTPS port with `a.test` resolved to it; `PORT` in args is replaced.
fn curl_https(porter: &Porter, ca: &TestCa, args: &[&str]) -> (bool, String) {
    curl(
        &https_args(porter, ca, args)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
}

/// `args` for curl with the CA and `a.test`'s address, repeated after each `--next` (curl
/// resets its options there), and `PORT` replaced by Porter's HTTPS port.
fn https_args(porter: &Porter, ca: &TestCa, args: &[&str]) -> Vec<String> {
    let port = porter.https.port().to_string();
    let resolve = format!("a.test:{port}:127.0.0.1");
    let ca_path = ca.ca_path();
    let common = ["--cacert", ca_path.to_str().unwrap(), "--resolve", &resolve];
    let mut all: Vec<String> = common.iter().map(|a| a.to_string()).collect();
    for arg in args {
        all.push(arg.replace("PORT", &port));
        if *arg == "--next" {
            all.extend(common.iter().map(|a| a.to_string()));
        }
    }
    all
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn curl_gets_proxied_responses_over_http1_and_http2_with_forwarded_headers() {
    let s = setup(&[]);
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let (ok, out) = curl_https(
            &s.porter,
            &s.ca,
            &[
                flag,
                "-w",
                "\n%{http_version}",
                "-H",
                "X-Forwarded-For: 6.6.6.6",
                "-H",
                "X-Forwarded-Proto: gopher",
                "-H",
                "Connection: keep-alive, X-Drop-Me",
                "-H",
                "X-Drop-Me: 1",
                "https://a.test:PORT/headers",
            ],
        );
        assert!(ok, "{out}");
        let (body, got_version) = out.rsplit_once('\n').unwrap();
        assert_eq!(got_version, version);
        let seen = json(body);
        let headers = &seen["headers"];
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{seen}");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(
            headers["x-forwarded-host"],
            format!("a.test:{}", s.porter.https.port())
        );
        assert_eq!(headers["host"], format!("a.test:{}", s.porter.https.port()));
        if version == "1.1" {
            // (curl drops `Connection` on HTTP/2, where it is not allowed.)
            assert!(
                headers.get("x-drop-me").is_none(),
                "a header named by Connection must not pass: {seen}"
            );
        }
        assert!(headers.get("keep-alive").is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rustls_client_gets_proxied_responses_over_http1_and_http2() {
    let s = setup(&[]);
    for (alpn, version) in [
        (&b"http/1.1"[..], http::Version::HTTP_11),
        (&b"h2"[..], http::Version::HTTP_2),
    ] {
        let (status, got, body) =
            https_get(s.ca.client(&[alpn]), s.porter.https, "a.test", "/x?y=1")
                .await
                .unwrap();
        assert_eq!((status, got), (http::StatusCode::OK, version));
        assert_eq!(body, "hello from backend /x?y=1");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_hosts_get_421_on_https_and_404_on_http() {
    let s = setup(&[]);
    // On a connection made for a.test, a request for another name is misdirected.
    for host in ["other.test", "plain.test"] {
        let stream = tls_connect(s.ca.client(&[b"http/1.1"]), s.porter.https, "a.test")
            .await
            .unwrap();
        let req = http::Request::get("/")
            .header("host", host)
            .body(Default::default())
            .unwrap();
        let (status, _, _) = request(stream, req).await;
        assert_eq!(status, http::StatusCode::MISDIRECTED_REQUEST, "{host}");
    }
    assert_eq!(plain_status(s.porter.http, "other.test", "/"), "404");
}

#[test]
fn http_redirects_only_sites_with_a_valid_certificate() {
    let s = setup(&[]);
    let http = s.porter.http.to_string();
    let (ok, out) = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "Host: A.test",
        &format!("http://{http}/p?q=1"),
    ]);
    assert!(ok);
    assert!(out.starts_with("HTTP/1.1 308"), "{out}");
    let location = format!("location: https://a.test:{}/p?q=1", s.porter.https.port());
    assert!(out.to_lowercase().contains(&location), "{out}");

    let (ok, out) = curl(&["-H", "Host: plain.test", &format!("http://{http}/headers")]);
    assert!(ok);
    let seen = json(&out);
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http", "{seen}");
}

#[test]
fn upstream_failures_answer_502_and_504() {
    let s = setup(&["--upstream-timeout", "1s"]);
    s.porter.ok(&[
        "site",
        "add",
        "down.test",
        "--upstream",
        "127.0.0.1:1",
        "--allow-unreachable",
    ]);
    let http = s.porter.http.to_string();
    wait_until(Duration::from_secs(2), "down.test answers 502", || {
        plain_status(&http, "down.test", "/") == "502"
    });
    let code = plain_status(&http, "plain.test", "/slow/5");
    assert_eq!(code, "504");
    // The backend is still fine for others.
    let code = plain_status(&http, "plain.test", "/");
    assert_eq!(code, "200");
    let _ = &s.backend;
}

#[test]
fn unix_socket_upstreams_are_forwarded_to() {
    let s = setup(&[]);
    let socket = s._dir.path().join("backend.sock");
    let unix = Backend::start_unix(&socket);
    s.porter
        .ok(&["site", "add", "sock.test", "--upstream", &unix.addr]);
    let http = s.porter.http.to_string();
    wait_until(
        Duration::from_secs(2),
        "sock.test is forwarded to the unix socket",
        || {
            curl(&["-H", "Host: sock.test", &format!("http://{http}/via-unix")]).1
                == "hello from backend /via-unix"
        },
    );
}

/// Samples the proxy's RSS while `work` runs; returns the peak in KiB.
fn peak_rss_during(porter: &Porter, work: impl FnOnce()) -> u64 {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pid = porter.pid();
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    work();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap()
}

#[test]
fn hundred_megabyte_bodies_stream_both_ways_in_bounded_memory() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let s = setup(&[]);
    let upload = s._dir.path().join("upload.bin");
    write_zeros(&upload, SIZE);
    let idle = s.porter.rss_kib();
    let size = SIZE.to_string();
    let peak = peak_rss_during(&s.porter, || {
        for flag in ["--http1.1", "--http2"] {
            let (ok, out) = curl_https(
                &s.porter,
                &s.ca,
                &[
                    flag,
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{size_download}",
                    &format!("https://a.test:PORT/bytes/{SIZE}"),
                ],
            );
            assert!(ok && out == size, "download over {flag}: {out}");
            let (ok, out) = curl_https(
                &s.porter,
                &s.ca,
                &[
                    flag,
                    "-T",
                    upload.to_str().unwrap(),
                    "-X",
                    "POST",
                    "https://a.test:PORT/count",
                ],
            );
            assert!(ok && out == size, "upload over {flag}: {out}");
        }
    });
    eprintln!("RSS idle {idle} KiB, peak {peak} KiB during 4 x 100 MB");
    assert!(
        peak < idle + 64 * 1024,
        "RSS grew from {idle} KiB to {peak} KiB"
    );
}

fn write_zeros(path: &Path, size: u64) {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(size).unwrap();
}

#[test]
fn upstream_connections_are_reused_but_not_after_an_abandoned_response() {
    // One edge thread, so one pool: a request can then miss a connection only because the
    // pool refused to lend it, not because another thread's pool served it.
    let s = setup(&["--edge-threads", "1"]);
    let ports = |args: &[&str]| -> Vec<String> {
        let (ok, out) = curl_https(&s.porter, &s.ca, args);
        assert!(ok, "curl {args:?}: {out}");
        out.split_whitespace().map(str::to_owned).collect()
    };
    let url = "https://a.test:PORT/conn";

    // HTTP/1.1: the client connection keeps its upstream connection, across a HEAD (whose
    // empty body must still give the connection back) and a request whose body is read.
    let h1 = ports(&[
        "--http1.1",
        url,
        "--next",
        "--http1.1",
        "-I",
        "-o",
        "/dev/null",
        url,
        "--next",
        "--http1.1",
        url,
    ]);
    assert_eq!(h1.len(), 2, "{h1:?}");
    assert_eq!(
        h1[0], h1[1],
        "one upstream connection for the client's requests"
    );

    // HTTP/2: streams borrow from the shared pool and give back at the end of each body.
    let h2 = ports(&["--http2", url, url, url]);
    assert_eq!(h2.len(), 3, "{h2:?}");
    assert!(h2.iter().all(|p| p == &h2[0]), "{h2:?}");

    // The upstream closes a connection after answering without saying so: the next request
    // still gets an answer, on another connection.
    let (ok, out) = curl_https(
        &s.porter,
        &s.ca,
        &[
            "--http1.1",
            "https://a.test:PORT/close-after",
            "--next",
            "--http1.1",
            url,
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(ok && lines[0] == "closing", "{out}");
    assert!(
        lines.get(1).is_some_and(|p| p.parse::<u16>().is_ok()),
        "{out}"
    );

    // While one response is still streaming, its upstream connection is not lent to anyone
    // else; once its client gives up half-way, it is never lent again.
    let (mut slow, _output, dripping) = drip(&s, "--http2");
    let started = std::time::Instant::now();
    let during = ports(&["--http2", url]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a request waited {:?} for a streaming response's connection",
        started.elapsed()
    );
    assert_ne!(during[0], dripping, "a busy connection was lent");
    slow.kill().unwrap();
    slow.wait().unwrap();
    for _ in 0..3 {
        let after = ports(&["--http2", url]);
        assert_ne!(after[0], dripping, "an abandoned connection was lent again");
    }
}

/// An upstream that closes an idle connection just as a request arrives on it: an idempotent
/// request without a body is sent again on a new connection; one with a body gets 502.
#[test]
fn a_request_an_upstream_drops_on_an_idle_connection_is_sent_again_only_when_idempotent() {
    // One edge thread, so one pool: the next client connection gets the newest idle upstream
    // connection, the one the backend will drop.
    let s = setup(&["--edge-threads", "1"]);
    for (args, replayed) in [(&[][..], true), (&["--data", "x"][..], false)] {
        let (ok, dropping) = curl_https(
            &s.porter,
            &s.ca,
            &["--http1.1", "https://a.test:PORT/drop-next"],
        );
        assert!(ok, "{dropping}");
        // Not a synchronisation: the scenario is a connection idle for longer than the second
        // after which Porter counts on the upstream possibly closing it.
        std::thread::sleep(Duration::from_millis(1200));
        let mut request = vec!["--http1.1", "-w", "%{http_code}"];
        request.extend(args);
        request.push("https://a.test:PORT/conn");
        let (_, out) = curl_https(&s.porter, &s.ca, &request);
        if replayed {
            let (port, status) = out.split_once('\n').unwrap_or_default();
            assert_eq!(status, "200", "{out}");
            assert_ne!(
                port,
                dropping.trim(),
                "answered on the dropping connection?"
            );
        } else {
            assert!(out.ends_with("502"), "{out}");
        }
    }
}

/// A curl streaming `/drip/10` (a line every 0.3 s) over `version` (a curl flag): the process,
/// the rest of its output, and the upstream port the response comes over (its first line).
fn drip(
    s: &Setup,
    version: &str,
) -> (
    Running,
    std::io::BufReader<std::process::ChildStdout>,
    String,
) {
    let mut curl = Running::new(
        std::process::Command::new("curl")
            .args(["-sS", "--no-buffer", version])
            .args(https_args(
                &s.porter,
                &s.ca,
                &["https://a.test:PORT/drip/10"],
            ))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut output = std::io::BufReader::new(curl.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut output, &mut first).unwrap();
    let port = first.trim().to_owned();
    assert!(
        port.parse::<u16>().is_ok(),
        "first line is the port: {first}"
    );
    (curl, output, port)
}

/// Names of porter's edge threads, sorted.
fn edge_threads(porter: &Porter) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", porter.pid()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("porter-edge"))
        .collect();
    names.sort();
    names
}

/// Connections are served by the edge threads asked for; at shutdown the listeners close at
/// once while a response still streaming gets the grace period to finish.
#[test]
fn edge_threads_serve_connections_and_drain_them_at_shutdown() {
    let s = setup(&["--edge-threads", "3", "--shutdown-grace", "20s"]);
    assert_eq!(
        edge_threads(&s.porter),
        ["porter-edge-0", "porter-edge-1", "porter-edge-2"]
    );

    // Thirty connections at once, each answered.
    let mut args = vec!["--parallel", "--parallel-immediate", "--http1.1"];
    for _ in 0..30 {
        args.extend([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\\n",
            "https://a.test:PORT/",
        ]);
    }
    let (ok, out) = curl_https(&s.porter, &s.ca, &args);
    assert!(ok, "{out}");
    assert_eq!(out.lines().filter(|l| *l == "200").count(), 30, "{out}");

    let (mut slow, mut stdout, _) = drip(&s, "--http1.1");

    let https = s.porter.https;
    let porter = s.porter;
    let stopping = std::thread::spawn(move || porter.stop());
    wait_until(Duration::from_secs(2), "the HTTPS listener closes", || {
        std::net::TcpStream::connect(https).is_err()
    });
    assert!(
        slow.try_wait().unwrap().is_none(),
        "the streaming response was cut at shutdown"
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(slow.wait().unwrap().success());
    assert_eq!(rest.lines().last(), Some("drip 10"), "{rest}");
    assert!(stopping.join().unwrap().success());
}
