//! `porter serve`: open the store, bind every listener, build the first snapshot, run the edge,
//! the admin API and the store watcher until a signal, then drain.

use crate::access_log::AccessLog;
use crate::admin::{self, AdminAddr, AdminListener, Discovery, Serves};
use crate::apps::Supervisor;
use crate::config::ServeArgs;
use crate::handover::{Handed, Inherited, Offer};
use crate::metrics::{EdgeStats, Metrics};
use crate::ops::status::ServerFacts;
use crate::proxy::{
    self, Admission, Bounds, Edge, EdgeShared, EdgeThreads, Forwarder, Limits, MemoryCeiling,
    PerIp, ProxyProtocol, Rates, Shed,
};
use crate::service::{Services, Start};
use crate::store_at::StoreAt;
use crate::{challenges, data_dir, instance, reload, tls};
use anyhow::Context as _;
use porter_store::{SledOptions, SledStore, Store, StoreError};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Directory of the embedded database inside the data dir.
pub(crate) const STORE_DIR: &str = "store";
/// Directory of app logs and pid files inside the data dir.
pub(crate) const APPS_DIR: &str = "apps";

/// How long a successor waits for the store its predecessor is letting go of, and how long
/// a predecessor waits to take it back from a successor that gave up.
const STORE_HANDOVER_WAIT: Duration = Duration::from_secs(30);
/// How long a server waits for a CLI command that has the store open to let go of it.
const STORE_CLI_WAIT: Duration = Duration::from_secs(30);

/// The listener for `flag`: the running server's, when it hands its own over, else bound now.
async fn bind(
    inherited: &mut Option<Inherited>,
    flag: &str,
    addr: SocketAddr,
) -> anyhow::Result<TcpListener> {
    if let Some(listener) = inherited.as_mut().and_then(|i| i.tcp(flag, addr)) {
        return Ok(listener);
    }
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind {flag} {addr}"))
}

/// [`bind`] for the admin and metrics listeners, which may also be unix sockets.
async fn bind_admin(
    inherited: &mut Option<Inherited>,
    flag: &str,
    addr: &AdminAddr,
) -> anyhow::Result<(AdminListener, AdminAddr)> {
    let taken = inherited.as_mut().and_then(|i| match addr {
        AdminAddr::Tcp(wanted) => i.tcp(flag, *wanted).map(AdminListener::Tcp),
        AdminAddr::Unix(path) => i.unix(flag, path).map(AdminListener::Unix),
    });
    let bound = match taken {
        Some(listener) => listener.bound(addr).map(|bound| (listener, bound)),
        None => admin::bind(addr).await,
    };
    bound.with_context(|| format!("cannot bind {flag} {addr}"))
}

/// A copy of a listening socket, for a successor.
fn copy(flag: &'static str, socket: &impl AsFd) -> anyhow::Result<(&'static str, OwnedFd)> {
    let fd = socket.as_fd().try_clone_to_owned();
    Ok((
        flag,
        fd.with_context(|| format!("cannot copy the {flag} socket"))?,
    ))
}

pub(crate) async fn run(data_dir: &Path, store_at: StoreAt, args: ServeArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let acme = args.acme.config().map_err(anyhow::Error::msg)?;
    let acme_ca = acme.as_ref().map(porter_acme::Config::ca_host);
    data_dir::prepare(data_dir)?;
    Discovery::remove_stale(data_dir);
    instance::check_alone(data_dir, &args)?;
    // CLI commands step aside from here until this server serves (or fails).
    let starting = instance::Starting::mark(data_dir, args.take_over)
        .context("cannot mark the data dir as starting")?;
    let mut inherited =
        Inherited::ask(data_dir).context("cannot ask the running server for its sockets")?;
    if let Some(from) = inherited.as_ref().map(|i| i.from) {
        // A server whose discovery file was not written yet (or was removed) still answers
        // here: it is not replaced without being asked to be.
        instance::check_taking_over(from, data_dir, "", &args)?;
        tracing::info!(
            from,
            "taking over from the running server: its sockets, then its store"
        );
    }
    // Stops the services, and the store's own background work with them.
    let shutdown = CancellationToken::new();
    // The embedded store is handed from server to server; etcd is open to every node at once.
    let (store, sled): (Arc<dyn Store>, Option<Arc<SledStore>>) = match &store_at {
        StoreAt::Sled(_) => {
            let sled = open_sled(&store_at, &args, inherited.is_some()).await?;
            (sled.clone(), Some(sled))
        }
        StoreAt::Etcd(..) => (
            store_at
                .open_until(args.store_deadline, shutdown.clone())
                .await?,
            None,
        ),
    };
    if args.on_demand_upstream.is_some() && acme.is_none() {
        anyhow::bail!("on-demand TLS obtains certificates over ACME: pass --acme-agree-tos too");
    }
    let acme = acme
        .map(|config| porter_acme::AcmeWorker::new(store.clone(), config))
        .transpose()?;
    let token: Arc<str> = admin::load_or_create_token(data_dir)
        .context("cannot read or create the admin token")?
        .into();
    let http = bind(&mut inherited, "--http", args.http).await?;
    let https = bind(&mut inherited, "--https", args.https).await?;
    let (admin_listener, admin_addr) = bind_admin(&mut inherited, "--admin", &args.admin).await?;
    let metrics_listener = match args.metrics {
        Some(addr) => Some(bind_admin(&mut inherited, "--metrics", &AdminAddr::Tcp(addr)).await?),
        None => None,
    };
    let mut sockets = vec![
        copy("--http", &http)?,
        copy("--https", &https)?,
        copy("--admin", &admin_listener)?,
    ];
    if let Some((listener, _)) = &metrics_listener {
        sockets.push(copy("--metrics", listener)?);
    }
    let metrics_addr = metrics_listener.as_ref().map(|(_, bound)| bound.clone());
    let (http_addr, https_addr) = (http.local_addr()?, https.local_addr()?);

    let fleet = match store_at.node() {
        Some(node) => Some(Arc::new(
            join_fleet(
                store.as_ref(),
                node,
                args.node_addr.unwrap_or(http_addr),
                inherited.is_some(),
            )
            .await?,
        )),
        None => None,
    };
    let apps_dir = data_dir.join(APPS_DIR);
    let predecessor = inherited.as_ref().map(|i| i.from);
    let node = store_at.node().map(str::to_owned);
    let apps = Supervisor::new(store.clone(), apps_dir.clone(), predecessor, node.clone())
        .context("cannot prepare the apps directory")?;
    let access_log = match &args.access_log {
        Some(destination) => Some(
            AccessLog::open(destination.clone(), args.access_log_format)
                .with_context(|| format!("cannot open --access-log {destination:?}"))?,
        ),
        None => None,
    };
    let mut services = Services::new(shutdown);
    let sites = reload::LiveSites::new(store.clone());
    let shed = Arc::new(Shed::default());
    let edge_stats: Vec<Arc<EdgeStats>> = (0..edge_thread_count(args.edge_threads))
        .map(|_| Arc::default())
        .collect();
    let waf = {
        let (dir, default, log) = (
            args.waf_rules.clone(),
            args.waf_default,
            data_dir.join(crate::waf::LOG_FILE),
        );
        let waf = Arc::new(
            crate::waf::Waf::new(dir, default, log, edge_stats.len())
                .context("cannot start the WAF's threads")?,
        );
        if waf.on_by_default() {
            let waf = waf.clone();
            tokio::spawn(async move { waf.ready().await });
        }
        waf
    };
    let on_demand = args.on_demand_upstream.as_ref().map(|upstream| {
        Arc::new(crate::on_demand::OnDemand::new(
            crate::on_demand::Settings {
                ask: args.on_demand_ask.clone(),
                upstream: upstream.clone(),
                per_minute: args.on_demand_rate,
            },
            store.clone(),
        ))
    });
    if let Some(on_demand) = &on_demand {
        let (rules, changes) = (on_demand.clone(), store.subscribe());
        services.start("on-demand rules", Start::Now, |stop| {
            rules.follow_rules(changes, stop)
        });
    }
    let edge = start_edge(
        (&store, &sites, on_demand.clone()),
        (&edge_stats, &shed),
        &args,
        (http, https),
        Parts {
            apps: &apps,
            access_log: access_log.clone(),
            waf: &waf,
            fleet,
        },
        &mut services,
    )
    .await?;
    let supervisor = apps.clone();
    services.start("apps", Start::Now, |stop| supervisor.run(stop));
    let metrics = Arc::new(Metrics::new(
        edge_stats,
        sites.clone(),
        shed,
        apps.clone(),
        crate::metrics::OptionalParts {
            acme: acme.as_ref().map(|w| w.outcomes()),
            access_log: access_log.clone(),
            on_demand,
            waf: Some(waf.stats().clone()),
        },
        usize::from(args.metrics_sites),
    ));
    let admin_ctx = Arc::new(admin::Context {
        apps: Some(apps),
        apps_dir,
        store: store.clone(),
        acme_ca: acme_ca.clone(),
        sites: Some(sites.clone()),
        metrics: Some(metrics),
        store_at: store_at.clone(),
        server: Some(ServerFacts {
            started,
            listeners: [
                ("http", http_addr.to_string()),
                ("https", https_addr.to_string()),
                ("admin", admin_addr.to_string()),
            ]
            .into_iter()
            .chain(metrics_addr.iter().map(|a| ("metrics", a.to_string())))
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            edge_threads: edge.count(),
        }),
        waf: Some(waf.clone()),
        node,
    });
    let admin_connections = TaskTracker::new();
    let connections = admin_connections.clone();
    if let Some((listener, _)) = metrics_listener {
        let (ctx, connections) = (admin_ctx.clone(), admin_connections.clone());
        services.start("metrics listener", Start::Now, |stop| {
            admin::serve(listener, ctx, Serves::Metrics, stop, connections)
        });
    }
    services.start("admin API", Start::Now, |stop| {
        admin::serve(
            admin_listener,
            admin_ctx,
            Serves::Admin(token),
            stop,
            connections,
        )
    });
    let watched = sites.clone();
    services.start("expiry warnings", Start::WhenReady, |stop| {
        crate::expiry::watch(watched, stop)
    });
    services.start("OCSP refresher", Start::WhenReady, |stop| {
        porter_acme::run_ocsp(store, stop)
    });
    let acme_on = acme.is_some();
    match acme {
        Some(worker) => services.start("ACME worker", Start::WhenReady, |stop| worker.run(stop)),
        None => tracing::info!(
            "ACME is off: pass --acme-agree-tos to obtain certificates automatically"
        ),
    }

    let offer = Offer::bind(data_dir, sockets).context("cannot listen for a successor")?;
    Discovery {
        pid: std::process::id(),
        admin: admin_addr.to_string(),
        http: http_addr.to_string(),
        https: https_addr.to_string(),
        metrics: metrics_addr.map(|a| a.to_string()),
        acme: acme_on,
        access_log: args.access_log.as_ref().map(|d| d.to_string()),
    }
    .write(data_dir)
    .context("cannot write the discovery file")?;
    // The CLI finds this server through its discovery file from now on.
    drop(starting);
    tracing::info!(%http_addr, %https_addr, admin = %admin_addr, edge_threads = edge.count(), "porter is serving");
    // Ready once every site is loaded (and after the discovery file, so that whoever hears it
    // finds this server); a predecessor keeps accepting until then.
    let handed_over = Arc::new(AtomicBool::new(false));
    let notices = crate::systemd::Notices {
        took_over: inherited.is_some(),
        handed_over: handed_over.clone(),
    };
    services.start("systemd notification", Start::WhenReady, |stop| {
        crate::systemd::report(stop, notices, move || {
            if let Some(predecessor) = inherited {
                predecessor.serving();
            }
        })
    });

    let handed = wait_for_stop(&offer, sled.as_deref(), access_log.as_deref()).await?;
    handed_over.store(handed, Ordering::Release);
    let handed_over = handed;
    // Connections still arriving are the successor's, or refused at once: not queued for nobody.
    offer.close(handed_over);
    tracing::info!(handed_over, "shutting down");
    // Bounded: a service waiting on a stalled store must not hold the process past the grace.
    let grace = args.shutdown_grace;
    let stopped = tokio::time::timeout(grace, async {
        let services_stopped = services.stop(grace).await;
        tokio::join!(proxy::drain(&admin_connections, grace), edge.finished());
        services_stopped
    })
    .await;
    if stopped != Ok(true) {
        tracing::warn!(
            ?grace,
            "some services did not stop within the shutdown grace; exiting without them"
        );
    }
    Discovery::remove_own(data_dir);
    match admin_addr {
        // The successor listens on the same socket file.
        AdminAddr::Unix(path) if !handed_over => {
            let _ = std::fs::remove_file(path);
        }
        _ => {}
    }
    Ok(())
}

/// Records this server as node `name` of the fleet, reached by the others at `addr` (in its
/// predecessor's place when `taking_over`), and reads the secret the nodes share.
async fn join_fleet(
    store: &dyn Store,
    name: &str,
    addr: SocketAddr,
    taking_over: bool,
) -> anyhow::Result<crate::fleet::Fleet> {
    anyhow::ensure!(
        !addr.ip().is_unspecified(),
        "--http listens on every address ({addr}): give --node-addr, the address the other nodes reach this one at"
    );
    store
        .join(
            porter_store::Node {
                name: name.to_owned(),
                addr: addr.to_string(),
                pid: std::process::id(),
                started_at: porter_store::unix_now(),
            },
            taking_over,
        )
        .await
        .context("cannot join the fleet")?;
    let mut proposed = vec![0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut proposed)
        .map_err(|_| anyhow::anyhow!("the system RNG failed"))?;
    let secret = store
        .fleet_secret(porter_store::SecretBytes::new(proposed))
        .await
        .context("cannot read the fleet's secret")?
        .context("the store has no fleet")?;
    tracing::info!(node = name, %addr, "joined the fleet");
    Ok(crate::fleet::Fleet::new(name.to_owned(), &secret))
}

/// Opens the embedded store; a successor waits while its predecessor lets go of it, and any
/// server while a CLI command run without a server finishes with it (CLI commands started
/// from now on step aside: see [`instance::Starting`]).
async fn open_sled(
    store_at: &StoreAt,
    args: &ServeArgs,
    taking_over: bool,
) -> anyhow::Result<Arc<SledStore>> {
    let options = |lock_wait| SledOptions {
        deadline: args.store_deadline,
        stall_while: args.test_store_stall_file.clone(),
        lock_wait,
    };
    if taking_over {
        return Ok(Arc::new(store_at.open_sled(options(STORE_HANDOVER_WAIT))?));
    }
    match store_at.open_sled(options(Duration::ZERO)) {
        Err(e)
            if e.chain()
                .any(|c| matches!(c.downcast_ref(), Some(StoreError::Locked(_)))) =>
        {
            tracing::info!(
                within = ?STORE_CLI_WAIT,
                "the store is held by another process (a CLI command run while no server was up?): waiting for it"
            );
            let (at, options) = (store_at.clone(), options(STORE_CLI_WAIT));
            let opened = tokio::task::spawn_blocking(move || at.open_sled(options))
                .await
                .context("opening the store")?;
            Ok(Arc::new(opened.context(
                "another process kept the store: is a `porter` command stuck, or another server running on a copy of this data dir?",
            )?))
        }
        other => Ok(Arc::new(other?)),
    }
}

/// What the edge threads share with the rest of the server.
struct Parts<'a> {
    apps: &'a Arc<Supervisor>,
    access_log: Option<Arc<AccessLog>>,
    waf: &'a Arc<crate::waf::Waf>,
    /// This node in its fleet (`None` on the embedded store).
    fleet: Option<Arc<crate::fleet::Fleet>>,
}

/// Starts the edge threads on the `http` and `https` listeners, and the services that keep
/// what they serve current: the sites, the ACME challenge answers and the ticket keys.
async fn start_edge(
    (store, sites, on_demand): (
        &Arc<dyn Store>,
        &Arc<reload::LiveSites>,
        Option<Arc<crate::on_demand::OnDemand>>,
    ),
    (edge_stats, shed): (&[Arc<EdgeStats>], &Arc<Shed>),
    args: &ServeArgs,
    (http, https): (TcpListener, TcpListener),
    Parts {
        apps,
        access_log,
        waf,
        fleet,
    }: Parts<'_>,
    services: &mut Services,
) -> anyhow::Result<EdgeThreads> {
    // Subscribe before the first build so that no change slips in between. The build runs in
    // the sites service; connections load what they need meanwhile.
    let changes = store.subscribe();
    let challenge_changes = store.subscribe();
    let answers = Arc::new(challenges::Challenges::new());
    let default_sni = args.default_sni.as_ref().map(|d| d.to_string());
    let tickets = tls::Keyring::open(store.as_ref(), args.tls_ticket_rotation).await?;
    let tls_config = tls::server_config(sites.clone(), default_sni.clone(), tickets.clone())?;
    let https_port = https.local_addr()?.port();
    let bounds = &args.limits;
    let queue = |limit| Bounds {
        limit,
        queue: bounds.request_queue,
        wait: bounds.queue_timeout,
    };
    let admission = Arc::new(Admission::new(
        queue(bounds.site_concurrency),
        queue(bounds.upstream_concurrency),
        (bounds.rate_per_client, bounds.rate_burst),
        shed.clone(),
    ));
    let wp_logins = Arc::new(crate::proxy::LoginRates::new(0, 0));
    let edges = edge_stats
        .iter()
        .map(|stats| {
            Arc::new(Edge {
                stats: stats.clone(),
                apps: apps.clone(),
                challenges: answers.clone(),
                sites: sites.clone(),
                admission: admission.clone(),
                forwarder: Forwarder::new(
                    args.upstream_connect_timeout,
                    args.upstream_timeout,
                    args.limits.min_body_rate,
                ),
                https_port,
                default_sni: default_sni.clone(),
                crowded: tokio::sync::Notify::new(),
                access_log: access_log.clone(),
                on_demand: on_demand.clone(),
                wp_logins: wp_logins.clone(),
                waf: waf.clone(),
                fleet: fleet.clone(),
            })
        })
        .collect::<Vec<_>>();
    let memory = Arc::new(MemoryCeiling::new(match bounds.max_memory {
        Some(bytes) => Some(bytes),
        None => crate::memory::cgroup_limit(),
    }));
    let (watched, watch_shed) = (edges.clone(), shed.clone());
    services.start("log summaries", Start::Now, crate::log_limit::run);
    services.start("memory ceiling", Start::Now, |stop| {
        memory.clone().watch(watched, watch_shed, stop)
    });
    let limits = Arc::new(Limits {
        connections: Arc::new(tokio::sync::Semaphore::new(bounds.max_connections)),
        per_ip: PerIp::new(bounds.max_connections_per_ip),
        handshakes_per_ip: PerIp::new(bounds.max_handshakes_per_ip),
        handshake_rate: Rates::new(bounds.handshake_rate_per_ip, 0),
        handshake_timeout: bounds.handshake_timeout,
        header_timeout: bounds.header_timeout,
        max_header_size: bounds.max_header_size,
        max_headers: usize::from(bounds.max_headers),
        shed: shed.clone(),
        memory,
        // 5 % of the limit (at least one): from there on, idle connections make room.
        crowded_below: (bounds.max_connections / 20).max(1),
        proxy_protocol: (!args.proxy_protocol.is_empty()).then(|| ProxyProtocol {
            trusted: args.proxy_protocol.clone(),
        }),
    });
    let (rotation, ticket_store) = (args.tls_ticket_rotation, store.clone());
    services.start("ticket keys", Start::Now, |stop| {
        tickets.run(ticket_store, rotation, stop)
    });
    let challenge_store = store.clone();
    services.start("challenge answers", Start::Now, |stop| {
        challenges::run(challenge_store, answers, challenge_changes, stop)
    });
    let readiness = services.readiness();
    let live = sites.clone();
    services.start("sites", Start::Now, |stop| {
        reload::run(live, changes, readiness, stop)
    });
    EdgeThreads::start(
        &http.into_std()?,
        &https.into_std()?,
        edges,
        &EdgeShared {
            tls: tls_config,
            limits,
            shutdown: services.shutdown(),
            grace: args.shutdown_grace,
        },
    )
    .context("cannot start the edge threads")
}

/// Edge threads to run: as asked, else one per CPU this process may use.
fn edge_thread_count(asked: Option<u16>) -> usize {
    asked.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    })
}

/// Waits for SIGTERM or SIGINT, or for a successor to take over (true). SIGHUP reopens the
/// access log (logrotate's signal), and never stops Porter. SIGUSR2 starts a successor: this
/// program again, from its path on disk (a new binary installed there is the upgrade), with
/// the same arguments; it takes over as any new server on the data dir does.
async fn wait_for_stop(
    offer: &Offer,
    sled: Option<&SledStore>,
    access_log: Option<&AccessLog>,
) -> anyhow::Result<bool> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(false),
            _ = int.recv() => return Ok(false),
            _ = usr2.recv() => match spawn_successor() {
                Ok(pid) => tracing::info!(successor = pid, "SIGUSR2: started a successor; it takes over once it serves"),
                Err(e) => tracing::error!(error = %e, "SIGUSR2: cannot start a successor; serving on"),
            },
            _ = hup.recv() => {
                if let Some(log) = access_log {
                    log.reopen();
                }
                tracing::info!("SIGHUP: log files reopened");
            }
            channel = offer.asked() => {
                // From here the edge serves from memory while the successor opens the store.
                if let Some(sled) = sled {
                    sled.release();
                }
                let outcome = tokio::select! {
                    outcome = Offer::outcome(channel) => outcome,
                    // Stopped meanwhile: the successor has the sockets and the store.
                    _ = term.recv() => return Ok(true),
                    _ = int.recv() => return Ok(true),
                };
                match outcome {
                    Handed::Over => return Ok(true),
                    Handed::Abandoned => {
                        tracing::warn!("the successor went away before it served: taking the store back and carrying on");
                        if let Some(sled) = sled {
                            sled.reclaim(STORE_HANDOVER_WAIT)
                                .await
                                .context("cannot take the store back from a successor that gave up")?;
                        }
                    }
                }
            }
        }
    }
}

/// Starts this program again with the same arguments and `--take-over`, from its path as invoked (so a binary
/// installed over it since is the one started); its exit, if it comes before this server's, is
/// logged.
fn spawn_successor() -> std::io::Result<u32> {
    let mut args = std::env::args_os();
    let invoked = args.next().unwrap_or_default();
    let program = if Path::new(&invoked).components().count() > 1 {
        std::path::PathBuf::from(invoked)
    } else {
        // Found on PATH: the running file, wherever it is.
        std::env::current_exe()?
    };
    let mut args: Vec<_> = args.collect();
    // The successor replaces this server: that is what it is started for.
    if !args.iter().any(|a| a == "--take-over") {
        args.push("--take-over".into());
    }
    let mut child = tokio::process::Command::new(&program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id().unwrap_or_default();
    tokio::spawn(async move {
        if let Ok(status) = child.wait().await {
            if !status.success() {
                tracing::error!(pid, %status, "the successor exited before it took over");
            }
        }
    });
    Ok(pid)
}
