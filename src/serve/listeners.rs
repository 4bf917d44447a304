//! Every listener `porter serve` opens: taken over from the running server when it hands its
//! own over (a zero-downtime restart), else bound now; and a copy of each, offered in turn to
//! this server's successor.

use crate::control::admin::{self, AdminAddr, AdminListener, Discovery};
use crate::runtime::handover::Inherited;
use crate::serve::config::ServeArgs;
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use tokio::net::TcpListener;

/// The listeners of one server, with the addresses they were bound to.
pub(super) struct Bound {
    pub(super) http: TcpListener,
    pub(super) https: TcpListener,
    pub(super) admin: AdminListener,
    pub(super) admin_addr: AdminAddr,
    pub(super) metrics: Option<AdminListener>,
    pub(super) metrics_addr: Option<AdminAddr>,
    /// The HTTPS port's UDP socket, for HTTP/3 (`None`: off, or the port could not be bound).
    pub(super) udp: Option<std::net::UdpSocket>,
    pub(super) http_addr: SocketAddr,
    pub(super) https_addr: SocketAddr,
    /// Copies of every listening socket by flag, for a successor.
    pub(super) sockets: Vec<(&'static str, OwnedFd)>,
}

impl Bound {
    /// Binds (or takes over) `--http`, `--https`, `--admin` and `--metrics`.
    pub(super) async fn bind(
        inherited: &mut Option<Inherited>,
        args: &ServeArgs,
    ) -> anyhow::Result<Bound> {
        let http = bind(inherited, "--http", args.http).await?;
        let https = bind(inherited, "--https", args.https).await?;
        let (admin, admin_addr) = bind_admin(inherited, "--admin", &args.admin).await?;
        let metrics = match args.metrics {
            Some(addr) => Some(bind_admin(inherited, "--metrics", &AdminAddr::Tcp(addr)).await?),
            None => None,
        };
        let https_addr = https.local_addr()?;
        let udp = match args.http3 {
            true => bind_udp(inherited, https_addr),
            false => None,
        };
        let mut sockets = vec![
            copy("--http", &http)?,
            copy("--https", &https)?,
            copy("--admin", &admin)?,
        ];
        if let Some((listener, _)) = &metrics {
            sockets.push(copy("--metrics", listener)?);
        }
        if let Some(udp) = &udp {
            sockets.push(copy(UDP_ROLE, udp)?);
        }
        let (metrics, metrics_addr) = metrics.unzip();
        Ok(Bound {
            udp,
            http_addr: http.local_addr()?,
            https_addr,
            http,
            https,
            admin,
            admin_addr,
            metrics,
            metrics_addr,
            sockets,
        })
    }

    /// The discovery file's record of this server.
    pub(super) fn discovery(&self, acme: bool, args: &ServeArgs) -> Discovery {
        Discovery {
            pid: std::process::id(),
            admin: self.admin_addr.to_string(),
            http: self.http_addr.to_string(),
            https: self.https_addr.to_string(),
            metrics: self.metrics_addr.as_ref().map(|a| a.to_string()),
            acme,
            access_log: args.access_log.as_ref().map(|d| d.to_string()),
        }
    }

    /// Every listener's role and address, as `porter status` shows them.
    pub(super) fn addresses(&self) -> BTreeMap<String, String> {
        let http3 = self
            .udp
            .as_ref()
            .map(|_| ("http3", format!("udp/{}", self.https_addr)));
        [
            ("http", self.http_addr.to_string()),
            ("https", self.https_addr.to_string()),
            ("admin", self.admin_addr.to_string()),
        ]
        .into_iter()
        .chain(http3)
        .chain(self.metrics_addr.iter().map(|a| ("metrics", a.to_string())))
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// The listener for `flag`: the running server's, when it hands its own over, else bound now.
async fn bind(
    inherited: &mut Option<Inherited>,
    flag: &str,
    addr: SocketAddr,
) -> anyhow::Result<TcpListener> {
    if let Some(listener) = inherited.as_mut().and_then(|i| i.tcp(flag, addr)) {
        return Ok(listener);
    }
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind {flag} {addr}"))
}

/// The handover role of the HTTPS port's UDP socket.
const UDP_ROLE: &str = "--https-udp";

/// The UDP socket of the HTTPS port (the port TCP was given, when asked for any): the running
/// server's, when it hands its own over, else bound now; `None`, said in the log, when it
/// cannot be bound: Porter then serves without HTTP/3.
fn bind_udp(inherited: &mut Option<Inherited>, https: SocketAddr) -> Option<std::net::UdpSocket> {
    if let Some(socket) = inherited.as_mut().and_then(|i| i.udp(UDP_ROLE, https)) {
        return Some(socket);
    }
    match std::net::UdpSocket::bind(https) {
        Ok(socket) => Some(socket),
        Err(e) => {
            tracing::warn!(%https, error = %e, "HTTP/3 is off: cannot bind the HTTPS port's UDP socket (--http3 off says so without this warning)");
            None
        }
    }
}

/// [`bind`] for the admin and metrics listeners, which may also be unix sockets.
async fn bind_admin(
    inherited: &mut Option<Inherited>,
    flag: &str,
    addr: &AdminAddr,
) -> anyhow::Result<(AdminListener, AdminAddr)> {
    let taken = inherited.as_mut().and_then(|i| match addr {
        AdminAddr::Tcp(wanted) => i.tcp(flag, *wanted).map(AdminListener::Tcp),
        AdminAddr::Unix(path) => i.unix(flag, path).map(AdminListener::Unix),
    });
    let bound = match taken {
        Some(listener) => listener.bound(addr).map(|bound| (listener, bound)),
        None => admin::bind(addr).await,
    };
    bound.with_context(|| format!("cannot bind {flag} {addr}"))
}

/// A copy of a listening socket, for a successor.
fn copy(flag: &'static str, socket: &impl AsFd) -> anyhow::Result<(&'static str, OwnedFd)> {
    let fd = socket.as_fd().try_clone_to_owned();
    Ok((
        flag,
        fd.with_context(|| format!("cannot copy the {flag} socket"))?,
    ))
}
