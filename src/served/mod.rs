//! The served view: what the edge serves, in memory, kept current from the store's changes.
//! The [`snapshot`] of sites and certificates the hot path reads and its follower
//! ([`reload`]), the ACME challenge answers ([`challenges`], with the TLS-ALPN-01
//! configurations of [`acme_tls`]), the on-demand TLS rules ([`on_demand`]), and the expiry
//! warnings read from the snapshot ([`expiry`]). It may use the store, `runtime` and `balance` (a site's upstreams) only.

pub(crate) mod acme_tls;
pub(crate) mod challenges;
pub(crate) mod expiry;
pub(crate) mod on_demand;
pub(crate) mod reload;
pub(crate) mod snapshot;
