//! The admin API: how the CLI (and scripts) change a running server. HTTP on a loopback address
//! or a unix socket, a bearer token kept in the data dir (mode 0600), and a discovery file that
//! tells the CLI where the running server listens.

mod client;
mod command;
mod discovery;
mod router;
mod server;
mod token;

pub(crate) use client::{AdminClient, ClientError};
pub(crate) use command::{AdminCommand, Answer};
pub(crate) use discovery::Discovery;
pub(crate) use router::{execute, Context};
pub(crate) use server::{bind, serve, AdminListener, Serves};
pub(crate) use token::load_or_create as load_or_create_token;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the admin API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AdminAddr {
    /// A loopback TCP address.
    Tcp(SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

impl std::str::FromStr for AdminAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("{s:?}: the unix socket path must be absolute"));
            }
            return Ok(AdminAddr::Unix(PathBuf::from(path)));
        }
        let addr: SocketAddr = s
            .parse()
            .map_err(|_| format!("{s:?}: expected IP:PORT on loopback or unix:/path"))?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "{s:?}: the admin API carries its token in clear text, so it listens only on loopback or a unix socket"
            ));
        }
        Ok(AdminAddr::Tcp(addr))
    }
}

impl fmt::Display for AdminAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminAddr::Tcp(addr) => write!(f, "{addr}"),
            AdminAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}
