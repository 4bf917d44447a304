//! `porter serve`, as the named steps of [`run`]: make sure this server may start, open the
//! store, bind (or take over) the listeners, make the parts, start the edge and the services
//! around it, announce that it serves, wait for a signal or a successor, then drain.
//!
//! - `listeners`: binding, taking over from a predecessor, copies for a successor;
//! - `store`: opening the store (waiting for a predecessor or a CLI command), joining a fleet;
//! - `parts`: what the edge and the admin API share;
//! - `edge`: the edge threads and the services that keep what they serve current;
//! - `control`: the app supervisor, the admin API, metrics, and the ACME and OCSP workers;
//! - `stop`: signals, the successor, the drain;
//! - `config`: `serve`'s flags; `instance`: one server per data dir.

pub(crate) mod config;
mod control;
mod edge;
pub(crate) mod instance;
mod listeners;
mod parts;
mod stop;
mod store;

use crate::control::admin::{self, AdminAddr, Discovery};
use crate::control::ops::status::ServerFacts;
use crate::runtime::data_dir;
use crate::runtime::handover::{Inherited, Offer};
use crate::runtime::service::{Services, Start};
use crate::runtime::store_at::StoreAt;
use crate::serve::config::ServeArgs;
use anyhow::Context as _;
use instance::Starting;
use listeners::Bound;
use parts::Parts;
use porter_acme::AcmeWorker;
use porter_store::Store;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Directory of app logs and pid files inside the data dir.
pub(crate) const APPS_DIR: &str = "apps";

/// Runs a server on `data_dir` and the store `store_at` until it is stopped or replaced.
pub(crate) async fn run(data_dir: &Path, store_at: StoreAt, args: ServeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let acme = args.acme.config().map_err(anyhow::Error::msg)?;
    let acme_ca = acme.as_ref().map(porter_acme::Config::ca_host);
    let (starting, mut inherited) = begin(data_dir, &args)?;
    let taking_over = inherited.is_some();
    // Stops the services, and the store's own background work with them.
    let shutdown = CancellationToken::new();
    let opened = store::open(&store_at, &args, taking_over, &shutdown).await?;
    let acme = acme_worker(&opened.store, acme, &args)?;
    let token: Arc<str> = admin::load_or_create_token(data_dir)
        .context("cannot read or create the admin token")?
        .into();
    let bound = Bound::bind(&mut inherited, &args).await?;
    let discovery = bound.discovery(acme.is_some(), &args);
    let store = opened.store.clone();
    let fleet = store::join_fleet(&*store, &store_at, &args, bound.http_addr, taking_over).await?;
    let mut services = Services::new(shutdown);
    let node = store_at.node().map(str::to_owned);
    let predecessor = inherited.as_ref().map(|i| i.from);
    let parts = Parts::build(
        data_dir,
        store,
        &args,
        (predecessor, node.clone(), fleet),
        &mut services,
    )?;
    let addresses = bound.addresses();
    // A predecessor reads the QUIC socket until it exits: this server reads it from then on.
    let (udp_free, free) = tokio::sync::watch::channel(inherited.is_none());
    let listeners = (bound.http, bound.https, bound.udp.map(|udp| (udp, free)));
    let edge = edge::start(&parts, &args, listeners, &mut services).await?;
    let facts = control::Facts {
        server: ServerFacts {
            started,
            listeners: addresses,
            edge_threads: edge.count(),
        },
        store_at,
        token,
        acme_ca,
        node,
        metrics_sites: usize::from(args.metrics_sites),
    };
    let admin_listeners = (bound.admin, bound.metrics);
    let admin_connections = control::start(&parts, admin_listeners, acme, facts, &mut services);
    let offer = Offer::bind(data_dir, bound.sockets).context("cannot listen for a successor")?;
    let predecessor = inherited.map(|inherited| (inherited, udp_free));
    let handed_over = announce(data_dir, discovery, starting, predecessor, &mut services)?;
    tracing::info!(http = %bound.http_addr, https = %bound.https_addr, admin = %bound.admin_addr, edge_threads = edge.count(), "porter is serving");
    let (handed, _successor) =
        stop::wait_for_stop(&offer, opened.sled.as_deref(), parts.access_log.as_deref()).await?;
    handed_over.store(handed, Ordering::Release);
    // Connections still arriving are the successor's, or refused at once: not queued for nobody.
    offer.close(handed);
    tracing::info!(handed_over = handed, "shutting down");
    stop::drain(services, &admin_connections, edge, args.shutdown_grace).await;
    clean_up(data_dir, &bound.admin_addr, handed);
    Ok(())
}

/// Makes sure this server may start on `data_dir` (the only one, or taking over) and asks a
/// running server for its sockets. CLI commands step aside while the returned mark is held.
fn begin(
    data_dir: &Path,
    args: &ServeArgs,
) -> anyhow::Result<(Option<Starting>, Option<Inherited>)> {
    data_dir::prepare(data_dir)?;
    Discovery::remove_stale(data_dir);
    instance::check_alone(data_dir, args)?;
    let starting =
        Starting::mark(data_dir, args.take_over).context("cannot mark the data dir as starting")?;
    let inherited =
        Inherited::ask(data_dir).context("cannot ask the running server for its sockets")?;
    if let Some(from) = inherited.as_ref().map(|i| i.from) {
        // A server whose discovery file was not written yet (or was removed) still answers
        // here: it is not replaced without being asked to be.
        instance::check_taking_over(from, data_dir, "", args)?;
        tracing::info!(
            from,
            "taking over from the running server: its sockets, then its store"
        );
    }
    Ok((starting, inherited))
}

/// The ACME worker, when ACME is on (which on-demand TLS needs).
fn acme_worker(
    store: &Arc<dyn Store>,
    config: Option<porter_acme::Config>,
    args: &ServeArgs,
) -> anyhow::Result<Option<AcmeWorker>> {
    if args.on_demand_upstream.is_some() && config.is_none() {
        anyhow::bail!("on-demand TLS obtains certificates over ACME: pass --acme-agree-tos too");
    }
    Ok(config
        .map(|config| AcmeWorker::new(store.clone(), config))
        .transpose()?)
}

/// Writes the discovery file (the CLI finds this server through it from now on, so the
/// starting mark goes), and tells systemd (and a predecessor) once every site is loaded; once
/// the predecessor has exited, the QUIC socket is this server's (`udp_free`). Returns the flag
/// the stop sets when a successor took over, for systemd's last notice.
fn announce(
    data_dir: &Path,
    discovery: Discovery,
    starting: Option<Starting>,
    predecessor: Option<(Inherited, tokio::sync::watch::Sender<bool>)>,
    services: &mut Services,
) -> anyhow::Result<Arc<AtomicBool>> {
    discovery
        .write(data_dir)
        .context("cannot write the discovery file")?;
    drop(starting);
    // Ready once every site is loaded (and after the discovery file, so that whoever hears it
    // finds this server); a predecessor keeps accepting until then.
    let handed_over = Arc::new(AtomicBool::new(false));
    let notices = crate::runtime::systemd::Notices {
        took_over: predecessor.is_some(),
        handed_over: handed_over.clone(),
    };
    services.start("systemd notification", Start::WhenReady, |stop| {
        crate::runtime::systemd::report(stop, notices, move || {
            if let Some((predecessor, udp_free)) = predecessor {
                let exited = predecessor.serving();
                // Bounded: the wait ends when the predecessor exits, or within a minute.
                tokio::spawn(async move {
                    exited.await;
                    udp_free.send_replace(true);
                });
            }
        })
    });
    Ok(handed_over)
}

/// Removes what this server leaves in the data dir: its discovery file, and its admin socket
/// unless a successor listens on it now.
fn clean_up(data_dir: &Path, admin_addr: &AdminAddr, handed_over: bool) {
    Discovery::remove_own(data_dir);
    match admin_addr {
        AdminAddr::Unix(path) if !handed_over => {
            let _ = std::fs::remove_file(path);
        }
        _ => {}
    }
}
