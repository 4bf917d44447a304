//! The QUIC endpoint's configuration: the TCP listener's TLS (its certificate resolver, ticket
//! keys and session cache, so that a ticket from either transport resumes on the other) over
//! TLS 1.3 alone with ALPN `h3` and no 0-RTT, and QUIC's own bounds on what a client may hold.

use super::resumed::Watched;
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{TransportConfig, VarInt};
use std::sync::Arc;
use std::time::Duration;

/// The ALPN protocol of HTTP/3.
const ALPN_H3: &[u8] = b"h3";
/// Streams a client may have open at once, as on HTTP/2.
pub(super) const MAX_STREAMS: u32 = 256;
/// A connection with no packet for this long is closed (RFC 9000 section 10.1).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// What a client may send before Porter reads it, on one stream and on the connection, and what
/// Porter buffers for it unsent: each QUIC connection's memory is bounded by these.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 4 << 20;
const SEND_WINDOW: u64 = 4 << 20;

/// The QUIC server configuration beside `tcp`, the HTTPS listener's.
pub(crate) fn server_config(tcp: &rustls::ServerConfig) -> anyhow::Result<quinn::ServerConfig> {
    let mut tls = rustls::ServerConfig::builder_with_provider(tcp.crypto_provider().clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(tcp.cert_resolver.clone());
    tls.alpn_protocols = vec![ALPN_H3.to_vec()];
    // No 0-RTT: requests in it can be replayed by anyone who saw them.
    tls.max_early_data_size = 0;
    tls.session_storage = tcp.session_storage.clone();
    tls.ticketer = tcp.ticketer.clone();
    tls.send_tls13_tickets = tcp.send_tls13_tickets;
    tls.ignore_client_order = tcp.ignore_client_order;
    let crypto = QuicServerConfig::try_from(Arc::new(tls))?;
    let mut transport = TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS))
        // HTTP/3's control and QPACK streams, and room for grease.
        .max_concurrent_uni_streams(VarInt::from_u32(16))
        .max_idle_timeout(Some(IDLE_TIMEOUT.try_into()?))
        .keep_alive_interval(None)
        .stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW))
        .send_window(SEND_WINDOW);
    let crypto = Watched(Arc::new(crypto));
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server
        .transport_config(Arc::new(transport))
        // A client that changes address opens a new connection: no path to validate per packet.
        .migration(false)
        .retry_token_lifetime(Duration::from_secs(15))
        // New connections waiting for an edge thread, and their buffered packets.
        .max_incoming(4096)
        .incoming_buffer_size(64 << 10)
        .incoming_buffer_size_total(16 << 20);
    Ok(server)
}
