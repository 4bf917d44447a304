//! One shape for the background services `porter serve` runs (the site and challenge
//! watchers, ticket rotation, apps, the admin API, the OCSP refresher, the ACME worker): each is
//! a future made from the shutdown signal, started at once or once the edge is ready (every
//! site loaded: the workers read every certificate too, and doing that while the edge does
//! would slow its start), and awaited at shutdown for at most the grace period. A service that
//! ends on its own or panics is logged by name.
//!
//! And one way for a service to follow the store's changes ([`follow`] a [`Follower`]): a full
//! read at the start, then each batch of the changes it cares about, with one policy for what
//! goes wrong (missed changes, a failed read, the feed closing).
use porter_store::{Change, StoreError};
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
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

/// A service that keeps something in step with the store (the served sites, the challenge
/// answers, the on-demand rules, the ticket keys, the apps), driven by [`follow`]: it says which
/// changes concern it and what to do with them; [`follow`] does the rest.
pub(crate) trait Follower: Sync {
    /// Its name in the logs.
    const NAME: &'static str;

    /// Whether `change` concerns it; the others are dropped. (Missed changes and
    /// [`Change::Everything`] concern every follower, as a [`Follower::reload`].)
    fn cares(&self, change: &Change) -> bool;

    /// Reads everything it follows: at the start, after missed changes or
    /// [`Change::Everything`], and after a failed read (which may have lost changes).
    fn reload(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes in the changes it cares about that arrived together (in order, never empty); by
    /// default, a full [`Follower::reload`], for followers whose whole state is one read.
    fn apply(&self, _batch: Vec<Change>) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.reload()
    }
}

/// The wait after the first failed read; it doubles with each failure that follows, up to
/// [`RETRY_MAX`]. A change that concerns the follower ends the wait early: the store answers
/// again, and the change must not wait on the back-off.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two reads of a store that fails.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What [`follow`] does next.
enum Next {
    /// A full read.
    Reload,
    /// Take in these changes.
    Apply(Vec<Change>),
    /// Nothing that concerns the follower arrived.
    Nothing,
    /// The feed is closed: no change comes any more.
    Stop,
}

/// Keeps `follower` in step with the store from `changes` until `shutdown` or until the feed
/// closes: a full read first, then every batch of changes (all that are waiting, filtered by
/// [`Follower::cares`]); missed changes or [`Change::Everything`] make one full read; a failed
/// read is retried as a full read with a growing wait (see [`RETRY_MAX`]), logged once per
/// [`crate::runtime::log_limit::INTERVAL`]. `changes` must have been subscribed before the follower's
/// state was first read, so that nothing committed in between is missed.
pub(crate) async fn follow<F: Follower>(
    follower: &F,
    mut changes: broadcast::Receiver<Change>,
    shutdown: &CancellationToken,
) {
    let mut failures = Failures::default();
    let mut next = Next::Reload;
    loop {
        let read = match next {
            Next::Reload => follower.reload().await,
            Next::Apply(batch) => follower.apply(batch).await,
            Next::Nothing => Ok(()),
            Next::Stop => return,
        };
        next = match read {
            Ok(()) => {
                failures.over(F::NAME);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    first = changes.recv() => batch(follower, first, &mut changes),
                }
            }
            Err(e) => {
                let retry_at = tokio::time::Instant::now() + failures.add(F::NAME, &e);
                loop {
                    let arrived = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep_until(retry_at) => break Next::Reload,
                        first = changes.recv() => batch(follower, first, &mut changes),
                    };
                    match arrived {
                        Next::Nothing => {}
                        Next::Stop => return,
                        Next::Reload | Next::Apply(_) => break Next::Reload,
                    }
                }
            }
        };
    }
}

/// `first` and every change already waiting after it, as one step for `follower`.
fn batch<F: Follower>(
    follower: &F,
    first: Result<Change, RecvError>,
    changes: &mut broadcast::Receiver<Change>,
) -> Next {
    let mut next = Next::Nothing;
    let mut arrived = Some(first);
    while let Some(change) = arrived.take() {
        next = match (next, change) {
            (_, Err(RecvError::Closed)) => return Next::Stop,
            (_, Ok(Change::Everything) | Err(RecvError::Lagged(_))) | (Next::Reload, _) => {
                Next::Reload
            }
            (next, Ok(change)) if !follower.cares(&change) => next,
            (Next::Apply(mut batch), Ok(change)) => {
                batch.push(change);
                Next::Apply(batch)
            }
            (_, Ok(change)) => Next::Apply(vec![change]),
        };
        arrived = match changes.try_recv() {
            Ok(change) => Some(Ok(change)),
            Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
            // A closed feed is seen by the next wait, once this batch is taken in.
            Err(TryRecvError::Empty | TryRecvError::Closed) => None,
        };
    }
    next
}

/// The failed reads of a follower since its last good one.
#[derive(Default)]
struct Failures {
    count: u32,
    /// When the last of them was logged.
    logged: Option<Instant>,
}

impl Failures {
    /// Counts the failed read `e` (logged unless one was in the last interval), and returns
    /// how long to wait before the next.
    fn add(&mut self, name: &'static str, e: &StoreError) -> Duration {
        self.count += 1;
        let wait = RETRY_FIRST
            .saturating_mul(1 << (self.count - 1).min(8))
            .min(RETRY_MAX);
        if self
            .logged
            .is_none_or(|at| at.elapsed() >= crate::runtime::log_limit::INTERVAL)
        {
            self.logged = Some(Instant::now());
            tracing::error!(
                follower = name,
                error = %e,
                failed_reads = self.count,
                retry_in = ?wait,
                "cannot read the store; keeping what was read before and retrying"
            );
        }
        wait
    }

    /// A read worked: says so when some had failed, and starts counting again.
    fn over(&mut self, name: &'static str) {
        if self.count > 0 {
            tracing::info!(
                follower = name,
                failed_reads = self.count,
                "the store is read again"
            );
            *self = Failures::default();
        }
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
    /// What a follower under test was asked to do.
    #[derive(Debug, PartialEq)]
    enum Asked {
        Reload,
        Apply(Vec<Change>),
    }

    /// A follower that reports what it is asked (caring for everything but ACME progress),
    /// and fails its first `failing` reads.
    struct Recorder {
        asked: tokio::sync::mpsc::UnboundedSender<Asked>,
        failing: std::sync::atomic::AtomicU32,
    }

    impl Recorder {
        fn new(failing: u32) -> (Self, tokio::sync::mpsc::UnboundedReceiver<Asked>) {
            let (asked, seen) = tokio::sync::mpsc::unbounded_channel();
            let failing = failing.into();
            (Recorder { asked, failing }, seen)
        }

        fn answer(&self) -> Result<(), StoreError> {
            let left = self.failing.load(std::sync::atomic::Ordering::Relaxed);
            if left == 0 {
                return Ok(());
            }
            self.failing
                .store(left - 1, std::sync::atomic::Ordering::Relaxed);
            Err(StoreError::Stalled {
                op: "a test read",
                after: Duration::from_secs(1),
            })
        }
    }

    impl Follower for Recorder {
        const NAME: &'static str = "recorder";

        fn cares(&self, change: &Change) -> bool {
            !matches!(change, Change::Acme(_))
        }

        async fn reload(&self) -> Result<(), StoreError> {
            self.asked.send(Asked::Reload).unwrap();
            self.answer()
        }

        async fn apply(&self, batch: Vec<Change>) -> Result<(), StoreError> {
            self.asked.send(Asked::Apply(batch)).unwrap();
            self.answer()
        }
    }

    fn site(name: &str) -> Change {
        Change::Site(porter_store::DomainName::parse(name).unwrap())
    }

    fn acme(name: &str) -> Change {
        Change::Acme(porter_store::DomainName::parse(name).unwrap())
    }

    // The follower runs on this test's thread: what is sent before the test awaits arrives
    // together, as one batch.
    #[tokio::test(start_paused = true)]
    async fn a_follower_reads_all_then_batches_and_reads_all_again_after_missed_changes() {
        let (feed, changes) = broadcast::channel(4);
        let (recorder, mut asked) = Recorder::new(0);
        let shutdown = CancellationToken::new();
        let following = tokio::spawn(async move { follow(&recorder, changes, &shutdown).await });
        feed.send(site("a.test")).unwrap();
        feed.send(acme("a.test")).unwrap();
        feed.send(Change::TicketKeys).unwrap();
        assert_eq!(asked.recv().await, Some(Asked::Reload), "a full read first");
        assert_eq!(
            asked.recv().await,
            Some(Asked::Apply(vec![site("a.test"), Change::TicketKeys])),
            "one batch, without what the follower does not care about"
        );

        feed.send(acme("b.test")).unwrap();
        feed.send(site("b.test")).unwrap();
        feed.send(Change::Everything).unwrap();
        feed.send(site("c.test")).unwrap();
        assert_eq!(asked.recv().await, Some(Asked::Reload), "Everything");

        for i in 0..6 {
            feed.send(site(&format!("s{i}.test"))).unwrap();
        }
        assert_eq!(asked.recv().await, Some(Asked::Reload), "missed changes");

        feed.send(acme("d.test")).unwrap();
        drop(feed);
        following.await.unwrap();
        assert_eq!(
            asked.recv().await,
            None,
            "nothing more after the feed closed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_read_is_retried_with_a_growing_wait_that_a_change_cuts_short() {
        let (feed, changes) = broadcast::channel(4);
        let (recorder, mut asked) = Recorder::new(3);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let following = tokio::spawn(async move { follow(&recorder, changes, &stop).await });
        let started = tokio::time::Instant::now();
        assert_eq!(asked.recv().await, Some(Asked::Reload));
        feed.send(site("a.test")).unwrap();
        assert_eq!(
            asked.recv().await,
            Some(Asked::Reload),
            "a retry is a full read"
        );
        assert_eq!(started.elapsed(), Duration::ZERO, "a change ends the wait");

        assert_eq!(asked.recv().await, Some(Asked::Reload));
        assert_eq!(started.elapsed(), RETRY_FIRST * 2, "the wait doubles");
        feed.send(acme("a.test")).unwrap();
        assert_eq!(asked.recv().await, Some(Asked::Reload));
        assert_eq!(
            started.elapsed(),
            RETRY_FIRST * 6,
            "a change the follower does not care about does not end the wait"
        );

        feed.send(site("b.test")).unwrap();
        assert_eq!(
            asked.recv().await,
            Some(Asked::Apply(vec![site("b.test")])),
            "changes are taken in again once a read worked"
        );
        shutdown.cancel();
        following.await.unwrap();
        assert_eq!(asked.recv().await, None);
    }
}
