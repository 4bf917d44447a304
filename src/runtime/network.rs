//! Networks as operators write them (`10.0.0.0/8`, or one address), for flags (`--proxy-protocol`)
//! and API fields (a site's allow and deny lists).

/// A network: a CIDR, or one address (its own /32 or /128); host bits are cleared.
pub(crate) fn network(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{text:?} is not a network: write an address or a CIDR (10.0.0.0/8)"))
}
