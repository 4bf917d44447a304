//! `porter cert status`'s filters and its monitoring mode (`--check`), which follows the
//! Nagios/Icinga plugin convention: one summary line first, with performance data after `|`,
//! then one line per problem; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

use crate::control::ops::certs::{CertView, OcspState};
use serde::Serialize;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
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
    /// A certificate expiring within this is a warning ...
    pub(crate) warn: Duration,
    /// ... and within this, critical.
    pub(crate) crit: Duration,
    /// A site may go this long without a certificate (after `site add`) before it is a
    /// warning: the time an ACME order normally takes, with room for a retry.
    pub(crate) grace: Duration,
    /// ... and this long before it is critical.
    pub(crate) critical_after: Duration,
}

/// What `--check` knows of the server beside the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Server {
    /// No server answers: the rows come from the store, and nothing is served or renewed.
    Down,
    /// A server answers; `acme`: whether its ACME worker runs (`None`: it did not say).
    Up { acme: Option<bool> },
}

/// Most problem lines printed: a pager shows the first, and a plugin's output is read by
/// monitoring systems with limits of their own (NRPE's 64 KiB, Nagios' 8 KiB by default).
const MAX_LINES: usize = 50;

/// Most characters of one problem line (the CA's error text is the long part).
const MAX_LINE: usize = 300;

/// `seconds` for a person: seconds, minutes, hours or days.
fn span(seconds: i64) -> String {
    let s = seconds.unsigned_abs();
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} minutes", s / 60),
        7200..172_800 => format!("{:.1} hours", s as f64 / 3600.0),
        _ => format!("{:.0} days", s as f64 / 86_400.0),
    }
}

/// A problem line as a monitoring system can take it: on one line, without the `|` that
/// starts performance data, and bounded.
fn clean(line: &str) -> String {
    let mut out: String = line
        .chars()
        .map(|c| match c {
            '|' => '/',
            c if c.is_control() => ' ',
            c => c,
        })
        .take(MAX_LINE)
        .collect();
    if line.chars().count() > MAX_LINE {
        out.push_str("...");
    }
    out
}

/// Whether the row is a site that waits for ACME to obtain its first certificate.
fn waits_for_acme(view: &CertView) -> bool {
    matches!(view.status.as_str(), "pending" | "failing")
}

/// The problem of a site without a valid certificate, if it is one yet.
fn without_certificate(view: &CertView, t: Thresholds, acme_off: bool) -> Option<(Level, String)> {
    let why = view.note.as_deref().unwrap_or(&view.status);
    if acme_off && waits_for_acme(view) {
        return Some((
            Level::Critical,
            "no certificate, and the running server has ACME off: it never gets one (serve with --acme-agree-tos, or import one)".into(),
        ));
    }
    let level = match view.waiting_s {
        // Added before Porter kept the time: its grace has passed.
        None => Level::Warning,
        Some(w) if w >= t.critical_after.as_secs() as i64 => Level::Critical,
        Some(w) if w >= t.grace.as_secs() as i64 => Level::Warning,
        Some(_) => return None,
    };
    let how_long = view
        .waiting_s
        .map(|w| format!(" for {}", span(w)))
        .unwrap_or_default();
    Some((level, format!("no certificate{how_long} ({why})")))
}

/// One problem found, at its level.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Finding {
    pub(crate) level: Level,
    /// The site it is about (`None`: about the server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) domain: Option<String>,
    pub(crate) problem: String,
}

impl Finding {
    /// The finding as its plugin output line says it (without the level).
    fn line(&self) -> String {
        match &self.domain {
            Some(domain) => format!("{domain}: {}", self.problem),
            None => self.problem.clone(),
        }
    }
}

/// The problems of the expiry of a row's certificate, or of its having none.
fn expiry_problem(view: &CertView, t: Thresholds, acme_off: bool) -> Option<(Level, String)> {
    match view.expires_in_s {
        Some(left) if left <= 0 => Some((Level::Critical, format!("expired {} ago", span(-left)))),
        _ if view.status != "valid" => without_certificate(view, t, acme_off),
        Some(left) if left < t.crit.as_secs() as i64 => {
            Some((Level::Critical, format!("expires in {}", span(left))))
        }
        Some(left) if left < t.warn.as_secs() as i64 => {
            Some((Level::Warning, format!("expires in {}", span(left))))
        }
        _ => None,
    }
}

/// What a row is wrong with, at which level.
fn problems(view: &CertView, t: Thresholds, acme_off: bool) -> Vec<Finding> {
    let mut found: Vec<(Level, String)> = expiry_problem(view, t, acme_off).into_iter().collect();
    if view.ocsp_state() == Some(OcspState::Revoked) {
        found.push((Level::Critical, "revoked (OCSP)".into()));
    }
    if view.served == Some(false) {
        found.push((
            Level::Critical,
            "the edge serves another certificate than the stored one".into(),
        ));
    }
    if view.renewal_failing() {
        found.push((
            Level::Warning,
            format!(
                "renewal failing after {} attempts: {}",
                view.attempts,
                view.last_error.as_deref().unwrap_or("unknown error")
            ),
        ));
    }
    if view.ocsp_state() == Some(OcspState::Stale) {
        found.push((
            Level::Warning,
            "OCSP response stale (expired, no new one)".into(),
        ));
    }
    found
        .into_iter()
        .map(|(level, problem)| Finding {
            level,
            domain: Some(view.domain.clone()),
            problem,
        })
        .collect()
}

/// The plugin's result: its level, what it counted, and what it found, worst first.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// OK, WARNING, CRITICAL or UNKNOWN: also the exit code's meaning.
    pub(crate) state: Level,
    /// 0 to 3, as the plugin exits.
    pub(crate) exit_code: u8,
    /// The summary line, without its performance data.
    pub(crate) summary: String,
    pub(crate) certificates: usize,
    pub(crate) sites: usize,
    pub(crate) without_certificate: usize,
    /// Seconds until the next certificate expires (negative: one has expired).
    pub(crate) next_expiry_s: Option<i64>,
    pub(crate) findings: Vec<Finding>,
    /// The thresholds, for the performance data.
    #[serde(skip)]
    thresholds: Option<Thresholds>,
}

/// Every finding of `views`, worst first, then by domain: the line a pager shows is the one
/// that matters.
fn findings(views: &[CertView], t: Thresholds, acme_off: bool) -> Vec<Finding> {
    let mut found: Vec<Finding> = views
        .iter()
        .flat_map(|v| problems(v, t, acme_off))
        .collect();
    // Certificates ACME renews, on a server that will not: one line for all of them.
    let not_renewed = views.iter().filter(|v| v.renew_at.is_some()).count();
    if acme_off && not_renewed > 0 {
        found.push(Finding {
            level: Level::Warning,
            domain: None,
            problem: format!("the running server has ACME off: {not_renewed} ACME certificates will not be renewed (serve with --acme-agree-tos)"),
        });
    }
    found.sort_by(|a, b| b.level.cmp(&a.level).then_with(|| a.line().cmp(&b.line())));
    found
}

/// The plugin's result for `views`, read with `server` beside them.
pub(crate) fn check(views: &[CertView], t: Thresholds, server: Server) -> Report {
    let acme_off = server == Server::Up { acme: Some(false) };
    let findings = findings(views, t, acme_off);
    let found = findings.first().map_or(Level::Ok, |f| f.level);
    let (level, prefix) = match server {
        Server::Down => (
            Level::Unknown,
            "no porter server runs on this data dir: nothing is served or renewed; the store has ",
        ),
        Server::Up { .. } => (found, ""),
    };
    let certificates = views.iter().filter(|v| v.expires_in_s.is_some()).count();
    let without_certificate = views
        .iter()
        .filter(|v| v.status != "valid" && v.expires_in_s.is_none_or(|left| left > 0))
        .count();
    let next_expiry_s = views.iter().filter_map(|v| v.expires_in_s).min();
    let mut summary = format!("{prefix}{certificates} certificates");
    match next_expiry_s {
        Some(left) if left > 0 => summary.push_str(&format!(", next expiry in {}", span(left))),
        Some(left) => summary.push_str(&format!(", one expired {} ago", span(-left))),
        None => {}
    }
    if without_certificate > 0 {
        summary.push_str(&format!(", {without_certificate} sites without one"));
    }
    Report {
        state: level,
        exit_code: level as u8,
        summary,
        certificates,
        sites: views.len(),
        without_certificate,
        next_expiry_s,
        findings,
        thresholds: Some(t),
    }
}

/// The plugin's result when nothing could be read.
pub(crate) fn unknown(why: &anyhow::Error) -> Report {
    Report {
        state: Level::Unknown,
        exit_code: Level::Unknown as u8,
        summary: clean(&format!("{why:#}")),
        certificates: 0,
        sites: 0,
        without_certificate: 0,
        next_expiry_s: None,
        findings: Vec::new(),
        thresholds: None,
    }
}

impl Report {
    /// The plugin's output: the summary line with performance data after `|`, then one line
    /// per finding (at most [`MAX_LINES`]).
    pub(crate) fn text(&self) -> String {
        let mut out = format!("PORTER CERTS {} - {}", self.state.word(), self.summary);
        let Some(t) = self.thresholds else {
            return out + "\n";
        };
        let count = |l: Level| self.findings.iter().filter(|f| f.level == l).count();
        out.push_str(&format!(
            " | certificates={} sites={} critical={} warning={} min_days_left={:.2};{};{} without_certificate={}\n",
            self.certificates,
            self.sites,
            count(Level::Critical),
            count(Level::Warning),
            self.next_expiry_s.map_or(0.0, |s| s as f64 / 86_400.0),
            t.warn.as_secs() / 86_400,
            t.crit.as_secs() / 86_400,
            self.without_certificate,
        ));
        for finding in self.findings.iter().take(MAX_LINES) {
            out.push_str(&format!(
                "{}: {}\n",
                finding.level.word(),
                clean(&finding.line())
            ));
        }
        if self.findings.len() > MAX_LINES {
            out.push_str(&format!(
                "... and {} more (`porter cert status` lists every site)\n",
                self.findings.len() - MAX_LINES
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    /// The level and the plugin output of `check`.
    fn checked(views: &[CertView], t: Thresholds, server: Server) -> (Level, String) {
        let report = check(views, t, server);
        (report.state, report.text())
    }

    fn cert(domain: &str, left_days: i64) -> CertView {
        CertView {
            domain: domain.into(),
            status: if left_days > 0 { "valid" } else { "expired" }.into(),
            expires_in_s: Some(left_days * DAY),
            ocsp: Some(OcspState::Good.into()),
            ..CertView::default()
        }
    }

    const T: Thresholds = Thresholds {
        warn: Duration::from_secs(14 * 86_400),
        crit: Duration::from_secs(3 * 86_400),
        grace: Duration::from_secs(600),
        critical_after: Duration::from_secs(3600),
    };

    /// A server with ACME on.
    const UP: Server = Server::Up { acme: Some(true) };

    /// A site without a certificate, waiting for `waiting_s` (`None`: an old record).
    fn waiting(domain: &str, waiting_s: Option<i64>) -> CertView {
        CertView {
            domain: domain.into(),
            status: "pending".into(),
            waiting_s,
            ..CertView::default()
        }
    }

    #[test]
    fn levels_follow_the_worst_row_and_the_summary_comes_first() {
        let healthy = [cert("a.test", 60), cert("b.test", 41)];
        let (level, out) = checked(&healthy, T, UP);
        assert_eq!(level, Level::Ok);
        assert!(
            out.starts_with("PORTER CERTS OK - 2 certificates, next expiry in 41 days | "),
            "{out}"
        );
        assert_eq!(out.lines().count(), 1);

        let (level, out) = checked(&[cert("a.test", 60), cert("w.test", 10)], T, UP);
        assert_eq!(level, Level::Warning);
        assert_eq!(
            out.lines().nth(1),
            Some("WARNING: w.test: expires in 10 days")
        );

        let mut revoked = cert("r.test", 60);
        revoked.ocsp = Some(OcspState::Revoked.into());
        let (level, out) = checked(&[cert("w.test", 10), revoked, cert("x.test", -1)], T, UP);
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
        stale.ocsp = Some(OcspState::Stale.into());
        let mut behind = cert("e.test", 30);
        behind.served = Some(false);
        let (level, out) = checked(&[failing, stale, behind], T, UP);
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
    fn a_site_without_a_certificate_is_ok_within_its_grace_then_warning_then_critical() {
        let (level, out) = checked(&[cert("a.test", 60), waiting("new.test", Some(30))], T, UP);
        assert_eq!(level, Level::Ok, "{out}");
        assert!(out.contains(", 1 sites without one | "), "{out}");
        assert!(out.contains(" without_certificate=1"), "{out}");

        let (level, out) = checked(&[waiting("slow.test", Some(720))], T, UP);
        assert_eq!(level, Level::Warning, "{out}");
        assert_eq!(
            out.lines().nth(1),
            Some("WARNING: slow.test: no certificate for 12 minutes (pending)")
        );

        let mut failing = waiting("stuck.test", Some(2 * 3600 + 60));
        failing.status = "failing".into();
        let (level, out) = checked(&[failing], T, UP);
        assert_eq!(level, Level::Critical, "{out}");
        assert!(
            out.contains("CRITICAL: stuck.test: no certificate for 2.0 hours (failing)"),
            "{out}"
        );

        // A record from before Porter kept the time: its grace has passed.
        let (level, out) = checked(&[waiting("old.test", None)], T, UP);
        assert_eq!(level, Level::Warning, "{out}");
        assert!(
            out.contains("WARNING: old.test: no certificate (pending)"),
            "{out}"
        );

        // A site without ACME waits for an import the same way.
        let mut import = waiting("import.test", Some(900));
        import.status = "none".into();
        import.note = Some("ACME is off for this site: import a certificate".into());
        let (level, out) = checked(&[import], T, UP);
        assert_eq!(level, Level::Warning, "{out}");
    }

    #[test]
    fn acme_off_on_the_running_server_is_critical_for_a_waiting_site() {
        let off = Server::Up { acme: Some(false) };
        let mut renewed = cert("a.test", 60);
        renewed.renew_at = Some("2030-01-01T00:00:00Z".into());
        let (level, out) = checked(&[renewed.clone(), waiting("new.test", Some(1))], T, off);
        assert_eq!(level, Level::Critical, "{out}");
        assert!(
            out.contains("CRITICAL: new.test: no certificate, and the running server has ACME off"),
            "{out}"
        );
        assert!(
            out.contains(
                "WARNING: the running server has ACME off: 1 ACME certificates will not be renewed"
            ),
            "{out}"
        );
        // Imported certificates only: ACME off is how it is meant to run.
        let (level, out) = checked(&[cert("a.test", 60)], T, off);
        assert_eq!(level, Level::Ok, "{out}");
        // A server that does not say whether ACME runs: the grace decides.
        let (level, out) = checked(
            &[waiting("new.test", Some(1))],
            T,
            Server::Up { acme: None },
        );
        assert_eq!(level, Level::Ok, "{out}");
    }

    #[test]
    fn no_server_is_unknown_and_still_lists_the_problems() {
        let (level, out) = checked(&[cert("a.test", 60), cert("x.test", -1)], T, Server::Down);
        assert_eq!(level, Level::Unknown);
        assert!(
            out.starts_with("PORTER CERTS UNKNOWN - no porter server runs on this data dir"),
            "{out}"
        );
        assert!(out.contains("CRITICAL: x.test: expired"), "{out}");
    }

    #[test]
    fn the_output_stays_bounded_and_on_its_lines() {
        let mut many: Vec<CertView> = (0..1000)
            .map(|i| waiting(&format!("s{i:04}.test"), Some(7200)))
            .collect();
        many[0].attempts = 1;
        many[0].last_error = Some(format!(
            "CA said | no\nWARNING: fake line {}",
            "x".repeat(5000)
        ));
        let (level, out) = checked(&many, T, UP);
        assert_eq!(level, Level::Critical);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1 + MAX_LINES + 1, "{out}");
        assert_eq!(
            lines[0].matches('|').count(),
            1,
            "only the perfdata bar: {}",
            lines[0]
        );
        assert!(
            lines[MAX_LINES + 1].starts_with("... and 951 more"),
            "{out}"
        );
        assert!(lines[1..]
            .iter()
            .all(|l| !l.contains('|') && l.len() < MAX_LINE + 20));
        let (_, out) = checked(&many[..1], T, UP);
        let error = out.lines().find(|l| l.contains("renewal failing")).unwrap();
        assert!(
            error.contains("CA said / no WARNING: fake line xxx"),
            "{error}"
        );
        assert!(error.ends_with("..."), "{error}");
        assert_eq!(out.lines().count(), 3, "{out}");
    }

    #[test]
    fn spans_read_as_a_person_says_them() {
        assert_eq!(span(59), "59 s");
        assert_eq!(span(-720), "12 minutes");
        assert_eq!(span(86_400), "24.0 hours");
        assert_eq!(span(10 * 86_400), "10 days");
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
