//! The CLI and admin API through the real binary: bad input is refused with a clear error and
//! changes nothing (with and without a running server), `kill -9` loses no committed change,
//! bind errors name their flag, the admin API wants its token, and root's commands on the
//! service user's data dir leave every file there the service user's.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// What the store holds, as listed.
fn state(data: &Path) -> (String, String) {
    (
        ok(data, &["--json", "site", "list"]),
        lasting_certs(data).to_string(),
    )
}

/// Runs a command that must fail; returns its stderr.
fn refused(data: &Path, args: &[&str]) -> String {
    let out = cli(data, args);
    assert!(!out.status.success(), "porter {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

fn check_bad_input_changes_nothing(data: &Path, ca: &TestCa, upstream: &str) {
    let (chain, key) = ca.issue(&["a.test"]);
    let (_, other_key) = ca.issue(&["a.test"]);
    let (b_chain, b_key) = ca.issue(&["b.test"]);
    let garbage = data.parent().unwrap().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_owned();
    ok(data, &["site", "add", "a.test", "--upstream", upstream]);
    ok(
        data,
        &[
            "cert",
            "import",
            "a.test",
            "--cert",
            &p(&chain),
            "--key",
            &p(&key),
        ],
    );
    let before = state(data);

    for (args, says) in [
        (
            vec!["site", "add", "a..test", "--upstream", upstream],
            "invalid domain name",
        ),
        (
            vec!["site", "add", "127.0.0.1", "--upstream", upstream],
            "IP addresses",
        ),
        (
            vec!["site", "add", "x.test:443", "--upstream", upstream],
            "no port",
        ),
        (
            vec!["site", "add", "a.*.test", "--upstream", upstream],
            "leftmost label",
        ),
        (
            vec!["site", "add", "b.test", "--upstream", "127.0.0.1"],
            "invalid upstream",
        ),
        (
            vec!["site", "add", "b.test", "--upstream", "127.0.0.1:1"],
            "unreachable",
        ),
        (
            vec!["site", "add", "a.test", "--upstream", upstream],
            "already exists",
        ),
        (vec!["site", "remove", "nope.test"], "does not exist"),
        (
            vec![
                "cert",
                "import",
                "a.test",
                "--cert",
                &p(&garbage),
                "--key",
                &p(&key),
            ],
            "not valid PEM",
        ),
        (
            vec![
                "cert",
                "import",
                "a.test",
                "--cert",
                &p(&chain),
                "--key",
                &p(&other_key),
            ],
            "does not match",
        ),
        (
            vec![
                "cert",
                "import",
                "a.test",
                "--cert",
                &p(&b_chain),
                "--key",
                &p(&b_key),
            ],
            "does not cover a.test",
        ),
        (
            vec![
                "cert",
                "import",
                "b.test",
                "--cert",
                &p(&b_chain),
                "--key",
                &p(&b_key),
            ],
            "add the site before",
        ),
    ] {
        let stderr = refused(data, &args);
        assert!(
            stderr.contains(says),
            "porter {args:?}: {stderr:?} should say {says:?}"
        );
    }
    assert_eq!(
        state(data),
        before,
        "refused commands must leave the store unchanged"
    );
}

#[test]
fn bad_input_is_refused_and_changes_nothing_with_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let porter = Porter::start(&dir.path().join("data"), &[]);
    check_bad_input_changes_nothing(&porter.data_dir, &ca, &backend.addr);
}

#[test]
fn bad_input_is_refused_and_changes_nothing_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    ok(&dir.path().join("data"), &["init"]);
    check_bad_input_changes_nothing(&dir.path().join("data"), &ca, &backend.addr);
}

#[test]
fn kill_9_loses_no_committed_change() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let data = dir.path().join("data");
    let porter = Porter::start(&data, &[]);
    for i in 0..20 {
        porter.ok(&[
            "site",
            "add",
            &format!("s{i}.test"),
            "--upstream",
            &backend.addr,
        ]);
    }
    let (chain, key) = ca.issue(&["s0.test"]);
    porter.ok(&[
        "cert",
        "import",
        "s0.test",
        "--cert",
        chain.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    porter.ok(&["site", "remove", "s19.test"]);
    let before = state(&data);
    porter.kill9();

    // The stale discovery file points at nothing: the CLI falls back to the store itself.
    assert_eq!(state(&data), before);
    let porter = Porter::start(&data, &[]);
    assert_eq!(state(&data), before);
    let listed = porter.ok(&["site", "list"]);
    assert_eq!(listed.lines().count(), 1 + 19, "{listed}");
    let (status, ..) = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(https_get(ca.client(&[b"h2"]), porter.https, "s0.test", "/"))
        .unwrap();
    assert_eq!(status, 200);
}

#[test]
fn changes_made_without_a_server_are_served_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start();
    let data = dir.path().join("data");
    ok(&data, &["init"]);
    ok(
        &data,
        &["site", "add", "offline.test", "--upstream", &backend.addr],
    );
    let porter = Porter::start(&data, &[]);
    let (_, body) = curl(&[
        "-H",
        "Host: offline.test",
        &format!("http://{}/", porter.http),
    ]);
    assert_eq!(body, "hello from backend /");
    // With the server running, the CLI goes through its admin API (sled allows one process).
    ok(&data, &["site", "remove", "offline.test"]);
    wait_until(Duration::from_secs(1), "the removal is live", || {
        plain_status(porter.http, "offline.test", "/") == "404"
    });
}

/// Every entry under `dir` (and `dir`): path, owner, group and mode.
fn owners(dir: &Path) -> Vec<(std::path::PathBuf, u32, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir).unwrap();
    let mut all = vec![(
        dir.to_path_buf(),
        meta.uid(),
        meta.gid(),
        meta.mode() & 0o7777,
    )];
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            all.extend(owners(&entry.unwrap().path()));
        }
    }
    all
}

#[test]
fn root_runs_commands_on_the_service_users_data_dir_as_its_owner() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test checks what root may do on a service user's data dir: run the suite as root (CI does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start();
    let ca = TestCa::new(dir.path());
    let user = Nobody::in_dir(dir.path());
    let (home, nobody) = (&user.home, user.command());
    // The service's data dir, made by its own server, with a site; then the server stops.
    let data = home.join("data");
    let porter = Porter::start_as(&nobody, &data, &[]);
    porter.ok(&["site", "add", "svc.test", "--upstream", &backend.addr]);
    let (status, _) = porter.stop_within(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    let before: std::collections::HashMap<_, _> = owners(&data)
        .into_iter()
        .map(|(path, _, _, mode)| (path, mode))
        .collect();

    // Root repairs it with no server running. Its input files are root's alone.
    let private = dir.path().join("root-only");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (chain, key) = ca.issue(&["root.test"]);
    let (chain, key) = (
        std::fs::copy(&chain, private.join("chain.pem")).map(|_| private.join("chain.pem")),
        std::fs::copy(&key, private.join("key.pem")).map(|_| private.join("key.pem")),
    );
    let (chain, key) = (chain.unwrap(), key.unwrap());
    ok(
        &data,
        &[
            "site",
            "add",
            "root.test",
            "--upstream",
            &backend.addr,
            "--no-acme",
        ],
    );
    ok(
        &data,
        &[
            "cert",
            "import",
            "root.test",
            "--cert",
            chain.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    let sites = ok(&data, &["site", "list"]);
    assert!(
        sites.contains("svc.test") && sites.contains("root.test"),
        "{sites}"
    );
    assert!(ok(&data, &["cert", "status"]).contains("root.test"));
    ok(&data, &["init"]);
    let backup = private.join("backup.json");
    ok(
        &data,
        &["store", "export", "--output", backup.to_str().unwrap()],
    );
    let text = std::fs::read_to_string(&backup).unwrap();
    assert!(text.contains("root.test") && text.contains("svc.test"));
    // A copy of the service's store, into a folder of the service user's.
    let copy = home.join("copy");
    let copied = ok(
        &data,
        &[
            "store",
            "copy",
            "--from",
            &format!("sled:{}", data.join("store").display()),
            "--to",
            &format!("sled:{}", copy.display()),
        ],
    );
    assert!(copied.contains("2 sites, 1 certificates"), "{copied}");
    let copy_owners = owners(&copy);
    assert!(
        copy_owners
            .iter()
            .all(|(_, uid, gid, _)| (*uid, *gid) == (65534, 65534)),
        "{copy_owners:?}"
    );
    assert_eq!(
        cli(&data, &["status"]).status.code(),
        Some(3),
        "no server runs"
    );
    assert_eq!(
        cli(&data, &["cert", "status", "--check"]).status.code(),
        Some(3),
        "no server runs"
    );

    // Nothing under the data dir is root's; what was there keeps its mode, what is new is
    // private.
    let after = owners(&data);
    assert!(after.len() >= before.len(), "{after:?}");
    for (path, uid, gid, mode) in &after {
        assert_eq!(
            (*uid, *gid),
            (65534, 65534),
            "{} is not nobody's",
            path.display()
        );
        match before.get(path) {
            Some(was) => assert_eq!(mode, was, "{} changed its mode", path.display()),
            None => assert_eq!(
                mode & 0o077,
                0,
                "{} is open to others: {mode:o}",
                path.display()
            ),
        }
    }

    // `serve` as root is still refused there, and says how to run it.
    let out = std::process::Command::new(porter_bin())
        .arg("--data-dir")
        .arg(&data)
        .args(SERVE_ON_LOOPBACK)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("belongs to uid 65534") && stderr.contains("runs as the data dir's owner"),
        "{stderr}"
    );
    // The service user's server starts on it and serves what root added.
    let porter = Porter::start_as(&nobody, &data, &[]);
    let sites = porter.ok(&["site", "list"]);
    assert!(
        sites.contains("root.test") && sites.contains("svc.test"),
        "{sites}"
    );
    wait_until(
        Duration::from_secs(5),
        "the imported certificate is served",
        || {
            let rows: serde_json::Value =
                serde_json::from_str(&porter.ok(&["--json", "cert", "status", "root.test"]))
                    .unwrap();
            rows[0]["served"] == true
        },
    );
    let (status, _) = porter.stop_within(Duration::from_secs(15));
    assert!(status.success(), "{status}");
}

#[test]
fn a_port_that_cannot_be_bound_is_named_by_its_flag() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for flag in ["--http", "--https", "--admin"] {
        let mut args = SERVE_ON_LOOPBACK.to_vec();
        let at = args.iter().position(|a| *a == flag).unwrap();
        args[at + 1] = &addr;
        let stderr = refused(&dir.path().join("data"), &args);
        assert!(
            stderr.contains(&format!("cannot bind {flag} {addr}")),
            "{stderr}"
        );
    }
    let stderr = refused(
        &dir.path().join("data"),
        &["serve", "--admin", "0.0.0.0:2019"],
    );
    assert!(stderr.contains("only on loopback"), "{stderr}");
}

#[test]
fn admin_api_requires_the_token_and_keeps_it_private() {
    let dir = tempfile::tempdir().unwrap();
    let porter = Porter::start(&dir.path().join("data"), &[]);
    let token_file = porter.data_dir.join("admin.token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let url = format!("http://{}/v1/sites", porter.admin);
    assert_eq!(status_code(&[&url]), "401");
    assert_eq!(
        status_code(&["-H", "Authorization: Bearer wrong", &url]),
        "401"
    );
    let token = std::fs::read_to_string(&token_file).unwrap();
    let (_, body) = curl(&["-H", &format!("Authorization: Bearer {token}"), &url]);
    assert_eq!(body, "[]");
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let porter = Porter::start(&dir.path().join("data"), &[]);
    let data = porter.data_dir.clone();
    let status = porter.stop();
    assert!(status.success(), "{status}");
    assert!(
        !data.join("admin.json").exists(),
        "the discovery file is removed at shutdown"
    );
}

#[test]
fn the_admin_api_can_listen_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start();
    let socket = dir.path().join("admin.sock");
    let admin = format!("unix:{}", socket.display());
    // The harness passes --admin on TCP first; the later flag wins.
    let porter = Porter::start(&dir.path().join("data"), &["--admin", &admin]);
    assert_eq!(porter.admin, admin);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    porter.ok(&["site", "add", "u.test", "--upstream", &backend.addr]);
    assert!(porter.ok(&["site", "list"]).contains("u.test"));
}

#[test]
fn acme_settings_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let not_pem = dir.path().join("root.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let mut base = SERVE_ON_LOOPBACK.to_vec();
    base.push("--acme-agree-tos");
    for (extra, says) in [
        (
            vec!["--acme-directory", "http://ca.test/dir"],
            "https:// URL",
        ),
        (vec!["--acme-email", "not-an-email"], "not an email address"),
        (vec!["--acme-challenge", "dns-01"], "http-01 or tls-alpn-01"),
        (vec!["--acme-key-type", "dsa"], "ecdsa-p256 or rsa-2048"),
        (vec!["--acme-eab-kid", "kid-1"], "--acme-eab-hmac"),
        (vec!["--acme-ca-root", "/nonexistent.pem"], "no such file"),
        (
            vec!["--acme-ca-root", not_pem.to_str().unwrap()],
            "holds no certificate",
        ),
    ] {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(extra.iter());
        let stderr = refused(&data, &args);
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
    }
}

#[test]
fn commands_never_create_a_store_and_say_where_they_looked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("elsewhere");
    let code = |out: &std::process::Output| out.status.code().unwrap_or(-1);
    for args in [
        &[
            "site",
            "add",
            "a.test",
            "--upstream",
            "127.0.0.1:1",
            "--allow-unreachable",
        ][..],
        &["site", "list"],
        &["cert", "status"],
        &["status"],
    ] {
        let out = cli(&data, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 4, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&data.display().to_string()) && stderr.contains("porter init"),
            "{args:?} names where it looked and what to do: {stderr}"
        );
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
    // With --json, the error is JSON (on stderr; stdout stays empty).
    let out = cli(&data, &["--json", "site", "list"]);
    assert_eq!(code(&out), 4);
    assert!(out.stdout.is_empty());
    let error: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["kind"], "not_found", "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("no Porter store"),
        "{error}"
    );

    // `init` creates it; then each kind of failure has its own code.
    assert!(ok(&data, &["init"]).contains("created an empty store"));
    assert!(
        ok(&data, &["init"]).contains("already"),
        "init twice is harmless"
    );
    let refused = cli(
        &data,
        &["site", "add", "not a name", "--upstream", "127.0.0.1:1"],
    );
    assert_eq!(
        code(&refused),
        3,
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let missing = cli(&data, &["site", "remove", "nothing.test"]);
    assert_eq!(
        code(&missing),
        4,
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let usage = cli(&data, &["site", "add"]);
    assert_eq!(
        code(&usage),
        2,
        "{}",
        String::from_utf8_lossy(&usage.stderr)
    );
    // The same codes through a running server's API.
    let porter = Porter::start(&data, &[]);
    assert_eq!(code(&porter.cli(&["site", "remove", "nothing.test"])), 4);
    let json_refused = porter.cli(&[
        "--json",
        "site",
        "add",
        "x..test",
        "--upstream",
        "127.0.0.1:1",
    ]);
    assert_eq!(code(&json_refused), 3);
    let error: serde_json::Value = serde_json::from_slice(&json_refused.stderr).unwrap();
    assert_eq!(error["kind"], "refused", "{error}");
}

#[test]
fn serve_help_groups_its_flags_and_shows_the_store_flags_once() {
    let dir = tempfile::tempdir().unwrap();
    let help = ok(&dir.path().join("data"), &["serve", "--help"]);
    let heading_at = |heading: &str| {
        help.lines()
            .position(|l| l == heading)
            .unwrap_or_else(|| panic!("no heading {heading:?}:\n{help}"))
    };
    // Each flag under its heading: after it, before the next one.
    let headings = [
        ("Listeners:", "--https "),
        ("TLS:", "--hsts-default "),
        ("ACME:", "--acme-email "),
        ("Limits:", "--max-connections "),
        ("Fleet:", "--node-addr "),
        ("WAF:", "--waf-default "),
        ("Logs and metrics:", "--access-log "),
        ("Store (every command):", "--etcd-ca "),
    ];
    for (heading, flag) in headings {
        let at = heading_at(heading);
        let flag_at = help
            .lines()
            .position(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("no {flag}:\n{help}"));
        let next = help.lines().skip(at + 1).position(|l| l.ends_with(':'));
        assert!(
            flag_at > at && next.is_none_or(|n| flag_at < at + 1 + n),
            "{flag} is not under {heading}:\n{help}"
        );
    }
    // The store flags, global to every command, are shown once, and so in a command's help.
    let site_help = ok(&dir.path().join("data"), &["site", "add", "--help"]);
    for flag in [
        "--data-dir ",
        "--store ",
        "--etcd-ca ",
        "--etcd-cert ",
        "--etcd-key ",
        "--etcd-user ",
        "--etcd-lease-ttl ",
        "--node ",
    ] {
        for text in [&help, &site_help] {
            let shown = text
                .lines()
                .filter(|l| l.trim_start().starts_with(flag))
                .count();
            assert_eq!(shown, 1, "{flag}:\n{text}");
        }
    }
    assert!(
        help.contains("[env: PORTER_HSTS_DEFAULT=]") && help.contains("[default: off]"),
        "{help}"
    );
    let top = ok(&dir.path().join("data"), &["--help"]);
    assert!(
        top.contains("Exit codes:") && top.contains("5  unavailable"),
        "{top}"
    );
}

#[test]
fn cert_status_fits_100_columns_and_shows_every_column_when_wide() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let data = dir.path().join("data");
    let long = "a-rather-long-customer-name.shop.example.test";
    ca.serve(&data, "a.test", &backend.addr);
    ca.serve(&data, long, &backend.addr);
    let porter = Porter::start(&data, &[]);
    porter.ok(&["site", "add", "new.test", "--upstream", &backend.addr]);

    let table = porter.ok(&["cert", "status"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert_eq!(
        lines[0]
            .split("  ")
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>(),
        ["DOMAIN", "STATE", "EXPIRES IN", "ISSUER", "NEXT RENEWAL"],
        "{table}"
    );
    for line in &lines {
        assert!(
            line.chars().count() <= 100,
            "{} columns: {line}",
            line.len()
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("a.test") && l.contains("valid")),
        "{table}"
    );
    assert!(lines.iter().any(|l| l.starts_with("new.test")), "{table}");
    let wide = porter.ok(&["cert", "ls", "--wide"]);
    for column in [
        "SOURCE",
        "KEY",
        "RENEW AT",
        "OCSP",
        "SERVED",
        "LAST ERROR / NOTE",
    ] {
        assert!(wide.lines().next().unwrap().contains(column), "{wide}");
    }
    assert!(wide.contains(long), "--wide shows names whole: {wide}");
}

#[test]
fn cert_status_check_with_json_prints_the_result_as_json_and_exits_as_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let data = dir.path().join("data");
    ca.serve(&data, "a.test", &backend.addr);
    let porter = Porter::start(&data, &[]);
    let check = |extra: &[&str]| {
        let out = porter.cli(&[&["--json", "cert", "status", "--check"][..], extra].concat());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code(), report)
    };
    let (code, report) = check(&[]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["state"], "OK", "{report}");
    assert_eq!(report["exit_code"], 0, "{report}");
    assert_eq!(report["certificates"], 1, "{report}");

    // The test CA's certificates expire within 100 days: a warning, about a.test.
    let (code, report) = check(&["--warn", "100d"]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["state"], "WARNING", "{report}");
    assert_eq!(report["exit_code"], 1, "{report}");
    let finding = &report["findings"][0];
    assert_eq!(finding["level"], "WARNING", "{report}");
    assert_eq!(finding["domain"], "a.test", "{report}");
    assert!(
        finding["problem"]
            .as_str()
            .unwrap()
            .starts_with("expires in"),
        "{report}"
    );

    // No server: UNKNOWN, still as JSON.
    assert!(porter.stop().success());
    let out = cli(&data, &["--json", "cert", "status", "--check"]);
    assert_eq!(out.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["state"], "UNKNOWN", "{report}");
}

#[test]
fn on_off_flags_take_on_and_off_and_still_true_and_false() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start();
    let data = dir.path().join("data");
    ok(&data, &["init"]);
    ok(
        &data,
        &["site", "add", "a.test", "--upstream", &backend.addr],
    );
    let site = || -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&ok(&data, &["--json", "site", "ls"])).unwrap()[0]
            .clone()
    };
    for (value, compress, acme) in [
        ("on", true, true),
        ("off", false, false),
        ("true", true, true),
        ("false", false, false),
    ] {
        ok(
            &data,
            &[
                "site",
                "update",
                "a.test",
                "--compress",
                value,
                "--acme",
                value,
            ],
        );
        let site = site();
        assert_eq!(
            site["features"]["compress"].as_bool().unwrap_or(false),
            compress,
            "--compress {value}: {site}"
        );
        assert_eq!(site["acme"], acme, "--acme {value}: {site}");
    }
    let usage = cli(
        &data,
        &["site", "update", "a.test", "--compress", "yes please"],
    );
    assert_eq!(usage.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&usage.stderr).contains("give on or off"),
        "{}",
        String::from_utf8_lossy(&usage.stderr)
    );
    // `ls` is `list` for every listing.
    assert_eq!(ok(&data, &["site", "ls"]), ok(&data, &["site", "list"]));
    for listing in [["app", "ls"], ["dns", "ls"], ["cert", "ls"], ["node", "ls"]] {
        ok(&data, &listing);
    }
}

#[test]
fn an_error_without_a_kind_exits_1_and_a_cut_connection_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&data, &["init"]);
    // An I/O error has no kind: 1, and `failed` in JSON.
    let out = cli(
        &data,
        &["--json", "store", "import", "/nonexistent/backup.json"],
    );
    assert_eq!(out.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["kind"], "failed", "{error}");

    // A server whose admin API closes the connection before answering: worth a retry.
    let porter = Porter::start(&data, &[]);
    let cutting = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let discovery_file = data.join("admin.json");
    let mut discovery: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&discovery_file).unwrap()).unwrap();
    discovery["admin"] = cutting.local_addr().unwrap().to_string().into();
    std::fs::write(&discovery_file, discovery.to_string()).unwrap();
    let cutter = std::thread::spawn(move || {
        let (connection, _) = cutting.accept().unwrap();
        drop(connection);
    });
    let out = porter.cli(&["site", "list"]);
    cutter.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("retry"), "{stderr}");
}
