//! The embedded backend on sled: one tree per kind, JSON values, multi-tree transactions.
//! What each operation does is here; how operations run (one writer thread, bounded readers,
//! a deadline on each) is in `engine`.

mod engine;
mod shared;
mod trees;
mod writer;

pub use engine::{SledOptions, SledStore};

use crate::codec::encode;
use crate::error::StoreError;
use crate::keys;
use crate::{
    AcmeAccount, AcmeRequest, AcmeState, App, AppId, CertRecord, Change, DnsZone, DomainName,
    Http01Challenge, OcspRecord, Site, Store, StoreHealth, Target, TicketKeys, TlsAlpnChallenge,
};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::broadcast;
use trees::{decode_all, get, list_by_domain, sled_failed, Trees};

fn not_found(what: &str, key: &str) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(StoreError::NotFound(format!("{what} {key}")))
}

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(cause) => StoreError::Sled { op: "write", cause },
    }
}

/// Adds (`replace` false) or replaces (`replace` true) a site, checking that its app exists.
fn write_site(t: &Trees, site: Site, replace: bool) -> Result<Vec<Change>, StoreError> {
    let key = site.domain.as_str();
    let value = encode(&site);
    let app = match &site.target {
        Target::App(id) => Some(id.as_str()),
        Target::Upstream(_) => None,
    };
    (&t.sites, &t.apps)
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
    Ok(vec![Change::Site(site.domain)])
}

/// Stores `value` under `key` in the per-site tree `tree`, if the site `key` exists.
fn put_for_site(t: &Trees, tree: &sled::Tree, key: &str, value: &[u8]) -> Result<(), StoreError> {
    (&t.sites, tree)
        .transaction(|(sites, tree)| {
            if sites.get(key)?.is_none() {
                return Err(not_found("site", key));
            }
            tree.insert(key, value)?;
            Ok(())
        })
        .map_err(tx_error)
}

#[async_trait::async_trait]
impl Store for SledStore {
    async fn site(&self, domain: &DomainName) -> Result<Option<Site>, StoreError> {
        let key = domain.to_string();
        self.read("site", move |t| get(&t.sites, keys::SITES, &key))
            .await
    }

    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        self.read("sites", |t| decode_all(t.sites.iter(), keys::SITES))
            .await
    }

    async fn add_site(&self, site: Site) -> Result<(), StoreError> {
        site.validate()?;
        self.write("add_site", move |t| write_site(t, site, false))
            .await
    }

    async fn update_site(&self, site: Site) -> Result<(), StoreError> {
        site.validate()?;
        self.write("update_site", move |t| write_site(t, site, true))
            .await
    }

    async fn remove_site(&self, domain: &DomainName) -> Result<(), StoreError> {
        let domain = domain.clone();
        self.write("remove_site", move |t| {
            let key = domain.as_str();
            let tokens = t.http01_tokens(&domain)?;
            let trees = (
                &t.sites,
                &t.certs,
                &t.acme,
                &t.requests,
                &t.http01,
                &t.tls_alpn,
                &t.ocsp,
            );
            let (had_cert, had_alpn) = trees
                .transaction(|(sites, certs, acme, requests, http01, tls_alpn, ocsp)| {
                    if sites.remove(key)?.is_none() {
                        return Err(not_found("site", key));
                    }
                    acme.remove(key)?;
                    requests.remove(key)?;
                    ocsp.remove(key)?;
                    let had_alpn = tls_alpn.remove(key)?.is_some();
                    for token in &tokens {
                        http01.remove(token.as_slice())?;
                    }
                    Ok((certs.remove(key)?.is_some(), had_alpn))
                })
                .map_err(tx_error)?;
            let mut changes = vec![Change::Site(domain.clone())];
            if had_cert {
                changes.push(Change::Cert(domain.clone()));
            }
            if had_alpn || !tokens.is_empty() {
                changes.push(Change::Challenges(domain));
            }
            Ok(changes)
        })
        .await
    }

    async fn cert(&self, domain: &DomainName) -> Result<Option<CertRecord>, StoreError> {
        let key = domain.to_string();
        self.read("cert", move |t| get(&t.certs, keys::CERTS, &key))
            .await
    }

    async fn certs(&self) -> Result<Vec<CertRecord>, StoreError> {
        self.read("certs", |t| decode_all(t.certs.iter(), keys::CERTS))
            .await
    }

    async fn certs_after(
        &self,
        after: Option<&DomainName>,
        limit: usize,
    ) -> Result<Vec<CertRecord>, StoreError> {
        let after = after.map(|d| d.as_str().as_bytes().to_vec());
        self.read("certs_after", move |t| {
            let from = match &after {
                Some(key) => Bound::Excluded(key.as_slice()),
                None => Bound::Unbounded,
            };
            decode_all(
                t.certs
                    .range::<&[u8], _>((from, Bound::Unbounded))
                    .take(limit),
                keys::CERTS,
            )
        })
        .await
    }

    async fn put_cert(&self, cert: CertRecord) -> Result<(), StoreError> {
        self.write("put_cert", move |t| {
            let key = cert.domain.as_str();
            put_for_site(t, &t.certs, key, &encode(&cert)).map_err(|e| match e {
                StoreError::NotFound(_) => StoreError::NotFound(format!(
                    "site {key} (add the site before its certificate)"
                )),
                other => other,
            })?;
            Ok(vec![Change::Cert(cert.domain)])
        })
        .await
    }

    async fn account(&self, directory: &str) -> Result<Option<AcmeAccount>, StoreError> {
        let key = directory.to_owned();
        self.read("account", move |t| {
            get(&t.accounts, keys::ACME_ACCOUNTS, &key)
        })
        .await
    }

    async fn accounts(&self) -> Result<Vec<AcmeAccount>, StoreError> {
        self.read("accounts", |t| {
            decode_all(t.accounts.iter(), keys::ACME_ACCOUNTS)
        })
        .await
    }

    async fn put_account(&self, account: AcmeAccount) -> Result<(), StoreError> {
        self.write("put_account", move |t| {
            t.accounts
                .insert(account.directory.as_bytes(), encode(&account))
                .map_err(sled_failed("write"))?;
            Ok(vec![])
        })
        .await
    }

    async fn acme_state(&self, domain: &DomainName) -> Result<Option<AcmeState>, StoreError> {
        let key = domain.to_string();
        self.read("acme_state", move |t| get(&t.acme, keys::ACME_STATES, &key))
            .await
    }

    async fn acme_states(&self) -> Result<Vec<(DomainName, AcmeState)>, StoreError> {
        self.read("acme_states", |t| {
            list_by_domain(&t.acme, keys::ACME_STATES)
        })
        .await
    }

    async fn put_acme_state(
        &self,
        domain: &DomainName,
        state: AcmeState,
    ) -> Result<(), StoreError> {
        let domain = domain.clone();
        self.write("put_acme_state", move |t| {
            put_for_site(t, &t.acme, domain.as_str(), &encode(&state))?;
            Ok(vec![Change::Acme(domain)])
        })
        .await
    }

    async fn acme_request(&self, domain: &DomainName) -> Result<Option<AcmeRequest>, StoreError> {
        let key = domain.to_string();
        self.read("acme_request", move |t| {
            get(&t.requests, keys::ACME_REQUESTS, &key)
        })
        .await
    }

    async fn acme_requests(&self) -> Result<Vec<(DomainName, AcmeRequest)>, StoreError> {
        self.read("acme_requests", |t| {
            list_by_domain(&t.requests, keys::ACME_REQUESTS)
        })
        .await
    }

    async fn swap_acme_request(
        &self,
        domain: &DomainName,
        expected: Option<&AcmeRequest>,
        new: Option<AcmeRequest>,
    ) -> Result<bool, StoreError> {
        let domain = domain.clone();
        let expected = expected.map(encode);
        // The writer answers only whether the write worked: the outcome comes back here.
        let swapped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let outcome = swapped.clone();
        self.write("swap_acme_request", move |t| {
            let key = domain.as_str();
            let new = new.as_ref().map(encode);
            let done = (&t.sites, &t.requests)
                .transaction(|(sites, requests)| {
                    if sites.get(key)?.is_none() {
                        return Err(not_found("site", key));
                    }
                    if requests.get(key)?.as_deref() != expected.as_deref() {
                        return Ok(false);
                    }
                    match &new {
                        Some(value) => requests.insert(key, value.as_slice())?,
                        None => requests.remove(key)?,
                    };
                    Ok(true)
                })
                .map_err(tx_error)?;
            outcome.store(done, Ordering::Relaxed);
            Ok(if done {
                vec![Change::Acme(domain)]
            } else {
                vec![]
            })
        })
        .await?;
        Ok(swapped.load(Ordering::Relaxed))
    }

    async fn put_issued(&self, cert: CertRecord, state: AcmeState) -> Result<(), StoreError> {
        self.write("put_issued", move |t| {
            let key = cert.domain.as_str();
            let (cert_value, state_value) = (encode(&cert), encode(&state));
            (&t.sites, &t.certs, &t.acme)
                .transaction(|(sites, certs, acme)| {
                    if sites.get(key)?.is_none() {
                        return Err(not_found("site", key));
                    }
                    certs.insert(key, cert_value.as_slice())?;
                    acme.insert(key, state_value.as_slice())?;
                    Ok(())
                })
                .map_err(tx_error)?;
            Ok(vec![
                Change::Cert(cert.domain.clone()),
                Change::Acme(cert.domain),
            ])
        })
        .await
    }

    async fn put_http01(&self, challenge: Http01Challenge) -> Result<(), StoreError> {
        self.write("put_http01", move |t| {
            t.http01
                .insert(challenge.token.as_bytes(), encode(&challenge))
                .map_err(sled_failed("write"))?;
            Ok(vec![Change::Challenges(challenge.domain)])
        })
        .await
    }

    async fn put_tls_alpn(&self, challenge: TlsAlpnChallenge) -> Result<(), StoreError> {
        self.write("put_tls_alpn", move |t| {
            t.tls_alpn
                .insert(challenge.domain.as_str(), encode(&challenge))
                .map_err(sled_failed("write"))?;
            Ok(vec![Change::Challenges(challenge.domain)])
        })
        .await
    }

    async fn challenges(
        &self,
    ) -> Result<(Vec<Http01Challenge>, Vec<TlsAlpnChallenge>), StoreError> {
        self.read("challenges", |t| {
            Ok((
                decode_all(t.http01.iter(), keys::HTTP01)?,
                decode_all(t.tls_alpn.iter(), keys::TLS_ALPN01)?,
            ))
        })
        .await
    }

    async fn remove_challenges(&self, domain: &DomainName) -> Result<(), StoreError> {
        let domain = domain.clone();
        self.write("remove_challenges", move |t| {
            let tokens = t.http01_tokens(&domain)?;
            (&t.http01, &t.tls_alpn)
                .transaction(|(http01, tls_alpn)| {
                    tls_alpn.remove(domain.as_str())?;
                    for token in &tokens {
                        http01.remove(token.as_slice())?;
                    }
                    Ok(())
                })
                .map_err(tx_error)?;
            Ok(vec![Change::Challenges(domain)])
        })
        .await
    }

    async fn app(&self, id: &AppId) -> Result<Option<App>, StoreError> {
        let key = id.to_string();
        self.read("app", move |t| get(&t.apps, keys::APPS, &key))
            .await
    }

    async fn apps(&self) -> Result<Vec<App>, StoreError> {
        self.read("apps", |t| decode_all(t.apps.iter(), keys::APPS))
            .await
    }

    async fn add_app(&self, app: App) -> Result<(), StoreError> {
        app.validate()?;
        self.write("add_app", move |t| {
            t.apps
                .compare_and_swap(app.id.as_str(), None::<&[u8]>, Some(encode(&app)))
                .map_err(sled_failed("write"))?
                .map_err(|_| StoreError::AlreadyExists(format!("app {}", app.id)))?;
            Ok(vec![Change::App(app.id)])
        })
        .await
    }

    async fn update_app(&self, app: App) -> Result<(), StoreError> {
        app.validate()?;
        self.write("update_app", move |t| {
            let key = app.id.as_str();
            let value = encode(&app);
            t.apps
                .transaction(|apps| {
                    if apps.get(key)?.is_none() {
                        return Err(not_found("app", key));
                    }
                    apps.insert(key, value.as_slice())?;
                    Ok(())
                })
                .map_err(tx_error)?;
            Ok(vec![Change::App(app.id)])
        })
        .await
    }

    async fn remove_app(&self, id: &AppId) -> Result<(), StoreError> {
        let id = id.clone();
        // On the writer, the check and the removal see the same sites: no site can be added
        // for the app in between.
        self.write("remove_app", move |t| {
            let users: Vec<String> = decode_all::<Site>(t.sites.iter(), keys::SITES)?
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
            if t.apps
                .remove(id.as_str())
                .map_err(sled_failed("write"))?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("app {id}")));
            }
            Ok(vec![Change::App(id)])
        })
        .await
    }

    async fn ocsp(&self, domain: &DomainName) -> Result<Option<OcspRecord>, StoreError> {
        let key = domain.to_string();
        self.read("ocsp", move |t| get(&t.ocsp, keys::OCSP, &key))
            .await
    }

    async fn ocsp_records(&self) -> Result<Vec<(DomainName, OcspRecord)>, StoreError> {
        self.read("ocsp_records", |t| list_by_domain(&t.ocsp, keys::OCSP))
            .await
    }

    async fn put_ocsp(&self, domain: &DomainName, record: OcspRecord) -> Result<(), StoreError> {
        let domain = domain.clone();
        self.write("put_ocsp", move |t| {
            put_for_site(t, &t.ocsp, domain.as_str(), &encode(&record))?;
            Ok(vec![Change::Ocsp(domain)])
        })
        .await
    }

    async fn ticket_keys(&self) -> Result<Option<TicketKeys>, StoreError> {
        self.read("ticket_keys", |t| {
            get(&t.meta, keys::META, keys::TICKET_KEYS)
        })
        .await
    }

    async fn put_ticket_keys(&self, ticket_keys: TicketKeys) -> Result<(), StoreError> {
        self.write("put_ticket_keys", move |t| {
            t.meta
                .insert(keys::TICKET_KEYS, encode(&ticket_keys))
                .map_err(sled_failed("write"))?;
            Ok(vec![Change::TicketKeys])
        })
        .await
    }

    async fn dns_zones(&self) -> Result<Vec<DnsZone>, StoreError> {
        self.read("dns_zones", |t| {
            decode_all(t.dns_zones.iter(), keys::DNS_ZONES)
        })
        .await
    }

    async fn put_dns_zone(&self, zone: DnsZone) -> Result<(), StoreError> {
        zone.validate()?;
        self.write("put_dns_zone", move |t| {
            t.dns_zones
                .insert(zone.zone.as_str(), encode(&zone))
                .map_err(sled_failed("write"))?;
            Ok(vec![Change::DnsZone(zone.zone)])
        })
        .await
    }

    async fn remove_dns_zone(&self, zone: &DomainName) -> Result<(), StoreError> {
        let zone = zone.clone();
        self.write("remove_dns_zone", move |t| {
            if t.dns_zones
                .remove(zone.as_str())
                .map_err(sled_failed("write"))?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("DNS zone {zone}")));
            }
            Ok(vec![Change::DnsZone(zone)])
        })
        .await
    }

    async fn on_demand_rules(&self) -> Result<Vec<DomainName>, StoreError> {
        self.read("on_demand_rules", |t| {
            decode_all(t.on_demand.iter(), keys::ON_DEMAND_RULES)
        })
        .await
    }

    async fn allow_on_demand(&self, rule: DomainName) -> Result<(), StoreError> {
        crate::validate_on_demand_rule(&rule)?;
        self.write("allow_on_demand", move |t| {
            t.on_demand
                .insert(rule.as_str(), encode(&rule))
                .map_err(sled_failed("write"))?;
            Ok(vec![Change::OnDemandRules])
        })
        .await
    }

    async fn disallow_on_demand(&self, rule: &DomainName) -> Result<(), StoreError> {
        let rule = rule.clone();
        self.write("disallow_on_demand", move |t| {
            if t.on_demand
                .remove(rule.as_str())
                .map_err(sled_failed("write"))?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("on-demand rule {rule}")));
            }
            Ok(vec![Change::OnDemandRules])
        })
        .await
    }

    async fn put_purge(&self, purge: crate::Purge) -> Result<(), StoreError> {
        purge.scope.validate()?;
        self.write("put_purge", move |t| {
            let oldest = crate::cache::purge_horizon_ms();
            for entry in t.purges.iter() {
                let (key, raw) = entry.map_err(sled_failed("read"))?;
                let old: crate::Purge = crate::codec::decode(keys::PURGES, &key, &raw)?;
                if old.at_ms >= oldest {
                    break;
                }
                t.purges.remove(key).map_err(sled_failed("write"))?;
            }
            t.purges
                .insert(purge.id.as_str(), encode(&purge))
                .map_err(sled_failed("write"))?;
            Ok(vec![Change::Purges])
        })
        .await
    }

    async fn purges(&self) -> Result<Vec<crate::Purge>, StoreError> {
        self.read("purges", |t| decode_all(t.purges.iter(), keys::PURGES))
            .await
    }

    async fn try_lock(&self, _name: &str) -> Result<Option<crate::Lock>, StoreError> {
        // Only this process has the database open: nobody else to leave the work to.
        Ok(Some(crate::Lock::held()))
    }

    async fn join(&self, _node: crate::Node, _replacing: bool) -> Result<(), StoreError> {
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<crate::Node>, StoreError> {
        Ok(Vec::new())
    }

    async fn fleet_secret(
        &self,
        _proposed: crate::SecretBytes,
    ) -> Result<Option<crate::SecretBytes>, StoreError> {
        Ok(None)
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes()
    }

    fn health(&self) -> StoreHealth {
        self.health_now()
    }
}
