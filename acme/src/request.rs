//! What an operator (or the OCSP refresher) asks of the worker for a site: a new certificate
//! now, or the revocation of the current one (then a new one). The request is a record of its
//! own, apart from the site's [`porter_store::AcmeState`], which only the worker writes. Every
//! change of a request is a compare-and-swap on what was read, and the worker takes away only
//! what it carried out: whatever is asked while an attempt runs stays for the next one.

use crate::error::AcmeError;
use porter_store::{unix_now, AcmeRequest, DomainName, Store, StoreError};

/// Swaps lost to a concurrent change before giving up.
const TRIES: usize = 16;

/// What can be asked of the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeAction {
    /// Obtain a new certificate now.
    Renew,
    /// Revoke the current certificate at the CA, then replace it.
    Revoke,
}

/// Records `action` for the site `domain`; the worker carries it out within a second when it
/// runs. Returns the request as it now stands.
pub async fn request(
    store: &dyn Store,
    domain: &DomainName,
    action: AcmeAction,
) -> Result<AcmeRequest, AcmeError> {
    let leaf = match action {
        AcmeAction::Renew => None,
        AcmeAction::Revoke => Some(
            store
                .cert(domain)
                .await?
                .and_then(|cert| cert.chain.into_iter().next())
                .ok_or_else(|| {
                    AcmeError::Order(format!("{domain} has no certificate to revoke"))
                })?,
        ),
    };
    let now = unix_now();
    let updated = update(store, domain, |current| {
        let mut next = current.cloned().unwrap_or_default();
        // Never the same time twice: the worker tells a repeated request from the one it read.
        let at = now.max(next.requested_at + 1);
        next.requested_at = at;
        match &leaf {
            None => next.renew = Some(at),
            Some(leaf) if !next.revoke.contains(leaf) => next.revoke.push(leaf.clone()),
            Some(_) => {}
        }
        Some(next)
    })
    .await?;
    Ok(updated.unwrap_or_default())
}

/// Takes the revoked `leaves` off the request of `domain`; when one of them was the current
/// certificate (`replace`), a renewal stays asked for until the replacement is issued.
pub(crate) async fn revoked(
    store: &dyn Store,
    domain: &DomainName,
    leaves: &[Vec<u8>],
    replace: bool,
) -> Result<(), AcmeError> {
    update(store, domain, |current| {
        let mut next = current?.clone();
        next.revoke.retain(|leaf| !leaves.contains(leaf));
        if replace {
            next.renew = next.renew.or(Some(next.requested_at));
        }
        (next.renew.is_some() || !next.revoke.is_empty()).then_some(next)
    })
    .await
    .map(drop)
}

/// Takes the renewal asked at `asked_at` off the request of `domain`, now that it is done; a
/// renewal asked again since stays.
pub(crate) async fn renewed(
    store: &dyn Store,
    domain: &DomainName,
    asked_at: i64,
) -> Result<(), AcmeError> {
    update(store, domain, |current| {
        let mut next = current?.clone();
        if next.renew == Some(asked_at) {
            next.renew = None;
        }
        (next.renew.is_some() || !next.revoke.is_empty()).then_some(next)
    })
    .await
    .map(drop)
}

/// Applies `change` to the request of `domain` as a compare-and-swap, again on what is there
/// when another change came first. Returns the request as it was left.
async fn update(
    store: &dyn Store,
    domain: &DomainName,
    change: impl Fn(Option<&AcmeRequest>) -> Option<AcmeRequest>,
) -> Result<Option<AcmeRequest>, AcmeError> {
    for _ in 0..TRIES {
        let current = store.acme_request(domain).await?;
        let next = change(current.as_ref());
        if next == current
            || store
                .swap_acme_request(domain, current.as_ref(), next.clone())
                .await?
        {
            return Ok(next);
        }
    }
    Err(StoreError::KeptChanging {
        what: format!("the ACME request of {domain}"),
    }
    .into())
}
