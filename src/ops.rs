//! The operations the admin API and the CLI offer, on any store: validation at the boundary,
//! then one store call. Views are what both print or return as JSON.

use porter_store::{CertRecord, CertSource, DomainName, Site, Store, StoreError, Target, Upstream};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
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
    /// The upstream did not accept a connection.
    #[error("upstream {upstream} is unreachable: {reason} (start it first, or pass --allow-unreachable)")]
    Unreachable {
        /// The address tried.
        upstream: String,
        /// What connecting said.
        reason: String,
    },
}

/// `site add`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AddSite {
    pub(crate) domain: String,
    pub(crate) upstream: String,
    #[serde(default)]
    pub(crate) allow_unreachable: bool,
}

/// `cert import`.
#[derive(Debug, Serialize, Deserialize)]
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
}

/// A certificate as listed: never its key.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CertView {
    pub(crate) domain: String,
    pub(crate) names: Vec<String>,
    pub(crate) issuer: String,
    pub(crate) serial: String,
    pub(crate) not_before: String,
    pub(crate) not_after: String,
    pub(crate) source: String,
    /// `valid`, `expired` or `not yet valid`.
    pub(crate) status: String,
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

impl From<Site> for SiteView {
    fn from(site: Site) -> Self {
        SiteView {
            domain: site.domain.to_string(),
            upstream: site.target.to_string(),
        }
    }
}

impl From<CertRecord> for CertView {
    fn from(cert: CertRecord) -> Self {
        let now = now();
        let status = if now >= cert.not_after {
            "expired"
        } else if now < cert.not_before {
            "not yet valid"
        } else {
            "valid"
        };
        CertView {
            domain: cert.domain.to_string(),
            names: cert.names,
            issuer: cert.issuer,
            serial: cert.serial,
            not_before: rfc3339(cert.not_before),
            not_after: rfc3339(cert.not_after),
            source: cert.source.to_string(),
            status: status.to_owned(),
        }
    }
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
    let upstream = Upstream::parse(&req.upstream).map_err(StoreError::from)?;
    if store.site(&domain).await?.is_some() {
        return Err(StoreError::AlreadyExists(format!("site {domain}")).into());
    }
    if !req.allow_unreachable {
        check_reachable(&upstream).await?;
    }
    let site = Site {
        domain,
        target: Target::Upstream(upstream),
    };
    store.add_site(site.clone()).await?;
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
        now(),
        CertSource::Imported,
    )
    .map_err(StoreError::from)?;
    store.put_cert(record.clone()).await?;
    Ok(record.into())
}

pub(crate) async fn list_certs(store: &dyn Store) -> Result<Vec<CertView>, OpError> {
    Ok(store
        .certs()
        .await?
        .into_iter()
        .map(CertView::from)
        .collect())
}
