//! Running under systemd: the unit file in `dist/` passes `systemd-analyze verify` without a
//! warning, the README's install script does what it says on a temporary root, and Porter speaks the `Type=notify` protocol to a real datagram socket: `READY=1`
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
fn the_install_script_installs_on_a_temporary_root() {
    require("systemd-analyze", "systemd");
    require("useradd", "passwd");
    assert!(
        is_root(),
        "the install test makes a system user (useradd --root): run the tests as root, as CI does"
    );
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    // The accounts the new one joins, as on the machine.
    for file in ["passwd", "group", "shadow", "gshadow", "login.defs"] {
        let _ = std::fs::copy(format!("/etc/{file}"), etc.join(file));
    }
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/install.sh");
    let install = || {
        let out = Command::new(script)
            .args([
                "--root",
                root.path().to_str().unwrap(),
                "--binary",
                porter_bin(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    install();
    // Again, as an upgrade does: nothing fails, one user.
    install();
    let installed = root.path().join("usr/local/bin/porter");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    let version = Command::new(&installed).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("porter "));
    let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap();
    let users: Vec<&str> = passwd
        .lines()
        .filter(|l| l.starts_with("porter:"))
        .collect();
    assert_eq!(users.len(), 1, "{passwd}");
    assert!(
        users[0].ends_with(":/var/lib/porter:/usr/sbin/nologin"),
        "{}",
        users[0]
    );
    let unit = etc.join("systemd/system/porter.service");
    assert_eq!(std::fs::read(&unit).unwrap(), std::fs::read(UNIT).unwrap());
    let wants = etc.join("systemd/system/multi-user.target.wants/porter.service");
    assert!(std::fs::symlink_metadata(&wants).is_ok(), "enabled");
    assert_eq!(
        std::fs::read_to_string("/etc/passwd").unwrap(),
        host_passwd,
        "the machine's own users are untouched"
    );
    // The README runs this very script.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains("sudo dist/install.sh"),
        "the README's install steps are the script"
    );
}

/// Whether the effective user is root.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        .unwrap_or(false)
}

/// `porter serve` on `data` with a notify socket of its own (in `dir`) to hear it on.
fn notified_server(
    dir: &std::path::Path,
    data: &std::path::Path,
) -> (std::process::Child, UnixDatagram) {
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let child = Command::new(porter_bin())
        .arg("--data-dir")
        .arg(data)
        .args(SERVE_ON_LOOPBACK)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    (child, socket)
}

#[test]
fn readiness_and_stopping_are_notified() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let data = dir.path().join("data");
    ca.serve(&data, "ready.test", &backend.addr);
    let (mut child, socket) = notified_server(dir.path(), &data);
    let _stop = StopOnDrop(child.id());
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

/// SIGTERM to a process this test started (directly or not), when the test ends, passed or
/// failed.
struct StopOnDrop(u32);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if !gone(self.0) {
            let _ = Command::new("kill").arg(self.0.to_string()).status();
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while !gone(self.0) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn sigusr2_upgrades_in_place_and_systemd_follows_the_new_main_process() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let data = dir.path().join("data");
    ca.serve(&data, "up.test", &backend.addr);
    let (mut old, socket) = notified_server(dir.path(), &data);
    let _stop_old = StopOnDrop(old.id());
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 within 20 s");
    assert!(buf[..n].starts_with(b"READY=1"));
    let discovery = |data: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(data.join("admin.json")).unwrap_or_default())
            .unwrap_or_default()
    };
    let https = discovery(&data)["https"].as_str().unwrap().to_owned();
    let port = https.rsplit(':').next().unwrap().to_owned();
    let get = || {
        let resolve = format!("up.test:{port}:127.0.0.1");
        let url = format!("https://up.test:{port}/");
        status_code(&[
            "--cacert",
            ca.ca_path().to_str().unwrap(),
            "--resolve",
            &resolve,
            &url,
        ])
    };
    assert_eq!(get(), "200");

    let signal = Command::new("kill")
        .args(["-USR2", &old.id().to_string()])
        .status()
        .unwrap();
    assert!(signal.success());
    // The successor says who the main process is now, with its readiness.
    let n = socket
        .recv(&mut buf)
        .expect("the successor's READY=1 within 20 s");
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    let successor: u32 = message
        .strip_prefix("MAINPID=")
        .and_then(|rest| rest.split('\n').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("MAINPID= first: {message:?}"));
    assert_ne!(successor, old.id());
    // Not this test's child: stopped here whatever happens below.
    let _stop_successor = StopOnDrop(successor);
    assert!(message.contains("\nREADY=1"), "{message}");
    // The old one exits cleanly and says nothing more to systemd.
    let mut status = None;
    wait_until(Duration::from_secs(20), "the old server exits", || {
        status = old.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success());
    socket.set_nonblocking(true).unwrap();
    let after = socket
        .recv(&mut buf)
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    assert!(
        after.is_err(),
        "the old server said {after:?} after handing over"
    );
    socket.set_nonblocking(false).unwrap();
    // The successor serves on the same port and is the one the CLI finds.
    assert_eq!(get(), "200");
    assert_eq!(discovery(&data)["pid"], successor);
    // Stopping it is the service stopping.
    let stop = Command::new("kill")
        .arg(successor.to_string())
        .status()
        .unwrap();
    assert!(stop.success());
    let n = socket.recv(&mut buf).expect("STOPPING=1 within 20 s");
    assert!(buf[..n].starts_with(b"STOPPING=1"));
    wait_until(Duration::from_secs(20), "the successor exits", || {
        gone(successor)
    });
}
