//! The HTTP side of the edge: route each request by host to its site, then redirect it to
//! HTTPS, forward it, or tunnel it (WebSocket). This module is the face: what the edge threads
//! share ([`Edge`]) and know of a connection ([`Conn`]); the request path is in `request`.

mod cached;
mod connection;
mod h3;
mod logged;
mod phases;
mod request;
mod upstream;

pub(crate) use connection::ceiling::MemoryCeiling;
pub(crate) use connection::listener::{drain, Limits};
pub(crate) use connection::per_ip::PerIp;
pub(crate) use connection::proxy_protocol::ProxyProtocol;
pub(crate) use connection::shed::Shed;
pub(crate) use connection::threads::{EdgeThreads, Http3, Shared as EdgeShared};
pub(crate) use h3::server_config as quic_server_config;
pub(crate) use phases::admission::Admission;
pub(crate) use phases::basic_auth::{check_hash, hash as hash_password};
pub(crate) use phases::gate::Bounds;
pub(crate) use phases::rate::Rates;
pub(crate) use phases::wp_login::LoginRates;
pub(crate) use upstream::fleet::Fleet;
pub(crate) use upstream::forward::Forwarder;

use crate::served::reload::LiveSites;
use http::HeaderValue;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// What the connections of one edge thread share: the current snapshot (the same for all
/// threads) and the upstream connections (the thread's own).
pub(crate) struct Edge {
    /// The account daemons sites may point at.
    pub(crate) apps: Arc<crate::apps::Supervisor>,
    /// The ACME challenge answers; kept current by `challenges::run`.
    pub(crate) challenges: Arc<crate::served::challenges::Challenges>,
    /// The sites being served.
    pub(crate) sites: Arc<LiveSites>,
    /// The request bounds every edge thread shares.
    pub(crate) admission: Arc<Admission>,
    /// Pooled upstream connections.
    pub(crate) forwarder: Forwarder,
    /// The port HTTPS is served on, for redirects (omitted from the URL when 443).
    pub(crate) https_port: u16,
    /// What HTTPS responses say to offer HTTP/3 (`None`: it is off).
    pub(crate) alt_svc: Option<HeaderValue>,
    /// The name used when a TLS client sends no SNI.
    pub(crate) default_sni: Option<String>,
    /// Woken when the edge nears its connection limit: this thread's idle connections close.
    pub(crate) crowded: tokio::sync::Notify,
    /// Where each request's line goes, if anywhere.
    pub(crate) access_log: Option<Arc<crate::observe::access_log::AccessLog>>,
    /// This thread's counts, for metrics.
    pub(crate) stats: Arc<crate::observe::metrics::EdgeStats>,
    /// On-demand TLS for names not served yet, when on.
    pub(crate) on_demand: Option<Arc<crate::served::on_demand::OnDemand>>,
    /// WordPress login attempts, shared by every edge thread.
    pub(crate) wp_logins: Arc<LoginRates>,
    /// The web application firewall, shared by every edge thread.
    pub(crate) waf: Arc<crate::waf::Waf>,
    /// This node in its fleet (`None` on the embedded store).
    pub(crate) fleet: Option<Arc<crate::proxy::upstream::fleet::Fleet>>,
    /// The node's HTTP cache, for the sites that turn it on (`None`: no site may).
    pub(crate) cache: Option<Arc<crate::cache::Cache>>,
}

/// What is known of the connection a request came on.
pub(crate) struct Conn {
    /// The client's address.
    pub(crate) peer: IpAddr,
    /// The client's address and port.
    pub(crate) peer_addr: SocketAddr,
    /// The client's address as `X-Forwarded-For` carries it, made once per connection.
    pub(crate) forwarded_for: HeaderValue,
    /// For HTTPS, the name the certificate was chosen for; `None` on plain HTTP.
    pub(crate) tls_name: Option<String>,
    /// For HTTPS, the TLS version and whether the session was resumed (for the access log).
    pub(crate) tls: Option<(&'static str, bool)>,
    /// The upstream connection its requests reuse.
    pub(crate) affinity: Arc<upstream::pool::Affinity>,
    /// Requests being handled (until their response heads), to tell an idle connection.
    pub(crate) in_flight: AtomicU32,
    /// Whether a request has been answered: a connection that has not spoken yet is not an
    /// idle keep-alive one (its first request may be on its way).
    pub(crate) answered: AtomicBool,
    /// Whether it speaks HTTP/2 (a stop then sends GOAWAY at once; HTTP/1.1 needs waiting).
    pub(crate) http2: AtomicBool,
    /// Whether the response about to be written answers an HTTP/1.0 request (its status line
    /// then says HTTP/1.1, see `status_line`).
    pub(crate) http10_answer: AtomicBool,
    /// Whether the request was forwarded by another node of the fleet (never forwarded again).
    pub(crate) from_fleet: bool,
}

impl Conn {
    /// What is known of a new connection from `peer` (for HTTPS, its name and TLS session).
    pub(crate) fn new(
        peer: SocketAddr,
        tls: Option<(String, &rustls::ServerConnection)>,
        affinity: Arc<upstream::pool::Affinity>,
    ) -> Self {
        let h2 = tls
            .as_ref()
            .is_some_and(|(_, session)| session.alpn_protocol() == Some(b"h2"));
        let (tls_name, tls) = match tls {
            Some((name, session)) => (Some(name), Some(session_facts(session))),
            None => (None, None),
        };
        Conn {
            peer: peer.ip(),
            peer_addr: peer,
            forwarded_for: HeaderValue::from_str(&peer.ip().to_string())
                .expect("an IP address is a valid header value"),
            tls_name,
            tls,
            affinity,
            in_flight: AtomicU32::new(0),
            answered: AtomicBool::new(false),
            http2: AtomicBool::new(h2),
            http10_answer: AtomicBool::new(false),
            from_fleet: false,
        }
    }

    /// What is known of an HTTP/3 connection from `peer`, whose certificate was chosen for
    /// `name`, and whether its TLS session was `resumed`.
    pub(crate) fn quic(
        peer: SocketAddr,
        (name, resumed): (String, bool),
        affinity: Arc<upstream::pool::Affinity>,
    ) -> Self {
        Conn {
            tls_name: Some(name),
            tls: Some(("TLSv1.3", resumed)),
            ..Conn::new(peer, None, affinity)
        }
    }

    /// The connection a request forwarded by another node of the fleet stands for: its
    /// `client`'s, over HTTPS for `host`.
    pub(crate) fn forwarded(&self, client: IpAddr, host: String) -> Conn {
        Conn {
            peer: client,
            peer_addr: SocketAddr::new(client, 0),
            forwarded_for: HeaderValue::from_str(&client.to_string())
                .expect("an IP address is a valid header value"),
            tls_name: Some(host),
            tls: None,
            affinity: Arc::clone(&self.affinity),
            in_flight: AtomicU32::new(0),
            answered: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            http10_answer: AtomicBool::new(false),
            from_fleet: true,
        }
    }

    /// Counts a request as being handled until the guard is dropped (answered or cancelled).
    pub(crate) fn handling(self: &Arc<Self>) -> Handling {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Handling(Arc::clone(self))
    }

    /// Whether it is an idle keep-alive connection: it has been answered and no request is
    /// being handled (it waits for its next request, or streams a response whose head has
    /// gone, which a graceful close lets finish).
    pub(crate) fn idle(&self) -> bool {
        self.answered.load(Ordering::Relaxed) && self.quiet()
    }

    /// Whether no request is being handled on it.
    pub(crate) fn quiet(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }
}

impl connection::first_request::Requested for Arc<Conn> {
    fn requested(&self) -> bool {
        self.answered.load(Ordering::Relaxed) || self.in_flight.load(Ordering::Relaxed) > 0
    }
}

impl connection::status_line::Answering for Arc<Conn> {
    fn http10(&self) -> bool {
        // Most writes find nothing announced: a load, not a write, for them.
        self.http10_answer.load(Ordering::Relaxed)
            && self.http10_answer.swap(false, Ordering::Relaxed)
    }
}

/// A request being handled on its connection.
pub(crate) struct Handling(Arc<Conn>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.answered.store(true, Ordering::Relaxed);
    }
}

/// A TLS session's version and whether it was resumed.
fn session_facts(session: &rustls::ServerConnection) -> (&'static str, bool) {
    let version = match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    (version, resumed)
}
