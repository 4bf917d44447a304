//! The access log and Porter's own JSON logs, with real clients (curl, many at once) over
//! plain HTTP and TLS: one line per request in both formats with the facts the issue names,
//! SIGHUP reopening a file logrotate moved away (and not stopping Porter), and a log that
//! cannot be opened refused at start.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The lines of `path` (none when it does not exist yet).
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Porter with a plain site `a.test` and a TLS site `b.test`, logging to `log` in `format`.
fn setup(dir: &Path, log: &Path, format: &str) -> (Porter, TestCa, Backend) {
    let ca = TestCa::new(dir);
    let backend = Backend::start();
    let porter = Porter::start(
        &dir.join("data"),
        &[
            "--access-log",
            log.to_str().unwrap(),
            "--access-log-format",
            format,
        ],
    );
    porter.ok(&["site", "add", "a.test", "--upstream", &backend.addr]);
    ca.serve(&porter.data_dir, "b.test", &backend.addr);
    wait_until(Duration::from_secs(5), "both sites are served", || {
        plain_status(porter.http, "a.test", "/") == "200"
            && https_status(&porter, &ca.ca_path(), "/") == "200"
    });
    (porter, ca, backend)
}

fn https_status(porter: &Porter, ca: &Path, path: &str) -> String {
    let port = porter.https.port();
    status_code(&[
        "--cacert",
        ca.to_str().unwrap(),
        "--resolve",
        &format!("b.test:{port}:127.0.0.1"),
        &format!("https://b.test:{port}{path}"),
    ])
}

#[test]
fn every_request_leaves_one_json_line_with_its_facts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let (porter, ca, _backend) = setup(dir.path(), &log, "json");
    let before = {
        wait_until(
            Duration::from_secs(5),
            "the readiness requests are logged",
            || lines(&log).len() >= 2,
        );
        lines(&log).len()
    };

    // 16 clients at once, each 4 plain and 4 TLS requests.
    let ca = ca.ca_path();
    std::thread::scope(|scope| {
        for client in 0..16 {
            let (porter, ca) = (&porter, ca.as_path());
            scope.spawn(move || {
                for n in 0..4 {
                    let path = format!("/c{client}/n{n}");
                    assert_eq!(plain_status(porter.http, "a.test", &path), "200");
                    assert_eq!(https_status(porter, ca, &path), "200");
                }
            });
        }
    });
    wait_until(Duration::from_secs(5), "128 more lines", || {
        lines(&log).len() == before + 128
    });
    let entries: Vec<serde_json::Value> = lines(&log)[before..]
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    for entry in &entries {
        assert_eq!(entry["status"], 200, "{entry}");
        assert_eq!(entry["method"], "GET");
        assert_eq!(entry["client"], "127.0.0.1");
        assert!(entry["time"].as_str().unwrap().ends_with('Z'), "{entry}");
        assert!(entry["duration_ms"].as_f64().unwrap() > 0.0);
        assert!(entry["upstream_ms"].as_f64().unwrap() > 0.0);
        assert!(entry["user_agent"].as_str().unwrap().starts_with("curl/"));
        let target = entry["target"].as_str().unwrap();
        // The backend answers "hello from backend PATH".
        let body = format!("hello from backend {target}");
        assert_eq!(entry["bytes_out"], body.len(), "{entry}");
        assert_eq!(entry["bytes_in"], 0);
        match entry["site"].as_str().unwrap() {
            "a.test" => {
                assert_eq!(entry["tls"], serde_json::Value::Null);
                assert_eq!(entry["protocol"], "HTTP/1.1");
            }
            "b.test" => {
                assert_eq!(entry["tls"], "TLSv1.3");
                assert_eq!(entry["resumed"], false);
                assert_eq!(entry["protocol"], "HTTP/2.0");
            }
            other => panic!("site {other}"),
        }
    }
    // Each request once.
    let mut targets: Vec<String> = entries
        .iter()
        .map(|e| format!("{} {}", e["site"], e["target"]))
        .collect();
    targets.sort();
    targets.dedup();
    assert_eq!(targets.len(), 128);
}

#[test]
fn combined_lines_and_sighup_reopens_a_moved_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let (porter, _ca, _backend) = setup(dir.path(), &log, "combined");
    assert_eq!(plain_status(porter.http, "a.test", "/before"), "200");
    wait_until(Duration::from_secs(5), "the request is logged", || {
        lines(&log).iter().any(|l| l.contains("/before"))
    });
    let line = lines(&log)
        .into_iter()
        .find(|l| l.contains("/before"))
        .unwrap();
    // client, identity, user, [time], "request", status, bytes, "referer", "agent", then
    // Porter's additions: site, duration, upstream time.
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains("] \"GET /before HTTP/1.1\" 200 26 \"-\" \"curl/"),
        "{line}"
    );
    assert!(line.contains("\" a.test 0."), "{line}");

    // logrotate: move the file away, then SIGHUP.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &porter.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_until(Duration::from_secs(5), "a new file after SIGHUP", || {
        // Requests until one lands in the new file (the signal is handled asynchronously).
        plain_status(porter.http, "a.test", "/after") == "200" && log.exists()
    });
    wait_until(
        Duration::from_secs(5),
        "the request is in the new file",
        || lines(&log).iter().any(|l| l.contains("/after")),
    );
    assert!(lines(&rotated).iter().any(|l| l.contains("/before")));
    // SIGHUP did not stop Porter.
    assert_eq!(plain_status(porter.http, "a.test", "/"), "200");
    let (status, _) = porter.stop_within(Duration::from_secs(15));
    assert!(status.success(), "{status}");
}

#[test]
fn an_access_log_that_cannot_be_opened_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(porter_bin())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(SERVE_ON_LOOPBACK)
        .args(["--access-log", "/nonexistent-dir/access.log"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot open --access-log") && stderr.contains("nonexistent-dir"),
        "{stderr}"
    );
}

#[test]
fn porter_logs_json_lines_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let child = Running::new(
        Command::new(porter_bin())
            .args(["--log-format", "json", "--data-dir"])
            .arg(&data)
            .args(SERVE_ON_LOOPBACK)
            .env("PORTER_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_until(Duration::from_secs(15), "porter is serving", || {
        data.join("admin.json").exists()
    });
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = child.into_inner().wait_with_output().unwrap();
    // Every line of Porter's own is a JSON object with time, level and message.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logged: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        logged.iter().any(|l| l["message"] == "porter is serving"),
        "{stderr}"
    );
    for line in &logged {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
    }
}
