//! The parts of a server that the edge threads and the admin API share, made before either
//! starts: the live sites, the apps, the WAF, the access log, on-demand TLS and the counters.

use super::APPS_DIR;
use crate::apps::Supervisor;
use crate::cache::Cache;
use crate::observe::access_log::AccessLog;
use crate::observe::metrics::EdgeStats;
use crate::proxy::Fleet;
use crate::proxy::Shed;
use crate::runtime::service::{Services, Start};
use crate::serve::config::ServeArgs;
use crate::served::on_demand::OnDemand;
use crate::served::reload::LiveSites;
use crate::waf::Waf;
use anyhow::Context as _;
use porter_store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the edge and the admin API share.
pub(super) struct Parts {
    pub(super) store: Arc<dyn Store>,
    pub(super) sites: Arc<LiveSites>,
    pub(super) apps: Arc<Supervisor>,
    pub(super) apps_dir: PathBuf,
    pub(super) access_log: Option<Arc<AccessLog>>,
    pub(super) waf: Arc<Waf>,
    pub(super) on_demand: Option<Arc<OnDemand>>,
    /// This node in its fleet (`None` on the embedded store).
    pub(super) fleet: Option<Arc<Fleet>>,
    pub(super) shed: Arc<Shed>,
    /// The HTTP cache (`None` with `--cache-memory 0` and no `--cache-dir`).
    pub(super) cache: Option<Arc<Cache>>,
    /// One per edge thread.
    pub(super) edge_stats: Vec<Arc<EdgeStats>>,
}

impl Parts {
    /// Makes every part; the on-demand rules start following the store at once.
    pub(super) fn build(
        data_dir: &Path,
        store: Arc<dyn Store>,
        args: &ServeArgs,
        (predecessor, node, fleet): (Option<u32>, Option<String>, Option<Arc<Fleet>>),
        services: &mut Services,
    ) -> anyhow::Result<Parts> {
        let apps_dir = data_dir.join(APPS_DIR);
        let apps = Supervisor::new(store.clone(), apps_dir.clone(), predecessor, node)
            .context("cannot prepare the apps directory")?;
        let access_log = match &args.access_log {
            Some(destination) => Some(
                AccessLog::open(destination.clone(), args.access_log_format)
                    .with_context(|| format!("cannot open --access-log {destination:?}"))?,
            ),
            None => None,
        };
        let edge_stats: Vec<Arc<EdgeStats>> = (0..edge_thread_count(args.edge_threads))
            .map(|_| Arc::default())
            .collect();
        let waf = waf(data_dir, args, edge_stats.len())?;
        let on_demand = on_demand(&store, args, services);
        let cache = cache(&store, args, services)?;
        services.start("upstream checks", Start::Now, crate::balance::checks::run);
        crate::served::snapshot::set_hsts_default(args.hsts_default);
        Ok(Parts {
            sites: LiveSites::new(store.clone()),
            store,
            apps,
            apps_dir,
            access_log,
            waf,
            on_demand,
            fleet,
            shed: Arc::default(),
            cache,
            edge_stats,
        })
    }
}

/// The WAF, its engines warming up in the background when it is on by default.
fn waf(data_dir: &Path, args: &ServeArgs, threads: usize) -> anyhow::Result<Arc<Waf>> {
    let log = data_dir.join(crate::waf::LOG_FILE);
    let waf = Arc::new(
        Waf::new(args.waf_rules.clone(), args.waf_default, log, threads)
            .context("cannot start the WAF's threads")?,
    );
    if waf.on_by_default() {
        let waf = waf.clone();
        tokio::spawn(async move { waf.ready().await });
    }
    Ok(waf)
}

/// On-demand TLS when `--on-demand-upstream` is given, its rules followed from the store.
fn on_demand(
    store: &Arc<dyn Store>,
    args: &ServeArgs,
    services: &mut Services,
) -> Option<Arc<OnDemand>> {
    let upstream = args.on_demand_upstream.as_ref()?;
    let on_demand = Arc::new(OnDemand::new(
        crate::served::on_demand::Settings {
            ask: args.on_demand_ask.clone(),
            upstream: upstream.clone(),
            per_minute: args.on_demand_rate,
        },
        store.clone(),
    ));
    let (rules, changes) = (on_demand.clone(), store.subscribe());
    services.start("on-demand rules", Start::Now, |stop| {
        rules.follow_rules(changes, stop)
    });
    Some(on_demand)
}

/// The HTTP cache with its tiers, following the purges in the store.
fn cache(
    store: &Arc<dyn Store>,
    args: &ServeArgs,
    services: &mut Services,
) -> anyhow::Result<Option<Arc<Cache>>> {
    if args.cache_memory == 0 && args.cache_dir.is_none() {
        return Ok(None);
    }
    let tiers = crate::cache::Tiers {
        memory: args.cache_memory,
        disk: args.cache_dir.clone().map(|dir| (dir, args.cache_disk)),
    };
    let cache = Arc::new(
        Cache::new(&tiers)
            .with_context(|| format!("cannot open the cache directory {:?}", args.cache_dir))?,
    );
    let (following, store, changes) = (cache.clone(), store.clone(), store.subscribe());
    services.start("cache purges", Start::Now, |stop| {
        crate::cache::purges::run(store, following, changes, stop)
    });
    Ok(Some(cache))
}

/// Edge threads to run: as asked, else one per CPU this process may use.
fn edge_thread_count(asked: Option<u16>) -> usize {
    asked.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    })
}
