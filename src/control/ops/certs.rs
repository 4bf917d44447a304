//! `cert status` (alias `cert list`), `cert import`, `cert renew` and `cert revoke`: every
//! site's certificate as the store has it, what the ACME worker will do next and why, its OCSP
//! state, and whether the edge serves it now.

use super::{rfc3339, OpError, WILDCARD_NOTE};
use crate::served::reload::LiveSites;
use porter_acme::AcmeAction;
use porter_store::unix_now;
use porter_store::{
    AcmeRequest, AcmeState, CertRecord, CertSource, DnsZone, DomainName, OcspRecord, OcspStatus,
    Site, Store, StoreError,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What runs beside the store when the certificates are read: the ACME worker's CA (when it
/// runs) and the edge's sites (when a server answers), so that a row can say what happens next
/// and what is served. The CLI on a store alone has neither.
#[derive(Default, Clone, Copy)]
pub(crate) struct Beside<'a> {
    /// The host of the CA the ACME worker orders from, when it runs.
    pub(crate) acme_ca: Option<&'a str>,
    /// The sites the edge serves.
    pub(crate) sites: Option<&'a LiveSites>,
}

/// A certificate's OCSP state in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OcspState {
    /// The response held says good (its refresh may be failing: see `error`).
    Good,
    Revoked,
    /// The responder does not know the certificate.
    Unknown,
    /// The certificate names no responder (Let's Encrypt's since 2025): normal.
    NoResponder,
    /// The last good response has expired and no new one came.
    Stale,
    /// No response yet, and fetching fails.
    Failing,
    /// No response yet.
    Pending,
}

/// A certificate's OCSP state with what is known of its response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OcspView {
    pub(crate) status: OcspState,
    /// The responder, from the certificate's AIA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) responder: Option<String>,
    /// `thisUpdate` of the response held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) this_update: Option<String>,
    /// Until when the response held is stapled: its `nextUpdate`, or the certificate's end if
    /// sooner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) valid_until: Option<String>,
    /// When the certificate was revoked, by a `revoked` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) revoked_at: Option<String>,
    /// When the response is fetched next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) next_refresh: Option<String>,
    /// The last failed fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl From<OcspState> for OcspView {
    fn from(status: OcspState) -> Self {
        OcspView {
            status,
            responder: None,
            this_update: None,
            valid_until: None,
            revoked_at: None,
            next_refresh: None,
            error: None,
        }
    }
}

impl OcspView {
    /// The state as `cert status` words it for a person.
    pub(crate) fn words(&self) -> &'static str {
        match self.status {
            OcspState::Good if self.error.is_some() => "good (refresh failing)",
            OcspState::Good => "good",
            OcspState::Revoked => "REVOKED",
            OcspState::Unknown => "unknown to the responder",
            OcspState::NoResponder => "the CA offers no OCSP",
            OcspState::Stale => "stale",
            OcspState::Failing => "failing",
            OcspState::Pending => "pending",
        }
    }

    /// The view of `ocsp`, the record of the certificate shown, at `now`.
    fn of(ocsp: Option<OcspRecord>, now: i64) -> Self {
        let Some(ocsp) = ocsp else {
            return OcspState::Pending.into();
        };
        let status = match (&ocsp.url, &ocsp.response) {
            (None, _) => return OcspState::NoResponder.into(),
            (Some(_), Some(r)) if r.valid_until > now => match r.status {
                OcspStatus::Good => OcspState::Good,
                OcspStatus::Revoked(_) => OcspState::Revoked,
                OcspStatus::Unknown => OcspState::Unknown,
            },
            (Some(_), Some(_)) => OcspState::Stale,
            (Some(_), None) if ocsp.last_error.is_some() => OcspState::Failing,
            (Some(_), None) => OcspState::Pending,
        };
        let response = ocsp.response.as_ref();
        OcspView {
            status,
            responder: ocsp.url,
            this_update: response.map(|r| rfc3339(r.this_update)),
            valid_until: response.map(|r| rfc3339(r.valid_until)),
            revoked_at: response.and_then(|r| match r.status {
                OcspStatus::Revoked(at) => Some(rfc3339(at)),
                _ => None,
            }),
            next_refresh: Some(rfc3339(ocsp.next_refresh)),
            error: ocsp.last_error,
        }
    }
}

/// A site's certificate as `cert status` shows it (never the key), and its ACME progress.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct CertView {
    pub(crate) domain: String,
    /// `valid`, `expired`, `not yet valid`, `pending`, `failing`, `wildcard`, `none`.
    pub(crate) status: String,
    pub(crate) names: Vec<String>,
    pub(crate) issuer: Option<String>,
    pub(crate) serial: Option<String>,
    /// `ECDSA P-256`, `RSA 2048`, ...
    pub(crate) key_type: Option<String>,
    pub(crate) not_before: Option<String>,
    pub(crate) not_after: Option<String>,
    /// Seconds until it expires (negative once it has).
    pub(crate) expires_in_s: Option<i64>,
    /// `imported` or `acme`.
    pub(crate) source: Option<String>,
    /// For ACME, the directory URL of the CA that issued it (its host alone for certificates
    /// obtained before Porter kept the URL).
    pub(crate) ca: Option<String>,
    /// When the ACME worker renews it.
    pub(crate) renew_at: Option<String>,
    /// Why then: `lifetime ratio`, `ARI window`, `emergency`, `requested`.
    pub(crate) renew_why: Option<String>,
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
    /// Its OCSP state and response, when it has a certificate.
    pub(crate) ocsp: Option<OcspView>,
    /// Whether the edge serves this very certificate now (its serial is the stored one's);
    /// `None` when no server answered, or it has no certificate.
    pub(crate) served: Option<bool>,
    /// An explanation for the operator.
    pub(crate) note: Option<String>,
    /// How long (seconds) the site has needed a certificate without having a valid one, since
    /// it was added or ACME was turned on for it; `None` when it has one, or when its record
    /// is older than Porter keeping that time.
    pub(crate) waiting_s: Option<i64>,
}

impl CertView {
    /// Whether its renewal is failing: attempts have failed (the worker makes none before the
    /// certificate is due, so it is past its due time).
    pub(crate) fn renewal_failing(&self) -> bool {
        self.attempts > 0
    }

    /// Whether its OCSP response cannot be fetched or has run out.
    pub(crate) fn ocsp_failing(&self) -> bool {
        self.ocsp.as_ref().is_some_and(|o| {
            matches!(o.status, OcspState::Failing | OcspState::Stale)
                || (o.status == OcspState::Good && o.error.is_some())
        })
    }

    /// Its OCSP state, when it has a certificate.
    pub(crate) fn ocsp_state(&self) -> Option<OcspState> {
        self.ocsp.as_ref().map(|o| o.status)
    }
}

/// Whether the edge serves the certificate with `serial` for `domain` now.
fn served(sites: &LiveSites, domain: &DomainName, serial: &str) -> Option<bool> {
    let snapshot = sites.current();
    if !snapshot.is_complete() {
        return None;
    }
    Some(
        snapshot
            .site(domain.as_str())
            .and_then(|site| site.cert.as_ref())
            .is_some_and(|cert| *cert.serial == *serial),
    )
}

impl CertView {
    /// A row for `domain` with the ACME worker's progress on it so far.
    fn acme_progress(domain: &DomainName, state: &AcmeState) -> Self {
        CertView {
            domain: domain.to_string(),
            attempts: state.attempts,
            last_error: state.last_error.clone(),
            next_attempt: state.retry_at.map(rfc3339),
            challenge: state.challenge.map(|c| c.to_string()),
            order_in_flight: state.pending.is_some(),
            ..CertView::default()
        }
    }

    /// The stored certificate itself: its state at `now` and what it says.
    fn describe(&mut self, cert: CertRecord, now: i64) {
        self.status = if now >= cert.not_after {
            "expired"
        } else if now < cert.not_before {
            "not yet valid"
        } else {
            "valid"
        }
        .to_owned();
        self.key_type = Some(cert.key_type());
        self.expires_in_s = Some(cert.not_after - now);
        self.names = cert.names;
        self.issuer = Some(cert.issuer);
        self.serial = Some(cert.serial);
        self.not_before = Some(rfc3339(cert.not_before));
        self.not_after = Some(rfc3339(cert.not_after));
        self.source = Some(cert.source.to_string());
        self.ca = cert.ca;
    }

    /// When and why the ACME worker renews `cert`, which it manages; `acme_runs` says whether
    /// it runs beside the store.
    fn plan_renewal(
        &mut self,
        cert: &CertRecord,
        (state, request): (&AcmeState, Option<&AcmeRequest>),
        now: i64,
        acme_runs: bool,
    ) {
        let renewal = porter_acme::renewal(cert, state, request, now);
        self.renew_at = Some(rfc3339(renewal.at));
        self.renew_why = Some(renewal.why.as_str().to_owned());
        if !acme_runs {
            self.note = Some(
                "ACME is off: it renews when `porter serve` runs with --acme-agree-tos".into(),
            );
        }
    }

    /// Why a site has no certificate (`no_zone`: a wildcard without its DNS zone), and what
    /// comes next.
    fn explain_missing(&mut self, acme: bool, no_zone: bool, state: &AcmeState, acme_runs: bool) {
        if acme && no_zone {
            self.status = "wildcard".into();
            self.note = Some(WILDCARD_NOTE.into());
        } else if !acme {
            self.status = "none".into();
            self.note = Some("ACME is off for this site: import a certificate".into());
        } else {
            self.status = if state.last_error.is_some() {
                "failing"
            } else {
                "pending"
            }
            .into();
            if !acme_runs {
                self.note = Some("ACME is off: serve with --acme-agree-tos to obtain it".into());
            }
        }
    }
}

/// The OCSP view of `cert`, from `ocsp` when that record is of this very certificate.
fn ocsp_of(cert: &CertRecord, ocsp: Option<OcspRecord>, now: i64) -> OcspView {
    match ocsp.filter(|o| o.serial == cert.serial) {
        None if porter_acme::responder_url(&cert.chain[0]).is_none() => {
            OcspState::NoResponder.into()
        }
        ocsp => OcspView::of(ocsp, now),
    }
}

/// The `cert status` row of `site` (`zones`: the DNS zones, which a wildcard needs).
fn cert_view(
    (site, zones): (&Site, &[DnsZone]),
    cert: Option<CertRecord>,
    state: Option<AcmeState>,
    request: Option<&AcmeRequest>,
    ocsp: Option<OcspRecord>,
    beside: Beside<'_>,
) -> CertView {
    let now = unix_now();
    let state = state.unwrap_or_default();
    let mut view = CertView::acme_progress(&site.domain, &state);
    let no_zone = DnsZone::wildcard_without_zone(zones, &site.domain);
    let acme_runs = beside.acme_ca.is_some();
    match cert {
        Some(cert) => {
            if cert.source == CertSource::Acme && site.acme && !no_zone {
                view.plan_renewal(&cert, (&state, request), now, acme_runs);
            }
            view.ocsp = Some(ocsp_of(&cert, ocsp, now));
            view.served = beside
                .sites
                .and_then(|sites| served(sites, &site.domain, &cert.serial));
            view.describe(cert, now);
        }
        None => view.explain_missing(site.acme, no_zone, &state, acme_runs),
    }
    if !matches!(view.status.as_str(), "valid" | "expired") {
        view.waiting_s = site.needs_cert_since.map(|since| (now - since).max(0));
    }
    view
}

pub(crate) async fn import_cert(
    store: &dyn Store,
    req: super::ImportCert,
) -> Result<CertView, OpError> {
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
    Ok(cert_view(
        (&site, &store.dns_zones().await?),
        Some(record),
        None,
        None,
        None,
        Beside::default(),
    ))
}

/// Every site's certificate status, ordered by domain.
pub(crate) async fn list_certs(
    store: &dyn Store,
    beside: Beside<'_>,
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
    let zones = store.dns_zones().await?;
    let mut views = Vec::new();
    for site in store.sites().await? {
        let ocsp = ocsp.remove(&site.domain);
        let (cert, state) = (certs.remove(&site.domain), states.remove(&site.domain));
        let request = requests.get(&site.domain);
        views.push(cert_view(
            (&site, &zones),
            cert,
            state,
            request,
            ocsp,
            beside,
        ));
    }
    Ok(views)
}

/// Records `action` for the worker, which acts on it within a second when it runs.
pub(crate) async fn request_acme(
    store: &dyn Store,
    domain: &str,
    action: AcmeAction,
    beside: Beside<'_>,
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
    let zones = store.dns_zones().await?;
    if DnsZone::wildcard_without_zone(&zones, &domain) {
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
    Ok(cert_view(
        (&site, &zones),
        cert,
        state,
        Some(&request),
        ocsp,
        beside,
    ))
}
