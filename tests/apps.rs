//! Account daemons through the real binary with real daemons (tests/fixtures/app.py, Python's
//! HTTP server with misbehaviours on demand, and Debian's nginx): on-demand start, idle stop,
//! crash restarts and crash loops, start timeout, commands that do not say where to listen
//! and apps that listen elsewhere, health checks, stop of the whole process group,
//! replacement under a steady request stream with zero failed requests, and no orphan after
//! Porter stops (or a stale one after it was killed).

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

struct Setup {
    _dir: tempfile::TempDir,
    porter: Porter,
}

fn setup() -> Setup {
    require("python3", "python3");
    let dir = tempfile::tempdir().unwrap();
    let porter = Porter::start(&dir.path().join("data"), &[]);
    Setup { _dir: dir, porter }
}

fn script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/app.py")
}

impl Setup {
    /// `app add ID` running app.py with `flags`, and a site `ID.test` for it.
    fn app(&self, id: &str, flags: &str, settings: &[&str]) {
        let command = format!("python3 {} {{port}} {flags}", script());
        let mut args = vec!["app", "add", id, "--command", &command, "--allow-root"];
        args.extend(settings);
        self.porter.ok(&args);
        self.porter
            .ok(&["site", "add", &format!("{id}.test"), "--app", id]);
    }

    /// GET http://HOST/PATH through Porter: status code and body.
    fn get(&self, host: &str, path: &str) -> (String, String) {
        let (_, out) = curl(&[
            "-w",
            "\n%{http_code}",
            "-H",
            &format!("Host: {host}"),
            &format!("http://{}{path}", self.porter.http),
        ]);
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
        (code.to_owned(), body.to_owned())
    }

    /// The status line and headers of `GET /` on `host` over plain HTTP.
    fn response_headers(&self, host: &str) -> String {
        let (_, headers) = curl(&[
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            &format!("Host: {host}"),
            &format!("http://{}/", self.porter.http),
        ]);
        headers
    }

    fn status(&self, id: &str) -> Value {
        serde_json::from_str(&self.porter.ok(&["--json", "app", "status", id])).unwrap()
    }
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// Pids of the processes in process group `pgid`.
fn group(pgid: u64) -> Vec<u64> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let after = &stat[stat.rfind(')').unwrap() + 2..];
                let fields: Vec<&str> = after.split_whitespace().collect();
                fields[0] != "Z" && fields[2].parse::<u64>().ok() == Some(pgid)
            })
        })
        .collect()
}

#[test]
fn an_app_starts_on_the_first_request_stops_when_idle_and_starts_again() {
    let s = setup();
    s.app("web", "", &["--idle-timeout", "2s"]);
    assert_eq!(s.status("web")["state"], "stopped");
    let started = Instant::now();
    let (code, body) = s.get("web.test", "/first");
    let cold = started.elapsed();
    assert_eq!(code, "200", "{body}");
    let first: Value = serde_json::from_str(&body).unwrap();
    let status = s.status("web");
    assert_eq!(status["state"], "ready", "{status}");
    assert_eq!(status["pid"], first["pid"]);
    assert!(status["memory_kib"].as_u64().unwrap() > 0, "{status}");

    // The daemon's own time to listen, measured the same way without Porter.
    let port = common::acme::free_port();
    let alone = Instant::now();
    let child = common::Running::new(
        std::process::Command::new("python3")
            .args([script(), &port.to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(Duration::from_secs(10), "python listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let own = alone.elapsed();
    drop(child);
    eprintln!(
        "cold start: first response after {cold:?}; the daemon alone listens after {own:?}; Porter's share ~{:?}",
        cold.saturating_sub(own)
    );

    let pid = first["pid"].as_u64().unwrap();
    wait_until(Duration::from_secs(10), "the idle app is stopped", || {
        s.status("web")["state"] == "stopped"
    });
    assert!(!alive(pid), "the idle daemon's process is gone");
    let (code, body) = s.get("web.test", "/again");
    assert_eq!(code, "200");
    let again: Value = serde_json::from_str(&body).unwrap();
    assert_ne!(again["pid"], first["pid"], "a new process");
    let logs = s.porter.ok(&["app", "logs", "web"]);
    assert!(
        logs.contains("request /first") && logs.contains("request /again"),
        "{logs}"
    );
}

#[test]
fn crashes_restart_and_a_crash_loop_fails_only_that_app_until_restarted() {
    let s = setup();
    s.app("crashy", "--crash-after 1", &[]);
    s.app("steady", "", &[]);
    for crash in 1..=5u64 {
        let (code, body) = s.get("crashy.test", "/");
        assert_eq!(code, "200", "request {crash}: {body}");
        wait_until(Duration::from_secs(10), "the crash is noticed", || {
            s.status("crashy")["restarts"].as_u64() == Some(crash)
        });
    }
    let status = s.status("crashy");
    assert_eq!(status["state"], "failed", "{status}");
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("crashing on purpose"),
        "the last log lines are kept: {status}"
    );
    assert!(
        status["last_exit"].as_str().unwrap().contains("status 3"),
        "{status}"
    );
    let headers = s.response_headers("crashy.test");
    assert!(headers.starts_with("HTTP/1.1 503"), "{headers}");
    assert!(headers.to_lowercase().contains("retry-after:"), "{headers}");
    assert!(
        !headers.contains("crashing on purpose"),
        "no log line reaches the internet"
    );
    assert_eq!(
        s.get("steady.test", "/").0,
        "200",
        "other apps are untouched"
    );

    s.porter.ok(&["app", "restart", "crashy"]);
    wait_until(Duration::from_secs(10), "the restarted app serves", || {
        s.get("crashy.test", "/").0 == "200"
    });
}

#[test]
fn an_app_that_never_becomes_ready_gets_503_with_retry_after() {
    let s = setup();
    s.app("stuck", "--never-listen", &["--start-timeout", "1s"]);
    let started = Instant::now();
    let headers = s.response_headers("stuck.test");
    assert!(headers.starts_with("HTTP/1.1 503"), "{headers}");
    assert!(
        headers.to_lowercase().contains("retry-after: 5"),
        "{headers}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited for the start timeout"
    );
    // The status says why, also once the failed start is stopped.
    wait_until(
        Duration::from_secs(10),
        "the failed start is stopped",
        || s.status("stuck")["state"] == "stopped",
    );
    let status = s.status("stuck");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("did not listen on 127.0.0.1:") && error.contains("nor on any other"),
        "{status}"
    );
}

#[test]
fn an_app_whose_command_does_not_say_where_to_listen_is_refused() {
    let s = setup();
    let refused = |out: std::process::Output, what: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{what}: {stderr}");
        stderr.into_owned()
    };
    let stderr = refused(
        s.porter.cli(&[
            "app",
            "add",
            "noport",
            "--command",
            "python3 -m http.server",
            "--allow-root",
        ]),
        "no port",
    );
    assert!(
        stderr.contains("{port}") && stderr.contains("$PORT") && stderr.contains("--socket"),
        "the error says how to fix it: {stderr}"
    );
    let (code, body) = s.porter.api(
        "POST",
        "/v1/apps/noport",
        Some(r#"{"command": "python3 -m http.server", "allow_root": true}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("{port}"), "{body}");

    // Changing a good app's command to one without the port is refused and changes nothing.
    let good = format!("python3 {} {{port}}", script());
    s.porter
        .ok(&["app", "add", "good", "--command", &good, "--allow-root"]);
    refused(
        s.porter.cli(&[
            "app",
            "update",
            "good",
            "--command",
            "python3 -m http.server",
        ]),
        "update",
    );
    let (code, body) = s.porter.api(
        "PATCH",
        "/v1/apps/good",
        Some(r#"{"command": "python3 -m http.server"}"#),
    );
    assert_eq!(code, 400, "{body}");
    // A socket app names its socket its own way (a config file, say): no port needed.
    let socket = s._dir.path().join("good.sock");
    s.porter.ok(&[
        "app",
        "update",
        "good",
        "--command",
        "python3 -m http.server",
        "--socket",
        socket.to_str().unwrap(),
    ]);
    // ... but going back to a port with that command is refused.
    refused(
        s.porter.cli(&["app", "update", "good", "--socket", ""]),
        "back to a port",
    );

    // Hostile commands: too long, a NUL byte, an unclosed quote, bytes that are not UTF-8.
    let long = format!("python3 -m http.server {{port}} {}", "x".repeat(70_000));
    let stderr = refused(
        s.porter
            .cli(&["app", "add", "long", "--command", &long, "--allow-root"]),
        "long",
    );
    assert!(
        stderr.contains("put it in a script") && stderr.len() < 1000,
        "the command is not echoed: {} bytes",
        stderr.len()
    );
    let (code, body) = s.porter.api(
        "POST",
        "/v1/apps/nul",
        Some(r#"{"command": "python3 -m http.server {port}\u0000x", "allow_root": true}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("NUL"), "{body}");
    let (code, body) = s.porter.api(
        "POST",
        "/v1/apps/nul",
        Some(r#"{"command": "python3 {port}", "env": ["A=\u0000"], "allow_root": true}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("NUL"), "{body}");
    refused(
        s.porter.cli(&[
            "app",
            "add",
            "quote",
            "--command",
            "python3 'x {port}",
            "--allow-root",
        ]),
        "unclosed quote",
    );
    let out = std::process::Command::new(porter_bin())
        .arg("--data-dir")
        .arg(&s.porter.data_dir)
        .args(["app", "add", "bytes", "--allow-root", "--command"])
        .arg(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(
                b"python3 {port} \xff\xfe",
            ),
        )
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");

    let list = s.porter.ok(&["app", "list"]);
    for id in ["noport", "long", "nul", "quote", "bytes"] {
        assert!(!list.contains(id), "{id} is not stored: {list}");
    }
    assert!(list.contains("good.sock"), "{list}");
}

#[test]
fn a_command_may_read_port_from_the_environment_or_as_a_variable() {
    let s = setup();
    // Read by a shell from the environment, or replaced by Porter where no shell runs.
    for (id, command) in [
        (
            "shell",
            "sh -c 'exec python3 -m http.server $PORT --bind 127.0.0.1'",
        ),
        ("plain", "python3 -m http.server ${PORT} --bind 127.0.0.1"),
    ] {
        s.porter
            .ok(&["app", "add", id, "--command", command, "--allow-root"]);
        s.porter
            .ok(&["site", "add", &format!("{id}.test"), "--app", id]);
        let (code, body) = s.get(&format!("{id}.test"), "/");
        assert_eq!(code, "200", "{id}: {body}");
        assert_eq!(s.status(id)["error"], Value::Null);
    }
}

#[test]
fn an_app_that_listens_elsewhere_fails_its_start_at_once_and_says_where() {
    let s = setup();
    let fixed = common::acme::free_port();
    // It mentions $PORT, ignores it, and takes its time to stop (SIGTERM stays ignored).
    let command = format!(
        "sh -c 'echo starting instead of $PORT; trap \"\" TERM; \
         exec python3 -m http.server {fixed} --bind 127.0.0.1'"
    );
    s.porter.ok(&[
        "app",
        "add",
        "elsewhere",
        "--command",
        &command,
        "--allow-root",
        "--stop-grace",
        "2s",
    ]);
    s.porter
        .ok(&["site", "add", "elsewhere.test", "--app", "elsewhere"]);

    // Visitors at once: each gets the 503 well before the 30 s start timeout, from one start.
    let visitors = 8;
    let s = std::sync::Arc::new(s);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(visitors));
    let answers: Vec<_> = (0..visitors)
        .map(|_| {
            let (s, barrier) = (s.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let started = Instant::now();
                let answer = s.get("elsewhere.test", "/");
                (answer, started.elapsed())
            })
        })
        .collect();
    for answer in answers {
        let ((code, body), took) = answer.join().unwrap();
        eprintln!("a visitor of an app listening elsewhere: {code} after {took:?}");
        assert_eq!(code, "503", "{body}");
        assert!(
            body.contains("does not listen where Porter expects"),
            "{body}"
        );
        assert!(
            !body.contains(&fixed.to_string()),
            "no address reaches the internet: {body}"
        );
        // Its start fails once it has listened elsewhere for 5 s, far within the 30 s timeout.
        assert!(took < Duration::from_secs(20), "{took:?}");
    }
    let status = s.status("elsewhere");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("listens on 127.0.0.1:{fixed}, not on 127.0.0.1:"))
            && error.contains("use {port} or $PORT"),
        "{status}"
    );
    let text = s.porter.ok(&["app", "status", "elsewhere"]);
    assert!(text.contains(&format!("127.0.0.1:{fixed}")), "{text}");
    let logs = s.porter.ok(&["app", "logs", "elsewhere"]);
    assert_eq!(
        logs.matches("starting instead of").count(),
        1,
        "one start for all the visitors: {logs}"
    );
    // The next visitor's start waits until the failed one has stopped (it would find the
    // port taken), and fails the same way.
    let (code, body) = s.get("elsewhere.test", "/");
    assert_eq!(code, "503", "{body}");
    assert!(
        body.contains("does not listen where Porter expects"),
        "{body}"
    );
    let status = s.status("elsewhere");
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("listens on 127.0.0.1:{fixed}, not on"))),
        "{status}"
    );
    let logs = s.porter.ok(&["app", "logs", "elsewhere"]);
    assert!(!logs.contains("Address already in use"), "{logs}");
    wait_until(
        Duration::from_secs(10),
        "the failed start is stopped",
        || std::net::TcpStream::connect(("127.0.0.1", fixed)).is_err(),
    );
}

#[test]
fn an_app_stored_before_the_rule_stays_usable_and_its_start_says_where_it_listens() {
    require("python3", "python3");
    let dir = tempfile::tempdir().unwrap();
    // A record without the port, as an older Porter stored it (through a backup).
    let old = dir.path().join("old");
    ok(&old, &["init"]);
    let good = format!("python3 {} {{port}}", script());
    ok(
        &old,
        &["app", "add", "legacy", "--command", &good, "--allow-root"],
    );
    let mut backup: Value = serde_json::from_str(&ok(&old, &["store", "export"])).unwrap();
    let fixed = common::acme::free_port().to_string();
    backup["apps"][0]["command"] =
        serde_json::json!(["python3", "-m", "http.server", fixed, "--bind", "127.0.0.1"]);
    let file = dir.path().join("backup.json");
    std::fs::write(&file, backup.to_string()).unwrap();
    let data = dir.path().join("data");
    ok(&data, &["init"]);
    ok(&data, &["store", "import", file.to_str().unwrap()]);

    let porter = Porter::start(&data, &[]);
    assert!(porter.ok(&["app", "list"]).contains("http.server"));
    porter.ok(&["app", "update", "legacy", "--start-timeout", "20s"]);
    porter.ok(&["site", "add", "legacy.test", "--app", "legacy"]);
    let started = Instant::now();
    let status = plain_status(porter.http, "legacy.test", "/");
    assert_eq!(status, "503");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "before its start timeout"
    );
    let out: Value =
        serde_json::from_str(&porter.ok(&["--json", "app", "status", "legacy"])).unwrap();
    let error = out["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("listens on 127.0.0.1:{fixed}, not on")),
        "{out}"
    );
}

#[test]
fn stopping_signals_the_whole_group_and_kills_what_ignores_it() {
    let s = setup();
    s.app("stubborn", "--ignore-term --fork", &["--stop-grace", "1s"]);
    assert_eq!(s.get("stubborn.test", "/").0, "200");
    let pid = s.status("stubborn")["pid"].as_u64().unwrap();
    wait_until(Duration::from_secs(5), "the forked child exists", || {
        group(pid).len() == 2
    });
    s.porter.ok(&["app", "stop", "stubborn"]);
    wait_until(Duration::from_secs(10), "the whole group is gone", || {
        group(pid).is_empty()
    });
}

#[test]
fn a_health_check_that_keeps_failing_restarts_the_app() {
    let s = setup();
    s.app(
        "sickly",
        "--unhealthy-after 1",
        &["--health", "http:/health", "--health-interval", "1s"],
    );
    assert_eq!(s.get("sickly.test", "/").0, "200");
    wait_until(
        Duration::from_secs(20),
        "the unhealthy app is restarted",
        || s.status("sickly")["restarts"].as_u64().unwrap_or(0) >= 1,
    );
    assert_eq!(s.get("sickly.test", "/").0, "200");
}

#[test]
fn an_update_replaces_the_app_without_failing_a_request() {
    let s = std::sync::Arc::new(setup());
    s.app("live", "", &["--env", "X=1", "--idle-timeout", "0"]);
    assert_eq!(s.get("live.test", "/").0, "200");
    // A slow request in flight on the old instance when the update comes.
    let slow = {
        let s = s.clone();
        std::thread::spawn(move || s.get("live.test", "/slow/2"))
    };
    wait_until(
        Duration::from_secs(10),
        "the slow request is in flight",
        || s.status("live")["in_flight"].as_u64() == Some(1),
    );
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stream = {
        let (s, sent) = (s.clone(), sent.clone());
        std::thread::spawn(move || {
            let mut results = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut after_switch = 0;
            while Instant::now() < deadline && after_switch < 30 {
                let (code, body) = s.get("live.test", "/");
                if body.contains("\"x\": \"2\"") {
                    after_switch += 1;
                }
                results.push((code, body));
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            results
        })
    };
    wait_until(Duration::from_secs(10), "the request stream runs", || {
        sent.load(std::sync::atomic::Ordering::Relaxed) >= 5
    });
    s.porter.ok(&["app", "update", "live", "--env", "X=2"]);
    let results = stream.join().unwrap();
    let (slow_code, slow_body) = slow.join().unwrap();
    assert_eq!(
        slow_code, "200",
        "the in-flight request finished: {slow_body}"
    );
    let failed: Vec<_> = results.iter().filter(|(code, _)| code != "200").collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        results.len()
    );
    assert!(
        results.iter().any(|(_, b)| b.contains("\"x\": \"1\"")),
        "served by the old one first"
    );
    assert!(
        results.last().unwrap().1.contains("\"x\": \"2\""),
        "then by the new one"
    );
    eprintln!(
        "{} requests across the replacement, none failed",
        results.len()
    );
}

#[test]
fn stopping_porter_leaves_no_orphan_and_a_restart_cleans_up_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let porter = Porter::start(&data, &[]);
    let s = Setup {
        _dir: tempfile::tempdir().unwrap(),
        porter,
    };
    s.app("orphan", "--fork", &["--idle-timeout", "0"]);
    assert_eq!(s.get("orphan.test", "/").0, "200");
    let pid = s.status("orphan")["pid"].as_u64().unwrap();
    wait_until(Duration::from_secs(5), "the forked child exists", || {
        group(pid).len() == 2
    });
    assert!(s.porter.stop().success());
    assert!(
        group(pid).is_empty(),
        "no process of the app is left after Porter stops"
    );

    // kill -9: the daemons outlive Porter; the next start stops them.
    let porter = Porter::start(&data, &[]);
    let s = Setup {
        _dir: tempfile::tempdir().unwrap(),
        porter,
    };
    assert_eq!(s.get("orphan.test", "/").0, "200");
    let pid = s.status("orphan")["pid"].as_u64().unwrap();
    s.porter.kill9();
    assert!(alive(pid), "a daemon outlives a killed Porter");
    let _porter = Porter::start(&data, &[]);
    wait_until(
        Duration::from_secs(5),
        "the stale daemon is stopped",
        || group(pid).is_empty(),
    );
    let pid_files = std::fs::read_dir(data.join("apps"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
        .count();
    assert_eq!(pid_files, 0, "stale pid files are removed");
}

#[test]
fn nginx_runs_as_an_account_daemon_on_a_unix_socket() {
    require("nginx", "nginx-light");
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nginx.sock");
    let d = dir.path().display();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; master_process off; pid {d}/nginx.pid; error_log stderr;\n\
             events {{}}\n\
             http {{ access_log off; client_body_temp_path {d}/b; proxy_temp_path {d}/p;\n\
             fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
             server {{ listen unix:{}; location / {{ return 200 \"nginx says hi\\n\"; }} }} }}\n",
            socket.display()
        ),
    )
    .unwrap();
    let command = format!("nginx -c {} -p {d}", conf.display());
    s.porter.ok(&[
        "app",
        "add",
        "nginx",
        "--command",
        &command,
        "--socket",
        socket.to_str().unwrap(),
        "--allow-root",
    ]);
    s.porter
        .ok(&["site", "add", "nginx.test", "--app", "nginx"]);
    let (code, body) = s.get("nginx.test", "/");
    assert_eq!((code.as_str(), body.as_str()), ("200", "nginx says hi\n"));
    s.porter.ok(&["app", "stop", "nginx"]);
    wait_until(Duration::from_secs(10), "nginx stopped", || {
        s.status("nginx")["state"] == "stopped"
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn websockets_to_an_app_survive_its_replacement_until_the_grace_period() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let s = setup();
    s.app(
        "chat",
        "",
        &[
            "--env",
            "X=old",
            "--idle-timeout",
            "0",
            "--stop-grace",
            "2s",
        ],
    );
    let tcp = tokio::net::TcpStream::connect(s.porter.http).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("ws://chat.test/ws", tcp)
        .await
        .unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("old:hi"));

    s.porter.ok(&["app", "update", "chat", "--env", "X=new"]);
    wait_until(
        Duration::from_secs(10),
        "new requests reach the new instance",
        || s.get("chat.test", "/").1.contains("\"x\": \"new\""),
    );
    // The open WebSocket still talks to the old instance ...
    ws.send(Message::text("still there")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("old:still there")
    );
    // ... until the grace period ends and the old instance is stopped.
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the old instance's WebSocket ends after the grace period"
    );
}

#[test]
fn apps_in_use_cannot_be_removed_and_root_is_never_the_silent_default() {
    let s = setup();
    s.app("used", "", &[]);
    let out = s.porter.cli(&["app", "remove", "used"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("used by used.test"),
        "{out:?}"
    );
    let out = s
        .porter
        .cli(&["app", "add", "rooty", "--command", "true", "--user", "root"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--allow-root"),
        "{out:?}"
    );
    s.porter.ok(&["site", "remove", "used.test"]);
    s.porter.ok(&["app", "remove", "used"]);

    let command = format!("python3 {} {{port}}", script());
    if nix::unistd::geteuid().is_root() {
        // As root: an app without --user and --allow-root is refused when it is defined
        // (not at its first visitor's request), and so is a user that does not exist ...
        for extra in [&[][..], &["--user", "no-such-user-here"]] {
            let mut args = vec!["app", "add", "norole", "--command", &command];
            args.extend(extra);
            let out = s.porter.cli(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(3), "{extra:?}: {stderr}");
            assert!(
                stderr.contains("would run as root") || stderr.contains("no such user"),
                "{stderr}"
            );
        }
        assert!(
            !s.porter.ok(&["app", "list"]).contains("norole"),
            "nothing stored"
        );
        // ... and one with --user runs as that user (from a copy of the script it can read,
        // wherever the checkout lives).
        let shared = tempfile::tempdir().unwrap();
        let readable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(shared.path(), readable).unwrap();
        let copy = shared.path().join("app.py");
        std::fs::copy(script(), &copy).unwrap();
        let command = format!("python3 {} {{port}}", copy.display());
        s.porter.ok(&[
            "app",
            "add",
            "nobody",
            "--command",
            &command,
            "--user",
            "nobody",
            "--dir",
            "/",
        ]);
        s.porter
            .ok(&["site", "add", "nobody.test", "--app", "nobody"]);
        assert_eq!(s.get("nobody.test", "/").0, "200");
        let pid = s.status("nobody")["pid"].as_u64().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid.split_whitespace().nth(1) == Some("65534"),
            "runs as nobody: {uid}"
        );
    } else {
        // Not root: switching users is impossible, and said so when the app is defined.
        let out = s.porter.cli(&[
            "app",
            "add",
            "other",
            "--command",
            &command,
            "--user",
            "nobody",
        ]);
        assert_eq!(out.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot switch users"));
    }
}

#[test]
fn a_site_moves_between_an_upstream_and_an_app_and_keeps_its_certificate() {
    let s = setup();
    let ca = TestCa::new(s._dir.path());
    let backend = Backend::start();
    let data = s.porter.data_dir.clone();
    ca.serve(&data, "moving.test", &backend.addr);
    let serial = || {
        let rows: serde_json::Value =
            serde_json::from_str(&s.porter.ok(&["--json", "cert", "status", "moving.test"]))
                .unwrap();
        rows[0]["serial"].as_str().unwrap().to_owned()
    };
    let https = || {
        let port = s.porter.https.port();
        curl(&[
            "--cacert",
            ca.ca_path().to_str().unwrap(),
            "--resolve",
            &format!("moving.test:{port}:127.0.0.1"),
            &format!("https://moving.test:{port}/"),
        ])
        .1
    };
    let issued = serial();
    assert_eq!(https(), "hello from backend /");

    let command = format!("python3 {} {{port}}", script());
    s.porter
        .ok(&["app", "add", "mover", "--command", &command, "--allow-root"]);
    // An app that does not exist, or an upstream beside the app with a weight out of range,
    // are refused and change nothing.
    let out = s
        .porter
        .cli(&["site", "update", "moving.test", "--app", "ghost"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let beside = format!("{},weight=0", backend.addr);
    let out = s.porter.cli(&[
        "site",
        "update",
        "moving.test",
        "--app",
        "mover",
        "--upstream",
        &beside,
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(https(), "hello from backend /");

    s.porter
        .ok(&["site", "update", "moving.test", "--app", "mover"]);
    wait_until(
        Duration::from_secs(10),
        "the app answers for the site",
        || https().contains("\"pid\""),
    );
    assert_eq!(serial(), issued, "the certificate stays");
    s.porter
        .ok(&["site", "update", "moving.test", "--upstream", &backend.addr]);
    wait_until(Duration::from_secs(5), "the upstream answers again", || {
        https() == "hello from backend /"
    });
    assert_eq!(serial(), issued);
    // The app is free again.
    s.porter.ok(&["app", "remove", "mover"]);
}
