//! App operations: define, change and remove account daemons (validated at the boundary), and
//! control the running ones through the server's supervisor.

use super::OpError;
use crate::apps::AppStatus;
use crate::runtime::duration::{duration, seconds_or_zero};
use porter_store::{
    App, AppId, AppListen, HealthCheck, InvalidInput, RestartPolicy, Store, StoreError,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `app add` and `app update`: on update only the given fields change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct AppSpec {
    /// The command line, split like a shell would (run without one).
    pub(crate) command: Option<String>,
    /// `KEY=VALUE` pairs; on update, given ones replace the whole environment.
    #[serde(default)]
    pub(crate) env: Vec<String>,
    pub(crate) dir: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) allow_root: Option<bool>,
    /// A unix socket path instead of a port.
    pub(crate) socket: Option<String>,
    pub(crate) start_timeout: Option<String>,
    /// `0` keeps the app always on.
    pub(crate) idle_timeout: Option<String>,
    /// `tcp`, or `http:/PATH` (expects 200), or `http:/PATH=STATUS`.
    pub(crate) health: Option<String>,
    pub(crate) health_interval: Option<String>,
    pub(crate) stop_signal: Option<String>,
    pub(crate) stop_grace: Option<String>,
    /// `on-failure` or `never`.
    pub(crate) restart: Option<String>,
    /// The node of a fleet it runs on (by default the node it is added through).
    pub(crate) node: Option<String>,
}

/// An app as listed.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AppView {
    pub(crate) id: String,
    pub(crate) command: String,
    pub(crate) listen: String,
    pub(crate) idle_timeout_s: u64,
    pub(crate) health: String,
    /// The node of a fleet it runs on.
    #[serde(default)]
    pub(crate) node: Option<String>,
}

impl From<App> for AppView {
    fn from(app: App) -> Self {
        AppView {
            id: app.id.to_string(),
            node: app.node.clone(),
            command: shell_words::join(&app.command),
            listen: match app.listen {
                AppListen::Port => "port".into(),
                AppListen::Socket(path) => format!("unix:{}", path.display()),
            },
            idle_timeout_s: app.idle_timeout,
            health: match app.health {
                HealthCheck::Tcp => "tcp".into(),
                HealthCheck::Http { path, status } => format!("http:{path}={status}"),
            },
        }
    }
}

fn invalid(why: String) -> OpError {
    OpError::Store(StoreError::Invalid(InvalidInput::App(why)))
}

fn seconds(flag: &str, text: &str, zero_ok: bool) -> Result<u64, OpError> {
    let parsed = if zero_ok {
        seconds_or_zero(text)
    } else {
        duration(text).map(|d| d.as_secs())
    };
    parsed.map_err(|e| invalid(format!("--{flag}: {e}")))
}

fn parse_health(text: &str) -> Result<HealthCheck, OpError> {
    if text == "tcp" {
        return Ok(HealthCheck::Tcp);
    }
    let spec = text.strip_prefix("http:").ok_or_else(|| {
        invalid(format!(
            "--health {text:?}: expected tcp or http:/PATH[=STATUS]"
        ))
    })?;
    let (path, status) = match spec.rsplit_once('=') {
        Some((path, status)) => (
            path,
            status
                .parse()
                .map_err(|_| invalid(format!("--health {text:?}: bad status")))?,
        ),
        None => (spec, 200),
    };
    Ok(HealthCheck::Http {
        path: path.to_owned(),
        status,
    })
}

/// The longest command line accepted (a single argument may not pass 128 KiB on Linux).
const MAX_COMMAND: usize = 64 * 1024;

/// `--command`: split like a shell would, and short enough to be passed to a process.
fn parse_command(command: &str) -> Result<Vec<String>, OpError> {
    if command.len() > MAX_COMMAND {
        return Err(invalid(format!(
            "--command is {} bytes long, more than {MAX_COMMAND}: put it in a script",
            command.len()
        )));
    }
    if command.contains('\0') {
        return Err(invalid("--command contains a NUL byte".into()));
    }
    let words = shell_words::split(command).map_err(|e| invalid(format!("--command: {e}")))?;
    if words.is_empty() {
        return Err(invalid("--command is empty".into()));
    }
    Ok(words)
}

/// `--env`: `KEY=VALUE` pairs that can be passed to a process.
fn parse_env(pairs: &[String]) -> Result<Vec<(String, String)>, OpError> {
    pairs
        .iter()
        .map(|kv| {
            if kv.contains('\0') {
                return Err(invalid("--env: a NUL byte cannot be passed".into()));
            }
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| invalid(format!("--env {kv:?}: expected KEY=VALUE")))
        })
        .collect()
}

/// `--dir`: an absolute path to a directory that exists.
fn parse_dir(dir: String) -> Result<PathBuf, OpError> {
    let dir = PathBuf::from(dir);
    if !dir.is_absolute() || !dir.is_dir() {
        return Err(invalid(format!(
            "--dir {}: not an absolute path to a directory",
            dir.display()
        )));
    }
    Ok(dir)
}

/// `--user` and `--group`: the empty value removes the setting.
fn non_empty(name: String) -> Option<String> {
    Some(name).filter(|n| !n.is_empty())
}

/// `--socket`: the empty value goes back to a port.
fn parse_listen(socket: String) -> AppListen {
    if socket.is_empty() {
        AppListen::Port
    } else {
        AppListen::Socket(PathBuf::from(socket))
    }
}

/// `--stop-signal`, stored by its canonical name.
fn parse_stop_signal(signal: &str) -> Result<String, OpError> {
    let parsed =
        crate::apps::parse_signal(signal).map_err(|e| invalid(format!("--stop-signal: {e}")))?;
    Ok(parsed.as_str().to_owned())
}

/// `--restart`.
fn parse_restart(policy: &str) -> Result<RestartPolicy, OpError> {
    match policy {
        "on-failure" => Ok(RestartPolicy::OnFailure),
        "never" => Ok(RestartPolicy::Never),
        other => Err(invalid(format!(
            "--restart {other:?}: expected on-failure or never"
        ))),
    }
}

/// One optional text field of an [`AppSpec`]: where it is, and how its value (checked) changes
/// the app.
struct Field {
    given: fn(&mut AppSpec) -> &mut Option<String>,
    set: fn(&mut App, String) -> Result<(), OpError>,
}

/// The text fields after `--command`, in the order their errors are reported.
const FIELDS: &[Field] = &[
    Field {
        given: |spec| &mut spec.dir,
        set: |app, dir| parse_dir(dir).map(|dir| app.dir = Some(dir)),
    },
    Field {
        given: |spec| &mut spec.user,
        set: |app, user| {
            app.user = non_empty(user);
            Ok(())
        },
    },
    Field {
        given: |spec| &mut spec.group,
        set: |app, group| {
            app.group = non_empty(group);
            Ok(())
        },
    },
    Field {
        given: |spec| &mut spec.socket,
        set: |app, socket| {
            app.listen = parse_listen(socket);
            Ok(())
        },
    },
    Field {
        given: |spec| &mut spec.start_timeout,
        set: |app, t| seconds("start-timeout", &t, false).map(|s| app.start_timeout = s),
    },
    Field {
        given: |spec| &mut spec.idle_timeout,
        set: |app, t| seconds("idle-timeout", &t, true).map(|s| app.idle_timeout = s),
    },
    Field {
        given: |spec| &mut spec.health,
        set: |app, h| parse_health(&h).map(|h| app.health = h),
    },
    Field {
        given: |spec| &mut spec.health_interval,
        set: |app, t| seconds("health-interval", &t, false).map(|s| app.health_interval = s),
    },
    Field {
        given: |spec| &mut spec.stop_signal,
        set: |app, signal| parse_stop_signal(&signal).map(|s| app.stop_signal = s),
    },
    Field {
        given: |spec| &mut spec.stop_grace,
        set: |app, t| seconds("stop-grace", &t, false).map(|s| app.stop_grace = s),
    },
    Field {
        given: |spec| &mut spec.node,
        set: |app, node| {
            app.node = Some(node);
            Ok(())
        },
    },
    Field {
        given: |spec| &mut spec.restart,
        set: |app, policy| parse_restart(&policy).map(|p| app.restart = p),
    },
];

/// Checks the app as a whole once changed: the same check of its identity as at start, and
/// that Porter can reach it when where it listens changed (`where_changes`).
fn check_changed(app: &App, where_changes: bool) -> Result<(), OpError> {
    // With this process's identity: the CLI on the store runs as the server's user, or the
    // server itself answers.
    crate::apps::identity(app, nix::unistd::geteuid().is_root()).map_err(invalid)?;
    if where_changes && app.listen == AppListen::Port && !crate::apps::names_port(&app.command) {
        return Err(invalid(format!(
            "app {}: its command does not say where to listen, so Porter could never reach it: \
             put {{port}} (or $PORT) where it takes its port, e.g. --command 'python3 -m \
             http.server {{port}} --bind 127.0.0.1' (a program that reads PORT from its \
             environment: --command 'env PORT={{port}} npm start'), or give it a unix socket \
             with --socket PATH",
            app.id
        )));
    }
    Ok(())
}

/// Applies `spec` to `app`.
fn apply(app: &mut App, mut spec: AppSpec) -> Result<(), OpError> {
    // An old record's command is checked only when it is changed: it stays readable and
    // updatable otherwise.
    let where_changes = spec.command.is_some() || spec.socket.is_some();
    if let Some(command) = spec.command.take() {
        app.command = parse_command(&command)?;
    }
    if !spec.env.is_empty() {
        app.env = parse_env(&spec.env)?;
    }
    if let Some(allow_root) = spec.allow_root {
        app.allow_root = allow_root;
    }
    for field in FIELDS {
        if let Some(value) = (field.given)(&mut spec).take() {
            (field.set)(app, value)?;
        }
    }
    check_changed(app, where_changes)
}

/// Adds an app; on a fleet it runs on `node` (the node it is added through) unless the spec
/// names another.
pub(crate) async fn add_app(
    store: &dyn Store,
    id: &str,
    spec: AppSpec,
    node: Option<&str>,
) -> Result<AppView, OpError> {
    let id = AppId::parse(id).map_err(StoreError::from)?;
    if spec.command.is_none() {
        return Err(invalid("--command is required".into()));
    }
    let mut app = App::new(id, Vec::new());
    app.node = node.map(str::to_owned);
    apply(&mut app, spec)?;
    store.add_app(app.clone()).await?;
    Ok(app.into())
}

pub(crate) async fn update_app(
    store: &dyn Store,
    id: &str,
    spec: AppSpec,
) -> Result<AppView, OpError> {
    let (_, mut app) = existing(store, id).await?;
    apply(&mut app, spec)?;
    store.update_app(app.clone()).await?;
    Ok(app.into())
}

pub(crate) async fn remove_app(store: &dyn Store, id: &str) -> Result<(), OpError> {
    let id = AppId::parse(id).map_err(StoreError::from)?;
    Ok(store.remove_app(&id).await?)
}

pub(crate) async fn list_apps(store: &dyn Store) -> Result<Vec<AppView>, OpError> {
    Ok(store.apps().await?.into_iter().map(AppView::from).collect())
}

/// The app's state; without a running server, every app is stopped.
pub(crate) async fn status(
    store: &dyn Store,
    apps: Option<&crate::apps::Supervisor>,
    id: &str,
) -> Result<AppStatus, OpError> {
    let (id, _) = existing(store, id).await?;
    Ok(match apps {
        Some(apps) => apps.status(&id).await,
        None => AppStatus {
            id: id.to_string(),
            state: "stopped (no server running)".into(),
            ..AppStatus::default()
        },
    })
}

/// The app `id` names, which must exist.
async fn existing(store: &dyn Store, id: &str) -> Result<(AppId, App), OpError> {
    let id = AppId::parse(id).map_err(StoreError::from)?;
    let app = store
        .app(&id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("app {id}")))?;
    Ok((id, app))
}

/// `app restart` and `app stop`, which need the running server.
pub(crate) async fn control(
    store: &dyn Store,
    apps: Option<&crate::apps::Supervisor>,
    id: &str,
    restart: bool,
) -> Result<AppStatus, OpError> {
    let (id, _) = existing(store, id).await?;
    let apps = apps.ok_or_else(|| {
        OpError::Refused("no porter server is running: nothing to restart or stop".into())
    })?;
    if restart {
        apps.restart(&id)
            .await
            .map_err(|e| OpError::Refused(e.to_string()))?;
    } else {
        apps.stop(&id).await;
    }
    Ok(apps.status(&id).await)
}

/// The last `lines` lines of the app's log.
pub(crate) async fn logs(
    store: &dyn Store,
    apps_dir: &std::path::Path,
    id: &str,
    lines: usize,
) -> Result<String, OpError> {
    let (id, _) = existing(store, id).await?;
    Ok(crate::apps::tail(
        &apps_dir.join(format!("{id}.log")),
        lines,
    ))
}
