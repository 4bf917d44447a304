//! Sizes as operators write them (`64MiB`, `512KiB`, `1048576`), for flags and API fields, and
//! as Porter shows them back.

/// A size in bytes: a number, with an optional `KiB`, `MiB` or `GiB` (or `k`, `M`, `G`).
pub(crate) fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => t.split_at(at),
        None => (t, ""),
    };
    let unit: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        other => return Err(format!("{other:?}: give bytes, KiB, MiB or GiB")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("{s:?} is not a size"))
}

/// `bytes` for a person, in at most 8 characters: `512 B`, `9.5 KiB`, `64 MiB`, `1023 GiB`.
pub(crate) fn show(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    // One decimal while it says something (below 10, not a whole number), else none.
    if value < 10.0 && value.fract() >= 0.05 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::{show, size};

    #[test]
    fn sizes() {
        assert_eq!(size("64MiB"), Ok(64 << 20));
        assert_eq!(size("16k"), Ok(16 << 10));
        assert_eq!(size("2GiB"), Ok(2 << 30));
        assert_eq!(size("10000"), Ok(10_000));
        assert_eq!(size("0"), Ok(0));
        for bad in ["", "-1", "1.5MiB", "64 GB", "x", "99999999999GiB"] {
            assert!(size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shown() {
        assert_eq!(show(512), "512 B");
        assert_eq!(show(64 << 20), "64 MiB");
        assert_eq!(show(9728), "9.5 KiB");
        assert_eq!(show((1 << 40) - 1), "1024 GiB");
        assert_eq!(show(u64::MAX), "16 EiB");
        for n in [0, 1023, 1024, 10_239, 1 << 30, u64::MAX / 3] {
            assert!(show(n).len() <= 8, "{n}: {}", show(n));
        }
    }
}
