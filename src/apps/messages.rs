//! What the supervisor and the apps' actors tell each other, and what they hand out: the
//! commands an actor takes, the events of its processes, the lease a request holds on an
//! instance, and the answers (status, why an app is unavailable). Both sides use these; neither
//! side's code is needed to read them.

use super::probe::NotReady;
use porter_store::{App, Upstream};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Requests that may wait for one app to start.
pub(super) const QUEUE: usize = 1024;
/// Lines of log kept with a failed app's status.
pub(super) const LOG_LINES: usize = 20;

/// Why a request cannot be served by its app now.
#[derive(Debug, Clone)]
pub(crate) enum Unavailable {
    /// The site names an app that does not exist.
    NoSuchApp,
    /// It did not become ready within its start timeout.
    StartTimeout,
    /// It listens, but not on the port Porter gave it (where, only `porter app status` says).
    ListensElsewhere,
    /// It crashed too often, or cannot be started; `porter app restart` tries again. (Why is
    /// in `porter app status`, not in answers to the internet.)
    Failed,
    /// Too many requests are already waiting for it.
    Busy,
    /// `porter app stop` came while the request waited for it to start.
    Stopped,
    /// It runs on another node of the fleet, which is not running.
    NodeDown(String),
    /// It runs on another node, and the request was forwarded here by a node already.
    NotHere(String),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::NoSuchApp => f.write_str("the site's app does not exist"),
            Unavailable::StartTimeout => f.write_str("the app did not become ready in time"),
            Unavailable::ListensElsewhere => {
                f.write_str("the app did not start: it does not listen where Porter expects it")
            }
            Unavailable::Failed => f.write_str("the app has failed"),
            Unavailable::Busy => f.write_str("too many requests are waiting for the app"),
            Unavailable::Stopped => f.write_str("the app was stopped"),
            Unavailable::NodeDown(node) => {
                write!(f, "the app runs on node {node}, which is not running")
            }
            Unavailable::NotHere(node) => write!(
                f,
                "a request forwarded by another node for an app of node {node} (never forwarded twice)"
            ),
        }
    }
}

/// What in-flight requests and idle time are counted on, per instance.
pub(super) struct Shared {
    pub(super) in_flight: AtomicUsize,
    pub(super) last_activity_ms: AtomicU64,
}

/// A request's hold on a ready instance; dropping it ends the request.
pub(crate) struct Lease {
    /// Where to forward the request.
    pub(crate) upstream: Upstream,
    /// The local instance's counts; `None` when the app runs on another node of the fleet
    /// (`upstream` is then that node's).
    pub(super) shared: Option<Arc<Shared>>,
}

impl Lease {
    /// Whether the request goes to another node of the fleet.
    pub(crate) fn to_other_node(&self) -> bool {
        self.shared.is_none()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared
                .last_activity_ms
                .store(porter_store::unix_now_ms(), Ordering::Relaxed);
            shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// What `porter app status` shows.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct AppStatus {
    pub(crate) id: String,
    /// `stopped`, `starting`, `ready` or `failed`.
    pub(crate) state: String,
    pub(crate) pid: Option<u32>,
    pub(crate) uptime_s: Option<u64>,
    pub(crate) restarts: u32,
    pub(crate) last_exit: Option<String>,
    pub(crate) memory_kib: Option<u64>,
    pub(crate) in_flight: usize,
    /// Old instances still finishing requests after a replacement.
    pub(crate) draining: usize,
    /// Why it failed, with its last log lines.
    pub(crate) error: Option<String>,
}

/// What the supervisor tells an app's actor.
pub(super) enum Cmd {
    Acquire(oneshot::Sender<Result<Lease, Unavailable>>),
    Update(Box<App>),
    Restart,
    Stop,
    Status(oneshot::Sender<AppStatus>),
    Shutdown(oneshot::Sender<()>),
}

/// What an actor hears of its own processes and checks (by instance generation).
pub(super) enum Event {
    Ready(u64),
    StartFailed(u64, NotReady),
    Exited(u64, String),
    Health(u64, bool),
    Retry,
}
