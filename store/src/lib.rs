//! `porter-store`: Porter's typed model and its persistence.
//!
//! # Layout
//! - [`model`]: the records (sites, their targets, certificates).
//! - [`DomainName`] and [`Upstream`]: validated names and addresses; every input passes through
//!   them at the boundary, so nothing invalid is ever stored.
//! - [`CertRecord::from_pem`]: checks a chain and key before they are stored.
//! - [`Store`]: the backend-neutral interface with its change notifications; [`SledStore`] is
//!   the embedded backend.
//!
//! The store knows nothing of HTTP or TLS: the edge and the ACME worker read it and react to
//! [`Change`]s.

mod b64;
mod certificate;
mod domain;
mod error;
mod keys;
pub mod model;
mod sled_store;
mod upstream;

pub use domain::DomainName;
pub use error::{InvalidInput, StoreError};
pub use model::{CertRecord, CertSource, PrivateKey, Site, Target};
pub use sled_store::SledStore;
pub use upstream::Upstream;

use tokio::sync::broadcast;

/// A committed change: which record to read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The site with this domain was added, changed or removed.
    Site(DomainName),
    /// The certificate of this site was stored or removed.
    Cert(DomainName),
}

/// The persistence interface every backend implements; the conformance suite in
/// `store/tests/conformance.rs` runs over each.
///
/// Every write is durable when it returns, and is announced to subscribers after it commits.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The site for `domain`, if any.
    async fn site(&self, domain: &DomainName) -> Result<Option<Site>, StoreError>;
    /// Every site, ordered by domain.
    async fn sites(&self) -> Result<Vec<Site>, StoreError>;
    /// Adds a new site; fails with [`StoreError::AlreadyExists`] when the domain has one.
    async fn add_site(&self, site: Site) -> Result<(), StoreError>;
    /// Removes a site together with its certificate; fails with [`StoreError::NotFound`].
    async fn remove_site(&self, domain: &DomainName) -> Result<(), StoreError>;
    /// The certificate of the site `domain`, if any.
    async fn cert(&self, domain: &DomainName) -> Result<Option<CertRecord>, StoreError>;
    /// Every certificate, ordered by domain.
    async fn certs(&self) -> Result<Vec<CertRecord>, StoreError>;
    /// Stores (or replaces) the certificate of an existing site; fails with
    /// [`StoreError::NotFound`] when there is no such site.
    async fn put_cert(&self, cert: CertRecord) -> Result<(), StoreError>;
    /// A receiver of every change committed from now on. A receiver that lags behind gets
    /// `RecvError::Lagged` and must re-read everything.
    fn subscribe(&self) -> broadcast::Receiver<Change>;
}
