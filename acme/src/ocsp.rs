//! OCSP stapling data (RFC 6960): for every certificate whose AIA names a responder, fetch a
//! response, verify it, keep it in the store (the edge staples it from there, so a restart
//! staples at once and a fleet shares it), and fetch again at half its validity. When the
//! responder fails, the still-valid response stays and the fetch is retried with backoff. A
//! certificate without a responder (Let's Encrypt's since 2025) is normal and left alone. A
//! `revoked` answer gets an ACME certificate replaced at once and an imported one reported.

use crate::agenda::Agenda;
use crate::cert_pages::for_each_cert;
use crate::ocsp_check::{self, OcspStatus as Checked};
use crate::schedule::{backoff, unit_jitter};
use porter_store::unix_now;
use porter_store::{
    CertRecord, CertSource, Change, DomainName, OcspRecord, OcspResponse, OcspStatus, Store,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_OCSP;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Soonest refresh after a fetch (real responses live for days; this only stops a hot loop).
const MIN_REFRESH: i64 = 10;
/// How long a certificate whose fetch another node is making waits before it is looked at
/// again (by then that node has stored the response).
const LOCKED_RETRY: i64 = 10;

/// The OCSP responder URL in a certificate's Authority Information Access, if any (a
/// certificate without one is normal: Let's Encrypt's have none since 2025).
pub fn responder_url(leaf: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(leaf).ok()?;
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityInfoAccess(aia) => aia
                .accessdescs
                .iter()
                .filter(|d| d.access_method == OID_PKIX_ACCESS_DESCRIPTOR_OCSP)
                .find_map(|d| match &d.access_location {
                    GeneralName::URI(uri) => Some(uri.to_string()),
                    _ => None,
                }),
            _ => None,
        })
}

/// When a response should be fetched again: at half its validity, never sooner than
/// [`MIN_REFRESH`] from now.
fn refresh_at(this_update: i64, valid_until: i64, now: i64) -> i64 {
    let half = this_update + (valid_until - this_update) / 2;
    if half > now {
        half.max(now + MIN_REFRESH)
    } else {
        now + ((valid_until - now) / 2).max(MIN_REFRESH)
    }
}

/// Runs the OCSP refresher until `shutdown`.
pub async fn run(store: Arc<dyn Store>, shutdown: CancellationToken) {
    let client = ocsp_stapler::Client::new();
    let mut without_ocsp = HashSet::new();
    let mut changes = store.subscribe();
    // A full plan at start, then hourly as a safety net, and after missed changes; in between,
    // a changed certificate re-plans just its site.
    let mut agenda = Agenda::default();
    loop {
        let now = unix_now();
        // A store out of reach (etcd away): fetches wait, the stored responses stay stapled.
        if store.health().unreachable_since.is_some() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            agenda.plan_all();
            continue;
        }
        if agenda.full_plan_due(now) {
            agenda.replace(plan(store.as_ref(), now, &mut without_ocsp).await, now);
        }
        let due: Vec<DomainName> = agenda.due(now).cloned().collect();
        for domain in due {
            if shutdown.is_cancelled() {
                return;
            }
            let next = match refresh_site(store.as_ref(), &client, &domain, now).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(%domain, error = %e, "cannot read the store; retrying");
                    Some(now + 5)
                }
            };
            agenda.set(domain, next);
        }
        let next = agenda.next_wake(now);
        let sleep = tokio::time::sleep(Duration::from_secs((next - unix_now()).max(0) as u64));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            change = changes.recv() => match change {
                // A new certificate needs its response now; a removed site none.
                Ok(Change::Cert(domain) | Change::Site(domain)) => {
                    match due_for(store.as_ref(), &domain, unix_now(), &mut without_ocsp).await {
                        Ok(at) => agenda.set(domain, at),
                        Err(_) => agenda.plan_all(),
                    }
                }
                Ok(Change::Everything) | Err(_) => agenda.plan_all(),
                Ok(_) => {}
            },
            _ = sleep => {}
        }
    }
}

/// When the certificate `cert` needs a fetch, given its `old` record: at once for a certificate
/// the record is not about.
fn due(cert: &CertRecord, old: Option<&OcspRecord>, now: i64) -> i64 {
    match old {
        Some(record) if record.serial == cert.serial => record.next_refresh,
        _ => now,
    }
}

/// Whether `cert` names a responder. Certificates without one are remembered by serial (parsing
/// each at every look would cost more than the look) and get no record at all.
fn has_responder(cert: &CertRecord, without_ocsp: &mut HashSet<String>) -> bool {
    if without_ocsp.contains(&cert.serial) {
        return false;
    }
    if responder_url(&cert.chain[0]).is_none() {
        without_ocsp.insert(cert.serial.clone());
        return false;
    }
    true
}

/// Every site whose certificate names a responder, with the time it is due.
async fn plan(
    store: &dyn Store,
    now: i64,
    without_ocsp: &mut HashSet<String>,
) -> Result<Vec<(DomainName, i64)>, porter_store::StoreError> {
    let mut out = Vec::new();
    let records: HashMap<_, _> = store.ocsp_records().await?.into_iter().collect();
    for_each_cert(store, |cert| {
        if has_responder(&cert, without_ocsp) {
            let at = due(&cert, records.get(&cert.domain), now);
            out.push((cert.domain, at));
        }
    })
    .await?;
    Ok(out)
}

/// When the site `domain` is due, read from the store (`None`: nothing to fetch for it).
async fn due_for(
    store: &dyn Store,
    domain: &DomainName,
    now: i64,
    without_ocsp: &mut HashSet<String>,
) -> Result<Option<i64>, porter_store::StoreError> {
    let Some(cert) = store.cert(domain).await? else {
        return Ok(None);
    };
    if !has_responder(&cert, without_ocsp) {
        return Ok(None);
    }
    let old = store.ocsp(domain).await?;
    Ok(Some(due(&cert, old.as_ref(), now)))
}

/// Fetches, verifies and stores a fresh response for the site `domain`; when to fetch again
/// (`None`: it no longer has a certificate).
async fn refresh_site(
    store: &dyn Store,
    client: &ocsp_stapler::Client,
    domain: &DomainName,
    now: i64,
) -> Result<Option<i64>, porter_store::StoreError> {
    // One node of a fleet fetches; the others staple what it stores.
    let Some(_fetching) = store.try_lock(&format!("ocsp/{domain}")).await? else {
        return Ok(Some(now + LOCKED_RETRY));
    };
    let Some(cert) = store.cert(domain).await? else {
        return Ok(None);
    };
    if responder_url(&cert.chain[0]).is_none() {
        // Replaced since it was planned, by a certificate without OCSP.
        return Ok(None);
    }
    // Read under the lock: the node that held it may have just stored a fresh response.
    let old = store.ocsp(domain).await?;
    if let Some(record) = old.as_ref().filter(|r| r.serial == cert.serial) {
        if record.next_refresh > now {
            return Ok(Some(record.next_refresh));
        }
    }
    let record = refresh(client, &cert, old, now).await;
    let next = record.next_refresh;
    report(store, &cert, &record).await;
    if let Err(e) = store.put_ocsp(domain, record).await {
        tracing::debug!(%domain, error = %e, "OCSP record not stored");
    }
    Ok(Some(next))
}

/// Fetches and verifies a fresh response for `cert`.
async fn refresh(
    client: &ocsp_stapler::Client,
    cert: &CertRecord,
    old: Option<OcspRecord>,
    now: i64,
) -> OcspRecord {
    let leaf = &cert.chain[0];
    let url = responder_url(leaf).unwrap_or_default();
    let kept = old
        .filter(|o| o.serial == cert.serial)
        .map(|o| (o.attempts, o.response.filter(|r| r.valid_until > now)));
    let result = match cert.chain.get(1) {
        Some(issuer) => fetch(client, leaf, issuer, cert.not_after, now).await,
        None => Err("the chain has no issuer certificate to check the response against".to_owned()),
    };
    match result {
        Ok(response) => OcspRecord {
            serial: cert.serial.clone(),
            url: Some(url.clone()),
            next_refresh: refresh_at(response.this_update, response.valid_until, now),
            response: Some(response),
            attempts: 0,
            last_error: None,
        },
        Err(error) => {
            let (attempts, response) = kept.unwrap_or((0, None));
            let attempts = attempts.saturating_add(1);
            let remaining = response.as_ref().map(|r| r.valid_until - now);
            let wait = backoff(
                attempts,
                unit_jitter(&format!("{}{attempts}", cert.serial)),
                remaining,
            );
            tracing::warn!(domain = %cert.domain, %url, attempts, retry_in_s = wait, %error, "OCSP fetch failed");
            OcspRecord {
                serial: cert.serial.clone(),
                url: Some(url),
                response,
                next_refresh: now + wait,
                attempts,
                last_error: Some(error),
            }
        }
    }
}

async fn fetch(
    client: &ocsp_stapler::Client,
    leaf: &[u8],
    issuer: &[u8],
    not_after: i64,
    now: i64,
) -> Result<OcspResponse, String> {
    let response = client
        .query_raw(leaf, issuer)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let der =
        rasn::der::encode(&response).map_err(|e| format!("cannot encode the response: {e}"))?;
    let checked = ocsp_check::check(&der, leaf, issuer, now)?;
    Ok(OcspResponse {
        der,
        status: match checked.status {
            Checked::Good => OcspStatus::Good,
            Checked::Revoked { at } => OcspStatus::Revoked(at),
            Checked::Unknown => OcspStatus::Unknown,
        },
        this_update: checked.this_update,
        valid_until: checked.next_update.min(not_after),
    })
}

/// Acts on what a response says: a revoked ACME certificate is replaced at once, a revoked
/// imported one is reported every time it is checked.
async fn report(store: &dyn Store, cert: &CertRecord, record: &OcspRecord) {
    let Some(OcspResponse {
        status: OcspStatus::Revoked(at),
        ..
    }) = &record.response
    else {
        return;
    };
    let domain = &cert.domain;
    match cert.source {
        CertSource::Acme => {
            tracing::error!(%domain, serial = %cert.serial, revoked_at = at, "certificate REVOKED according to its CA's OCSP responder; replacing it now");
            // Asked once: a replacement already asked for is on its way (or backing off).
            let asked = match store.acme_request(domain).await {
                Ok(asked) => asked.is_some_and(|r| r.renew.is_some()),
                Err(e) => {
                    return tracing::error!(%domain, error = %e, "cannot request the replacement")
                }
            };
            if !asked {
                if let Err(e) = crate::request(store, domain, crate::AcmeAction::Renew).await {
                    tracing::error!(%domain, error = %e, "cannot request the replacement");
                }
            }
        }
        CertSource::Imported => {
            tracing::error!(%domain, serial = %cert.serial, revoked_at = at, "imported certificate REVOKED according to its CA's OCSP responder: import a new one");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::refresh_at;

    #[test]
    fn refreshes_at_half_the_validity() {
        assert_eq!(refresh_at(0, 86_400, 100), 43_200);
        // Already past half: half of what is left, never sooner than a minute.
        assert_eq!(refresh_at(0, 1000, 800), 900);
        assert_eq!(refresh_at(0, 1000, 990), 1000);
        assert_eq!(
            refresh_at(0, 60, 1),
            30,
            "one-minute responses refresh at 30 s"
        );
        assert_eq!(refresh_at(0, 100, 45), 55);
    }
}
