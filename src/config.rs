//! `porter serve` flags, each also read from a `PORTER_*` environment variable, parsed into
//! typed values so that a bad one is refused at start with a message naming it.

use crate::admin::AdminAddr;
use porter_store::DomainName;
use std::net::SocketAddr;
use std::time::Duration;

fn domain(s: &str) -> Result<DomainName, String> {
    let name = DomainName::parse(s).map_err(|e| e.to_string())?;
    if name.is_wildcard() {
        return Err("the default name must be an exact name, not a wildcard".into());
    }
    Ok(name)
}

fn seconds(s: &str) -> Result<Duration, String> {
    let n: u64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of seconds, like 10s"))?;
    if n == 0 {
        return Err("must be at least 1s".into());
    }
    Ok(Duration::from_secs(n))
}

/// `porter serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Plain HTTP listener (redirects to HTTPS, serves sites without a certificate).
    #[arg(long, env = "PORTER_HTTP", default_value = "[::]:80")]
    pub(crate) http: SocketAddr,
    /// HTTPS listener.
    #[arg(long, env = "PORTER_HTTPS", default_value = "[::]:443")]
    pub(crate) https: SocketAddr,
    /// Admin API: a loopback IP:PORT or unix:/path.
    #[arg(long, env = "PORTER_ADMIN", default_value = "127.0.0.1:2019")]
    pub(crate) admin: AdminAddr,
    /// Site whose certificate answers TLS clients that send no SNI (else they are refused).
    #[arg(long, env = "PORTER_DEFAULT_SNI", value_parser = domain)]
    pub(crate) default_sni: Option<DomainName>,
    /// Most client connections open at once, both listeners together.
    #[arg(long, env = "PORTER_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub(crate) max_connections: usize,
    /// Time to connect to an upstream before answering 504.
    #[arg(long, env = "PORTER_UPSTREAM_CONNECT_TIMEOUT", default_value = "5s", value_parser = seconds)]
    pub(crate) upstream_connect_timeout: Duration,
    /// Time to wait for an upstream's response headers (then 504), and for body data in either
    /// direction (then the exchange is aborted).
    #[arg(long, env = "PORTER_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = seconds)]
    pub(crate) upstream_timeout: Duration,
    /// Time open connections get to finish at shutdown.
    #[arg(long, env = "PORTER_SHUTDOWN_GRACE", default_value = "10s", value_parser = seconds)]
    pub(crate) shutdown_grace: Duration,
}
