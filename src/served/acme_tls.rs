//! TLS-ALPN-01 (RFC 8737): a validator offering ALPN `acme-tls/1` gets the challenge
//! certificate the ACME worker stored for the name, in a configuration made for it when the
//! challenge was read from the store (see `challenges`).

use porter_store::TlsAlpnChallenge;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::ServerConfig;
use std::sync::Arc;

/// The ALPN protocol of TLS-ALPN-01 validations.
pub(crate) const ALPN_ACME_TLS: &[u8] = b"acme-tls/1";

/// A configuration serving the challenge certificate of `challenge`, if its key loads.
pub(crate) fn config(challenge: TlsAlpnChallenge) -> Option<Arc<ServerConfig>> {
    let name = &challenge.domain;
    let provider = Arc::new(crate::runtime::crypto::provider());
    // Built without the certificate checks of `with_single_cert` and `CertifiedKey::from_der`:
    // they refuse the critical acmeIdentifier extension that RFC 8737 requires.
    let signing_key = provider
        .key_provider
        .load_private_key(challenge.key.to_der())
        // Read again at every look a client's validation causes: one line every 10 s.
        .map_err(|e| {
            crate::runtime::log_limit::limited!(error, site = name.as_str(), "stored TLS-ALPN-01 key does not load", error = %e)
        })
        .ok()?;
    let key = CertifiedKey::new(vec![challenge.cert.into()], signing_key);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .ok()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    config.alpn_protocols = vec![ALPN_ACME_TLS.to_vec()];
    Some(Arc::new(config))
}
