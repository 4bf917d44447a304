//! The control plane: the [`admin`] API (its HTTP server, router, client, token and discovery
//! file) and the [`ops`] behind it, which the CLI also runs against the store when no server is
//! up. It may use every part of the edge; only `serve` and the CLI use it.

pub(crate) mod admin;
pub(crate) mod ops;
