//! The command line: `porter serve` and the management commands.
//! - `args`: the commands and flags as clap reads them;
//! - `dispatch`: running a parsed command, on the running server's admin API or on the store;
//! - `render`: what the answers look like for a person (tables, short texts);
//! - `cert_check`: `cert status --check`, the monitoring plugin;
//! - `exit`: the exit codes (0 done, 1 failed, 2 usage, 3 refused, 4 not found, 5 retry), one
//!   kind per way a command fails.

mod args;
mod cert_check;
mod dispatch;
#[cfg(test)]
mod docs_commands;
mod exit;
mod render;

pub(crate) use args::{Cli, LogFormat};
pub(crate) use dispatch::run;
