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
}

impl Discovery {
    /// Writes the file atomically (temporary file, then rename).
    pub(crate) fn write(&self, data_dir: &Path) -> std::io::Result<()> {
        let tmp = data_dir.join(format!("{DISCOVERY_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("serialisable"))?;
        std::fs::rename(tmp, data_dir.join(DISCOVERY_FILE))
    }

    /// Reads the file, if a server has written one.
    pub(crate) fn read(data_dir: &Path) -> Option<Self> {
        let raw = std::fs::read(data_dir.join(DISCOVERY_FILE)).ok()?;
        serde_json::from_slice(&raw).ok()
    }

    /// Removes the file at shutdown.
    pub(crate) fn remove(data_dir: &Path) {
        let _ = std::fs::remove_file(data_dir.join(DISCOVERY_FILE));
    }
}
