//! `porter serve`: open the store, bind every listener, build the first snapshot, run the edge,
//! the admin API and the store watcher until a signal, then drain.

use crate::admin::{self, AdminAddr, Discovery};
use crate::apps::Supervisor;
use crate::config::ServeArgs;
use crate::proxy::{self, Edge, EdgeShared, EdgeThreads, Forwarder, Limits};
use crate::{challenges, data_dir, reload, tls};
use anyhow::Context as _;
use arc_swap::ArcSwap;
use porter_store::{SledOptions, SledStore, Store};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Directory of the embedded database inside the data dir.
pub(crate) const STORE_DIR: &str = "store";
/// Directory of app logs and pid files inside the data dir.
pub(crate) const APPS_DIR: &str = "apps";

async fn bind(flag: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind {flag} {addr}"))
}

/// Runs `work` once the edge has read every site. The workers read every certificate too:
/// doing that while the edge does would slow its start and raise the peak memory.
async fn after_load(
    mut loaded: tokio::sync::watch::Receiver<bool>,
    work: impl std::future::Future<Output = ()>,
) {
    // An error means the edge stopped before it was loaded: nothing to do then.
    if loaded.wait_for(|done| *done).await.is_ok() {
        work.await;
    }
}

pub(crate) async fn run(data_dir: &Path, args: ServeArgs) -> anyhow::Result<()> {
    let acme = args.acme.config().map_err(anyhow::Error::msg)?;
    data_dir::prepare(data_dir)?;
    let store: Arc<dyn Store> = Arc::new(SledStore::open_with(
        &data_dir.join(STORE_DIR),
        SledOptions {
            deadline: args.store_deadline,
            stall_while: args.test_store_stall_file.clone(),
        },
    )?);
    let acme = acme
        .map(|config| porter_acme::AcmeWorker::new(store.clone(), config))
        .transpose()?;
    let token: Arc<str> = admin::load_or_create_token(data_dir)
        .context("cannot read or create the admin token")?
        .into();

    let http = bind("--http", args.http).await?;
    let https = bind("--https", args.https).await?;
    let (admin_listener, admin_addr) = admin::bind(&args.admin)
        .await
        .with_context(|| format!("cannot bind --admin {}", args.admin))?;

    // Subscribe before the first build so that no change slips in between. The build runs in
    // the reload task; connections load what they need meanwhile.
    let changes = store.subscribe();
    let challenge_changes = store.subscribe();
    let answers = Arc::new(ArcSwap::from_pointee(challenges::Answers::default()));
    let sites = reload::LiveSites::new(store.clone());
    let default_sni = args.default_sni.map(|d| d.to_string());
    let tickets = tls::Keyring::open(store.as_ref(), args.tls_ticket_rotation).await?;
    let tls_config = tls::server_config(sites.clone(), default_sni.clone(), tickets.clone())?;
    let https_addr = https.local_addr()?;
    let apps_dir = data_dir.join(APPS_DIR);
    let apps = Supervisor::new(store.clone(), apps_dir.clone())
        .context("cannot prepare the apps directory")?;
    let edges = (0..edge_thread_count(args.edge_threads))
        .map(|_| {
            Arc::new(Edge {
                apps: apps.clone(),
                challenges: answers.clone(),
                sites: sites.clone(),
                forwarder: Forwarder::new(args.upstream_connect_timeout, args.upstream_timeout),
                https_port: https_addr.port(),
                default_sni: default_sni.clone(),
            })
        })
        .collect::<Vec<_>>();
    let limits = Arc::new(Limits {
        connections: Arc::new(tokio::sync::Semaphore::new(args.max_connections)),
        handshake_timeout: Duration::from_secs(10),
        header_timeout: Duration::from_secs(30),
    });

    let shutdown = CancellationToken::new();
    let admin_connections = TaskTracker::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(tickets.run(store.clone(), args.tls_ticket_rotation, shutdown.clone()));
    tasks.spawn(challenges::run(
        store.clone(),
        answers,
        challenge_changes,
        shutdown.clone(),
    ));
    let (loaded, is_loaded) = tokio::sync::watch::channel(false);
    tasks.spawn(reload::run(sites, changes, loaded, shutdown.clone()));
    let http_addr = http.local_addr()?;
    let edge_threads = edges.len();
    let edge = EdgeThreads::start(
        &http.into_std()?,
        &https.into_std()?,
        edges,
        &EdgeShared {
            tls: tls_config,
            limits,
            shutdown: shutdown.clone(),
            grace: args.shutdown_grace,
        },
    )
    .context("cannot start the edge threads")?;
    tasks.spawn(apps.clone().run(shutdown.clone()));
    let admin_ctx = Arc::new(admin::Context {
        apps: Some(apps),
        apps_dir,
        store: store.clone(),
        acme: acme.is_some(),
    });
    tasks.spawn(admin::serve(
        admin_listener,
        admin_ctx,
        token,
        shutdown.clone(),
        admin_connections.clone(),
    ));
    tasks.spawn(after_load(
        is_loaded.clone(),
        porter_acme::run_ocsp(store.clone(), shutdown.clone()),
    ));
    match acme {
        Some(worker) => {
            tasks.spawn(after_load(is_loaded, worker.run(shutdown.clone())));
        }
        None => tracing::info!(
            "ACME is off: pass --acme-agree-tos to obtain certificates automatically"
        ),
    }

    Discovery {
        pid: std::process::id(),
        admin: admin_addr.to_string(),
        http: http_addr.to_string(),
        https: https_addr.to_string(),
    }
    .write(data_dir)
    .context("cannot write the discovery file")?;
    tracing::info!(%http_addr, %https_addr, admin = %admin_addr, edge_threads, "porter is serving");

    wait_for_signal().await?;
    tracing::info!("shutting down");
    shutdown.cancel();
    // Bounded: a task waiting on a stalled store must not hold the process past the grace.
    let stopped = tokio::time::timeout(args.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
        tokio::join!(
            proxy::drain(&admin_connections, args.shutdown_grace),
            edge.finished()
        );
    })
    .await;
    if stopped.is_err() {
        tracing::warn!(grace = ?args.shutdown_grace, "some tasks did not stop within the shutdown grace; exiting without them");
    }
    Discovery::remove(data_dir);
    if let AdminAddr::Unix(path) = admin_addr {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Edge threads to run: as asked, else one per CPU this process may use.
fn edge_thread_count(asked: Option<u16>) -> usize {
    asked.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
