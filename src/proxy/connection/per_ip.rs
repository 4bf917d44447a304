//! Connections per client address: one client (an IPv4 address, or an IPv6 /64, which one
//! subscriber usually holds whole) may hold at most so many of the edge's connections. The
//! table holds only addresses with a connection open, so it is bounded by the connection limit.

use porter_store::Recover as _;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The open connections of each client address.
pub(crate) struct PerIp {
    limit: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One connection counted against its client's address, until dropped.
pub(crate) struct Counted {
    table: Arc<PerIp>,
    key: IpAddr,
}

impl PerIp {
    /// At most `limit` connections per client address; 0 for no limit.
    pub(crate) fn new(limit: u32) -> Arc<Self> {
        Arc::new(PerIp {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a connection from `ip`, or `None` when its address already has `limit`.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Option<Counted>> {
        if self.limit == 0 {
            return Some(None);
        }
        let key = client_key(ip);
        let mut open = self.open.lock().recover();
        let count = open.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Some(Counted {
            table: Arc::clone(self),
            key,
        }))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().recover();
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// What connections are counted by: the IPv4 address (an IPv4-mapped IPv6 address is one), or
/// the /64 of an IPv6 one.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_the_limit_and_its_table_entry_goes_with_its_last_connection() {
        let table = PerIp::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = table.admit(ip).unwrap();
        let second = table.admit(ip).unwrap();
        assert!(table.admit(ip).is_none(), "a third is refused");
        assert!(
            table.admit("192.0.2.2".parse().unwrap()).is_some(),
            "others are not"
        );
        drop(first);
        let third = table.admit(ip).unwrap();
        drop((second, third));
        assert!(table.open.lock().recover().is_empty());
    }

    #[test]
    fn an_ipv6_64_is_one_client() {
        let table = PerIp::new(1);
        let _held = table.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(table
            .admit("2001:db8:1:2:ffff::9".parse().unwrap())
            .is_none());
        assert!(table.admit("2001:db8:1:3::1".parse().unwrap()).is_some());
        let _v4 = table.admit("::ffff:192.0.2.7".parse().unwrap()).unwrap();
        assert!(table.admit("192.0.2.7".parse().unwrap()).is_none());
    }

    #[test]
    fn no_limit_counts_nothing() {
        let table = PerIp::new(0);
        for _ in 0..10 {
            assert!(table.admit("192.0.2.1".parse().unwrap()).unwrap().is_none());
        }
        assert!(table.open.lock().recover().is_empty());
    }
}
