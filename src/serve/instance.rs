//! One server per data dir. A second `porter serve` on a data dir a server already serves is
//! refused (saying which server, where), unless it is asked to take over; and a server that is
//! starting says so with a lock file, so that CLI commands step aside instead of opening the
//! store under it.

use crate::control::admin::Discovery;
use crate::serve::config::ServeArgs;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::Path;

/// The file a starting server holds locked until it serves.
const STARTING: &str = "starting.lock";
/// How long a starting server waits for the lock while CLI commands look at it.
const MARK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Refuses to start next to a running server unless `--take-over` is given; with it, says
/// what the running server does that this one will not.
pub(crate) fn check_alone(data_dir: &Path, args: &ServeArgs) -> anyhow::Result<()> {
    let Some(running) = Discovery::read(data_dir) else {
        return Ok(());
    };
    let at = format!(
        " on http {}, https {}, admin {}",
        running.http, running.https, running.admin
    );
    check_taking_over(running.pid, data_dir, &at, args)?;
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

/// Refuses to replace the server `pid` (serving `data_dir` `at` some addresses) unless
/// `--take-over` is given.
pub(crate) fn check_taking_over(
    pid: u32,
    data_dir: &Path,
    at: &str,
    args: &ServeArgs,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.take_over,
        "a porter server (pid {pid}) already serves {}{at}: stop it first, or pass --take-over \
         to replace it without refusing a connection",
        data_dir.display()
    );
    Ok(())
}

/// Held by a server from its start until it serves (or fails).
pub(crate) struct Starting {
    _lock: Flock<File>,
}

impl Starting {
    /// Marks the data dir as having a server start in it. A CLI command looking holds the
    /// lock for an instant: that is waited for. Another server starting holds it longer: a
    /// server taking over goes on without the mark, any other is refused.
    pub(crate) fn mark(data_dir: &Path, take_over: bool) -> anyhow::Result<Option<Starting>> {
        let mut file = File::create(data_dir.join(STARTING))?;
        let deadline = std::time::Instant::now() + MARK_WAIT;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(Some(Starting { _lock: lock })),
                Err((back, nix::errno::Errno::EWOULDBLOCK)) => file = back,
                Err((_, e)) => return Err(e.into()),
            }
            if std::time::Instant::now() >= deadline {
                anyhow::ensure!(
                    take_over,
                    "another porter serve is starting on {}: wait for it, or pass --take-over to replace it once it serves",
                    data_dir.display()
                );
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
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
