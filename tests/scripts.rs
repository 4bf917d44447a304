//! The steps of `scripts/test.sh` (in `scripts/test-steps.sh`), run as the script runs them:
//! waiting for an apt lock that another process holds, within a bound, and running every test
//! binary of a crate with failing ones, ending with the list of what failed, and stopping what
//! a test left running.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test-steps.sh");

/// `bash` running `script` after sourcing the steps, as test.sh does (`set -euo pipefail`).
fn steps(script: &str) -> Command {
    let mut bash = Command::new("bash");
    bash.arg("-c")
        .arg(format!("set -euo pipefail; source {STEPS}; {script}"));
    bash
}

/// A process holding dpkg's frontend lock the way apt-get does (fcntl), until its stdin closes.
fn hold_the_dpkg_lock() -> Running {
    require("python3", "python3");
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import fcntl, signal, sys\n\
             signal.alarm(600)  # an apt of the machine's own holding it: fail, not hang\n\
             lock = open('/var/lib/dpkg/lock-frontend', 'a')\n\
             fcntl.lockf(lock, fcntl.LOCK_EX)\n\
             signal.alarm(0)\n\
             print('held', flush=True)\n\
             sys.stdin.read()\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "held\n", "the holder could not take the lock");
    Running::new(holder)
}

#[test]
fn the_apt_wait_waits_for_a_held_dpkg_lock_within_its_bound() {
    require("apt-get", "apt");
    let mut holder = hold_the_dpkg_lock();
    let holder_pid = holder.id();
    // What apt-get itself sees.
    let apt = Command::new("apt-get")
        .arg("check")
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&apt.stderr);
    assert!(
        !apt.status.success() && said.contains(&format!("held by process {holder_pid}")),
        "apt-get does not see the lock: {said}"
    );

    // Bounded: one second, then it gives up naming the holder.
    let started = Instant::now();
    let out = steps("wait_for_apt 1").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it did not give up");
    assert!(
        stderr.contains(&format!(
            "/var/lib/dpkg/lock-frontend is held by {holder_pid} (python3)"
        )),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // apt-get through the wait, as test.sh runs it: it says it waits, and runs apt-get once the
    // lock is released.
    let mut waiter = Running::new(
        steps("apt_get -qq check && echo free")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(waiter.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(
        line,
        format!(
            "waiting up to 600s for apt: /var/lib/dpkg/lock-frontend is held by {holder_pid} (python3)\n"
        )
    );
    assert!(waiter.try_wait().unwrap().is_none(), "it did not wait");
    drop(holder.stdin.take());
    holder.wait().unwrap();
    let released = Instant::now();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "free\n");
    assert!(waiter.wait().unwrap().success());
    assert!(released.elapsed() < Duration::from_secs(10));
}

/// Writes a crate with four test binaries into `dir`: `fails` (two failures), `passes`,
/// `aborts` (a crash, no test list), and `leaves` (passes, leaving a process running that holds
/// the output open).
fn crate_with_failing_tests(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"failing\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/lib.rs"), "").unwrap();
    for (name, source) in [
        (
            "fails",
            "#[test] fn first() { panic!() }\n#[test] fn fine() {}\n#[test] fn second() { panic!() }\n",
        ),
        ("passes", "#[test] fn passing() {}\n"),
        ("aborts", "#[test] fn crash() { std::process::abort() }\n"),
        (
            "leaves",
            "#[test] fn left() { std::process::Command::new(\"sleep\").arg(\"127\").spawn().unwrap(); }\n",
        ),
    ] {
        std::fs::write(dir.join(format!("tests/{name}.rs")), source).unwrap();
    }
}

#[test]
fn every_test_binary_runs_and_the_failures_are_listed_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    crate_with_failing_tests(dir.path());
    let started = Instant::now();
    let out = steps("cargo_test_all --offline")
        .current_dir(dir.path())
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(101), "{stdout}");
    // The process a test left running did not hold the run open (it would have for 127 s):
    // it is named and stopped.
    assert!(started.elapsed() < Duration::from_secs(120), "{stdout}");
    let left = stdout
        .split("processes the tests left running, stopped now:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no leftovers named: {stdout}"));
    assert!(
        left.starts_with("  ") && left.lines().next().unwrap().ends_with(" sleep 127"),
        "{stdout}"
    );
    let sleeping = Command::new("pgrep")
        .args(["-fx", "sleep 127"])
        .output()
        .unwrap();
    assert!(sleeping.stdout.is_empty(), "still running: {sleeping:?}");
    // Every binary ran, in cargo's order (alphabetical), the ones after failures too.
    for ran in [
        "tests/aborts.rs",
        "tests/fails.rs",
        "tests/leaves.rs",
        "tests/passes.rs",
    ] {
        assert!(
            stdout.contains(&format!("Running {ran}")),
            "{ran}: {stdout}"
        );
    }
    let summary = stdout
        .split("FAILED, by test binary")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary: {stdout}"));
    let listed: Vec<&str> = summary
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(
        listed,
        [
            "  --test aborts: (no test list: the binary crashed or was killed, see its output)",
            "  --test fails: first, second",
        ],
        "{stdout}"
    );
    // And the output still ends with cargo's verdict.
    assert!(
        stdout
            .trim_end()
            .ends_with("error: 2 targets failed:\n    `--test aborts`\n    `--test fails`"),
        "{stdout}"
    );
}
