//! HTTP dates as caches meet them (RFC 9110 section 5.6.7): the IMF-fixdate, the obsolete
//! RFC 850 and asctime forms, each in its exact shape but in any letter case (the weekday is
//! not checked against the date); anything else is no date, which makes an `Expires` stale
//! (RFC 9111 section 5.3).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const LONG_WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// The time `value` names, in any of the three forms.
pub(crate) fn parse(value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?;
    let (day, month, year, time) = imf_fixdate(text)
        .or_else(|| rfc850(text))
        .or_else(|| asctime(text))?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u32 + 1;
    let day: u32 = number(day.trim_start(), 2)?;
    let mut year = i64::from(number(year, 4)?);
    if year < 100 {
        // RFC 850's two digits: a year that looks more than 50 years ahead is in the past.
        year += if year < 70 { 2000 } else { 1900 };
    }
    let [h, m, s] = clock(time)?;
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(h * 3600 + m * 60 + s);
    u64::try_from(secs)
        .ok()
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`: day, month, year, time.
fn imf_fixdate(text: &str) -> Option<(&str, &str, &str, &str)> {
    let (weekday, rest) = text.split_once(", ")?;
    let words: Vec<&str> = rest.split(' ').collect();
    match words.as_slice() {
        [day, month, year, time, zone]
            if one_of(weekday, &WEEKDAYS)
                && day.len() == 2
                && year.len() == 4
                && zone.eq_ignore_ascii_case("gmt") =>
        {
            Some((day, month, year, time))
        }
        _ => None,
    }
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`.
fn rfc850(text: &str) -> Option<(&str, &str, &str, &str)> {
    let (weekday, rest) = text.split_once(", ")?;
    let words: Vec<&str> = rest.split(' ').collect();
    let [date, time, zone] = words.as_slice() else {
        return None;
    };
    let parts: Vec<&str> = date.split('-').collect();
    match parts.as_slice() {
        [day, month, year]
            if one_of(weekday, &LONG_WEEKDAYS)
                && day.len() == 2
                && year.len() == 2
                && zone.eq_ignore_ascii_case("gmt") =>
        {
            Some((day, month, year, time))
        }
        _ => None,
    }
}

/// `Sun Nov  6 08:49:37 1994` (the day padded with a space to two characters).
fn asctime(text: &str) -> Option<(&str, &str, &str, &str)> {
    if text.len() != 24 || !text.is_ascii() {
        return None;
    }
    let (weekday, month, day, time, year) = (
        &text[0..3],
        &text[4..7],
        &text[8..10],
        &text[11..19],
        &text[20..24],
    );
    let spaces = [3, 7, 10, 19].iter().all(|at| text.as_bytes()[*at] == b' ');
    (spaces && one_of(weekday, &WEEKDAYS)).then_some((day, month, year, time))
}

fn one_of(word: &str, names: &[&str]) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(word))
}

/// `HH:MM:SS`, two digits each.
fn clock(time: &str) -> Option<[u32; 3]> {
    let mut parts = time.split(':');
    let mut out = [0; 3];
    for slot in &mut out {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *slot = number(part, 2)?;
    }
    parts.next().is_none().then_some(out)
}

fn number(text: &str, most: usize) -> Option<u32> {
    (!text.is_empty() && text.len() <= most && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_forms_any_case() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "SUN, 06 NOV 1994 08:49:37 gmt",
        ] {
            assert_eq!(parse(form.as_bytes()), Some(t), "{form}");
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(parse(httpdate::fmt_http_date(now).as_bytes()), Some(now));
        for bad in [
            "0",
            "",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37:1 GMT",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
        }
    }
}
