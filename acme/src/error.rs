//! What an ACME attempt can fail with, phrased for `porter cert list`.

use porter_store::{InvalidInput, StoreError};

/// Why obtaining a certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The CA answered with an error, or could not be reached.
    #[error("CA: {0}")]
    Protocol(#[from] instant_acme::Error),
    /// The CA could not validate the challenge.
    #[error("{kind} challenge failed: {detail}")]
    Challenge {
        /// The challenge type that failed.
        kind: &'static str,
        /// What the CA said.
        detail: String,
    },
    /// The order ended `invalid` for another reason.
    #[error("order failed: {0}")]
    Order(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The CA issued something Porter cannot serve.
    #[error("issued certificate: {0}")]
    Certificate(#[from] InvalidInput),
    /// Key or CSR generation failed.
    #[error("key generation: {0}")]
    Key(String),
    /// The worker's configuration cannot work (an unreadable CA root, no system roots).
    #[error("{0}")]
    Config(String),
}

impl AcmeError {
    /// Whether the CA said to slow down (`rateLimited`, RFC 8555 section 6.7).
    pub(crate) fn is_rate_limited(&self) -> bool {
        matches!(self, AcmeError::Protocol(instant_acme::Error::Api(p))
            if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:rateLimited"))
    }
}

impl From<rcgen::Error> for AcmeError {
    fn from(e: rcgen::Error) -> Self {
        AcmeError::Key(e.to_string())
    }
}
