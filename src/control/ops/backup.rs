//! `porter store export` and `porter store import`: every lasting record of the store (apps,
//! sites, certificates with their keys, ACME accounts and states, OCSP responses, TLS ticket
//! keys, DNS zones with their TSIG keys, on-demand rules) as one JSON document, for backups and
//! for moving an installation. What is only in flight (challenge answers, renewal requests) is
//! left out.

use super::OpError;
use porter_store::{
    AcmeAccount, AcmeState, App, CertRecord, DnsZone, DomainName, OcspRecord, Site, Store,
    StoreError, TicketKeys,
};
use rustls_pki_types::PrivateKeyDer;
use serde::{Deserialize, Serialize};
use std::future::Future;

/// The version of the document's layout.
const FORMAT: u32 = 1;

/// The whole store. It holds private keys: whoever reads it can impersonate every site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Backup {
    pub(crate) porter_backup: u32,
    pub(crate) apps: Vec<App>,
    pub(crate) sites: Vec<Site>,
    pub(crate) certs: Vec<CertRecord>,
    pub(crate) accounts: Vec<AcmeAccount>,
    pub(crate) acme_states: Vec<(DomainName, AcmeState)>,
    pub(crate) ocsp: Vec<(DomainName, OcspRecord)>,
    pub(crate) ticket_keys: Option<TicketKeys>,
    /// Absent in backups made before DNS-01.
    #[serde(default)]
    pub(crate) dns_zones: Vec<DnsZone>,
    /// Absent in backups made before on-demand rules.
    #[serde(default)]
    pub(crate) on_demand_rules: Vec<DomainName>,
}

/// What an import wrote.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Imported {
    pub(crate) apps: usize,
    pub(crate) sites: usize,
    pub(crate) certs: usize,
    pub(crate) accounts: usize,
}

/// Every lasting record of `store`.
pub(crate) async fn export(store: &dyn Store) -> Result<Backup, OpError> {
    Ok(Backup {
        porter_backup: FORMAT,
        apps: store.apps().await?,
        sites: store.sites().await?,
        certs: store.certs().await?,
        accounts: store.accounts().await?,
        acme_states: store.acme_states().await?,
        ocsp: store.ocsp_records().await?,
        ticket_keys: store.ticket_keys().await?,
        dns_zones: store.dns_zones().await?,
        on_demand_rules: store.on_demand_rules().await?,
    })
}

/// Checks a certificate from a backup as `cert import` would (chain, key, names), at a moment
/// when it was valid: a backup's certificate may have expired since, and still be restored.
fn check_cert(cert: &CertRecord) -> Result<(), OpError> {
    let key: PrivateKeyDer<'_> = cert.key.to_der();
    CertRecord::from_der(
        &cert.domain,
        cert.chain.clone(),
        &key,
        cert.not_before,
        cert.source,
    )
    .map_err(|e| {
        OpError::Refused(format!(
            "the certificate of {} in the backup: {e}",
            cert.domain
        ))
    })?;
    Ok(())
}

/// Refuses a backup of a layout this Porter does not read.
fn check_format(backup: &Backup) -> Result<(), OpError> {
    if backup.porter_backup != FORMAT {
        return Err(OpError::Refused(format!(
            "this is a backup of format {}, this Porter reads format {FORMAT}",
            backup.porter_backup
        )));
    }
    Ok(())
}

/// Refuses a backup with a record that would not be accepted as a command.
fn check_records(backup: &Backup) -> Result<(), OpError> {
    for cert in &backup.certs {
        check_cert(cert)?;
    }
    for app in &backup.apps {
        app.validate().map_err(StoreError::from)?;
    }
    for zone in &backup.dns_zones {
        zone.validate().map_err(StoreError::from)?;
    }
    for rule in &backup.on_demand_rules {
        porter_store::validate_on_demand_rule(rule).map_err(StoreError::from)?;
    }
    Ok(())
}

/// Refuses to import over a store in use (one with a site or an app).
async fn refuse_in_use(store: &dyn Store) -> Result<(), OpError> {
    if !store.sites().await?.is_empty() || !store.apps().await?.is_empty() {
        return Err(OpError::Refused(
            "the store is not empty: import into a fresh data dir (made with `porter init`), or write over it with --force".into(),
        ));
    }
    Ok(())
}

/// Adds `record` with `add`; one of the same name is replaced with `replace` when `force`.
async fn add_or_replace<T, A, R>(
    record: T,
    force: bool,
    add: impl FnOnce(T) -> A,
    replace: impl FnOnce(T) -> R,
) -> Result<(), StoreError>
where
    T: Clone,
    A: Future<Output = Result<(), StoreError>>,
    R: Future<Output = Result<(), StoreError>>,
{
    match add(record.clone()).await {
        Err(StoreError::AlreadyExists(_)) if force => replace(record).await,
        other => other,
    }
}

/// Writes every record of `backup` (checked) into `store`: zones and apps before the sites
/// that use them, sites before what belongs to them.
async fn write(store: &dyn Store, backup: Backup, force: bool) -> Result<(), StoreError> {
    for zone in backup.dns_zones {
        store.put_dns_zone(zone).await?;
    }
    for rule in backup.on_demand_rules {
        store.allow_on_demand(rule).await?;
    }
    for app in backup.apps {
        add_or_replace(app, force, |a| store.add_app(a), |a| store.update_app(a)).await?;
    }
    for site in backup.sites {
        add_or_replace(site, force, |s| store.add_site(s), |s| store.update_site(s)).await?;
    }
    for cert in backup.certs {
        store.put_cert(cert).await?;
    }
    for account in backup.accounts {
        store.put_account(account).await?;
    }
    for (domain, state) in backup.acme_states {
        store.put_acme_state(&domain, state).await?;
    }
    for (domain, record) in backup.ocsp {
        store.put_ocsp(&domain, record).await?;
    }
    if let Some(keys) = backup.ticket_keys {
        store.put_ticket_keys(keys).await?;
    }
    Ok(())
}

/// Writes `backup` into `store`, which must hold no site and no app (a fresh data dir) unless
/// `force`: then records with the same names are replaced and the others stay.
pub(crate) async fn import(
    store: &dyn Store,
    backup: Backup,
    force: bool,
) -> Result<Imported, OpError> {
    check_format(&backup)?;
    if !force {
        refuse_in_use(store).await?;
    }
    // Everything is checked before anything is written.
    check_records(&backup)?;
    let imported = Imported {
        apps: backup.apps.len(),
        sites: backup.sites.len(),
        certs: backup.certs.len(),
        accounts: backup.accounts.len(),
    };
    write(store, backup, force).await?;
    Ok(imported)
}
