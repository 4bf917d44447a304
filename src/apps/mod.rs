//! Account daemons: Porter starts an app's own HTTP server when a request needs it, stops it
//! after a quiet period, restarts it when it crashes or fails its health check (a crash loop
//! marks it failed until `porter app restart`), and replaces it without failing a request when
//! its settings change.
//!
//! - `supervisor`: the proxy asks it for a lease on an app; `actor`: the task per app that
//!   owns its lifecycle; `messages`: what the two tell each other and hand out (commands,
//!   events, leases, status), so that the supervisor uses the actor and never the reverse.
//! - `process`: spawning (own process group, user and group, logs with a size cap, pid files)
//!   and stopping (signal the group, kill after the grace period).
//! - `probe`: readiness and health checks; `listeners`: what an app that never became ready
//!   listens on instead; `policy`: pure restart rules.

mod actor;
mod listeners;
mod messages;
mod policy;
mod probe;
mod process;
mod supervisor;

pub(crate) use messages::{AppStatus, Lease, Unavailable};
pub(crate) use process::{identity, names_port, parse_signal, tail};
pub(crate) use supervisor::{Supervisor, STATES};
