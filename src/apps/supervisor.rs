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
use super::messages::{AppStatus, Cmd, Lease, Unavailable};
use super::process;
use crate::runtime::service::{follow, Follower};
use porter_store::Recover as _;
use porter_store::{AppId, Change, Store, StoreError, Upstream};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The states an app can be in.
pub(crate) const STATES: [&str; 4] = ["stopped", "starting", "ready", "failed"];

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
        self.actors.lock().recover().get(id).cloned()
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
        let mut actors = self.actors.lock().recover();
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
        let known = self.owners.lock().recover().get(id).cloned();
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
                    .recover()
                    .insert(id.clone(), owner.clone());
                owner
            }
        };
        Ok(owner.filter(|node| node != this))
    }

    /// Where node `node` takes forwarded requests (read once, then as the nodes change).
    async fn node_addr(&self, node: &str) -> Result<Upstream, Unavailable> {
        let known = self.nodes.lock().recover().clone();
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
                *self.nodes.lock().recover() = Some(nodes.clone());
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
    async fn follow_app(&self, id: AppId) -> Result<(), StoreError> {
        let Some(tx) = self.actor(&id) else {
            return Ok(());
        };
        match self.store.app(&id).await? {
            Some(app) if app.node.is_none() || app.node == self.node => {
                let _ = tx.send(Cmd::Update(Box::new(app))).await;
            }
            // Removed, or moved to another node of the fleet: stopped here.
            _ => {
                self.actors.lock().recover().remove(&id);
                let (reply, done) = oneshot::channel();
                if tx.send(Cmd::Shutdown(reply)).await.is_ok() {
                    let _ = done.await;
                }
            }
        }
        Ok(())
    }

    /// [`Supervisor::follow_app`] for each of `ids`, every one even when some fail; the first
    /// failure.
    async fn follow_apps(&self, ids: impl IntoIterator<Item = AppId>) -> Result<(), StoreError> {
        let mut failed = Ok(());
        for id in ids {
            let followed = self.follow_app(id).await;
            failed = failed.and(followed);
        }
        failed
    }

    /// Follows app changes in the store until `shutdown`, then stops every daemon.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        follow(&*self, self.store.subscribe(), &shutdown).await;
        let actors: Vec<_> = self.actors.lock().recover().drain().collect();
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

impl Follower for Supervisor {
    const NAME: &'static str = "apps";

    fn cares(&self, change: &Change) -> bool {
        matches!(change, Change::App(_) | Change::Nodes)
    }

    /// Forgets what it read of owners and nodes, and reads every running app again.
    async fn reload(&self) -> Result<(), StoreError> {
        self.owners.lock().recover().clear();
        *self.nodes.lock().recover() = None;
        let running: Vec<AppId> = self.actors.lock().recover().keys().cloned().collect();
        self.follow_apps(running).await
    }

    async fn apply(&self, batch: Vec<Change>) -> Result<(), StoreError> {
        let mut apps = BTreeSet::new();
        for change in batch {
            match change {
                Change::App(id) => {
                    self.owners.lock().recover().remove(&id);
                    apps.insert(id);
                }
                Change::Nodes => *self.nodes.lock().recover() = None,
                _ => {}
            }
        }
        self.follow_apps(apps).await
    }
}
