//! The store never stops the edge, through the real binary: 64 writers at once (admin API and
//! CLI) lose nothing across a kill -9 while the edge keeps serving; a stalled store fails
//! requests in time and never holds SIGTERM; a full disk heals without a restart; the data dir
//! is private to its user.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The site names the admin API lists.
fn listed(porter: &Porter) -> BTreeSet<String> {
    let (status, body) = porter.api("GET", "/v1/sites", None);
    assert_eq!(status, 200, "{body}");
    let sites: Value = serde_json::from_str(&body).unwrap();
    sites
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["domain"].as_str().unwrap().to_owned())
        .collect()
}

/// Requests to `name` over HTTPS, one after the other until `stop`: the latencies of the
/// answers, and what went wrong with the others.
fn probe(
    porter: &Porter,
    ca: &TestCa,
    name: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Vec<Duration>, Vec<String>)> {
    let client = ca.client(&[b"http/1.1"]);
    let addr = porter.https;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (mut latencies, mut failures) = (Vec::new(), Vec::new());
        while !stop.load(Ordering::Relaxed) && failures.len() < 100 {
            let started = Instant::now();
            let answer = runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), get_status(&client, addr, name)).await
            });
            match answer {
                Ok(Ok(200)) => latencies.push(started.elapsed()),
                other => failures.push(format!("{other:?}")),
            }
        }
        (latencies, failures)
    })
}

/// The status of `GET https://name/` over a new connection, or what failed.
async fn get_status(
    client: &Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    name: &str,
) -> Result<u16, String> {
    use hyper_util::rt::TokioIo;
    let stream = tls_connect(client.clone(), addr, name)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let request = http::Request::get("/")
        .header("host", name)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    Ok(response.status().as_u16())
}

/// `POST /v1/sites` for `name` to `upstream`: the HTTP status and body.
fn add_site(porter: &Porter, name: &str, upstream: &str, allow_unreachable: bool) -> (u16, String) {
    let body = serde_json::json!({
        "domain": name,
        "upstream": upstream,
        "allow_unreachable": allow_unreachable,
    });
    porter.api("POST", "/v1/sites", Some(&body.to_string()))
}

/// Waits until `name` answers 200 over HTTPS: a change reaches the edge through the change
/// feed, a moment after the CLI returns.
fn wait_served(porter: &Porter, ca: &TestCa, name: &str) {
    let client = ca.client(&[b"http/1.1"]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    wait_until(Duration::from_secs(5), &format!("{name} is served"), || {
        runtime.block_on(get_status(&client, porter.https, name)) == Ok(200)
    });
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

#[test]
fn sixty_four_writers_through_the_api_and_the_cli_lose_nothing_while_the_edge_serves() {
    const SITES: usize = 2_000;
    const WRITERS: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backend = Backend::start();
    let ca = TestCa::new(dir.path());
    let porter = Porter::start(&data, &[]);
    ca.serve(&data, "keep.test", &backend.addr);
    wait_served(&porter, &ca, "keep.test");

    let stop = Arc::new(AtomicBool::new(false));
    let prober = probe(&porter, &ca, "keep.test", stop.clone());
    let started = Instant::now();
    // Nothing listens at the sites' upstream: they are only written, never requested.
    let upstream = "127.0.0.1:9";
    let mut expected: BTreeSet<String> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (porter, data) = (&porter, &data);
                scope.spawn(move || {
                    let mut kept = Vec::new();
                    // Even writers use the CLI, odd ones the admin API; odd sites are removed
                    // again.
                    for i in (w..SITES).step_by(WRITERS) {
                        let name = format!("s{i}.load.test");
                        if w % 2 == 0 {
                            let out = cli_within(
                                data,
                                &[
                                    "site",
                                    "add",
                                    &name,
                                    "--upstream",
                                    upstream,
                                    "--allow-unreachable",
                                ],
                            );
                            assert!(out.status.success(), "add {name}: {out:?}");
                            if i % 2 == 1 {
                                let out = cli_within(data, &["site", "remove", &name]);
                                assert!(out.status.success(), "remove {name}: {out:?}");
                            }
                        } else {
                            let (status, body) = add_site(porter, &name, upstream, true);
                            assert_eq!(status, 201, "add {name}: {body}");
                            if i % 2 == 1 {
                                let path = format!("/v1/sites/{name}");
                                let (status, body) = porter.api("DELETE", &path, None);
                                assert_eq!(status, 200, "remove {name}: {body}");
                            }
                        }
                        if i % 2 == 0 {
                            kept.push(name);
                        }
                    }
                    kept
                })
            })
            .collect();
        writers
            .into_iter()
            .flat_map(|w| w.join().expect("a writer failed"))
            .collect()
    });
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, failures) = prober.join().unwrap();
    expected.insert("keep.test".into());
    assert!(
        failures.is_empty(),
        "the edge failed requests: {failures:?}"
    );
    latencies.sort();
    eprintln!(
        "{} writes by {WRITERS} writers in {elapsed:?}; keep.test answered {} requests meanwhile: p50 {:?}, p99 {:?}, max {:?}",
        SITES * 3 / 2,
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
    assert!(latencies.len() >= 20, "the prober barely ran");
    assert_eq!(listed(&porter), expected);

    // Every acknowledged change survives a crash.
    porter.kill9();
    let porter = Porter::start(&data, &[]);
    assert_eq!(listed(&porter), expected);
    let (status, _) = porter.stop_within(Duration::from_secs(15));
    assert!(status.success(), "{status}");
}

#[test]
fn a_stalled_store_fails_in_time_while_the_edge_serves_and_sigterm_still_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let stall = dir.path().join("stall");
    let backend = Backend::start();
    let ca = TestCa::new(dir.path());
    let flags = [
        "--store-deadline",
        "1s",
        "--shutdown-grace",
        "3s",
        "--test-store-stall-file",
        stall.to_str().unwrap(),
    ];
    let porter = Porter::start(&data, &flags);
    ca.serve(&data, "keep.test", &backend.addr);
    let client = ca.client(&[b"http/1.1"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let get = |porter: &Porter| {
        runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                https_get(client.clone(), porter.https, "keep.test", "/"),
            )
            .await
        })
    };
    let plain = |porter: &Porter, path: &str| {
        let started = Instant::now();
        let code = plain_status(porter.http, "keep.test", path);
        (code, started.elapsed())
    };
    let served = |porter: &Porter| get(porter).is_ok_and(|r| r.is_ok_and(|(s, _, _)| s == 200));
    wait_served(&porter, &ca, "keep.test");

    // The disk stops answering while Porter serves.
    std::fs::write(&stall, b"").unwrap();
    let started = Instant::now();
    let (status, body) = add_site(&porter, "new.test", &backend.addr, false);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("did not finish"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(get(&porter).unwrap().unwrap().0, 200);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    let (code, took) = plain(&porter, "/.well-known/acme-challenge/some-token");
    assert!(took < Duration::from_secs(3), "{code} after {took:?}");
    // Plain HTTP for a site with a certificate redirects to HTTPS.
    assert_eq!(code, "308");
    let (status, body) = porter.api("GET", "/v1/status", None);
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert!(
        health["store"]["stalled_operations"].as_u64().unwrap() >= 1,
        "{health}"
    );
    let (status, took) = porter.stop_within(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    eprintln!("stopped {took:?} after SIGTERM with the store stalled");

    // Started on a store that does not answer: nothing is loaded, so requests are answered
    // 503 (handshakes refused) within the deadline instead of waiting.
    let porter = Porter::start(&data, &flags);
    let (code, took) = plain(&porter, "/");
    assert_eq!(code, "503", "after {took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    let (code, took) = plain(&porter, "/.well-known/acme-challenge/some-token");
    assert_eq!(code, "503", "after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let started = Instant::now();
    assert!(
        get(&porter).unwrap().is_err(),
        "nothing to serve keep.test with"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    std::fs::remove_file(&stall).unwrap();
    wait_until(
        Duration::from_secs(10),
        "keep.test is served once the store answers",
        || served(&porter),
    );
    let (status, body) = add_site(&porter, "new.test", &backend.addr, false);
    assert_eq!(status, 201, "{body}");
    let (status, _) = porter.stop_within(Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

/// Every folder under `dir` (and `dir`) is 0700 and every file 0600.
fn assert_private(dir: &Path) {
    let meta = std::fs::metadata(dir).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o700, "{}", dir.display());
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            assert_private(&entry.path());
        } else if meta.is_file() {
            assert_eq!(meta.mode() & 0o777, 0o600, "{}", entry.path().display());
        }
    }
}

fn chmod_tree(dir: &Path, dirs: u32, files: u32) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dirs)).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.metadata().unwrap().is_dir() {
            chmod_tree(&entry.path(), dirs, files);
        } else {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(files)).unwrap();
        }
    }
}

/// Starts Porter (as `command` runs it) on `data`, stores a site with its key, and checks that
/// nothing in the data dir is open to other users.
fn check_private_data_dir(command: &[&str], data: &Path, ca: &TestCa, upstream: &str) {
    let porter = Porter::start_as(command, data, &[]);
    let (chain, key) = ca.issue(&["private.test"]);
    let (status, body) = add_site(&porter, "private.test", upstream, false);
    assert_eq!(status, 201, "{body}");
    let cert = serde_json::json!({
        "domain": "private.test",
        "chain_pem": std::fs::read_to_string(chain).unwrap(),
        "key_pem": std::fs::read_to_string(key).unwrap(),
    });
    let (status, body) = porter.api("POST", "/v1/certs", Some(&cert.to_string()));
    assert_eq!(status, 201, "{body}");
    assert_private(data);
    let (status, _) = porter.stop_within(Duration::from_secs(15));
    assert!(status.success(), "{status}");
}

#[test]
fn the_data_dir_is_private_to_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start();
    let ca = TestCa::new(dir.path());
    let data = dir.path().join("data");
    check_private_data_dir(&[porter_bin()], &data, &ca, &backend.addr);

    // A data dir left open to others is closed again at start.
    chmod_tree(&data, 0o755, 0o644);
    let porter = Porter::start(&data, &[]);
    assert_private(&data);
    assert!(listed(&porter).contains("private.test"));
    let (status, _) = porter.stop_within(Duration::from_secs(15));
    assert!(status.success(), "{status}");

    if nix::unistd::geteuid().is_root() {
        // As an unprivileged user too.
        let user = Nobody::in_dir(dir.path());
        let (home, nobody) = (&user.home, user.command());
        check_private_data_dir(&nobody, &home.join("data"), &ca, &backend.addr);

        // A data dir of another user is refused.
        let out = Command::new(porter_bin())
            .arg("--data-dir")
            .arg(home.join("data"))
            .args(SERVE_ON_LOOPBACK)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("belongs to uid 65534"), "{stderr}");

        // A store its user cannot write: the error names the store and the cause.
        let db = home.join("data/store/db");
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o400)).unwrap();
        for args in [&SERVE_ON_LOOPBACK[..], &["site", "list"]] {
            let out = Command::new(nobody[0])
                .args(&nobody[1..])
                .arg("--data-dir")
                .arg(home.join("data"))
                .args(args)
                .output()
                .unwrap();
            assert!(!out.status.success());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(&format!(
                    "cannot open the store in {}",
                    home.join("data/store").display()
                )) && stderr.contains("Permission denied"),
                "{args:?}: {stderr}"
            );
        }
    } else {
        eprintln!(
            "not root: the data dir was checked as this user only (root also checks it as nobody)"
        );
    }
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs at {}", at.display());
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A temporary directory with a tmpfs of `size` mounted in it (the tests that fill a disk).
fn small_disk(size: &str) -> (tempfile::TempDir, Tmpfs) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts a small tmpfs: run the suite as root (CI does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("disk"), size);
    (dir, disk)
}

/// Stops `porter`, starts a server on `data` again and checks it lists `sites`.
fn same_after_a_restart(porter: Porter, data: &Path, sites: &BTreeSet<String>) {
    let (status, _) = porter.stop_within(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    let porter = Porter::start(data, &[]);
    assert_eq!(&listed(&porter), sites, "the same after a restart");
    let (status, _) = porter.stop_within(Duration::from_secs(15));
    assert!(status.success(), "{status}");
}

/// Fills the filesystem of `dir` with one file until it refuses more.
fn fill(path: &Path) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    for _ in 0..100_000 {
        if file
            .write_all(&block)
            .and_then(|()| file.sync_all())
            .is_err()
        {
            return;
        }
    }
    panic!("the filesystem never filled up");
}

#[test]
fn writes_work_again_once_a_full_disk_has_room() {
    let (dir, disk) = small_disk("16m");
    let data = disk.0.join("data");
    let backend = Backend::start();
    let ca = TestCa::new(dir.path());
    let porter = Porter::start(&data, &[]);
    ca.serve(&data, "keep.test", &backend.addr);
    wait_served(&porter, &ca, "keep.test");
    let add = |name: &str| add_site(&porter, name, &backend.addr, false);
    let health =
        || -> Value { serde_json::from_str(&porter.api("GET", "/v1/status", None).1).unwrap() };

    let filler = disk.0.join("filler");
    fill(&filler);
    let mut refused = None;
    for i in 0..50 {
        let (status, body) = add(&format!("full{i}.test"));
        if status != 201 {
            refused = Some((status, body));
            break;
        }
    }
    let (status, body) = refused.expect("a write on a full disk must fail");
    assert_eq!(status, 500, "{body}");
    assert_eq!(health()["store"]["ok"], false, "{}", health());
    let status = porter.ok(&["status"]);
    assert!(status.contains("store: writes failing"), "{status}");
    let client = ca.client(&[b"http/1.1"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (status, _, _) = runtime
        .block_on(https_get(client, porter.https, "keep.test", "/"))
        .unwrap();
    assert_eq!(status, 200, "existing sites keep serving on a full disk");
    let (status, body) = add("still-full.test");
    assert_eq!(status, 500, "{body}");

    std::fs::remove_file(&filler).unwrap();
    let (status, body) = add("after.test");
    assert_eq!(
        status, 201,
        "the store must write again without a restart: {body}"
    );
    assert_eq!(health()["store"]["ok"], true, "{}", health());
    assert!(porter.ok(&["status"]).contains("store: ok"));
    let sites = listed(&porter);
    assert!(
        sites.contains("after.test") && sites.contains("keep.test"),
        "{sites:?}"
    );
    same_after_a_restart(porter, &data, &sites);
}

/// The operator's reproduction: a disk filled with `dd`, then writes of ~360 KiB each (a site's
/// six error pages) refused; once the filler is gone, the next write works at once and reads
/// never stall, through the API and the CLI alike.
#[test]
fn a_full_disk_under_large_writes_heals_without_a_restart() {
    let (dir, disk) = small_disk("20m");
    let data = disk.0.join("data");
    let backend = Backend::start();
    let porter = Porter::start(&data, &[]);
    let (status, body) = add_site(&porter, "pages.test", &backend.addr, false);
    assert_eq!(status, 201, "{body}");
    // A body this large goes to curl as a file (one argument may not exceed 128 KiB).
    let body_file = dir.path().join("pages.json");
    let pages = |round: usize| -> String {
        let mut pages = serde_json::Map::new();
        for (i, code) in ["401", "403", "429", "502", "503", "504"]
            .iter()
            .enumerate()
        {
            // Different bytes each time, as real edits are.
            let text: String = (0..60 * 1024)
                .map(|j| char::from(b'a' + ((i * 7 + j * 13 + round) % 26) as u8))
                .collect();
            pages.insert((*code).to_owned(), Value::String(text));
        }
        let body = serde_json::json!({ "error_pages": pages }).to_string();
        std::fs::write(&body_file, body).unwrap();
        format!("@{}", body_file.display())
    };
    let filler = disk.0.join("filler");
    fill(&filler);
    let mut refused = 0;
    for round in 0..20 {
        let (status, body) = porter.api("PATCH", "/v1/sites/pages.test", Some(&pages(round)));
        if status == 500 {
            refused += 1;
            assert!(
                body.contains("No space left on device") || body.contains("disk"),
                "{body}"
            );
        } else {
            assert_eq!(status, 200, "{body}");
        }
    }
    assert!(refused > 0, "a full disk refuses large writes");

    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let (status, body) = add_site(&porter, "after.test", &backend.addr, false);
    assert_eq!(status, 201, "the store writes again at once: {body}");
    let (status, body) = porter.api("PATCH", "/v1/sites/pages.test", Some(&pages(99)));
    assert_eq!(status, 200, "{body}");
    eprintln!("recovered {:?} after the disk was freed", freed.elapsed());
    let sites = listed(&porter);
    assert!(
        sites.contains("after.test") && sites.contains("pages.test"),
        "{sites:?}"
    );
    let cli = cli_within(&data, &["site", "list", "--json"]);
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    same_after_a_restart(porter, &data, &sites);
}
