//! The process runtime every other part stands on: the background services and the one
//! follower of the store's changes ([`service`]), the data dir ([`data_dir`]), where the store
//! is ([`store_at`]), zero-downtime handover ([`handover`]), systemd readiness ([`systemd`]),
//! what the kernel says of the process's memory ([`memory`]), fast hashes ([`hash`]), the TLS crypto provider
//! ([`crypto`]), rate-limited and library logs
//! ([`log_limit`], [`library_logs`]), the write side of read-only I/O wrappers
//! ([`write_through`]) and the values operators write ([`duration`],
//! [`network`], [`size`]).
//! It uses nothing of Porter above it.

pub(crate) mod crypto;
pub(crate) mod data_dir;
pub(crate) mod duration;
pub(crate) mod handover;
pub(crate) mod hash;
pub(crate) mod library_logs;
pub(crate) mod log_limit;
pub(crate) mod memory;
pub(crate) mod network;
pub(crate) mod service;
pub(crate) mod size;
pub(crate) mod store_at;
pub(crate) mod systemd;
pub(crate) mod write_through;
