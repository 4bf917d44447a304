//! Domain validation, as the API and CLI apply it to every name they are given: an accepted
//! name is normalised (lowercase, no trailing dot), within DNS's lengths, and parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porter_store::DomainName;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let Ok(name) = DomainName::parse(input) else { return };
    let s = name.as_str();
    assert!(!s.is_empty() && s.len() <= 253, "{s:?}");
    assert!(!s.bytes().any(|b| b.is_ascii_uppercase()), "{s:?}");
    assert!(!s.ends_with('.'), "{s:?}");
    assert!(s.split('.').all(|label| !label.is_empty() && label.len() <= 63), "{s:?}");
    assert_eq!(name.is_wildcard(), s.starts_with("*."), "{s:?}");
    assert!(!s[usize::from(name.is_wildcard()) * 2..].contains('*'), "{s:?}");
    assert_eq!(DomainName::parse(s).as_ref(), Ok(&name), "{s:?} does not parse to itself");
});
