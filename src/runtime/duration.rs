//! Durations as operators write them (`30s`, `15m`, `12h`, `1d`; `500ms` where a second is
//! too coarse), for flags and API fields.

use std::time::Duration;

/// A duration written like `30s`, `15m`, `12h` or `1d` (a bare number is seconds), at least 1s.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 30s, 15m, 12h or 1d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    let seconds = n
        .checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too long"))?;
    if seconds == 0 {
        return Err("must be at least 1s".into());
    }
    Ok(Duration::from_secs(seconds))
}

/// Milliseconds written like `500ms`, or as [`duration`] takes them.
pub(crate) fn millis(s: &str) -> Result<u64, String> {
    match s.trim().strip_suffix("ms") {
        Some(number) => number
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms > 0)
            .ok_or_else(|| format!("{s:?}: expected a duration like 500ms, 2s or 1m")),
        None => duration(s).map(|d| d.as_secs().saturating_mul(1000)),
    }
}

/// Seconds written like [`duration`], or `0` (also `0s`, `0m`, ...) for none.
pub(crate) fn seconds_or_zero(s: &str) -> Result<u64, String> {
    if s.trim().trim_end_matches(['s', 'm', 'h', 'd']) == "0" {
        return Ok(0);
    }
    duration(s).map(|d| d.as_secs())
}

/// Seconds as an operator would write them back: `1d`, `2h`, `5m`, `90s` (the largest unit
/// that divides them).
pub(crate) fn show(seconds: u64) -> String {
    match seconds {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::{duration, millis, seconds_or_zero, show};
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(duration("7"), Ok(Duration::from_secs(7)));
        for bad in ["", "0s", "s", "5x", "-1s", "1.5h", "99999999999999999999d"] {
            assert!(duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn milliseconds() {
        assert_eq!(millis("500ms"), Ok(500));
        assert_eq!(millis("2s"), Ok(2000));
        for bad in ["0ms", "ms", "0", "1.5ms", "-1ms"] {
            assert!(millis(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn zero_and_written_back() {
        assert_eq!(seconds_or_zero("0"), Ok(0));
        assert_eq!(seconds_or_zero("0m"), Ok(0));
        assert_eq!(seconds_or_zero("90"), Ok(90));
        assert!(seconds_or_zero("-1s").is_err());
        for (seconds, shown) in [
            (0, "0s"),
            (90, "90s"),
            (300, "5m"),
            (7200, "2h"),
            (86_400, "1d"),
        ] {
            assert_eq!(show(seconds), shown);
            assert_eq!(seconds_or_zero(shown), Ok(seconds));
        }
    }
}
