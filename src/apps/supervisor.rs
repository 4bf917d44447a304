//! The supervisor: one actor task per app, owning its lifecycle. Requests ask it for a lease on
//! the serving instance (waiting, in a bounded queue, while it starts); the lease counts the
//! request in flight until its response is done, which is what idle stops and graceful
//! replacement wait on.
//!
//! Lifecycle: stopped -> starting (first request) -> ready -> stopping after the idle timeout
//! -> stopped once the process has exited;
//! a crash restarts it (at once if it had traffic, else on the next request) with a growing
//! delay, and a crash loop marks it failed until `porter app restart`; three failed health
//! checks, a settings change or `app restart` start a replacement that takes new requests once
//! ready while the old instance finishes what it has (up to the stop grace) and is stopped.
//! One start at a time: requests wait for the one under way, and a start that did not become
//! ready is stopped before the next begins.

use super::actor::{Actor, AppCounts};
use super::probe::NotReady;
use super::process;
use porter_store::{App, AppId, Change, Store, Upstream};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

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

/// The states an app can be in.
pub(crate) const STATES: [&str; 4] = ["stopped", "starting", "ready", "failed"];

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

pub(super) enum Cmd {
    Acquire(oneshot::Sender<Result<Lease, Unavailable>>),
    Update(Box<App>),
    Restart,
    Stop,
    Status(oneshot::Sender<AppStatus>),
    Shutdown(oneshot::Sender<()>),
}

pub(super) enum Event {
    Ready(u64),
    StartFailed(u64, NotReady),
    Exited(u64, String),
    Health(u64, bool),
    Retry,
}

/// All apps' actors.
pub(crate) struct Supervisor {
    store: Arc<dyn Store>,
    dir: PathBuf,
    root: bool,
    actors: Mutex<HashMap<AppId, mpsc::Sender<Cmd>>>,
    /// The runtime actors run on. A request on any edge thread may start an actor; it must
    /// live on the runtime that outlives them all and reaps its daemons at shutdown.
    runtime: tokio::runtime::Handle,
    /// Starts and crashes, for metrics.
    pub(crate) counts: Arc<AppCounts>,
    /// This node's name in a fleet: apps of other nodes are forwarded to them.
    node: Option<String>,
    /// The node each app runs on, as read (forgotten when the app changes).
    owners: Mutex<HashMap<AppId, Option<String>>>,
    /// Where each node of the fleet is, as read (forgotten when the nodes change).
    nodes: Mutex<Option<HashMap<String, Upstream>>>,
}

impl Supervisor {
    /// A supervisor keeping its logs and pid files in `dir`; stale daemons of an earlier run
    /// are stopped first, except those of `predecessor` (a server handing over to this one,
    /// which stops them itself). Its actors run on the runtime this is called on.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        dir: PathBuf,
        predecessor: Option<u32>,
        node: Option<String>,
    ) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        process::clean_stale(&dir, predecessor);
        Ok(Arc::new(Supervisor {
            store,
            dir,
            root: nix::unistd::geteuid().is_root(),
            actors: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
            counts: Arc::default(),
            node,
            owners: Mutex::default(),
            nodes: Mutex::default(),
        }))
    }

    fn actor(&self, id: &AppId) -> Option<mpsc::Sender<Cmd>> {
        self.actors.lock().expect("actors lock").get(id).cloned()
    }

    async fn actor_or_start(&self, id: &AppId) -> Result<mpsc::Sender<Cmd>, Unavailable> {
        if let Some(tx) = self.actor(id) {
            return Ok(tx);
        }
        let app = match self.store.app(id).await {
            Ok(Some(app)) => app,
            Ok(None) => return Err(Unavailable::NoSuchApp),
            Err(e) => {
                tracing::error!(app = %id, error = %e, "cannot read the app");
                return Err(Unavailable::Failed);
            }
        };
        let mut actors = self.actors.lock().expect("actors lock");
        let tx = actors
            .entry(id.clone())
            .or_insert_with(|| {
                Actor::spawn(
                    app,
                    &self.dir,
                    self.root,
                    &self.runtime,
                    self.counts.clone(),
                )
            })
            .clone();
        Ok(tx)
    }

    /// A lease on `id`'s ready instance, starting it when needed; in a fleet, on the node the
    /// app runs on, when that is another (unless the request was `forwarded` here already).
    pub(crate) async fn acquire(&self, id: &AppId, forwarded: bool) -> Result<Lease, Unavailable> {
        if let Some(node) = self.elsewhere(id).await? {
            if forwarded {
                return Err(Unavailable::NotHere(node));
            }
            let upstream = self.node_addr(&node).await?;
            return Ok(Lease {
                upstream,
                shared: None,
            });
        }
        let tx = self.actor_or_start(id).await?;
        let (reply, answer) = oneshot::channel();
        tx.try_send(Cmd::Acquire(reply))
            .map_err(|_| Unavailable::Busy)?;
        answer.await.unwrap_or(Err(Unavailable::Busy))
    }

    /// The other node app `id` runs on, if it runs on another (read once, then as it changes).
    async fn elsewhere(&self, id: &AppId) -> Result<Option<String>, Unavailable> {
        let Some(this) = &self.node else {
            return Ok(None);
        };
        let known = self.owners.lock().expect("owners lock").get(id).cloned();
        let owner = match known {
            Some(owner) => owner,
            None => {
                let owner = match self.store.app(id).await {
                    Ok(Some(app)) => app.node,
                    Ok(None) => return Err(Unavailable::NoSuchApp),
                    Err(e) => {
                        tracing::error!(app = %id, error = %e, "cannot read the app");
                        return Err(Unavailable::Failed);
                    }
                };
                self.owners
                    .lock()
                    .expect("owners lock")
                    .insert(id.clone(), owner.clone());
                owner
            }
        };
        Ok(owner.filter(|node| node != this))
    }

    /// Where node `node` takes forwarded requests (read once, then as the nodes change).
    async fn node_addr(&self, node: &str) -> Result<Upstream, Unavailable> {
        let known = self.nodes.lock().expect("nodes lock").clone();
        let nodes = match known {
            Some(nodes) => nodes,
            None => {
                let listed = self.store.nodes().await.map_err(|e| {
                    tracing::error!(error = %e, "cannot read the nodes of the fleet");
                    Unavailable::NodeDown(node.to_owned())
                })?;
                let nodes: HashMap<String, Upstream> = listed
                    .into_iter()
                    .filter_map(|n| Some((n.name, Upstream::parse(&n.addr).ok()?)))
                    .collect();
                *self.nodes.lock().expect("nodes lock") = Some(nodes.clone());
                nodes
            }
        };
        nodes
            .get(node)
            .cloned()
            .ok_or_else(|| Unavailable::NodeDown(node.to_owned()))
    }

    /// `porter app restart`: a fresh instance (and an end to a failed state).
    pub(crate) async fn restart(&self, id: &AppId) -> Result<(), Unavailable> {
        let tx = self.actor_or_start(id).await?;
        tx.send(Cmd::Restart).await.map_err(|_| Unavailable::Busy)
    }

    /// `porter app stop`: stopped now; the next request starts it again.
    pub(crate) async fn stop(&self, id: &AppId) {
        if let Some(tx) = self.actor(id) {
            let _ = tx.send(Cmd::Stop).await;
        }
    }

    /// Every app's state (one of [`STATES`]), for metrics and status: none when the store
    /// does not answer within 2 s (a scrape must not wait on a stalled disk).
    pub(crate) async fn states(&self) -> Vec<(String, &'static str)> {
        let apps = match tokio::time::timeout(Duration::from_secs(2), self.store.apps()).await {
            Ok(Ok(apps)) => apps,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the apps");
                return Vec::new();
            }
            Err(_) => {
                tracing::warn!("the store did not answer in time for the apps' states");
                return Vec::new();
            }
        };
        let mut states = Vec::with_capacity(apps.len());
        for app in apps {
            let state = self.status(&app.id).await.state;
            let state = STATES
                .into_iter()
                .find(|s| *s == state)
                .unwrap_or("stopped");
            states.push((app.id.to_string(), state));
        }
        states
    }

    /// `porter app status`.
    pub(crate) async fn status(&self, id: &AppId) -> AppStatus {
        let stopped = AppStatus {
            id: id.to_string(),
            state: "stopped".into(),
            ..AppStatus::default()
        };
        let Some(tx) = self.actor(id) else {
            return stopped;
        };
        let (reply, answer) = oneshot::channel();
        if tx.send(Cmd::Status(reply)).await.is_err() {
            return stopped;
        }
        answer.await.unwrap_or(stopped)
    }

    /// Hands the stored settings of app `id` to its running actor, or stops it when the app
    /// was removed.
    async fn follow(&self, id: AppId) {
        let Some(tx) = self.actor(&id) else { return };
        match self.store.app(&id).await {
            Ok(Some(app)) if app.node.is_none() || app.node == self.node => {
                let _ = tx.send(Cmd::Update(Box::new(app))).await;
            }
            // Removed, or moved to another node of the fleet: stopped here.
            Ok(_) => {
                self.actors.lock().expect("actors lock").remove(&id);
                let (reply, done) = oneshot::channel();
                if tx.send(Cmd::Shutdown(reply)).await.is_ok() {
                    let _ = done.await;
                }
            }
            Err(e) => tracing::error!(app = %id, error = %e, "cannot read the app"),
        }
    }

    /// Follows app changes in the store until `shutdown`, then stops every daemon.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut changes = self.store.subscribe();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                change = changes.recv() => {
                    let ids = match change {
                        Ok(Change::App(id)) => {
                            self.owners.lock().expect("owners lock").remove(&id);
                            vec![id]
                        }
                        Ok(Change::Nodes) => {
                            *self.nodes.lock().expect("nodes lock") = None;
                            continue;
                        }
                        // Missed changes: every running app is read again.
                        Ok(Change::Everything) | Err(RecvError::Lagged(_)) => {
                            self.owners.lock().expect("owners lock").clear();
                            *self.nodes.lock().expect("nodes lock") = None;
                            self.actors.lock().expect("actors lock").keys().cloned().collect()
                        }
                        Ok(_) => continue,
                        Err(RecvError::Closed) => break,
                    };
                    for id in ids {
                        self.follow(id).await;
                    }
                }
            }
        }
        let actors: Vec<_> = self.actors.lock().expect("actors lock").drain().collect();
        let mut done = Vec::new();
        for (_, tx) in actors {
            let (reply, answer) = oneshot::channel();
            if tx.send(Cmd::Shutdown(reply)).await.is_ok() {
                done.push(answer);
            }
        }
        for answer in done {
            let _ = answer.await;
        }
    }
}
