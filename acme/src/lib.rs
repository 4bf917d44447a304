//! `porter-acme`: the ACME worker that keeps every site's certificate valid, against Let's
//! Encrypt or any RFC 8555 CA. It reads and writes the store only; the edge serves what it stores.
//!
//! # Layout
//! - [`Config`]: the CA and the account, challenge and key settings.
//! - `worker`: the loop over due work, with bounded concurrency and one order per domain;
//!   `agenda`: when each site is next due, updated one site at a time.
//! - `schedule`: pure timing: renewal from each certificate's lifetime or the CA's ARI window,
//!   emergency renewal, failure backoff. [`renewal`] is public for `porter cert status`.
//! - `order`: one order, resumable after a crash; `challenge`: the material the edge answers
//!   HTTP-01 and TLS-ALPN-01 with; `dns`: DNS-01 records set over RFC 2136; `keys`: certificate keys and CSRs; `account`: the account.
//! - `http`: the paced HTTPS client towards the CA (global rate, `Retry-After` honoured).
//! - `ocsp`: the OCSP refresher ([`run_ocsp`]); `ocsp_check`: verification of responses.
//! - `request`: what an operator asks of the worker ([`request`]), kept apart from the
//!   worker's own state, which only the worker writes.
//! - `outcomes`: orders by result since the start, for metrics ([`Outcomes`]).
//! - `cert_pages`: the planners' page-at-a-time read of every certificate.

mod account;
mod agenda;
mod cert_pages;
mod challenge;
mod config;
mod dns;
mod error;
mod http;
mod keys;
mod ocsp;
mod ocsp_check;
mod order;
mod outcomes;
mod request;
mod schedule;
mod worker;

pub use config::{
    ChallengeKind, Config, Eab, Fallback, KeyType, LETS_ENCRYPT, LETS_ENCRYPT_STAGING,
};
pub use error::AcmeError;
pub use ocsp::{responder_url, run as run_ocsp};
pub use outcomes::Outcomes;
pub use request::{request, AcmeAction};
pub use schedule::{renewal, Renewal, RenewalReason};
pub use worker::AcmeWorker;
