//! Readiness and health checks: a TCP (or unix socket) connection, or `GET path` answered with
//! the expected status. Each check has its own deadline. A start that does not become ready
//! says why: what the app listens on instead, if anything.

use super::listeners;
use porter_store::{HealthCheck, Upstream};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Deadline of one check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a starting app's listeners are read from /proc (a look reads every process's
/// stat and the TCP tables: ~10-50 ms with a few hundred processes and sockets).
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// How long an app may listen only elsewhere than on its port before its start fails: long
/// enough for an app that opens another port (a debugger's, a metrics port) a few seconds
/// before its own, far less than the start timeout (30 s) a visitor would wait otherwise.
const ELSEWHERE_GRACE: Duration = Duration::from_secs(5);

/// Why a start did not become ready.
#[derive(Debug)]
pub(super) struct NotReady {
    pub(super) why: String,
    /// It listens, but not where Porter looks.
    pub(super) elsewhere: bool,
}

/// Polls `check` on `upstream` until it passes, or until `timeout`, or until the processes of
/// group `pgid` have listened only elsewhere for [`ELSEWHERE_GRACE`] (TCP apps).
pub(super) async fn become_ready(
    upstream: &Upstream,
    check: &HealthCheck,
    pgid: u32,
    timeout: Duration,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + timeout;
    let mut next_look = Instant::now() + LOOK_EVERY;
    let mut elsewhere_since: Option<Instant> = None;
    loop {
        if passes(upstream, check).await {
            return Ok(());
        }
        let now = Instant::now();
        if now >= next_look || now >= deadline {
            next_look = now + LOOK_EVERY;
            let found = tokio::task::spawn_blocking(move || listeners::of_group(pgid))
                .await
                .unwrap_or_default();
            let here = found.iter().any(|addr| is_upstream(addr, upstream));
            let elsewhere = !found.is_empty() && !here;
            let since = match elsewhere {
                true => *elsewhere_since.get_or_insert(now),
                false => {
                    elsewhere_since = None;
                    now
                }
            };
            let tcp = matches!(upstream, Upstream::Tcp { .. });
            if elsewhere && (now >= deadline || tcp && now - since >= ELSEWHERE_GRACE) {
                return Err(NotReady {
                    why: listens_elsewhere(&found, upstream),
                    elsewhere: true,
                });
            }
            if now >= deadline {
                let within = timeout.as_secs();
                let why = match (here, check) {
                    (true, HealthCheck::Http { path, status }) => format!(
                        "it listens on {upstream} but did not answer GET {path} with {status} \
                         within its start timeout ({within}s)"
                    ),
                    (true, HealthCheck::Tcp) => format!(
                        "it listens on {upstream} but did not accept a connection within its \
                         start timeout ({within}s)"
                    ),
                    (false, _) => format!(
                        "it did not listen on {upstream} within its start timeout ({within}s), \
                         nor on any other TCP port"
                    ),
                };
                return Err(NotReady {
                    why,
                    elsewhere: false,
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a listener on `addr` is reached at `upstream`.
fn is_upstream(addr: &SocketAddr, upstream: &Upstream) -> bool {
    match upstream {
        Upstream::Tcp { host, port } => {
            addr.port() == *port
                && (addr.ip().is_unspecified() || host.parse::<IpAddr>() == Ok(addr.ip()))
        }
        Upstream::Unix(_) => false,
    }
}

fn listens_elsewhere(found: &[SocketAddr], upstream: &Upstream) -> String {
    const SHOWN: usize = 5;
    let mut list: Vec<String> = found.iter().take(SHOWN).map(|a| a.to_string()).collect();
    if found.len() > SHOWN {
        list.push(format!("{} more", found.len() - SHOWN));
    }
    let list = list.join(", ");
    match upstream {
        Upstream::Tcp { .. } => format!(
            "the app listens on {list}, not on {upstream} (the port Porter gave it): use {{port}} \
             or $PORT in its command"
        ),
        Upstream::Unix(path) => format!(
            "the app listens on {list}, not on its socket {}",
            path.display()
        ),
    }
}

/// Whether `upstream` passes `check` now.
pub(super) async fn passes(upstream: &Upstream, check: &HealthCheck) -> bool {
    use crate::balance::probe::{self, Ask};
    match check {
        HealthCheck::Tcp => probe::check(upstream, &Ask::Connect, CHECK_TIMEOUT)
            .await
            .is_ok(),
        HealthCheck::Http { path, status } => {
            let ask = Ask::Get {
                host: "localhost",
                path,
            };
            probe::check(upstream, &ask, CHECK_TIMEOUT).await == Ok(Some(*status))
        }
    }
}
