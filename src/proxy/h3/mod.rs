//! HTTP/3 over QUIC on the HTTPS port (UDP): the same certificates, tickets, limits and request
//! path as HTTP/1.1 and HTTP/2. The endpoint and who may connect (`endpoint`), a connection's
//! requests (`connection`), a request's body (`body`), the QUIC configuration (`config`) and
//! whether a session was resumed (`resumed`).

mod body;
mod config;
mod connection;
mod endpoint;
mod resumed;

pub(crate) use config::server_config;
pub(crate) use endpoint::Quic;
