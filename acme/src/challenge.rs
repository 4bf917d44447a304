//! Challenge material put in the store for the edge to answer with: the HTTP-01 key
//! authorization, and the TLS-ALPN-01 certificate (RFC 8737 section 3: self-signed, the domain
//! as its only SAN, and the critical acmeIdentifier extension holding SHA-256 of the key
//! authorization).

use crate::error::AcmeError;
use porter_store::{DomainName, Http01Challenge, PrivateKey, TlsAlpnChallenge};
use rcgen::{CertificateParams, CustomExtension, KeyPair};

pub(crate) fn http01(domain: &DomainName, token: &str, key_authorization: &str) -> Http01Challenge {
    Http01Challenge {
        token: token.to_owned(),
        domain: domain.clone(),
        key_authorization: key_authorization.to_owned(),
    }
}

pub(crate) fn tls_alpn01(
    domain: &DomainName,
    digest: &[u8],
) -> Result<TlsAlpnChallenge, AcmeError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(vec![domain.to_string()])?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key)?;
    let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Ok(TlsAlpnChallenge {
        domain: domain.clone(),
        cert: cert.der().to_vec(),
        key: PrivateKey::from_der(&key_der)
            .ok_or_else(|| AcmeError::Key("unsupported key encoding".into()))?,
    })
}
