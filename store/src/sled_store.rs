//! The embedded backend on sled: one tree per kind, JSON values, multi-tree transactions, and a
//! flush before every write returns so that a crash loses nothing that was acknowledged.

use crate::error::StoreError;
use crate::keys;
use crate::{
    AcmeAccount, AcmeState, CertRecord, Change, DomainName, Http01Challenge, OcspRecord, Site,
    Store, TicketKeys, TlsAlpnChallenge,
};
use crate::{App, AppId, Target};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use tokio::sync::broadcast;

/// sled's page cache (its default is 1 GiB). The hot path never reads the store, so a small
/// cache only makes management operations and starts a little slower.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Capacity of the change channel; a subscriber further behind re-reads everything.
const CHANGE_BUFFER: usize = 4096;

/// The sled backend. One process at a time may open a database.
pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    sites: sled::Tree,
    certs: sled::Tree,
    accounts: sled::Tree,
    acme: sled::Tree,
    http01: sled::Tree,
    tls_alpn: sled::Tree,
    ocsp: sled::Tree,
    apps: sled::Tree,
    changes: broadcast::Sender<Change>,
}

impl SledStore {
    /// Opens (or creates) the database in `dir`, checking its schema version.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.to_path_buf();
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(CACHE_BYTES)
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
            meta,
            sites: db.open_tree(keys::SITES).map_err(backend)?,
            certs: db.open_tree(keys::CERTS).map_err(backend)?,
            accounts: db.open_tree(keys::ACME_ACCOUNTS).map_err(backend)?,
            acme: db.open_tree(keys::ACME_STATES).map_err(backend)?,
            http01: db.open_tree(keys::HTTP01).map_err(backend)?,
            tls_alpn: db.open_tree(keys::TLS_ALPN01).map_err(backend)?,
            ocsp: db.open_tree(keys::OCSP).map_err(backend)?,
            apps: db.open_tree(keys::APPS).map_err(backend)?,
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

impl SledStore {
    /// Adds (`replace` false) or replaces (`replace` true) a site, checking that its app exists.
    async fn write_site(&self, site: Site, replace: bool) -> Result<(), StoreError> {
        let key = site.domain.as_str();
        let value = encode(&site);
        let app = match &site.target {
            Target::App(id) => Some(id.as_str()),
            Target::Upstream(_) => None,
        };
        (&self.sites, &self.apps)
            .transaction(|(sites, apps)| {
                match (sites.get(key)?.is_some(), replace) {
                    (true, false) => {
                        return Err(ConflictableTransactionError::Abort(
                            StoreError::AlreadyExists(format!("site {key}")),
                        ))
                    }
                    (false, true) => return Err(not_found("site", key)),
                    _ => {}
                }
                if let Some(app) = app {
                    if apps.get(app)?.is_none() {
                        return Err(not_found(
                            "app",
                            &format!("{app} (add the app before its sites)"),
                        ));
                    }
                }
                sites.insert(key, value.as_slice())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.commit([Change::Site(site.domain)]).await
    }

    /// The HTTP-01 tokens of `domain` (a small tree: one entry per challenge in flight).
    fn http01_tokens(&self, domain: &DomainName) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut tokens = Vec::new();
        for entry in self.http01.iter() {
            let (key, raw) = entry.map_err(backend)?;
            let challenge: Http01Challenge = decode(keys::HTTP01, &key, &raw)?;
            if &challenge.domain == domain {
                tokens.push(key.to_vec());
            }
        }
        Ok(tokens)
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
    key: &str,
) -> Result<Option<T>, StoreError> {
    tree.get(key)
        .map_err(backend)?
        .map(|raw| decode(name, key.as_bytes(), &raw))
        .transpose()
}

fn not_found(what: &str, key: &str) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(StoreError::NotFound(format!("{what} {key}")))
}

/// Runs a read of whole trees on a blocking thread: decoding 100,000 records takes long enough
/// to stall the async runtime, and with it the handshakes it serves.
async fn blocking<R: Send + 'static>(
    read: impl FnOnce() -> Result<R, StoreError> + Send + 'static,
) -> Result<R, StoreError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| StoreError::Backend(format!("store read task: {e}")))?
}

async fn list_blocking<T: serde::de::DeserializeOwned + Send + 'static>(
    tree: &sled::Tree,
    name: &'static str,
) -> Result<Vec<T>, StoreError> {
    let tree = tree.clone();
    blocking(move || decode_all(tree.iter(), name)).await
}

/// Every record of a tree keyed by domain, with its domain.
async fn list_by_domain_blocking<T: serde::de::DeserializeOwned + Send + 'static>(
    tree: &sled::Tree,
    name: &'static str,
) -> Result<Vec<(DomainName, T)>, StoreError> {
    let tree = tree.clone();
    blocking(move || {
        tree.iter()
            .map(|entry| {
                let (key, raw) = entry.map_err(backend)?;
                let domain = DomainName::parse(&String::from_utf8_lossy(&key)).map_err(|e| {
                    StoreError::Corrupt {
                        tree: name,
                        key: String::from_utf8_lossy(&key).into_owned(),
                        reason: e.to_string(),
                    }
                })?;
                Ok((domain, decode(name, &key, &raw)?))
            })
            .collect()
    })
    .await
}

fn decode_all<T: serde::de::DeserializeOwned>(
    entries: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    name: &'static str,
) -> Result<Vec<T>, StoreError> {
    entries
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
        get(&self.sites, keys::SITES, domain.as_str())
    }

    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        list_blocking(&self.sites, keys::SITES).await
    }

    async fn add_site(&self, site: Site) -> Result<(), StoreError> {
        self.write_site(site, false).await
    }

    async fn update_site(&self, site: Site) -> Result<(), StoreError> {
        self.write_site(site, true).await
    }

    async fn remove_site(&self, domain: &DomainName) -> Result<(), StoreError> {
        let key = domain.as_str();
        let tokens = self.http01_tokens(domain)?;
        let had_cert = (
            &self.sites,
            &self.certs,
            &self.acme,
            &self.http01,
            &self.tls_alpn,
            &self.ocsp,
        )
            .transaction(|(sites, certs, acme, http01, tls_alpn, ocsp)| {
                if sites.remove(key)?.is_none() {
                    return Err(not_found("site", key));
                }
                acme.remove(key)?;
                ocsp.remove(key)?;
                tls_alpn.remove(key)?;
                for token in &tokens {
                    http01.remove(token.as_slice())?;
                }
                Ok(certs.remove(key)?.is_some())
            })
            .map_err(tx_error)?;
        let cert_change = had_cert.then(|| Change::Cert(domain.clone()));
        self.commit(std::iter::once(Change::Site(domain.clone())).chain(cert_change))
            .await
    }

    async fn cert(&self, domain: &DomainName) -> Result<Option<CertRecord>, StoreError> {
        get(&self.certs, keys::CERTS, domain.as_str())
    }

    async fn certs(&self) -> Result<Vec<CertRecord>, StoreError> {
        list_blocking(&self.certs, keys::CERTS).await
    }

    async fn certs_after(
        &self,
        after: Option<&DomainName>,
        limit: usize,
    ) -> Result<Vec<CertRecord>, StoreError> {
        let tree = self.certs.clone();
        let after = after.map(|d| d.as_str().as_bytes().to_vec());
        blocking(move || {
            let from = match &after {
                Some(key) => Bound::Excluded(key.as_slice()),
                None => Bound::Unbounded,
            };
            decode_all(
                tree.range::<&[u8], _>((from, Bound::Unbounded)).take(limit),
                keys::CERTS,
            )
        })
        .await
    }

    async fn put_cert(&self, cert: CertRecord) -> Result<(), StoreError> {
        let key = cert.domain.as_str();
        let value = encode(&cert);
        (&self.sites, &self.certs)
            .transaction(|(sites, certs)| {
                if sites.get(key)?.is_none() {
                    return Err(not_found(
                        "site",
                        &format!("{key} (add the site before its certificate)"),
                    ));
                }
                certs.insert(key, value.as_slice())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.commit([Change::Cert(cert.domain)]).await
    }

    async fn account(&self, directory: &str) -> Result<Option<AcmeAccount>, StoreError> {
        get(&self.accounts, keys::ACME_ACCOUNTS, directory)
    }

    async fn put_account(&self, account: AcmeAccount) -> Result<(), StoreError> {
        self.accounts
            .insert(account.directory.as_bytes(), encode(&account))
            .map_err(backend)?;
        self.commit([]).await
    }

    async fn acme_state(&self, domain: &DomainName) -> Result<Option<AcmeState>, StoreError> {
        get(&self.acme, keys::ACME_STATES, domain.as_str())
    }

    async fn acme_states(&self) -> Result<Vec<(DomainName, AcmeState)>, StoreError> {
        list_by_domain_blocking(&self.acme, keys::ACME_STATES).await
    }

    async fn put_acme_state(
        &self,
        domain: &DomainName,
        state: AcmeState,
    ) -> Result<(), StoreError> {
        let key = domain.as_str();
        let value = encode(&state);
        (&self.sites, &self.acme)
            .transaction(|(sites, acme)| {
                if sites.get(key)?.is_none() {
                    return Err(not_found("site", key));
                }
                acme.insert(key, value.as_slice())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.commit([Change::Acme(domain.clone())]).await
    }

    async fn put_issued(&self, cert: CertRecord, state: AcmeState) -> Result<(), StoreError> {
        let key = cert.domain.as_str();
        let (cert_value, state_value) = (encode(&cert), encode(&state));
        (&self.sites, &self.certs, &self.acme)
            .transaction(|(sites, certs, acme)| {
                if sites.get(key)?.is_none() {
                    return Err(not_found("site", key));
                }
                certs.insert(key, cert_value.as_slice())?;
                acme.insert(key, state_value.as_slice())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.commit([Change::Cert(cert.domain.clone()), Change::Acme(cert.domain)])
            .await
    }

    async fn put_http01(&self, challenge: Http01Challenge) -> Result<(), StoreError> {
        self.http01
            .insert(challenge.token.as_bytes(), encode(&challenge))
            .map_err(backend)?;
        self.commit([]).await
    }

    async fn http01(&self, token: &str) -> Result<Option<Http01Challenge>, StoreError> {
        get(&self.http01, keys::HTTP01, token)
    }

    async fn put_tls_alpn(&self, challenge: TlsAlpnChallenge) -> Result<(), StoreError> {
        self.tls_alpn
            .insert(challenge.domain.as_str(), encode(&challenge))
            .map_err(backend)?;
        self.commit([]).await
    }

    async fn tls_alpn(&self, domain: &DomainName) -> Result<Option<TlsAlpnChallenge>, StoreError> {
        get(&self.tls_alpn, keys::TLS_ALPN01, domain.as_str())
    }

    async fn remove_challenges(&self, domain: &DomainName) -> Result<(), StoreError> {
        let tokens = self.http01_tokens(domain)?;
        (&self.http01, &self.tls_alpn)
            .transaction(|(http01, tls_alpn)| {
                tls_alpn.remove(domain.as_str())?;
                for token in &tokens {
                    http01.remove(token.as_slice())?;
                }
                Ok(())
            })
            .map_err(tx_error)?;
        self.commit([]).await
    }

    async fn app(&self, id: &AppId) -> Result<Option<App>, StoreError> {
        get(&self.apps, keys::APPS, id.as_str())
    }

    async fn apps(&self) -> Result<Vec<App>, StoreError> {
        list_blocking(&self.apps, keys::APPS).await
    }

    async fn add_app(&self, app: App) -> Result<(), StoreError> {
        app.validate()?;
        self.apps
            .compare_and_swap(app.id.as_str(), None::<&[u8]>, Some(encode(&app)))
            .map_err(backend)?
            .map_err(|_| StoreError::AlreadyExists(format!("app {}", app.id)))?;
        self.commit([Change::App(app.id)]).await
    }

    async fn update_app(&self, app: App) -> Result<(), StoreError> {
        app.validate()?;
        let key = app.id.as_str();
        let value = encode(&app);
        self.apps
            .transaction(|apps| {
                if apps.get(key)?.is_none() {
                    return Err(not_found("app", key));
                }
                apps.insert(key, value.as_slice())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.commit([Change::App(app.id)]).await
    }

    async fn remove_app(&self, id: &AppId) -> Result<(), StoreError> {
        let users: Vec<String> = decode_all::<Site>(self.sites.iter(), keys::SITES)?
            .into_iter()
            .filter(|s| s.target == Target::App(id.clone()))
            .map(|s| s.domain.to_string())
            .collect();
        if !users.is_empty() {
            return Err(StoreError::InUse(format!(
                "app {id} is used by {}: remove or move those sites first",
                users.join(", ")
            )));
        }
        if self.apps.remove(id.as_str()).map_err(backend)?.is_none() {
            return Err(StoreError::NotFound(format!("app {id}")));
        }
        self.commit([Change::App(id.clone())]).await
    }

    async fn ocsp(&self, domain: &DomainName) -> Result<Option<OcspRecord>, StoreError> {
        get(&self.ocsp, keys::OCSP, domain.as_str())
    }

    async fn ocsp_records(&self) -> Result<Vec<(DomainName, OcspRecord)>, StoreError> {
        list_by_domain_blocking(&self.ocsp, keys::OCSP).await
    }

    async fn put_ocsp(&self, domain: &DomainName, record: OcspRecord) -> Result<(), StoreError> {
        let key = domain.as_str();
        let value = encode(&record);
        (&self.sites, &self.ocsp)
            .transaction(|(sites, ocsp)| {
                if sites.get(key)?.is_none() {
                    return Err(not_found("site", key));
                }
                ocsp.insert(key, value.as_slice())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.commit([Change::Ocsp(domain.clone())]).await
    }

    async fn ticket_keys(&self) -> Result<Option<TicketKeys>, StoreError> {
        get(&self.meta, keys::META, keys::TICKET_KEYS)
    }

    async fn put_ticket_keys(&self, ticket_keys: TicketKeys) -> Result<(), StoreError> {
        self.meta
            .insert(keys::TICKET_KEYS, encode(&ticket_keys))
            .map_err(backend)?;
        self.commit([Change::TicketKeys]).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}
