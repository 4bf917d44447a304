//! One app's actor: the task that owns the app's lifecycle (its instances, the requests
//! waiting for one, crashes, health checks and replacement), driven by the supervisor's
//! commands and by the events of its own processes.

use super::messages::{AppStatus, Cmd, Event, Lease, Shared, Unavailable, LOG_LINES, QUEUE};
use super::policy::{crash_loop, restart_delay, HEALTH_FAILURES};
use super::probe::{self, NotReady};
use super::process::{self, parse_signal, Paths};
use porter_store::{App, RestartPolicy, Upstream};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// A running (or starting, or draining) process of an app.
struct Instance {
    generation: u64,
    pid: u32,
    upstream: Upstream,
    shared: Arc<Shared>,
    started: Instant,
    stop: Option<oneshot::Sender<()>>,
    /// Set when it was told to stop, so that its exit is not a crash.
    stopping: bool,
    draining_since: Option<Instant>,
}

impl Instance {
    fn lease(&self) -> Lease {
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        self.shared
            .last_activity_ms
            .store(porter_store::unix_now_ms(), Ordering::Relaxed);
        Lease {
            upstream: self.upstream.clone(),
            shared: Some(self.shared.clone()),
        }
    }

    fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    fn request_stop(&mut self) {
        self.stopping = true;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Whether `slot` holds the instance of `generation`.
fn holds(slot: &Option<Instance>, generation: u64) -> bool {
    slot.as_ref().is_some_and(|i| i.generation == generation)
}

pub(super) struct Actor {
    app: App,
    paths: Paths,
    root: bool,
    events: mpsc::Sender<Event>,
    generation: u64,
    serving: Option<Instance>,
    starting: Option<Instance>,
    draining: Vec<Instance>,
    waiters: Vec<oneshot::Sender<Result<Lease, Unavailable>>>,
    crashes: Vec<Instant>,
    restarts: u32,
    last_exit: Option<String>,
    failed: Option<String>,
    /// Why the last start did not become ready (until one does), with its last log lines.
    start_error: Option<String>,
    /// A start that did not become ready and is still being stopped: the next start waits
    /// for its exit, so that it does not find the port (or whatever) still held by it.
    failed_start_exiting: Option<u64>,
    health_failures: u32,
    health_due: Instant,
    health_running: bool,
    /// Generations whose exit is expected (stopped on purpose).
    expected_exits: HashSet<u64>,
    /// Starts and crashes of every app, for metrics.
    counts: Arc<AppCounts>,
}

/// Starts and crashes of all apps since Porter started.
#[derive(Debug, Default)]
pub(crate) struct AppCounts {
    pub(crate) starts: AtomicU64,
    pub(crate) crashes: AtomicU64,
}

impl Actor {
    pub(super) fn spawn(
        app: App,
        dir: &std::path::Path,
        root: bool,
        runtime: &tokio::runtime::Handle,
        counts: Arc<AppCounts>,
    ) -> mpsc::Sender<Cmd> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (events, events_rx) = mpsc::channel(64);
        let actor = Actor {
            paths: Paths::new(dir, &app),
            app,
            root,
            events,
            generation: 0,
            serving: None,
            starting: None,
            draining: Vec::new(),
            waiters: Vec::new(),
            crashes: Vec::new(),
            restarts: 0,
            last_exit: None,
            failed: None,
            start_error: None,
            failed_start_exiting: None,
            health_failures: 0,
            health_due: Instant::now(),
            health_running: false,
            expected_exits: HashSet::new(),
            counts,
        };
        runtime.spawn(actor.run(rx, events_rx));
        tx
    }

    async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>, mut events: mpsc::Receiver<Event>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Shutdown(done)) => {
                        self.shutdown(&mut events).await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.shutdown(&mut events).await;
                        return;
                    }
                    Some(cmd) => self.command(cmd),
                },
                Some(event) = events.recv() => self.event(event),
                _ = tick.tick() => self.tick(),
            }
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Acquire(reply) => {
                if self.failed.is_some() {
                    let _ = reply.send(Err(Unavailable::Failed));
                } else if let Some(serving) = &self.serving {
                    let _ = reply.send(Ok(serving.lease()));
                } else if self.waiters.len() >= QUEUE {
                    let _ = reply.send(Err(Unavailable::Busy));
                } else {
                    self.waiters.push(reply);
                    if self.starting.is_none() && self.failed_start_exiting.is_none() {
                        self.start();
                    }
                }
            }
            // Read again after missed changes, as it was: nothing to do.
            Cmd::Update(app) if *app == self.app => {}
            Cmd::Update(app) => {
                tracing::info!(app = %app.id, "settings changed");
                self.app = *app;
                self.failed = None;
                self.start_error = None;
                self.crashes.clear();
                if self.serving.is_some() || self.starting.is_some() {
                    self.replace();
                }
            }
            Cmd::Restart => {
                self.failed = None;
                self.start_error = None;
                self.crashes.clear();
                self.replace();
            }
            Cmd::Stop => {
                for instance in self.serving.iter_mut().chain(self.starting.iter_mut()) {
                    self.expected_exits.insert(instance.generation);
                    instance.request_stop();
                }
                if let Some(old) = self.serving.take() {
                    self.draining.push(old);
                }
                if let Some(old) = self.starting.take() {
                    self.draining.push(old);
                }
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.send(Err(Unavailable::Stopped));
                }
            }
            Cmd::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Cmd::Shutdown(_) => unreachable!("handled by the loop"),
        }
    }

    /// Starts a new instance that takes over once ready (the current one drains then).
    fn replace(&mut self) {
        if let Some(mut pending) = self.starting.take() {
            self.expected_exits.insert(pending.generation);
            pending.request_stop();
            self.draining.push(pending);
        }
        self.start();
    }

    fn start(&mut self) {
        self.counts.starts.fetch_add(1, Ordering::Relaxed);
        self.generation += 1;
        let generation = self.generation;
        let spawned = match process::spawn(&self.app, &self.paths, self.root) {
            Ok(spawned) => spawned,
            Err(why) => {
                tracing::error!(app = %self.app.id, error = %why, "cannot start the app");
                self.fail(why);
                return;
            }
        };
        tracing::info!(app = %self.app.id, pid = spawned.pid, upstream = %spawned.upstream, "app starting");
        let (stop, stop_rx) = oneshot::channel::<()>();
        let instance = Instance {
            generation,
            pid: spawned.pid,
            upstream: spawned.upstream.clone(),
            shared: Arc::new(Shared {
                in_flight: AtomicUsize::new(0),
                last_activity_ms: AtomicU64::new(porter_store::unix_now_ms()),
            }),
            started: Instant::now(),
            stop: Some(stop),
            stopping: false,
            draining_since: None,
        };
        let (pid, upstream) = (spawned.pid, spawned.upstream);
        self.watch_process(generation, spawned.child, pid, stop_rx);
        self.await_readiness(generation, upstream, pid);
        self.starting = Some(instance);
    }

    /// The task of the process of `generation`: waits for its exit, or stops it when asked,
    /// and reports the exit.
    fn watch_process(
        &self,
        generation: u64,
        mut child: tokio::process::Child,
        pid: u32,
        stop_rx: oneshot::Receiver<()>,
    ) {
        let events = self.events.clone();
        let signal =
            parse_signal(&self.app.stop_signal).unwrap_or(nix::sys::signal::Signal::SIGTERM);
        let grace = Duration::from_secs(self.app.stop_grace);
        let pid_file = self.paths.pid_file(pid);
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => {
                    process::kill_group(pid);
                    status.map(process::describe).unwrap_or_else(|e| e.to_string())
                }
                Ok(()) = stop_rx => process::stop(&mut child, pid, signal, grace).await,
            };
            let _ = std::fs::remove_file(pid_file);
            let _ = events.send(Event::Exited(generation, status)).await;
        });
    }

    /// The task that polls the readiness check of `generation` until it passes, or says why it
    /// did not.
    fn await_readiness(&self, generation: u64, upstream: Upstream, pid: u32) {
        let (events, check) = (self.events.clone(), self.app.health.clone());
        let timeout = Duration::from_secs(self.app.start_timeout);
        tokio::spawn(async move {
            let event = match probe::become_ready(&upstream, &check, pid, timeout).await {
                Ok(()) => Event::Ready(generation),
                Err(why) => Event::StartFailed(generation, why),
            };
            let _ = events.send(event).await;
        });
    }

    /// `why`, with the app's last log lines.
    fn with_log(&self, why: String) -> String {
        let log = process::tail(&self.paths.log, LOG_LINES);
        if log.is_empty() {
            why
        } else {
            format!("{why}; last log lines:\n{log}")
        }
    }

    fn fail(&mut self, why: String) {
        self.failed = Some(self.with_log(why));
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(Err(Unavailable::Failed));
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Ready(generation) if holds(&self.starting, generation) => self.ready(),
            Event::StartFailed(generation, not_ready) if holds(&self.starting, generation) => {
                self.start_failed(generation, not_ready)
            }
            Event::Exited(generation, status) => self.exited(generation, status),
            Event::Health(generation, ok) if holds(&self.serving, generation) => self.health(ok),
            Event::Health(..) => self.health_running = false,
            Event::Retry => {
                if self.failed.is_none() && self.serving.is_none() && self.starting.is_none() {
                    self.start();
                }
            }
            Event::Ready(_) | Event::StartFailed(..) => {}
        }
    }

    /// The starting instance is ready: it serves the waiting requests and takes over, and the
    /// one it replaces drains.
    fn ready(&mut self) {
        let ready = self.starting.take().expect("checked");
        tracing::info!(app = %self.app.id, pid = ready.pid, ms = ready.started.elapsed().as_millis() as u64, "app ready");
        self.start_error = None;
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(Ok(ready.lease()));
        }
        if let Some(mut old) = self.serving.replace(ready) {
            old.draining_since = Some(Instant::now());
            self.expected_exits.insert(old.generation);
            self.draining.push(old);
        }
        self.health_failures = 0;
        self.health_due = Instant::now() + Duration::from_secs(self.app.health_interval);
    }

    /// The starting instance (of `generation`) did not become ready: it is stopped, counts
    /// as a crash, and the waiting requests learn why.
    fn start_failed(&mut self, generation: u64, not_ready: NotReady) {
        let mut failed = self.starting.take().expect("checked");
        tracing::warn!(app = %self.app.id, why = %not_ready.why, "app did not become ready");
        self.expected_exits.insert(generation);
        failed.request_stop();
        self.draining.push(failed);
        self.failed_start_exiting = Some(generation);
        self.counts.crashes.fetch_add(1, Ordering::Relaxed);
        self.crashes.push(Instant::now());
        let why = format!("the start failed: {}", not_ready.why);
        if crash_loop(&mut self.crashes, Instant::now()) {
            self.fail(why);
        } else {
            self.start_error = Some(self.with_log(why));
        }
        let answer = match not_ready.elsewhere {
            true => Unavailable::ListensElsewhere,
            false => Unavailable::StartTimeout,
        };
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(Err(answer.clone()));
        }
    }

    /// A health check of the serving instance ended: after too many failures in a row, a new
    /// instance replaces it.
    fn health(&mut self, ok: bool) {
        self.health_running = false;
        self.health_failures = if ok { 0 } else { self.health_failures + 1 };
        if self.health_failures >= HEALTH_FAILURES && self.starting.is_none() {
            tracing::warn!(app = %self.app.id, "health check keeps failing; restarting");
            self.restarts += 1;
            self.health_failures = 0;
            self.replace();
        }
    }

    fn exited(&mut self, generation: u64, status: String) {
        self.draining.retain(|d| d.generation != generation);
        if self.failed_start_exiting == Some(generation) {
            self.failed_start_exiting = None;
            // Requests came while it was being stopped: their start is now.
            let idle = self.serving.is_none() && self.starting.is_none();
            if idle && self.failed.is_none() && !self.waiters.is_empty() {
                self.start();
            }
        }
        if self.expected_exits.remove(&generation) {
            return;
        }
        let starting = holds(&self.starting, generation);
        let crashed = if holds(&self.serving, generation) {
            self.serving.take()
        } else if starting {
            self.starting.take()
        } else {
            None
        };
        let Some(crashed) = crashed else { return };
        tracing::warn!(app = %self.app.id, pid = crashed.pid, %status, "app exited unexpectedly");
        if starting {
            self.start_error = Some(self.with_log(format!(
                "the start failed: the process ended ({status}) before it became ready"
            )));
        }
        self.last_exit = Some(status.clone());
        self.restarts += 1;
        self.counts.crashes.fetch_add(1, Ordering::Relaxed);
        self.crashes.push(Instant::now());
        if self.app.restart == RestartPolicy::Never {
            self.fail(format!("{status} (restart policy: never)"));
            return;
        }
        if crash_loop(&mut self.crashes, Instant::now()) {
            tracing::error!(app = %self.app.id, "app is crash-looping; marked failed until `porter app restart`");
            self.fail(format!("crash loop: {status}"));
            return;
        }
        // At once when it had traffic (requests in flight or waiting), else on the next request.
        let busy = crashed.in_flight() > 0 || !self.waiters.is_empty();
        if busy {
            let events = self.events.clone();
            let delay = restart_delay(self.crashes.len());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = events.send(Event::Retry).await;
            });
        }
    }

    fn tick(&mut self) {
        let now_ms = porter_store::unix_now_ms();
        // Old instances stop once their requests are done, or after the grace period.
        let grace = Duration::from_secs(self.app.stop_grace);
        for old in &mut self.draining {
            let done =
                old.in_flight() == 0 || old.draining_since.is_some_and(|t| t.elapsed() >= grace);
            if done && !old.stopping {
                old.request_stop();
            }
        }
        let Some(serving) = &mut self.serving else {
            return;
        };
        let idle_ms =
            now_ms.saturating_sub(serving.shared.last_activity_ms.load(Ordering::Relaxed));
        if self.app.idle_timeout > 0
            && serving.in_flight() == 0
            && idle_ms >= self.app.idle_timeout * 1000
        {
            tracing::info!(app = %self.app.id, pid = serving.pid, "idle; stopping");
            self.expected_exits.insert(serving.generation);
            serving.request_stop();
            let old = self.serving.take().expect("checked");
            self.draining.push(old);
            return;
        }
        if !self.health_running && Instant::now() >= self.health_due {
            self.health_running = true;
            self.health_due = Instant::now() + Duration::from_secs(self.app.health_interval);
            let (events, check, upstream, generation) = (
                self.events.clone(),
                self.app.health.clone(),
                serving.upstream.clone(),
                serving.generation,
            );
            tokio::spawn(async move {
                let ok = probe::passes(&upstream, &check).await;
                let _ = events.send(Event::Health(generation, ok)).await;
            });
        }
    }

    fn status(&self) -> AppStatus {
        let current = self.serving.as_ref().or(self.starting.as_ref());
        let state = match (&self.failed, &self.serving, &self.starting) {
            (Some(_), _, _) => "failed",
            (None, Some(_), _) => "ready",
            (None, None, Some(_)) => "starting",
            // Nothing serves, but a process is still on its way out: "stopped" would be a lie
            // until it has exited.
            _ if !self.draining.is_empty() => "stopping",
            _ => "stopped",
        };
        AppStatus {
            id: self.app.id.to_string(),
            state: state.into(),
            pid: current.map(|c| c.pid),
            uptime_s: self.serving.as_ref().map(|c| c.started.elapsed().as_secs()),
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
            memory_kib: current.and_then(|c| crate::runtime::memory::rss_kib(c.pid)),
            in_flight: self.serving.as_ref().map_or(0, |s| s.in_flight()),
            draining: self.draining.len(),
            // A failed start is said until a start succeeds, whatever the state.
            error: self.failed.clone().or_else(|| self.start_error.clone()),
        }
    }

    /// Stops every instance and waits for them (each has its own grace period).
    async fn shutdown(&mut self, events: &mut mpsc::Receiver<Event>) {
        let mut all: Vec<Instance> = self.draining.drain(..).collect();
        all.extend(self.serving.take());
        all.extend(self.starting.take());
        for instance in &mut all {
            if !instance.stopping {
                instance.request_stop();
            }
        }
        let mut left: HashSet<u64> = all.iter().map(|i| i.generation).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.app.stop_grace + 5);
        while !left.is_empty() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::Exited(generation, _))) => {
                    left.remove(&generation);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(Err(Unavailable::Busy));
        }
    }
}
