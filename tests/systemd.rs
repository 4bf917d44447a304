//! Running under systemd: the unit file in `dist/` passes `systemd-analyze verify` without a
//! warning; the README's install script installs into an empty root, where the unit verifies
//! as is, and upgrades it keeping the operator's `/etc/default/porter`, whose flags a real
//! systemd (a user manager of the test's own) hands to `porter serve`; and Porter speaks the
//! `Type=notify` protocol to a real datagram socket: `READY=1` only once it serves the sites
//! already in its store, `STOPPING=1` when SIGTERM starts the drain.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
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

const INSTALL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/install.sh");

/// Runs `dist/install.sh --root root` with the binary under test, failing the test if it fails.
fn install_into(root: &Path) {
    let out = Command::new(INSTALL)
        .arg("--root")
        .arg(root)
        .args(["--binary", porter_bin()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The operator's flags, as an operator would write them.
const OPERATORS_FILE: &str = "# mine\nPORTER_FLAGS=\"--acme-email ops@example.com\"\n";

#[test]
fn the_install_script_installs_on_an_empty_root_and_upgrades_keeping_the_operators_flags() {
    require("systemd-analyze", "systemd");
    require("systemd-sysusers", "systemd");
    assert!(
        is_root(),
        "the install test makes a system user in a temporary root: run the tests as root, as CI does"
    );
    // Empty, as a packager's image root starts (useradd --root refused one: no /etc to lock).
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    install_into(root);
    let installed = root.join("usr/local/bin/porter");
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&installed), 0o755);
    let version = Command::new(&installed).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("porter "));
    let defaults = root.join("etc/default/porter");
    assert_eq!(
        std::fs::read(&defaults).unwrap(),
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/porter.default")).unwrap()
    );
    assert_eq!(mode(&defaults), 0o600, "it may hold secrets");

    // The operator's flags, then an upgrade: nothing fails, the flags stay, one user.
    std::fs::write(&defaults, OPERATORS_FILE).unwrap();
    install_into(root);
    assert_eq!(std::fs::read_to_string(&defaults).unwrap(), OPERATORS_FILE);
    let etc = root.join("etc");
    let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap();
    let users: Vec<&str> = passwd
        .lines()
        .filter(|l| l.starts_with("porter:"))
        .collect();
    assert_eq!(users.len(), 1, "{passwd}");
    let fields: Vec<&str> = users[0].split(':').collect();
    assert_eq!(
        fields[5..],
        ["/var/lib/porter", "/usr/sbin/nologin"],
        "{}",
        users[0]
    );
    // With its own group (useradd on a root without /etc/group made one without).
    let group = std::fs::read_to_string(etc.join("group")).unwrap();
    assert!(
        group
            .lines()
            .any(|l| l == format!("porter:x:{}:", fields[3])),
        "{group}"
    );
    let shadow = std::fs::read_to_string(etc.join("shadow")).unwrap();
    assert!(
        shadow.lines().any(|l| l.starts_with("porter:!")),
        "locked: {shadow}"
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

    // The unit verifies in that root, as is, once the image has systemd's own units and
    // /bin/kill (ExecReload) as a Debian image has them; with its binary gone it does not.
    std::fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg("/usr/lib/systemd/system")
        .arg(root.join("usr/lib/systemd/"))
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::copy("/usr/bin/kill", root.join("usr/bin/kill")).expect("/usr/bin/kill (procps)");
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    let verify = || {
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg("porter.service")
            .output()
            .unwrap()
    };
    let out = verify();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{stderr}");
    std::fs::remove_file(&installed).unwrap();
    let out = verify();
    assert!(
        !out.status.success(),
        "verified without its binary: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The README runs this very script.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains("sudo dist/install.sh"),
        "the README's install steps are the script"
    );
}

/// A systemd user manager of its own: in a mount namespace whose /run says "booted with
/// systemd" (this machine's PID 1 may be something else), with its runtime dir, home and unit
/// dir in `dir`. Stopped (SIGTERM: it stops its units, then exits) when the guard drops.
fn systemd_user_manager(dir: &Path) -> (std::process::Child, StopOnDrop) {
    require("unshare", "util-linux");
    let manager = Command::new("unshare")
        .args([
            "--mount",
            "sh",
            "-c",
            "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && exec /usr/lib/systemd/systemd --user",
        ])
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .env("HOME", dir)
        // The unit dir first, then the usual ones (the trailing colon).
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.join("units").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stop = StopOnDrop(manager.id());
    let private = dir.join("run/systemd/private");
    let mut manager = manager;
    wait_until(Duration::from_secs(20), "systemd --user listens", || {
        if let Ok(Some(status)) = manager.try_wait() {
            panic!("systemd --user exited with {status}");
        }
        private.exists()
    });
    (manager, stop)
}

#[test]
fn the_flags_in_etc_default_porter_reach_porter_serve_under_systemd() {
    require("systemctl", "systemd");
    require("systemd-sysusers", "systemd");
    assert!(
        is_root(),
        "this test runs systemd in a mount namespace of its own: run the tests as root, as CI does"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    install_into(&root);
    let data = dir.path().join("data");
    // Flags in PORTER_FLAGS (split at spaces), a setting as its PORTER_ variable.
    let flags = format!(
        "--data-dir {} --http 127.0.0.1:0 --https 127.0.0.1:0 --admin 127.0.0.1:0",
        data.display()
    );
    std::fs::write(
        root.join("etc/default/porter"),
        format!("# mine\nPORTER_FLAGS=\"{flags}\"\nPORTER_METRICS=127.0.0.1:0\n"),
    )
    .unwrap();
    // The installed unit's lines that start Porter and hand it its environment, with its two
    // paths in the root; the user, capabilities and sandbox are the system manager's to apply.
    let installed =
        std::fs::read_to_string(root.join("etc/systemd/system/porter.service")).unwrap();
    let kept = [
        "Type=",
        "NotifyAccess=",
        "Environment=",
        "EnvironmentFile=",
        "ExecStart=",
        "KillMode=",
    ];
    let mut unit = String::new();
    for line in installed.lines() {
        if line.starts_with('[') || kept.iter().any(|k| line.starts_with(k)) {
            unit.push_str(line);
            unit.push('\n');
        }
    }
    for (path, count) in [("/etc/default/porter", 1), ("/usr/local/bin/porter", 1)] {
        assert_eq!(unit.matches(path).count(), count, "{path} in {unit}");
        unit = unit.replace(path, &format!("{}{path}", root.display()));
    }
    // Porter's output where a failure can show it (this manager has no journal).
    let log = dir.path().join("porter.log");
    unit = unit.replacen(
        "[Service]\n",
        &format!(
            "[Service]\nStandardOutput=append:{0}\nStandardError=append:{0}\n",
            log.display()
        ),
        1,
    );
    std::fs::create_dir_all(dir.path().join("units")).unwrap();
    std::fs::write(dir.path().join("units/porter.service"), &unit).unwrap();

    let (_manager, _stop_manager) = systemd_user_manager(dir.path());
    let systemctl = |args: &[&str]| {
        let out = Command::new("timeout")
            .arg("60")
            .args(["systemctl", "--user"])
            .args(args)
            .env("XDG_RUNTIME_DIR", dir.path().join("run"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "systemctl --user {args:?}: {}\nporter said: {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // Type=notify: this returns once Porter said READY=1.
    systemctl(&["start", "porter.service"]);
    let pid: u32 = systemctl(&["show", "--property=MainPID", "--value", "porter.service"])
        .parse()
        .unwrap();
    assert_ne!(pid, 0);
    let _stop_porter = StopOnDrop(pid);
    let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // ExecStart's words, with $PORTER_FLAGS split into the words of the operator's flags.
    let exec = installed
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    assert!(exec.contains(" $PORTER_FLAGS"), "{exec}");
    let expected: Vec<&str> = exec
        .split_whitespace()
        .skip(1)
        .flat_map(|word| match word {
            "$PORTER_FLAGS" => flags.split(' ').collect(),
            word => vec![word],
        })
        .collect();
    assert_eq!(
        argv[0],
        root.join("usr/local/bin/porter").display().to_string()
    );
    assert_eq!(argv[1..], expected, "{argv:?}");
    let discovery: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("admin.json")).unwrap()).unwrap();
    assert_eq!(discovery["pid"], pid);
    assert!(
        discovery["metrics"].as_str().is_some(),
        "PORTER_METRICS did not reach it: {discovery}"
    );
    systemctl(&["stop", "porter.service"]);
    wait_until(Duration::from_secs(20), "porter stops", || gone(pid));
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
fn notified_server(dir: &Path, data: &Path) -> (std::process::Child, UnixDatagram) {
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
    let n = recv(&socket, &mut buf).expect("READY=1 within 20 s");
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
    let n = recv(&socket, &mut buf).expect("STOPPING=1 at SIGTERM");
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(message.starts_with("STOPPING=1"), "{message}");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// The next datagram on `socket` (whose read timeout is 20 s), read again when a signal
/// interrupts the wait: a socket with a timeout is not restarted after one (signal(7)), and a
/// test binary's other tests' children exit while this one waits.
fn recv(socket: &UnixDatagram, buf: &mut [u8]) -> std::io::Result<usize> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match socket.recv(buf) {
            Err(e)
                if e.kind() == std::io::ErrorKind::Interrupted
                    && std::time::Instant::now() < deadline =>
            {
                continue
            }
            other => return other,
        }
    }
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

/// SIGTERM to every process serving `data` (its command line names it), when the test ends:
/// the successor of a server is no child of this test, and a test that fails before it learns
/// the successor's pid still stops it.
struct StopServing(std::path::PathBuf);

impl Drop for StopServing {
    fn drop(&mut self) {
        let data = self.0.as_os_str().as_encoded_bytes();
        let serving = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|line| line.split(|b| *b == 0).any(|arg| arg == data))
            });
        for pid in serving.collect::<Vec<_>>() {
            drop(StopOnDrop(pid));
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
    let _stop_successor = StopServing(data.clone());
    let mut buf = [0u8; 256];
    let n = recv(&socket, &mut buf).expect("READY=1 within 20 s");
    assert!(buf[..n].starts_with(b"READY=1"));
    let discovery = |data: &Path| -> serde_json::Value {
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
    let n = recv(&socket, &mut buf).expect("the successor's READY=1 within 20 s");
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    let successor: u32 = message
        .strip_prefix("MAINPID=")
        .and_then(|rest| rest.split('\n').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("MAINPID= first: {message:?}"));
    assert_ne!(successor, old.id());
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
    let n = recv(&socket, &mut buf).expect("STOPPING=1 within 20 s");
    assert!(buf[..n].starts_with(b"STOPPING=1"));
    wait_until(Duration::from_secs(20), "the successor exits", || {
        gone(successor)
    });
}
