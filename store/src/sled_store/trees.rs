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
        let db = sled::Config::new()
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
            })?;
        let meta = db.open_tree(keys::META).map_err(sled_failed("open"))?;
        let expected = keys::SCHEMA_VERSION;
        match meta.get(keys::SCHEMA_KEY).map_err(sled_failed("open"))? {
            None => {
                meta.insert(keys::SCHEMA_KEY, &expected.to_be_bytes())
                    .map_err(sled_failed("open"))?;
                db.flush().map_err(sled_failed("open"))?;
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
            }
        }
        Ok(Trees {
            meta,
            sites: db.open_tree(keys::SITES).map_err(sled_failed("open"))?,
            certs: db.open_tree(keys::CERTS).map_err(sled_failed("open"))?,
            accounts: db
                .open_tree(keys::ACME_ACCOUNTS)
                .map_err(sled_failed("open"))?,
            acme: db
                .open_tree(keys::ACME_STATES)
                .map_err(sled_failed("open"))?,
            requests: db
                .open_tree(keys::ACME_REQUESTS)
                .map_err(sled_failed("open"))?,
            http01: db.open_tree(keys::HTTP01).map_err(sled_failed("open"))?,
            tls_alpn: db
                .open_tree(keys::TLS_ALPN01)
                .map_err(sled_failed("open"))?,
            ocsp: db.open_tree(keys::OCSP).map_err(sled_failed("open"))?,
            apps: db.open_tree(keys::APPS).map_err(sled_failed("open"))?,
            dns_zones: db.open_tree(keys::DNS_ZONES).map_err(sled_failed("open"))?,
            on_demand: db
                .open_tree(keys::ON_DEMAND_RULES)
                .map_err(sled_failed("open"))?,
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
