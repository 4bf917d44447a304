//! Keeps the edge's [`Snapshot`] in step with the store: a full build at start, then for each
//! batch of store changes a new snapshot with just those sites re-read, swapped in atomically.

use crate::snapshot::{SiteEntry, Snapshot};
use arc_swap::ArcSwap;
use porter_store::{Change, DomainName, Store, StoreError};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// Reads every site and certificate and builds a snapshot of them.
pub(crate) async fn build(store: &dyn Store) -> Result<Snapshot, StoreError> {
    let mut certs: std::collections::HashMap<_, _> = store
        .certs()
        .await?
        .into_iter()
        .map(|c| (c.domain.clone(), c))
        .collect();
    let mut entries = Vec::new();
    for site in store.sites().await? {
        let cert = certs.remove(&site.domain);
        let ocsp = match &cert {
            Some(_) => store.ocsp(&site.domain).await?,
            None => None,
        };
        entries.push(SiteEntry::new(site, cert, ocsp));
    }
    Ok(Snapshot::from_entries(entries))
}

async fn entry(store: &dyn Store, domain: &DomainName) -> Result<Option<SiteEntry>, StoreError> {
    let Some(site) = store.site(domain).await? else {
        return Ok(None);
    };
    let cert = store.cert(domain).await?;
    let ocsp = store.ocsp(domain).await?;
    Ok(Some(SiteEntry::new(site, cert, ocsp)))
}

/// Applies store changes to `current` until `shutdown`. `changes` must have been subscribed
/// before the initial build, so that nothing committed in between is missed.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    current: Arc<ArcSwap<Snapshot>>,
    mut changes: tokio::sync::broadcast::Receiver<Change>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            change = changes.recv() => change,
        };
        let mut domains = BTreeSet::new();
        let mut full = false;
        // Take the whole batch that is already waiting, so a burst costs one swap.
        let mut next = Some(first);
        while let Some(change) = next.take() {
            match change {
                Ok(Change::Site(d) | Change::Cert(d) | Change::Ocsp(d)) => {
                    domains.insert(d);
                }
                // ACME progress and ticket keys change nothing in the snapshot.
                Ok(Change::Acme(_) | Change::TicketKeys | Change::App(_)) => {}
                Err(RecvError::Lagged(_)) => full = true,
                Err(RecvError::Closed) => return,
            }
            next = match changes.try_recv() {
                Ok(c) => Some(Ok(c)),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                    Some(Err(RecvError::Lagged(n)))
                }
                Err(_) => None,
            };
        }
        if !full && domains.is_empty() {
            continue;
        }
        let result = if full {
            build(store.as_ref()).await
        } else {
            let mut updates = Vec::with_capacity(domains.len());
            let mut failed = None;
            for domain in domains {
                match entry(store.as_ref(), &domain).await {
                    Ok(e) => updates.push((domain, e)),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                Some(e) => Err(e),
                None => Ok(current.load().with(updates)),
            }
        };
        let mut result = result;
        // A failed read must not lose the changes: retry a full build until it works.
        while let Err(e) = result {
            tracing::error!(error = %e, "cannot read the store; keeping the previous snapshot and retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
            result = build(store.as_ref()).await;
        }
        if let Ok(snapshot) = result {
            tracing::debug!(sites = snapshot.len(), "snapshot updated");
            current.store(Arc::new(snapshot));
        }
    }
}
