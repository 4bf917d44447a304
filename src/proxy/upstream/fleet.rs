//! Forwarding between the nodes of a fleet: a request for a site whose app runs on another node
//! goes to that node's --http listener with a header only nodes can make (it holds the secret
//! the fleet shares in its store). The header says which client sent the request; the node
//! that receives it serves it as the HTTPS request it was, and never forwards it again.

use http::{HeaderMap, HeaderName, HeaderValue};
use porter_store::SecretBytes;
use std::net::IpAddr;
use subtle::ConstantTimeEq as _;

/// The header a forwarded request carries: `SECRET-HEX CLIENT-IP`.
pub(crate) const HEADER: HeaderName = HeaderName::from_static("porter-fleet");

/// This node in its fleet.
pub(crate) struct Fleet {
    /// Its name: apps added through it run on it.
    pub(crate) node: String,
    secret_hex: String,
}

impl Fleet {
    pub(crate) fn new(node: String, secret: &SecretBytes) -> Fleet {
        Fleet {
            node,
            secret_hex: hex::encode(secret.expose()),
        }
    }

    /// The header of a request this node forwards for `client`.
    pub(crate) fn mark(&self, client: IpAddr) -> HeaderValue {
        HeaderValue::from_str(&format!("{} {client}", self.secret_hex))
            .expect("hex and an address are a valid header value")
    }

    /// Takes the fleet header off `headers` (whoever sent it: a client's never goes further),
    /// and returns the client it names when a node of the fleet made it.
    pub(crate) fn take(&self, headers: &mut HeaderMap) -> Option<IpAddr> {
        let value = headers.remove(HEADER)?;
        let (secret, client) = value.to_str().ok()?.split_once(' ')?;
        let genuine: bool = secret.as_bytes().ct_eq(self.secret_hex.as_bytes()).into();
        if !genuine {
            return None;
        }
        client.parse().ok()
    }
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").field("node", &self.node).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fleet_can_mark_a_request() {
        let fleet = Fleet::new("a".into(), &SecretBytes::new(vec![7; 32]));
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, fleet.mark("192.0.2.9".parse().unwrap()));
        assert_eq!(fleet.take(&mut headers), Some("192.0.2.9".parse().unwrap()));
        assert!(headers.is_empty(), "taken off");
        let other = Fleet::new("b".into(), &SecretBytes::new(vec![8; 32]));
        headers.insert(HEADER, other.mark("192.0.2.9".parse().unwrap()));
        assert_eq!(fleet.take(&mut headers), None, "another fleet's");
        assert!(headers.is_empty(), "a forged header is taken off too");
        headers.insert(HEADER, HeaderValue::from_static("nonsense"));
        assert_eq!(fleet.take(&mut headers), None);
    }
}
