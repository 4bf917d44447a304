//! Active health checks, on the control runtime (never on an edge thread): every upstream of
//! a site with a check is asked `GET path` (with the site's name as Host) at its interval, a
//! tenth either way at random so that a site's upstreams and the sites sharing one are not
//! all asked at the same moment; at most [`AT_ONCE`] checks run at a time on this node. An app
//! member is not checked here: the supervisor checks its app.

use super::probe::{self, Ask};
use super::{Balancer, To};
use crate::runtime::hash::mix;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Checks running at once on this node.
const AT_ONCE: usize = 32;
/// How often the due checks are looked for: the granularity of intervals.
const TICK: Duration = Duration::from_millis(200);

/// Runs the checks until `shutdown`.
pub(crate) async fn run(shutdown: CancellationToken) {
    let running = Arc::new(Semaphore::new(AT_ONCE));
    let started = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        round += 1;
        // Process milliseconds since the checks began; 0 means "due now", so add one.
        let now = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX) + 1;
        for balancer in Balancer::live() {
            let Some(check) = balancer.check() else {
                continue;
            };
            let interval = check.interval_s * 1000;
            for (index, member) in balancer.members().iter().enumerate() {
                let To::Upstream(_) = member.to else { continue };
                let due = member.next_check_ms.load(Relaxed);
                if due > now {
                    continue;
                }
                // 0.9 to 1.1 times the interval.
                let jitter = mix(round ^ (index as u64) << 32 ^ due) % (interval / 5 + 1);
                member
                    .next_check_ms
                    .store(now + interval - interval / 10 + jitter, Relaxed);
                let Ok(permit) = Arc::clone(&running).try_acquire_owned() else {
                    // All busy: it is asked again at the next tick.
                    member.next_check_ms.store(now, Relaxed);
                    continue;
                };
                let balancer = Arc::clone(&balancer);
                tokio::spawn(async move {
                    let result = check_member(&balancer, index).await;
                    balancer.checked(index, result);
                    drop(permit);
                });
            }
        }
    }
}

/// One check of member `index`: Ok when it answers with an accepted status.
async fn check_member(balancer: &Balancer, index: usize) -> Result<(), String> {
    let (Some(check), To::Upstream(upstream)) = (balancer.check(), &balancer.members()[index].to)
    else {
        return Ok(());
    };
    // A wildcard site is asked for as its parent name.
    let host = balancer.site.trim_start_matches("*.");
    let ask = Ask::Get {
        host,
        path: &check.path,
    };
    match probe::check(upstream, &ask, Duration::from_secs(check.timeout_s)).await? {
        Some(status) if check.status.accepts(status) => Ok(()),
        Some(status) => Err(format!("GET {} answered {status}", check.path)),
        None => Ok(()),
    }
}
