//! One server per data dir. A second `porter serve` on a data dir a server already serves is
//! refused (saying which server, where), unless it is asked to take over; and a server that is
//! starting says so with a lock file, so that CLI commands step aside instead of opening the
//! store under it.

use crate::admin::Discovery;
use crate::config::ServeArgs;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::Path;

/// The file a starting server holds locked until it serves.
const STARTING: &str = "starting.lock";

/// Refuses to start next to a running server unless `--take-over` is given; with it, says
/// what the running server does that this one will not.
pub(crate) fn check_alone(data_dir: &Path, args: &ServeArgs) -> anyhow::Result<()> {
    let Some(running) = Discovery::read(data_dir) else {
        return Ok(());
    };
    if !args.take_over {
        anyhow::bail!(
            "a porter server (pid {}) already serves {} on http {}, https {}, admin {}: stop it \
             first, or pass --take-over to replace it without refusing a connection",
            running.pid,
            data_dir.display(),
            running.http,
            running.https,
            running.admin
        );
    }
    let mut dropped = Vec::new();
    if running.acme && !args.acme.acme_agree_tos {
        dropped.push("ACME (it has --acme-agree-tos)".to_owned());
    }
    if let (Some(metrics), None) = (&running.metrics, &args.metrics) {
        dropped.push(format!("metrics (it has --metrics {metrics})"));
    }
    if let (Some(log), None) = (&running.access_log, &args.access_log) {
        dropped.push(format!("the access log (it has --access-log {log})"));
    }
    if !dropped.is_empty() {
        tracing::warn!(
            pid = running.pid,
            dropped = %dropped.join(", "),
            "taking over drops what the running server does: pass the same flags to keep it"
        );
    }
    Ok(())
}

/// Held by a server from its start until it serves (or fails).
pub(crate) struct Starting {
    _lock: Flock<File>,
}

impl Starting {
    /// Marks the data dir as having a server start in it. A server taking over from another
    /// may find a third one starting: it waits for nothing and marks nothing then.
    pub(crate) fn mark(data_dir: &Path) -> std::io::Result<Option<Starting>> {
        let file = File::create(data_dir.join(STARTING))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(Starting { _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e.into()),
        }
    }
}

/// Whether a server is starting in `data_dir` (it holds the lock a CLI command must not wait
/// behind: the command goes to its admin API once it answers).
pub(crate) fn server_starting(data_dir: &Path) -> bool {
    let Ok(file) = File::open(data_dir.join(STARTING)) else {
        return false;
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_) => false,
        Err((_, e)) => e == nix::errno::Errno::EWOULDBLOCK,
    }
}
