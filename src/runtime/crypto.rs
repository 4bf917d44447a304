//! The process's crypto provider, which every TLS session Porter serves uses (the server
//! configuration, the certificates loaded, TLS-ALPN-01 answers): aws-lc-rs, for its
//! post-quantum hybrid key exchange (X25519MLKEM768, what current browsers offer first) and
//! its faster signatures; the A/B against ring is in docs/performance.md.

use rustls::crypto::aws_lc_rs::{self, cipher_suite::*, kx_group};
use rustls::crypto::CryptoProvider;

/// The provider of the edge's TLS: the suites and groups listed rather than taken from the
/// provider's defaults, so that a provider update cannot quietly widen what is offered: ECDHE
/// (and its hybrid with ML-KEM) key exchange and AEAD ciphers only.
pub(crate) fn provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: vec![
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        // rustls takes the first of the client's groups that is listed here, so a client that
        // prefers the hybrid (and sends its key share, as browsers do) gets it, and one that
        // offers only classical groups is served as before, without a retry.
        kx_groups: vec![
            kx_group::X25519MLKEM768,
            kx_group::X25519,
            kx_group::SECP256R1,
            kx_group::SECP384R1,
        ],
        ..aws_lc_rs::default_provider()
    }
}
