//! DNS zones Porter may change for DNS-01 validation: where their primary server is and the
//! TSIG key that signs the RFC 2136 updates. Validated here, so a stored zone is always usable as
//! written.

use crate::error::InvalidInput;
use crate::model::SecretBytes;
use crate::DomainName;
use std::fmt;
use std::net::SocketAddr;

/// A TSIG algorithm (RFC 8945) Porter signs with: the HMAC-SHA2 family every server supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TsigAlgorithm {
    /// `hmac-sha256` (BIND's `tsig-keygen` default).
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// `hmac-sha384`.
    #[serde(rename = "hmac-sha384")]
    HmacSha384,
    /// `hmac-sha512`.
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

impl TsigAlgorithm {
    /// The algorithm's name as DNS servers write it.
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TsigAlgorithm {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().trim_end_matches('.') {
            "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
            "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
            "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
            _ => Err(InvalidInput::DnsZone(format!(
                "TSIG algorithm {s:?}: expected hmac-sha256, hmac-sha384 or hmac-sha512"
            ))),
        }
    }
}

/// A zone whose TXT records Porter sets for DNS-01, through RFC 2136 updates to `server`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DnsZone {
    /// The zone's apex (`example.com`): it covers the names under it.
    pub zone: DomainName,
    /// The primary server that takes the updates, and is asked whether they are in.
    pub server: SocketAddr,
    /// The TSIG key's name, as the server knows it.
    pub tsig_name: String,
    /// The TSIG algorithm.
    pub tsig_algorithm: TsigAlgorithm,
    /// The TSIG secret.
    pub tsig_key: SecretBytes,
}

/// The shortest TSIG secret accepted: RFC 8945 section 6 asks for at least the hash's length;
/// half of SHA-256's is the floor below which a key is a typo rather than a choice.
const MIN_KEY_BYTES: usize = 16;

impl DnsZone {
    /// Checks what cannot be right: a wildcard zone, a key name that is not a DNS name, a key
    /// too short to be one.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.zone.is_wildcard() {
            return Err(InvalidInput::DnsZone(format!(
                "zone {}: a zone is a name, not a wildcard",
                self.zone
            )));
        }
        check_key_name(&self.tsig_name)?;
        if self.tsig_key.expose().len() < MIN_KEY_BYTES {
            return Err(InvalidInput::DnsZone(format!(
                "the TSIG key of zone {} is {} bytes; a real one (tsig-keygen) is 32 or more",
                self.zone,
                self.tsig_key.expose().len()
            )));
        }
        if self.server.ip().is_unspecified() || self.server.port() == 0 {
            return Err(InvalidInput::DnsZone(format!(
                "zone {}: {} is not a server address",
                self.zone, self.server
            )));
        }
        Ok(())
    }

    /// Whether `name` (exact or wildcard) lies in this zone.
    pub fn covers(&self, name: &DomainName) -> bool {
        let base = name.as_str().trim_start_matches("*.");
        let zone = self.zone.as_str();
        base == zone
            || base
                .strip_suffix(zone)
                .is_some_and(|head| head.ends_with('.'))
    }

    /// Whether `name` is a wildcard no zone among `zones` covers: only DNS-01 validates a
    /// wildcard, so it cannot get a certificate over ACME.
    pub fn wildcard_without_zone(zones: &[DnsZone], name: &DomainName) -> bool {
        name.is_wildcard() && DnsZone::for_name(zones, name).is_none()
    }

    /// The zone among `zones` that covers `name` most closely (the longest), if any.
    pub fn for_name<'a>(zones: &'a [DnsZone], name: &DomainName) -> Option<&'a DnsZone> {
        zones
            .iter()
            .filter(|z| z.covers(name))
            .max_by_key(|z| z.zone.as_str().len())
    }
}

/// A TSIG key name is a DNS name whose labels may also hold `_` (as in `porter_key`).
fn check_key_name(name: &str) -> Result<(), InvalidInput> {
    let bad = |reason: &str| InvalidInput::DnsZone(format!("TSIG key name {name:?}: {reason}"));
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err(bad("it must be 1 to 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each label must be 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad("labels may hold only letters, digits, '-' and '_'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> DnsZone {
        DnsZone {
            zone: DomainName::parse(name).unwrap(),
            server: "127.0.0.1:53".parse().unwrap(),
            tsig_name: "porter".into(),
            tsig_algorithm: TsigAlgorithm::HmacSha256,
            tsig_key: SecretBytes::new(vec![7; 32]),
        }
    }

    #[test]
    fn the_closest_zone_covers_a_name() {
        let zones = [
            zone("example.com"),
            zone("shop.example.com"),
            zone("other.test"),
        ];
        let name = |n: &str| DomainName::parse(n).unwrap();
        let of = |n: &str| DnsZone::for_name(&zones, &name(n)).map(|z| z.zone.to_string());
        assert_eq!(of("example.com").as_deref(), Some("example.com"));
        assert_eq!(of("*.example.com").as_deref(), Some("example.com"));
        assert_eq!(of("a.b.example.com").as_deref(), Some("example.com"));
        assert_eq!(
            of("*.shop.example.com").as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(of("badexample.com"), None);
        assert_eq!(of("com"), None);
    }

    #[test]
    fn what_cannot_be_a_zone_is_refused() {
        assert!(zone("example.com").validate().is_ok());
        assert!(zone("*.example.com").validate().is_err());
        let mut short = zone("example.com");
        short.tsig_key = SecretBytes::new(vec![1; 8]);
        assert!(short.validate().is_err());
        let mut name = zone("example.com");
        name.tsig_name = "bad name".into();
        assert!(name.validate().is_err());
        name.tsig_name = "porter_key.example.".into();
        assert!(name.validate().is_ok());
        let mut server = zone("example.com");
        server.server = "0.0.0.0:53".parse().unwrap();
        assert!(server.validate().is_err());
        assert!("HMAC-SHA512".parse::<TsigAlgorithm>().is_ok());
        assert!("hmac-md5".parse::<TsigAlgorithm>().is_err());
    }
}
