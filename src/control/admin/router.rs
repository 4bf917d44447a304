//! Runs admin commands. The HTTP server reads the command from an authenticated request
//! ([`dispatch`]); the CLI, when no server runs, builds it itself and calls [`execute`] on the
//! store in-process: both paths run the same code.

use super::command::{AdminCommand, Answer, NotACommand};
use crate::apps::Supervisor;
use crate::control::ops::{self, OpError};
use http::{Method, StatusCode};
use porter_store::{Store, StoreError};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// What the operations run against.
pub(crate) struct Context {
    /// The running server's app supervisor (`None` when the CLI works on the store alone).
    pub(crate) apps: Option<Arc<Supervisor>>,
    /// The store.
    pub(crate) store: Arc<dyn Store>,
    /// Where app logs are.
    pub(crate) apps_dir: std::path::PathBuf,
    /// The host of the CA when an ACME worker runs in this process (it does only in
    /// `porter serve` with `--acme-agree-tos`).
    pub(crate) acme_ca: Option<String>,
    /// The sites the edge serves (`None` in the CLI).
    pub(crate) sites: Option<Arc<crate::served::reload::LiveSites>>,
    /// The server's metrics (`None` in the CLI).
    pub(crate) metrics: Option<Arc<crate::observe::metrics::Metrics>>,
    /// Where the store is on disk.
    pub(crate) store_at: crate::runtime::store_at::StoreAt,
    /// What the running server knows of itself (`None` in the CLI).
    pub(crate) server: Option<ops::status::ServerFacts>,
    /// The running server's WAF (`None` in the CLI).
    pub(crate) waf: Option<Arc<crate::waf::Waf>>,
    /// This node's name in a fleet: apps added here run on it (`None` on the embedded store).
    pub(crate) node: Option<String>,
    /// The running server's HTTP cache (`None` in the CLI, or with no cache).
    pub(crate) cache: Option<Arc<crate::cache::Cache>>,
}

impl Context {
    fn beside(&self) -> ops::certs::Beside<'_> {
        ops::certs::Beside {
            acme_ca: self.acme_ca.as_deref(),
            sites: self.sites.as_deref(),
        }
    }
}

/// A status and a JSON body: the result on success, `{"error": ...}` otherwise.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

fn ok<T: Serialize>(status: StatusCode, value: T) -> Reply {
    Reply {
        status,
        body: serde_json::to_value(value).expect("views serialise"),
    }
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Reply {
    Reply {
        status,
        body: json!({ "error": message.to_string() }),
    }
}

fn failed(e: OpError) -> Reply {
    let status = match &e {
        OpError::Store(StoreError::Invalid(_))
        | OpError::Unreachable { .. }
        | OpError::Refused(_) => StatusCode::BAD_REQUEST,
        OpError::Store(StoreError::AlreadyExists(_) | StoreError::InUse(_)) => StatusCode::CONFLICT,
        OpError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
        // Worth a retry: the disk may answer again.
        OpError::Store(StoreError::Stalled { .. }) => StatusCode::SERVICE_UNAVAILABLE,
        OpError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e)
}

/// Runs the command an admin API request names.
pub(crate) async fn dispatch(ctx: &Context, method: &Method, path: &str, body: &[u8]) -> Reply {
    let command = match AdminCommand::from_http(method, path, body) {
        Ok(command) => command,
        Err(e @ NotACommand::Unknown { .. }) => return error(StatusCode::NOT_FOUND, e),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let status = command.success();
    match execute(ctx, command).await {
        Ok(answer) => ok(status, answer),
        Err(e) => failed(e),
    }
}

/// Runs `command`.
pub(crate) async fn execute(ctx: &Context, command: AdminCommand) -> Result<Answer, OpError> {
    use AdminCommand as C;
    let store = ctx.store.as_ref();
    let apps = ctx.apps.as_deref();
    Ok(match command {
        C::ListSites => Answer::Sites(ops::list_sites(store, ctx.sites.as_deref()).await?),
        C::SiteStatus { domain } => Answer::Site(Box::new(
            ops::site_status(store, &domain, ctx.sites.as_deref()).await?,
        )),
        C::AddSite(req) => Answer::Site(Box::new(ops::add_site(store, req).await?)),
        C::UpdateSite { domain, change } => {
            Answer::Site(Box::new(update_site(ctx, &domain, *change).await?))
        }
        C::RemoveSite { domain } => removed(ops::remove_site(store, &domain).await, domain)?,
        C::ListCerts => Answer::Certs(ops::certs::list_certs(store, ctx.beside()).await?),
        C::ImportCert(req) => Answer::Cert(Box::new(ops::certs::import_cert(store, req).await?)),
        C::RequestAcme { domain, action } => Answer::Cert(Box::new(
            ops::certs::request_acme(store, &domain, action, ctx.beside()).await?,
        )),
        C::ListApps => Answer::Apps(ops::apps::list_apps(store).await?),
        C::ListNodes => Answer::Nodes(store.nodes().await?),
        C::AddApp { id, spec } => {
            Answer::App(ops::apps::add_app(store, &id, spec, ctx.node.as_deref()).await?)
        }
        C::UpdateApp { id, spec } => Answer::App(ops::apps::update_app(store, &id, spec).await?),
        C::RemoveApp { id } => removed(ops::apps::remove_app(store, &id).await, id)?,
        C::AppStatus { id } => Answer::AppStatus(ops::apps::status(store, apps, &id).await?),
        C::AppLogs { id } => Answer::Logs {
            logs: ops::apps::logs(store, &ctx.apps_dir, &id, 200).await?,
        },
        C::ControlApp { id, restart } => {
            Answer::AppStatus(ops::apps::control(store, apps, &id, restart).await?)
        }
        C::ListDnsZones => Answer::DnsZones(ops::dns::list_zones(store).await?),
        C::PutDnsZone { zone, spec } => {
            Answer::DnsZone(ops::dns::put_zone(store, &zone, spec).await?)
        }
        C::RemoveDnsZone { zone } => removed(ops::dns::remove_zone(store, &zone).await, zone)?,
        C::ListOnDemandRules => Answer::OnDemandRules(ops::on_demand::rules(store).await?),
        C::OnDemandRule { rule, allow: true } => {
            Answer::OnDemandRules(ops::on_demand::allow(store, &rule).await?)
        }
        C::OnDemandRule { rule, allow: false } => {
            Answer::OnDemandRules(ops::on_demand::disallow(store, &rule).await?)
        }
        C::WafStatus => Answer::Waf(running_waf(ctx)?.status()),
        C::WafReload => {
            let waf = running_waf(ctx)?;
            Answer::Waf(waf.reload().await.map_err(OpError::Refused)?)
        }
        C::ExportStore => Answer::Backup(Box::new(ops::backup::export(store).await?)),
        C::ImportStore(backup) => {
            Answer::Imported(ops::backup::import(store, *backup, false).await?)
        }
        C::Status => Answer::Status(status(ctx).await),
        C::PurgeCache(req) => Answer::Purged(ops::cache::purge(store, req).await?),
        C::CacheStats => Answer::CacheStats(cache_stats(ctx)?),
    })
}

/// The answer to a removal of `name`, once `removal` succeeded.
fn removed(removal: Result<(), OpError>, name: String) -> Result<Answer, OpError> {
    removal?;
    Ok(Answer::Removed { removed: name })
}

/// `site update`, refused at once when it sets the WAF to inspect and the WAF's rules do not
/// load (the site would block everything, or nothing).
async fn update_site(
    ctx: &Context,
    domain: &str,
    change: ops::UpdateSite,
) -> Result<ops::SiteView, OpError> {
    let waf_on = change
        .features
        .waf
        .as_deref()
        .is_some_and(|mode| !matches!(mode, "off" | "default"));
    if let (true, Some(waf)) = (waf_on, &ctx.waf) {
        waf.ready_or_why().await.map_err(OpError::Refused)?;
    }
    ops::update_site(ctx.store.as_ref(), domain, change).await
}

/// The running server's WAF, which `waf status` and `waf reload` need.
fn running_waf(ctx: &Context) -> Result<&Arc<crate::waf::Waf>, OpError> {
    ctx.waf
        .as_ref()
        .ok_or_else(|| OpError::Refused("the WAF runs in the server, and no server runs".into()))
}

/// `cache stats`: the counters of the running server's cache.
fn cache_stats(ctx: &Context) -> Result<ops::cache::CacheStats, OpError> {
    if ctx.server.is_none() {
        return Err(OpError::Refused(
            "the cache and its counters are the running server's, and no server runs".into(),
        ));
    }
    match &ctx.cache {
        Some(cache) => Ok(ops::cache::stats_of(cache)),
        None => Err(OpError::Refused(
            "this server keeps no cache (serve --cache-memory 0 without --cache-dir)".into(),
        )),
    }
}

/// `status`: the store's, and the running server's when this is it.
async fn status(ctx: &Context) -> ops::status::StatusView {
    let server = match (&ctx.server, &ctx.metrics, &ctx.apps) {
        (Some(facts), Some(metrics), Some(apps)) => Some(ops::status::Running {
            facts,
            metrics,
            apps,
        }),
        _ => None,
    };
    ops::status::status(ctx.store.as_ref(), &ctx.store_at, ctx.beside(), server).await
}
