//! The whole key schema of the embedded database in one place.
//!
//! One sled tree per kind of record (store-wide single records live in [`META`]); values are
//! JSON. A new kind gets its tree here, and an incompatible change of any value's shape bumps
//! [`SCHEMA_VERSION`] (a new optional field with a serde default does not).

/// Tree of store-wide facts.
pub(crate) const META: &str = "meta";
/// Key in [`META`] holding the schema version as a big-endian u32.
pub(crate) const SCHEMA_KEY: &[u8] = b"schema_version";
/// The schema this build reads and writes.
pub(crate) const SCHEMA_VERSION: u32 = 1;
/// Tree of [`crate::Site`] records, keyed by domain.
pub(crate) const SITES: &str = "sites";
/// Tree of [`crate::CertRecord`] records, keyed by the domain of the site they serve.
pub(crate) const CERTS: &str = "certs";
/// Tree of [`crate::AcmeAccount`] records, keyed by directory URL.
pub(crate) const ACME_ACCOUNTS: &str = "acme_accounts";
/// Tree of [`crate::AcmeState`] records, keyed by domain.
pub(crate) const ACME_STATES: &str = "acme_states";
/// Tree of [`crate::AcmeRequest`] records, keyed by domain.
pub(crate) const ACME_REQUESTS: &str = "acme_requests";
/// Tree of [`crate::Http01Challenge`] records, keyed by token.
pub(crate) const HTTP01: &str = "challenges_http01";
/// Tree of [`crate::TlsAlpnChallenge`] records, keyed by domain.
pub(crate) const TLS_ALPN01: &str = "challenges_tls_alpn01";
/// Tree of [`crate::App`] records, keyed by app id.
pub(crate) const APPS: &str = "apps";
/// Tree of [`crate::OcspRecord`] records, keyed by domain.
pub(crate) const OCSP: &str = "ocsp";
/// Tree of [`crate::DnsZone`] records, keyed by the zone's apex.
pub(crate) const DNS_ZONES: &str = "dns_zones";
/// Tree of on-demand allow rules: the rule ([`crate::DomainName`]) as key and value.
pub(crate) const ON_DEMAND_RULES: &str = "on_demand_rules";
/// Tree of [`crate::Purge`] records, keyed by id (which starts with its time, so in order).
pub(crate) const PURGES: &str = "cache_purges";
/// Key in [`META`] holding the [`crate::TicketKeys`].
pub(crate) const TICKET_KEYS: &str = "tls_ticket_keys";
/// Tree of [`crate::Node`] records, keyed by name (etcd only: each on its node's lease).
pub(crate) const NODES: &str = "nodes";
/// Key in [`META`] holding the secret the nodes of a fleet share (etcd only).
pub(crate) const FLEET_SECRET: &str = "fleet_secret";
