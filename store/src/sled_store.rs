//! The embedded backend on sled: one tree per kind, JSON values, multi-tree transactions, and a
//! flush before every write returns so that a crash loses nothing that was acknowledged.

use crate::error::StoreError;
use crate::keys;
use crate::{CertRecord, Change, DomainName, Site, Store};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::path::{Path, PathBuf};
use tokio::sync::broadcast;

/// Capacity of the change channel; a subscriber further behind re-reads everything.
const CHANGE_BUFFER: usize = 4096;

/// The sled backend. One process at a time may open a database.
pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    sites: sled::Tree,
    certs: sled::Tree,
    changes: broadcast::Sender<Change>,
}

impl SledStore {
    /// Opens (or creates) the database in `dir`, checking its schema version.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.to_path_buf();
        let db = sled::Config::new()
            .path(&path)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::Locked(path.clone())
                }
                other => backend(other),
            })?;
        let meta = db.open_tree(keys::META).map_err(backend)?;
        let expected = keys::SCHEMA_VERSION;
        match meta.get(keys::SCHEMA_KEY).map_err(backend)? {
            None => {
                meta.insert(keys::SCHEMA_KEY, &expected.to_be_bytes())
                    .map_err(backend)?;
                db.flush().map_err(backend)?;
            }
            Some(raw) => {
                let found = <[u8; 4]>::try_from(raw.as_ref())
                    .map(u32::from_be_bytes)
                    .unwrap_or(0);
                if found != expected {
                    return Err(StoreError::SchemaMismatch {
                        path,
                        found,
                        expected,
                    });
                }
            }
        }
        Ok(SledStore {
            sites: db.open_tree(keys::SITES).map_err(backend)?,
            certs: db.open_tree(keys::CERTS).map_err(backend)?,
            changes: broadcast::channel(CHANGE_BUFFER).0,
            path,
            db,
        })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn commit(&self, changes: impl IntoIterator<Item = Change>) -> Result<(), StoreError> {
        self.db.flush_async().await.map_err(backend)?;
        for change in changes {
            // No subscriber is fine: nobody needs telling.
            let _ = self.changes.send(change);
        }
        Ok(())
    }
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records always serialise")
}

fn decode<T: serde::de::DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    raw: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn get<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    name: &'static str,
    key: &DomainName,
) -> Result<Option<T>, StoreError> {
    tree.get(key.as_str())
        .map_err(backend)?
        .map(|raw| decode(name, key.as_str().as_bytes(), &raw))
        .transpose()
}

fn list<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    name: &'static str,
) -> Result<Vec<T>, StoreError> {
    tree.iter()
        .map(|entry| {
            let (key, raw) = entry.map_err(backend)?;
            decode(name, &key, &raw)
        })
        .collect()
}

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

#[async_trait::async_trait]
impl Store for SledStore {
    async fn site(&self, domain: &DomainName) -> Result<Option<Site>, StoreError> {
        get(&self.sites, keys::SITES, domain)
    }

    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        list(&self.sites, keys::SITES)
    }

    async fn add_site(&self, site: Site) -> Result<(), StoreError> {
        let key = site.domain.as_str();
        self.sites
            .compare_and_swap(key, None::<&[u8]>, Some(encode(&site)))
            .map_err(backend)?
            .map_err(|_| StoreError::AlreadyExists(format!("site {key}")))?;
        self.commit([Change::Site(site.domain)]).await
    }

    async fn remove_site(&self, domain: &DomainName) -> Result<(), StoreError> {
        let key = domain.as_str();
        let had_cert = (&self.sites, &self.certs)
            .transaction(|(sites, certs)| {
                if sites.remove(key)?.is_none() {
                    return Err(ConflictableTransactionError::Abort(StoreError::NotFound(
                        format!("site {key}"),
                    )));
                }
                Ok(certs.remove(key)?.is_some())
            })
            .map_err(tx_error)?;
        let cert_change = had_cert.then(|| Change::Cert(domain.clone()));
        self.commit(std::iter::once(Change::Site(domain.clone())).chain(cert_change))
            .await
    }

    async fn cert(&self, domain: &DomainName) -> Result<Option<CertRecord>, StoreError> {
        get(&self.certs, keys::CERTS, domain)
    }

    async fn certs(&self) -> Result<Vec<CertRecord>, StoreError> {
        list(&self.certs, keys::CERTS)
    }

    async fn put_cert(&self, cert: CertRecord) -> Result<(), StoreError> {
        let key = cert.domain.as_str();
        let value = encode(&cert);
        (&self.sites, &self.certs)
            .transaction(|(sites, certs)| {
                if sites.get(key)?.is_none() {
                    return Err(ConflictableTransactionError::Abort(StoreError::NotFound(
                        format!("site {key} (add the site before its certificate)"),
                    )));
                }
                certs.insert(key, value.as_slice())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.commit([Change::Cert(cert.domain)]).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}
