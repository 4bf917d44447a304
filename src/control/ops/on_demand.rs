//! `porter on-demand allow|disallow|rules`: the operator's rules of names on-demand TLS may
//! obtain a certificate for without asking the ask endpoint (`example.com`: itself and every
//! name under it; `*.example.com`: the names under it).

use super::OpError;
use porter_store::{DomainName, Store, StoreError};

/// Every rule, ordered.
pub(crate) async fn rules(store: &dyn Store) -> Result<Vec<String>, OpError> {
    Ok(store
        .on_demand_rules()
        .await?
        .into_iter()
        .map(|rule| rule.to_string())
        .collect())
}

/// Adds `rule`; the rules after.
pub(crate) async fn allow(store: &dyn Store, rule: &str) -> Result<Vec<String>, OpError> {
    let rule = DomainName::parse(rule).map_err(StoreError::from)?;
    store.allow_on_demand(rule).await?;
    rules(store).await
}

/// Removes `rule` (names it allowed that are sites by now stay sites); the rules after.
pub(crate) async fn disallow(store: &dyn Store, rule: &str) -> Result<Vec<String>, OpError> {
    let rule = DomainName::parse(rule).map_err(StoreError::from)?;
    store.disallow_on_demand(&rule).await?;
    rules(store).await
}
