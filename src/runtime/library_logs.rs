//! The `log` records of libraries, passed on to `tracing` (as `tracing-log` does), except
//! rustls's warnings: each one is about what a TLS peer sent (an IP address as SNI, a message
//! out of order, an alert), which any client can repeat at will. They are counted by reason
//! (`porter_tls_client_errors_total`) and logged one line per reason per interval
//! (see `log_limit`), never one per connection.

use crate::runtime::log_limit::{Limit, INTERVAL};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Level;
use tracing_log::log;

/// The reasons rustls's warnings are counted by, each with the start of its message. The
/// last, with no start, takes the rest: the label set stays bounded whatever rustls says.
const REASONS: [(&str, &str); 6] = [
    ("illegal_sni", "Illegal SNI"),
    ("unexpected_message", "Received a "),
    ("alert_received", "TLS alert warning received"),
    ("alert_sent", "Sending warning alert"),
    ("early_data", "early_data"),
    ("other", ""),
];

static COUNTS: [AtomicU64; REASONS.len()] = [const { AtomicU64::new(0) }; REASONS.len()];
/// One line per reason per interval, in the order of [`REASONS`].
static LIMITS: [Limit; REASONS.len()] = [
    Limit::new(
        Level::WARN,
        "TLS clients sent an illegal SNI (an IP address or a bad name)",
    ),
    Limit::new(Level::WARN, "TLS peers sent a message out of order"),
    Limit::new(Level::WARN, "TLS peers sent a warning alert"),
    Limit::new(Level::WARN, "TLS peers were sent a warning alert"),
    Limit::new(Level::WARN, "TLS clients sent early data they may not"),
    Limit::new(Level::WARN, "TLS peers sent what rustls warns about"),
];

/// rustls's warnings since the start, by reason (the metric's label).
pub(crate) fn tls_client_errors() -> impl Iterator<Item = (&'static str, u64)> {
    REASONS
        .iter()
        .zip(&COUNTS)
        .map(|((reason, _), n)| (*reason, n.load(Ordering::Relaxed)))
}

/// Makes `log` records reach the `tracing` subscriber already installed, at the levels it
/// takes (and rustls's warnings always, to be counted).
pub(crate) fn install() {
    let level = tracing::level_filters::LevelFilter::current();
    let max = tracing_log::AsLog::as_log(&level).max(log::LevelFilter::Warn);
    if log::set_boxed_logger(Box::new(Bridge(tracing_log::LogTracer::new()))).is_ok() {
        log::set_max_level(max);
    }
}

struct Bridge(tracing_log::LogTracer);

/// Whether a record is one of rustls's warnings (or errors) about a peer.
fn from_peer(metadata: &log::Metadata<'_>) -> bool {
    metadata.level() <= log::Level::Warn && metadata.target().starts_with("rustls")
}

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        from_peer(metadata) || self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !from_peer(record.metadata()) {
            return self.0.log(record);
        }
        let mut start = Start::default();
        let _ = write!(start, "{}", record.args());
        let i = REASONS
            .iter()
            .position(|(_, prefix)| start.text().starts_with(prefix))
            .unwrap_or(REASONS.len() - 1);
        COUNTS[i].fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = LIMITS[i].admit(None) {
            // The message may quote what the peer sent: rustls escapes it (Debug). Under
            // rustls's target, so that a filter on it (PORTER_LOG=info,rustls=off) applies.
            tracing::warn!(
                target: "rustls",
                reason = REASONS[i].0,
                rustls = %record.args(),
                suppressed,
                "{} (all counted in porter_tls_client_errors_total, one line every {} s)",
                LIMITS[i].what(),
                INTERVAL.as_secs()
            );
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// The first bytes of a message, written without allocating.
#[derive(Default)]
struct Start {
    bytes: [u8; 32],
    len: usize,
}

impl Start {
    fn text(&self) -> &str {
        // Cut at a byte: the prefixes compared are ASCII.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_else(|e| {
            std::str::from_utf8(&self.bytes[..e.valid_up_to()]).unwrap_or_default()
        })
    }
}

impl std::fmt::Write for Start {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_told_apart_by_the_start_of_their_message() {
        let reason = |message: &str| {
            let mut start = Start::default();
            let _ = write!(start, "{message}");
            REASONS
                .iter()
                .find(|(_, prefix)| start.text().starts_with(prefix))
                .map(|(reason, _)| *reason)
        };
        assert_eq!(
            reason("Illegal SNI extension: ignoring IP address presented as hostname (...)"),
            Some("illegal_sni")
        );
        assert_eq!(
            reason("Received a Handshake message while expecting [ChangeCipherSpec]"),
            Some("unexpected_message")
        );
        assert_eq!(reason("something new"), Some("other"));
    }
}
