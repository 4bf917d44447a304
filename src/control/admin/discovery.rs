//! The discovery file a running server writes into its data dir: its pid and the addresses it
//! actually bound (ports chosen by the system included), so the CLI and tests can find it.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// File name inside the data dir.
pub(crate) const DISCOVERY_FILE: &str = "admin.json";

/// What a running server tells about itself.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Discovery {
    /// Process id of `porter serve`.
    pub(crate) pid: u32,
    /// The admin API address (`IP:PORT` or `unix:/path`).
    pub(crate) admin: String,
    /// The plain HTTP listener.
    pub(crate) http: String,
    /// The HTTPS listener.
    pub(crate) https: String,
    /// The metrics listener, when `--metrics` gives it one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) metrics: Option<String>,
    /// Whether it obtains certificates over ACME.
    #[serde(default)]
    pub(crate) acme: bool,
    /// Where it writes its access log, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) access_log: Option<String>,
}

impl Discovery {
    /// Writes the file atomically (temporary file, then rename).
    pub(crate) fn write(&self, data_dir: &Path) -> std::io::Result<()> {
        let tmp = data_dir.join(format!("{DISCOVERY_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("serialisable"))?;
        std::fs::rename(tmp, data_dir.join(DISCOVERY_FILE))
    }

    /// Reads the file of a running server: `None` without one, or when the file is stale (its
    /// server is gone without removing it, as after `kill -9`).
    pub(crate) fn read(data_dir: &Path) -> Option<Self> {
        Self::read_any(data_dir).filter(Discovery::running)
    }

    fn read_any(data_dir: &Path) -> Option<Self> {
        let raw = std::fs::read(data_dir.join(DISCOVERY_FILE)).ok()?;
        serde_json::from_slice(&raw).ok()
    }

    fn running(&self) -> bool {
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        // EPERM: a process of another user has the pid, so it is not gone.
        let alive = !matches!(
            nix::sys::signal::kill(pid, None),
            Err(nix::errno::Errno::ESRCH)
        );
        // After a reboot or a long time, the pid may be another program's: a server's command
        // line has `serve` in it.
        let serving = || match std::fs::read(format!("/proc/{}/cmdline", self.pid)) {
            Ok(cmdline) => cmdline.split(|b| *b == 0).any(|arg| arg == b"serve"),
            Err(_) => true,
        };
        // A file left by a server killed before this one started with the same pid (pid 1 in
        // a container) is not this server.
        self.pid != std::process::id() && alive && serving()
    }

    /// Removes a file whose server is gone, saying so (at start).
    pub(crate) fn remove_stale(data_dir: &Path) {
        if let Some(stale) = Self::read_any(data_dir).filter(|d| !d.running()) {
            tracing::warn!(pid = stale.pid, file = %data_dir.join(DISCOVERY_FILE).display(), "removing the discovery file of a server that is gone (it did not stop cleanly)");
            let _ = std::fs::remove_file(data_dir.join(DISCOVERY_FILE));
        }
    }

    /// Removes this process's file at shutdown; a successor's (after a handover) stays.
    pub(crate) fn remove_own(data_dir: &Path) {
        if Self::read_any(data_dir).is_some_and(|d| d.pid == std::process::id()) {
            let _ = std::fs::remove_file(data_dir.join(DISCOVERY_FILE));
        }
    }
}
