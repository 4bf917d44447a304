//! The open database: one sled tree per kind of record, and the typed reads over them.

use crate::codec::{decode, domain_key};
use crate::error::StoreError;
use crate::{keys, DomainName, Http01Challenge};
use std::path::Path;
use std::time::{Duration, Instant};

/// sled's page cache (its default is 1 GiB). The hot path never reads the store, so a small
/// cache only makes management operations and starts a little slower.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// One opened database and its trees. Held by the writer thread and, for the length of one
/// read, by a reader; dropping the last holder closes the database.
pub(super) struct Trees {
    pub(super) db: sled::Db,
    pub(super) meta: sled::Tree,
    pub(super) sites: sled::Tree,
    pub(super) certs: sled::Tree,
    pub(super) accounts: sled::Tree,
    pub(super) acme: sled::Tree,
    pub(super) requests: sled::Tree,
    pub(super) http01: sled::Tree,
    pub(super) tls_alpn: sled::Tree,
    pub(super) ocsp: sled::Tree,
    pub(super) apps: sled::Tree,
    pub(super) dns_zones: sled::Tree,
    pub(super) on_demand: sled::Tree,
    pub(super) purges: sled::Tree,
}

impl Trees {
    /// [`Trees::open`], waiting up to `within` while another holder (a process handing over,
    /// or this one's earlier database still closing) keeps the lock.
    pub(super) fn open_waiting(path: &Path, within: Duration) -> Result<Trees, StoreError> {
        let started = Instant::now();
        loop {
            match Trees::open(path) {
                Err(StoreError::Locked(_)) if started.elapsed() < within => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                result => return result,
            }
        }
    }

    /// Opens (or creates) the database at `path`, checking its schema version.
    pub(super) fn open(path: &Path) -> Result<Trees, StoreError> {
        let db = open_db(path)?;
        let tree = |name: &str| db.open_tree(name).map_err(sled_failed("open"));
        let meta = tree(keys::META)?;
        check_schema(&db, &meta, path)?;
        Ok(Trees {
            meta,
            sites: tree(keys::SITES)?,
            certs: tree(keys::CERTS)?,
            accounts: tree(keys::ACME_ACCOUNTS)?,
            acme: tree(keys::ACME_STATES)?,
            requests: tree(keys::ACME_REQUESTS)?,
            http01: tree(keys::HTTP01)?,
            tls_alpn: tree(keys::TLS_ALPN01)?,
            ocsp: tree(keys::OCSP)?,
            apps: tree(keys::APPS)?,
            dns_zones: tree(keys::DNS_ZONES)?,
            on_demand: tree(keys::ON_DEMAND_RULES)?,
            purges: tree(keys::PURGES)?,
            db,
        })
    }

    /// The HTTP-01 tokens of `domain` (a small tree: one entry per challenge in flight).
    pub(super) fn http01_tokens(&self, domain: &DomainName) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut tokens = Vec::new();
        for entry in self.http01.iter() {
            let (key, raw) = entry.map_err(sled_failed("read"))?;
            let challenge: Http01Challenge = decode(keys::HTTP01, &key, &raw)?;
            if &challenge.domain == domain {
                tokens.push(key.to_vec());
            }
        }
        Ok(tokens)
    }
}

/// Opens the sled database at `path`; another holder of its lock is [`StoreError::Locked`].
fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_BYTES)
        // No background flusher: the writer thread is the only one that ever flushes.
        // Flushes racing from several threads are where sled 0.34 deadlocks (sled#1412).
        .flush_every_ms(None)
        .open()
        .map_err(|e| match e {
            sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                StoreError::Locked(path.to_path_buf())
            }
            cause => StoreError::Sled { op: "open", cause },
        })
}

/// Checks the schema version in `meta` against this build's, writing it into a new database
/// (one without a version yet).
fn check_schema(db: &sled::Db, meta: &sled::Tree, path: &Path) -> Result<(), StoreError> {
    let expected = keys::SCHEMA_VERSION;
    match meta.get(keys::SCHEMA_KEY).map_err(sled_failed("open"))? {
        None => {
            meta.insert(keys::SCHEMA_KEY, &expected.to_be_bytes())
                .map_err(sled_failed("open"))?;
            db.flush().map_err(sled_failed("open"))?;
            Ok(())
        }
        Some(raw) => {
            let found = <[u8; 4]>::try_from(raw.as_ref())
                .map(u32::from_be_bytes)
                .unwrap_or(0);
            if found != expected {
                return Err(StoreError::SchemaMismatch {
                    path: path.to_path_buf(),
                    found,
                    expected,
                });
            }
            Ok(())
        }
    }
}

/// The error of a failed sled call made to `op` ("open", "read", "write").
pub(super) fn sled_failed(op: &'static str) -> impl Fn(sled::Error) -> StoreError {
    move |cause| StoreError::Sled { op, cause }
}

pub(super) fn get<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    name: &'static str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    tree.get(key)
        .map_err(sled_failed("read"))?
        .map(|raw| decode(name, key.as_bytes(), &raw))
        .transpose()
}

pub(super) fn decode_all<T: serde::de::DeserializeOwned>(
    entries: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    name: &'static str,
) -> Result<Vec<T>, StoreError> {
    entries
        .map(|entry| {
            let (key, raw) = entry.map_err(sled_failed("read"))?;
            decode(name, &key, &raw)
        })
        .collect()
}

/// Every record of a tree keyed by domain, with its domain.
pub(super) fn list_by_domain<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    name: &'static str,
) -> Result<Vec<(DomainName, T)>, StoreError> {
    tree.iter()
        .map(|entry| {
            let (key, raw) = entry.map_err(sled_failed("read"))?;
            Ok((domain_key(name, &key)?, decode(name, &key, &raw)?))
        })
        .collect()
}
