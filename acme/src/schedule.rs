//! When to act: renewal times from each certificate's own lifetime (or the CA's ARI window),
//! emergency renewal near expiry, and the backoff after failures. Pure functions of the stored
//! records, so that a restart computes the same schedule.

use porter_store::{AcmeRequest, AcmeState, CertRecord};

const DAY: i64 = 86_400;

/// First retry after a failure.
pub(crate) const MIN_BACKOFF: i64 = 60;
/// Longest wait between retries; retries never stop.
pub(crate) const MAX_BACKOFF: i64 = 6 * 3600;

/// A number in [0, 1) derived from `seed`, stable across restarts (jitter that does not move).
pub(crate) fn unit_jitter(seed: &str) -> f64 {
    // FNV-1a: tiny, stable, and good enough to spread renewals.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % 10_000) as f64 / 10_000.0
}

/// When a certificate should be renewed by its lifetime alone: when a third of it remains (half
/// for lifetimes of 10 days or less), moved earlier by up to 1/20 of the lifetime of jitter.
pub(crate) fn renewal_by_lifetime(not_before: i64, not_after: i64, jitter: f64) -> i64 {
    let lifetime = (not_after - not_before).max(1);
    let remaining = if lifetime <= 10 * DAY {
        lifetime / 2
    } else {
        lifetime / 3
    };
    not_after - remaining - (jitter * (lifetime / 20) as f64) as i64
}

/// The latest moment before expiry at which renewal becomes an emergency: 1/50 of the lifetime.
pub(crate) fn emergency_at(not_before: i64, not_after: i64) -> i64 {
    not_after - (not_after - not_before).max(1) / 50
}

/// Why a certificate renews when it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewalReason {
    /// The operator asked for it (`porter cert renew` or `revoke`).
    Requested,
    /// The CA's ARI window (RFC 9773) for this certificate.
    Ari,
    /// A share of its lifetime remains (a third; half for short-lived ones).
    Lifetime,
    /// Its end is near: the other rules would renew it too late.
    Emergency,
}

impl RenewalReason {
    /// The reason as `cert status` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            RenewalReason::Requested => "requested",
            RenewalReason::Ari => "ARI window",
            RenewalReason::Lifetime => "lifetime ratio",
            RenewalReason::Emergency => "emergency",
        }
    }
}

/// When a certificate renews, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    /// Unix seconds.
    pub at: i64,
    /// The rule that set `at`.
    pub why: RenewalReason,
}

/// When to renew `cert`: now when asked to (`request`), else the CA's ARI window when it has
/// one for this certificate, else the lifetime rule; never later than the emergency point.
pub fn renewal(
    cert: &CertRecord,
    state: &AcmeState,
    request: Option<&AcmeRequest>,
    now: i64,
) -> Renewal {
    if request.is_some_and(|r| r.renew.is_some() || r.revoke.contains(&cert.chain[0])) {
        return Renewal {
            at: now,
            why: RenewalReason::Requested,
        };
    }
    let planned = match &state.ari {
        Some(ari) if ari.serial == cert.serial => Renewal {
            at: ari.renew_at,
            why: RenewalReason::Ari,
        },
        _ => Renewal {
            at: renewal_by_lifetime(cert.not_before, cert.not_after, unit_jitter(&cert.serial)),
            why: RenewalReason::Lifetime,
        },
    };
    let emergency = emergency_at(cert.not_before, cert.not_after);
    if planned.at > emergency {
        Renewal {
            at: emergency,
            why: RenewalReason::Emergency,
        }
    } else {
        planned
    }
}

/// When to renew `cert` (see [`renewal`]).
pub(crate) fn renewal_at(
    cert: &CertRecord,
    state: &AcmeState,
    request: Option<&AcmeRequest>,
    now: i64,
) -> i64 {
    renewal(cert, state, request, now).at
}

/// The wait before retry number `attempts` (1 = after the first failure): doubling from a
/// minute to six hours, with ±10% jitter, and never more than a quarter of the time the current
/// certificate has left (`remaining`, when there is one), so an expiring site keeps trying often.
pub(crate) fn backoff(attempts: u32, jitter: f64, remaining: Option<i64>) -> i64 {
    let exp = attempts.saturating_sub(1).min(20);
    let base = (MIN_BACKOFF << exp).min(MAX_BACKOFF);
    let jittered = (base as f64 * (0.9 + 0.2 * jitter)) as i64;
    match remaining {
        Some(left) => jittered.min((left / 4).max(MIN_BACKOFF)),
        None => jittered,
    }
}

/// A moment inside an ARI window, stable for a given certificate (RFC 9773 section 4.2
/// asks clients to pick uniformly at random within the window).
pub(crate) fn pick_in_window(start: i64, end: i64, jitter: f64) -> i64 {
    start + ((end - start).max(0) as f64 * jitter) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ninety_day_certificates_renew_with_a_third_left() {
        let (nb, na) = (0, 90 * DAY);
        assert_eq!(renewal_by_lifetime(nb, na, 0.0), 60 * DAY);
        let jittered = renewal_by_lifetime(nb, na, 0.999);
        assert!(jittered < 60 * DAY && jittered > 55 * DAY, "{jittered}");
        assert_eq!(emergency_at(nb, na), na - 90 * DAY / 50);
    }

    #[test]
    fn short_certificates_renew_at_half() {
        // Six-day certificates (Let's Encrypt shortlived) and one-minute test certificates.
        assert_eq!(renewal_by_lifetime(0, 6 * DAY, 0.0), 3 * DAY);
        assert_eq!(renewal_by_lifetime(100, 160, 0.0), 130);
        assert!(renewal_by_lifetime(100, 160, 0.99) >= 127);
    }

    #[test]
    fn backoff_grows_to_six_hours_and_stays() {
        let waits: Vec<i64> = (1..=12).map(|n| backoff(n, 0.5, None)).collect();
        assert_eq!(waits[0], 60);
        assert_eq!(waits[1], 120);
        assert_eq!(waits[5], 60 * 32);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
        assert_eq!(
            backoff(1000, 0.5, None),
            MAX_BACKOFF,
            "never gives up, never overflows"
        );
        assert_eq!(
            backoff(10, 0.5, Some(3600)),
            900,
            "an expiring certificate retries more often"
        );
        assert_eq!(backoff(10, 0.5, Some(10)), MIN_BACKOFF);
    }

    #[test]
    fn jitter_is_stable_and_spread() {
        assert_eq!(unit_jitter("0a1b"), unit_jitter("0a1b"));
        let values: Vec<f64> = (0..100).map(|i| unit_jitter(&format!("{i:x}"))).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        assert!(values.iter().any(|v| *v < 0.3) && values.iter().any(|v| *v > 0.7));
    }

    #[test]
    fn window_pick_stays_inside() {
        assert_eq!(pick_in_window(100, 200, 0.0), 100);
        assert_eq!(pick_in_window(100, 200, 0.5), 150);
        assert_eq!(pick_in_window(100, 50, 0.5), 100);
    }
}
