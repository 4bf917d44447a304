//! The services around the edge: the app supervisor, the admin API and the metrics listener,
//! and the workers that start once every site is loaded (expiry warnings, OCSP, ACME).

use super::parts::Parts;
use crate::control::admin::{self, AdminListener, Serves};
use crate::control::ops::status::ServerFacts;
use crate::observe::metrics::Metrics;
use crate::runtime::service::{Services, Start};
use crate::runtime::store_at::StoreAt;
use porter_acme::AcmeWorker;
use std::sync::Arc;
use tokio_util::task::TaskTracker;

/// What the admin API reports about this server and serves from.
pub(super) struct Facts {
    pub(super) server: ServerFacts,
    pub(super) store_at: StoreAt,
    pub(super) token: Arc<str>,
    /// The ACME CA, when ACME is on.
    pub(super) acme_ca: Option<String>,
    /// This node's name in its fleet.
    pub(super) node: Option<String>,
    pub(super) metrics_sites: usize,
}

/// Starts the app supervisor, the admin API (and metrics listener) and the workers; returns
/// the admin connections, which the drain waits for.
pub(super) fn start(
    parts: &Parts,
    (admin_listener, metrics_listener): (AdminListener, Option<AdminListener>),
    acme: Option<AcmeWorker>,
    facts: Facts,
    services: &mut Services,
) -> TaskTracker {
    let supervisor = parts.apps.clone();
    services.start("apps", Start::Now, |stop| supervisor.run(stop));
    let ctx = Arc::new(admin::Context {
        apps: Some(parts.apps.clone()),
        apps_dir: parts.apps_dir.clone(),
        store: parts.store.clone(),
        acme_ca: facts.acme_ca,
        sites: Some(parts.sites.clone()),
        metrics: Some(metrics(parts, acme.as_ref(), facts.metrics_sites)),
        store_at: facts.store_at,
        server: Some(facts.server),
        waf: Some(parts.waf.clone()),
        node: facts.node,
        cache: parts.cache.clone(),
    });
    let connections = TaskTracker::new();
    if let Some(listener) = metrics_listener {
        let (ctx, connections) = (ctx.clone(), connections.clone());
        services.start("metrics listener", Start::Now, |stop| {
            admin::serve(listener, ctx, Serves::Metrics, stop, connections)
        });
    }
    let (token, tracked) = (facts.token, connections.clone());
    services.start("admin API", Start::Now, |stop| {
        admin::serve(admin_listener, ctx, Serves::Admin(token), stop, tracked)
    });
    start_workers(parts, acme, services);
    connections
}

/// The metrics gathered at scrape time from every part.
fn metrics(parts: &Parts, acme: Option<&AcmeWorker>, sites: usize) -> Arc<Metrics> {
    Arc::new(Metrics::new(
        parts.edge_stats.clone(),
        parts.sites.clone(),
        parts.shed.clone(),
        parts.apps.clone(),
        crate::observe::metrics::OptionalParts {
            acme: acme.map(AcmeWorker::outcomes),
            access_log: parts.access_log.clone(),
            on_demand: parts.on_demand.clone(),
            waf: Some(parts.waf.stats().clone()),
            cache: parts.cache.clone(),
        },
        sites,
    ))
}

/// The workers that read every certificate, started once the edge has loaded them.
fn start_workers(parts: &Parts, acme: Option<AcmeWorker>, services: &mut Services) {
    let watched = parts.sites.clone();
    services.start("expiry warnings", Start::WhenReady, |stop| {
        crate::served::expiry::watch(watched, stop)
    });
    let store = parts.store.clone();
    services.start("OCSP refresher", Start::WhenReady, |stop| {
        porter_acme::run_ocsp(store, stop)
    });
    match acme {
        Some(worker) => services.start("ACME worker", Start::WhenReady, |stop| worker.run(stop)),
        None => tracing::info!(
            "ACME is off: pass --acme-agree-tos to obtain certificates automatically"
        ),
    }
}
