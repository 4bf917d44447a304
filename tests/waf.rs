//! The web application firewall end to end: the OWASP CRS from Debian's modsecurity-crs on
//! libmodsecurity, in a real `porter serve`, in front of a real upstream that records what
//! reached it. Attacks over HTTP/1.1 and HTTP/2 are refused in block mode and never reach the
//! upstream; a corpus of ordinary traffic passes (sent by 8 clients at once); detect mode logs
//! and lets through; exclusions, thresholds and the server's default apply per site; bodies
//! beyond the limit stream through; a reload with broken rules keeps the old ones; and what a
//! hostile client sends (bytes that are not UTF-8, a forged log field, a stalled body) changes
//! nothing else.

#[path = "common/clean_traffic.rs"]
mod clean_traffic;
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

/// Debian's CRS, which the WAF loads by default.
const CRS: &str = "/usr/share/modsecurity-crs/rules";

/// A response to a raw request: its status, headers (lower-cased names) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` as it is and reads the answer until the server closes (the request asks it
/// to); status 0 when there was none.
fn raw(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(got.len());
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: got.get(end + 4..).unwrap_or_default().to_vec(),
    }
}

/// `METHOD TARGET HTTP/1.1` to `host` with `headers` and `body` (and its length), closing.
fn request(
    method: &str,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The WAF log's entries so far.
fn waf_log(data: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data.join("waf.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a WAF log line is JSON"))
        .collect()
}

/// The entry for the request with unique id `id`.
fn logged(data: &Path, id: &str) -> serde_json::Value {
    waf_log(data)
        .into_iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no WAF log entry with id {id}"))
}

fn rule_ids(entry: &serde_json::Value) -> Vec<u64> {
    entry["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

/// What reached the upstream: "METHOD PATH" lines.
fn seen(porter: &Porter, host: &str) -> Vec<String> {
    let answer = raw(porter.http, &request("GET", host, "/seen", &[], b""));
    assert_eq!(answer.status, 200);
    serde_json::from_slice(&answer.body).unwrap()
}

fn crs_installed() {
    assert!(
        Path::new(CRS).is_dir(),
        "{CRS} is missing: install Debian's modsecurity-crs (apt-get install modsecurity-crs)"
    );
}

struct Setup {
    dir: tempfile::TempDir,
    backend: Backend,
    porter: Porter,
}

fn setup(serve_flags: &[&str]) -> Setup {
    crs_installed();
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start();
    let porter = Porter::start(&dir.path().join("data"), serve_flags);
    Setup {
        dir,
        backend,
        porter,
    }
}

impl Setup {
    fn site(&self, name: &str, flags: &[&str]) {
        self.porter
            .ok(&["site", "add", name, "--upstream", &self.backend.addr]);
        if !flags.is_empty() {
            let mut args = vec!["site", "update", name];
            args.extend(flags);
            self.porter.ok(&args);
        }
    }

    /// Waits until the edge blocks on `name`: it applies a change once the store says so, a
    /// moment after the command. The probe may reach the upstream before that (`PROBE`).
    fn blocking(&self, name: &str) {
        let probe = request(
            "GET",
            name,
            &format!("{PROBE}?id=1%27%20OR%201=1--"),
            &[],
            b"",
        );
        wait_until(
            Duration::from_secs(10),
            "the WAF blocks on the site",
            || self.send(&probe).status == 403,
        );
    }

    fn send(&self, request: &[u8]) -> Answer {
        raw(self.porter.http, request)
    }

    fn data(&self) -> &Path {
        &self.porter.data_dir
    }
}

/// The path of the attack that waits for a site's WAF to block (see `Setup::blocking`).
const PROBE: &str = "/attack-probe";

/// The attacks a WAF at paranoia 1 must stop, each with a marker in its path to look for
/// upstream: (what, request, a rule id it must match).
fn attacks(host: &str) -> Vec<(&'static str, Vec<u8>, u64)> {
    let shell = b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"shell.php\"\r\nContent-Type: application/x-php\r\n\r\n<?php system($_GET['cmd']); ?>\r\n--b0undary--\r\n";
    vec![
        (
            "SQL injection in the query",
            request("GET", host, "/attack-sqli?id=1%27%20OR%201=1--", &[], b""),
            942100,
        ),
        (
            "XSS in a form post",
            request(
                "POST",
                host,
                "/attack-xss",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                b"comment=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E",
            ),
            941100,
        ),
        (
            "path traversal",
            request(
                "GET",
                host,
                "/attack-traversal/../../../../etc/passwd",
                &[],
                b"",
            ),
            930100,
        ),
        (
            "a scanner's user agent",
            request(
                "GET",
                host,
                "/attack-scanner",
                &[("User-Agent", "Nikto/2.1.6")],
                b"",
            ),
            913100,
        ),
        (
            "a PHP shell upload",
            request(
                "POST",
                host,
                "/attack-upload",
                &[("Content-Type", "multipart/form-data; boundary=b0undary")],
                shell,
            ),
            933110,
        ),
    ]
}

#[test]
fn attacks_are_blocked_and_never_reach_the_upstream_and_ordinary_traffic_passes() {
    let s = setup(&[]);
    s.site("shop.test", &["--waf", "block"]);
    s.blocking("shop.test");
    for (what, req, rule) in attacks("shop.test") {
        let answer = s.send(&req);
        assert_eq!(answer.status, 403, "{what}");
        let id = answer
            .header("porter-request-id")
            .unwrap_or_else(|| panic!("{what}: no request id"))
            .to_owned();
        let page = String::from_utf8_lossy(&answer.body);
        assert!(page.contains(&id), "{what}: the page names its id: {page}");
        // Nothing of the rules (the id is random hex, which may hold any digits).
        let rest = page.replace(&id, "");
        assert!(!rest.contains("OWASP") && !rest.contains("942"), "{page}");
        let entry = logged(s.data(), &id);
        assert_eq!(entry["action"], "blocked", "{what}");
        assert_eq!(entry["site"], "shop.test");
        assert!(entry["score"].as_u64().unwrap() >= 5, "{entry}");
        assert!(rule_ids(&entry).contains(&rule), "{what}: {entry}");
    }
    // An attack over HTTP/2 (TLS, ALPN h2), its body in DATA frames.
    let ca = TestCa::new(s.dir.path());
    s.site("h2.test", &["--waf", "block"]);
    s.blocking("h2.test");
    let (chain, key) = ca.issue(&["h2.test"]);
    s.porter.ok(&[
        "cert",
        "import",
        "h2.test",
        "--cert",
        chain.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let https = s.porter.https;
    let resolve = format!("h2.test:{}:127.0.0.1", https.port());
    let url = format!("https://h2.test:{}/attack-h2", https.port());
    let ready = format!("https://h2.test:{}/ready", https.port());
    let ca_path = ca.ca_path();
    wait_until(Duration::from_secs(10), "the certificate is served", || {
        status_code(&[
            "--cacert",
            ca_path.to_str().unwrap(),
            "--resolve",
            &resolve,
            &ready,
        ]) != "000"
    });
    let h2 = |body: &str| {
        status_code(&[
            "--http2",
            "--cacert",
            ca_path.to_str().unwrap(),
            "--resolve",
            &resolve,
            "-H",
            "Cookie: a=1",
            "-H",
            "Cookie: session=1%27%20UNION%20SELECT%20password%20FROM%20users--",
            "-d",
            body,
            &url,
        ])
    };
    assert_eq!(h2("q=hello"), "403", "the split cookie is read joined");
    assert_eq!(h2("q=1' UNION SELECT password FROM users--"), "403");

    let reached = seen(&s.porter, "shop.test");
    assert!(
        !reached
            .iter()
            .any(|l| l.contains("/attack") && !l.contains(PROBE)),
        "an attack reached the upstream: {reached:?}"
    );

    // Ordinary traffic, 8 clients at once: nothing refused, nothing even logged.
    let corpus = clean_traffic::corpus();
    assert!(corpus.len() >= 200, "{} requests", corpus.len());
    let failures: Vec<String> = std::thread::scope(|scope| {
        let chunks: Vec<_> = corpus
            .chunks(corpus.len().div_ceil(8))
            .map(|chunk| {
                scope.spawn(|| {
                    chunk
                        .iter()
                        .filter_map(|r| {
                            let headers: Vec<(&str, &str)> = r
                                .headers
                                .iter()
                                .map(|(n, v)| (n.as_str(), v.as_str()))
                                .collect();
                            let answer = raw(
                                s.porter.http,
                                &request(&r.method, "shop.test", &r.target, &headers, &r.body),
                            );
                            (!matches!(answer.status, 200 | 206 | 304))
                                .then(|| format!("{}: {}", r.what, answer.status))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        chunks.into_iter().flat_map(|c| c.join().unwrap()).collect()
    });
    assert!(failures.is_empty(), "refused: {failures:#?}");
    let matched: Vec<_> = waf_log(s.data())
        .into_iter()
        .filter(|e| !e["uri"].as_str().unwrap().starts_with("/attack"))
        .collect();
    assert!(matched.is_empty(), "false positives: {matched:#?}");

    // Metrics count by site, action and rule (each site's blocked probe included).
    let (status, metrics) = s.porter.api("GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("porter_waf_requests_total{site=\"shop.test\",action=\"blocked\"} 6")
            && metrics.contains("porter_waf_requests_total{site=\"h2.test\",action=\"blocked\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("porter_waf_rule_matches_total{site=\"shop.test\",rule=\"942100\"}"));

    // Last, as the WAF logs them: Porter's own answers arrive over HTTP/2 when the body is large
    // and left (partly) unread: an attack in a 200 KB body, then the issue's case, 15 logins on
    // a site whose WAF blocks (the default limit of 10 a minute): 10 go upstream, then 429s.
    let body = s.dir.path().join("body");
    let mut large = b"q=1' UNION SELECT password FROM users--&pad=".to_vec();
    large.resize(200 * 1024, b'x');
    std::fs::write(&body, &large).unwrap();
    let upload = format!("@{}", body.display());
    let post = |path: &str, data: &str| {
        let url = format!("https://h2.test:{}{path}", https.port());
        status_code(&[
            "--http2",
            "--cacert",
            ca_path.to_str().unwrap(),
            "--resolve",
            &resolve,
            "--data-binary",
            data,
            &url,
        ])
    };
    assert_eq!(post("/attack-h2-large", &upload), "403");
    std::fs::write(&body, vec![b'x'; 200 * 1024]).unwrap();
    let logins: Vec<String> = (0..15).map(|_| post("/wp-login.php", &upload)).collect();
    let limited = logins.iter().filter(|status| *status == "429").count();
    assert!(
        logins[..10]
            .iter()
            .all(|status| status != "429" && status != "000")
            && limited == 5,
        "10 logins reach the upstream, then 429 over HTTP/2: {logins:?}"
    );
}

#[test]
fn detect_logs_and_lets_through_and_each_site_has_its_own_settings() {
    let s = setup(&["--waf-default", "block"]);
    s.site("detect.test", &["--waf", "detect", "--waf-paranoia", "2"]);
    s.site("default.test", &[]);
    s.site("off.test", &["--waf", "off"]);
    s.site(
        "tuned.test",
        &["--waf", "block", "--waf-exclude", "942100,attack-xss"],
    );
    s.site(
        "lenient.test",
        &["--waf", "block", "--waf-threshold", "100"],
    );
    let sqli = |host: &str, marker: &str| {
        s.send(&request(
            "GET",
            host,
            &format!("/{marker}?id=1%27%20OR%201=1--"),
            &[],
            b"",
        ))
    };

    // Detect: through to the upstream, logged as what block mode would have done.
    let answer = sqli("detect.test", "detected");
    assert_eq!(answer.status, 200);
    let entry = waf_log(s.data())
        .into_iter()
        .find(|e| e["site"] == "detect.test")
        .expect("logged");
    assert_eq!(entry["action"], "detected");
    assert_eq!(entry["paranoia"], 2);
    assert!(seen(&s.porter, "detect.test")
        .iter()
        .any(|l| l.contains("/detected")));

    // The server's default blocks a site that sets nothing; a site can turn it off.
    assert_eq!(sqli("default.test", "x").status, 403);
    assert_eq!(sqli("off.test", "x").status, 200);
    // Exclusions by id and by tag; a threshold no single rule reaches.
    assert_eq!(sqli("tuned.test", "x").status, 200);
    let xss = request(
        "GET",
        "tuned.test",
        "/?q=%3Cscript%3Ealert(1)%3C/script%3E",
        &[],
        b"",
    );
    assert_eq!(s.send(&xss).status, 200, "attack-xss is excluded");
    let traversal = request("GET", "tuned.test", "/a/../../../etc/passwd", &[], b"");
    assert_eq!(
        s.send(&traversal).status,
        403,
        "what is not excluded still blocks"
    );
    assert_eq!(sqli("lenient.test", "x").status, 200);
    let lenient = waf_log(s.data())
        .into_iter()
        .find(|e| e["site"] == "lenient.test")
        .unwrap();
    assert_eq!(lenient["action"], "passed");

    // A site that blocks has the WordPress login limit unless it says otherwise.
    let login = request(
        "POST",
        "default.test",
        "/wp-login.php",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"log=admin&pwd=guess",
    );
    let statuses: Vec<u16> = (0..11).map(|_| s.send(&login).status).collect();
    assert_eq!(
        statuses.iter().filter(|&&c| c == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(statuses[10], 429);

    // Bad settings are refused and change nothing.
    for bad in [
        &["--waf", "strict"][..],
        &["--waf", "block", "--waf-paranoia", "5"],
        &["--waf", "block", "--waf-threshold", "0"],
        &["--waf", "block", "--waf-exclude", "94 2100"],
        &["--waf", "block", "--waf-body-limit", "99999999"],
        &["--waf-paranoia", "2"],
    ] {
        let mut args = vec!["site", "update", "default.test"];
        args.extend(bad);
        assert!(!s.porter.cli(&args).status.success(), "{bad:?}");
    }
    assert_eq!(sqli("default.test", "y").status, 403);
    let list = s.porter.ok(&["site", "list"]);
    assert!(list.contains("waf detect pl2 >=5"), "{list}");

    // `porter waf log DOMAIN --follow` prints that site's new entries as they come.
    let mut follower = Running::new(
        std::process::Command::new(porter_bin())
            .args(["--data-dir", s.data().to_str().unwrap()])
            .args(["waf", "log", "detect.test", "--follow"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (lines, printed) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    assert_eq!(sqli("default.test", "not-followed").status, 403);
    assert_eq!(sqli("detect.test", "followed").status, 200);
    let mut shown = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !shown.iter().any(|l: &String| l.contains("/followed")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match printed.recv_timeout(left) {
            Ok(line) => shown.push(line),
            Err(_) => panic!("waf log --follow did not print the new entry: {shown:?}"),
        }
    }
    assert!(
        !shown.iter().any(|l| l.contains("not-followed")),
        "{shown:?}"
    );
    let _ = follower.kill();
    let _ = follower.wait();

    // `porter waf log DOMAIN` shows that site's entries.
    let shown = s.porter.ok(&["waf", "log", "detect.test"]);
    assert!(
        shown.contains("detected detect.test") && shown.contains("942100"),
        "{shown}"
    );
    assert!(!shown.contains("default.test"));
}

#[test]
fn a_long_body_streams_through_and_rules_reload_without_a_gap() {
    crs_installed();
    let dir = tempfile::tempdir().unwrap();
    // A copy of the CRS of the test's own: Debian's setup and rules, and a rule of the test's.
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(rules.join("rules")).unwrap();
    std::fs::write(
        rules.join("crs-setup.conf"),
        "Include /etc/modsecurity/crs/crs-setup.conf\n",
    )
    .unwrap();
    for entry in std::fs::read_dir(CRS).unwrap() {
        let path = entry.unwrap().path();
        std::os::unix::fs::symlink(&path, rules.join("rules").join(path.file_name().unwrap()))
            .unwrap();
    }
    let backend = Backend::start();
    let porter = Porter::start(
        &dir.path().join("data"),
        &["--waf-rules", rules.to_str().unwrap()],
    );
    porter.ok(&["site", "add", "big.test", "--upstream", &backend.addr]);
    porter.ok(&[
        "site",
        "update",
        "big.test",
        "--waf",
        "block",
        "--waf-body-limit",
        "1024",
    ]);

    // 1 MiB: the first KiB inspected, all of it delivered, the rest noted.
    let mut body = b"x=".to_vec();
    body.resize(1 << 20, b'a');
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let answer = raw(
        porter.http,
        &request("POST", "big.test", "/count", &form, &body),
    );
    assert_eq!(
        (answer.status, answer.body.as_slice()),
        (200, &b"1048576"[..])
    );
    let entry = waf_log(&porter.data_dir)
        .into_iter()
        .find(|e| e["body_truncated"] == true)
        .expect("the truncation is logged");
    assert_eq!(entry["site"], "big.test");
    // An attack inside the inspected start is caught; past it, it is not (as documented).
    let mut late = b"x=".to_vec();
    late.extend(vec![b'a'; 2048]);
    late.extend_from_slice(b"&y=1' OR 1=1--");
    let urlencoded = form;
    let early = b"y=1' OR 1=1--&x=aaaa";
    assert_eq!(
        raw(
            porter.http,
            &request("POST", "big.test", "/count", &urlencoded, early)
        )
        .status,
        403
    );
    assert_eq!(
        raw(
            porter.http,
            &request("POST", "big.test", "/count", &urlencoded, &late)
        )
        .status,
        200
    );

    // A rule of the operator's, added and reloaded.
    let probe = request("GET", "big.test", "/?porter_probe=evil", &[], b"");
    assert_eq!(raw(porter.http, &probe).status, 200);
    std::fs::write(
        rules.join("rules").join("ZZ-LOCAL.conf"),
        "SecRule ARGS:porter_probe \"@streq evil\" \"id:10001,phase:2,pass,log,severity:'CRITICAL',msg:'porter probe'\"\n",
    )
    .unwrap();
    let reloaded = porter.ok(&["waf", "reload"]);
    assert!(reloaded.contains("libmodsecurity"), "{reloaded}");
    let answer = raw(porter.http, &probe);
    assert_eq!(answer.status, 403);
    let entry = logged(
        &porter.data_dir,
        answer.header("porter-request-id").unwrap(),
    );
    assert_eq!(rule_ids(&entry), [10001]);

    // Broken rules: the reload fails and says why; the rules loaded keep serving.
    std::fs::write(
        rules.join("rules").join("ZZ-BROKEN.conf"),
        "SecNoSuchDirective On\n",
    )
    .unwrap();
    let out = porter.cli(&["waf", "reload"]);
    assert!(!out.status.success());
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        why.contains("ZZ-BROKEN") || why.contains("SecNoSuchDirective"),
        "{why}"
    );
    assert_eq!(raw(porter.http, &probe).status, 403);
    porter.stop();
}

#[test]
fn what_a_hostile_client_sends_changes_nothing_else() {
    let s = setup(&[]);
    s.site("target.test", &["--waf", "block"]);
    // Bytes that are not UTF-8 in the target, a header and the body, and a NUL in the body.
    let mut nasty = b"POST /p?x=%ff%fe%00 HTTP/1.1\r\nHost: target.test\r\nConnection: close\r\nX-Bytes: \xff\xfe\xfd\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\n".to_vec();
    nasty.extend_from_slice(b"a=\xff\x00\xc3\x28b");
    let answer = s.send(&nasty);
    assert!(
        matches!(answer.status, 200 | 400 | 403),
        "{}",
        answer.status
    );
    // A forged log field in the path: the entry has the rules that matched, not the forgery.
    let forged = request(
        "GET",
        "target.test",
        "/%22%5D%20%5Bid%20%22999999%22%5D%20%5Btag%20%22x%22%5D?id=1%27%20OR%201=1--",
        &[],
        b"",
    );
    let answer = s.send(&forged);
    assert_eq!(answer.status, 403);
    let entry = logged(s.data(), answer.header("porter-request-id").unwrap());
    assert!(!rule_ids(&entry).contains(&999999), "{entry}");
    // A body that stops coming: the request fails, the server goes on.
    let mut stalled = TcpStream::connect(s.porter.http).unwrap();
    stalled
        .write_all(b"POST / HTTP/1.1\r\nHost: target.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\na=1")
        .unwrap();
    // Fifty attacks at once while that one waits.
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..50)
            .map(|n| {
                scope.spawn(move || {
                    raw(
                        s.porter.http,
                        &request(
                            "GET",
                            "target.test",
                            &format!("/flood{n}?q=1%27%20OR%201=1--"),
                            &[],
                            b"",
                        ),
                    )
                    .status
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|&c| c == 403), "{statuses:?}");
    assert_eq!(
        s.send(&request("GET", "target.test", "/fine", &[], b""))
            .status,
        200
    );
    drop(stalled);
    assert!(!seen(&s.porter, "target.test")
        .iter()
        .any(|l| l.contains("flood")));
}

#[test]
fn rules_that_cannot_load_are_said_plainly_and_leave_other_sites_alone() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start();
    let missing = dir.path().join("no-such-crs");
    let porter = Porter::start(
        &dir.path().join("data"),
        &["--waf-rules", missing.to_str().unwrap()],
    );
    porter.ok(&["site", "add", "plain.test", "--upstream", &backend.addr]);
    let out = porter.cli(&["site", "update", "plain.test", "--waf", "block"]);
    assert!(!out.status.success());
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        why.contains("no-such-crs") && why.contains("modsecurity-crs"),
        "{why}"
    );
    assert!(
        !porter.ok(&["site", "list"]).contains("waf"),
        "nothing changed"
    );
    assert!(porter.ok(&["waf", "status"]).contains("not loaded"));
    let answer = raw(
        porter.http,
        &request("GET", "plain.test", "/?id=1%27%20OR%201=1--", &[], b""),
    );
    assert_eq!(
        answer.status, 200,
        "a site without the WAF is served as before"
    );
    porter.stop();
}
