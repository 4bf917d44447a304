//! `porter store export` and `import` with real processes: a backup taken while the server
//! runs and 8 clients add sites reproduces the sites, certificates and apps in a fresh data dir,
//! whose server then serves the imported certificate; the backup file is private; a non-empty
//! store and a tampered backup are refused and change nothing.

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// The listings an import must reproduce.
fn listings(data: &Path) -> (String, Value, String) {
    (
        ok(data, &["--json", "site", "list"]),
        lasting_certs(data),
        ok(data, &["--json", "app", "list"]),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_backup_taken_under_writes_restores_everything_into_a_fresh_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let data = dir.path().join("data");
    let porter = Porter::start(&data, &[]);
    ca.serve(&data, "kept.test", &backend.addr);
    porter.ok(&[
        "app",
        "add",
        "shop",
        "--command",
        "python3 -m http.server {port}",
        "--allow-root",
        "--idle-timeout",
        "5m",
    ]);
    porter.ok(&["site", "add", "shop.test", "--app", "shop"]);

    // Exported while 8 clients add sites: whatever the backup holds must import whole.
    let backup = dir.path().join("backup.json");
    std::fs::write(&backup, b"").unwrap();
    std::fs::set_permissions(&backup, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::thread::scope(|scope| {
        for c in 0..8 {
            let (porter, upstream) = (&porter, backend.addr.as_str());
            scope.spawn(move || {
                for n in 0..5 {
                    porter.ok(&[
                        "site",
                        "add",
                        &format!("w{c}-{n}.test"),
                        "--upstream",
                        upstream,
                    ]);
                }
            });
        }
        let out = porter.cli(&["store", "export", "--output", backup.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("private key"),
            "a warning of what it holds: {out:?}"
        );
    });
    assert_eq!(mode(&backup), 0o600, "an existing file is made private");
    // To stdout, redirected to a file: the file is made private too.
    let redirected = dir.path().join("redirected.json");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 022; {} --data-dir {} store export > {}",
            porter_bin(),
            data.display(),
            redirected.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(mode(&redirected), 0o600);
    let full: Value = serde_json::from_str(&std::fs::read_to_string(&redirected).unwrap()).unwrap();
    assert_eq!(full["sites"].as_array().unwrap().len(), 2 + 40);
    let before = listings(&data);
    drop(porter);

    // Into a fresh data dir.
    let fresh = dir.path().join("fresh");
    ok(&fresh, &["init"]);
    let out = ok(&fresh, &["store", "import", redirected.to_str().unwrap()]);
    assert!(
        out.contains("imported 1 apps, 42 sites, 1 certificates"),
        "{out}"
    );
    assert_eq!(listings(&fresh), before);
    // The first backup (taken under writes) imports whole too.
    let partial = dir.path().join("partial");
    ok(&partial, &["init"]);
    ok(&partial, &["store", "import", backup.to_str().unwrap()]);

    // The imported certificate serves.
    let porter = Porter::start(&fresh, &[]);
    let port = porter.https.port();
    let (served, body) = curl(&[
        "--cacert",
        ca.ca_path().to_str().unwrap(),
        "--resolve",
        &format!("kept.test:{port}:127.0.0.1"),
        &format!("https://kept.test:{port}/"),
    ]);
    assert!(served, "{body}");
    assert_eq!(body, "hello from backend /");

    // Into a store that is not empty: refused, through the running server too.
    let out = porter.cli(&["store", "import", redirected.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}

#[test]
fn a_tampered_backup_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let backend = Backend::start();
    let data = dir.path().join("data");
    ca.serve(&data, "a.test", &backend.addr);
    ca.serve(&data, "b.test", &backend.addr);
    let backup = dir.path().join("backup.json");
    ok(
        &data,
        &["store", "export", "--output", backup.to_str().unwrap()],
    );
    // b.test's key given to a.test: the key no longer matches the certificate.
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&backup).unwrap()).unwrap();
    let key_b = doc["certs"][1]["key"].clone();
    doc["certs"][0]["key"] = key_b;
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, doc.to_string()).unwrap();
    let fresh = dir.path().join("fresh");
    ok(&fresh, &["init"]);
    let out = cli(&fresh, &["store", "import", tampered.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not match"),
        "{out:?}"
    );
    assert_eq!(
        ok(&fresh, &["--json", "site", "list"]).trim(),
        "[]",
        "nothing written"
    );
    // Not a backup at all.
    std::fs::write(&tampered, b"{\"hello\": 1}").unwrap();
    let out = cli(&fresh, &["store", "import", tampered.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Porter backup"));
}
