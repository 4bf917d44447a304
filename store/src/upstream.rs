//! Upstream addresses: where a site's requests are forwarded.

use crate::domain::DomainName;
use crate::error::InvalidInput;
use std::fmt;
use std::path::PathBuf;

/// A validated upstream: a TCP `host:port` or an absolute unix socket path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Upstream {
    /// A TCP address; `host` is an IP address or a domain name (IPv6 without brackets).
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port, 1-65535.
        port: u16,
    },
    /// A unix domain socket.
    Unix(PathBuf),
}

impl Upstream {
    /// Parses `host:port`, `[v6]:port`, `/abs/path.sock` or `unix:/abs/path.sock`.
    pub fn parse(input: &str) -> Result<Self, InvalidInput> {
        let bad = |reason: &str| InvalidInput::Upstream {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let text = input.trim();
        if let Some(path) = text
            .strip_prefix("unix:")
            .or(text.starts_with('/').then_some(text))
        {
            if !path.starts_with('/') {
                return Err(bad("a unix socket path must be absolute"));
            }
            if path.len() > 107 {
                return Err(bad("a unix socket path is limited to 107 bytes"));
            }
            return Ok(Upstream::Unix(PathBuf::from(path)));
        }
        if text.contains("://") {
            return Err(bad("write host:port without a scheme"));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| bad("expected host:port or an absolute unix socket path"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?;
        let host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("invalid IPv6 address"))?
                .to_string()
        } else if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
            ip.to_string()
        } else if host.contains(':') {
            return Err(bad("write IPv6 addresses in brackets, as in [::1]:8080"));
        } else {
            let name = DomainName::parse(host).map_err(|e| bad(&e.to_string()))?;
            if name.is_wildcard() {
                return Err(bad("an upstream host cannot be a wildcard"));
            }
            name.to_string()
        };
        Ok(Upstream::Tcp { host, port })
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Upstream::Tcp { host, port } => write!(f, "{host}:{port}"),
            Upstream::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl TryFrom<String> for Upstream {
    type Error = InvalidInput;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Upstream::parse(&value)
    }
}

impl From<Upstream> for String {
    fn from(value: Upstream) -> Self {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        for (input, want) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("[::1]:80", "[::1]:80"),
            ("Backend.internal:3000", "backend.internal:3000"),
            ("/run/app.sock", "unix:/run/app.sock"),
            ("unix:/run/app.sock", "unix:/run/app.sock"),
        ] {
            assert_eq!(Upstream::parse(input).unwrap().to_string(), want, "{input}");
        }
    }

    #[test]
    fn refuses() {
        for input in [
            "",
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:http",
            "http://127.0.0.1:80",
            "::1:80",
            "unix:relative.sock",
            "*.a.com:80",
            "bad_host:80",
        ] {
            assert!(
                Upstream::parse(input).is_err(),
                "{input:?} should be refused"
            );
        }
    }
}
