//! Running under systemd: the unit file in `dist/` passes `systemd-analyze verify` without a
//! warning, and Porter speaks the `Type=notify` protocol to a real datagram socket: `READY=1`
//! only once it serves the sites already in its store, `STOPPING=1` when SIGTERM starts the
//! drain.

mod common;

use common::*;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/porter.service");

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    require("systemd-analyze", "systemd");
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(UNIT).unwrap();
    for needed in [
        "Type=notify",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/porter",
        "User=porter",
        "ExecStart=/usr/local/bin/porter serve",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed}");
    }
    // verify checks that the command exists: point it at the binary under test.
    let copy = dir.path().join("porter.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/porter", porter_bin())).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unknown keys are only warned about: any line about the unit is a defect.
    assert!(
        !stderr.contains("porter.service"),
        "systemd-analyze has remarks: {stderr}"
    );
}

#[test]
fn readiness_and_stopping_are_notified() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let data = dir.path().join("data");
    ca.serve(&data, "ready.test", &backend.addr);
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = Command::new(porter_bin())
        .arg("--data-dir")
        .arg(&data)
        .args(SERVE_ON_LOOPBACK)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 within 20 s");
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(message.starts_with("READY=1"), "{message}");
    // Ready means serving what the store holds.
    let discovery: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("admin.json")).unwrap()).unwrap();
    let https = discovery["https"].as_str().unwrap().to_owned();
    let port = https.rsplit(':').next().unwrap();
    let (served, body) = curl(&[
        "--cacert",
        ca.ca_path().to_str().unwrap(),
        "--resolve",
        &format!("ready.test:{port}:127.0.0.1"),
        &format!("https://ready.test:{port}/"),
    ]);
    assert!(served && body == "hello from backend /", "{body}");

    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let n = socket.recv(&mut buf).expect("STOPPING=1 at SIGTERM");
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(message.starts_with("STOPPING=1"), "{message}");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
