//! The store's error types: what was wrong with the input, and what went wrong underneath.

use std::path::PathBuf;
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
    /// The storage engine failed (disk full, I/O error, ...).
    #[error("storage engine: {0}")]
    Backend(String),
}
