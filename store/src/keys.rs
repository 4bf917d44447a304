//! The whole key schema of the embedded database in one place.
//!
//! One sled tree per kind of record, keyed by the site's domain name; values are JSON. Later kinds
//! (ACME accounts and order state, OCSP responses, challenge tokens, TLS ticket keys) get trees of
//! their own here, and a change of any value's shape bumps [`SCHEMA_VERSION`].

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
