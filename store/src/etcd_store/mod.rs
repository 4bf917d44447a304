//! The backend a fleet of edges shares, on etcd. Every record is one key,
//! `PREFIX/v1/KIND/ID` (kinds as in [`crate::keys`]), holding the same JSON as sled's; writes
//! that sled makes in a transaction are one etcd `Txn` guarded by revision compares.
//!
//! Changes are announced from one watch on the prefix, so a write made through any node reaches
//! every node's subscribers the same way; a write returns once its own change is announced here
//! (as on sled). A watch that breaks resumes from the next revision it has not seen; one whose
//! history was compacted announces [`Change::Everything`]. Locks live on the node's lease
//! (`lease`): a node that dies or loses etcd loses them one time-to-live later.
//!
//! The watch and the lease's keep-alive run as tasks until the token given to
//! [`EtcdStore::open`] is cancelled or the store is dropped; the lease is revoked then, so the
//! node's locks are free at once, not a time to live later.

mod lease;
mod ops;
mod options;
mod watch;

pub use options::EtcdOptions;

use crate::error::{etcd_why, StoreError};
use crate::poison::Recover as _;
use crate::{unix_now, Change, StoreHealth};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    TlsOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::Code;

/// Capacity of the change channel; a subscriber further behind re-reads everything.
const CHANGE_BUFFER: usize = 4096;
/// Records per read of a list: large pages, since etcd 3.4 counts the rest of the range at
/// every page (a page of 5,000 certificates is ~15 MiB).
const PAGE: i64 = 5000;
/// The largest answer a read accepts (a page of certificates is a few MiB).
const MAX_ANSWER: usize = 256 << 20;
/// The schema this build reads and writes (the same as sled's: the records are the same).
const SCHEMA: &str = "1";

/// A store on an etcd cluster, shared by every node that opens the same address and prefix.
pub struct EtcdStore {
    inner: Arc<Inner>,
    /// Ends the watch and the lease's keep-alive when the store is dropped.
    _stop: DropGuard,
}

/// What the store's handle and its background tasks share.
pub(super) struct Inner {
    client: Client,
    options: EtcdOptions,
    changes: broadcast::Sender<Change>,
    /// The highest revision whose changes have been announced.
    watched: tokio::sync::watch::Sender<i64>,
    /// The node's current lease (`None` while it has none: its locks are lost).
    lease: tokio::sync::watch::Sender<Option<i64>>,
    /// Since when, and why, etcd has not answered.
    unreachable: Mutex<Option<(i64, String)>>,
    /// This process as a node of the fleet, once it joined (recorded again on a new lease).
    node: Mutex<Option<crate::Node>>,
    stalled: AtomicU64,
    /// Cancelled when the background tasks are to stop (the caller's token, or the store
    /// dropped).
    stop: CancellationToken,
}

impl EtcdStore {
    /// Connects, checks (or writes) the schema version under the prefix, and starts following
    /// changes. Fails when etcd does not answer within the deadline.
    ///
    /// The store's background work (the watch that announces changes, the lease that holds its
    /// locks) runs until `stop` is cancelled or the store is dropped, whichever comes first:
    /// give the token that stops the caller's services, or a fresh one for a store that lives
    /// as long as its handle. Once stopped, the lease is revoked (locks are lost and no more
    /// are taken) and changes are no longer announced; reads and writes still work.
    pub async fn open(
        options: EtcdOptions,
        stop: CancellationToken,
    ) -> Result<EtcdStore, StoreError> {
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.deadline.min(Duration::from_secs(5)))
            .with_timeout(options.deadline)
            // A member that vanishes without closing its connections is noticed in seconds.
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(3))
            .with_keep_alive_while_idle(true);
        if let Some((user, password)) = &options.user {
            connect = connect.with_user(user.clone(), password.clone());
        }
        if options.ca.is_some() || options.identity.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &options.ca {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &options.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            connect = connect.with_tls(tls);
        }
        let unreachable = |cause: Option<etcd_client::Error>| StoreError::EtcdConnect {
            at: options.to_string(),
            cause: cause.map(Arc::new),
        };
        let client = tokio::time::timeout(
            options.deadline,
            Client::connect(options.urls(), Some(connect)),
        )
        .await
        .map_err(|_| unreachable(None))?
        .map_err(|e| unreachable(Some(e)))?;
        let (lease, _) = tokio::sync::watch::channel(None);
        let inner = Arc::new(Inner {
            client,
            options,
            changes: broadcast::channel(CHANGE_BUFFER).0,
            watched: tokio::sync::watch::channel(0).0,
            lease,
            unreachable: Mutex::new(None),
            node: Mutex::new(None),
            stalled: AtomicU64::new(0),
            stop: stop.child_token(),
        });
        let revision = inner.check_schema().await?;
        inner.watched.send_replace(revision);
        let lease = inner.grant_lease().await?;
        inner.lease.send_replace(Some(lease));
        tokio::spawn(watch::run(inner.clone(), revision + 1));
        tokio::spawn(lease::keep(inner.clone(), lease));
        let stop = inner.stop.clone().drop_guard();
        Ok(EtcdStore { inner, _stop: stop })
    }

    /// The address it was opened at (without credentials).
    pub fn address(&self) -> String {
        self.inner.options.to_string()
    }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The record exists.
fn exists(key: &[u8]) -> Compare {
    Compare::create_revision(key.to_vec(), CompareOp::Greater, 0)
}

/// The record does not exist.
fn absent(key: &[u8]) -> Compare {
    Compare::create_revision(key.to_vec(), CompareOp::Equal, 0)
}

/// Whether the `i`th answer of a transaction's branch is a read that found its key.
fn found(response: &TxnResponse, i: usize) -> bool {
    matches!(response.op_responses().get(i), Some(TxnOpResponse::Get(got)) if !got.kvs().is_empty())
}

impl Inner {
    /// The key of record `id` of `kind`.
    fn key(&self, kind: &str, id: &str) -> Vec<u8> {
        format!("{}/v1/{kind}/{id}", self.options.prefix).into_bytes()
    }

    /// Where every record of `kind` starts.
    fn kind_prefix(&self, kind: &str) -> Vec<u8> {
        format!("{}/v1/{kind}/", self.options.prefix).into_bytes()
    }

    /// Where every record starts.
    fn data_prefix(&self) -> Vec<u8> {
        format!("{}/v1/", self.options.prefix).into_bytes()
    }

    /// Runs one request to etcd within the deadline, keeping the store's health current.
    async fn call<T>(
        &self,
        op: &'static str,
        request: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        let after = self.options.deadline;
        match tokio::time::timeout(after, request).await {
            Ok(Ok(answer)) => {
                self.reached();
                Ok(answer)
            }
            Ok(Err(etcd_client::Error::GRpcStatus(status)))
                if matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded) =>
            {
                Err(self.stalled(op))
            }
            Ok(Err(e)) => {
                let cause = Arc::new(e);
                if is_unreachable(&cause) {
                    self.unreached(&etcd_why(Some(&cause)));
                    Err(StoreError::EtcdUnreachable {
                        at: self.options.to_string(),
                        cause,
                    })
                } else {
                    Err(StoreError::Etcd { op, cause })
                }
            }
            Err(_) => Err(self.stalled(op)),
        }
    }

    fn stalled(&self, op: &'static str) -> StoreError {
        self.stalled.fetch_add(1, Ordering::Relaxed);
        let after = self.options.deadline;
        tracing::error!(op, ?after, "an etcd operation missed its deadline");
        self.unreached("no answer within the deadline");
        StoreError::Stalled { op, after }
    }

    /// etcd answered: it is reachable (again).
    fn reached(&self) {
        let mut unreachable = self.unreachable.lock().recover();
        if let Some((since, _)) = unreachable.take() {
            tracing::info!(down_s = unix_now() - since, "etcd answers again");
        }
    }

    fn unreached(&self, why: &str) {
        let mut unreachable = self.unreachable.lock().recover();
        match unreachable.as_mut() {
            Some((_, reason)) => *reason = why.to_owned(),
            None => {
                tracing::warn!(etcd = %self.options, error = why, "etcd does not answer; serving from memory");
                *unreachable = Some((unix_now(), why.to_owned()));
            }
        }
    }

    fn health(&self) -> StoreHealth {
        let unreachable = self.unreachable.lock().recover().clone();
        StoreHealth {
            failure: unreachable
                .as_ref()
                .map(|(_, why)| format!("etcd at {} does not answer: {why}", self.options)),
            stalled: self.stalled.load(Ordering::Relaxed),
            unreachable_since: unreachable.map(|(since, _)| since),
        }
    }

    /// Writes the schema version under a new prefix, or checks the one there; the revision
    /// the store is at.
    async fn check_schema(&self) -> Result<i64, StoreError> {
        let key = self.key(crate::keys::META, "schema_version");
        let put = TxnOp::put(key.clone(), SCHEMA, None);
        let (found, revision) = self.create("open", &key, put).await?;
        if let Some(kv) = found.filter(|kv| kv.value() != SCHEMA.as_bytes()) {
            let found = std::str::from_utf8(kv.value())
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            return Err(StoreError::SchemaMismatch {
                path: self.options.to_string().into(),
                found,
                expected: crate::keys::SCHEMA_VERSION,
            });
        }
        Ok(revision)
    }

    /// Writes `put` (of `key`) unless `key` exists: the record found instead (`None`: it was
    /// written), and the revision the store is at. Not waited for by the watch, which may not
    /// run yet (at open).
    async fn create(
        &self,
        op: &'static str,
        key: &[u8],
        put: TxnOp,
    ) -> Result<(Option<KeyValue>, i64), StoreError> {
        let txn = Txn::new()
            .when([absent(key)])
            .and_then([put])
            .or_else([TxnOp::get(key.to_vec(), None)]);
        let mut client = self.client.clone();
        let answer = self.call(op, client.txn(txn)).await?;
        let found = answer.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(got) => got.kvs().first().cloned(),
            _ => None,
        });
        Ok((found, answer.header().map_or(0, |h| h.revision())))
    }

    /// Runs a transaction; when it wrote anything, returns once the watch has announced it.
    async fn write(&self, op: &'static str, txn: Txn) -> Result<TxnResponse, StoreError> {
        let mut client = self.client.clone();
        let answer = self.call(op, client.txn(txn)).await?;
        let wrote = answer.succeeded()
            && answer.op_responses().iter().any(|r| match r {
                TxnOpResponse::Put(_) => true,
                TxnOpResponse::Delete(deleted) => deleted.deleted() > 0,
                _ => false,
            });
        if wrote {
            let revision = answer.header().map_or(0, |h| h.revision());
            let mut watched = self.watched.subscribe();
            let announced = tokio::time::timeout(self.options.deadline, async {
                tokio::select! {
                    seen = watched.wait_for(|seen| *seen >= revision) => seen.is_ok(),
                    // The watch has stopped: nothing will be announced, nobody is waiting.
                    () = self.stop.cancelled() => true,
                }
            })
            .await;
            if announced != Ok(true) {
                // Written all the same: the change reaches subscribers when the watch is back.
                tracing::warn!(
                    op,
                    revision,
                    "a write is not announced yet (the etcd watch is behind)"
                );
            }
        }
        Ok(answer)
    }

    /// The record `id` of `kind`, if any.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        kind: &'static str,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        let mut client = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_ANSWER);
        let answer = self.call(op, client.get(self.key(kind, id), None)).await?;
        answer
            .kvs()
            .first()
            .map(|kv| crate::codec::decode(kind, id.as_bytes(), kv.value()))
            .transpose()
    }

    /// Up to `limit` records of `kind` after the id `after` (from the first when `None`), read
    /// at `revision` (the current one when 0), with their ids; whether more follow, and the
    /// revision read.
    async fn page<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        kind: &'static str,
        after: Option<&[u8]>,
        (limit, revision): (i64, i64),
    ) -> Result<(Vec<(Vec<u8>, T)>, bool, i64), StoreError> {
        let prefix = self.kind_prefix(kind);
        let from = match after {
            Some(id) => [prefix.as_slice(), id, b"\0"].concat(),
            None => prefix.clone(),
        };
        let mut options = GetOptions::new()
            .with_range(prefix_end(&prefix))
            .with_limit(limit);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let mut client = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_ANSWER);
        let mut answer = self.call(op, client.get(from, Some(options))).await?;
        let read_at = answer.header().map_or(0, |h| h.revision());
        let more = answer.more();
        let records = answer
            .take_kvs()
            .into_iter()
            .map(|kv| {
                let id = kv.key()[prefix.len()..].to_vec();
                let record = crate::codec::decode(kind, &id, kv.value())?;
                Ok((id, record))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((records, more, read_at))
    }

    /// Every record of `kind` in id order, read at one revision, with their ids and that
    /// revision.
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        kind: &'static str,
    ) -> Result<(Vec<(Vec<u8>, T)>, i64), StoreError> {
        let mut all = Vec::new();
        let mut revision = 0;
        loop {
            let after = all.last().map(|(id, _): &(Vec<u8>, T)| id.clone());
            let (page, more, read_at) = self
                .page(op, kind, after.as_deref(), (PAGE, revision))
                .await?;
            revision = read_at;
            all.extend(page);
            if !more {
                return Ok((all, revision));
            }
        }
    }
}

/// Whether `e` means etcd could not be reached (rather than that it refused the request).
fn is_unreachable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            matches!(status.code(), Code::Unavailable | Code::Unknown)
                && !status.message().starts_with("etcdserver:")
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}
