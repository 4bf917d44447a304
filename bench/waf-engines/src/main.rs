//! Runs the OWASP CRS 3.3.4 regression cases (FTW YAML) through the two candidate engines in
//! process, with the same configuration (DetectionOnly, paranoia 4, the regression suite's
//! setup), and prints, per rule file, how many cases each engine passes and, overall, the CPU
//! each spends per request. A case passes when every `log_contains: id "N"` rule matched and no
//! `no_log_contains` rule did. Cases sent raw (`encoded_request`) are counted apart: they need
//! a real socket, which Porter's own script provides.
//!
//! Usage: `cargo run --release -- REGRESSION_DIR [CRS_RULES_DIR] [CRS_SETUP]`; environment:
//! `WAF_PARANOIA` (4), `WAF_NO_903=1` (leave out the application exclusion packages, which
//! zentinel-modsec 0.5.0 mis-skips: with them, it evaluates nothing after REQUEST-903),
//! `WAF_CASE=TITLE` (print what each engine matched for one case), `WAF_CHECK_FILES=1` (which
//! CRS files zentinel-modsec cannot load).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[path = "../../../tests/common/clean_traffic.rs"]
mod clean_traffic;
use std::time::{Duration, Instant};

/// The regression suite's setup (its README), then the CRS as Debian installs it, without
/// RESPONSE-980 (phase 5 correlation: it only logs, and zentinel-modsec 0.5.0 cannot parse its
/// quoted regex variable names, `&TX:'/WEB_ATTACK/'`).
fn config(setup: &str, rules: &str, paranoia: u8) -> String {
    let mut files: Vec<_> = std::fs::read_dir(rules)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .filter(|p| !p.to_string_lossy().contains("RESPONSE-980"))
        .filter(|p| {
            std::env::var_os("WAF_NO_903").is_none() || !p.to_string_lossy().contains("REQUEST-903")
        })
        .collect();
    files.sort();
    let includes: String = files
        .iter()
        .map(|f| format!("Include {}\n", f.display()))
        .collect();
    format!(
        "SecRuleEngine DetectionOnly\n\
         SecRequestBodyAccess On\n\
         SecRequestBodyLimit 131072\n\
         SecRequestBodyNoFilesLimit 131072\n\
         SecRequestBodyLimitAction ProcessPartial\n\
         SecAction \"id:900005,phase:1,nolog,pass,ctl:ruleRemoveById=910000,setvar:tx.paranoia_level={paranoia},setvar:tx.crs_validate_utf8_encoding=1,setvar:tx.arg_name_length=100,setvar:tx.arg_length=400\"\n\
         Include {setup}\n\
         {includes}"
    )
}

/// One request of a case, and what must and must not match.
struct Case {
    file: String,
    title: String,
    method: String,
    uri: String,
    version: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    must: Vec<String>,
    must_not: Vec<String>,
}

fn text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The rule ids an output line names (`id "942100"`, or a bare list).
fn ids(v: Option<&serde_yaml::Value>) -> Vec<String> {
    let Some(v) = v.and_then(text) else {
        return Vec::new();
    };
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|s| s.len() >= 6)
        .map(str::to_owned)
        .collect()
}

/// Every case in `dir`, and how many were left out because they are sent raw.
fn cases(dir: &std::path::Path) -> (Vec<Case>, usize) {
    let mut files: Vec<_> = walk(dir);
    files.sort();
    let (mut out, mut raw) = (Vec::new(), 0);
    for path in files {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let file = path
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for test in doc["tests"].as_sequence().into_iter().flatten() {
            for stage in test["stages"].as_sequence().into_iter().flatten() {
                let stage = if stage.get("stage").is_some() {
                    &stage["stage"]
                } else {
                    stage
                };
                let (input, output) = (&stage["input"], &stage["output"]);
                if input.get("encoded_request").is_some() || input.get("raw_request").is_some() {
                    raw += 1;
                    continue;
                }
                let headers = input["headers"]
                    .as_mapping()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| Some((text(k)?, text(v).unwrap_or_default())))
                    .collect();
                let mut headers: Vec<(String, String)> = headers;
                let body = match &input["data"] {
                    serde_yaml::Value::Sequence(lines) => lines
                        .iter()
                        .filter_map(text)
                        .collect::<Vec<_>>()
                        .join("\r\n")
                        .into_bytes(),
                    other => text(other).unwrap_or_default().into_bytes(),
                };
                // As go-ftw completes them: a body gets its length and, without a type, the
                // form type.
                let has = |name: &str, headers: &[(String, String)]| {
                    headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
                };
                if !body.is_empty() {
                    if !has("content-type", &headers) {
                        headers.push((
                            "Content-Type".into(),
                            "application/x-www-form-urlencoded".into(),
                        ));
                    }
                    if !has("content-length", &headers) {
                        headers.push(("Content-Length".into(), body.len().to_string()));
                    }
                }
                out.push(Case {
                    file: file.clone(),
                    title: text(&test["test_title"]).unwrap_or_default(),
                    method: text(&input["method"]).unwrap_or_else(|| "GET".into()),
                    uri: text(&input["uri"]).unwrap_or_else(|| "/".into()),
                    version: text(&input["version"]).unwrap_or_else(|| "HTTP/1.1".into()),
                    headers,
                    body,
                    must: ids(output.get("log_contains")),
                    must_not: ids(output.get("no_log_contains")),
                });
            }
        }
    }
    (out, raw)
}

/// Porter's clean-traffic corpus (the WAF test's) as cases: nothing may match.
fn clean_cases() -> Vec<Case> {
    clean_traffic::corpus()
        .into_iter()
        .map(|r| {
            let mut headers = vec![("Host".to_owned(), "shop.test".to_owned())];
            headers.extend(r.headers);
            if !r.body.is_empty() || r.method == "POST" {
                headers.push(("Content-Length".into(), r.body.len().to_string()));
            }
            Case {
                file: "clean".into(),
                title: r.what,
                method: r.method.into(),
                uri: r.target,
                version: "HTTP/1.1".into(),
                headers,
                body: r.body,
                must: Vec::new(),
                must_not: Vec::new(),
            }
        })
        .collect()
}

/// The CRS detection rules among `matched` (not its initialisation, paranoia-level skips
/// (xxx011-xxx018), scoring or correlation).
fn detections(matched: &[String]) -> Vec<String> {
    matched
        .iter()
        .filter(|id| {
            id.parse::<u32>()
                .is_ok_and(|n| (911_100..=944_999).contains(&n) && n % 1000 >= 100)
        })
        .cloned()
        .collect()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    files
}

/// The rule ids an engine matched for one case, and the time it took.
trait Engine {
    fn name(&self) -> &'static str;
    fn run(&self, case: &Case) -> (Vec<String>, Duration);
}

struct Zentinel(zentinel_modsec::ModSecurity);

impl Engine for Zentinel {
    fn name(&self) -> &'static str {
        "zentinel-modsec 0.5.0"
    }

    fn run(&self, case: &Case) -> (Vec<String>, Duration) {
        let started = Instant::now();
        let mut tx = self.0.new_transaction();
        tx.set_client_addr("127.0.0.1", 40000);
        tx.set_server_addr("127.0.0.1", 80);
        let _ = tx.process_uri(&case.uri, &case.method, &case.version);
        for (k, v) in &case.headers {
            let _ = tx.add_request_header(k, v);
        }
        let _ = tx.process_request_headers();
        let _ = tx.append_request_body(&case.body);
        let _ = tx.process_request_body();
        let matched = tx.matched_rules().to_vec();
        (matched, started.elapsed())
    }
}

struct LibModSecurity {
    msc: modsecurity::ModSecurity,
    rules: modsecurity::Rules,
}

impl Engine for LibModSecurity {
    fn name(&self) -> &'static str {
        "libmodsecurity 3.0.9"
    }

    fn run(&self, case: &Case) -> (Vec<String>, Duration) {
        let logged = Arc::new(Mutex::new(String::new()));
        let sink = logged.clone();
        let started = Instant::now();
        let mut tx = self
            .msc
            .transaction_builder()
            .with_rules(&self.rules)
            .with_logging(move |line| {
                if let Some(line) = line {
                    sink.lock().unwrap().push_str(line);
                }
            })
            .build()
            .unwrap();
        let _ = tx.process_connection("127.0.0.1", 40000, "127.0.0.1", 80);
        let version = case.version.trim_start_matches("HTTP/");
        let _ = tx.process_uri(&case.uri, &case.method, version);
        for (k, v) in &case.headers {
            let _ = tx.add_request_header(k, v);
        }
        let _ = tx.process_request_headers();
        let _ = tx.append_request_body(&case.body);
        let _ = tx.process_request_body();
        let _ = tx.process_logging();
        let took = started.elapsed();
        drop(tx);
        let text = logged.lock().unwrap().clone();
        let matched = text
            .split("[id \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_owned)
            .collect();
        (matched, took)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .expect("usage: waf-engines REGRESSION_DIR [CRS_RULES_DIR] [CRS_SETUP]");
    let rules_dir = args
        .get(2)
        .map_or("/usr/share/modsecurity-crs/rules", String::as_str);
    let setup = args
        .get(3)
        .map_or("/etc/modsecurity/crs/crs-setup.conf", String::as_str);
    // The suite's own setting is 4 (every rule); 1 is what sites run.
    let paranoia: u8 = std::env::var("WAF_PARANOIA")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(4);
    let mut conf = config(setup, rules_dir, paranoia);
    // More directives after the rules, for experiments (`SecRuleRemoveById 901321`, ...).
    if let Ok(extra) = std::env::var("WAF_EXTRA") {
        conf.push_str(&extra);
        conf.push('\n');
    }
    if std::env::var_os("WAF_CHECK_FILES").is_some() {
        // Which CRS file each engine cannot load, one at a time (with the setup before it).
        let mut files: Vec<_> = std::fs::read_dir(rules_dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        files.sort();
        for file in files {
            let one = format!("Include {setup}\nInclude {}\n", file.display());
            if let Err(e) = zentinel_modsec::ModSecurity::from_string(&one) {
                println!("zentinel: {}: {e:?}", file.display());
            }
        }
        return;
    }
    let (cases, raw) = if std::env::var_os("WAF_CLEAN").is_some() {
        (clean_cases(), 0)
    } else {
        cases(std::path::Path::new(dir))
    };

    let zentinel =
        Zentinel(zentinel_modsec::ModSecurity::from_string(&conf).expect("zentinel loads the CRS"));
    eprintln!("zentinel: {} rules", zentinel.0.rule_count());
    let msc = modsecurity::ModSecurity::builder()
        .with_log_callbacks()
        .build();
    let mut rules = modsecurity::Rules::new();
    rules
        .add_plain(&conf)
        .expect("libmodsecurity loads the CRS");
    let libmodsec = LibModSecurity { msc, rules };
    let engines: [&dyn Engine; 2] = [&zentinel, &libmodsec];

    // file -> (cases, passes per engine)
    let mut table: BTreeMap<String, (usize, [usize; 2])> = BTreeMap::new();
    let mut time = [Duration::ZERO; 2];
    let mut each: [Vec<Duration>; 2] = Default::default();
    let mut failures: [Vec<String>; 2] = Default::default();
    // Warm up (compiled regexes, caches), then measure.
    for engine in engines {
        for case in cases.iter().take(50) {
            engine.run(case);
        }
    }
    if std::env::var_os("WAF_CLEAN").is_some() {
        // False positives: requests of the corpus a detection rule matched.
        println!("| engine | clean requests | with a detection | rules |\n|---|---:|---:|---|");
        for engine in engines {
            let mut flagged = 0;
            let mut rules = std::collections::BTreeMap::<String, usize>::new();
            for case in &cases {
                let found = detections(&engine.run(case).0);
                flagged += usize::from(!found.is_empty());
                for id in found {
                    *rules.entry(id).or_default() += 1;
                }
            }
            println!("| {} | {} | {flagged} | {rules:?} |", engine.name(), cases.len());
        }
        return;
    }
    if let Ok(title) = std::env::var("WAF_CASE") {
        for case in cases.iter().filter(|c| c.title == title) {
            for engine in engines {
                println!("{}: {:?}", engine.name(), engine.run(case).0);
                let started = Instant::now();
                for _ in 0..200 {
                    engine.run(case);
                }
                println!(
                    "  {:.0} us a run",
                    started.elapsed().as_secs_f64() * 1e6 / 200.0
                );
            }
        }
        return;
    }
    for case in &cases {
        let row = table.entry(case.file.clone()).or_default();
        row.0 += 1;
        for (i, engine) in engines.iter().enumerate() {
            let (matched, took) = engine.run(case);
            time[i] += took;
            each[i].push(took);
            let pass = case.must.iter().all(|id| matched.contains(id))
                && case.must_not.iter().all(|id| !matched.contains(id));
            if pass {
                row.1[i] += 1;
            } else {
                failures[i].push(case.title.clone());
            }
        }
    }
    println!(
        "| rule file | cases | {} | {} |",
        engines[0].name(),
        engines[1].name()
    );
    println!("|---|---:|---:|---:|");
    let mut totals = (0, [0; 2]);
    for (file, (n, pass)) in &table {
        println!("| {file} | {n} | {} | {} |", pass[0], pass[1]);
        totals.0 += n;
        totals.1[0] += pass[0];
        totals.1[1] += pass[1];
    }
    let pct = |p: usize| 100.0 * p as f64 / totals.0.max(1) as f64;
    println!(
        "| **all** | {} | {} ({:.1} %) | {} ({:.1} %) |",
        totals.0,
        totals.1[0],
        pct(totals.1[0]),
        totals.1[1],
        pct(totals.1[1])
    );
    let per = |t: Duration| t.as_secs_f64() * 1e6 / cases.len().max(1) as f64;
    println!(
        "| CPU per request (us, mean) | | {:.0} | {:.0} |",
        per(time[0]),
        per(time[1])
    );
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times
            .get(times.len() / 2)
            .map_or(0.0, |t| t.as_secs_f64() * 1e6)
    };
    let medians = [median(&mut each[0]), median(&mut each[1])];
    println!(
        "| CPU per request (us, median) | | {:.0} | {:.0} |",
        medians[0], medians[1]
    );
    println!("\n{raw} cases sent raw were not run here (they need a socket).");
    for (i, engine) in engines.iter().enumerate() {
        println!(
            "\n{} failed ({}): {}",
            engine.name(),
            failures[i].len(),
            failures[i].join(" ")
        );
    }
}
