//! The sites being served ([`LiveSites`]): an immutable [`Snapshot`] kept in step with the
//! store by [`run`] (a full build at start, then for each batch of store changes a new snapshot
//! with just those sites re-read, swapped in atomically). While the first build runs, a
//! connection's lookup loads the names it asks for on its own, so that an edge with a big store
//! serves from its first second; callers never see the difference.

use crate::runtime::service::{follow, Follower};
use crate::served::snapshot::{SiteEntry, Snapshot};
use arc_swap::{ArcSwap, Guard};
use porter_store::{Change, DomainName, Store, StoreError};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Reads every site, certificate and OCSP record and builds a snapshot of them, on a blocking
/// thread: with 100,000 sites that takes long enough to stall the handshakes meanwhile.
pub(crate) async fn build(store: &dyn Store) -> Result<Snapshot, StoreError> {
    let sites = store.sites().await?;
    let certs = store.certs().await?;
    let ocsp = store.ocsp_records().await?;
    tokio::task::spawn_blocking(move || {
        let mut certs: HashMap<_, _> = certs.into_iter().map(|c| (c.domain.clone(), c)).collect();
        let mut ocsp: HashMap<_, _> = ocsp.into_iter().collect();
        Snapshot::from_entries(sites.into_iter().map(|site| {
            let cert = certs.remove(&site.domain);
            let ocsp = cert.as_ref().and_then(|_| ocsp.remove(&site.domain));
            SiteEntry::new(site, cert, ocsp)
        }))
    })
    .await
    .map_err(|e| StoreError::Task {
        op: "snapshot build",
        cause: e.into(),
    })
}

async fn entry(
    store: &dyn Store,
    domain: &DomainName,
) -> Result<Option<Arc<SiteEntry>>, StoreError> {
    let Some(site) = store.site(domain).await? else {
        return Ok(None);
    };
    let cert = store.cert(domain).await?;
    let ocsp = store.ocsp(domain).await?;
    Ok(Some(Arc::new(SiteEntry::new(site, cert, ocsp))))
}

/// How long a connection waits for the store to read a site it needs before the full read
/// is in; then it is answered 503 (or its handshake refused) rather than kept waiting.
const LOAD_DEADLINE: Duration = Duration::from_secs(2);

/// The store did not answer in time for a site a connection needs, before the full read was
/// in: the snapshot may lack it.
#[derive(Debug)]
pub(crate) struct NotLoaded;

/// The sites being served, the same for every edge thread.
pub(crate) struct LiveSites {
    store: Arc<dyn Store>,
    snapshot: ArcSwap<Snapshot>,
    /// Told each time a new snapshot is swapped in.
    swapped: tokio::sync::watch::Sender<()>,
}

impl LiveSites {
    /// Nothing loaded yet: [`run`] builds the first snapshot.
    pub(crate) fn new(store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(LiveSites {
            store,
            snapshot: ArcSwap::from_pointee(Snapshot::loading()),
            swapped: tokio::sync::watch::Sender::new(()),
        })
    }

    /// A receiver that sees each swap of the snapshot after the full read (for watchers of
    /// what is served, such as the expiry warnings).
    pub(crate) fn swaps(&self) -> tokio::sync::watch::Receiver<()> {
        self.swapped.subscribe()
    }

    /// Swaps `snapshot` in and says so.
    fn swap(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
        self.swapped.send_replace(());
    }

    /// The snapshot as it is, for readers that cannot wait (the certificate resolver runs after
    /// [`LiveSites::serving`] has loaded the name).
    pub(crate) fn current(&self) -> Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// The snapshot, holding the sites that can serve `name` if the store has them: until the
    /// first full build is in, they (its own and the wildcard one label up) are read from the
    /// store for this call, for at most [`LOAD_DEADLINE`]. Once the snapshot is complete, this
    /// is a plain load: the only time the hot path reads the store is before that.
    pub(crate) async fn serving(&self, name: &str) -> Result<Guard<Arc<Snapshot>>, NotLoaded> {
        let snapshot = self.snapshot.load();
        if snapshot.is_complete() || snapshot.site(name).is_some() {
            return Ok(snapshot);
        }
        drop(snapshot);
        match tokio::time::timeout(
            LOAD_DEADLINE,
            load(self.store.as_ref(), &self.snapshot, name),
        )
        .await
        {
            Ok(true) => Ok(self.snapshot.load()),
            Ok(false) => Err(NotLoaded),
            Err(_) => {
                // Per connection while loading: a client could repeat it at will.
                crate::runtime::log_limit::limited!(
                    warn,
                    name = name,
                    "the store did not answer in time while loading"
                );
                Err(NotLoaded)
            }
        }
    }
}

/// Puts the sites that can serve `name` into `current`; false when the store failed.
async fn load(store: &dyn Store, current: &ArcSwap<Snapshot>, name: &str) -> bool {
    let candidates = [Some(name.to_owned()), DomainName::parent_wildcard(name)];
    let mut found = Vec::new();
    // A name that is not a valid domain cannot be a site: nothing to read.
    for domain in candidates
        .into_iter()
        .flatten()
        .filter_map(|n| DomainName::parse(&n).ok())
    {
        match entry(store, &domain).await {
            Ok(Some(site)) => found.push((domain, Some(site))),
            Ok(None) => {}
            Err(e) => {
                crate::runtime::log_limit::limited!(
                    warn,
                    domain = domain.as_str(),
                    "cannot read a site while loading",
                    error = %e
                );
                return false;
            }
        }
    }
    if found.is_empty() {
        return true;
    }
    // The full build, once swapped in, holds everything read here and newer: never undo it.
    current.rcu(|snapshot| {
        if snapshot.is_complete() {
            Arc::clone(snapshot)
        } else {
            Arc::new(snapshot.with(&found))
        }
    });
    true
}

/// Builds the first complete snapshot (then says so on `loaded`) and applies store changes to
/// `sites` until `shutdown`. `changes` must have been subscribed before, so that nothing
/// committed in between is missed.
pub(crate) async fn run(
    sites: Arc<LiveSites>,
    changes: tokio::sync::broadcast::Receiver<Change>,
    loaded: tokio::sync::watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let following = Following {
        sites,
        loaded,
        started: Instant::now(),
    };
    follow(&following, changes, &shutdown).await;
}

/// What keeps [`LiveSites`] in step with the store.
struct Following {
    sites: Arc<LiveSites>,
    /// Told once the first full read is in.
    loaded: tokio::sync::watch::Sender<bool>,
    started: Instant,
}

impl Follower for Following {
    const NAME: &'static str = "sites";

    fn cares(&self, change: &Change) -> bool {
        // ACME progress, ticket keys, apps, challenges and DNS zones change nothing in the
        // snapshot.
        matches!(change, Change::Site(_) | Change::Cert(_) | Change::Ocsp(_))
    }

    async fn reload(&self) -> Result<(), StoreError> {
        let snapshot = build(self.sites.store.as_ref()).await?;
        let sites = snapshot.len();
        self.sites.swap(snapshot);
        if self.loaded.send_replace(true) {
            tracing::debug!(sites, "snapshot read again");
        } else {
            tracing::info!(sites, elapsed = ?self.started.elapsed(), "every site is loaded");
        }
        Ok(())
    }

    /// A new snapshot with just the sites of `batch` read again: a burst costs one swap.
    async fn apply(&self, batch: Vec<Change>) -> Result<(), StoreError> {
        let domains: BTreeSet<DomainName> = batch
            .into_iter()
            .filter_map(|change| match change {
                Change::Site(d) | Change::Cert(d) | Change::Ocsp(d) => Some(d),
                _ => None,
            })
            .collect();
        let mut updates = Vec::with_capacity(domains.len());
        for domain in domains {
            let entry = entry(self.sites.store.as_ref(), &domain).await?;
            updates.push((domain, entry));
        }
        let snapshot = self.sites.snapshot.load().with(&updates);
        tracing::debug!(sites = snapshot.len(), "snapshot updated");
        self.sites.swap(snapshot);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use porter_store::{CertRecord, CertSource, Site, SledStore, Target, Upstream};

    async fn add_site(store: &SledStore, name: &str, cert_names: &[&str]) {
        let domain = DomainName::parse(name).unwrap();
        store
            .add_site(Site {
                domain: domain.clone(),
                target: Target::Upstream(Upstream::parse("127.0.0.1:9").unwrap()),
                acme: false,
                hsts_max_age: Some(0),
                features: Default::default(),
                challenge: None,
                needs_cert_since: None,
                balancing: None,
            })
            .await
            .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let names = cert_names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let record = CertRecord::from_pem(
            &domain,
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
            porter_store::unix_now(),
            CertSource::Imported,
        )
        .unwrap();
        store.put_cert(record).await.unwrap();
    }

    #[tokio::test]
    async fn names_load_on_demand_until_the_full_build_is_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        add_site(&store, "a.test", &["a.test"]).await;
        add_site(&store, "*.b.test", &["*.b.test"]).await;
        add_site(&store, "c.test", &["c.test"]).await;
        let sites = LiveSites::new(store.clone());

        for name in ["a.test", "x.b.test", "unknown.test", "not a name"] {
            sites.serving(name).await.unwrap();
        }
        let partial = sites.snapshot.load_full();
        assert!(!partial.is_complete());
        assert!(partial.cert("a.test").is_some());
        assert!(partial.cert("x.b.test").is_some(), "the wildcard above it");
        assert!(partial.site("c.test").is_none(), "nobody asked for c.test");
        assert_eq!(partial.len(), 2);

        sites
            .snapshot
            .store(Arc::new(build(store.as_ref()).await.unwrap()));
        let complete = sites.snapshot.load_full();
        assert!(complete.is_complete());
        assert_eq!(complete.len(), 3);
        sites.serving("a.test").await.unwrap();
        sites.serving("unknown.test").await.unwrap();
        assert!(
            Arc::ptr_eq(&complete, &sites.snapshot.load_full()),
            "a complete snapshot is never replaced by a point read"
        );
    }
}
