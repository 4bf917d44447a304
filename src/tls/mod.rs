//! TLS termination: the rustls configuration, the SNI certificate resolver, and the accept step
//! that refuses names Porter does not serve with a proper `unrecognized_name` alert.

mod accept;
mod config;
mod first_flight;
mod resolver;
mod tickets;

pub(crate) use accept::{accept, Refused};
pub(crate) use config::server_config;
pub(crate) use resolver::server_name;
pub(crate) use tickets::Keyring;
