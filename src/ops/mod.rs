//! The operations the admin API and the CLI offer, on any store: validation at the boundary,
//! then one store call. Views are what both print or return as JSON.

pub(crate) mod apps;

use porter_acme::AcmeAction;
use porter_store::unix_now;
use porter_store::{
    AcmeRequest, AcmeState, AppId, CertRecord, CertSource, DomainName, OcspRecord, OcspStatus,
    Site, Store, StoreError, Target, Upstream, DEFAULT_HSTS_MAX_AGE,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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
    /// Where requests go: host:port, [v6]:port, or an absolute unix socket path ...
    #[serde(default)]
    #[arg(long, required_unless_present = "app", conflicts_with = "app")]
    pub(crate) upstream: Option<String>,
    /// ... or an app Porter supervises (see `porter app add`).
    #[serde(default)]
    #[arg(long)]
    pub(crate) app: Option<String>,
    /// Add the site even when the upstream does not accept connections yet.
    #[serde(default)]
    #[arg(long)]
    pub(crate) allow_unreachable: bool,
    /// Do not obtain a certificate over ACME (import one instead).
    #[serde(default)]
    #[arg(long)]
    pub(crate) no_acme: bool,
    /// HSTS max-age in seconds once the site has a valid certificate; 0 turns HSTS off.
    #[serde(default)]
    #[arg(long)]
    pub(crate) hsts_max_age: Option<u64>,
}

/// `site update`: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
pub(crate) struct UpdateSite {
    /// New upstream: host:port, [v6]:port, or an absolute unix socket path.
    #[serde(default)]
    #[arg(long)]
    pub(crate) upstream: Option<String>,
    /// Accept a new upstream that does not accept connections yet.
    #[serde(default)]
    #[arg(long)]
    pub(crate) allow_unreachable: bool,
    /// Whether Porter obtains its certificate over ACME.
    #[serde(default)]
    #[arg(long)]
    pub(crate) acme: Option<bool>,
    /// HSTS max-age in seconds once the site has a valid certificate; 0 turns HSTS off.
    #[serde(default)]
    #[arg(long)]
    pub(crate) hsts_max_age: Option<u64>,
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
    /// HSTS max-age in seconds once it has a valid certificate (0 = off).
    pub(crate) hsts_max_age: u64,
    /// Something the operator should know about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
}

/// What `cert list` shows of a site: its certificate (never the key) and its ACME progress.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct CertView {
    pub(crate) domain: String,
    /// `valid`, `expired`, `not yet valid`, `pending`, `failing`, `wildcard`, `none`.
    pub(crate) status: String,
    pub(crate) names: Vec<String>,
    pub(crate) issuer: Option<String>,
    pub(crate) serial: Option<String>,
    pub(crate) not_before: Option<String>,
    pub(crate) not_after: Option<String>,
    /// `imported` or `acme`.
    pub(crate) source: Option<String>,
    /// When the ACME worker renews it.
    pub(crate) renew_at: Option<String>,
    /// Consecutive failed ACME attempts.
    pub(crate) attempts: u32,
    /// The last ACME failure.
    pub(crate) last_error: Option<String>,
    /// After a failure, when the next attempt is.
    pub(crate) next_attempt: Option<String>,
    /// The challenge type that last worked.
    pub(crate) challenge: Option<String>,
    /// Whether an ACME order is in flight (it resumes after a restart).
    pub(crate) order_in_flight: bool,
    /// OCSP: `good`, `revoked`, `unknown`, `no OCSP` (the CA offers none), `pending`, or
    /// `failing` (with the still-valid response kept, if any).
    pub(crate) ocsp: Option<String>,
    /// Until when the stapled response is valid.
    pub(crate) ocsp_valid_until: Option<String>,
    /// When the OCSP response is fetched next.
    pub(crate) ocsp_next_refresh: Option<String>,
    /// The last OCSP failure.
    pub(crate) ocsp_error: Option<String>,
    /// An explanation for the operator.
    pub(crate) note: Option<String>,
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// Why a wildcard site gets no certificate by itself.
const WILDCARD_NOTE: &str = "wildcard names cannot be validated by HTTP-01 or TLS-ALPN-01: import a certificate for it (DNS-01 is not supported yet)";

impl From<Site> for SiteView {
    fn from(site: Site) -> Self {
        let note = (site.acme && site.domain.is_wildcard()).then(|| WILDCARD_NOTE.to_owned());
        SiteView {
            domain: site.domain.to_string(),
            upstream: site.target.to_string(),
            acme: site.acme,
            hsts_max_age: site.hsts_max_age,
            note,
        }
    }
}

/// One word (or three) on a certificate's OCSP state.
fn ocsp_summary(ocsp: Option<&OcspRecord>, now: i64) -> String {
    let Some(ocsp) = ocsp else {
        return "pending".into();
    };
    if ocsp.url.is_none() {
        return "the CA offers no OCSP".into();
    }
    match &ocsp.response {
        Some(r) if r.valid_until > now => match r.status {
            OcspStatus::Good if ocsp.last_error.is_some() => "good (refresh failing)".into(),
            OcspStatus::Good => "good".into(),
            OcspStatus::Revoked(_) => "REVOKED".into(),
            OcspStatus::Unknown => "unknown to the responder".into(),
        },
        _ if ocsp.last_error.is_some() => "failing".into(),
        _ => "pending".into(),
    }
}

/// The `cert list` row of `site`.
fn cert_view(
    site: &Site,
    cert: Option<CertRecord>,
    state: Option<AcmeState>,
    request: Option<&AcmeRequest>,
    ocsp: Option<OcspRecord>,
    acme_running: bool,
) -> CertView {
    let now = unix_now();
    let state = state.unwrap_or_default();
    let mut view = CertView {
        domain: site.domain.to_string(),
        attempts: state.attempts,
        last_error: state.last_error.clone(),
        next_attempt: state.retry_at.map(rfc3339),
        challenge: state.challenge.map(|c| c.to_string()),
        order_in_flight: state.pending.is_some(),
        ..CertView::default()
    };
    let acme_managed = site.acme && !site.domain.is_wildcard();
    match cert {
        Some(cert) => {
            view.status = if now >= cert.not_after {
                "expired"
            } else if now < cert.not_before {
                "not yet valid"
            } else {
                "valid"
            }
            .to_owned();
            if cert.source == CertSource::Acme && acme_managed {
                view.renew_at = Some(rfc3339(porter_acme::renewal_at(
                    &cert, &state, request, now,
                )));
                if !acme_running {
                    view.note = Some(
                        "ACME is off: it renews when `porter serve` runs with --acme-agree-tos"
                            .into(),
                    );
                }
            }
            let ocsp = ocsp.filter(|o| o.serial == cert.serial);
            view.ocsp = Some(match &ocsp {
                None if porter_acme::responder_url(&cert.chain[0]).is_none() => {
                    "the CA offers no OCSP".into()
                }
                _ => ocsp_summary(ocsp.as_ref(), now),
            });
            if let Some(ocsp) = ocsp.filter(|o| o.url.is_some()) {
                view.ocsp_valid_until = ocsp.response.as_ref().map(|r| rfc3339(r.valid_until));
                view.ocsp_next_refresh = Some(rfc3339(ocsp.next_refresh));
                view.ocsp_error = ocsp.last_error;
            }
            view.names = cert.names;
            view.issuer = Some(cert.issuer);
            view.serial = Some(cert.serial);
            view.not_before = Some(rfc3339(cert.not_before));
            view.not_after = Some(rfc3339(cert.not_after));
            view.source = Some(cert.source.to_string());
        }
        None if site.acme && site.domain.is_wildcard() => {
            view.status = "wildcard".into();
            view.note = Some(WILDCARD_NOTE.into());
        }
        None if !site.acme => {
            view.status = "none".into();
            view.note = Some("ACME is off for this site: import a certificate".into());
        }
        None => {
            view.status = if state.last_error.is_some() {
                "failing"
            } else {
                "pending"
            }
            .into();
            if !acme_running {
                view.note = Some("ACME is off: serve with --acme-agree-tos to obtain it".into());
            }
        }
    }
    view
}

async fn check_reachable(upstream: &Upstream) -> Result<(), OpError> {
    let attempt = async {
        match upstream {
            Upstream::Tcp { host, port } => tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map(drop),
            Upstream::Unix(path) => tokio::net::UnixStream::connect(path).await.map(drop),
        }
    };
    let reason = match tokio::time::timeout(REACHABILITY_TIMEOUT, attempt).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {}s", REACHABILITY_TIMEOUT.as_secs()),
    };
    Err(OpError::Unreachable {
        upstream: upstream.to_string(),
        reason,
    })
}

pub(crate) async fn add_site(store: &dyn Store, req: AddSite) -> Result<SiteView, OpError> {
    let domain = DomainName::parse(&req.domain).map_err(StoreError::from)?;
    let target = match (&req.upstream, &req.app) {
        (Some(upstream), None) => {
            Target::Upstream(Upstream::parse(upstream).map_err(StoreError::from)?)
        }
        (None, Some(app)) => Target::App(AppId::parse(app).map_err(StoreError::from)?),
        _ => {
            return Err(OpError::Refused(
                "give exactly one of --upstream and --app".into(),
            ))
        }
    };
    if store.site(&domain).await?.is_some() {
        return Err(StoreError::AlreadyExists(format!("site {domain}")).into());
    }
    if let (Target::Upstream(upstream), false) = (&target, req.allow_unreachable) {
        check_reachable(upstream).await?;
    }
    let site = Site {
        domain,
        target,
        acme: !req.no_acme,
        hsts_max_age: req.hsts_max_age.unwrap_or(DEFAULT_HSTS_MAX_AGE),
    };
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
    if let Some(upstream) = req.upstream {
        let upstream = Upstream::parse(&upstream).map_err(StoreError::from)?;
        if !req.allow_unreachable {
            check_reachable(&upstream).await?;
        }
        site.target = Target::Upstream(upstream);
    }
    if let Some(acme) = req.acme {
        site.acme = acme;
    }
    if let Some(max_age) = req.hsts_max_age {
        site.hsts_max_age = max_age;
    }
    store.update_site(site.clone()).await?;
    Ok(site.into())
}

pub(crate) async fn remove_site(store: &dyn Store, domain: &str) -> Result<(), OpError> {
    let domain = DomainName::parse(domain).map_err(StoreError::from)?;
    Ok(store.remove_site(&domain).await?)
}

pub(crate) async fn list_sites(store: &dyn Store) -> Result<Vec<SiteView>, OpError> {
    Ok(store
        .sites()
        .await?
        .into_iter()
        .map(SiteView::from)
        .collect())
}

pub(crate) async fn import_cert(store: &dyn Store, req: ImportCert) -> Result<CertView, OpError> {
    let domain = DomainName::parse(&req.domain).map_err(StoreError::from)?;
    let record = CertRecord::from_pem(
        &domain,
        req.chain_pem.as_bytes(),
        req.key_pem.as_bytes(),
        unix_now(),
        CertSource::Imported,
    )
    .map_err(StoreError::from)?;
    store.put_cert(record.clone()).await?;
    let site = store
        .site(&domain)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("site {domain}")))?;
    Ok(cert_view(&site, Some(record), None, None, None, false))
}

/// Every site's certificate status, ordered by domain.
pub(crate) async fn list_certs(
    store: &dyn Store,
    acme_running: bool,
) -> Result<Vec<CertView>, OpError> {
    let mut certs: HashMap<DomainName, CertRecord> = store
        .certs()
        .await?
        .into_iter()
        .map(|c| (c.domain.clone(), c))
        .collect();
    let mut states: HashMap<DomainName, AcmeState> =
        store.acme_states().await?.into_iter().collect();
    let requests: HashMap<DomainName, AcmeRequest> =
        store.acme_requests().await?.into_iter().collect();
    let mut ocsp: HashMap<DomainName, OcspRecord> =
        store.ocsp_records().await?.into_iter().collect();
    let mut views = Vec::new();
    for site in store.sites().await? {
        let ocsp = ocsp.remove(&site.domain);
        let (cert, state) = (certs.remove(&site.domain), states.remove(&site.domain));
        let request = requests.get(&site.domain);
        views.push(cert_view(&site, cert, state, request, ocsp, acme_running));
    }
    Ok(views)
}

/// Records `action` for the worker, which acts on it within a second when it runs.
pub(crate) async fn request_acme(
    store: &dyn Store,
    domain: &str,
    action: AcmeAction,
) -> Result<CertView, OpError> {
    let domain = DomainName::parse(domain).map_err(StoreError::from)?;
    let site = store
        .site(&domain)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("site {domain}")))?;
    let cert = store.cert(&domain).await?;
    let refuse = |why: String| Err(OpError::Refused(why));
    if !site.acme {
        return refuse(format!(
            "{domain} does not use ACME (it was added with --no-acme)"
        ));
    }
    if domain.is_wildcard() {
        return refuse(WILDCARD_NOTE.to_owned());
    }
    match (&cert, action) {
        (Some(cert), _) if cert.source == CertSource::Imported => {
            return refuse(format!(
                "the certificate of {domain} was imported: Porter cannot renew or revoke it"
            ));
        }
        (None, AcmeAction::Revoke) => {
            return refuse(format!("{domain} has no certificate to revoke"))
        }
        _ => {}
    }
    let request = porter_acme::request(store, &domain, action)
        .await
        .map_err(|e| match e {
            porter_acme::AcmeError::Store(e) => OpError::Store(e),
            other => OpError::Refused(other.to_string()),
        })?;
    let state = store.acme_state(&domain).await?;
    let ocsp = store.ocsp(&domain).await?;
    Ok(cert_view(&site, cert, state, Some(&request), ocsp, true))
}

/// `porter status`: how the server is doing.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StatusView {
    pub(crate) store: StoreStatus,
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
}

/// How the server is doing.
pub(crate) fn status(store: &dyn Store) -> StatusView {
    let health = store.health();
    StatusView {
        store: StoreStatus {
            ok: health.failure.is_none(),
            failure: health.failure,
            stalled_operations: health.stalled,
        },
    }
}
