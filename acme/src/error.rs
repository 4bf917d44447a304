//! What an ACME attempt can fail with, phrased for `porter cert list`.

use porter_store::{InvalidInput, StoreError};

/// Why obtaining a certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The CA answered with an error, or could not be reached: which CA (its directory URL),
    /// at which step, and the whole cause chain.
    #[error("CA {directory}: {step}: {}", causes(source))]
    Protocol {
        directory: String,
        /// `account`, `order`, `authorization`, `challenge`, `finalize`, `download`, ...
        step: &'static str,
        source: instant_acme::Error,
    },
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

/// An error and every cause under it, `: `-separated (`client error (Connect): tcp connect
/// error: Connection refused (os error 111)`), without a cause that repeats the one above.
pub(crate) fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        next = cause.source();
    }
    text
}

/// Names the CA and the step on an instant-acme result.
pub(crate) trait AtStep<T> {
    fn at(self, directory: &str, step: &'static str) -> Result<T, AcmeError>;
}

impl<T> AtStep<T> for Result<T, instant_acme::Error> {
    fn at(self, directory: &str, step: &'static str) -> Result<T, AcmeError> {
        self.map_err(|source| AcmeError::Protocol {
            directory: directory.to_owned(),
            step,
            source,
        })
    }
}

impl AcmeError {
    fn problem_type(&self) -> Option<&str> {
        match self {
            AcmeError::Protocol {
                source: instant_acme::Error::Api(problem),
                ..
            } => problem.r#type.as_deref(),
            _ => None,
        }
    }

    /// Whether the CA said to slow down (`rateLimited`, RFC 8555 section 6.7).
    pub(crate) fn is_rate_limited(&self) -> bool {
        self.problem_type() == Some("urn:ietf:params:acme:error:rateLimited")
    }

    /// Whether the CA no longer knows the account, or has deactivated it (as after a CA
    /// reset): a new account is the way on.
    pub(crate) fn account_gone(&self) -> bool {
        let deactivated = matches!(self, AcmeError::Protocol {
            source: instant_acme::Error::Api(problem),
            ..
        } if problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:unauthorized")
            && problem.detail.as_deref().is_some_and(|d| d.to_ascii_lowercase().contains("deactivated")));
        deactivated || self.problem_type() == Some("urn:ietf:params:acme:error:accountDoesNotExist")
    }
}

impl From<rcgen::Error> for AcmeError {
    fn from(e: rcgen::Error) -> Self {
        AcmeError::Key(e.to_string())
    }
}
