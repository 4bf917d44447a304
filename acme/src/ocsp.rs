//! OCSP stapling data (RFC 6960): for every certificate whose AIA names a responder, fetch a
//! response, verify it, keep it in the store (the edge staples it from there, so a restart
//! staples at once and a fleet shares it), and fetch again at half its validity. When the
//! responder fails, the still-valid response stays and the fetch is retried with backoff. A
//! certificate without a responder (Let's Encrypt's since 2025) is normal and left alone. A
//! `revoked` answer gets an ACME certificate replaced at once and an imported one reported.

use crate::cert_pages::for_each_cert;
use crate::ocsp_check::{self, OcspStatus as Checked};
use crate::schedule::{backoff, now, unit_jitter};
use porter_store::{CertRecord, CertSource, Change, OcspRecord, OcspResponse, OcspStatus, Store};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_OCSP;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Longest sleep between two looks at the schedule.
const MAX_SLEEP: i64 = 3600;
/// Soonest refresh after a fetch (real responses live for days; this only stops a hot loop).
const MIN_REFRESH: i64 = 10;

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
    loop {
        let now = now();
        let mut next = now + MAX_SLEEP;
        match plan(store.as_ref(), now, &mut without_ocsp).await {
            Ok(plan) => {
                for (cert, old, at) in plan {
                    if at > now {
                        next = next.min(at);
                        continue;
                    }
                    if shutdown.is_cancelled() {
                        return;
                    }
                    let record = refresh(&client, &cert, old, now).await;
                    next = next.min(record.next_refresh);
                    report(store.as_ref(), &cert, &record).await;
                    if let Err(e) = store.put_ocsp(&cert.domain, record).await {
                        tracing::debug!(domain = %cert.domain, error = %e, "OCSP record not stored");
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the store; retrying");
                next = now + 5;
            }
        }
        let sleep = tokio::time::sleep(Duration::from_secs((next - self::now()).max(0) as u64));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            // A new certificate needs its response now.
            change = changes.recv() => if !matches!(change, Ok(Change::Cert(_)) | Err(_)) { continue },
            _ = sleep => {}
        }
    }
}

/// Every certificate that names a responder, with its OCSP record and the time it is due.
/// Certificates without one are remembered by serial (parsing each at every look would cost
/// more than the look) and get no record at all: nothing is written for them.
async fn plan(
    store: &dyn Store,
    now: i64,
    without_ocsp: &mut HashSet<String>,
) -> Result<Vec<(CertRecord, Option<OcspRecord>, i64)>, porter_store::StoreError> {
    let mut out = Vec::new();
    let mut records: HashMap<_, _> = store.ocsp_records().await?.into_iter().collect();
    for_each_cert(store, |cert| {
        if without_ocsp.contains(&cert.serial) {
            return;
        }
        if responder_url(&cert.chain[0]).is_none() {
            without_ocsp.insert(cert.serial.clone());
            return;
        }
        let old = records.remove(&cert.domain);
        let at = match &old {
            Some(record) if record.serial == cert.serial => record.next_refresh,
            _ => now,
        };
        out.push((cert, old, at));
    })
    .await?;
    out.sort_by_key(|(_, _, at)| *at);
    Ok(out)
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
            let mut state = match store.acme_state(domain).await {
                Ok(state) => state.unwrap_or_default(),
                Err(e) => {
                    return tracing::error!(%domain, error = %e, "cannot request the replacement")
                }
            };
            if !state.force_renewal {
                state.force_renewal = true;
                state.retry_at = None;
                if let Err(e) = store.put_acme_state(domain, state).await {
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
