//! What the kernel says of a process's memory: its resident size, and the ceiling its control
//! group sets (cgroup v2 `memory.max`, or v1 `memory.limit_in_bytes`), which is what a
//! systemd `MemoryMax=` or a container's limit becomes.

use std::path::PathBuf;

/// Resident memory of process `pid` in KiB, from /proc.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// This process's control-group memory ceiling in bytes, if one is set.
pub(crate) fn cgroup_limit() -> Option<u64> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let path = path.trim_start_matches('/');
        let file: PathBuf = match controllers {
            "" => ["/sys/fs/cgroup", path, "memory.max"].iter().collect(),
            c if c.split(',').any(|c| c == "memory") => {
                ["/sys/fs/cgroup/memory", path, "memory.limit_in_bytes"]
                    .iter()
                    .collect()
            }
            _ => return None,
        };
        let value = std::fs::read_to_string(file).ok()?;
        // "max" (v2) or a page-rounded i64::MAX (v1) mean no ceiling.
        value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|&bytes| bytes < 1 << 60)
    })
}
