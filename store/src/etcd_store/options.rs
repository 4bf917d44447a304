//! Where an etcd store is and how to reach it: `etcd://HOST:PORT[,HOST:PORT...][/prefix]`, with
//! TLS and credentials given beside it.

use crate::error::InvalidInput;
use std::time::Duration;

/// The key prefix when the address names none.
const DEFAULT_PREFIX: &str = "/porter";

/// How to reach an etcd cluster, and the part of its key space Porter keeps to.
#[derive(Clone)]
pub struct EtcdOptions {
    /// `HOST:PORT` of each member.
    pub endpoints: Vec<String>,
    /// Every key Porter writes starts with it (`/porter` unless the address names another),
    /// so installations can share one cluster.
    pub prefix: String,
    /// The CA (PEM) that signed the members' certificates: TLS to etcd when given.
    pub ca: Option<Vec<u8>>,
    /// This client's certificate and key (PEM), when etcd asks for one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// User and password, when etcd's authentication is on.
    pub user: Option<(String, String)>,
    /// How long an operation may take before it fails as stalled.
    pub deadline: Duration,
    /// How long the locks of a node outlive it (or its link to etcd): another node takes its
    /// work over after that.
    pub lease_ttl: Duration,
}

impl EtcdOptions {
    /// Reads `etcd://HOST:PORT[,HOST:PORT...][/prefix]`; every other setting at its default.
    pub fn parse(address: &str) -> Result<EtcdOptions, InvalidInput> {
        let invalid = |reason: &str| {
            InvalidInput::Store(format!(
                "invalid etcd address {address:?}: {reason} (expected etcd://HOST:PORT[,HOST:PORT...][/prefix])"
            ))
        };
        let rest = address
            .strip_prefix("etcd://")
            .ok_or_else(|| invalid("it does not start with etcd://"))?;
        let (hosts, prefix) = match rest.split_once('/') {
            Some((hosts, prefix)) => (hosts, format!("/{}", prefix.trim_end_matches('/'))),
            None => (rest, DEFAULT_PREFIX.to_owned()),
        };
        if prefix == "/" {
            return Err(invalid("the prefix is empty"));
        }
        let prefix_ok = prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b))
            && !prefix.contains("//");
        if !prefix_ok {
            return Err(invalid(
                "the prefix may hold letters, digits, '-', '_', '.' and single '/'",
            ));
        }
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| invalid(&format!("{host:?} has no port")))?;
            let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
            if !port_ok || !name_ok {
                return Err(invalid(&format!("{host:?} is not HOST:PORT")));
            }
            endpoints.push(host.to_owned());
        }
        Ok(EtcdOptions {
            endpoints,
            prefix,
            ca: None,
            identity: None,
            user: None,
            deadline: Duration::from_secs(10),
            lease_ttl: Duration::from_secs(10),
        })
    }

    /// The members' URLs as the client dials them.
    pub(super) fn urls(&self) -> Vec<String> {
        let scheme = if self.ca.is_some() || self.identity.is_some() {
            "https"
        } else {
            "http"
        };
        self.endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect()
    }
}

/// The address as given (never the credentials).
impl std::fmt::Display for EtcdOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd://{}{}", self.endpoints.join(","), self.prefix)
    }
}

impl std::fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("address", &self.to_string())
            .field("tls", &self.ca.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("deadline", &self.deadline)
            .field("lease_ttl", &self.lease_ttl)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_or_say_why_not() {
        let one = EtcdOptions::parse("etcd://127.0.0.1:2379").unwrap();
        assert_eq!(one.endpoints, ["127.0.0.1:2379"]);
        assert_eq!(one.prefix, "/porter");
        assert_eq!(one.urls(), ["http://127.0.0.1:2379"]);
        let many = EtcdOptions::parse("etcd://a.example:1,[::1]:2/edge/eu/").unwrap();
        assert_eq!(many.endpoints, ["a.example:1", "[::1]:2"]);
        assert_eq!(many.prefix, "/edge/eu");
        assert_eq!(many.to_string(), "etcd://a.example:1,[::1]:2/edge/eu");
        for bad in [
            "http://127.0.0.1:2379",
            "etcd://127.0.0.1",
            "etcd://127.0.0.1:0",
            "etcd://127.0.0.1:99999",
            "etcd://:2379",
            "etcd://a:1,",
            "etcd://a:1/",
            "etcd://a:1/x y",
            "etcd://a:1/x//y",
        ] {
            assert!(EtcdOptions::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
