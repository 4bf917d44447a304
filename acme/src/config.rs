//! What the ACME worker is told at start: which CA, which account details, which challenge and
//! key types. Parsing here gives the operator one clear error per bad value.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Let's Encrypt's production directory, the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory, for trials.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

pub use porter_store::ChallengeKind;

/// The key type of certificates Porter requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA on P-256 (the default: small and fast).
    EcdsaP256,
    /// RSA with a 2048-bit modulus, for old clients.
    Rsa2048,
}

impl FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ecdsa-p256" | "p256" | "ecdsa" => Ok(KeyType::EcdsaP256),
            "rsa-2048" | "rsa2048" | "rsa" => Ok(KeyType::Rsa2048),
            other => Err(format!("{other:?}: expected ecdsa-p256 or rsa-2048")),
        }
    }
}

/// External Account Binding credentials (RFC 8555 section 7.3.4), for CAs that need them.
#[derive(Clone)]
pub struct Eab {
    /// The key identifier the CA gave.
    pub kid: String,
    /// The HMAC key, decoded from the base64url the CA gave.
    pub hmac: Vec<u8>,
}

impl fmt::Debug for Eab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Eab({}, <redacted>)", self.kid)
    }
}

/// A CA tried when orders at the one before it keep failing.
#[derive(Debug, Clone)]
pub struct Fallback {
    /// Its directory URL.
    pub directory: String,
    /// External Account Binding, when it requires it.
    pub eab: Option<Eab>,
}

/// Everything the worker needs to know about its CA.
#[derive(Debug, Clone)]
pub struct Config {
    /// The CA's directory URL.
    pub directory: String,
    /// Contact URIs for the account (`mailto:...`).
    pub contact: Vec<String>,
    /// A PEM root to trust for the CA's own HTTPS, instead of the system's roots.
    pub ca_root: Option<PathBuf>,
    /// External Account Binding, when the CA requires it.
    pub eab: Option<Eab>,
    /// The challenge type tried first.
    pub challenge: ChallengeKind,
    /// The key type of new certificates.
    pub key_type: KeyType,
    /// The ACME profile to ask for in new orders (`newOrder` `profile`), if any.
    pub profile: Option<String>,
    /// Orders in flight at once.
    pub max_concurrent_orders: usize,
    /// Requests per second sent to the CA, all orders together.
    pub requests_per_second: u32,
    /// The CAs tried in turn after this one, each once a site's orders at the one before have
    /// failed `fallback_after` times; the next renewal starts again from this one.
    pub fallbacks: Vec<Fallback>,
    /// Failed attempts at one CA before the next is tried.
    pub fallback_after: u32,
}

impl Config {
    /// One configuration per CA, in the order they are tried: this one, then its fallbacks.
    pub(crate) fn per_ca(&self) -> Vec<Config> {
        let first = Config {
            fallbacks: Vec::new(),
            ..self.clone()
        };
        let rest = self.fallbacks.iter().map(|f| Config {
            directory: f.directory.clone(),
            eab: f.eab.clone(),
            ..first.clone()
        });
        std::iter::once(first.clone()).chain(rest).collect()
    }

    /// The host (and port) of the CA's directory URL: how `porter status` names the CA.
    pub fn ca_host(&self) -> String {
        ca_host(&self.directory)
    }
}

/// The authority of a URL (`https://acme.example:14000/dir` -> `acme.example:14000`); a bare
/// authority stays as it is.
pub(crate) fn ca_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?', '#'])
        .next()
        .unwrap_or(rest)
        .to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ca_is_named_by_its_directory_host() {
        assert_eq!(
            super::ca_host(super::LETS_ENCRYPT),
            "acme-v02.api.letsencrypt.org"
        );
        assert_eq!(
            super::ca_host("https://127.0.0.1:14000/dir"),
            "127.0.0.1:14000"
        );
        assert_eq!(super::ca_host("weird"), "weird");
    }
}
