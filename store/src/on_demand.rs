//! The operator's on-demand allow rules: names on-demand TLS may obtain a certificate for
//! without asking the ask endpoint. `example.com` allows itself and every name under it;
//! `*.example.com` only the names under it.

use crate::error::InvalidInput;
use crate::DomainName;

/// Checks that `rule` names a domain someone can own: at least two labels after any `*.`, so
/// that one typo cannot allow a whole top-level domain.
pub fn validate_on_demand_rule(rule: &DomainName) -> Result<(), InvalidInput> {
    let base = rule.as_str().trim_start_matches("*.");
    if !base.contains('.') {
        return Err(InvalidInput::Domain {
            input: rule.to_string(),
            reason: "an on-demand rule names a domain (example.com), not a top-level domain".into(),
        });
    }
    Ok(())
}

/// Whether `rule` allows `name` (an exact name).
pub fn on_demand_allows(rule: &DomainName, name: &DomainName) -> bool {
    let (rule, name) = (rule.as_str(), name.as_str());
    let under = |base: &str| {
        name.strip_suffix(base)
            .is_some_and(|head| head.ends_with('.') && head.len() > 1)
    };
    match rule.strip_prefix("*.") {
        Some(base) => under(base),
        None => name == rule || under(rule),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> DomainName {
        DomainName::parse(n).unwrap()
    }

    #[test]
    fn rules_allow_their_names() {
        let apex = name("example.com");
        let sub = name("*.example.com");
        assert!(on_demand_allows(&apex, &name("example.com")));
        assert!(on_demand_allows(&apex, &name("a.b.example.com")));
        assert!(!on_demand_allows(&apex, &name("badexample.com")));
        assert!(!on_demand_allows(&sub, &name("example.com")));
        assert!(on_demand_allows(&sub, &name("shop.example.com")));
        assert!(!on_demand_allows(&sub, &name("shop.example.org")));
        assert!(validate_on_demand_rule(&name("com")).is_err());
        assert!(validate_on_demand_rule(&name("*.example.com")).is_ok());
    }
}
