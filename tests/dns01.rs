//! DNS-01 against real peers: Debian's `bind9` as the zone's authoritative server (RFC 2136
//! updates signed with a `tsig-keygen` key) and pebble asking it for every name. A wildcard and
//! its base name are issued at once (two values at one TXT name), their records are gone
//! afterwards, a record a crash left behind is removed, a wrong key and a server that does not
//! answer are clear errors, and what cannot work is refused at the API.

mod common;

use common::acme::{cert_row, Edge, PebbleOptions};
use common::bind::{tsig_keygen, Bind};
use common::*;
use std::time::{Duration, Instant};

/// bind serving `dns.test`, and pebble (asking that bind) with Porter in front of a backend.
fn start() -> (Bind, Edge, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let bind = Bind::start(&dir.path().join("bind"), "dns.test");
    let addr = bind.addr;
    let edge = Edge::start(
        move |http, https| PebbleOptions {
            dns_server: Some(addr),
            ..PebbleOptions::new(http, https)
        },
        &[],
    );
    (bind, edge, dir)
}

fn add_zone(edge: &Edge, bind: &Bind, key_file: &std::path::Path) {
    edge.porter().ok(&[
        "dns",
        "add",
        "dns.test",
        "--server",
        &bind.addr.to_string(),
        "--tsig-key-file",
        key_file.to_str().unwrap(),
    ]);
}

#[test]
fn a_wildcard_and_its_base_name_are_issued_over_dns01_at_once_and_the_records_are_removed() {
    let (bind, edge, _dir) = start();
    let porter = edge.porter();
    add_zone(&edge, &bind, &bind.key_file);
    // The key's name and algorithm come from the key file; the secret never comes back.
    let listed = porter.ok(&["--json", "dns", "list"]);
    let key = std::fs::read_to_string(&bind.key_file).unwrap();
    let secret = key.split('"').nth(3).unwrap();
    assert!(
        listed.contains("\"porter\"") && listed.contains("hmac-sha256"),
        "{listed}"
    );
    assert!(!listed.contains(secret), "the secret is listed: {listed}");
    let export = porter.ok(&["store", "export"]);
    assert!(export.contains("dns_zones"), "the backup keeps the zone");

    let started = Instant::now();
    porter.ok(&[
        "site",
        "add",
        "*.dns.test",
        "--upstream",
        &edge.backend.addr,
    ]);
    porter.ok(&[
        "site",
        "add",
        "dns.test",
        "--upstream",
        &edge.backend.addr,
        "--acme-challenge",
        "dns-01",
    ]);
    edge.wait_served("shop.dns.test", Duration::from_secs(60));
    edge.wait_served("dns.test", Duration::from_secs(60));
    eprintln!(
        "a wildcard and its base name issued over DNS-01 in {:?}",
        started.elapsed()
    );
    // Another name under the wildcard is served by the same certificate.
    edge.wait_served("blog.dns.test", Duration::from_secs(5));
    for domain in ["*.dns.test", "dns.test"] {
        let row = cert_row(porter, domain);
        assert_eq!(row["status"], "valid", "{row}");
        assert_eq!(row["challenge"], "dns-01", "{row}");
    }
    assert_eq!(cert_row(porter, "*.dns.test")["names"][0], "*.dns.test");
    // Each validation removed its own value once the CA had looked.
    assert_eq!(bind.challenge_txt("dns.test"), Vec::<String>::new());
}

#[test]
fn a_record_a_crash_left_is_removed_and_bad_keys_and_silent_servers_are_clear_errors() {
    let (bind, mut edge, dir) = start();
    let last_error = |edge: &Edge| {
        cert_row(edge.porter(), "*.dns.test")["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    // A key the server does not know: the update is refused, and cert status says why.
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, tsig_keygen("porter")).unwrap();
    add_zone(&edge, &bind, &wrong);
    edge.porter().ok(&[
        "site",
        "add",
        "*.dns.test",
        "--upstream",
        &edge.backend.addr,
    ]);
    wait_until(Duration::from_secs(30), "the wrong key's failure", || {
        last_error(&edge).contains("TSIG")
    });
    let error = last_error(&edge);
    assert!(
        error.contains("dns-01")
            && error.contains("zone dns.test")
            && error.contains(&bind.addr.to_string()),
        "{error}"
    );
    assert_eq!(bind.challenge_txt("dns.test"), Vec::<String>::new());

    // A server that does not answer: a timeout that names it.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    edge.porter().ok(&[
        "dns",
        "add",
        "dns.test",
        "--server",
        &silent_addr,
        "--tsig-key-file",
        bind.key_file.to_str().unwrap(),
    ]);
    edge.porter().ok(&["cert", "renew", "*.dns.test"]);
    wait_until(
        Duration::from_secs(40),
        "the silent server's failure",
        || last_error(&edge).contains(&silent_addr),
    );

    // The right key, and a TXT value left by an attempt that crashed after setting it: the
    // next attempt removes it before it validates. The crash's state is made with a backup:
    // the wildcard becomes `left.dns.test`, with the record listed as set and not removed.
    add_zone(&edge, &bind, &bind.key_file);
    bind.nsupdate_add_txt("_acme-challenge.left.dns.test", "left-by-a-crash");
    assert_eq!(bind.challenge_txt("left.dns.test"), vec!["left-by-a-crash"]);
    edge.porter.take().unwrap().stop();
    let data = edge.dir.path().join("data");
    let mut backup: serde_json::Value =
        serde_json::from_str(&ok(&data, &["store", "export"])).unwrap();
    let mut site = backup["sites"][0].clone();
    site["domain"] = "left.dns.test".into();
    site["challenge"] = "dns-01".into();
    backup["sites"] = serde_json::json!([site]);
    backup["acme_states"] = serde_json::json!([["left.dns.test", {
        "attempts": 0,
        "dns_records": [{
            "zone": "dns.test",
            "name": "_acme-challenge.left.dns.test",
            "value": "left-by-a-crash",
        }],
    }]]);
    let backup_file = dir.path().join("backup.json");
    std::fs::write(&backup_file, backup.to_string()).unwrap();
    std::fs::remove_dir_all(&data).unwrap();
    ok(&data, &["init"]);
    ok(&data, &["store", "import", backup_file.to_str().unwrap()]);
    edge.restart();
    edge.wait_served("left.dns.test", Duration::from_secs(60));
    assert_eq!(bind.challenge_txt("left.dns.test"), Vec::<String>::new());
}

#[test]
fn what_dns01_cannot_do_is_refused_at_the_api_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let porter = Porter::start(&data, &[]);
    let backend = Backend::start();
    let refused = |args: &[&str], says: &str| {
        let out = porter.cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    };
    // No zone: DNS-01 cannot be chosen; a wildcard cannot choose anything else.
    for (domain, challenge, says) in [
        ("a.dns.test", "dns-01", "no DNS zone covers it"),
        ("*.dns.test", "http-01", "only be validated over dns-01"),
        (
            "b.dns.test",
            "dns-02",
            "expected http-01, tls-alpn-01 or dns-01",
        ),
    ] {
        let add = ["site", "add", domain, "--upstream", &backend.addr];
        refused(&[&add[..], &["--acme-challenge", challenge]].concat(), says);
    }
    // Hostile or mistaken zone input: (zone, server, key file's text, more flags, the error).
    let keygen = tsig_keygen("porter");
    let cases: [(&str, &str, &str, &[&str], &str); 7] = [
        (
            "dns.test",
            "127.0.0.1:5353",
            "c2hvcnQ=",
            &["--tsig-name", "porter"],
            "5 bytes",
        ),
        (
            "dns.test",
            "127.0.0.1",
            "not base64 at all!",
            &["--tsig-name", "porter"],
            "not base64",
        ),
        ("*.dns.test", "127.0.0.1", &keygen, &[], "not a wildcard"),
        ("dns.test", "ns.dns.test", &keygen, &[], "IP address"),
        ("dns.test", "0.0.0.0", &keygen, &[], "not a server address"),
        (
            "dns.test",
            "127.0.0.1",
            &keygen,
            &["--tsig-alg", "hmac-md5"],
            "hmac-sha256",
        ),
        (
            "dns.test",
            "127.0.0.1",
            &keygen,
            &["--tsig-name", "bad name"],
            "TSIG key name",
        ),
    ];
    let key = dir.path().join("porter.key");
    for (zone, server, text, more, says) in cases {
        std::fs::write(&key, text).unwrap();
        let mut args = vec!["dns", "add", zone, "--server", server, "--tsig-key-file"];
        args.push(key.to_str().unwrap());
        args.extend(more);
        refused(&args, says);
    }
    assert_eq!(porter.ok(&["--json", "dns", "list"]).trim(), "[]");
    // A zone a wildcard depends on is not removed from under it.
    std::fs::write(&key, &keygen).unwrap();
    let key = key.to_str().unwrap();
    porter.ok(&[
        "dns",
        "add",
        "dns.test",
        "--server",
        "127.0.0.1:53",
        "--tsig-key-file",
        key,
    ]);
    porter.ok(&["site", "add", "*.dns.test", "--upstream", &backend.addr]);
    refused(&["dns", "remove", "dns.test"], "validates *.dns.test");
    porter.ok(&["site", "remove", "*.dns.test"]);
    porter.ok(&["dns", "remove", "dns.test"]);
    refused(&["dns", "remove", "dns.test"], "does not exist");
    // The same over the API: a body that is not a zone changes nothing.
    let (status, _) = porter.api("PUT", "/v1/dns-zones/dns.test", Some("{\"server\": 5}"));
    assert_eq!(status, 400);
    assert_eq!(porter.ok(&["--json", "dns", "list"]).trim(), "[]");
    porter.stop();
}
