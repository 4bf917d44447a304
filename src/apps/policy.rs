//! Restart rules, as pure functions: a short growing delay between crash restarts, and a crash
//! loop (too many crashes in a minute) that stops the restarts.

use std::time::{Duration, Instant};

/// Crashes within [`CRASH_WINDOW`] that make a crash loop.
pub(super) const CRASH_LIMIT: usize = 5;
/// The window crashes are counted in.
pub(super) const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// Consecutive failed health checks that get an app restarted.
pub(super) const HEALTH_FAILURES: u32 = 3;

/// The delay before restarting after the `n`th recent crash (1-based): 100 ms doubling to 5 s.
pub(super) fn restart_delay(n: usize) -> Duration {
    let exp = n.saturating_sub(1).min(10) as u32;
    Duration::from_millis(100 * 2u64.pow(exp)).min(Duration::from_secs(5))
}

/// Drops crash times older than the window; true when what is left is a crash loop.
pub(super) fn crash_loop(crashes: &mut Vec<Instant>, now: Instant) -> bool {
    crashes.retain(|t| now.duration_since(*t) < CRASH_WINDOW);
    crashes.len() >= CRASH_LIMIT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_bounded() {
        assert_eq!(restart_delay(1), Duration::from_millis(100));
        assert_eq!(restart_delay(2), Duration::from_millis(200));
        assert_eq!(restart_delay(30), Duration::from_secs(5));
    }

    #[test]
    fn five_crashes_in_a_minute_is_a_loop() {
        let now = Instant::now();
        let mut crashes = vec![now - Duration::from_secs(120); 10];
        assert!(!crash_loop(&mut crashes, now), "old crashes do not count");
        assert!(crashes.is_empty());
        crashes.extend([now; 4]);
        assert!(!crash_loop(&mut crashes, now));
        crashes.push(now);
        assert!(crash_loop(&mut crashes, now));
    }
}
