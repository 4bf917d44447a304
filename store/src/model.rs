//! The typed records Porter keeps: sites and their certificates.

use crate::b64;
use crate::domain::DomainName;
use crate::upstream::Upstream;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use std::fmt;

/// One served domain name and what serves it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Site {
    /// The name clients ask for (SNI and `Host`); exact or `*.` wildcard.
    pub domain: DomainName,
    /// Where its requests go.
    pub target: Target,
}

/// What a site's requests are handed to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A running server Porter forwards to.
    Upstream(Upstream),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Upstream(u) => write!(f, "{u}"),
        }
    }
}

/// Where a certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertSource {
    /// Given by the operator with `porter cert import`.
    Imported,
    /// Obtained by Porter over ACME.
    Acme,
}

impl fmt::Display for CertSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertSource::Imported => "imported",
            CertSource::Acme => "acme",
        })
    }
}

/// The certificate a site is served with, and what was read from its leaf.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertRecord {
    /// The site this certificate is served for.
    pub domain: DomainName,
    /// The chain in DER, leaf first.
    #[serde(with = "b64::list")]
    pub chain: Vec<Vec<u8>>,
    /// The leaf's private key.
    pub key: PrivateKey,
    /// DNS names of the leaf (subjectAltName, or the CN when it has none).
    pub names: Vec<String>,
    /// The leaf's issuer, as a distinguished name.
    pub issuer: String,
    /// The leaf's serial number in lowercase hex.
    pub serial: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Imported or obtained over ACME.
    pub source: CertSource,
}

impl CertRecord {
    /// Whether the certificate is within its validity period at `now` (Unix seconds).
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// The encoding of a private key's DER, as found in its PEM block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyFormat {
    /// `PRIVATE KEY` (any algorithm).
    Pkcs8,
    /// `EC PRIVATE KEY`.
    Sec1,
    /// `RSA PRIVATE KEY`.
    Pkcs1,
}

/// A private key. Its `Debug` never shows the key material, so it cannot leak through logs.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrivateKey {
    format: KeyFormat,
    #[serde(with = "b64::bytes")]
    der: Vec<u8>,
}

impl PrivateKey {
    /// Wraps a key in the form rustls and the PEM parser use.
    pub fn from_der(key: &PrivateKeyDer<'_>) -> Option<Self> {
        let (format, der) = match key {
            PrivateKeyDer::Pkcs8(k) => (KeyFormat::Pkcs8, k.secret_pkcs8_der()),
            PrivateKeyDer::Sec1(k) => (KeyFormat::Sec1, k.secret_sec1_der()),
            PrivateKeyDer::Pkcs1(k) => (KeyFormat::Pkcs1, k.secret_pkcs1_der()),
            _ => return None,
        };
        Some(PrivateKey {
            format,
            der: der.to_vec(),
        })
    }

    /// The key in the form rustls takes.
    pub fn to_der(&self) -> PrivateKeyDer<'static> {
        let der = self.der.clone();
        match self.format {
            KeyFormat::Pkcs8 => PrivatePkcs8KeyDer::from(der).into(),
            KeyFormat::Sec1 => PrivateSec1KeyDer::from(der).into(),
            KeyFormat::Pkcs1 => PrivatePkcs1KeyDer::from(der).into(),
        }
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({:?}, <redacted>)", self.format)
    }
}
