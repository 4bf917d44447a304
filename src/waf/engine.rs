//! What Porter asks of a WAF engine, so that one engine can be swapped for another: the
//! request as the engine sees it ([`Exchange`]) and the rules that matched ([`Match`]).

use std::net::SocketAddr;

/// A request as the engine inspects it.
#[derive(Debug, Clone)]
pub(crate) struct Exchange {
    /// Porter's unique id of the request (in the 403 page and the WAF log).
    pub(crate) id: String,
    pub(crate) client: SocketAddr,
    pub(crate) method: String,
    /// The request target as the client wrote it (path and query, or an absolute URI).
    pub(crate) uri: String,
    /// `1.0`, `1.1` or `2.0`.
    pub(crate) version: &'static str,
    /// Every header, `Host` first (for HTTP/2, made from `:authority`); HTTP/2's `cookie`
    /// fields joined into one, as HTTP/1.1 carries them (RFC 9113 section 8.2.3).
    pub(crate) headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The body's first bytes, up to the site's limit.
    pub(crate) body: bytes::Bytes,
}

/// A rule that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Match {
    pub(crate) id: u32,
    /// Syslog severity (2 critical, 3 error, 4 warning, 5 notice), when the rule has one.
    pub(crate) severity: Option<u8>,
    pub(crate) msg: String,
    /// The variable it matched in (`ARGS:id`, `REQUEST_HEADERS:User-Agent`); never its value,
    /// which may be a password.
    pub(crate) var: String,
    pub(crate) tags: Vec<String>,
}

/// A WAF engine with its rules loaded.
pub(crate) trait Engine: Send + Sync {
    /// What it is, for status and logs.
    fn name(&self) -> String;
    /// The rules `exchange` matches at `paranoia`. Blocking: run off the edge threads.
    fn inspect(&self, exchange: &Exchange, paranoia: u8) -> Result<Vec<Match>, EngineError>;
}

/// Why an engine could not load or inspect.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EngineError {
    #[error("the WAF rules did not load: {0}")]
    Load(String),
    #[error("the WAF rules cannot be read: {0}")]
    Files(String),
    #[error("the WAF engine cannot take this request ({0})")]
    Input(&'static str),
}
