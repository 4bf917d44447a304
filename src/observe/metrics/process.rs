//! The usual process metrics, as the Prometheus client libraries define them
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...), read from /proc at
//! scrape time.

use std::fs;

/// The kernel's unit of CPU and start times in /proc (`USER_HZ`): 100 on every architecture
/// Linux runs on today, and what the Go client's procfs assumes too (asking sysconf would
/// take another feature of `nix` for this one constant).
const TICKS_PER_SECOND: f64 = 100.0;

/// This process as the kernel sees it at one moment.
#[derive(Debug)]
pub(super) struct Process {
    /// User and system CPU time.
    pub(super) cpu_seconds: f64,
    pub(super) resident_bytes: i64,
    pub(super) virtual_bytes: i64,
    pub(super) open_fds: i64,
    /// The soft limit on open files.
    pub(super) max_fds: i64,
    /// Unix time, from the kernel's boot time in whole seconds as the client libraries read it:
    /// up to a second early, but the same at every scrape (a restart is a change of it).
    pub(super) start_time_seconds: f64,
}

impl Process {
    /// This process now; `None` without a readable /proc.
    pub(super) fn read() -> Option<Process> {
        let stat = fs::read_to_string("/proc/self/stat").ok()?;
        // The fields after the command name, which may hold spaces and parentheses; the first
        // of them is field 3 of proc(5).
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<i64>().ok();
        let ticks = field(14)? + field(15)?;
        let resident_kib = crate::runtime::memory::rss_kib(std::process::id())?;
        Some(Process {
            cpu_seconds: ticks as f64 / TICKS_PER_SECOND,
            resident_bytes: i64::try_from(resident_kib * 1024).ok()?,
            virtual_bytes: field(23)?,
            open_fds: i64::try_from(fs::read_dir("/proc/self/fd").ok()?.count()).ok()?,
            max_fds: max_open_files()?,
            start_time_seconds: boot_time()? as f64 + field(22)? as f64 / TICKS_PER_SECOND,
        })
    }
}

/// The soft limit of `Max open files` in /proc/self/limits.
fn max_open_files() -> Option<i64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// When the machine booted (Unix time, whole seconds), from /proc/stat.
fn boot_time() -> Option<i64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_read_with_sane_values() {
        let p = Process::read().expect("Linux has /proc");
        assert!(
            p.resident_bytes > 0 && p.virtual_bytes >= p.resident_bytes,
            "{p:?}"
        );
        assert!(p.open_fds > 0 && p.open_fds <= p.max_fds, "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 3600.0,
            "{p:?}"
        );
        assert!(p.cpu_seconds >= 0.0, "{p:?}");
    }
}
