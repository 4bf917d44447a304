//! `porter-store`: Porter's typed model and its persistence.
//!
//! # Layout
//! - [`model`]: the records (sites, their targets, certificates).
//! - [`DomainName`] and [`Upstream`]: validated names and addresses ([`Balancing`]: a site's
//!   several upstreams); every input passes through
//!   them at the boundary, so nothing invalid is ever stored.
//! - [`CertRecord::from_pem`]: checks a chain and key before they are stored.
//! - [`Store`]: the backend-neutral interface with its change notifications; [`SledStore`] is
//!   the embedded backend, [`EtcdStore`] the one a fleet of edges shares.
//!
//! - [`Recover`]: the workspace's one policy for poisoned locks.
//!
//! The store knows nothing of HTTP or TLS: the edge and the ACME worker read it and react to
//! [`Change`]s.

mod app;
mod b64;
mod balancing;
mod cache;
mod certificate;
mod clock;
mod codec;
mod dns_zone;
mod domain;
mod error;
mod etcd_store;
mod features;
mod keys;
mod lock;
pub mod model;
mod node;
mod on_demand;
mod poison;
mod sled_store;
mod upstream;
mod waf;

pub use app::{App, AppId, AppListen, HealthCheck, RestartPolicy};
pub use balancing::{
    ActiveCheck, Balancing, Policy, StatusMatch, Weighted, MAX_UPSTREAMS, MAX_WEIGHT,
};
pub use cache::{
    CacheSettings, Purge, PurgeScope, DEFAULT_CACHE_OBJECT, MAX_CACHE_OBJECT, PURGE_KEPT,
};
pub use clock::{unix_now, unix_now_ms};
pub use dns_zone::{DnsZone, TsigAlgorithm};
pub use domain::DomainName;
pub use error::{InvalidInput, StoreError};
pub use etcd_store::{EtcdOptions, EtcdStore};
pub use features::{
    Canonical, Credential, Features, Redirect, ERROR_PAGE_STATUSES, MAX_ERROR_PAGE,
};
pub use lock::Lock;
pub use model::{
    AcmeAccount, AcmeRequest, AcmeState, AriWindow, CertRecord, CertSource, ChallengeKind,
    DnsTxtRecord, Http01Challenge, OcspRecord, OcspResponse, OcspStatus, PendingOrder, PrivateKey,
    SecretBytes, SecretText, Site, Target, TicketKey, TicketKeys, TlsAlpnChallenge, HSTS_ONE_YEAR,
};
pub use node::Node;
pub use on_demand::{on_demand_allows, validate_on_demand_rule};
pub use poison::Recover;
pub use sled_store::{SledOptions, SledStore};
pub use upstream::Upstream;
pub use waf::{
    WafExclusion, WafMode, WafSettings, DEFAULT_WAF_BODY_LIMIT, DEFAULT_WAF_THRESHOLD,
    MAX_WAF_BODY_LIMIT,
};

use tokio::sync::broadcast;

/// A committed change: which record to read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The site with this domain was added, changed or removed.
    Site(DomainName),
    /// The certificate of this site was stored or removed.
    Cert(DomainName),
    /// The ACME state or request of this site changed.
    Acme(DomainName),
    /// The OCSP record of this site changed.
    Ocsp(DomainName),
    /// The TLS ticket keys changed.
    TicketKeys,
    /// The app with this id was added, changed or removed.
    App(AppId),
    /// A challenge answer (HTTP-01 or TLS-ALPN-01) of this domain was stored or removed.
    Challenges(DomainName),
    /// The DNS zone with this apex was added, changed or removed.
    DnsZone(DomainName),
    /// The on-demand allow rules changed.
    OnDemandRules,
    /// A cache purge was asked for (see [`Store::purges`]).
    Purges,
    /// A node of the fleet joined, left or moved.
    Nodes,
    /// What changed is not known (a store that lost track of its changes, as a broken etcd
    /// watch whose history was compacted): read everything again, as after a missed change.
    Everything,
}

/// How the store is doing, for logs and status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// The failed write the store has not recovered from yet (writes fail until it has).
    pub failure: Option<String>,
    /// Operations that missed their deadline since the store was opened.
    pub stalled: u64,
    /// Since when (unix seconds) a store on the network has not answered; `None` while it
    /// does.
    pub unreachable_since: Option<i64>,
}

/// The persistence interface every backend implements; the conformance suite in
/// `store/tests/conformance.rs` runs over each.
///
/// Every write is durable when it returns, and is announced to subscribers after it commits.
/// No operation waits for ever: one that misses the backend's deadline fails with
/// [`StoreError::Stalled`].
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The site for `domain`, if any.
    async fn site(&self, domain: &DomainName) -> Result<Option<Site>, StoreError>;
    /// Every site, ordered by domain.
    async fn sites(&self) -> Result<Vec<Site>, StoreError>;
    /// Adds a new site; fails with [`StoreError::AlreadyExists`] when the domain has one.
    async fn add_site(&self, site: Site) -> Result<(), StoreError>;
    /// Replaces an existing site; fails with [`StoreError::NotFound`] when there is none.
    async fn update_site(&self, site: Site) -> Result<(), StoreError>;
    /// Removes a site together with its certificate; fails with [`StoreError::NotFound`].
    async fn remove_site(&self, domain: &DomainName) -> Result<(), StoreError>;
    /// The certificate of the site `domain`, if any.
    async fn cert(&self, domain: &DomainName) -> Result<Option<CertRecord>, StoreError>;
    /// Every certificate, ordered by domain.
    async fn certs(&self) -> Result<Vec<CertRecord>, StoreError>;
    /// Up to `limit` certificates of the domains after `after` (from the first when `None`),
    /// ordered by domain: a page, for readers that need not hold every certificate at once.
    async fn certs_after(
        &self,
        after: Option<&DomainName>,
        limit: usize,
    ) -> Result<Vec<CertRecord>, StoreError>;
    /// Stores (or replaces) the certificate of an existing site; fails with
    /// [`StoreError::NotFound`] when there is no such site.
    async fn put_cert(&self, cert: CertRecord) -> Result<(), StoreError>;
    /// The ACME account for a CA directory, if one was created.
    async fn account(&self, directory: &str) -> Result<Option<AcmeAccount>, StoreError>;
    /// Every ACME account (one per CA directory).
    async fn accounts(&self) -> Result<Vec<AcmeAccount>, StoreError>;
    /// Stores (or replaces) the account for its directory.
    async fn put_account(&self, account: AcmeAccount) -> Result<(), StoreError>;
    /// The ACME state of the site `domain`, if any.
    async fn acme_state(&self, domain: &DomainName) -> Result<Option<AcmeState>, StoreError>;
    /// Every site's ACME state, ordered by domain.
    async fn acme_states(&self) -> Result<Vec<(DomainName, AcmeState)>, StoreError>;
    /// Stores the ACME state of an existing site; fails with [`StoreError::NotFound`] otherwise.
    async fn put_acme_state(&self, domain: &DomainName, state: AcmeState)
        -> Result<(), StoreError>;
    /// What was asked of the ACME worker for the site `domain`, if anything.
    async fn acme_request(&self, domain: &DomainName) -> Result<Option<AcmeRequest>, StoreError>;
    /// Every pending ACME request, ordered by domain.
    async fn acme_requests(&self) -> Result<Vec<(DomainName, AcmeRequest)>, StoreError>;
    /// Replaces the ACME request of `domain` with `new` (`None` removes it) if it is still
    /// `expected`; returns whether it was. Fails with [`StoreError::NotFound`] when there is no
    /// such site.
    async fn swap_acme_request(
        &self,
        domain: &DomainName,
        expected: Option<&AcmeRequest>,
        new: Option<AcmeRequest>,
    ) -> Result<bool, StoreError>;
    /// Stores a certificate obtained over ACME and the site's new ACME state together; fails
    /// with [`StoreError::NotFound`] when the site was removed meanwhile.
    async fn put_issued(&self, cert: CertRecord, state: AcmeState) -> Result<(), StoreError>;
    /// Stores an HTTP-01 challenge response.
    async fn put_http01(&self, challenge: Http01Challenge) -> Result<(), StoreError>;
    /// Stores a TLS-ALPN-01 challenge certificate.
    async fn put_tls_alpn(&self, challenge: TlsAlpnChallenge) -> Result<(), StoreError>;
    /// Every challenge answer in flight (a handful: one per validation under way).
    async fn challenges(&self)
        -> Result<(Vec<Http01Challenge>, Vec<TlsAlpnChallenge>), StoreError>;
    /// Removes every challenge of `domain`.
    async fn remove_challenges(&self, domain: &DomainName) -> Result<(), StoreError>;
    /// The app `id`, if any.
    async fn app(&self, id: &AppId) -> Result<Option<App>, StoreError>;
    /// Every app, ordered by id.
    async fn apps(&self) -> Result<Vec<App>, StoreError>;
    /// Adds an app; fails with [`StoreError::AlreadyExists`] when the id is taken.
    async fn add_app(&self, app: App) -> Result<(), StoreError>;
    /// Replaces an existing app; fails with [`StoreError::NotFound`] when there is none.
    async fn update_app(&self, app: App) -> Result<(), StoreError>;
    /// Removes an app no site uses; fails with [`StoreError::InUse`] otherwise.
    async fn remove_app(&self, id: &AppId) -> Result<(), StoreError>;
    /// The OCSP record of the site `domain`, if any.
    async fn ocsp(&self, domain: &DomainName) -> Result<Option<OcspRecord>, StoreError>;
    /// Every site's OCSP record, ordered by domain.
    async fn ocsp_records(&self) -> Result<Vec<(DomainName, OcspRecord)>, StoreError>;
    /// Stores the OCSP record of an existing site; fails with [`StoreError::NotFound`] otherwise.
    async fn put_ocsp(&self, domain: &DomainName, record: OcspRecord) -> Result<(), StoreError>;
    /// The TLS session ticket keys, if any were made.
    async fn ticket_keys(&self) -> Result<Option<TicketKeys>, StoreError>;
    /// Replaces the TLS session ticket keys.
    async fn put_ticket_keys(&self, keys: TicketKeys) -> Result<(), StoreError>;
    /// Every DNS zone Porter may update for DNS-01, ordered by apex.
    async fn dns_zones(&self) -> Result<Vec<DnsZone>, StoreError>;
    /// Adds or replaces the zone with its apex (checked first with [`DnsZone::validate`]).
    async fn put_dns_zone(&self, zone: DnsZone) -> Result<(), StoreError>;
    /// Removes the zone with apex `zone`; fails with [`StoreError::NotFound`] when there is none.
    async fn remove_dns_zone(&self, zone: &DomainName) -> Result<(), StoreError>;
    /// The on-demand allow rules (see [`on_demand_allows`]), ordered.
    async fn on_demand_rules(&self) -> Result<Vec<DomainName>, StoreError>;
    /// Adds an on-demand allow rule (checked with [`validate_on_demand_rule`]); adding one that
    /// exists changes nothing.
    async fn allow_on_demand(&self, rule: DomainName) -> Result<(), StoreError>;
    /// Removes an on-demand allow rule; fails with [`StoreError::NotFound`] when there is none.
    async fn disallow_on_demand(&self, rule: &DomainName) -> Result<(), StoreError>;
    /// Takes the lock `name` across every process sharing this store, unless another holds it
    /// (`None`). Held until the [`Lock`] is dropped or lost; always granted on a store only
    /// one process opens.
    async fn try_lock(&self, name: &str) -> Result<Option<Lock>, StoreError>;
    /// Records this process as `node` of the fleet for as long as it runs (on etcd: on its
    /// lease, so a node that dies leaves the list one lease later). Fails with
    /// [`StoreError::AlreadyExists`] when a running node has the name, unless `replacing` (a
    /// successor taking over from its predecessor). A store only one process opens has no
    /// fleet: nothing is recorded.
    async fn join(&self, node: Node, replacing: bool) -> Result<(), StoreError>;
    /// The nodes running, by name (none on a store only one process opens).
    async fn nodes(&self) -> Result<Vec<Node>, StoreError>;
    /// The secret the nodes of a fleet share (to trust what they forward to each other):
    /// `proposed` when this is the first node to ask, else the one stored; `None` on a store
    /// only one process opens.
    async fn fleet_secret(&self, proposed: SecretBytes) -> Result<Option<SecretBytes>, StoreError>;
    /// Records a purge (checked with [`PurgeScope::validate`]) for every node to apply, and
    /// forgets those older than [`PURGE_KEPT`].
    async fn put_purge(&self, purge: Purge) -> Result<(), StoreError>;
    /// The purges kept, oldest first.
    async fn purges(&self) -> Result<Vec<Purge>, StoreError>;
    /// A receiver of every change committed from now on. A receiver that lags behind gets
    /// `RecvError::Lagged` and must re-read everything.
    fn subscribe(&self) -> broadcast::Receiver<Change>;
    /// The store's failures and stalls so far.
    fn health(&self) -> StoreHealth;
}
