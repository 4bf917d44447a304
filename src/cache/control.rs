//! Cache directives as the cache reads them (RFC 9111 section 5.2): `Cache-Control` of
//! requests and responses, and the targeted fields of RFC 9213 (`Porter-Cache-Control`, then
//! `CDN-Cache-Control`), which take the place of `Cache-Control` and `Expires` for this cache
//! when a response carries one.

use http::header::{HeaderMap, HeaderName, CACHE_CONTROL, PRAGMA};

/// The targeted field meant for this cache alone.
pub(crate) static PORTER_CACHE_CONTROL: HeaderName =
    HeaderName::from_static("porter-cache-control");
/// The targeted field meant for every CDN cache (RFC 9213).
pub(crate) static CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// A `max-age` or similar value: `Invalid` when present but not a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Seconds {
    #[default]
    Absent,
    Invalid,
    Value(u64),
}

impl Seconds {
    pub(crate) fn value(self) -> Option<u64> {
        match self {
            Seconds::Value(v) => Some(v),
            _ => None,
        }
    }

    fn is_present(self) -> bool {
        self != Seconds::Absent
    }
}

/// The directives the cache acts on; unknown ones are ignored (section 5.2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) max_age: Seconds,
    pub(crate) s_maxage: Seconds,
    pub(crate) max_stale: Option<Option<u64>>,
    pub(crate) min_fresh: Seconds,
    pub(crate) stale_while_revalidate: Seconds,
    pub(crate) stale_if_error: Seconds,
    pub(crate) no_cache: bool,
    pub(crate) no_store: bool,
    pub(crate) private: bool,
    pub(crate) public: bool,
    pub(crate) must_revalidate: bool,
    pub(crate) proxy_revalidate: bool,
    pub(crate) must_understand: bool,
    pub(crate) only_if_cached: bool,
    pub(crate) immutable: bool,
}

/// The largest delta-seconds kept (section 1.2.2: 2^31, "infinity").
const INFINITY: u64 = 1 << 31;

impl Directives {
    /// The directives of every `name` field line of `headers`, as one list.
    pub(crate) fn of(headers: &HeaderMap, name: &HeaderName) -> Directives {
        let mut directives = Directives::default();
        for line in headers.get_all(name) {
            for (key, value) in parse_list(line.as_bytes()) {
                directives.take(&key, value);
            }
        }
        directives
    }

    /// A request's directives, `Pragma: no-cache` counting as `no-cache` when it has no
    /// `Cache-Control` (section 5.4).
    pub(crate) fn of_request(headers: &HeaderMap) -> Directives {
        let mut directives = Directives::of(headers, &CACHE_CONTROL);
        if !headers.contains_key(CACHE_CONTROL)
            && headers.get_all(PRAGMA).iter().any(|v| {
                v.as_bytes()
                    .split(|b| *b == b',')
                    .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-cache"))
            })
        {
            directives.no_cache = true;
        }
        directives
    }

    /// A response's directives for this cache, and whether they came from a targeted field
    /// (then `Expires` is not looked at either).
    /// A targeted field that is not a valid Structured Field dictionary (RFC 8941), or whose
    /// known directives have values of the wrong type, is ignored (RFC 9213 section 2.1).
    pub(crate) fn of_response(headers: &HeaderMap) -> (Directives, bool) {
        for targeted in [&PORTER_CACHE_CONTROL, &CDN_CACHE_CONTROL] {
            if headers.contains_key(targeted)
                && headers
                    .get_all(targeted)
                    .iter()
                    .all(|line| valid_dictionary(line.as_bytes()))
            {
                return (Directives::of(headers, targeted), true);
            }
        }
        (Directives::of(headers, &CACHE_CONTROL), false)
    }

    /// Records one directive; the first of two occurrences wins (section 4.2.1).
    fn take(&mut self, key: &str, value: Option<String>) {
        let seconds = |slot: &mut Seconds| {
            if !slot.is_present() {
                *slot = delta_seconds(value.as_deref());
            }
        };
        match key {
            "max-age" => seconds(&mut self.max_age),
            "s-maxage" => seconds(&mut self.s_maxage),
            "min-fresh" => seconds(&mut self.min_fresh),
            "stale-while-revalidate" => seconds(&mut self.stale_while_revalidate),
            "stale-if-error" => seconds(&mut self.stale_if_error),
            // Without a value: any staleness is acceptable.
            "max-stale" if self.max_stale.is_none() => {
                self.max_stale = Some(
                    value
                        .as_deref()
                        .map(|v| delta_seconds(Some(v)).value().unwrap_or(0)),
                );
            }
            // A qualified `no-cache="field"` or `private="field"` is taken unqualified: the
            // stricter reading, and what a cache that does not strip fields must do.
            "no-cache" => self.no_cache = true,
            "no-store" => self.no_store = true,
            "private" => self.private = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "must-understand" => self.must_understand = true,
            "only-if-cached" => self.only_if_cached = true,
            "immutable" => self.immutable = true,
            _ => {}
        }
    }
}

/// Directives whose value is a number: in a targeted field, an sf-integer.
const NUMERIC: [&str; 6] = [
    "max-age",
    "s-maxage",
    "stale-while-revalidate",
    "stale-if-error",
    "min-fresh",
    "max-stale",
];

/// Whether `line` is a Structured Field dictionary (RFC 8941 section 3.2) whose numeric cache
/// directives are integers.
fn valid_dictionary(line: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(line) else {
        return false;
    };
    let mut rest = text.trim();
    while !rest.is_empty() {
        let end = item_end(rest);
        let member = rest[..end].trim();
        rest = rest.get(end + 1..).map_or("", str::trim_start);
        // Parameters (`;a=b`) are allowed and not looked at beyond their shape.
        let mut parts = member.split(';');
        let Some((key, value)) = parts.next().map(|m| match m.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (m, None),
        }) else {
            return false;
        };
        if !sf_key(key) || !parts.all(|p| sf_key(p.split('=').next().unwrap_or_default().trim())) {
            return false;
        }
        let valid = match value {
            None => true,
            Some(v) if NUMERIC.contains(&key) => sf_integer(v),
            Some(v) => sf_bare_item(v),
        };
        if !valid {
            return false;
        }
    }
    true
}

fn sf_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b))
}

fn sf_integer(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    !digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// An integer, decimal, string, token, byte sequence or boolean.
fn sf_bare_item(v: &str) -> bool {
    let decimal = |v: &str| {
        v.split_once('.').is_some_and(|(i, f)| {
            sf_integer(i) && !f.is_empty() && f.len() <= 3 && f.bytes().all(|b| b.is_ascii_digit())
        })
    };
    let string = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
    let token = v
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'*')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b));
    let bytes = v.len() >= 2 && v.starts_with(':') && v.ends_with(':');
    sf_integer(v) || decimal(v) || string || token || bytes || v == "?0" || v == "?1"
}

/// A delta-seconds value (section 1.2.2): digits only, quoted or not; beyond 2^31 it is 2^31.
fn delta_seconds(value: Option<&str>) -> Seconds {
    let Some(value) = value else {
        return Seconds::Invalid;
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Seconds::Invalid;
    }
    let digits = value.trim_start_matches('0');
    if digits.len() > 10 {
        return Seconds::Value(INFINITY);
    }
    Seconds::Value(digits.parse::<u64>().unwrap_or(0).min(INFINITY))
}

/// The `name[=value]` items of one field line, names lowercased, values unquoted.
fn parse_list(line: &[u8]) -> Vec<(String, Option<String>)> {
    let text = String::from_utf8_lossy(line);
    let mut items = Vec::new();
    let mut rest = text.as_ref();
    while !rest.is_empty() {
        let end = item_end(rest);
        let item = rest[..end].trim();
        rest = rest.get(end + 1..).unwrap_or_default();
        if item.is_empty() {
            continue;
        }
        let (name, value) = match item.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim()))),
            None => (item, None),
        };
        items.push((name.to_ascii_lowercase(), value));
    }
    items
}

/// Where the item that starts `s` ends: the first comma outside a quoted string.
fn item_end(s: &str) -> usize {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => return i,
            _ => {}
        }
    }
    s.len()
}

/// A quoted-string's content, or the token as it is.
fn unquote(value: &str) -> String {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    c => out.push(c),
                }
            }
            out
        }
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn response(lines: &[&str]) -> Directives {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(CACHE_CONTROL, HeaderValue::from_str(line).unwrap());
        }
        Directives::of_response(&headers).0
    }

    #[test]
    fn reads_values_quoted_or_not_first_wins() {
        let d = response(&["max-age=\"60\", s-maxage=10", "max-age=5"]);
        assert_eq!(d.max_age, Seconds::Value(60));
        assert_eq!(d.s_maxage, Seconds::Value(10));
        assert_eq!(response(&["max-age=1.5"]).max_age, Seconds::Invalid);
        assert_eq!(response(&["max-age=-1"]).max_age, Seconds::Invalid);
        assert_eq!(response(&["max-age"]).max_age, Seconds::Invalid);
        assert_eq!(
            response(&["max-age=99999999999999999999"]).max_age,
            Seconds::Value(INFINITY)
        );
        let d = response(&["PRIVATE=\"a, b\", No-Store"]);
        assert!(d.private && d.no_store);
    }

    #[test]
    fn targeted_fields_take_the_place_of_cache_control() {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(&CDN_CACHE_CONTROL, HeaderValue::from_static("max-age=30"));
        let (d, targeted) = Directives::of_response(&headers);
        assert!(targeted && !d.no_store);
        assert_eq!(d.max_age, Seconds::Value(30));
        headers.insert(&PORTER_CACHE_CONTROL, HeaderValue::from_static("no-store"));
        assert!(Directives::of_response(&headers).0.no_store);
        for invalid in ["max-age=10000, &&&&&", "max-age=\"10000\"", "Max-Age=5"] {
            headers.remove(&PORTER_CACHE_CONTROL);
            headers.insert(&CDN_CACHE_CONTROL, HeaderValue::from_str(invalid).unwrap());
            let (d, targeted) = Directives::of_response(&headers);
            assert!(!targeted && d.no_store, "{invalid}");
        }
    }

    #[test]
    fn pragma_no_cache_only_without_cache_control() {
        let mut headers = HeaderMap::new();
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        assert!(Directives::of_request(&headers).no_cache);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=10"));
        assert!(!Directives::of_request(&headers).no_cache);
    }
}
