//! `porter status`: the server (version, uptime, listeners, edge threads, open connections),
//! what it serves (sites, certificates by state, ACME orders, OCSP refreshes due, apps by
//! state) and its store (health, path, size). It answers even when the store does not: what
//! needs a read is left out after a deadline, and the store's own health says why.

use super::certs::{list_certs, Beside};
use porter_store::{unix_now, Store};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the store's reads may take before `status` answers without them.
const READ_DEADLINE: Duration = Duration::from_secs(3);

/// What the running server knows of itself.
pub(crate) struct ServerFacts {
    pub(crate) started: Instant,
    /// Listener name (`http`, `https`, `admin`, `metrics`) to address.
    pub(crate) listeners: BTreeMap<String, String>,
    pub(crate) edge_threads: usize,
}

/// `porter status`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StatusView {
    pub(crate) version: String,
    /// `None` when no server runs (the CLI read the store itself).
    pub(crate) server: Option<ServerView>,
    /// What the store holds; `None` when it did not answer in time.
    pub(crate) content: Option<Content>,
    pub(crate) store: StoreStatus,
}

/// The running server's part of [`StatusView`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ServerView {
    pub(crate) pid: u32,
    pub(crate) uptime_s: u64,
    pub(crate) listeners: BTreeMap<String, String>,
    pub(crate) edge_threads: usize,
    /// Open client connections by listener.
    pub(crate) connections_open: BTreeMap<String, i64>,
    /// Apps by state (`stopped`, `starting`, `ready`, `failed`).
    pub(crate) apps: BTreeMap<String, usize>,
    /// Whether its ACME worker runs (`--acme-agree-tos`); `None` from a server older than
    /// this field, which did not say.
    #[serde(default)]
    pub(crate) acme: Option<bool>,
    /// The host of the CA its ACME worker orders from.
    #[serde(default)]
    pub(crate) acme_ca: Option<String>,
}

/// What the store holds, counted.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Content {
    pub(crate) sites: usize,
    /// Certificates by `cert status` state (`valid`, `expired`, `pending`, `failing`, ...).
    pub(crate) certificates: BTreeMap<String, usize>,
    /// ACME orders in flight.
    pub(crate) acme_orders_pending: usize,
    /// Sites whose ACME attempts are failing.
    pub(crate) acme_failing: usize,
    /// OCSP responses due for a refresh now.
    pub(crate) ocsp_refresh_due: usize,
    pub(crate) apps: usize,
}

/// The store's part of [`StatusView`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoreStatus {
    /// No failed write it has not recovered from.
    pub(crate) ok: bool,
    /// The failed write, when there is one.
    pub(crate) failure: Option<String>,
    /// Operations that missed their deadline since the start.
    pub(crate) stalled_operations: u64,
    /// Since when (unix seconds) a store on the network (etcd) has not answered.
    #[serde(default)]
    pub(crate) unreachable_since: Option<i64>,
    pub(crate) path: String,
    /// Bytes on disk.
    pub(crate) size_bytes: u64,
}

/// Bytes of the files under `dir`.
fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

async fn content(store: &dyn Store, beside: Beside<'_>) -> Option<Content> {
    let read = async {
        let certs = list_certs(store, beside).await.ok()?;
        let now = unix_now();
        let ocsp_refresh_due = store
            .ocsp_records()
            .await
            .ok()?
            .iter()
            .filter(|(_, o)| o.url.is_some() && o.next_refresh <= now)
            .count();
        let apps = store.apps().await.ok()?.len();
        let mut certificates = BTreeMap::new();
        for cert in &certs {
            *certificates.entry(cert.status.clone()).or_default() += 1;
        }
        Some(Content {
            sites: certs.len(),
            certificates,
            acme_orders_pending: certs.iter().filter(|c| c.order_in_flight).count(),
            acme_failing: certs.iter().filter(|c| c.renewal_failing()).count(),
            ocsp_refresh_due,
            apps,
        })
    };
    tokio::time::timeout(READ_DEADLINE, read)
        .await
        .ok()
        .flatten()
}

/// What the running server has that `status` reports.
pub(crate) struct Running<'a> {
    pub(crate) facts: &'a ServerFacts,
    pub(crate) metrics: &'a crate::observe::metrics::Metrics,
    pub(crate) apps: &'a crate::apps::Supervisor,
}

/// How the server is doing; `server` only when it runs.
pub(crate) async fn status(
    store: &dyn Store,
    store_at: &crate::runtime::store_at::StoreAt,
    beside: Beside<'_>,
    server: Option<Running<'_>>,
) -> StatusView {
    let health = store.health();
    let server = match server {
        Some(Running {
            facts,
            metrics,
            apps: supervisor,
        }) => {
            let mut apps = BTreeMap::new();
            for (_, state) in supervisor.states().await {
                *apps.entry(state.to_owned()).or_default() += 1;
            }
            Some(ServerView {
                pid: std::process::id(),
                uptime_s: facts.started.elapsed().as_secs(),
                listeners: facts.listeners.clone(),
                edge_threads: facts.edge_threads,
                connections_open: ["http", "https", "http3"]
                    .into_iter()
                    .map(str::to_owned)
                    .zip(metrics.connections_open())
                    .collect(),
                apps,
                acme: Some(beside.acme_ca.is_some()),
                acme_ca: beside.acme_ca.map(str::to_owned),
            })
        }
        None => None,
    };
    StatusView {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        server,
        content: content(store, beside).await,
        store: StoreStatus {
            ok: health.failure.is_none(),
            failure: health.failure,
            stalled_operations: health.stalled,
            unreachable_since: health.unreachable_since,
            path: store_at.to_string(),
            size_bytes: store_at.sled_dir().map_or(0, disk_usage),
        },
    }
}
