//! Purges from the store, applied to this node's cache: an operator's purge through any node
//! of a fleet reaches every node as the store's change. A node that starts applies the purges
//! still kept to the files it finds again (each only to what was stored before it).

use crate::cache::Cache;
use crate::runtime::service::{follow, Follower};
use porter_store::{Change, Recover, Store, StoreError};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

struct Purges<'a> {
    store: &'a dyn Store,
    cache: &'a Cache,
    /// The ids applied already (those the store still keeps).
    applied: Mutex<HashSet<String>>,
}

impl Follower for Purges<'_> {
    const NAME: &'static str = "cache purges";

    fn cares(&self, change: &Change) -> bool {
        matches!(change, Change::Purges)
    }

    async fn reload(&self) -> Result<(), StoreError> {
        let purges = self.store.purges().await?;
        let mut applied = self.applied.lock().recover();
        let kept: HashSet<String> = purges.iter().map(|p| p.id.clone()).collect();
        for purge in &purges {
            if !applied.contains(&purge.id) {
                self.cache.purge(purge);
                tracing::info!(site = %purge.domain, scope = ?purge.scope, "cache purged");
            }
        }
        *applied = kept;
        Ok(())
    }
}

/// Applies every purge to `cache` until `shutdown`.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    cache: Arc<Cache>,
    changes: broadcast::Receiver<Change>,
    shutdown: CancellationToken,
) {
    let purges = Purges {
        store: &*store,
        cache: &cache,
        applied: Mutex::new(HashSet::new()),
    };
    follow(&purges, changes, &shutdown).await;
}
