//! The upstream side of a request: connections to upstreams ([`connector`]) and their reuse
//! ([`pool`]), the exchange and its failures ([`forward`]), WebSocket tunnels ([`upgrade`]),
//! bodies ([`body`], with deadlines in [`idle`] and what a response holds until it ends in
//! [`held`]), response compression ([`compress`]) and forwarding between fleet nodes
//! ([`fleet`]).

pub(super) mod body;
pub(super) mod compress;
pub(super) mod connector;
pub(crate) mod fleet;
pub(super) mod forward;
pub(super) mod held;
pub(super) mod idle;
pub(super) mod pool;
pub(super) mod upgrade;
