//! Running one instance of an app: its own process group (so a stop reaches every process it
//! forked), the account's user and group, `PORT`/`{port}`/`$PORT` or `{socket}`, stdout and
//! stderr in a log file with a size cap, and a pid file so that a later Porter cleans up after
//! a crash.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{Group, Pid, User};
use porter_store::Recover as _;
use porter_store::{App, AppListen, Upstream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;

/// Largest log file before it is rotated to `.1`.
pub(super) const LOG_CAP: u64 = 10 * 1024 * 1024;

/// A started instance.
pub(super) struct Spawned {
    pub(super) pid: u32,
    pub(super) child: Child,
    pub(super) upstream: Upstream,
}

/// Where an app's files live.
pub(super) struct Paths {
    dir: PathBuf,
    id: String,
    pub(super) log: PathBuf,
}

impl Paths {
    pub(super) fn new(dir: &Path, app: &App) -> Self {
        Paths {
            dir: dir.to_path_buf(),
            id: app.id.to_string(),
            log: dir.join(format!("{}.log", app.id)),
        }
    }

    /// The pid file of one instance (several run during a replacement).
    pub(super) fn pid_file(&self, pid: u32) -> PathBuf {
        self.dir.join(format!("{}.{pid}.pid", self.id))
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// `arg` with `{port}`, `${PORT}` and `$PORT` (not `$PORTAL`) replaced by `port`: the same
/// port whether a shell (`sh -c '... $PORT'`) or the program itself reads the argument.
fn with_port(arg: &str, port: &str) -> String {
    let arg = arg.replace("{port}", port).replace("${PORT}", port);
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg.as_str();
    while let Some(at) = rest.find("$PORT") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "$PORT".len()..];
        let longer_name = after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(if longer_name { "$PORT" } else { port });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Whether `command` says where to listen: `{port}`, `$PORT`, or a shell's `${PORT...}`
/// (such as `${PORT:-8000}`, which the shell reads from the environment).
pub(crate) fn names_port(command: &[String]) -> bool {
    command
        .iter()
        .any(|arg| shell_reads_port(arg) || with_port(arg, "") != *arg)
}

/// Whether `arg` has a shell's `${PORT}` with an operator (`${PORT:-8000}`, `${PORT-8000}`),
/// not a longer name (`${PORTAL}`).
fn shell_reads_port(arg: &str) -> bool {
    arg.match_indices("${PORT").any(|(at, _)| {
        matches!(
            arg[at + "${PORT".len()..].chars().next(),
            Some('}' | ':' | '-' | '=' | '?' | '+')
        )
    })
}

/// The signal named by an app's `stop_signal` (`TERM`, `SIGTERM`, `INT`, ...).
pub(crate) fn parse_signal(name: &str) -> Result<Signal, String> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>()
        .map_err(|_| format!("unknown signal {name:?}"))
}

/// Starts an instance of `app`.
pub(super) fn spawn(app: &App, paths: &Paths, running_as_root: bool) -> Result<Spawned, String> {
    let (upstream, port, socket) = listen_on(app)?;
    let substitute = |arg: &String| {
        let arg = port.map_or(arg.clone(), |p| with_port(arg, &p.to_string()));
        socket
            .as_ref()
            .map_or(arg.clone(), |s| arg.replace("{socket}", s))
    };
    let mut command = tokio::process::Command::new(substitute(&app.command[0]));
    command
        .args(app.command[1..].iter().map(substitute))
        // systemd's socket is Porter's: an app must not report Porter ready or stopping.
        .env_remove("NOTIFY_SOCKET")
        .envs(app.env.iter().map(|(k, v)| (k, v)))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    if let Some(port) = port {
        command.env("PORT", port.to_string());
    }
    if let Some(socket) = &socket {
        command.env("SOCKET", socket);
    }
    if let Some(dir) = &app.dir {
        command.current_dir(dir);
    }
    set_identity(&mut command, app, running_as_root)?;
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", app.command[0]))?;
    let pid = child.id().ok_or("the process exited at once")?;
    keep_output(&mut child, paths)?;
    let pid_file = paths.pid_file(pid);
    std::fs::write(
        &pid_file,
        format!("{pid} {}\n", start_time(pid).unwrap_or(0)),
    )
    .map_err(|e| format!("cannot write {}: {e}", pid_file.display()))?;
    Ok(Spawned {
        pid,
        child,
        upstream,
    })
}

/// Where the daemon of `app` listens: the upstream Porter connects to, and the port (chosen
/// now) or socket its command is told.
fn listen_on(app: &App) -> Result<(Upstream, Option<u16>, Option<String>), String> {
    Ok(match &app.listen {
        AppListen::Port => {
            let port = free_port()?;
            (
                Upstream::Tcp {
                    host: "127.0.0.1".into(),
                    port,
                },
                Some(port),
                None,
            )
        }
        AppListen::Socket(path) => {
            // A socket file left by an earlier instance would make the new one fail to bind.
            let _ = std::fs::remove_file(path);
            (
                Upstream::Unix(path.clone()),
                None,
                Some(path.display().to_string()),
            )
        }
    })
}

/// Copies the daemon's stdout and stderr into its log file.
fn keep_output(child: &mut tokio::process::Child, paths: &Paths) -> Result<(), String> {
    let log = Arc::new(Mutex::new(LogFile::open(&paths.log)?));
    if let Some(out) = child.stdout.take() {
        tokio::spawn(copy_to_log(out, log.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(copy_to_log(err, log));
    }
    Ok(())
}

/// Sets the user and group the daemon runs as (see [`identity`]).
fn set_identity(
    command: &mut tokio::process::Command,
    app: &App,
    running_as_root: bool,
) -> Result<(), String> {
    if let Some((uid, gid)) = identity(app, running_as_root)? {
        command.uid(uid).gid(gid);
    }
    Ok(())
}

/// The user and group `app` runs as, when Porter switches to them: as root, a user is required
/// unless the app allows root; otherwise only the current user is possible. Checked when the
/// app is defined too, so that a mistake is refused then, not at its first visitor's request.
pub(crate) fn identity(app: &App, running_as_root: bool) -> Result<Option<(u32, u32)>, String> {
    if !running_as_root {
        return match &app.user {
            Some(user) if User::from_uid(nix::unistd::getuid()).ok().flatten().is_none_or(|me| &me.name != user) => Err(format!(
                "app {} wants to run as {user:?}, but Porter does not run as root and cannot switch users",
                app.id
            )),
            _ => Ok(None),
        };
    }
    let Some(name) = &app.user else {
        return if app.allow_root {
            Ok(None)
        } else {
            Err(format!(
                "app {} would run as root: give it --user, or --allow-root",
                app.id
            ))
        };
    };
    let user = User::from_name(name)
        .map_err(|e| format!("cannot look up user {name:?}: {e}"))?
        .ok_or_else(|| format!("no such user {name:?}"))?;
    if user.uid.is_root() && !app.allow_root {
        return Err(format!(
            "app {} would run as root: pass --allow-root to mean it",
            app.id
        ));
    }
    let gid = match &app.group {
        Some(group) => {
            Group::from_name(group)
                .map_err(|e| format!("cannot look up group {group:?}: {e}"))?
                .ok_or_else(|| format!("no such group {group:?}"))?
                .gid
        }
        None => user.gid,
    };
    Ok(Some((user.uid.as_raw(), gid.as_raw())))
}

/// Signals the group, waits up to `grace` for the leader, then kills whatever is left of the
/// group.
pub(super) async fn stop(child: &mut Child, pid: u32, signal: Signal, grace: Duration) -> String {
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, signal);
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.map(describe).unwrap_or_else(|e| e.to_string()),
        Err(_) => {
            let _ = killpg(group, Signal::SIGKILL);
            child
                .wait()
                .await
                .map(describe)
                .unwrap_or_else(|e| e.to_string())
        }
    };
    // Children it forked and left behind go too.
    let _ = killpg(group, Signal::SIGKILL);
    status
}

/// Kills what is left of a group whose leader exited on its own.
pub(super) fn kill_group(pid: u32) {
    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

pub(super) fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (_, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// Fields of /proc/PID/stat after the name (the state is field 0 here).
fn stat_field(pid: u32, field: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split_whitespace().nth(field)?.parse().ok()
}

/// The start time of a process (field 22 of /proc/PID/stat), to recognise it later.
fn start_time(pid: u32) -> Option<u64> {
    stat_field(pid, 19)
}

/// Kills the process groups that pid files of an earlier run name (when the process is still
/// the one that was started), then removes the files: a new Porter adopts nothing. The
/// daemons of `predecessor` (a server handing over to this one, which stops them once its
/// last requests are done) are left to it, with their files.
pub(super) fn clean_stale(dir: &Path, predecessor: Option<u32>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "pid") {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(&path) {
            let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
            if let (Some(Some(pid)), Some(Some(started))) = (fields.next(), fields.next()) {
                let pid = pid as u32;
                if start_time(pid) == Some(started) {
                    if predecessor.is_some_and(|p| stat_field(pid, 1) == Some(u64::from(p))) {
                        continue;
                    }
                    tracing::warn!(pid, file = %path.display(), "stopping a daemon left by an earlier run");
                    kill_group(pid);
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

/// An append-only log file rotated to `.1` when it passes [`LOG_CAP`].
struct LogFile {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
}

impl LogFile {
    fn open(path: &Path) -> Result<Self, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open the log {}: {e}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            size,
        })
    }

    fn write(&mut self, data: &[u8]) {
        use std::io::Write;
        if self.size + data.len() as u64 > LOG_CAP {
            let _ = std::fs::rename(&self.path, self.path.with_extension("log.1"));
            if let Ok(fresh) = LogFile::open(&self.path) {
                *self = fresh;
            }
        }
        if self.file.write_all(data).is_ok() {
            self.size += data.len() as u64;
        }
    }
}

async fn copy_to_log<R: AsyncRead + Unpin>(mut from: R, log: Arc<Mutex<LogFile>>) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            return;
        }
        log.lock().recover().write(&buf[..n]);
    }
}

/// The last `lines` lines of an app's log.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text[text.len().saturating_sub(64 * 1024)..]).into_owned();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_rotate_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut log = LogFile::open(&path).unwrap();
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..11 {
            log.write(&chunk);
        }
        let current = std::fs::metadata(&path).unwrap().len();
        let rotated = std::fs::metadata(path.with_extension("log.1"))
            .unwrap()
            .len();
        assert!(
            current <= LOG_CAP && rotated <= LOG_CAP,
            "{current} {rotated}"
        );
        assert_eq!(current + rotated, 11 * 1024 * 1024);
    }

    #[test]
    fn the_port_is_named_by_placeholder_or_variable() {
        assert_eq!(with_port("--port={port}", "41"), "--port=41");
        assert_eq!(
            with_port("exec srv $PORT ${PORT} $PORTAL $PORT_X", "41"),
            "exec srv 41 41 $PORTAL $PORT_X"
        );
        let words = |s: &str| shell_words::split(s).unwrap();
        for named in [
            "srv {port}",
            "sh -c 'exec srv $PORT'",
            "sh -c 'exec srv --port=${PORT:-8000}'",
        ] {
            assert!(names_port(&words(named)), "{named}");
        }
        for unnamed in [
            "python3 -m http.server",
            "srv $PORTAL {PORT}",
            "sh -c 'srv ${PORTAL}'",
        ] {
            assert!(!names_port(&words(unnamed)), "{unnamed}");
        }
    }

    #[test]
    fn signals_by_name() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigint"), Ok(Signal::SIGINT));
        assert!(parse_signal("NOPE").is_err());
    }
}
