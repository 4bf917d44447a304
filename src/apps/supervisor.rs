//! The supervisor: one actor task per app, owning its lifecycle. Requests ask it for a lease on
//! the serving instance (waiting, in a bounded queue, while it starts); the lease counts the
//! request in flight until its response is done, which is what idle stops and graceful
//! replacement wait on.
//!
//! Lifecycle: stopped -> starting (first request) -> ready -> stopping after the idle timeout
//! -> stopped once the process has exited;
//! a crash restarts it (at once if it had traffic, else on the next request) with a growing
//! delay, and a crash loop marks it failed until `porter app restart`; three failed health
//! checks, a settings change or `app restart` start a replacement that takes new requests once
//! ready while the old instance finishes what it has (up to the stop grace) and is stopped.

use super::policy::{crash_loop, restart_delay, HEALTH_FAILURES};
use super::probe;
use super::process::{self, parse_signal, Paths};
use porter_store::{App, AppId, Change, RestartPolicy, Store, Upstream};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Requests that may wait for one app to start.
const QUEUE: usize = 1024;
/// Lines of log kept with a failed app's status.
const LOG_LINES: usize = 20;

/// Why a request cannot be served by its app now.
#[derive(Debug, Clone)]
pub(crate) enum Unavailable {
    /// The site names an app that does not exist.
    NoSuchApp,
    /// It did not become ready within its start timeout.
    StartTimeout,
    /// It crashed too often, or cannot be started; `porter app restart` tries again. (Why is
    /// in `porter app status`, not in answers to the internet.)
    Failed,
    /// Too many requests are already waiting for it.
    Busy,
    /// `porter app stop` came while the request waited for it to start.
    Stopped,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::NoSuchApp => f.write_str("the site's app does not exist"),
            Unavailable::StartTimeout => f.write_str("the app did not become ready in time"),
            Unavailable::Failed => f.write_str("the app has failed"),
            Unavailable::Busy => f.write_str("too many requests are waiting for the app"),
            Unavailable::Stopped => f.write_str("the app was stopped"),
        }
    }
}

/// What in-flight requests and idle time are counted on, per instance.
struct Shared {
    in_flight: AtomicUsize,
    last_activity_ms: AtomicU64,
}

/// A request's hold on a ready instance; dropping it ends the request.
pub(crate) struct Lease {
    /// Where to forward the request.
    pub(crate) upstream: Upstream,
    shared: Arc<Shared>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared
            .last_activity_ms
            .store(porter_store::unix_now_ms(), Ordering::Relaxed);
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What `porter app status` shows.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct AppStatus {
    pub(crate) id: String,
    /// `stopped`, `starting`, `ready` or `failed`.
    pub(crate) state: String,
    pub(crate) pid: Option<u32>,
    pub(crate) uptime_s: Option<u64>,
    pub(crate) restarts: u32,
    pub(crate) last_exit: Option<String>,
    pub(crate) memory_kib: Option<u64>,
    pub(crate) in_flight: usize,
    /// Old instances still finishing requests after a replacement.
    pub(crate) draining: usize,
    /// Why it failed, with its last log lines.
    pub(crate) error: Option<String>,
}

enum Cmd {
    Acquire(oneshot::Sender<Result<Lease, Unavailable>>),
    Update(Box<App>),
    Restart,
    Stop,
    Status(oneshot::Sender<AppStatus>),
    Shutdown(oneshot::Sender<()>),
}

enum Event {
    Ready(u64),
    StartFailed(u64),
    Exited(u64, String),
    Health(u64, bool),
    Retry,
}

/// All apps' actors.
pub(crate) struct Supervisor {
    store: Arc<dyn Store>,
    dir: PathBuf,
    root: bool,
    actors: Mutex<HashMap<AppId, mpsc::Sender<Cmd>>>,
    /// The runtime actors run on. A request on any edge thread may start an actor; it must
    /// live on the runtime that outlives them all and reaps its daemons at shutdown.
    runtime: tokio::runtime::Handle,
}

impl Supervisor {
    /// A supervisor keeping its logs and pid files in `dir`; stale daemons of an earlier run
    /// are stopped first. Its actors run on the runtime this is called on.
    pub(crate) fn new(store: Arc<dyn Store>, dir: PathBuf) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        process::clean_stale(&dir);
        Ok(Arc::new(Supervisor {
            store,
            dir,
            root: nix::unistd::geteuid().is_root(),
            actors: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
        }))
    }

    fn actor(&self, id: &AppId) -> Option<mpsc::Sender<Cmd>> {
        self.actors.lock().expect("actors lock").get(id).cloned()
    }

    async fn actor_or_start(&self, id: &AppId) -> Result<mpsc::Sender<Cmd>, Unavailable> {
        if let Some(tx) = self.actor(id) {
            return Ok(tx);
        }
        let app = match self.store.app(id).await {
            Ok(Some(app)) => app,
            Ok(None) => return Err(Unavailable::NoSuchApp),
            Err(e) => {
                tracing::error!(app = %id, error = %e, "cannot read the app");
                return Err(Unavailable::Failed);
            }
        };
        let mut actors = self.actors.lock().expect("actors lock");
        let tx = actors
            .entry(id.clone())
            .or_insert_with(|| Actor::spawn(app, &self.dir, self.root, &self.runtime))
            .clone();
        Ok(tx)
    }

    /// A lease on `id`'s ready instance, starting it when needed.
    pub(crate) async fn acquire(&self, id: &AppId) -> Result<Lease, Unavailable> {
        let tx = self.actor_or_start(id).await?;
        let (reply, answer) = oneshot::channel();
        tx.try_send(Cmd::Acquire(reply))
            .map_err(|_| Unavailable::Busy)?;
        answer.await.unwrap_or(Err(Unavailable::Busy))
    }

    /// `porter app restart`: a fresh instance (and an end to a failed state).
    pub(crate) async fn restart(&self, id: &AppId) -> Result<(), Unavailable> {
        let tx = self.actor_or_start(id).await?;
        tx.send(Cmd::Restart).await.map_err(|_| Unavailable::Busy)
    }

    /// `porter app stop`: stopped now; the next request starts it again.
    pub(crate) async fn stop(&self, id: &AppId) {
        if let Some(tx) = self.actor(id) {
            let _ = tx.send(Cmd::Stop).await;
        }
    }

    /// `porter app status`.
    pub(crate) async fn status(&self, id: &AppId) -> AppStatus {
        let stopped = AppStatus {
            id: id.to_string(),
            state: "stopped".into(),
            ..AppStatus::default()
        };
        let Some(tx) = self.actor(id) else {
            return stopped;
        };
        let (reply, answer) = oneshot::channel();
        if tx.send(Cmd::Status(reply)).await.is_err() {
            return stopped;
        }
        answer.await.unwrap_or(stopped)
    }

    /// Follows app changes in the store until `shutdown`, then stops every daemon.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut changes = self.store.subscribe();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                change = changes.recv() => {
                    let Ok(Change::App(id)) = change else { continue };
                    let Some(tx) = self.actor(&id) else { continue };
                    match self.store.app(&id).await {
                        Ok(Some(app)) => { let _ = tx.send(Cmd::Update(Box::new(app))).await; }
                        Ok(None) => {
                            self.actors.lock().expect("actors lock").remove(&id);
                            let (reply, done) = oneshot::channel();
                            if tx.send(Cmd::Shutdown(reply)).await.is_ok() { let _ = done.await; }
                        }
                        Err(e) => tracing::error!(app = %id, error = %e, "cannot read the app"),
                    }
                }
            }
        }
        let actors: Vec<_> = self.actors.lock().expect("actors lock").drain().collect();
        let mut done = Vec::new();
        for (_, tx) in actors {
            let (reply, answer) = oneshot::channel();
            if tx.send(Cmd::Shutdown(reply)).await.is_ok() {
                done.push(answer);
            }
        }
        for answer in done {
            let _ = answer.await;
        }
    }
}

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
            shared: self.shared.clone(),
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

struct Actor {
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
    health_failures: u32,
    health_due: Instant,
    health_running: bool,
    /// Generations whose exit is expected (stopped on purpose).
    expected_exits: HashSet<u64>,
}

impl Actor {
    fn spawn(
        app: App,
        dir: &std::path::Path,
        root: bool,
        runtime: &tokio::runtime::Handle,
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
            health_failures: 0,
            health_due: Instant::now(),
            health_running: false,
            expected_exits: HashSet::new(),
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
                    if self.starting.is_none() {
                        self.start();
                    }
                }
            }
            Cmd::Update(app) => {
                tracing::info!(app = %app.id, "settings changed");
                self.app = *app;
                self.failed = None;
                self.crashes.clear();
                if self.serving.is_some() || self.starting.is_some() {
                    self.replace();
                }
            }
            Cmd::Restart => {
                self.failed = None;
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
        // The process: waits for its exit, or stops it when asked.
        let events = self.events.clone();
        let signal =
            parse_signal(&self.app.stop_signal).unwrap_or(nix::sys::signal::Signal::SIGTERM);
        let grace = Duration::from_secs(self.app.stop_grace);
        let pid_file = self.paths.pid_file(spawned.pid);
        let (mut child, pid) = (spawned.child, spawned.pid);
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
        // Readiness: poll the check until it passes or the start timeout runs out.
        let (events, check, upstream) = (
            self.events.clone(),
            self.app.health.clone(),
            spawned.upstream,
        );
        let deadline = Instant::now() + Duration::from_secs(self.app.start_timeout);
        tokio::spawn(async move {
            loop {
                if probe::passes(&upstream, &check).await {
                    let _ = events.send(Event::Ready(generation)).await;
                    return;
                }
                if Instant::now() >= deadline {
                    let _ = events.send(Event::StartFailed(generation)).await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        self.starting = Some(instance);
    }

    fn fail(&mut self, why: String) {
        let log = process::tail(&self.paths.log, LOG_LINES);
        let message = if log.is_empty() {
            why
        } else {
            format!("{why}; last log lines:\n{log}")
        };
        self.failed = Some(message.clone());
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(Err(Unavailable::Failed));
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Ready(generation)
                if self
                    .starting
                    .as_ref()
                    .is_some_and(|s| s.generation == generation) =>
            {
                let ready = self.starting.take().expect("checked");
                tracing::info!(app = %self.app.id, pid = ready.pid, ms = ready.started.elapsed().as_millis() as u64, "app ready");
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
            Event::StartFailed(generation)
                if self
                    .starting
                    .as_ref()
                    .is_some_and(|s| s.generation == generation) =>
            {
                let mut failed = self.starting.take().expect("checked");
                tracing::warn!(app = %self.app.id, "app did not become ready within its start timeout");
                self.expected_exits.insert(generation);
                failed.request_stop();
                self.draining.push(failed);
                self.crashes.push(Instant::now());
                if crash_loop(&mut self.crashes, Instant::now()) {
                    self.fail("it never became ready".into());
                }
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.send(Err(Unavailable::StartTimeout));
                }
            }
            Event::Exited(generation, status) => self.exited(generation, status),
            Event::Health(generation, ok)
                if self
                    .serving
                    .as_ref()
                    .is_some_and(|s| s.generation == generation) =>
            {
                self.health_running = false;
                self.health_failures = if ok { 0 } else { self.health_failures + 1 };
                if self.health_failures >= HEALTH_FAILURES && self.starting.is_none() {
                    tracing::warn!(app = %self.app.id, "health check keeps failing; restarting");
                    self.restarts += 1;
                    self.health_failures = 0;
                    self.replace();
                }
            }
            Event::Health(..) => self.health_running = false,
            Event::Retry => {
                if self.failed.is_none() && self.serving.is_none() && self.starting.is_none() {
                    self.start();
                }
            }
            Event::Ready(_) | Event::StartFailed(_) => {}
        }
    }

    fn exited(&mut self, generation: u64, status: String) {
        self.draining.retain(|d| d.generation != generation);
        if self.expected_exits.remove(&generation) {
            return;
        }
        let crashed = if self
            .serving
            .as_ref()
            .is_some_and(|s| s.generation == generation)
        {
            self.serving.take()
        } else if self
            .starting
            .as_ref()
            .is_some_and(|s| s.generation == generation)
        {
            self.starting.take()
        } else {
            None
        };
        let Some(crashed) = crashed else { return };
        tracing::warn!(app = %self.app.id, pid = crashed.pid, %status, "app exited unexpectedly");
        self.last_exit = Some(status.clone());
        self.restarts += 1;
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
            memory_kib: current.and_then(|c| rss_kib(c.pid)),
            in_flight: self.serving.as_ref().map_or(0, |s| s.in_flight()),
            draining: self.draining.len(),
            error: self.failed.clone(),
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

/// Resident memory of a process, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
