//! The immutable view of the store that the hot path reads: which sites exist, where their
//! requests go, and the parsed certificate each is served with. Built from store records and
//! swapped whole (see `reload`), so a handshake or request never locks, touches disk or waits.

use porter_store::{CertRecord, DomainName, OcspRecord, OcspStatus, Site, Target};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// A certificate ready for handshakes.
pub(crate) struct ServedCert {
    /// Chain and signing key, as rustls takes them.
    pub(crate) key: Arc<CertifiedKey>,
    /// The same with a `good` OCSP response to staple, and until when it may be stapled.
    pub(crate) stapled: Option<(Arc<CertifiedKey>, i64)>,
    /// End of validity (Unix seconds), to tell a valid certificate from an expired one.
    pub(crate) not_after: i64,
}

impl ServedCert {
    /// What to present at `now`: stapled while the response is valid, never with an expired one.
    pub(crate) fn at(&self, now: i64) -> &Arc<CertifiedKey> {
        match &self.stapled {
            Some((stapled, until)) if now < *until => stapled,
            _ => &self.key,
        }
    }
}

/// One site as the edge serves it.
pub(crate) struct SiteEntry {
    /// Its domain, exact or wildcard.
    pub(crate) domain: DomainName,
    /// Where its requests go.
    pub(crate) target: Target,
    /// Its certificate, when one is stored and loads.
    pub(crate) cert: Option<ServedCert>,
    /// The `Strict-Transport-Security` value for its HTTPS responses, unless HSTS is off.
    pub(crate) hsts: Option<http::HeaderValue>,
}

impl SiteEntry {
    /// Builds an entry; a certificate that does not load is logged and left out, so that the
    /// site is still served over plain HTTP rather than not at all.
    pub(crate) fn new(site: Site, cert: Option<CertRecord>, ocsp: Option<OcspRecord>) -> Self {
        let cert = cert.and_then(|record| match load_cert(&record) {
            Ok(key) => Some(ServedCert {
                stapled: staple(&key, &record, ocsp),
                key: Arc::new(key),
                not_after: record.not_after,
            }),
            Err(e) => {
                tracing::error!(domain = %record.domain, error = %e, "stored certificate does not load");
                None
            }
        });
        let hsts = (site.hsts_max_age > 0).then(|| {
            http::HeaderValue::from_str(&format!("max-age={}", site.hsts_max_age))
                .expect("digits are a valid header value")
        });
        SiteEntry {
            domain: site.domain,
            target: site.target,
            cert,
            hsts,
        }
    }

    /// Whether HTTPS can be offered now: the site has a certificate that has not expired.
    pub(crate) fn has_valid_cert(&self, now: i64) -> bool {
        self.cert.as_ref().is_some_and(|c| now < c.not_after)
    }
}

/// The certificate with its OCSP response, when one says `good` about this very certificate.
fn staple(
    key: &CertifiedKey,
    record: &CertRecord,
    ocsp: Option<OcspRecord>,
) -> Option<(Arc<CertifiedKey>, i64)> {
    let ocsp = ocsp.filter(|o| o.serial == record.serial)?;
    let response = ocsp.response.filter(|r| r.status == OcspStatus::Good)?;
    let mut stapled = key.clone();
    stapled.ocsp = Some(response.der);
    Some((Arc::new(stapled), response.valid_until))
}

fn load_cert(record: &CertRecord) -> Result<CertifiedKey, rustls::Error> {
    let chain = record.chain.iter().map(|der| der.clone().into()).collect();
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, record.key.to_der(), &provider)
}

/// Every site by domain; replaced whole on change.
#[derive(Default)]
pub(crate) struct Snapshot {
    sites: HashMap<String, Arc<SiteEntry>>,
}

impl Snapshot {
    /// A snapshot holding `entries`.
    pub(crate) fn from_entries(entries: impl IntoIterator<Item = SiteEntry>) -> Self {
        Snapshot {
            sites: entries
                .into_iter()
                .map(|e| (e.domain.to_string(), Arc::new(e)))
                .collect(),
        }
    }

    /// A copy with the entry of `domain` replaced (`Some`) or removed (`None`).
    pub(crate) fn with(
        &self,
        changes: impl IntoIterator<Item = (DomainName, Option<SiteEntry>)>,
    ) -> Self {
        let mut sites = self.sites.clone();
        for (domain, entry) in changes {
            match entry {
                Some(entry) => sites.insert(domain.to_string(), Arc::new(entry)),
                None => sites.remove(domain.as_str()),
            };
        }
        Snapshot { sites }
    }

    /// The site serving `host` (lowercase, no port, no trailing dot): the exact name first,
    /// then the wildcard one label up.
    pub(crate) fn site(&self, host: &str) -> Option<&Arc<SiteEntry>> {
        self.sites
            .get(host)
            .or_else(|| DomainName::parent_wildcard(host).and_then(|w| self.sites.get(&w)))
    }

    /// The certificate for a TLS server name: the exact site's, else the covering wildcard's.
    pub(crate) fn cert(&self, server_name: &str) -> Option<&ServedCert> {
        let exact = self.sites.get(server_name).and_then(|s| s.cert.as_ref());
        exact.or_else(|| {
            DomainName::parent_wildcard(server_name)
                .and_then(|w| self.sites.get(&w))
                .and_then(|s| s.cert.as_ref())
        })
    }

    /// How many sites are served.
    pub(crate) fn len(&self) -> usize {
        self.sites.len()
    }
}
