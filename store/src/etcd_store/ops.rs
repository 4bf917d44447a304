//! What each [`Store`] operation is on etcd: reads of one key or one prefix, and writes as one
//! `Txn` whose compares hold what sled's transactions check (the site exists, the app exists,
//! the request is still what was read).

use super::{absent, exists, found, EtcdStore, Inner};
use crate::codec::{domain_key, encode};
use crate::error::StoreError;
use crate::keys;
use crate::{
    AcmeAccount, AcmeRequest, AcmeState, App, AppId, CertRecord, Change, DnsZone, DomainName,
    Http01Challenge, Lock, Node, OcspRecord, SecretBytes, Site, Store, StoreHealth, Target,
    TicketKeys, TlsAlpnChallenge,
};
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use tokio::sync::broadcast;

/// Tries of `remove_app` while sites keep changing under it.
const REMOVE_APP_TRIES: usize = 8;

impl Inner {
    /// Every record of `kind`, without ids.
    async fn values<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        kind: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let (records, _) = self.list(op, kind).await?;
        Ok(records.into_iter().map(|(_, record)| record).collect())
    }

    /// Every record of `kind` keyed by domain, with its domain.
    async fn by_domain<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        kind: &'static str,
    ) -> Result<Vec<(DomainName, T)>, StoreError> {
        let (records, _) = self.list(op, kind).await?;
        records
            .into_iter()
            .map(|(id, record)| Ok((domain_key(kind, &id)?, record)))
            .collect()
    }

    /// The keys of the HTTP-01 challenges of `domain` (a handful: one per validation).
    async fn http01_keys(&self, domain: &DomainName) -> Result<Vec<Vec<u8>>, StoreError> {
        let (challenges, _) = self
            .list::<Http01Challenge>("challenges", keys::HTTP01)
            .await?;
        Ok(challenges
            .into_iter()
            .filter(|(_, c)| &c.domain == domain)
            .map(|(id, _)| [self.kind_prefix(keys::HTTP01), id].concat())
            .collect())
    }

    /// Stores `value` as record `domain` of `kind`, if the site `domain` exists.
    async fn put_for_site(
        &self,
        op: &'static str,
        kind: &'static str,
        domain: &DomainName,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        let site = self.key(keys::SITES, domain.as_str());
        let txn = Txn::new().when([exists(&site)]).and_then([TxnOp::put(
            self.key(kind, domain.as_str()),
            value,
            None,
        )]);
        if !self.write(op, txn).await?.succeeded() {
            return Err(StoreError::NotFound(format!("site {domain}")));
        }
        Ok(())
    }

    /// Adds (`replace` false) or replaces (`replace` true) a site, checking that its app exists.
    async fn write_site(&self, site: Site, replace: bool) -> Result<(), StoreError> {
        site.validate()?;
        let key = self.key(keys::SITES, site.domain.as_str());
        let app = match &site.target {
            Target::App(id) => Some(self.key(keys::APPS, id.as_str())),
            Target::Upstream(_) => None,
        };
        let mut compares = vec![if replace { exists(&key) } else { absent(&key) }];
        let mut otherwise = vec![TxnOp::get(key.clone(), None)];
        if let Some(app) = &app {
            compares.push(exists(app));
            otherwise.push(TxnOp::get(app.clone(), None));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::put(key, encode(&site), None)])
            .or_else(otherwise);
        let op = if replace { "update_site" } else { "add_site" };
        let answer = self.write(op, txn).await?;
        if answer.succeeded() {
            return Ok(());
        }
        let domain = &site.domain;
        match (found(&answer, 0), replace) {
            (true, false) => Err(StoreError::AlreadyExists(format!("site {domain}"))),
            (false, true) => Err(StoreError::NotFound(format!("site {domain}"))),
            _ => {
                let Target::App(id) = &site.target else {
                    unreachable!("only an app can be missing")
                };
                Err(StoreError::NotFound(format!(
                    "app {id} (add the app before its sites)"
                )))
            }
        }
    }

    /// Adds (`replace` false) or replaces (`replace` true) an app.
    async fn write_app(&self, app: App, replace: bool) -> Result<(), StoreError> {
        app.validate()?;
        let key = self.key(keys::APPS, app.id.as_str());
        let txn = Txn::new()
            .when([if replace { exists(&key) } else { absent(&key) }])
            .and_then([TxnOp::put(key, encode(&app), None)]);
        let op = if replace { "update_app" } else { "add_app" };
        if self.write(op, txn).await?.succeeded() {
            return Ok(());
        }
        let id = &app.id;
        Err(if replace {
            StoreError::NotFound(format!("app {id}"))
        } else {
            StoreError::AlreadyExists(format!("app {id}"))
        })
    }

    /// Removes record `id` of `kind`; fails with NotFound (`what`) when there is none.
    async fn remove(
        &self,
        op: &'static str,
        kind: &'static str,
        id: &str,
        what: String,
    ) -> Result<(), StoreError> {
        let key = self.key(kind, id);
        let txn = Txn::new()
            .when([exists(&key)])
            .and_then([TxnOp::delete(key, None)]);
        if !self.write(op, txn).await?.succeeded() {
            return Err(StoreError::NotFound(what));
        }
        Ok(())
    }

    async fn put(&self, op: &'static str, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.write(op, Txn::new().and_then([TxnOp::put(key, value, None)]))
            .await
            .map(drop)
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn site(&self, domain: &DomainName) -> Result<Option<Site>, StoreError> {
        self.inner.get("site", keys::SITES, domain.as_str()).await
    }

    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        self.inner.values("sites", keys::SITES).await
    }

    async fn add_site(&self, site: Site) -> Result<(), StoreError> {
        self.inner.write_site(site, false).await
    }

    async fn update_site(&self, site: Site) -> Result<(), StoreError> {
        self.inner.write_site(site, true).await
    }

    async fn remove_site(&self, domain: &DomainName) -> Result<(), StoreError> {
        let inner = &self.inner;
        let id = domain.as_str();
        let site = inner.key(keys::SITES, id);
        // The site first, its certificate next: subscribers hear them in that order.
        let mut removals = vec![TxnOp::delete(site.clone(), None)];
        for kind in [
            keys::CERTS,
            keys::ACME_STATES,
            keys::ACME_REQUESTS,
            keys::OCSP,
            keys::TLS_ALPN01,
        ] {
            removals.push(TxnOp::delete(inner.key(kind, id), None));
        }
        for token in inner.http01_keys(domain).await? {
            removals.push(TxnOp::delete(token, None));
        }
        let txn = Txn::new().when([exists(&site)]).and_then(removals);
        if !inner.write("remove_site", txn).await?.succeeded() {
            return Err(StoreError::NotFound(format!("site {domain}")));
        }
        Ok(())
    }

    async fn cert(&self, domain: &DomainName) -> Result<Option<CertRecord>, StoreError> {
        self.inner.get("cert", keys::CERTS, domain.as_str()).await
    }

    async fn certs(&self) -> Result<Vec<CertRecord>, StoreError> {
        self.inner.values("certs", keys::CERTS).await
    }

    async fn certs_after(
        &self,
        after: Option<&DomainName>,
        limit: usize,
    ) -> Result<Vec<CertRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after = after.map(|d| d.as_str().as_bytes());
        let (page, _, _) = self
            .inner
            .page("certs_after", keys::CERTS, after, (limit, 0))
            .await?;
        Ok(page.into_iter().map(|(_, cert)| cert).collect())
    }

    async fn put_cert(&self, cert: CertRecord) -> Result<(), StoreError> {
        let domain = cert.domain.clone();
        self.inner
            .put_for_site("put_cert", keys::CERTS, &domain, encode(&cert))
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => StoreError::NotFound(format!(
                    "site {domain} (add the site before its certificate)"
                )),
                other => other,
            })
    }

    async fn account(&self, directory: &str) -> Result<Option<AcmeAccount>, StoreError> {
        self.inner
            .get("account", keys::ACME_ACCOUNTS, directory)
            .await
    }

    async fn accounts(&self) -> Result<Vec<AcmeAccount>, StoreError> {
        self.inner.values("accounts", keys::ACME_ACCOUNTS).await
    }

    async fn put_account(&self, account: AcmeAccount) -> Result<(), StoreError> {
        let key = self.inner.key(keys::ACME_ACCOUNTS, &account.directory);
        self.inner.put("put_account", key, encode(&account)).await
    }

    async fn acme_state(&self, domain: &DomainName) -> Result<Option<AcmeState>, StoreError> {
        self.inner
            .get("acme_state", keys::ACME_STATES, domain.as_str())
            .await
    }

    async fn acme_states(&self) -> Result<Vec<(DomainName, AcmeState)>, StoreError> {
        self.inner.by_domain("acme_states", keys::ACME_STATES).await
    }

    async fn put_acme_state(
        &self,
        domain: &DomainName,
        state: AcmeState,
    ) -> Result<(), StoreError> {
        self.inner
            .put_for_site("put_acme_state", keys::ACME_STATES, domain, encode(&state))
            .await
    }

    async fn acme_request(&self, domain: &DomainName) -> Result<Option<AcmeRequest>, StoreError> {
        self.inner
            .get("acme_request", keys::ACME_REQUESTS, domain.as_str())
            .await
    }

    async fn acme_requests(&self) -> Result<Vec<(DomainName, AcmeRequest)>, StoreError> {
        self.inner
            .by_domain("acme_requests", keys::ACME_REQUESTS)
            .await
    }

    async fn swap_acme_request(
        &self,
        domain: &DomainName,
        expected: Option<&AcmeRequest>,
        new: Option<AcmeRequest>,
    ) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let (site, key) = (
            inner.key(keys::SITES, domain.as_str()),
            inner.key(keys::ACME_REQUESTS, domain.as_str()),
        );
        let still = match expected {
            Some(expected) => Compare::value(key.clone(), CompareOp::Equal, encode(expected)),
            None => absent(&key),
        };
        let change = match &new {
            Some(new) => TxnOp::put(key, encode(new), None),
            None => TxnOp::delete(key, None),
        };
        let txn = Txn::new()
            .when([exists(&site), still])
            .and_then([change])
            .or_else([TxnOp::get(site, None)]);
        let answer = inner.write("swap_acme_request", txn).await?;
        if answer.succeeded() {
            return Ok(true);
        }
        if !found(&answer, 0) {
            return Err(StoreError::NotFound(format!("site {domain}")));
        }
        Ok(false)
    }

    async fn put_issued(&self, cert: CertRecord, state: AcmeState) -> Result<(), StoreError> {
        let inner = &self.inner;
        let id = cert.domain.as_str();
        let txn = Txn::new()
            .when([exists(&inner.key(keys::SITES, id))])
            .and_then([
                TxnOp::put(inner.key(keys::CERTS, id), encode(&cert), None),
                TxnOp::put(inner.key(keys::ACME_STATES, id), encode(&state), None),
            ]);
        if !inner.write("put_issued", txn).await?.succeeded() {
            return Err(StoreError::NotFound(format!("site {}", cert.domain)));
        }
        Ok(())
    }

    async fn put_http01(&self, challenge: Http01Challenge) -> Result<(), StoreError> {
        let key = self.inner.key(keys::HTTP01, &challenge.token);
        self.inner.put("put_http01", key, encode(&challenge)).await
    }

    async fn put_tls_alpn(&self, challenge: TlsAlpnChallenge) -> Result<(), StoreError> {
        let key = self.inner.key(keys::TLS_ALPN01, challenge.domain.as_str());
        self.inner
            .put("put_tls_alpn", key, encode(&challenge))
            .await
    }

    async fn challenges(
        &self,
    ) -> Result<(Vec<Http01Challenge>, Vec<TlsAlpnChallenge>), StoreError> {
        Ok((
            self.inner.values("challenges", keys::HTTP01).await?,
            self.inner.values("challenges", keys::TLS_ALPN01).await?,
        ))
    }

    async fn remove_challenges(&self, domain: &DomainName) -> Result<(), StoreError> {
        let inner = &self.inner;
        let mut removals = vec![TxnOp::delete(
            inner.key(keys::TLS_ALPN01, domain.as_str()),
            None,
        )];
        for token in inner.http01_keys(domain).await? {
            removals.push(TxnOp::delete(token, None));
        }
        inner
            .write("remove_challenges", Txn::new().and_then(removals))
            .await
            .map(drop)
    }

    async fn app(&self, id: &AppId) -> Result<Option<App>, StoreError> {
        self.inner.get("app", keys::APPS, id.as_str()).await
    }

    async fn apps(&self) -> Result<Vec<App>, StoreError> {
        self.inner.values("apps", keys::APPS).await
    }

    async fn add_app(&self, app: App) -> Result<(), StoreError> {
        self.inner.write_app(app, false).await
    }

    async fn update_app(&self, app: App) -> Result<(), StoreError> {
        self.inner.write_app(app, true).await
    }

    async fn remove_app(&self, id: &AppId) -> Result<(), StoreError> {
        let inner = &self.inner;
        let key = inner.key(keys::APPS, id.as_str());
        let sites = inner.kind_prefix(keys::SITES);
        for _ in 0..REMOVE_APP_TRIES {
            let (all, revision) = inner.list::<Site>("remove_app", keys::SITES).await?;
            let users: Vec<String> = all
                .into_iter()
                .filter(|(_, s)| s.target == Target::App(id.clone()))
                .map(|(_, s)| s.domain.to_string())
                .collect();
            if !users.is_empty() {
                return Err(StoreError::InUse(format!(
                    "app {id} is used by {}: remove or move those sites first",
                    users.join(", ")
                )));
            }
            // No site changed since the read: none can have been added for the app meanwhile.
            let unchanged = Compare::mod_revision(sites.clone(), CompareOp::Less, revision + 1)
                .with_range(super::prefix_end(&sites));
            let txn = Txn::new()
                .when([exists(&key), unchanged])
                .and_then([TxnOp::delete(key.clone(), None)])
                .or_else([TxnOp::get(key.clone(), None)]);
            let answer = inner.write("remove_app", txn).await?;
            if answer.succeeded() {
                return Ok(());
            }
            if !found(&answer, 0) {
                return Err(StoreError::NotFound(format!("app {id}")));
            }
        }
        Err(StoreError::KeptChanging {
            what: format!("the sites (while app {id} was being removed)"),
        })
    }

    async fn ocsp(&self, domain: &DomainName) -> Result<Option<OcspRecord>, StoreError> {
        self.inner.get("ocsp", keys::OCSP, domain.as_str()).await
    }

    async fn ocsp_records(&self) -> Result<Vec<(DomainName, OcspRecord)>, StoreError> {
        self.inner.by_domain("ocsp_records", keys::OCSP).await
    }

    async fn put_ocsp(&self, domain: &DomainName, record: OcspRecord) -> Result<(), StoreError> {
        self.inner
            .put_for_site("put_ocsp", keys::OCSP, domain, encode(&record))
            .await
    }

    async fn ticket_keys(&self) -> Result<Option<TicketKeys>, StoreError> {
        self.inner
            .get("ticket_keys", keys::META, keys::TICKET_KEYS)
            .await
    }

    async fn put_ticket_keys(&self, ticket_keys: TicketKeys) -> Result<(), StoreError> {
        let key = self.inner.key(keys::META, keys::TICKET_KEYS);
        self.inner
            .put("put_ticket_keys", key, encode(&ticket_keys))
            .await
    }

    async fn dns_zones(&self) -> Result<Vec<DnsZone>, StoreError> {
        self.inner.values("dns_zones", keys::DNS_ZONES).await
    }

    async fn put_dns_zone(&self, zone: DnsZone) -> Result<(), StoreError> {
        zone.validate()?;
        let key = self.inner.key(keys::DNS_ZONES, zone.zone.as_str());
        self.inner.put("put_dns_zone", key, encode(&zone)).await
    }

    async fn remove_dns_zone(&self, zone: &DomainName) -> Result<(), StoreError> {
        self.inner
            .remove(
                "remove_dns_zone",
                keys::DNS_ZONES,
                zone.as_str(),
                format!("DNS zone {zone}"),
            )
            .await
    }

    async fn on_demand_rules(&self) -> Result<Vec<DomainName>, StoreError> {
        self.inner
            .values("on_demand_rules", keys::ON_DEMAND_RULES)
            .await
    }

    async fn allow_on_demand(&self, rule: DomainName) -> Result<(), StoreError> {
        crate::validate_on_demand_rule(&rule)?;
        let key = self.inner.key(keys::ON_DEMAND_RULES, rule.as_str());
        self.inner.put("allow_on_demand", key, encode(&rule)).await
    }

    async fn disallow_on_demand(&self, rule: &DomainName) -> Result<(), StoreError> {
        self.inner
            .remove(
                "disallow_on_demand",
                keys::ON_DEMAND_RULES,
                rule.as_str(),
                format!("on-demand rule {rule}"),
            )
            .await
    }

    async fn put_purge(&self, purge: crate::Purge) -> Result<(), StoreError> {
        purge.scope.validate()?;
        let oldest = crate::cache::purge_horizon_ms();
        let (kept, _) = self
            .inner
            .list::<crate::Purge>("put_purge", keys::PURGES)
            .await?;
        let mut ops: Vec<TxnOp> = kept
            .into_iter()
            .filter(|(_, old)| old.at_ms < oldest)
            .map(|(id, _)| {
                let id = String::from_utf8_lossy(&id);
                TxnOp::delete(self.inner.key(keys::PURGES, &id), None)
            })
            .collect();
        let key = self.inner.key(keys::PURGES, &purge.id);
        ops.push(TxnOp::put(key, encode(&purge), None));
        self.inner
            .write("put_purge", Txn::new().and_then(ops))
            .await
            .map(drop)
    }

    async fn purges(&self) -> Result<Vec<crate::Purge>, StoreError> {
        self.inner.values("purges", keys::PURGES).await
    }

    async fn try_lock(&self, name: &str) -> Result<Option<Lock>, StoreError> {
        self.inner.try_lock(name).await
    }

    async fn join(&self, node: Node, replacing: bool) -> Result<(), StoreError> {
        Node::check_name(&node.name)?;
        self.inner.join(node, replacing).await
    }

    async fn nodes(&self) -> Result<Vec<Node>, StoreError> {
        self.inner.values("nodes", keys::NODES).await
    }

    async fn fleet_secret(&self, proposed: SecretBytes) -> Result<Option<SecretBytes>, StoreError> {
        let key = self.inner.key(keys::META, keys::FLEET_SECRET);
        let put = TxnOp::put(key.clone(), encode(&proposed), None);
        match self.inner.create("fleet_secret", &key, put).await? {
            (None, _) => Ok(Some(proposed)),
            (Some(kv), _) => crate::codec::decode(keys::META, kv.key(), kv.value()).map(Some),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    fn health(&self) -> StoreHealth {
        self.inner.health()
    }
}
