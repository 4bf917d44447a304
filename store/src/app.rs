//! Account daemons: the HTTP server of an account that Porter starts on demand, stops when idle
//! and heals. The record says how to run it and how to reach it; the supervisor does the rest.

use crate::error::InvalidInput;
use std::fmt;
use std::path::PathBuf;

/// An app's identifier: 1-63 of `a-z 0-9 - _`, starting with a letter or digit.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct AppId(String);

impl AppId {
    /// Validates an identifier.
    pub fn parse(input: &str) -> Result<Self, InvalidInput> {
        let ok = !input.is_empty()
            && input.len() <= 63
            && input
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && input.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Ok(AppId(input.to_owned()))
        } else {
            Err(InvalidInput::App(format!(
                "invalid app id {input:?}: use 1-63 of a-z, 0-9, '-' and '_', starting with a letter or digit"
            )))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for AppId {
    type Error = InvalidInput;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        AppId::parse(&value)
    }
}

impl From<AppId> for String {
    fn from(value: AppId) -> Self {
        value.0
    }
}

/// How Porter reaches an app.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppListen {
    /// A loopback port Porter picks at each start, passed as `PORT` and `{port}`.
    Port,
    /// A unix socket at this path, passed as `{socket}` (and `SOCKET`).
    Socket(PathBuf),
}

/// How Porter tells that an app is ready and healthy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheck {
    /// A connection is accepted.
    Tcp,
    /// `GET path` answers with `status`.
    Http {
        /// The path to ask for.
        path: String,
        /// The status that means healthy.
        status: u16,
    },
}

/// An account daemon.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct App {
    /// Its identifier, which sites name.
    pub id: AppId,
    /// Program and arguments (split like a shell would, run without one).
    pub command: Vec<String>,
    /// Extra environment (`PORT` is Porter's).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub dir: Option<PathBuf>,
    /// User to run as (required when Porter runs as root, unless `allow_root`).
    pub user: Option<String>,
    /// Group to run as.
    pub group: Option<String>,
    /// Allow running as root when Porter is root.
    pub allow_root: bool,
    /// How Porter reaches it.
    pub listen: AppListen,
    /// Seconds to become ready after a start.
    pub start_timeout: u64,
    /// Seconds without requests before it is stopped; 0 keeps it always on.
    pub idle_timeout: u64,
    /// Readiness and health check.
    pub health: HealthCheck,
    /// Seconds between health checks while it runs.
    pub health_interval: u64,
    /// Signal sent to its process group to stop it (`TERM`, `INT`, `QUIT`, `HUP`, ...).
    pub stop_signal: String,
    /// Seconds between the stop signal and `KILL`.
    pub stop_grace: u64,
    /// What to do when it exits on its own.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// The node of a fleet it runs on (the others forward its requests there); `None` on a
    /// store only one node uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// What happens when an app exits without being asked to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Start it again (at once when it had traffic, else on the next request), until it
    /// crash-loops.
    #[default]
    OnFailure,
    /// Mark it failed until `porter app restart`.
    Never,
}

impl App {
    /// The app `id` running `command` with every other setting at its default: a free
    /// loopback port, ready and healthy when it accepts TCP, started within 30 s, stopped after
    /// 15 idle minutes with SIGTERM and 10 s of grace, restarted when it fails.
    pub fn new(id: AppId, command: Vec<String>) -> App {
        App {
            id,
            command,
            env: Vec::new(),
            dir: None,
            user: None,
            group: None,
            allow_root: false,
            listen: AppListen::Port,
            start_timeout: 30,
            idle_timeout: 900,
            health: HealthCheck::Tcp,
            health_interval: 10,
            stop_signal: "SIGTERM".into(),
            stop_grace: 10,
            restart: RestartPolicy::OnFailure,
            node: None,
        }
    }

    /// Checks what can be checked without running it.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let bad = |why: String| Err(InvalidInput::App(format!("app {}: {why}", self.id)));
        if let Some(node) = &self.node {
            crate::Node::check_name(node)?;
        }
        match self.command.first() {
            None => return bad("the command is empty".into()),
            Some(program) if program.is_empty() => return bad("the command is empty".into()),
            _ => {}
        }
        if let AppListen::Socket(path) = &self.listen {
            if !path.is_absolute() {
                return bad("the socket path must be absolute".into());
            }
        }
        for (key, _) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return bad(format!("invalid environment variable name {key:?}"));
            }
        }
        if let HealthCheck::Http { path, status } = &self.health {
            if !path.starts_with('/') || !(100..600).contains(status) {
                return bad(
                    "the HTTP health check needs a path starting with '/' and a status 100-599"
                        .into(),
                );
            }
        }
        if self.start_timeout == 0 || self.health_interval == 0 {
            return bad("the start timeout and the health interval must be at least 1s".into());
        }
        Ok(())
    }
}
