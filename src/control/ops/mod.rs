//! The operations the admin API and the CLI offer, on any store: validation at the boundary,
//! then one store call. Views are what both print or return as JSON.

pub(crate) mod apps;
pub(crate) mod backup;
pub(crate) mod cache;
pub(crate) mod certs;
pub(crate) mod dns;
pub(crate) mod features;
pub(crate) mod on_demand;
pub(crate) mod status;
pub(crate) mod upstreams;

use crate::served::reload::LiveSites;
use porter_store::{ChallengeKind, DnsZone, DomainName, Site, Store, StoreError, Target, Upstream};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// How long `site add` waits for an upstream to accept a connection.
const REACHABILITY_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The operation does not apply to this record.
    #[error("{0}")]
    Refused(String),
    /// The upstream did not accept a connection.
    #[error("upstream {upstream} is unreachable: {reason} (start it first, or pass --allow-unreachable)")]
    Unreachable {
        /// The address tried.
        upstream: String,
        /// What connecting said.
        reason: String,
    },
}

/// `site add`: the same type for the command line (clap), the admin API (serde) and the
/// operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub(crate) struct AddSite {
    /// The name to serve: exact, or *.wildcard.
    pub(crate) domain: String,
    /// Where requests go: host:port, [v6]:port, or an absolute unix socket path, with an
    /// optional weight (,weight=N). Repeat for several upstreams ...
    #[serde(default, deserialize_with = "upstreams::one_or_many")]
    #[arg(
        long,
        value_name = "ADDRESS[,weight=N]",
        required_unless_present = "app"
    )]
    pub(crate) upstream: Vec<String>,
    /// ... or an app Porter supervises (see `porter app add`), then --upstream adds plain
    /// upstreams beside it.
    #[serde(default)]
    #[arg(long)]
    pub(crate) app: Option<String>,
    /// Add the site even when an upstream does not accept connections yet.
    #[serde(default)]
    #[arg(long)]
    pub(crate) allow_unreachable: bool,
    /// Do not obtain a certificate over ACME (import one instead).
    #[serde(default)]
    #[arg(long)]
    pub(crate) no_acme: bool,
    /// HSTS max-age in seconds once the site has a valid certificate; 0 turns HSTS off.
    /// Without it, the server's `--hsts-default` applies.
    #[serde(default)]
    #[arg(long)]
    pub(crate) hsts_max_age: Option<u64>,
    /// The ACME challenge tried first: http-01, tls-alpn-01 or dns-01 (needs its zone, see
    /// `porter dns add`); default: the server's `--acme-challenge`.
    #[serde(default)]
    #[arg(long, value_name = "TYPE")]
    pub(crate) acme_challenge: Option<String>,
    /// The HTTP cache, from the start.
    #[serde(flatten)]
    #[command(flatten, next_help_heading = "HTTP cache")]
    pub(crate) cache: cache::CacheChange,
    /// Several upstreams.
    #[serde(flatten)]
    #[command(flatten, next_help_heading = "Several upstreams")]
    pub(crate) balance: upstreams::BalanceChange,
}

/// `site update`: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
pub(crate) struct UpdateSite {
    /// New upstreams: host:port, [v6]:port, or an absolute unix socket path, with an
    /// optional weight (,weight=N); repeat for several. The list replaces the site's ...
    #[serde(default, deserialize_with = "upstreams::one_or_many")]
    #[arg(long, value_name = "ADDRESS[,weight=N]")]
    pub(crate) upstream: Vec<String>,
    /// ... or an app Porter supervises (--upstream then adds plain upstreams beside it).
    /// Either keeps the site's certificate.
    #[serde(default)]
    #[arg(long)]
    pub(crate) app: Option<String>,
    /// Accept new upstreams that do not accept connections yet.
    #[serde(default)]
    #[arg(long)]
    pub(crate) allow_unreachable: bool,
    /// Whether Porter obtains its certificate over ACME: on|off.
    #[serde(default)]
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub(crate) acme: Option<bool>,
    /// HSTS max-age in seconds once the site has a valid certificate; 0 turns HSTS off.
    #[serde(default)]
    #[arg(long)]
    pub(crate) hsts_max_age: Option<u64>,
    /// The ACME challenge tried first: http-01, tls-alpn-01, dns-01, or `server` for the
    /// server's `--acme-challenge`.
    #[serde(default)]
    #[arg(long, value_name = "TYPE")]
    pub(crate) acme_challenge: Option<String>,
    /// The site's HTTP features.
    #[serde(flatten)]
    #[command(flatten)]
    pub(crate) features: features::FeatureChange,
    /// Several upstreams.
    #[serde(flatten)]
    #[command(flatten, next_help_heading = "Several upstreams")]
    pub(crate) balance: upstreams::BalanceChange,
}

/// `cert import`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ImportCert {
    pub(crate) domain: String,
    pub(crate) chain_pem: String,
    pub(crate) key_pem: String,
}

/// A site as listed.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SiteView {
    pub(crate) domain: String,
    pub(crate) upstream: String,
    /// Whether its certificate is obtained over ACME.
    pub(crate) acme: bool,
    /// HSTS max-age in seconds once it has a valid certificate (0 = off); `None`: the
    /// server's `--hsts-default`.
    pub(crate) hsts_max_age: Option<u64>,
    /// The ACME challenge tried first, when the site sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) acme_challenge: Option<String>,
    /// Its HTTP features that are on.
    #[serde(default, skip_serializing_if = "features::FeaturesView::is_empty")]
    pub(crate) features: features::FeaturesView,
    /// Something the operator should know about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
    /// How its requests are spread, when it has several upstreams or checks them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) balance: Option<upstreams::BalanceView>,
    /// Each of its upstreams then, with the running server's view of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) upstreams: Vec<upstreams::UpstreamView>,
}

/// The value of every on/off flag of the command line: `on` or `off`; `true` and `false` are
/// still taken from scripts written before the flags said `on|off`.
pub(crate) fn on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        other => Err(format!("{other:?}: give on or off")),
    }
}

pub(crate) fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// What a wildcard site needs for a certificate.
pub(crate) const WILDCARD_NOTE: &str = "a wildcard is validated over DNS-01 only: its certificate needs its zone (`porter dns add`), or import one";

impl From<Site> for SiteView {
    fn from(site: Site) -> Self {
        let note = (site.acme && site.domain.is_wildcard()).then(|| WILDCARD_NOTE.to_owned());
        let (balance, upstreams) = upstreams::views(&site);
        let upstream = match upstreams.is_empty() {
            true => site.target.to_string(),
            false => {
                let names: Vec<&str> = upstreams.iter().map(|u| u.address.as_str()).collect();
                names.join(", ")
            }
        };
        SiteView {
            domain: site.domain.to_string(),
            upstream,
            acme: site.acme,
            hsts_max_age: site.hsts_max_age,
            acme_challenge: site.challenge.map(|c| c.to_string()),
            features: features::FeaturesView::from(&site.features),
            note,
            balance,
            upstreams,
        }
    }
}

/// Refuses the first of `upstreams` that does not accept a connection (tried at once).
async fn check_reachable(upstreams: &[Upstream]) -> Result<(), OpError> {
    let tries = upstreams.iter().map(reachable);
    futures_util::future::try_join_all(tries).await.map(drop)
}

async fn reachable(upstream: &Upstream) -> Result<(), OpError> {
    use crate::balance::probe::{check, Ask};
    check(upstream, &Ask::Connect, REACHABILITY_TIMEOUT)
        .await
        .map(drop)
        .map_err(|reason| OpError::Unreachable {
            upstream: upstream.to_string(),
            reason,
        })
}

pub(crate) async fn add_site(store: &dyn Store, req: AddSite) -> Result<SiteView, OpError> {
    let domain = DomainName::parse(&req.domain).map_err(StoreError::from)?;
    let members = upstreams::Members::parse(&req.upstream, req.app.as_deref())?
        .ok_or_else(|| OpError::Refused("give --upstream, or --app".into()))?;
    // Checked as `site update` checks them, before the store is asked.
    let mut features = porter_store::Features::default();
    features::FeatureChange {
        cache: req.cache,
        ..Default::default()
    }
    .apply(&mut features)?;
    let challenge = match &req.acme_challenge {
        Some(kind) => challenge_choice(store, &domain, kind).await?,
        None => None,
    };
    let reachable: Vec<Upstream> = members.upstreams().cloned().collect();
    let mut site = Site {
        domain,
        target: members.target.clone(),
        acme: !req.no_acme,
        hsts_max_age: req.hsts_max_age,
        features,
        challenge,
        needs_cert_since: Some(porter_store::unix_now()),
        balancing: None,
    };
    req.balance.apply(&mut site, Some(members))?;
    site.validate().map_err(StoreError::from)?;
    if store.site(&site.domain).await?.is_some() {
        return Err(StoreError::AlreadyExists(format!("site {}", site.domain)).into());
    }
    if !req.allow_unreachable {
        check_reachable(&reachable).await?;
    }
    store.add_site(site.clone()).await?;
    Ok(site.into())
}

pub(crate) async fn update_site(
    store: &dyn Store,
    domain: &str,
    req: UpdateSite,
) -> Result<SiteView, OpError> {
    let domain = DomainName::parse(domain).map_err(StoreError::from)?;
    let mut site = store
        .site(&domain)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("site {domain}")))?;
    let members = upstreams::Members::parse(&req.upstream, req.app.as_deref())?;
    if let Some(Target::App(app)) = members.as_ref().map(|m| &m.target) {
        if store.app(app).await?.is_none() {
            return Err(StoreError::NotFound(format!("app {app}")).into());
        }
    }
    let reachable: Vec<Upstream> = members
        .iter()
        .flat_map(upstreams::Members::upstreams)
        .cloned()
        .collect();
    req.balance.apply(&mut site, members)?;
    if let Some(acme) = req.acme {
        if acme && !site.acme {
            // Monitoring gives it the grace of a new site to obtain its certificate.
            site.needs_cert_since = Some(porter_store::unix_now());
        }
        site.acme = acme;
    }
    if let Some(max_age) = req.hsts_max_age {
        site.hsts_max_age = Some(max_age);
    }
    if let Some(kind) = &req.acme_challenge {
        site.challenge = challenge_choice(store, &domain, kind).await?;
    }
    req.features.apply(&mut site.features)?;
    check_canonical(&site)?;
    site.validate().map_err(StoreError::from)?;
    if !req.allow_unreachable {
        check_reachable(&reachable).await?;
    }
    store.update_site(site.clone()).await?;
    Ok(site.into())
}

/// A site's challenge choice (`server`: none of its own). DNS-01 needs a zone that covers the
/// name; a wildcard can only be DNS-01.
async fn challenge_choice(
    store: &dyn Store,
    domain: &DomainName,
    kind: &str,
) -> Result<Option<ChallengeKind>, OpError> {
    if kind == "server" {
        return Ok(None);
    }
    let kind: ChallengeKind = kind
        .parse()
        .map_err(|e: String| OpError::Refused(format!("--acme-challenge {e} (or `server`)")))?;
    if domain.is_wildcard() && kind != ChallengeKind::Dns01 {
        return Err(OpError::Refused(format!(
            "{domain}: a wildcard can only be validated over dns-01"
        )));
    }
    if kind == ChallengeKind::Dns01
        && DnsZone::for_name(&store.dns_zones().await?, domain).is_none()
    {
        return Err(OpError::Refused(format!(
            "{domain}: no DNS zone covers it; add its zone first (`porter dns add ZONE --server ... --tsig-name ... --tsig-key-file ...`)"
        )));
    }
    Ok(Some(kind))
}

/// A canonical-name redirect must lead to another name: `--redirect-to-apex` on a `www.`
/// name, `--redirect-to-www` on one without.
fn check_canonical(site: &Site) -> Result<(), OpError> {
    let www = site.domain.as_str().starts_with("www.");
    let refused = |why: &str| Err(OpError::Refused(format!("{}: {why}", site.domain)));
    match site.features.canonical {
        _ if site.domain.is_wildcard() && site.features.canonical.is_some() => {
            refused("a wildcard site has no single other name to redirect to")
        }
        Some(porter_store::Canonical::Apex) if !www => refused(
            "--redirect-to-apex is set on the www. name (add www.NAME as a site with the same upstream, and set it there)",
        ),
        Some(porter_store::Canonical::Www) if www => {
            refused("--redirect-to-www is set on the name without www.")
        }
        _ => Ok(()),
    }
}

pub(crate) async fn remove_site(store: &dyn Store, domain: &str) -> Result<(), OpError> {
    let domain = DomainName::parse(domain).map_err(StoreError::from)?;
    Ok(store.remove_site(&domain).await?)
}

/// Every site; with `served`, the running server's view of each one's upstreams.
pub(crate) async fn list_sites(
    store: &dyn Store,
    served: Option<&LiveSites>,
) -> Result<Vec<SiteView>, OpError> {
    Ok(store
        .sites()
        .await?
        .into_iter()
        .map(|site| with_state(site, served))
        .collect())
}

/// One site; with `served`, the running server's view of its upstreams.
pub(crate) async fn site_status(
    store: &dyn Store,
    domain: &str,
    served: Option<&LiveSites>,
) -> Result<SiteView, OpError> {
    let domain = DomainName::parse(domain).map_err(StoreError::from)?;
    let site = store
        .site(&domain)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("site {domain}")))?;
    Ok(with_state(site, served))
}

fn with_state(site: Site, served: Option<&LiveSites>) -> SiteView {
    let mut view = SiteView::from(site);
    if let Some(served) = served {
        let snapshot = served.current();
        if let Some(balancer) = snapshot.site(&view.domain).and_then(|s| s.balance.as_ref()) {
            upstreams::add_state(&mut view.upstreams, balancer);
        }
    }
    view
}
