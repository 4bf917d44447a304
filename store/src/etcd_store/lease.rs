//! The node's lease: granted at open, renewed at a third of its time to live, and the ground
//! its locks stand on. When renewals fail for a whole time to live, the node may have lost the
//! lease (etcd lets it expire and frees its locks for other nodes): its locks count as lost
//! from then, and a new lease is granted once etcd answers. When the store's work stops, the
//! lease is revoked: its locks are lost, and free for other nodes at once.

use super::{absent, Inner};
use crate::error::{etcd_why, StoreError};
use crate::poison::Recover as _;
use crate::{keys, Lock, Node};
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long revoking the lease at the end may take (the process may be exiting).
const REVOKE_WAIT: Duration = Duration::from_secs(1);

impl Inner {
    /// A new lease of the configured time to live.
    pub(super) async fn grant_lease(&self) -> Result<i64, StoreError> {
        let ttl = self.options.lease_ttl.as_secs().max(1) as i64;
        let mut client = self.client.clone();
        let granted = self.call("lease", client.lease_grant(ttl, None)).await?;
        Ok(granted.id())
    }

    /// Records `node` on the node's lease; a record of the same name on another lease (a node
    /// that was killed and whose lease has not run out yet) is waited for, up to a lease, or
    /// replaced when `replacing` (its successor).
    pub(super) async fn join(&self, node: Node, replacing: bool) -> Result<(), StoreError> {
        let key = self.key(keys::NODES, &node.name);
        let gives_up = Instant::now() + self.options.lease_ttl + Duration::from_secs(2);
        loop {
            let lease = self.current_lease()?;
            let (other, _) = self
                .create("join", &key, self.on_lease(&key, &node, lease))
                .await?;
            match other {
                None => {}
                Some(kv) if kv.lease() == lease || replacing => {
                    self.write(
                        "join",
                        Txn::new().and_then([self.on_lease(&key, &node, lease)]),
                    )
                    .await?;
                }
                Some(kv) if Instant::now() >= gives_up => {
                    let running: Option<Node> =
                        crate::codec::decode(keys::NODES, kv.key(), kv.value()).ok();
                    return Err(StoreError::AlreadyExists(format!(
                        "node {} (running as pid {}: give this one another --node)",
                        node.name,
                        running.map_or(0, |n| n.pid)
                    )));
                }
                _ => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            *self.node.lock().recover() = Some(node);
            return Ok(());
        }
    }

    /// A put of `node` at `key` on `lease`.
    fn on_lease(&self, key: &[u8], node: &Node, lease: i64) -> TxnOp {
        TxnOp::put(
            key.to_vec(),
            crate::codec::encode(node),
            Some(PutOptions::new().with_lease(lease)),
        )
    }

    /// The node's lease, or why there is none.
    fn current_lease(&self) -> Result<i64, StoreError> {
        if self.stop.is_cancelled() {
            return Err(StoreError::Stopped);
        }
        self.lease.borrow().ok_or_else(|| StoreError::NoLease {
            at: self.options.to_string(),
        })
    }

    /// Takes the lock `name` on the node's lease, unless another holds it.
    pub(super) async fn try_lock(&self, name: &str) -> Result<Option<Lock>, StoreError> {
        let lease = self.current_lease()?;
        let key = format!("{}/locks/{name}", self.options.prefix).into_bytes();
        let txn = Txn::new().when([absent(&key)]).and_then([TxnOp::put(
            key.clone(),
            // The holder's process, for whoever looks at etcd (operators, tests).
            std::process::id().to_string(),
            Some(PutOptions::new().with_lease(lease)),
        )]);
        let mut client = self.client.clone();
        let answer = self.call("lock", client.txn(txn)).await?;
        if !answer.succeeded() {
            return Ok(None);
        }
        let revision = answer.header().map_or(0, |h| h.revision());
        let mut client = self.client.clone();
        Ok(Some(Lock::on_lease(
            lease,
            self.lease.subscribe(),
            move || {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                // Only the key this lock made: one taken over by another node since stays.
                let release = Txn::new()
                    .when([Compare::create_revision(
                        key.clone(),
                        CompareOp::Equal,
                        revision,
                    )])
                    .and_then([TxnOp::delete(key, None)]);
                runtime.spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), client.txn(release)).await;
                });
            },
        )))
    }
}

/// Renews the lease `lease` until the store's work stops, replacing it when it is lost; then
/// revokes it.
pub(super) async fn keep(inner: Arc<Inner>, lease: i64) {
    tokio::select! {
        () = renew(&inner, lease) => {}
        () = inner.stop.cancelled() => {}
    }
    if let Some(lease) = inner.lease.send_replace(None) {
        let mut client = inner.client.clone();
        let _ = tokio::time::timeout(REVOKE_WAIT, client.lease_revoke(lease)).await;
    }
}

/// Renews the lease `lease`, replacing it when it is lost; never returns.
async fn renew(inner: &Inner, mut lease: i64) {
    let ttl = inner.options.lease_ttl.max(Duration::from_secs(1));
    let every = ttl / 3;
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        match renew_once(inner, lease, every).await {
            Ok(true) => {
                renewed = Instant::now();
                if inner.lease.borrow().is_none() {
                    // Back within its time to live after all; locks lost meanwhile stay lost.
                    inner.lease.send_replace(Some(lease));
                }
                continue;
            }
            Ok(false) => tracing::warn!(
                lease,
                "etcd let the node's lease expire: its locks are lost"
            ),
            Err(why) if renewed.elapsed() >= ttl => {
                tracing::warn!(lease, error = why, "the node's lease could not be renewed within its time to live: its locks count as lost");
            }
            Err(why) => {
                tracing::debug!(lease, error = why, "cannot renew the node's lease yet");
                continue;
            }
        }
        inner.lease.send_replace(None);
        match inner.grant_lease().await {
            Ok(fresh) => {
                let mut client = inner.client.clone();
                // The old one, if etcd still has it, must not hold locks nobody renews.
                let _ = tokio::time::timeout(every, client.lease_revoke(lease)).await;
                lease = fresh;
                renewed = Instant::now();
                inner.lease.send_replace(Some(lease));
                tracing::info!(lease, "a new lease with etcd");
                let node = inner.node.lock().recover().clone();
                if let Some(node) = node {
                    // Listed again: the old lease took the record with it.
                    let key = inner.key(keys::NODES, &node.name);
                    let put = Txn::new().and_then([inner.on_lease(&key, &node, lease)]);
                    if let Err(e) = inner.write("join", put).await {
                        tracing::warn!(error = %e, "cannot list this node again");
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot get a new lease yet"),
        }
    }
}

/// One renewal: whether etcd still has the lease.
async fn renew_once(inner: &Inner, lease: i64, within: Duration) -> Result<bool, String> {
    let mut client = inner.client.clone();
    let once = async {
        let (mut keeper, mut answers) = client.lease_keep_alive(lease).await?;
        keeper.keep_alive().await?;
        answers.message().await
    };
    match tokio::time::timeout(within, once).await {
        Ok(Ok(Some(answer))) => {
            inner.reached();
            Ok(answer.ttl() > 0)
        }
        Ok(Ok(None)) => Err("the keep-alive stream ended".into()),
        Ok(Err(etcd_client::Error::LeaseKeepAliveError(_))) => Ok(false),
        Ok(Err(e)) => {
            let why = etcd_why(Some(&e));
            inner.unreached(&why);
            Err(why)
        }
        Err(_) => Err("no answer in time".into()),
    }
}
