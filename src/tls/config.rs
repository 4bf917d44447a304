//! The rustls server configuration: TLS 1.3 and 1.2 only, the suites and groups of
//! [`crypto::provider`], ALPN `h2` then `http/1.1`, resumption by tickets and a session cache.

use super::resolver::SnapshotResolver;
use super::tickets::Keyring;
use crate::runtime::crypto;
use crate::served::reload::LiveSites;
use rustls::ServerConfig;
use std::sync::Arc;

/// ALPN protocols offered, in order of preference.
pub(crate) const ALPN_H2: &[u8] = b"h2";
pub(crate) const ALPN_HTTP11: &[u8] = b"http/1.1";

/// How many TLS 1.2 session IDs / TLS 1.3 stateful sessions are kept for resumption.
const SESSION_CACHE_SIZE: usize = 16_384;

/// Builds the server configuration that resolves certificates from the sites being served.
pub(crate) fn server_config(
    sites: Arc<LiveSites>,
    default_sni: Option<String>,
    tickets: Arc<Keyring>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(crypto::provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SnapshotResolver::new(sites, default_sni)));
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    // TLS 1.2 session IDs (and TLS 1.3 when tickets are off) in a bounded cache; tickets for
    // both versions under the store's rotating keys.
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer = tickets;
    // One TLS 1.3 ticket per handshake, as Go's TLS sends: each resumption brings the next, and
    // every ticket costs an encryption and random bytes on a path that should be cheap.
    config.send_tls13_tickets = 1;
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}
