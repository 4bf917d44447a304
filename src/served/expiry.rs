//! Warns about certificates that have expired or expire within [`SOON`]: each at most once an
//! hour, and once more at the moment one expires, read from the in-memory snapshot (never the
//! disk) when it changes and when a certificate's end comes. An expired site keeps its HTTPS-only answers (see `proxy::request`); this is what
//! makes it visible in the logs as well as in `cert status` and the metrics.

use crate::served::reload::LiveSites;
use porter_store::unix_now;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How close to its end a certificate is worth a warning.
const SOON: i64 = 7 * 86_400;
/// How often the same certificate is warned about.
const EVERY: i64 = 3_600;

/// What was last said about a certificate: when, and whether it had expired then.
#[derive(Clone, Copy)]
struct Said {
    at: i64,
    expired: bool,
}

/// Watches `sites` until `stop`.
pub(crate) async fn watch(sites: Arc<LiveSites>, stop: CancellationToken) {
    let mut said: HashMap<Arc<str>, Said> = HashMap::new();
    let mut swaps = sites.swaps();
    loop {
        swaps.mark_unchanged();
        let now = unix_now();
        let next = check(&sites, &mut said, now);
        // At least a second between checks: many certificates ending in the same second, or
        // a burst of changes, are one check.
        let wait = Duration::from_secs((next - now).clamp(1, EVERY) as u64);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            // A certificate stored, renewed or removed: look again (after the second).
            Ok(()) = swaps.changed() => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Warns about what is due at `now`; returns when to look again (a certificate's end, or an
/// hour from now).
fn check(sites: &LiveSites, said: &mut HashMap<Arc<str>, Said>, now: i64) -> i64 {
    let snapshot = sites.current();
    let mut next = now + EVERY;
    let mut seen = HashSet::new();
    for entry in snapshot.entries() {
        let Some(cert) = &entry.cert else { continue };
        let left = cert.not_after - now;
        if left > 0 {
            next = next.min(cert.not_after + 1);
        }
        if left > SOON {
            continue;
        }
        seen.insert(Arc::clone(&entry.domain));
        let expired = left <= 0;
        let due = said
            .get(&entry.domain)
            .is_none_or(|s| now - s.at >= EVERY || (expired && !s.expired));
        if !due {
            continue;
        }
        said.insert(Arc::clone(&entry.domain), Said { at: now, expired });
        let domain = &*entry.domain;
        if expired {
            let hours = -left / 3_600;
            tracing::warn!(domain, serial = %cert.serial, expired_hours_ago = hours, "certificate expired: HTTPS clients reject it, plain HTTP still redirects to HTTPS; see `porter cert status`");
        } else {
            let hours = left / 3_600;
            tracing::warn!(domain, serial = %cert.serial, expires_in_hours = hours, "certificate expires soon; see `porter cert status` for its renewal");
        }
    }
    // Forget what was renewed or removed, so that a later problem is told at once.
    said.retain(|domain, _| seen.contains(domain));
    next
}
