//! The PROXY protocol (HAProxy's, versions 1 and 2), for a Porter behind a load balancer that
//! keeps TCP as it is: the balancer opens each connection with a header naming the client,
//! which then stands for the connection's peer everywhere (`X-Forwarded-For`, the access log,
//! per-address limits, allow/deny lists). Only sources in `--proxy-protocol` may send one, and
//! from there every connection must: one from elsewhere, or without a valid header within the
//! handshake timeout, is closed (a client could otherwise claim any address). A version 2
//! `LOCAL` header (the balancer's own health check) keeps the balancer's address.

use ipnet::IpNet;
use ppp::v2::{Addresses, Command};
use ppp::{HeaderResult, PartialResult as _};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

/// The longest header read: a version 1 line is at most 107 bytes; version 2 carries TLVs
/// (balancers add a few dozen bytes).
const MAX_HEADER: usize = 4096;

/// The sources trusted to send a PROXY header.
#[derive(Debug, Clone)]
pub(crate) struct ProxyProtocol {
    pub(crate) trusted: Vec<IpNet>,
}

/// Why a connection was closed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Untrusted,
    Malformed,
    TimedOut,
    Closed,
}

impl ProxyProtocol {
    /// Whether `source` may send a header.
    pub(crate) fn trusts(&self, source: IpAddr) -> bool {
        let source = source.to_canonical();
        self.trusted.iter().any(|net| net.contains(&source))
    }

    /// Reads the header at the start of `stream` (and nothing after it), within `timeout`;
    /// returns the client it names.
    pub(crate) async fn client(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<SocketAddr, Refused> {
        if !self.trusts(peer.ip()) {
            return Err(Refused::Untrusted);
        }
        tokio::time::timeout(timeout, read_header(stream, peer))
            .await
            .unwrap_or(Err(Refused::TimedOut))
    }
}

async fn read_header(stream: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, Refused> {
    let mut buf = vec![0u8; MAX_HEADER];
    loop {
        // Peeked, not read: what follows the header (a TLS ClientHello, a request) stays for
        // whoever reads next.
        let seen = stream.peek(&mut buf).await.map_err(|_| Refused::Closed)?;
        if seen == 0 {
            return Err(Refused::Closed);
        }
        let parsed = HeaderResult::parse(&buf[..seen]);
        if parsed.is_incomplete() {
            if seen == buf.len() {
                return Err(Refused::Malformed);
            }
            // Balancers send the header in one segment; a rest still on its way is waited
            // for briefly (peek would return the same bytes at once).
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let (length, client) = match parsed {
            HeaderResult::V1(Ok(header)) => {
                let client = match header.addresses {
                    ppp::v1::Addresses::Tcp4(a) => {
                        SocketAddr::new(a.source_address.into(), a.source_port)
                    }
                    ppp::v1::Addresses::Tcp6(a) => {
                        SocketAddr::new(a.source_address.into(), a.source_port)
                    }
                    ppp::v1::Addresses::Unknown => peer,
                };
                (header.header.len(), client)
            }
            HeaderResult::V2(Ok(header)) => {
                let client = match (header.command, header.addresses) {
                    (Command::Local, _) => peer,
                    (Command::Proxy, Addresses::IPv4(a)) => {
                        SocketAddr::new(a.source_address.into(), a.source_port)
                    }
                    (Command::Proxy, Addresses::IPv6(a)) => {
                        SocketAddr::new(a.source_address.into(), a.source_port)
                    }
                    (Command::Proxy, _) => peer,
                };
                (header.len(), client)
            }
            _ => return Err(Refused::Malformed),
        };
        stream
            .read_exact(&mut buf[..length])
            .await
            .map_err(|_| Refused::Closed)?;
        return Ok(client);
    }
}
