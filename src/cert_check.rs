//! `porter cert status`'s filters and its monitoring mode (`--check`), which follows the
//! Nagios/Icinga plugin convention: one summary line first, with performance data after `|`,
//! then one line per problem; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

use crate::ops::certs::{ocsp_state, CertView};
use std::process::ExitCode;
use std::time::Duration;

/// Which rows `cert status` shows.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    /// Only these domains (all when empty).
    pub(crate) domains: Vec<String>,
    /// Only certificates that expire within this (or have expired, or have none).
    pub(crate) expiring_within: Option<Duration>,
    /// Only sites whose renewal or OCSP fetch is failing.
    pub(crate) failing: bool,
}

impl Filter {
    pub(crate) fn keep(&self, view: &CertView) -> bool {
        (self.domains.is_empty()
            || self
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&view.domain)))
            && self.expiring_within.is_none_or(|within| {
                view.expires_in_s
                    .is_none_or(|left| left < within.as_secs() as i64)
            })
            && (!self.failing || view.renewal_failing() || view.ocsp_failing())
    }
}

/// A plugin result, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
            Level::Unknown => "UNKNOWN",
        }
    }

    pub(crate) fn exit_code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}

/// The thresholds of `--check`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    pub(crate) warn: Duration,
    pub(crate) crit: Duration,
}

fn days(seconds: i64) -> String {
    let days = seconds as f64 / 86_400.0;
    if days.abs() >= 2.0 {
        format!("{:.0} days", days.abs())
    } else {
        format!("{:.1} hours", (seconds as f64 / 3600.0).abs())
    }
}

/// What a row is wrong with, at which level.
fn problems(view: &CertView, t: Thresholds) -> Vec<(Level, String)> {
    let mut found = Vec::new();
    let mut say = |level, what: String| found.push((level, format!("{}: {what}", view.domain)));
    match view.expires_in_s {
        Some(left) if left <= 0 => say(Level::Critical, format!("expired {} ago", days(-left))),
        Some(left) if left < t.crit.as_secs() as i64 => {
            say(Level::Critical, format!("expires in {}", days(left)))
        }
        Some(left) if left < t.warn.as_secs() as i64 => {
            say(Level::Warning, format!("expires in {}", days(left)))
        }
        Some(_) => {}
        None => match view.status.as_str() {
            "pending" => {}
            _ => say(
                Level::Warning,
                format!(
                    "no certificate ({})",
                    view.note.as_deref().unwrap_or(&view.status)
                ),
            ),
        },
    }
    if view.ocsp.as_deref() == Some(ocsp_state::REVOKED) {
        say(Level::Critical, "revoked (OCSP)".into());
    }
    if view.served == Some(false) {
        say(
            Level::Critical,
            "the edge serves another certificate than the stored one".into(),
        );
    }
    if view.renewal_failing() {
        say(
            Level::Warning,
            format!(
                "renewal failing after {} attempts: {}",
                view.attempts,
                view.last_error.as_deref().unwrap_or("unknown error")
            ),
        );
    }
    if view.ocsp.as_deref() == Some(ocsp_state::STALE) {
        say(
            Level::Warning,
            "OCSP response stale (expired, no new one)".into(),
        );
    }
    found
}

/// The plugin's level and output for `views`.
pub(crate) fn check(views: &[CertView], t: Thresholds) -> (Level, String) {
    let mut lines: Vec<(Level, String)> = views.iter().flat_map(|v| problems(v, t)).collect();
    // Worst first, then by domain: the line a pager shows is the one that matters.
    lines.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let level = lines.first().map_or(Level::Ok, |(level, _)| *level);
    let count = |l: Level| lines.iter().filter(|(level, _)| *level == l).count();
    let with_cert: Vec<i64> = views.iter().filter_map(|v| v.expires_in_s).collect();
    let next = with_cert.iter().copied().min();
    let mut out = format!(
        "PORTER CERTS {} - {} certificates",
        level.word(),
        with_cert.len()
    );
    match next {
        Some(left) if left > 0 => out.push_str(&format!(", next expiry in {}", days(left))),
        Some(left) => out.push_str(&format!(", one expired {} ago", days(-left))),
        None => {}
    }
    out.push_str(&format!(
        " | certificates={} sites={} critical={} warning={} min_days_left={:.2};{};{}\n",
        with_cert.len(),
        views.len(),
        count(Level::Critical),
        count(Level::Warning),
        next.map_or(0.0, |s| s as f64 / 86_400.0),
        t.warn.as_secs() / 86_400,
        t.crit.as_secs() / 86_400,
    ));
    for (level, line) in lines {
        out.push_str(&format!("{}: {line}\n", level.word()));
    }
    (level, out)
}

/// The plugin's output when nothing could be read.
pub(crate) fn unknown(why: &anyhow::Error) -> String {
    format!("PORTER CERTS UNKNOWN - {why:#}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn cert(domain: &str, left_days: i64) -> CertView {
        CertView {
            domain: domain.into(),
            status: if left_days > 0 { "valid" } else { "expired" }.into(),
            expires_in_s: Some(left_days * DAY),
            ocsp: Some(ocsp_state::GOOD.into()),
            ..CertView::default()
        }
    }

    const T: Thresholds = Thresholds {
        warn: Duration::from_secs(14 * 86_400),
        crit: Duration::from_secs(3 * 86_400),
    };

    #[test]
    fn levels_follow_the_worst_row_and_the_summary_comes_first() {
        let healthy = [cert("a.test", 60), cert("b.test", 41)];
        let (level, out) = check(&healthy, T);
        assert_eq!(level, Level::Ok);
        assert!(
            out.starts_with("PORTER CERTS OK - 2 certificates, next expiry in 41 days | "),
            "{out}"
        );
        assert_eq!(out.lines().count(), 1);

        let (level, out) = check(&[cert("a.test", 60), cert("w.test", 10)], T);
        assert_eq!(level, Level::Warning);
        assert_eq!(
            out.lines().nth(1),
            Some("WARNING: w.test: expires in 10 days")
        );

        let mut revoked = cert("r.test", 60);
        revoked.ocsp = Some(ocsp_state::REVOKED.into());
        let (level, out) = check(&[cert("w.test", 10), revoked, cert("x.test", -1)], T);
        assert_eq!(level, Level::Critical);
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0]
                .starts_with("PORTER CERTS CRITICAL - 3 certificates, one expired 24.0 hours ago"),
            "{out}"
        );
        assert_eq!(lines[1], "CRITICAL: r.test: revoked (OCSP)");
        assert_eq!(lines[2], "CRITICAL: x.test: expired 24.0 hours ago");
        assert_eq!(lines[3], "WARNING: w.test: expires in 10 days");
    }

    #[test]
    fn failing_renewals_stale_ocsp_and_a_stale_edge_are_reported() {
        let mut failing = cert("f.test", 30);
        failing.attempts = 3;
        failing.last_error = Some("CA: connection refused".into());
        let mut stale = cert("s.test", 30);
        stale.ocsp = Some(ocsp_state::STALE.into());
        let mut behind = cert("e.test", 30);
        behind.served = Some(false);
        let (level, out) = check(&[failing, stale, behind], T);
        assert_eq!(level, Level::Critical);
        assert!(
            out.contains(
                "WARNING: f.test: renewal failing after 3 attempts: CA: connection refused"
            ),
            "{out}"
        );
        assert!(
            out.contains("WARNING: s.test: OCSP response stale"),
            "{out}"
        );
        assert!(
            out.contains("CRITICAL: e.test: the edge serves another certificate"),
            "{out}"
        );
    }

    #[test]
    fn filters_select_rows() {
        let mut failing = cert("f.test", 30);
        failing.attempts = 1;
        let rows = [cert("a.test", 60), cert("b.test", 5), failing];
        let kept = |f: &Filter| -> Vec<String> {
            rows.iter()
                .filter(|v| f.keep(v))
                .map(|v| v.domain.clone())
                .collect()
        };
        assert_eq!(kept(&Filter::default()).len(), 3);
        let soon = Filter {
            expiring_within: Some(Duration::from_secs(7 * 86_400)),
            ..Filter::default()
        };
        assert_eq!(kept(&soon), ["b.test"]);
        let failing = Filter {
            failing: true,
            ..Filter::default()
        };
        assert_eq!(kept(&failing), ["f.test"]);
        let named = Filter {
            domains: vec!["A.test".into()],
            ..Filter::default()
        };
        assert_eq!(kept(&named), ["a.test"]);
    }
}
