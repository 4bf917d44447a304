//! How `porter serve` ends: on a signal, or when a successor it started (SIGUSR2) or that
//! started on its own takes over; then the drain, bounded by the shutdown grace.

use super::store::STORE_HANDOVER_WAIT;
use crate::observe::access_log::AccessLog;
use crate::proxy::{self, EdgeThreads};
use crate::runtime::handover::{Handed, Offer};
use crate::runtime::service::Services;
use anyhow::Context as _;
use porter_store::SledStore;
use std::path::Path;
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// Waits for SIGTERM or SIGINT, or for a successor to take over (true, with the connection to
/// it, which the successor waits to see closed before it reads the QUIC socket: hold it until
/// this process exits). SIGHUP reopens the
/// access log (logrotate's signal), and never stops Porter. SIGUSR2 starts a successor: this
/// program again, from its path on disk (a new binary installed there is the upgrade), with
/// the same arguments; it takes over as any new server on the data dir does.
pub(super) async fn wait_for_stop(
    offer: &Offer,
    sled: Option<&SledStore>,
    access_log: Option<&AccessLog>,
) -> anyhow::Result<(bool, Option<tokio::net::UnixStream>)> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok((false, None)),
            _ = int.recv() => return Ok((false, None)),
            _ = usr2.recv() => match spawn_successor() {
                Ok(pid) => tracing::info!(successor = pid, "SIGUSR2: started a successor; it takes over once it serves"),
                Err(e) => tracing::error!(error = %e, "SIGUSR2: cannot start a successor; serving on"),
            },
            _ = hup.recv() => {
                if let Some(log) = access_log {
                    log.reopen();
                }
                tracing::info!("SIGHUP: log files reopened");
            }
            channel = offer.asked() => {
                // From here the edge serves from memory while the successor opens the store.
                if let Some(sled) = sled {
                    sled.release();
                }
                let outcome = tokio::select! {
                    outcome = Offer::outcome(channel) => outcome,
                    // Stopped meanwhile: the successor has the sockets and the store.
                    _ = term.recv() => return Ok((true, None)),
                    _ = int.recv() => return Ok((true, None)),
                };
                match outcome {
                    Handed::Over(successor) => return Ok((true, Some(successor))),
                    Handed::Abandoned => {
                        tracing::warn!("the successor went away before it served: taking the store back and carrying on");
                        if let Some(sled) = sled {
                            sled.reclaim(STORE_HANDOVER_WAIT)
                                .await
                                .context("cannot take the store back from a successor that gave up")?;
                        }
                    }
                }
            }
        }
    }
}

/// Starts this program again with the same arguments and `--take-over`, from its path as
/// invoked (so a binary installed over it since is the one started); its exit, if it comes
/// before this server's, is logged.
fn spawn_successor() -> std::io::Result<u32> {
    let mut args = std::env::args_os();
    let invoked = args.next().unwrap_or_default();
    let program = if Path::new(&invoked).components().count() > 1 {
        std::path::PathBuf::from(invoked)
    } else {
        // Found on PATH: the running file, wherever it is.
        std::env::current_exe()?
    };
    let mut args: Vec<_> = args.collect();
    // The successor replaces this server: that is what it is started for.
    if !args.iter().any(|a| a == "--take-over") {
        args.push("--take-over".into());
    }
    let mut child = tokio::process::Command::new(&program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id().unwrap_or_default();
    tokio::spawn(async move {
        if let Ok(status) = child.wait().await {
            if !status.success() {
                tracing::error!(pid, %status, "the successor exited before it took over");
            }
        }
    });
    Ok(pid)
}

/// Stops the services, then lets the admin connections and the edge's connections finish,
/// all within `grace`: a service waiting on a stalled store must not hold the process past it.
pub(super) async fn drain(
    services: Services,
    admin_connections: &TaskTracker,
    edge: EdgeThreads,
    grace: Duration,
) {
    let stopped = tokio::time::timeout(grace, async {
        let services_stopped = services.stop(grace).await;
        tokio::join!(proxy::drain(admin_connections, grace), edge.finished());
        services_stopped
    })
    .await;
    if stopped != Ok(true) {
        tracing::warn!(
            ?grace,
            "some services did not stop within the shutdown grace; exiting without them"
        );
    }
}
