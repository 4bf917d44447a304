//! The typed records Porter keeps: sites and their certificates.

use crate::b64;
use crate::domain::DomainName;
use crate::upstream::Upstream;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use std::fmt;

/// One served domain name and what serves it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Site {
    /// The name clients ask for (SNI and `Host`); exact or `*.` wildcard.
    pub domain: DomainName,
    /// Where its requests go.
    pub target: Target,
    /// Whether Porter obtains its certificate over ACME (unless one is imported).
    #[serde(default = "yes")]
    pub acme: bool,
    /// `Strict-Transport-Security` max-age sent once the site has a valid certificate; 0 = off.
    /// `None`: the platform's default (`porter serve --hsts-default`), as for every site added
    /// without one of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts_max_age: Option<u64>,
    /// Its HTTP features (compression, redirects, basic auth, allow/deny, error pages).
    #[serde(default, skip_serializing_if = "crate::Features::is_default")]
    pub features: crate::Features,
    /// The ACME challenge type tried first for it, instead of the server's (a wildcard is
    /// always validated over DNS-01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<ChallengeKind>,
    /// Since when it needs a certificate (Unix seconds): when it was added, or when ACME was
    /// turned on for it. Monitoring counts how long a site has gone without one from here.
    /// `None` in records written before Porter kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_cert_since: Option<i64>,
    /// Its upstreams beside the target and how requests are spread over them; `None`: the
    /// target alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balancing: Option<crate::Balancing>,
}

impl Site {
    /// Refuses a site that cannot be served as given (its features, its upstreams).
    pub fn validate(&self) -> Result<(), crate::InvalidInput> {
        self.features.validate()?;
        match &self.balancing {
            Some(balancing) => balancing.validate(&self.target),
            None => Ok(()),
        }
    }
}

/// One year, the HSTS max-age browsers' preload lists ask for.
pub const HSTS_ONE_YEAR: u64 = 31_536_000;

fn yes() -> bool {
    true
}

/// What a site's requests are handed to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A running server Porter forwards to.
    Upstream(Upstream),
    /// An account daemon Porter supervises.
    App(crate::AppId),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Upstream(u) => write!(f, "{u}"),
            Target::App(id) => write!(f, "app:{id}"),
        }
    }
}

/// Where a certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertSource {
    /// Given by the operator with `porter cert import`.
    Imported,
    /// Obtained by Porter over ACME.
    Acme,
}

impl fmt::Display for CertSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertSource::Imported => "imported",
            CertSource::Acme => "acme",
        })
    }
}

/// The certificate a site is served with, and what was read from its leaf.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertRecord {
    /// The site this certificate is served for.
    pub domain: DomainName,
    /// The chain in DER, leaf first.
    #[serde(with = "b64::list")]
    pub chain: Vec<Vec<u8>>,
    /// The leaf's private key.
    pub key: PrivateKey,
    /// DNS names of the leaf (subjectAltName, or the CN when it has none).
    pub names: Vec<String>,
    /// The leaf's issuer, as a distinguished name.
    pub issuer: String,
    /// The leaf's serial number in lowercase hex.
    pub serial: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Imported or obtained over ACME.
    pub source: CertSource,
    /// For ACME, the directory URL of the CA it was obtained from (its host alone in records
    /// written before the URL was kept; absent in older ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

impl CertRecord {
    /// Whether the certificate is within its validity period at `now` (Unix seconds).
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// The encoding of a private key's DER, as found in its PEM block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyFormat {
    /// `PRIVATE KEY` (any algorithm).
    Pkcs8,
    /// `EC PRIVATE KEY`.
    Sec1,
    /// `RSA PRIVATE KEY`.
    Pkcs1,
}

/// A private key. Its `Debug` never shows the key material, so it cannot leak through logs.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrivateKey {
    format: KeyFormat,
    #[serde(with = "b64::bytes")]
    der: Vec<u8>,
}

impl PrivateKey {
    /// Wraps a key in the form rustls and the PEM parser use.
    pub fn from_der(key: &PrivateKeyDer<'_>) -> Option<Self> {
        let (format, der) = match key {
            PrivateKeyDer::Pkcs8(k) => (KeyFormat::Pkcs8, k.secret_pkcs8_der()),
            PrivateKeyDer::Sec1(k) => (KeyFormat::Sec1, k.secret_sec1_der()),
            PrivateKeyDer::Pkcs1(k) => (KeyFormat::Pkcs1, k.secret_pkcs1_der()),
            _ => return None,
        };
        Some(PrivateKey {
            format,
            der: der.to_vec(),
        })
    }

    /// The key in the form rustls takes.
    pub fn to_der(&self) -> PrivateKeyDer<'static> {
        let der = self.der.clone();
        match self.format {
            KeyFormat::Pkcs8 => PrivatePkcs8KeyDer::from(der).into(),
            KeyFormat::Sec1 => PrivateSec1KeyDer::from(der).into(),
            KeyFormat::Pkcs1 => PrivatePkcs1KeyDer::from(der).into(),
        }
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({:?}, <redacted>)", self.format)
    }
}

/// Secret text kept as is (ACME account credentials). Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretText(String);

impl SecretText {
    /// Wraps a secret.
    pub fn new(secret: String) -> Self {
        SecretText(secret)
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

/// An ACME account at one CA directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AcmeAccount {
    /// The directory URL, which names the CA.
    pub directory: String,
    /// The account's credentials (key and URL) as the ACME client serialises them.
    pub credentials: SecretText,
    /// Contact URIs given at creation.
    pub contact: Vec<String>,
}

/// Where a site stands with ACME: derived schedule inputs, failures, and the order in flight.
/// Kept in the store so that a restart (or another edge) continues where this one stopped.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct AcmeState {
    /// Consecutive failed attempts (0 after a success).
    pub attempts: u32,
    /// The last failure, as the operator should read it.
    pub last_error: Option<String>,
    /// When the last attempt started (Unix seconds).
    pub last_attempt: Option<i64>,
    /// After a failure: no attempt before this time (Unix seconds).
    pub retry_at: Option<i64>,
    /// The challenge type that last worked for this site.
    pub challenge: Option<ChallengeKind>,
    /// The order in flight, to be resumed after a crash.
    pub pending: Option<PendingOrder>,
    /// The CA's suggested renewal window (RFC 9773) for the current certificate.
    pub ari: Option<AriWindow>,
    /// Which CA the attempts go to: 0 the first, then each fallback in turn (0 again after a
    /// success).
    #[serde(default)]
    pub ca: u32,
    /// Failed attempts at that CA.
    #[serde(default)]
    pub ca_attempts: u32,
    /// DNS-01 TXT records set and not yet removed: an attempt that ended removes them, and
    /// the next attempt removes those a crash left.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_records: Vec<DnsTxtRecord>,
}

/// A TXT record Porter set in a zone for DNS-01.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DnsTxtRecord {
    /// The zone's apex.
    pub zone: DomainName,
    /// The record's name (`_acme-challenge.example.com`).
    pub name: String,
    /// The value (the key authorization's digest in base64url).
    pub value: String,
}

/// An ACME challenge type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ChallengeKind {
    /// HTTP-01 (RFC 8555 section 8.3), answered by the plain HTTP listener.
    #[serde(rename = "http-01")]
    Http01,
    /// TLS-ALPN-01 (RFC 8737), answered by the HTTPS listener.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// DNS-01 (RFC 8555 section 8.4), a TXT record set in the site's zone over RFC 2136.
    #[serde(rename = "dns-01")]
    Dns01,
}

impl ChallengeKind {
    /// The ACME name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
            ChallengeKind::Dns01 => "dns-01",
        }
    }
}

impl std::str::FromStr for ChallengeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "http-01" => Ok(ChallengeKind::Http01),
            "tls-alpn-01" => Ok(ChallengeKind::TlsAlpn01),
            "dns-01" => Ok(ChallengeKind::Dns01),
            other => Err(format!(
                "{other:?}: expected http-01, tls-alpn-01 or dns-01"
            )),
        }
    }
}

impl std::fmt::Display for ChallengeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was asked of the ACME worker for a site (by an operator, or by the OCSP refresher
/// after a revocation), kept apart from [`AcmeState`] so that only the worker writes that. The
/// worker removes a request once it has carried it out, and only if it is still the one it
/// read: a request made meanwhile stays for the next attempt.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct AcmeRequest {
    /// A new certificate is asked for: when (the `requested_at` of that ask).
    pub renew: Option<i64>,
    /// Leaves (DER) to revoke at the CA; the one being served is replaced too.
    #[serde(with = "b64::list")]
    pub revoke: Vec<Vec<u8>>,
    /// When anything was last asked (Unix seconds; never the same twice for one site, so that a
    /// request repeated meanwhile is told apart).
    pub requested_at: i64,
}

/// An order that was created and not finished yet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingOrder {
    /// The directory the order belongs to.
    pub directory: String,
    /// The order URL.
    pub url: String,
    /// The certificate key, stored before the CSR is sent so that a certificate issued while
    /// Porter was down can still be used.
    pub key: Option<PrivateKey>,
}

/// A renewal window suggested by the CA (RFC 9773), and when to ask again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AriWindow {
    /// Serial (hex) of the certificate the window is for.
    pub serial: String,
    /// Window start (Unix seconds).
    pub start: i64,
    /// Window end (Unix seconds).
    pub end: i64,
    /// The moment picked inside the window (Unix seconds).
    pub renew_at: i64,
    /// When to fetch the window again (Unix seconds), from the CA's `Retry-After`.
    pub next_check: i64,
}

/// An HTTP-01 challenge response, served at `/.well-known/acme-challenge/{token}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Http01Challenge {
    /// The challenge token (the URL's last segment).
    pub token: String,
    /// The site being validated.
    pub domain: DomainName,
    /// The body to answer with.
    pub key_authorization: String,
}

/// A TLS-ALPN-01 challenge certificate (RFC 8737), served to clients offering `acme-tls/1`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsAlpnChallenge {
    /// The site being validated.
    pub domain: DomainName,
    /// The self-signed challenge certificate (DER).
    #[serde(with = "b64::bytes")]
    pub cert: Vec<u8>,
    /// Its key.
    pub key: PrivateKey,
}

/// Secret bytes (TLS ticket keys). Its `Debug` never shows them.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretBytes(#[serde(with = "b64::bytes")] Vec<u8>);

impl SecretBytes {
    /// Wraps a secret.
    pub fn new(secret: Vec<u8>) -> Self {
        SecretBytes(secret)
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

/// One TLS session ticket key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TicketKey {
    /// Names the key inside each ticket, so the right key decrypts it.
    pub id: u32,
    /// The AEAD key.
    pub secret: SecretBytes,
    /// When it was made (Unix seconds).
    pub created_at: i64,
}

/// The ticket keys in use, newest first: the first encrypts, all decrypt. Shared by every edge
/// on the store, so that any of them (and a restarted one) resumes any session.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct TicketKeys {
    /// Newest first.
    pub keys: Vec<TicketKey>,
}

/// OCSP for a site's certificate: the responder, the last verified response, and when to ask
/// again. Kept in the store so that a restart staples at once and a fleet shares responses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OcspRecord {
    /// Serial (hex) of the certificate this is about; a new certificate starts over.
    pub serial: String,
    /// The responder from the certificate's AIA; `None` when the CA offers no OCSP.
    pub url: Option<String>,
    /// The last response that verified.
    pub response: Option<OcspResponse>,
    /// When to fetch again (Unix seconds).
    pub next_refresh: i64,
    /// Consecutive failed fetches.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
}

/// A verified OCSP response.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OcspResponse {
    /// The response as the responder signed it, to staple.
    #[serde(with = "b64::bytes")]
    pub der: Vec<u8>,
    /// What it says of the certificate.
    pub status: OcspStatus,
    /// `thisUpdate` (Unix seconds).
    pub this_update: i64,
    /// Until when it may be stapled: `nextUpdate`, or the certificate's end if sooner.
    pub valid_until: i64,
}

/// A certificate's status as an OCSP responder states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OcspStatus {
    /// Not revoked.
    Good,
    /// Revoked at this time (Unix seconds).
    Revoked(i64),
    /// The responder does not know the certificate.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_written_before_needs_cert_since_reads_and_round_trips() {
        let old = r#"{"domain":"old.test","target":{"upstream":"127.0.0.1:8080"}}"#;
        let site: Site = serde_json::from_str(old).unwrap();
        assert_eq!(site.needs_cert_since, None);
        assert!(site.acme);
        let again: Site = serde_json::from_str(&serde_json::to_string(&site).unwrap()).unwrap();
        assert_eq!(again, site);
        let new = Site {
            needs_cert_since: Some(1_700_000_000),
            balancing: None,
            ..site
        };
        let json = serde_json::to_string(&new).unwrap();
        assert!(json.contains(r#""needs_cert_since":1700000000"#), "{json}");
        assert_eq!(serde_json::from_str::<Site>(&json).unwrap(), new);
        assert!(
            !json.contains("balancing"),
            "one upstream writes what it always did"
        );
    }

    #[test]
    fn a_site_with_several_upstreams_round_trips_and_is_validated() {
        let text = r#"{"domain":"b.test","target":{"upstream":"127.0.0.1:1"},
            "balancing":{"weight":2,"more":[{"upstream":"127.0.0.1:2"}],"policy":"cookie:sid",
            "check":{"path":"/h","interval_s":5,"timeout_s":2,"status":"2xx"}}}"#;
        let site: Site = serde_json::from_str(text).unwrap();
        let balancing = site.balancing.as_ref().unwrap();
        assert_eq!((balancing.weight, balancing.more[0].weight), (2, 1));
        assert!(balancing.retries, "retries are on unless said");
        assert!(site.validate().is_ok());
        let again: Site = serde_json::from_str(&serde_json::to_string(&site).unwrap()).unwrap();
        assert_eq!(again, site);
        let twice = text.replace("127.0.0.1:2", "127.0.0.1:1");
        let site: Site = serde_json::from_str(&twice).unwrap();
        assert!(site.validate().is_err(), "the target named again");
        assert!(serde_json::from_str::<Site>(&text.replace("cookie:sid", "nope")).is_err());
    }
}
