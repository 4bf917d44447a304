//! The HTTP cache's operator surface through the real binary and a running server: the
//! `--cache*` flags of `site add|update` (and the API's fields) set and show a site's cache
//! settings, bad values are refused with a clear message and change nothing, and `cache purge`
//! records purges by URL, prefix, tag and all (concurrently too), refusing an unknown site
//! (exit 4) and a site whose cache is off.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;

/// A port nothing listens on: the sites here are never requested.
const NOWHERE: &str = "127.0.0.1:9";

fn add_site(data: &Path, domain: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "site",
        "add",
        domain,
        "--upstream",
        NOWHERE,
        "--allow-unreachable",
        "--no-acme",
    ];
    args.extend(extra);
    ok(data, &args)
}

/// `domain`'s cache settings as `site list --json` shows them (null: not cached).
fn cache_of(data: &Path, domain: &str) -> Value {
    let sites: Value = serde_json::from_str(&ok(data, &["--json", "site", "list"])).unwrap();
    let site = sites
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["domain"] == domain)
        .unwrap_or_else(|| panic!("{domain} is listed"));
    site["features"]["cache"].clone()
}

/// Runs a command that must fail with `code`; returns its stderr.
fn fails(data: &Path, args: &[&str], code: i32) -> String {
    let out = cli(data, args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(code), "porter {args:?}: {stderr}");
    stderr
}

#[test]
fn cache_flags_set_and_show_a_sites_settings() {
    let dir = tempfile::tempdir().unwrap();
    let porter = Porter::start(&dir.path().join("data"), &[]);
    let data = porter.data_dir.as_path();

    add_site(data, "shop.test", &["--cache-ttl", "5m"]);
    assert_eq!(cache_of(data, "shop.test"), json!({"default_ttl": 300}));
    ok(
        data,
        &[
            "site",
            "update",
            "shop.test",
            "--cache-stale-while-revalidate",
            "30s",
            "--cache-stale-if-error",
            "1d",
            "--cache-bypass-path",
            "/admin/",
            "--cache-bypass-path",
            "/cart",
            "--cache-bypass-cookie",
            "session",
            "--cache-max-object",
            "8MiB",
        ],
    );
    assert_eq!(
        cache_of(data, "shop.test"),
        json!({
            "default_ttl": 300,
            "stale_while_revalidate": 30,
            "stale_if_error": 86_400,
            "bypass_paths": ["/admin/", "/cart"],
            "bypass_cookies": ["session"],
            "max_object": 8 << 20,
        })
    );
    let table = ok(data, &["site", "list"]);
    assert!(
        table.contains("cache ttl 5m swr 30s sie 1d bypass 3 max 8 MiB"),
        "{table}"
    );

    // A list cleared, a stale allowance set back to none; `--cache on` keeps the rest.
    ok(
        data,
        &[
            "site",
            "update",
            "shop.test",
            "--no-cache-bypass-paths",
            "--cache-stale-if-error",
            "0",
        ],
    );
    ok(data, &["site", "update", "shop.test", "--cache", "on"]);
    assert_eq!(
        cache_of(data, "shop.test"),
        json!({
            "default_ttl": 300,
            "stale_while_revalidate": 30,
            "bypass_cookies": ["session"],
            "max_object": 8 << 20,
        })
    );

    ok(data, &["site", "update", "shop.test", "--cache", "off"]);
    assert_eq!(cache_of(data, "shop.test"), Value::Null);
    ok(data, &["site", "update", "shop.test", "--cache", "on"]);
    assert_eq!(cache_of(data, "shop.test"), json!({}), "on: the defaults");

    // The API takes the same fields, and answers with the settings.
    add_site(data, "blog.test", &[]);
    assert_eq!(cache_of(data, "blog.test"), Value::Null);
    let (status, body) = porter.api(
        "PATCH",
        "/v1/sites/blog.test",
        Some(r#"{"cache_ttl": "2m", "cache_bypass_cookies": ["wp_session"]}"#),
    );
    assert_eq!(status, 200, "{body}");
    let site: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        site["features"]["cache"],
        json!({"default_ttl": 120, "bypass_cookies": ["wp_session"]})
    );
    let (status, body) = porter.api(
        "POST",
        "/v1/sites",
        Some(r#"{"domain": "news.test", "upstream": "127.0.0.1:9", "allow_unreachable": true, "cache": true}"#),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(cache_of(data, "news.test"), json!({}));
}

#[test]
fn bad_cache_values_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let porter = Porter::start(&dir.path().join("data"), &[]);
    let data = porter.data_dir.as_path();
    add_site(data, "shop.test", &["--cache-ttl", "1h"]);
    let before = ok(data, &["--json", "site", "list"]);

    for (flags, says) in [
        (
            vec!["--cache-bypass-path", "admin"],
            "bypass path \"admin\" must start with /",
        ),
        (
            vec!["--cache-bypass-cookie", "a b"],
            "bypass cookie \"a b\": a cookie name",
        ),
        (
            vec!["--cache-max-object", "2GiB"],
            "the largest object is at most 1 GiB",
        ),
        (vec!["--cache-max-object", "0"], "at least 1 byte"),
        (vec!["--cache-max-object", "lots"], "--cache-max-object"),
        (
            vec!["--cache-ttl=-1s"],
            "--cache-ttl: \"-1s\": expected a duration",
        ),
        (
            vec!["--cache-stale-if-error", "soon"],
            "--cache-stale-if-error: \"soon\": expected a duration",
        ),
        (
            vec!["--cache-stale-while-revalidate", "2y"],
            "the unit must be s, m, h or d",
        ),
        (vec!["--cache-ttl", "400d"], "at most a year"),
        (
            vec!["--cache-ttl", "99999999999999d"],
            "--cache-ttl \"99999999999999d\"",
        ),
        (
            vec!["--cache", "off", "--cache-ttl", "1m"],
            "--cache off forgets the site's cache settings",
        ),
    ] {
        let mut args = vec!["site", "update", "shop.test"];
        args.extend(&flags);
        let stderr = fails(data, &args, 3);
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
        assert_eq!(ok(data, &["--json", "site", "list"]), before, "{flags:?}");
    }

    // A site added with a bad value is not added.
    let stderr = fails(
        data,
        &[
            "site",
            "add",
            "blog.test",
            "--upstream",
            NOWHERE,
            "--allow-unreachable",
            "--cache-bypass-path",
            "wp-admin",
        ],
        3,
    );
    assert!(stderr.contains("must start with /"), "{stderr}");
    assert_eq!(ok(data, &["--json", "site", "list"]), before);

    // The API refuses the same way.
    let (status, body) = porter.api(
        "PATCH",
        "/v1/sites/shop.test",
        Some(r#"{"cache_max_object": "2GiB"}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 1 GiB"), "{body}");
    assert_eq!(ok(data, &["--json", "site", "list"]), before);
}

/// The purge `porter --json cache purge ARGS` recorded.
fn purge(data: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json", "cache", "purge"];
    all.extend(args);
    serde_json::from_str(&ok(data, &all)).unwrap()
}

/// Whether `id` is a purge id: 13 digits of milliseconds, a dash, 8 hex digits.
fn is_purge_id(id: &str) -> bool {
    matches!(id.split_once('-'), Some((ms, random))
        if ms.len() == 13 && ms.bytes().all(|b| b.is_ascii_digit())
            && random.len() == 8 && random.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn purges_by_url_prefix_tag_and_all_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let porter = Porter::start(&data, &[]);
    let data = data.as_path();
    add_site(data, "shop.test", &["--cache", "on"]);

    for (args, said) in [
        (
            vec!["shop.test", "/products/12?color=red"],
            "purge of shop.test /products/12?color=red sent to every node\n",
        ),
        (
            vec!["shop.test", "https://SHOP.test:8443/a/b?c=d"],
            "purge of shop.test /a/b?c=d sent to every node\n",
        ),
        (
            vec!["shop.test", "--prefix", "/assets/"],
            "purge of shop.test prefix /assets/ sent to every node\n",
        ),
        (
            vec!["shop.test", "--tag", "product-12"],
            "purge of shop.test tag product-12 sent to every node\n",
        ),
        (
            vec!["shop.test", "--all"],
            "purge of all of shop.test sent to every node\n",
        ),
    ] {
        let mut all = vec!["cache", "purge"];
        all.extend(&args);
        assert_eq!(ok(data, &all), said, "{args:?}");
    }

    let recorded = purge(data, &["shop.test", "--tag", "t1"]);
    assert_eq!(recorded["domain"], "shop.test");
    assert_eq!(recorded["scope"], json!({"tag": "t1"}));
    assert!(is_purge_id(recorded["id"].as_str().unwrap()), "{recorded}");
    let id_ms: u64 = recorded["id"].as_str().unwrap()[..13].parse().unwrap();
    assert_eq!(Some(id_ms), recorded["at_ms"].as_u64());

    let (status, body) = porter.api(
        "POST",
        "/v1/cache/purge",
        Some(r#"{"domain": "shop.test", "url": "https://shop.test/"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let recorded: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(recorded["scope"], json!({"url": "/"}));

    // What is not one purge of this site is refused.
    for (args, code, says) in [
        (
            vec!["shop.test", "https://other.test/a"],
            3,
            "is not on shop.test",
        ),
        (vec!["shop.test", "products"], 3, "give a path from /"),
        (vec!["shop.test", "--tag", "a,b"], 3, "no comma"),
        (vec!["shop.test", "--prefix", "/a b"], 3, "no space"),
        (
            vec!["shop.test", "--all", "--tag", "x"],
            2,
            "cannot be used",
        ),
        (vec!["shop.test"], 2, "required"),
    ] {
        let mut all = vec!["cache", "purge"];
        all.extend(&args);
        let stderr = fails(data, &all, code);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let (status, body) = porter.api(
        "POST",
        "/v1/cache/purge",
        Some(r#"{"domain": "shop.test", "tag": "x", "all": true}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("exactly one"), "{body}");

    // Without a server the command records the purge in the store itself; the counters are
    // the server's alone.
    porter.stop();
    assert_eq!(
        ok(data, &["cache", "purge", "shop.test", "--all"]),
        "purge of all of shop.test sent to every node\n"
    );
    let stderr = fails(data, &["cache", "stats"], 3);
    assert!(stderr.contains("no server runs"), "{stderr}");
}

#[test]
fn purge_refuses_an_unknown_site_and_a_site_without_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let porter = Porter::start(&dir.path().join("data"), &[]);
    let data = porter.data_dir.as_path();
    add_site(data, "plain.test", &[]);

    let stderr = fails(data, &["cache", "purge", "nothere.test", "/a"], 4);
    assert!(
        stderr.contains("site nothere.test does not exist"),
        "{stderr}"
    );
    let out = cli(data, &["--json", "cache", "purge", "nothere.test", "--all"]);
    assert_eq!(out.status.code(), Some(4));
    let error: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["kind"], "not_found");

    let stderr = fails(data, &["cache", "purge", "plain.test", "--all"], 3);
    assert!(
        stderr.contains("plain.test does not use the cache") && stderr.contains("--cache on"),
        "{stderr}"
    );
    let (status, body) = porter.api(
        "POST",
        "/v1/cache/purge",
        Some(r#"{"domain": "plain.test", "prefix": "/"}"#),
    );
    assert_eq!(status, 400, "{body}");
    let (status, _) = porter.api(
        "POST",
        "/v1/cache/purge",
        Some(r#"{"domain": "nothere.test", "all": true}"#),
    );
    assert_eq!(status, 404);
}

#[test]
fn sixteen_concurrent_purges_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let porter = Porter::start(&dir.path().join("data"), &[]);
    let data = porter.data_dir.as_path();
    add_site(data, "shop.test", &["--cache", "on"]);

    let ids: Vec<String> = std::thread::scope(|s| {
        let purges: Vec<_> = (0..16)
            .map(|i| {
                s.spawn(move || {
                    let tag = format!("product-{i}");
                    let recorded = purge(data, &["shop.test", "--tag", &tag]);
                    assert_eq!(recorded["scope"], json!({ "tag": tag }));
                    recorded["id"].as_str().unwrap().to_owned()
                })
            })
            .collect();
        purges.into_iter().map(|p| p.join().unwrap()).collect()
    });
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 16, "every purge has its own id: {ids:?}");
}
