//! What the edge refuses to stay up under load, counted by reason and logged once per interval
//! (not once per refusal, which under attack would be a second attack, on the logs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why something was refused.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reason {
    /// A connection, over the total connection limit.
    Connections,
    /// A connection, over its address's connection limit.
    ConnectionsPerIp,
    /// A TLS connection, over its address's concurrent handshakes.
    HandshakesPerIp,
    /// A TLS connection, over its address's handshake rate.
    HandshakeRate,
    /// A request, its site's or upstream's slots and queue full (or waited out).
    Queue,
    /// A request, over its client's rate for the site.
    ClientRate,
    /// An idle keep-alive connection, closed to make room near the connection limit.
    Idle,
    /// A second spent over the memory ceiling (new connections refused meanwhile).
    Memory,
    /// A connection without a valid PROXY header, or from a source not trusted to send one.
    ProxyProtocol,
    /// A QUIC connection from an address not validated yet, sent a Retry first (handshakes
    /// piling up, or its address over its bounds).
    QuicRetry,
}

/// Each reason's `limit` label in metrics, and its words in the log.
const REASONS: [(Reason, &str, &str); 10] = [
    (
        Reason::Connections,
        "connections",
        "connections over the total limit",
    ),
    (
        Reason::ConnectionsPerIp,
        "connections_per_ip",
        "connections over their address's limit",
    ),
    (
        Reason::HandshakesPerIp,
        "handshakes_per_ip",
        "handshakes over their address's concurrency",
    ),
    (
        Reason::HandshakeRate,
        "handshake_rate",
        "handshakes over their address's rate",
    ),
    (
        Reason::Queue,
        "queue",
        "requests with their site's or upstream's queue full",
    ),
    (
        Reason::ClientRate,
        "client_rate",
        "requests over their client's rate",
    ),
    (
        Reason::Idle,
        "idle",
        "idle keep-alive connections near the connection limit",
    ),
    (Reason::Memory, "memory", "seconds over the memory ceiling"),
    (
        Reason::ProxyProtocol,
        "proxy_protocol",
        "connections without a valid PROXY header from a trusted source",
    ),
    (
        Reason::QuicRetry,
        "quic_retry",
        "QUIC connections sent a Retry to prove their address",
    ),
];

/// How often what was refused is logged, at most.
const INTERVAL: Duration = Duration::from_secs(10);

/// Refusals counted since the start, and how many of them have been logged.
pub(crate) struct Shed {
    totals: [AtomicU64; REASONS.len()],
    /// The totals when they were last logged (written by the logging refusal only).
    logged: [AtomicU64; REASONS.len()],
    started: Instant,
    /// When they were last logged, in milliseconds since `started`.
    logged_ms: AtomicU64,
}

impl Default for Shed {
    fn default() -> Self {
        Shed {
            totals: Default::default(),
            logged: Default::default(),
            started: Instant::now(),
            logged_ms: AtomicU64::new(0),
        }
    }
}

impl Shed {
    /// Counts one refusal, and logs the counts when the interval has passed.
    pub(crate) fn note(&self, reason: Reason) {
        self.totals[reason as usize].fetch_add(1, Ordering::Relaxed);
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.logged_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < INTERVAL.as_millis() as u64
            || self
                .logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        tracing::warn!(
            "shedding load: {} in the last {} s",
            self.take_counts(),
            (now - last).div_ceil(1000)
        );
    }

    /// Refusals since the start, by the limit's metric label.
    pub(crate) fn totals(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REASONS
            .iter()
            .zip(&self.totals)
            .map(|((_, label, _), n)| (*label, n.load(Ordering::Relaxed)))
    }

    /// The counts since they were last taken, as text.
    fn take_counts(&self) -> String {
        REASONS
            .iter()
            .filter_map(|(reason, _, what)| {
                let i = *reason as usize;
                let total = self.totals[i].load(Ordering::Relaxed);
                let n = total.saturating_sub(self.logged[i].swap(total, Ordering::Relaxed));
                (n > 0).then(|| format!("{n} {what}"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl crate::observe::metrics::LimitRejections for Shed {
    fn rejections(&self) -> Vec<(&'static str, u64)> {
        self.totals().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_kept_by_reason_and_taken_once() {
        let shed = Shed::default();
        // The first interval has not passed: counted, not logged.
        shed.note(Reason::HandshakeRate);
        shed.note(Reason::HandshakeRate);
        shed.note(Reason::Queue);
        assert_eq!(
            shed.take_counts(),
            "2 handshakes over their address's rate, 1 requests with their site's or upstream's queue full"
        );
        assert_eq!(shed.take_counts(), "");
        shed.note(Reason::Queue);
        assert_eq!(
            shed.take_counts(),
            "1 requests with their site's or upstream's queue full"
        );
        // The metrics' totals are not taken.
        let totals: Vec<_> = shed.totals().filter(|(_, n)| *n > 0).collect();
        assert_eq!(totals, [("handshake_rate", 2), ("queue", 2)]);
    }
}
