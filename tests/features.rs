//! Per-site HTTP features through real curl clients: compression (each encoding, decoded by
//! curl, and the cases it must skip), canonical and path redirects, basic auth with bcrypt and
//! argon2 hashes, allow/deny lists over IPv4 and IPv6, custom error pages, and what a hostile
//! client sends to each.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// What curl got.
struct Fetched {
    status: u16,
    /// Lower-cased names; the last value of each.
    headers: HashMap<String, String>,
    /// Decoded when `--compressed` was given.
    body: Vec<u8>,
    /// Bytes on the wire (before decoding).
    downloaded: u64,
}

fn fetch(dir: &Path, args: &[&str]) -> Fetched {
    let (head, body) = (dir.join("head"), dir.join("body"));
    let mut all = vec![
        "-D",
        head.to_str().unwrap(),
        "-o",
        body.to_str().unwrap(),
        "-w",
        "%{http_code} %{size_download}",
    ];
    all.extend(args);
    let (_, out) = curl(&all);
    let (status, downloaded) = out.split_once(' ').unwrap_or(("0", "0"));
    let headers = std::fs::read_to_string(&head)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Fetched {
        status: status.parse().unwrap_or(0),
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
        downloaded: downloaded.parse().unwrap_or(0),
    }
}

/// What the backend's `/typed/T/N` sends.
fn typed_text(n: usize) -> Vec<u8> {
    b"hello porter, compress me please. "
        .iter()
        .copied()
        .cycle()
        .take(n)
        .collect()
}

struct Setup {
    dir: tempfile::TempDir,
    backend: Backend,
    porter: Porter,
    ca: TestCa,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backend = Backend::start();
    let ca = TestCa::new(dir.path());
    let porter = Porter::start(&data, &[]);
    Setup {
        dir,
        backend,
        porter,
        ca,
    }
}

impl Setup {
    fn site(&self, name: &str, features: &[&str]) {
        self.porter
            .ok(&["site", "add", name, "--upstream", &self.backend.addr]);
        if !features.is_empty() {
            let mut args = vec!["site", "update", name];
            args.extend(features);
            self.porter.ok(&args);
        }
    }

    fn http(&self, host: &str, path: &str, extra: &[&str]) -> Fetched {
        let url = format!("http://{}{path}", self.porter.http);
        let host = format!("Host: {host}");
        let mut args = vec!["-H", &host];
        args.extend(extra);
        args.push(&url);
        fetch(self.dir.path(), &args)
    }
}

#[test]
fn compression_is_negotiated_streamed_decodable_and_skipped_where_it_must_be() {
    let s = setup();
    s.ca.serve(&s.porter.data_dir, "zip.test", &s.backend.addr);
    s.porter
        .ok(&["site", "update", "zip.test", "--compress", "true"]);
    s.site("plain-zip.test", &[]);
    let resolve = format!("zip.test:{}:127.0.0.1", s.porter.https.port());
    let ca = s.ca.ca_path();
    let https = |path: &str, extra: &[&str]| {
        let url = format!("https://zip.test:{}{path}", s.porter.https.port());
        let mut args = vec!["--cacert", ca.to_str().unwrap(), "--resolve", &resolve];
        args.extend(extra);
        args.push(&url);
        fetch(s.dir.path(), &args)
    };
    let n = 200_000;
    for version in ["--http1.1", "--http2"] {
        for coding in ["br", "zstd", "gzip"] {
            for length in ["", "?chunked"] {
                let accept = format!("Accept-Encoding: {coding}");
                let path = format!("/typed/text_html/{n}{length}");
                let got = https(&path, &[version, "--compressed", "-H", &accept]);
                let what = format!("{coding} {version} {path}");
                assert_eq!(got.status, 200, "{what}");
                assert_eq!(got.headers["content-encoding"], coding, "{what}");
                assert!(got.headers["vary"]
                    .to_ascii_lowercase()
                    .contains("accept-encoding"));
                assert_eq!(got.headers["etag"], "W/\"v1\"", "a weak validator: {what}");
                assert!(!got.headers.contains_key("content-length"), "{what}");
                assert_eq!(got.body, typed_text(n), "curl decodes it: {what}");
                assert!(
                    got.downloaded < n as u64 / 20,
                    "{what}: {} bytes",
                    got.downloaded
                );
            }
        }
    }
    // The client's preference: q-values, then br, zstd, gzip.
    let pick = |accept: &str| {
        let accept = format!("Accept-Encoding: {accept}");
        let got = https("/typed/application_json/5000", &["-H", &accept]);
        got.headers.get("content-encoding").cloned()
    };
    assert_eq!(pick("gzip, deflate, br, zstd").as_deref(), Some("br"));
    assert_eq!(pick("br;q=0.1, gzip;q=0.9").as_deref(), Some("gzip"));
    assert_eq!(pick("identity"), None);
    // Hostile or odd Accept-Encoding: an answer, never an error.
    for odd in [
        "br;q=abc, ,,;;, zstd;q=2",
        ";;;",
        "*;q=0",
        &"x, ".repeat(2000),
    ] {
        let accept = format!("Accept-Encoding: {odd}");
        let got = https("/typed/text_html/5000", &["-H", &accept, "--compressed"]);
        assert_eq!(got.status, 200, "{odd:.40}");
        assert_eq!(got.body, typed_text(5000), "{odd:.40}");
    }
    // Skipped: images, no-transform, what the upstream encoded itself, small bodies, HEAD, a
    // client that accepts none, and a site without compression.
    let accept_all = ["-H", "Accept-Encoding: br, zstd, gzip"];
    for (path, why) in [
        ("/typed/image_png/50000", "an image"),
        ("/typed/text_html/50000?no-transform", "no-transform"),
        ("/typed/text_html/100", "too small"),
    ] {
        let got = https(path, &accept_all);
        assert_eq!(got.status, 200, "{why}");
        assert!(!got.headers.contains_key("content-encoding"), "{why}");
        assert_eq!(
            got.headers.get("etag").map(String::as_str),
            Some("\"v1\""),
            "{why}"
        );
    }
    let already = https("/typed/text_html/50000?gzip", &accept_all);
    assert_eq!(already.headers["content-encoding"], "gzip");
    assert_eq!(
        already.body,
        typed_text(50000),
        "passed on as it is, not encoded twice"
    );
    let head = https(
        "/typed/text_html/50000",
        &["-I", "-H", "Accept-Encoding: gzip"],
    );
    assert!(!head.headers.contains_key("content-encoding"));
    let none = https("/typed/text_html/50000", &[]);
    assert!(!none.headers.contains_key("content-encoding"));
    assert_eq!(none.body, typed_text(50000));
    let off = s.http("plain-zip.test", "/typed/text_html/50000", &accept_all);
    assert!(
        !off.headers.contains_key("content-encoding"),
        "off by default"
    );

    // 16 clients at once, each its own encoding and HTTP version.
    let (ca, port) = (&ca, s.porter.https.port());
    std::thread::scope(|scope| {
        for i in 0..16 {
            scope.spawn(move || {
                let coding = ["br", "zstd", "gzip"][i % 3];
                let version = ["--http1.1", "--http2"][i % 2];
                let accept = format!("Accept-Encoding: {coding}");
                let dir = tempfile::tempdir().unwrap();
                let url = format!("https://zip.test:{port}/typed/text_css/300000?chunked");
                let resolve = format!("zip.test:{port}:127.0.0.1");
                let got = fetch(
                    dir.path(),
                    &[
                        "--cacert",
                        ca.to_str().unwrap(),
                        "--resolve",
                        &resolve,
                        version,
                        "--compressed",
                        "-H",
                        &accept,
                        &url,
                    ],
                );
                assert_eq!(got.headers["content-encoding"], coding);
                assert_eq!(got.body, typed_text(300_000), "client {i}");
            });
        }
    });
}

#[test]
fn redirects_canonical_names_and_path_rules() {
    let s = setup();
    s.site("www.red.test", &["--redirect-to-apex"]);
    s.site(
        "red.test",
        &[
            "--redirect",
            "/old/* /new/ 308",
            "--redirect",
            "/page /other.html 302",
            "--redirect",
            "/away* https://elsewhere.test/ 301",
            "--redirect",
            "/temp /t 307",
        ],
    );
    s.site("bare.test", &["--redirect-to-www"]);
    let port = s.porter.http.port();
    let www_with_port = format!("www.red.test:{port}");
    let cases = [
        (
            "www.red.test",
            "/a/b?c=1",
            301,
            "http://red.test/a/b?c=1".to_owned(),
        ),
        (
            &www_with_port,
            "/a",
            301,
            format!("http://red.test:{port}/a"),
        ),
        ("bare.test", "/x", 301, "http://www.bare.test/x".to_owned()),
        (
            "red.test",
            "/old/deep/page?q=2",
            308,
            "/new/deep/page?q=2".to_owned(),
        ),
        ("red.test", "/page", 302, "/other.html".to_owned()),
        (
            "red.test",
            "/away/x",
            301,
            "https://elsewhere.test//x".to_owned(),
        ),
        ("red.test", "/temp", 307, "/t".to_owned()),
    ];
    for (host, path, status, location) in cases.iter().cloned() {
        let got = s.http(host, path, &[]);
        assert_eq!(got.status, status, "{host}{path}");
        assert_eq!(got.headers["location"], location, "{host}{path}");
    }
    // What no rule matches is proxied.
    let got = s.http("red.test", "/page/2", &[]);
    assert_eq!(
        (got.status, got.body),
        (200, b"hello from backend /page/2".to_vec())
    );
    // Refused at definition, changing nothing.
    for bad in [
        &["--redirect-to-apex"][..],
        &["--redirect", "old /new"],
        &["--redirect", "/old /new 200"],
        &["--redirect", "/old javascript:alert(1)"],
    ] {
        let mut args = vec!["site", "update", "red.test"];
        args.extend(bad);
        let out = s.porter.cli(&args);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listed: serde_json::Value =
        serde_json::from_str(&s.porter.ok(&["--json", "site", "list"])).unwrap();
    let red = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["domain"] == "red.test")
        .unwrap();
    assert_eq!(red["features"]["redirects"].as_array().unwrap().len(), 4);
    assert!(red["features"].get("canonical").is_none());
}

fn bcrypt_line(user: &str, password: &str) -> String {
    format!("{user}:{}", bcrypt::hash(password, 6).unwrap())
}

fn argon2_line(user: &str, password: &str) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new(porter_bin())
        .args(["hash-password", user])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn basic_auth_with_bcrypt_and_argon2_on_a_site_and_a_path() {
    let s = setup();
    let alice = argon2_line("alice", "wonder land");
    assert!(alice.starts_with("alice:$argon2id$"), "{alice}");
    let bob = bcrypt_line("bob", "builder");
    s.site("locked.test", &["--basic-auth", &alice]);
    s.site(
        "part.test",
        &["--basic-auth", &bob, "--basic-auth-path", "/admin"],
    );
    let with = |user: &str, password: &str| format!("{user}:{password}");
    let status = |host: &str, path: &str, creds: Option<String>| {
        let mut extra = vec![];
        let creds = creds.unwrap_or_default();
        if !creds.is_empty() {
            extra = vec!["-u", &creds];
        }
        s.http(host, path, &extra)
    };
    let missing = status("locked.test", "/", None);
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.headers["www-authenticate"],
        "Basic realm=\"locked.test\", charset=\"UTF-8\""
    );
    assert_eq!(
        status("locked.test", "/", Some(with("alice", "wrong"))).status,
        401
    );
    assert_eq!(
        status("locked.test", "/", Some(with("bob", "builder"))).status,
        401
    );
    assert_eq!(
        status("locked.test", "/x", Some(with("alice", "wonder land"))).status,
        200
    );
    // Only the path is guarded, by whole segments.
    assert_eq!(status("part.test", "/", None).status, 200);
    assert_eq!(status("part.test", "/administrator", None).status, 200);
    assert_eq!(status("part.test", "/admin/x", None).status, 401);
    assert_eq!(
        status("part.test", "/admin", Some(with("bob", "nope"))).status,
        401
    );
    assert_eq!(
        status("part.test", "/admin/x", Some(with("bob", "builder"))).status,
        200
    );
    // Hostile Authorization headers: refused, never an error of Porter's.
    let long = format!("Authorization: Basic {}", "A".repeat(6000));
    for header in [
        "Authorization: Basic !!!",
        "Authorization: Bearer abc",
        "Authorization: Basic",
        "Authorization: basic Ym9iOmJ1aWxkZXI=x",
        &long,
    ] {
        let got = s.http("part.test", "/admin/", &["-H", header]);
        assert!(
            matches!(got.status, 401 | 431),
            "{header:.40}: {}",
            got.status
        );
    }
    // The scheme is case-insensitive (RFC 7617).
    let got = s.http(
        "part.test",
        "/admin/",
        &["-H", "Authorization: basic Ym9iOmJ1aWxkZXI="],
    );
    assert_eq!(got.status, 200);
    // Plain passwords and weak hashes are refused at definition.
    for bad in ["carol:secret", "carol:$apr1$abc$def", "carol:$2y$10$short"] {
        let out = s
            .porter
            .cli(&["site", "update", "part.test", "--basic-auth", bad]);
        assert_eq!(out.status.code(), Some(3), "{bad}");
    }
    assert_eq!(
        status("part.test", "/admin/x", Some(with("bob", "builder"))).status,
        200,
        "unchanged"
    );
    // The listing names users, never hashes.
    let listed = s.porter.ok(&["--json", "site", "list"]);
    assert!(
        listed.contains("\"alice\"") && !listed.contains("$argon2") && !listed.contains("$2"),
        "{listed}"
    );
    // 32 requests at once with the right password, and 32 with a wrong one.
    let http = s.porter.http;
    std::thread::scope(|scope| {
        for i in 0..64 {
            scope.spawn(move || {
                let (password, expected) = if i % 2 == 0 {
                    ("wonder land", 200)
                } else {
                    ("guess", 401)
                };
                let dir = tempfile::tempdir().unwrap();
                let (url, creds) = (format!("http://{http}/{i}"), format!("alice:{password}"));
                let got = fetch(dir.path(), &["-H", "Host: locked.test", "-u", &creds, &url]);
                assert_eq!(got.status, expected, "request {i}");
            });
        }
    });
    // Removing it opens the site.
    s.porter
        .ok(&["site", "update", "locked.test", "--no-basic-auth"]);
    assert_eq!(status("locked.test", "/", None).status, 200);
}

#[test]
fn allow_and_deny_lists_for_ipv4_and_ipv6_and_custom_error_pages() {
    let s = setup();
    let pages = s.dir.path().join("403.html");
    std::fs::write(&pages, "<h1>not for you</h1>\n").unwrap();
    let page = format!("403={}", pages.display());
    s.site(
        "v4.test",
        &[
            "--allow",
            "127.0.0.2/32",
            "--allow",
            "10.0.0.0/8",
            "--deny",
            "127.0.0.3",
            "--error-page",
            &page,
        ],
    );
    let from = |source: &str| s.http("v4.test", "/", &["--interface", source]);
    assert_eq!(from("127.0.0.2").status, 200);
    let denied = from("127.0.0.3");
    assert_eq!(denied.status, 403);
    assert_eq!(denied.body, b"<h1>not for you</h1>\n");
    assert!(denied.headers["content-type"].starts_with("text/html"));
    assert_eq!(from("127.0.0.4").status, 403, "not in the allow list");
    // Deny wins over allow.
    s.porter
        .ok(&["site", "update", "v4.test", "--deny", "127.0.0.0/24"]);
    assert_eq!(from("127.0.0.2").status, 403);
    s.porter
        .ok(&["site", "update", "v4.test", "--no-access-rules"]);
    assert_eq!(from("127.0.0.4").status, 200);
    // Bad networks are refused, changing nothing.
    for bad in ["300.0.0.0/8", "10.0.0.0/33", "example.com", "::1/129"] {
        let out = s.porter.cli(&["site", "update", "v4.test", "--deny", bad]);
        assert_eq!(out.status.code(), Some(3), "{bad}");
    }
    assert_eq!(from("127.0.0.4").status, 200);

    // A custom 502 page (the upstream is down) keeps the status; Retry-After stays on 503s.
    let bad_gateway = s.dir.path().join("502.html");
    std::fs::write(&bad_gateway, "<p>back soon</p>").unwrap();
    s.porter.ok(&[
        "site",
        "add",
        "down.test",
        "--upstream",
        "127.0.0.1:1",
        "--allow-unreachable",
    ]);
    s.porter.ok(&[
        "site",
        "update",
        "down.test",
        "--error-page",
        &format!("502={}", bad_gateway.display()),
    ]);
    let got = s.http("down.test", "/", &[]);
    assert_eq!(
        (got.status, got.body.as_slice()),
        (502, &b"<p>back soon</p>"[..])
    );
    // Pages only for Porter's own answers, and not too large.
    let huge = s.dir.path().join("huge.html");
    std::fs::write(&huge, vec![b'x'; 70_000]).unwrap();
    for bad in [
        format!("200={}", bad_gateway.display()),
        format!("502={}", huge.display()),
        "502=/nonexistent".into(),
    ] {
        let out = s
            .porter
            .cli(&["site", "update", "down.test", "--error-page", &bad]);
        assert_eq!(out.status.code(), Some(3), "{bad}");
    }

    // IPv6: a server on ::1.
    let data6 = s.dir.path().join("data6");
    let v6 = Porter::start(&data6, &["--http", "[::1]:0"]);
    v6.ok(&["site", "add", "v6.test", "--upstream", &s.backend.addr]);
    let get6 = || {
        let url = format!("http://{}/", v6.http);
        fetch(s.dir.path(), &["-H", "Host: v6.test", &url]).status
    };
    assert_eq!(get6(), 200);
    v6.ok(&["site", "update", "v6.test", "--deny", "::1/128"]);
    assert_eq!(get6(), 403);
    v6.ok(&[
        "site",
        "update",
        "v6.test",
        "--no-access-rules",
        "--allow",
        "2001:db8::/32",
    ]);
    assert_eq!(get6(), 403);
    v6.ok(&[
        "site",
        "update",
        "v6.test",
        "--allow",
        "2001:db8::/32",
        "--allow",
        "::1",
    ]);
    assert_eq!(get6(), 200);
}

#[test]
fn spoofed_client_address_headers_never_reach_the_upstream() {
    let s = setup();
    s.site("spoof.test", &[]);
    let got = s.http(
        "spoof.test",
        "/headers",
        &[
            "-H",
            "X-Real-IP: 203.0.113.9",
            "-H",
            "Forwarded: for=203.0.113.9;proto=https",
            "-H",
            "X-Forwarded-For: 203.0.113.9",
            "-H",
            "X-Forwarded-Proto: https",
            "-H",
            "X-Forwarded-Host: evil.test",
        ],
    );
    let seen: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    let headers = &seen["headers"];
    assert_eq!(headers["x-real-ip"], "127.0.0.1", "{seen}");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert_eq!(headers["x-forwarded-proto"], "http", "{seen}");
    assert_eq!(headers["x-forwarded-host"], "spoof.test", "{seen}");
    assert!(headers.get("forwarded").is_none(), "{seen}");
    assert!(!got.body.windows(11).any(|w| w == b"203.0.113.9"), "{seen}");
}

#[test]
fn wordpress_login_guessing_is_limited_per_client_and_site() {
    let s = setup();
    s.site("wp.test", &["--wp-login-limit", "5"]);
    s.site("other.test", &["--wp-login-limit", "5"]);
    let post = |host: &str, path: &str, source: &str| {
        s.http(
            host,
            path,
            &[
                "--interface",
                source,
                "-X",
                "POST",
                "-d",
                "log=admin&pwd=guess",
            ],
        )
    };
    for _ in 0..5 {
        assert_eq!(post("wp.test", "/wp-login.php", "127.0.0.2").status, 200);
    }
    let limited = post("wp.test", "/wp-login.php", "127.0.0.2");
    assert_eq!(limited.status, 429);
    let wait: u64 = limited.headers["retry-after"].parse().unwrap();
    assert!((1..=12).contains(&wait), "Retry-After {wait}");
    // The same budget for xmlrpc.php and however the path is written.
    for path in ["/xmlrpc.php", "/WP%2Dlogin.php", "/blog/wp-login.php"] {
        assert_eq!(post("wp.test", path, "127.0.0.2").status, 429, "{path}");
    }
    // Only POSTs to the login scripts count; other clients and other sites have their own.
    let get = s.http("wp.test", "/wp-login.php", &["--interface", "127.0.0.2"]);
    assert_eq!(get.status, 200);
    assert_eq!(
        post("wp.test", "/wp-admin/admin-ajax.php", "127.0.0.2").status,
        200
    );
    assert_eq!(post("wp.test", "/wp-login.php", "127.0.0.3").status, 200);
    assert_eq!(post("other.test", "/wp-login.php", "127.0.0.2").status, 200);

    // Twenty guesses at once from one client: five go through.
    let url = format!("http://{}/wp-login.php", s.porter.http);
    let statuses: Vec<String> = std::thread::scope(|scope| {
        let guesses: Vec<_> = (0..20)
            .map(|_| {
                scope.spawn(|| {
                    status_code(&[
                        "-H",
                        "Host: wp.test",
                        "--interface",
                        "127.0.0.4",
                        "-d",
                        "pwd=x",
                        &url,
                    ])
                })
            })
            .collect();
        guesses.into_iter().map(|g| g.join().unwrap()).collect()
    });
    let passed = statuses.iter().filter(|s| *s == "200").count();
    let limited = statuses.iter().filter(|s| *s == "429").count();
    // (One more may pass if the test runs slowly enough for the bucket to refill: 1 in 12 s.)
    assert!(
        (5..=6).contains(&passed) && passed + limited == 20,
        "{statuses:?}"
    );

    // Out of range is refused and changes nothing; the limit can be lifted.
    for bad in ["0", "601", "many"] {
        let out = s
            .porter
            .cli(&["site", "update", "wp.test", "--wp-login-limit", bad]);
        assert!(!out.status.success(), "--wp-login-limit {bad}");
    }
    assert!(s.porter.ok(&["site", "list"]).contains("wp-login 5/min"));
    s.porter
        .ok(&["site", "update", "wp.test", "--no-wp-login-limit"]);
    wait_until(Duration::from_secs(5), "the limit is lifted", || {
        post("wp.test", "/wp-login.php", "127.0.0.2").status == 200
    });
}

/// Porter's own answers reach the client whether or not Porter read the request's body, over
/// HTTP/1.1 and HTTP/2 alike: h2 used to reset such a stream with CANCEL before the answer had
/// ended, and curl then threw the answer away ("Stream error in the HTTP/2 framing layer").
#[test]
fn own_answers_arrive_over_http1_and_http2_with_a_large_body_left_unread() {
    let s = setup();
    let certified = |name: &str| {
        let (chain, key) = s.ca.issue(&[name]);
        let (chain, key) = (chain.to_str().unwrap(), key.to_str().unwrap());
        s.porter
            .ok(&["cert", "import", name, "--cert", chain, "--key", key]);
    };
    s.site(
        "auth.test",
        &["--basic-auth", &bcrypt_line("alice", "secret")],
    );
    s.site("deny.test", &["--deny", "127.0.0.0/8"]);
    s.site("moved.test", &["--redirect", "/old /new 308"]);
    s.site("wp.test", &["--wp-login-limit", "10"]);
    let app = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/app.py");
    let never_ready = format!("python3 {app} {{port}} --never-listen");
    let app_add = [
        "app",
        "add",
        "stuck",
        "--command",
        &never_ready,
        "--allow-root",
    ];
    s.porter
        .ok(&[&app_add[..], &["--start-timeout", "1s"]].concat());
    s.porter
        .ok(&["site", "add", "stuck.test", "--app", "stuck"]);
    for name in [
        "auth.test",
        "deny.test",
        "moved.test",
        "wp.test",
        "stuck.test",
    ] {
        certified(name);
    }
    let body = s.dir.path().join("body");
    std::fs::write(&body, vec![b'x'; 200 * 1024]).unwrap();
    let upload = format!("@{}", body.display());
    let port = s.porter.https.port();
    let ca = s.ca.ca_path();
    // The status of a POST of the body to https://HOST/PATH from `source` over `version`.
    let post = |version: &str, host: &str, path: &str, source: &str| {
        let resolve = format!("{host}:{port}:127.0.0.1");
        let url = format!("https://{host}:{port}{path}");
        status_code(&[
            version,
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            "--interface",
            source,
            "-X",
            "POST",
            "--data-binary",
            &upload,
            &url,
        ])
    };
    wait_until(Duration::from_secs(10), "the sites are served", || {
        post("--http1.1", "moved.test", "/", "127.0.0.1") == "200"
    });
    for version in ["--http1.1", "--http2"] {
        for (host, path, status) in [
            ("auth.test", "/", "401"),
            ("deny.test", "/", "403"),
            ("moved.test", "/old", "308"),
            ("stuck.test", "/", "503"),
        ] {
            let got = post(version, host, path, "127.0.0.1");
            assert_eq!(got, status, "{version} {host}{path}");
        }
    }
    // The issue's case: 15 login attempts with a limit of 10; each client its own budget.
    for (version, source) in [("--http1.1", "127.0.0.2"), ("--http2", "127.0.0.3")] {
        let statuses: Vec<String> = (0..15)
            .map(|_| post(version, "wp.test", "/wp-login.php", source))
            .collect();
        let expected: Vec<&str> = [["200"; 10].as_slice(), &["429"; 5]].concat();
        assert_eq!(statuses, expected, "{version}");
    }
    // The redirect to HTTPS, plain HTTP's own answer (HTTP/1.1 only: no h2 in clear text).
    let plain = s.http("moved.test", "/", &["-X", "POST", "--data-binary", &upload]);
    assert_eq!(plain.status, 308);
}
