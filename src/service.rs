//! One shape for the background services `porter serve` runs (the site and challenge
//! watchers, ticket rotation, apps, the admin API, the OCSP refresher, the ACME worker): each is
//! a future made from the shutdown signal, started at once or once the edge is ready (every
//! site loaded: the workers read every certificate too, and doing that while the edge does
//! would slow its start), and awaited at shutdown for at most the grace period. A service that
//! ends on its own or panics is logged by name.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

/// When a service starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// At once.
    Now,
    /// Once the edge is ready (see [`Services::readiness`]).
    WhenReady,
}

/// The services of one `porter serve`.
pub(crate) struct Services {
    tasks: JoinSet<()>,
    names: HashMap<Id, &'static str>,
    shutdown: CancellationToken,
    ready: watch::Receiver<bool>,
    readiness: Option<watch::Sender<bool>>,
}

impl Services {
    /// No service yet; `shutdown` stops them all.
    pub(crate) fn new(shutdown: CancellationToken) -> Self {
        let (readiness, ready) = watch::channel(false);
        Services {
            tasks: JoinSet::new(),
            names: HashMap::new(),
            shutdown,
            ready,
            readiness: Some(readiness),
        }
    }

    /// The shutdown signal, for what stops with the services without being one (the edge
    /// threads).
    pub(crate) fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The signal that the edge is ready, for the one service that knows it (set to true).
    /// Taken once.
    pub(crate) fn readiness(&mut self) -> watch::Sender<bool> {
        self.readiness
            .take()
            .expect("the readiness signal is handed out once")
    }

    /// Starts the service `make` returns for the shutdown signal, `when` it should start.
    pub(crate) fn start<F>(
        &mut self,
        name: &'static str,
        when: Start,
        make: impl FnOnce(CancellationToken) -> F,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        let service = make(shutdown.clone());
        let mut ready = self.ready.clone();
        let handle = self.tasks.spawn(async move {
            if when == Start::WhenReady {
                let ready = tokio::select! {
                    _ = shutdown.cancelled() => false,
                    // An error means the edge stopped before it was ready.
                    ready = ready.wait_for(|ready| *ready) => ready.is_ok(),
                };
                if !ready {
                    return;
                }
            }
            service.await;
            if !shutdown.is_cancelled() {
                tracing::warn!(service = name, "service ended on its own");
            }
        });
        self.names.insert(handle.id(), name);
    }

    /// Signals shutdown and waits for every service, for at most `grace`; false when some did
    /// not stop in time (they are left to the process exit).
    pub(crate) async fn stop(mut self, grace: Duration) -> bool {
        self.shutdown.cancel();
        let names = &self.names;
        let tasks = &mut self.tasks;
        tokio::time::timeout(grace, async move {
            while let Some(done) = tasks.join_next_with_id().await {
                if let Err(e) = done {
                    let name = names.get(&e.id()).copied().unwrap_or("?");
                    tracing::error!(service = name, error = %e, "service failed");
                }
            }
        })
        .await
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn services_start_when_told_and_stop_within_the_grace() {
        let mut services = Services::new(CancellationToken::new());
        let (started, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let now = started.clone();
        services.start("now", Start::Now, move |shutdown| async move {
            now.send("now").unwrap();
            shutdown.cancelled().await;
        });
        services.start("later", Start::WhenReady, move |shutdown| async move {
            started.send("later").unwrap();
            shutdown.cancelled().await;
        });
        assert_eq!(seen.recv().await, Some("now"));
        assert!(seen.try_recv().is_err(), "not ready yet");
        services.readiness().send_replace(true);
        assert_eq!(seen.recv().await, Some("later"));
        assert!(services.stop(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_service_that_ignores_shutdown_does_not_hold_the_stop() {
        let mut services = Services::new(CancellationToken::new());
        services.start("stuck", Start::Now, |_| std::future::pending());
        services.start("unready", Start::WhenReady, |_| async {});
        assert!(!services.stop(Duration::from_millis(50)).await);
    }
}
