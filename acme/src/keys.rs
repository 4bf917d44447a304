//! Certificate keys and CSRs: a new key for every certificate, ECDSA P-256 by default or RSA
//! 2048 (generated with the `rsa` crate, since ring cannot generate RSA keys; signing stays ring's).

use crate::config::KeyType;
use crate::error::AcmeError;
use porter_store::{DomainName, PrivateKey};
use rcgen::{CertificateParams, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A fresh key of `key_type`, as the store keeps it.
pub(crate) fn generate(key_type: KeyType) -> Result<PrivateKey, AcmeError> {
    let pkcs8 = match key_type {
        KeyType::EcdsaP256 => {
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?.serialize_der()
        }
        KeyType::Rsa2048 => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                .map_err(|e| AcmeError::Key(e.to_string()))?;
            key.to_pkcs8_der()
                .map_err(|e| AcmeError::Key(e.to_string()))?
                .as_bytes()
                .to_vec()
        }
    };
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8));
    PrivateKey::from_der(&der).ok_or_else(|| AcmeError::Key("unsupported key encoding".into()))
}

/// A CSR (DER) for `domain` signed with `key`.
pub(crate) fn csr(domain: &DomainName, key: &PrivateKey) -> Result<Vec<u8>, AcmeError> {
    let der = key.to_der();
    let signer = KeyPair::try_from(&der)?;
    let params = CertificateParams::new(vec![domain.to_string()])?;
    Ok(params.serialize_request(&signer)?.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_key_types_make_csrs() {
        let domain = DomainName::parse("k.test").unwrap();
        for key_type in [KeyType::EcdsaP256, KeyType::Rsa2048] {
            let key = generate(key_type).unwrap();
            let der = csr(&domain, &key).unwrap();
            assert!(der.len() > 100, "{key_type:?}");
        }
    }
}
