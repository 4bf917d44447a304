//! The wall clock in Unix time, the unit every stored time uses: one clock for the store, the
//! ACME worker and the edge.

use std::time::{SystemTime, UNIX_EPOCH};

fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Now, in Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    since_epoch().as_secs() as i64
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub fn unix_now_ms() -> u64 {
    since_epoch().as_millis() as u64
}
