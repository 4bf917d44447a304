//! Ordinary traffic for the web application firewall's end-to-end test, read from
//! `tests/fixtures/clean_traffic.jsonl` (one request per line: `what`, `method`, `target`,
//! `headers` as name/value pairs, and `body` as text or `body_base64`): requests a browser, a
//! WordPress admin, an API client, a feed reader or an uploader sends every day, none of which a
//! WAF may refuse. The firewall runs OWASP CRS 3.3.4 on libmodsecurity 3.0.9 at paranoia level 1
//! (inbound anomaly threshold 5) with Debian's `crs-setup.conf` defaults; every request here was
//! run through exactly that rule set and matched no rule at all.
//!
//! The corpus stays within those defaults on purpose:
//! - methods GET, HEAD, POST and OPTIONS only: `tx.allowed_methods` is `GET HEAD POST OPTIONS`,
//!   so rule 911100 refuses PUT, PATCH and DELETE (an API client that needs them sends a POST
//!   with `X-HTTP-Method-Override`, as WordPress's own `apiFetch` does);
//! - request bodies of type `application/x-www-form-urlencoded`, `multipart/form-data` or
//!   `application/json` only, charset utf-8 (rules 920420, 920480);
//! - no `Accept-Charset`, `Content-Encoding`, `Content-Range`, `Proxy`, `Lock-Token` or `If`
//!   request header (920450), no file extension of `tx.restricted_extensions` (920440);
//! - every body has a Content-Type, every POST a body (920340, 920180), no GET or HEAD a body.
//!
//! It also leaves out what is ordinary but that rule set refuses at paranoia 1 anyway: a literal
//! `%` in a query (`?s=100%25+rye`, 920220), a value starting with a command name
//! (`?s=python+tutorial`, 932150), `; time` (932105), `file (` (933160), `-->` (941180),
//! `<img src=` in post content (941160), `ü` and `ž` in one value (941310), a line ending in
//! `post office` (921110), a URL ending in `?` (931120), a `session_id` parameter (943120), an
//! apostrophe in an upload's file name (920120). The corpus passes unchanged with
//! `modsecurity.conf-recommended`'s JSON body processor and strict body rules (200001-200003).

#![allow(unreachable_pub)] // included by `#[path]` into a test crate, where `pub` reaches no one

use base64::Engine as _;
use serde_json::Value;

/// One ordinary request, as a browser, a WordPress admin, an API client or an uploader sends it.
pub struct CleanRequest {
    /// A short description for failure messages.
    pub what: String,
    pub method: String,
    /// Path and query, e.g. `/wp-admin/edit.php?post_type=page`.
    pub target: String,
    /// Without Host and Content-Length (the test adds those).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Every request of the corpus file, in its order; a malformed line fails the test naming it.
pub fn corpus() -> Vec<CleanRequest> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/clean_traffic.jsonl"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| parse(line).unwrap_or_else(|e| panic!("{path}:{}: {e}", n + 1)))
        .collect()
}

fn parse(line: &str) -> Result<CleanRequest, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let text = |key: &str| {
        v[key]
            .as_str()
            .map(str::to_owned)
            .ok_or(format!("no {key}"))
    };
    let headers = v["headers"]
        .as_array()
        .ok_or("no headers")?
        .iter()
        .map(|pair| match pair.as_array().map(Vec::as_slice) {
            Some([Value::String(name), Value::String(value)]) => Ok((name.clone(), value.clone())),
            _ => Err(format!("a header is not [name, value]: {pair}")),
        })
        .collect::<Result<_, _>>()?;
    let body = match (v["body"].as_str(), v["body_base64"].as_str()) {
        (Some(text), None) => text.as_bytes().to_vec(),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| e.to_string())?,
        (None, None) => Vec::new(),
        (Some(_), Some(_)) => return Err("both body and body_base64".into()),
    };
    Ok(CleanRequest {
        what: text("what")?,
        method: text("method")?,
        target: text("target")?,
        headers,
        body,
    })
}
