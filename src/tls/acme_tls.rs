//! TLS-ALPN-01 (RFC 8737): a validator offering ALPN `acme-tls/1` gets the challenge
//! certificate the ACME worker stored for the name, in a configuration made for that one
//! handshake. Only validators take this path, so reading the store here costs the hot path
//! nothing.

use porter_store::{DomainName, Store};
use rustls::ServerConfig;
use std::sync::Arc;

/// The ALPN protocol of TLS-ALPN-01 validations.
pub(crate) const ALPN_ACME_TLS: &[u8] = b"acme-tls/1";

/// A configuration serving the challenge certificate for `name`, if one is stored.
pub(crate) async fn config(store: &dyn Store, name: &str) -> Option<Arc<ServerConfig>> {
    let domain = DomainName::parse(name).ok()?;
    let challenge = match store.tls_alpn(&domain).await {
        Ok(challenge) => challenge?,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the challenge store");
            return None;
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .ok()?
        .with_no_client_auth()
        .with_single_cert(vec![challenge.cert.into()], challenge.key.to_der())
        .map_err(
            |e| tracing::error!(%name, error = %e, "stored TLS-ALPN-01 certificate does not load"),
        )
        .ok()?;
    config.alpn_protocols = vec![ALPN_ACME_TLS.to_vec()];
    Some(Arc::new(config))
}
