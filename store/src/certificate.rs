//! Reading and checking certificate chains and keys before they are stored: the chain parses,
//! the key matches the leaf, the leaf's names cover the site, and it has not expired.

use crate::domain::DomainName;
use crate::error::InvalidInput;
use crate::model::{CertRecord, CertSource, PrivateKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

fn invalid(reason: impl Into<String>) -> InvalidInput {
    InvalidInput::Certificate(reason.into())
}

impl CertRecord {
    /// Checks a PEM chain (leaf first) and PEM private key for `domain` at `now` (Unix seconds).
    pub fn from_pem(
        domain: &DomainName,
        chain_pem: &[u8],
        key_pem: &[u8],
        now: i64,
        source: CertSource,
    ) -> Result<Self, InvalidInput> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("the chain is not valid PEM: {e}")))?;
        let mut keys = PrivateKeyDer::pem_slice_iter(key_pem);
        let key = match keys.next() {
            Some(Ok(key)) => key,
            Some(Err(e)) => return Err(invalid(format!("the key is not valid PEM: {e}"))),
            None => return Err(invalid("no private key found in the key PEM")),
        };
        if keys.next().is_some() {
            return Err(invalid("the key PEM holds more than one private key"));
        }
        CertRecord::from_der(domain, chain, &key, now, source)
    }

    /// Checks a DER chain (leaf first) and private key for `domain` at `now` (Unix seconds).
    pub fn from_der(
        domain: &DomainName,
        chain: Vec<Vec<u8>>,
        key: &PrivateKeyDer<'_>,
        now: i64,
        source: CertSource,
    ) -> Result<Self, InvalidInput> {
        let leaf = parse_chain(&chain)?;
        check_key_matches(key, &leaf)?;
        let names = names_covering(&leaf, domain)?;
        let (not_before, not_after) = validity_at(&leaf, now)?;
        Ok(CertRecord {
            domain: domain.clone(),
            names,
            issuer: leaf.issuer().to_string(),
            serial: leaf
                .tbs_certificate
                .raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            not_before,
            not_after,
            source,
            ca: None,
            key: PrivateKey::from_der(key)
                .ok_or_else(|| invalid("unsupported private key encoding"))?,
            chain,
        })
    }
}

/// Parses every certificate of `chain` (leaf first) and returns the leaf.
fn parse_chain(chain: &[Vec<u8>]) -> Result<X509Certificate<'_>, InvalidInput> {
    let leaf_der = chain
        .first()
        .ok_or_else(|| invalid("no certificate found in the chain PEM"))?;
    for (i, der) in chain.iter().enumerate() {
        X509Certificate::from_der(der).map_err(|e| {
            invalid(format!(
                "certificate {} of the chain does not parse: {e}",
                i + 1
            ))
        })?;
    }
    let (_, leaf) = X509Certificate::from_der(leaf_der).map_err(|e| invalid(e.to_string()))?;
    Ok(leaf)
}

/// Checks that `key` is a key Porter can sign with and the one of `leaf`'s public key.
fn check_key_matches(
    key: &PrivateKeyDer<'_>,
    leaf: &X509Certificate<'_>,
) -> Result<(), InvalidInput> {
    let signing_key = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|_| invalid("the private key is not a supported ECDSA, RSA or Ed25519 key"))?;
    let public = signing_key
        .public_key()
        .ok_or_else(|| invalid("cannot derive the public key of the private key"))?;
    if public.as_ref() != leaf.public_key().raw {
        return Err(invalid(
            "the private key does not match the first certificate of the chain (the leaf must come first)",
        ));
    }
    Ok(())
}

/// The names of `leaf`, when one of them covers `domain`.
fn names_covering(
    leaf: &X509Certificate<'_>,
    domain: &DomainName,
) -> Result<Vec<String>, InvalidInput> {
    let names = leaf_names(leaf);
    if !names.iter().any(|n| name_covers(n, domain.as_str())) {
        return Err(invalid(format!(
            "the certificate is for {} and does not cover {domain}",
            if names.is_empty() {
                "no DNS name".to_owned()
            } else {
                names.join(", ")
            }
        )));
    }
    Ok(names)
}

/// `leaf`'s notBefore and notAfter (Unix seconds), when it has not expired at `now`.
fn validity_at(leaf: &X509Certificate<'_>, now: i64) -> Result<(i64, i64), InvalidInput> {
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    if not_after <= now {
        return Err(invalid(format!(
            "the certificate expired at {} (Unix time {not_after})",
            leaf.validity().not_after
        )));
    }
    Ok((not_before, not_after))
}

impl CertRecord {
    /// The leaf's key type as an operator names it: `ECDSA P-256`, `RSA 2048`, `Ed25519`.
    pub fn key_type(&self) -> String {
        use x509_parser::public_key::PublicKey;
        let Some((_, leaf)) = self
            .chain
            .first()
            .and_then(|der| X509Certificate::from_der(der).ok())
        else {
            return "unknown".into();
        };
        let spki = leaf.public_key();
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
            Ok(PublicKey::EC(_)) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|oid| oid.to_id_string());
                match curve.as_deref() {
                    Some("1.2.840.10045.3.1.7") => "ECDSA P-256".into(),
                    Some("1.3.132.0.34") => "ECDSA P-384".into(),
                    Some("1.3.132.0.35") => "ECDSA P-521".into(),
                    _ => "ECDSA".into(),
                }
            }
            _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => "Ed25519".into(),
            _ => "unknown".into(),
        }
    }
}

/// The DNS names a leaf is valid for: its subjectAltName entries, or its CN when it has none.
fn leaf_names(leaf: &X509Certificate<'_>) -> Vec<String> {
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        return san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                _ => None,
            })
            .collect();
    }
    leaf.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_ascii_lowercase))
        .collect()
}

/// Whether a certificate name covers a site's domain: equal, or a certificate wildcard `*.x`
/// covering exactly one more label. A wildcard site needs the same wildcard in the certificate.
fn name_covers(cert_name: &str, domain: &str) -> bool {
    if cert_name.eq_ignore_ascii_case(domain) {
        return true;
    }
    match (cert_name.strip_prefix("*."), domain.split_once('.')) {
        (Some(suffix), Some((first, rest))) => first != "*" && rest.eq_ignore_ascii_case(suffix),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::name_covers;

    #[test]
    fn coverage() {
        assert!(name_covers("a.test", "a.test"));
        assert!(name_covers("*.a.test", "x.a.test"));
        assert!(name_covers("*.a.test", "*.a.test"));
        assert!(!name_covers("*.a.test", "a.test"));
        assert!(!name_covers("*.a.test", "y.x.a.test"));
        assert!(!name_covers("a.test", "*.a.test"));
        assert!(!name_covers("b.test", "a.test"));
    }
}
