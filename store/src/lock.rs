//! Locks across every Porter sharing a store: one node does a piece of work (an ACME order,
//! an OCSP fetch, a ticket-key rotation) while the others leave it alone.

use tokio::sync::watch;

/// A lock taken with [`crate::Store::try_lock`], held until it is dropped or lost.
///
/// On a store only one process opens (sled) it is never lost. On etcd it lives on the node's
/// lease: it is lost when the node cannot renew the lease within its time to live (the node
/// lost etcd, so another node may take the work over), and is then of no use: whoever holds it
/// stops the work it guards.
pub struct Lock {
    /// The lease it was taken under, and the current lease of the node (`None`: none).
    lease: Option<(i64, watch::Receiver<Option<i64>>)>,
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Lock {
    /// A lock that lasts as long as its holder.
    pub(crate) fn held() -> Lock {
        Lock {
            lease: None,
            release: None,
        }
    }

    /// A lock taken under `lease`, lost when `current` says the node's lease is another (or
    /// none); `release` gives it back.
    pub(crate) fn on_lease(
        lease: i64,
        current: watch::Receiver<Option<i64>>,
        release: impl FnOnce() + Send + Sync + 'static,
    ) -> Lock {
        Lock {
            lease: Some((lease, current)),
            release: Some(Box::new(release)),
        }
    }

    /// Whether the lock is lost.
    pub fn is_lost(&self) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|(lease, current)| *current.borrow() != Some(*lease))
    }

    /// Returns when the lock is lost (never, for a lock that cannot be).
    pub async fn lost(&mut self) {
        match &mut self.lease {
            Some((lease, current)) => {
                let lease = *lease;
                // A closed channel means the store is gone, and the lease with it.
                let _ = current.wait_for(|now| *now != Some(lease)).await;
            }
            None => std::future::pending().await,
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock")
            .field("lease", &self.lease.as_ref().map(|(l, _)| l))
            .field("lost", &self.is_lost())
            .finish()
    }
}
