//! The immutable view of the store that the hot path reads: which sites exist, where their
//! requests go, and the parsed certificate each is served with. Built from store records and
//! swapped whole (see `reload`), so a handshake or request never locks, touches disk or waits.

use porter_store::{CertRecord, DomainName, OcspRecord, OcspStatus, PrivateKey, Site, Target};
use rustls::sign::CertifiedKey;
use std::sync::{Arc, OnceLock};

/// A certificate to serve. Its key is parsed at its first handshake, not when the snapshot is
/// built, so that a start with many sites is quick and certificates of names nobody asks for
/// cost only their stored bytes.
pub(crate) struct ServedCert {
    /// The site, for the log line of a key that does not load (shared with its entry).
    domain: Arc<str>,
    /// Chain (DER, leaf first) and key as stored, to parse at the first handshake.
    chain: Vec<Vec<u8>>,
    key: PrivateKey,
    /// A `good` OCSP response for this very certificate, and until when it may be stapled.
    staple: Option<(Vec<u8>, i64)>,
    /// The parsed forms (`None` when the stored key does not load).
    loaded: OnceLock<Option<Loaded>>,
    /// End of validity (Unix seconds), to tell a valid certificate from an expired one.
    pub(crate) not_after: i64,
    /// Its serial (as stored), to tell which certificate is served.
    pub(crate) serial: Box<str>,
}

/// A certificate as rustls takes it, plain and with its staple.
struct Loaded {
    plain: Arc<CertifiedKey>,
    stapled: Option<(Arc<CertifiedKey>, i64)>,
}

impl ServedCert {
    fn new(domain: Arc<str>, record: CertRecord, ocsp: Option<OcspRecord>) -> Self {
        let staple = ocsp
            .filter(|o| o.serial == record.serial)
            .and_then(|o| o.response)
            .filter(|r| r.status == OcspStatus::Good)
            .map(|r| (r.der, r.valid_until));
        ServedCert {
            not_after: record.not_after,
            serial: record.serial.into(),
            domain,
            chain: record.chain,
            key: record.key,
            staple,
            loaded: OnceLock::new(),
        }
    }

    /// Until when its OCSP staple may be served, when it has one.
    pub(crate) fn staple_until(&self) -> Option<i64> {
        self.staple.as_ref().map(|(_, until)| *until)
    }

    /// What to present at `now`: stapled while the response is valid, never with an expired
    /// one; `None` when the stored key does not load (logged once).
    pub(crate) fn at(&self, now: i64) -> Option<&Arc<CertifiedKey>> {
        let loaded = self.loaded.get_or_init(|| self.load()).as_ref()?;
        Some(match &loaded.stapled {
            Some((stapled, until)) if now < *until => stapled,
            _ => &loaded.plain,
        })
    }

    fn load(&self) -> Option<Loaded> {
        let chain = self.chain.iter().map(|der| der.clone().into()).collect();
        let provider = crate::runtime::crypto::provider();
        match CertifiedKey::from_der(chain, self.key.to_der(), &provider) {
            Ok(plain) => {
                let stapled = self.staple.as_ref().map(|(der, until)| {
                    let mut stapled = plain.clone();
                    stapled.ocsp = Some(der.clone());
                    (Arc::new(stapled), *until)
                });
                Some(Loaded {
                    plain: Arc::new(plain),
                    stapled,
                })
            }
            Err(e) => {
                tracing::error!(domain = %self.domain, error = %e, "stored certificate does not load");
                None
            }
        }
    }
}

/// The HSTS max-age of the sites that set none (`serve --hsts-default`; 0 is off), set once as
/// the server starts, before its first snapshot. Process-wide like the flag it comes from, so
/// that each follower of the store that builds entries does not carry it along; unset (a
/// process that serves nothing) it is off.
static HSTS_DEFAULT: OnceLock<u64> = OnceLock::new();

/// Sets [`HSTS_DEFAULT`]; a second call changes nothing.
pub(crate) fn set_hsts_default(max_age: u64) {
    let _ = HSTS_DEFAULT.set(max_age);
}

/// One site as the edge serves it.
pub(crate) struct SiteEntry {
    /// Its domain, exact or wildcard: one allocation shared by the map key and the certificate,
    /// which counts with 100,000 sites.
    pub(crate) domain: Arc<str>,
    /// Where its requests go.
    pub(crate) target: Target,
    /// Its certificate, when one is stored and loads.
    pub(crate) cert: Option<ServedCert>,
    /// The `Strict-Transport-Security` value for its HTTPS responses, unless HSTS is off.
    pub(crate) hsts: Option<http::HeaderValue>,
    /// Its HTTP features, unless every one is off (then a request looks at none).
    pub(crate) features: Option<Box<porter_store::Features>>,
    /// Its upstreams and their state, when it has several (or checks its one).
    pub(crate) balance: Option<Arc<crate::balance::Balancer>>,
}

impl SiteEntry {
    /// Builds an entry.
    pub(crate) fn new(site: Site, cert: Option<CertRecord>, ocsp: Option<OcspRecord>) -> Self {
        let domain: Arc<str> = site.domain.as_str().into();
        let cert = cert.map(|record| ServedCert::new(Arc::clone(&domain), record, ocsp));
        let max_age = site
            .hsts_max_age
            .unwrap_or_else(|| HSTS_DEFAULT.get().copied().unwrap_or(0));
        let hsts = (max_age > 0).then(|| {
            http::HeaderValue::from_str(&format!("max-age={max_age}"))
                .expect("digits are a valid header value")
        });
        let features = (!site.features.is_default()).then(|| Box::new(site.features));
        let balance = site
            .balancing
            .filter(porter_store::Balancing::is_needed)
            .map(|b| crate::balance::Balancer::for_site(&domain, &site.target, &b));
        SiteEntry {
            domain,
            target: site.target,
            cert,
            hsts,
            features,
            balance,
        }
    }

    /// Whether HTTPS can be offered now: the site has a certificate that has not expired.
    pub(crate) fn has_valid_cert(&self, now: i64) -> bool {
        self.cert.as_ref().is_some_and(|c| now < c.not_after)
    }
}

/// Every site by domain; replaced whole on change. The map is persistent (structurally
/// shared): a copy with a few sites changed costs a few nodes, not a copy of 100,000 entries.
pub(crate) struct Snapshot {
    sites: imbl::HashMap<Arc<str>, Arc<SiteEntry>>,
    /// False while the first full read of the store is under way: a name missing from an
    /// incomplete snapshot may just not be loaded yet (see `reload::ensure_loaded`).
    complete: bool,
}

impl Snapshot {
    /// The complete snapshot of a store holding `entries`.
    pub(crate) fn from_entries(entries: impl IntoIterator<Item = SiteEntry>) -> Self {
        Snapshot {
            sites: entries
                .into_iter()
                .map(|e| (Arc::clone(&e.domain), Arc::new(e)))
                .collect(),
            complete: true,
        }
    }

    /// The snapshot served while the store is first read: empty and incomplete.
    pub(crate) fn loading() -> Self {
        Snapshot {
            sites: imbl::HashMap::new(),
            complete: false,
        }
    }

    /// Whether every site of the store is in it (false only until the first full read ends).
    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }

    /// A copy with the entry of `domain` replaced (`Some`) or removed (`None`).
    pub(crate) fn with<'a>(
        &self,
        changes: impl IntoIterator<Item = &'a (DomainName, Option<Arc<SiteEntry>>)>,
    ) -> Self {
        let mut sites = self.sites.clone();
        for (domain, entry) in changes {
            match entry {
                Some(entry) => sites.insert(Arc::clone(&entry.domain), Arc::clone(entry)),
                None => sites.remove(domain.as_str()),
            };
        }
        Snapshot {
            sites,
            complete: self.complete,
        }
    }

    /// The site serving `host` (lowercase, no port, no trailing dot): the exact name first,
    /// then the wildcard one label up.
    pub(crate) fn site(&self, host: &str) -> Option<&Arc<SiteEntry>> {
        self.sites
            .get(host)
            .or_else(|| DomainName::parent_wildcard(host).and_then(|w| self.sites.get(w.as_str())))
    }

    /// The certificate for a TLS server name: the exact site's, else the covering wildcard's.
    pub(crate) fn cert(&self, server_name: &str) -> Option<&ServedCert> {
        let exact = self.sites.get(server_name).and_then(|s| s.cert.as_ref());
        exact.or_else(|| {
            DomainName::parent_wildcard(server_name)
                .and_then(|w| self.sites.get(w.as_str()))
                .and_then(|s| s.cert.as_ref())
        })
    }

    /// Every site served.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Arc<SiteEntry>> {
        self.sites.values()
    }

    /// How many sites are served.
    pub(crate) fn len(&self) -> usize {
        self.sites.len()
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Snapshot({} sites)", self.len())
    }
}
