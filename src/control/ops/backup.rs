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
fn checked(cert: CertRecord) -> Result<CertRecord, OpError> {
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
    Ok(cert)
}

/// Writes `backup` into `store`, which must hold no site and no app (a fresh data dir) unless
/// `force`: then records with the same names are replaced and the others stay.
pub(crate) async fn import(
    store: &dyn Store,
    backup: Backup,
    force: bool,
) -> Result<Imported, OpError> {
    if backup.porter_backup != FORMAT {
        return Err(OpError::Refused(format!(
            "this is a backup of format {}, this Porter reads format {FORMAT}",
            backup.porter_backup
        )));
    }
    if !force && (!store.sites().await?.is_empty() || !store.apps().await?.is_empty()) {
        return Err(OpError::Refused(
            "the store is not empty: import into a fresh data dir (made with `porter init`), or write over it with --force".into(),
        ));
    }
    // Everything is checked before anything is written.
    let certs = backup
        .certs
        .into_iter()
        .map(checked)
        .collect::<Result<Vec<_>, _>>()?;
    for app in &backup.apps {
        app.validate().map_err(StoreError::from)?;
    }
    for zone in &backup.dns_zones {
        zone.validate().map_err(StoreError::from)?;
    }
    for rule in &backup.on_demand_rules {
        porter_store::validate_on_demand_rule(rule).map_err(StoreError::from)?;
    }
    let imported = Imported {
        apps: backup.apps.len(),
        sites: backup.sites.len(),
        certs: certs.len(),
        accounts: backup.accounts.len(),
    };
    // Zones and apps before the sites that use them, sites before what belongs to them.
    for zone in backup.dns_zones {
        store.put_dns_zone(zone).await?;
    }
    for rule in backup.on_demand_rules {
        store.allow_on_demand(rule).await?;
    }
    for app in backup.apps {
        match store.add_app(app.clone()).await {
            Err(StoreError::AlreadyExists(_)) if force => store.update_app(app).await?,
            other => other?,
        }
    }
    for site in backup.sites {
        match store.add_site(site.clone()).await {
            Err(StoreError::AlreadyExists(_)) if force => store.update_site(site).await?,
            other => other?,
        }
    }
    for cert in certs {
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
    Ok(imported)
}
