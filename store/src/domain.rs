//! Domain names as Porter serves them: validated, lowercase, IDNA in punycode.

use crate::error::InvalidInput;
use std::fmt;

/// A validated domain name: an exact name (`shop.example.com`) or a wildcard whose `*` is the
/// whole leftmost label (`*.example.com`). Always lowercase ASCII, international names in punycode.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(String);

impl DomainName {
    /// Validates and normalises `input`: trims one trailing dot, lowercases, converts IDNA to
    /// punycode, and refuses IP addresses, ports, empty or over-long labels and stray characters.
    pub fn parse(input: &str) -> Result<Self, InvalidInput> {
        let bad = |reason: &str| InvalidInput::Domain {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let name = input.strip_suffix('.').unwrap_or(input);
        check_not_other_syntax(name).map_err(bad)?;
        let (wildcard, rest) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, name),
        };
        if rest.contains('*') {
            return Err(bad(
                "'*' is allowed only as the whole leftmost label, as in *.example.com",
            ));
        }
        let ascii = if rest.is_ascii() {
            rest.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii(rest).map_err(|_| bad("it is not a valid international name"))?
        };
        check_labels(&ascii, wildcard).map_err(bad)?;
        Ok(DomainName(if wildcard {
            format!("*.{ascii}")
        } else {
            ascii
        }))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a `*.` wildcard name.
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// The wildcard that would cover this exact name (`a.b.c` -> `*.b.c`), if any.
    pub fn parent_wildcard(name: &str) -> Option<String> {
        let (_, parent) = name.split_once('.')?;
        parent.contains('.').then(|| format!("*.{parent}"))
    }
}

/// Refuses what is empty or plainly something else than a name: an IP address, a URL or a
/// `host:port`, text with whitespace or paths.
fn check_not_other_syntax(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.parse::<std::net::IpAddr>().is_ok()
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
    {
        return Err("IP addresses are not domain names");
    }
    if name.contains(':') {
        return Err("a domain name has no port or scheme");
    }
    if name.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err("it contains whitespace or '/'");
    }
    Ok(())
}

/// Checks the lowercase ASCII name `ascii` (without its `*.` when `wildcard`): its length,
/// each label, a last label that is not numeric, and enough labels under a wildcard.
fn check_labels(ascii: &str, wildcard: bool) -> Result<(), &'static str> {
    let full_len = ascii.len() + if wildcard { 2 } else { 0 };
    if full_len > 253 {
        return Err("it is longer than 253 characters");
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    for label in &labels {
        check_label(label)?;
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("the last label is numeric (this looks like an IP address)");
    }
    if wildcard && labels.len() < 2 {
        return Err("a wildcard needs at least two labels after '*.'");
    }
    Ok(())
}

/// Checks one label: 1 to 63 lowercase letters, digits and '-', with no '-' at either end.
fn check_label(label: &str) -> Result<(), &'static str> {
    if label.is_empty() {
        return Err("it has an empty label (two dots in a row, or a leading dot)");
    }
    if label.len() > 63 {
        return Err("a label is longer than 63 characters");
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("labels may hold only letters, digits and '-'");
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("a label may not start or end with '-'");
    }
    Ok(())
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DomainName {
    type Error = InvalidInput;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        DomainName::parse(&value)
    }
}

impl From<DomainName> for String {
    fn from(value: DomainName) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises() {
        for (input, want) in [
            ("Example.COM", "example.com"),
            ("example.com.", "example.com"),
            ("*.Example.com", "*.example.com"),
            ("localhost", "localhost"),
            ("a-b.c9.test", "a-b.c9.test"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ] {
            assert_eq!(DomainName::parse(input).unwrap().as_str(), want, "{input}");
        }
    }

    #[test]
    fn refuses() {
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = format!("{}com", "abcdefghi.".repeat(26));
        for input in [
            "",
            ".",
            "127.0.0.1",
            "::1",
            "[::1]",
            "example.com:443",
            "http://example.com",
            "a..b",
            ".a.b",
            "-a.b",
            "a-.b",
            "a_b.com",
            "a b.com",
            "a.*.com",
            "*a.com",
            "*.com",
            "a.123",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(
                DomainName::parse(input).is_err(),
                "{input:?} should be refused"
            );
        }
    }

    #[test]
    fn parent_wildcard() {
        assert_eq!(
            DomainName::parent_wildcard("a.b.c").as_deref(),
            Some("*.b.c")
        );
        assert_eq!(DomainName::parent_wildcard("b.c"), None);
        assert_eq!(DomainName::parent_wildcard("c"), None);
    }
}
