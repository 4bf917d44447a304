//! The store's error types: what was wrong with the input, and what went wrong underneath.
//! A failure underneath keeps the operation and the typed error that caused it (`cause`), and
//! its message says both, for operators who read only the message (API answers, logs). The
//! cause is not also returned by `Error::source`: a printed chain (`{:#}`) would say it twice,
//! and etcd's own message dumps gRPC metadata.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Input rejected at the boundary. The message is meant for the operator as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// A domain name that cannot be served.
    #[error("invalid domain name {input:?}: {reason}")]
    Domain {
        /// What was given.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// An upstream address that cannot be connected to as written.
    #[error("invalid upstream address {input:?}: {reason}")]
    Upstream {
        /// What was given.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// A certificate chain or private key that cannot be served for the site.
    #[error("invalid certificate: {0}")]
    Certificate(String),
    /// An app definition that cannot run.
    #[error("{0}")]
    App(String),
    /// A site feature that cannot be served as given.
    #[error("{0}")]
    Feature(String),
    /// Several upstreams, or their checks, that cannot be served as given.
    #[error("{0}")]
    Balancing(String),
    /// A DNS zone that cannot be updated as given.
    #[error("{0}")]
    DnsZone(String),
    /// A store location that cannot be opened as given.
    #[error("{0}")]
    Store(String),
}

/// Everything a store operation can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The caller's input was refused; nothing was changed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The record to create exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The record an operation needs does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The record is still used by others.
    #[error("{0}")]
    InUse(String),
    /// Another process holds the database.
    #[error("the store at {} is in use by another process (is `porter serve` running with this data dir?)", .0.display())]
    Locked(PathBuf),
    /// The database was written by another version of Porter.
    #[error("the store at {} has schema version {found}, this Porter needs {expected}", .path.display())]
    SchemaMismatch {
        /// The database location.
        path: PathBuf,
        /// The version found in it.
        found: u32,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// A record could not be decoded: the database is damaged or foreign.
    #[error("corrupt record {key:?} in {tree}: {reason}")]
    Corrupt {
        /// The tree holding the record.
        tree: &'static str,
        /// The record's key.
        key: String,
        /// What the decoder said.
        reason: String,
    },
    /// The operation did not finish within the store's deadline (a disk or engine that stopped
    /// answering). A write may still be made later.
    #[error("the store did not finish {op} within {after:?} (is its disk stalled?)")]
    Stalled {
        /// The operation.
        op: &'static str,
        /// The deadline it missed.
        after: Duration,
    },
    /// sled failed an operation (an I/O error underneath, a damaged log): writes reopen the
    /// database once the disk takes them again.
    #[error("storage engine ({op}): {cause}")]
    Sled {
        /// What sled was doing.
        op: &'static str,
        /// sled's error.
        cause: sled::Error,
    },
    /// A file-system call of the embedded store failed.
    #[error("cannot {op} {}: {cause}", .path.display())]
    Io {
        /// What was tried, completed by the path (as "read the free space of").
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        cause: Arc<std::io::Error>,
    },
    /// The embedded store's disk has less free space than a write needs: the write is refused
    /// before sled sees it, and nothing changed.
    #[error("the disk of {} is full ({free_kib} KiB free; the store keeps {reserve_kib} KiB): write refused, nothing changed; writes resume by themselves once there is room", .path.display())]
    DiskFull {
        /// The store's directory.
        path: PathBuf,
        /// Free space left, in KiB.
        free_kib: u64,
        /// Free space the store keeps, in KiB.
        reserve_kib: u64,
    },
    /// A write failed before, and the disk still refuses the write that would reopen the
    /// database.
    #[error("an earlier write failed ({earlier}) and the disk still refuses writes: {cause}")]
    StillFailing {
        /// The earlier failure, as the store's health reports it.
        earlier: String,
        /// Why the disk refused the trial write.
        cause: Arc<std::io::Error>,
    },
    /// The embedded store's database failed and could not be closed: only a new process
    /// reopens it.
    #[error("the store's database failed and cannot be reopened while this process runs: restart Porter")]
    Wedged,
    /// The embedded store is being reopened after a failed write.
    #[error("the store at {} is being reopened after a failed write", .0.display())]
    Reopening(PathBuf),
    /// The embedded store was let go of for a successor (see `SledStore::release`).
    #[error("the store at {} was handed over to a new server", .0.display())]
    HandedOver(PathBuf),
    /// The embedded store's writer thread is gone (the store is being dropped).
    #[error("the store's writer has stopped")]
    WriterStopped,
    /// A write panicked; the store takes the next ones.
    #[error("{op} panicked")]
    Panicked {
        /// The operation.
        op: &'static str,
    },
    /// A task doing the operation did not finish (it panicked, or the runtime is shutting
    /// down).
    #[error("{op}: {cause}")]
    Task {
        /// The operation.
        op: &'static str,
        /// What the runtime said.
        cause: Arc<tokio::task::JoinError>,
    },
    /// No connection to etcd could be made when the store was opened.
    #[error("cannot reach etcd at {at}: {}", etcd_why(.cause.as_deref()))]
    EtcdConnect {
        /// The store's address (never its credentials).
        at: String,
        /// The client's error; `None` when nothing answered within the deadline.
        cause: Option<Arc<etcd_client::Error>>,
    },
    /// etcd was reachable once and is not now.
    #[error("etcd at {at} does not answer: {}", etcd_why(Some(.cause)))]
    EtcdUnreachable {
        /// The store's address (never its credentials).
        at: String,
        /// The client's error.
        cause: Arc<etcd_client::Error>,
    },
    /// etcd refused a request.
    #[error("etcd ({op}): {}", etcd_why(Some(.cause)))]
    Etcd {
        /// The operation.
        op: &'static str,
        /// The client's error.
        cause: Arc<etcd_client::Error>,
    },
    /// The node has no lease with etcd (it did not answer for a whole time to live): locks and
    /// fleet records wait until it has one again.
    #[error("no lease with etcd at {at} (it does not answer): locks wait until it does")]
    NoLease {
        /// The store's address (never its credentials).
        at: String,
    },
    /// The store's background work was stopped (its cancellation token, or the store being
    /// dropped): it takes no more locks and records no more nodes.
    #[error("the store is stopping: no more locks are taken")]
    Stopped,
    /// Other writers changed the record every time this one tried; nothing was changed.
    #[error("{what} kept changing: try again")]
    KeptChanging {
        /// What kept changing.
        what: String,
    },
}

/// What an etcd error says, without the transport's metadata (a gRPC status's `Display`
/// prints every header).
pub(crate) fn etcd_why(e: Option<&etcd_client::Error>) -> String {
    match e {
        None => "no answer within the deadline".to_owned(),
        Some(etcd_client::Error::GRpcStatus(status)) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        Some(other) => other.to_string(),
    }
}
