//! A site's web application firewall settings: its mode, the OWASP CRS paranoia level, the
//! anomaly score that blocks, the rules it leaves out and how much of a request body is
//! inspected. [`WafSettings::validate`] holds what the edge relies on.

use crate::error::InvalidInput;
use serde::{Deserialize, Serialize};

/// The CRS default anomaly threshold: one critical match blocks.
pub const DEFAULT_WAF_THRESHOLD: u32 = 5;
/// How much of a request body is inspected unless a site says otherwise.
pub const DEFAULT_WAF_BODY_LIMIT: u32 = 128 * 1024;
/// The most of a request body a site may have inspected: the edge holds it in memory.
pub const MAX_WAF_BODY_LIMIT: u32 = 1024 * 1024;
/// Most rule exclusions a site may have.
const MAX_EXCLUSIONS: usize = 256;

/// What the WAF does with a site's requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WafMode {
    /// Nothing is inspected.
    #[default]
    Off,
    /// Requests are inspected and what matches is logged; nothing is refused.
    Detect,
    /// Requests whose anomaly score reaches the threshold are refused with 403.
    Block,
}

impl std::str::FromStr for WafMode {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        match s {
            "off" => Ok(WafMode::Off),
            "detect" => Ok(WafMode::Detect),
            "block" => Ok(WafMode::Block),
            other => Err(InvalidInput::Feature(format!(
                "WAF mode {other:?}: write off, detect or block"
            ))),
        }
    }
}

impl WafMode {
    /// Its name, as written on the command line and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            WafMode::Off => "off",
            WafMode::Detect => "detect",
            WafMode::Block => "block",
        }
    }
}

/// A rule left out for a site: by its id, or every rule with a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WafExclusion {
    Id(u32),
    Tag(String),
}

impl WafExclusion {
    /// Reads `942100` (an id) or `attack-sqli`, `paranoia-level/2` (a tag).
    pub fn parse(word: &str) -> Result<WafExclusion, InvalidInput> {
        let word = word.trim();
        let exclusion = match word.parse::<u32>() {
            Ok(id) => WafExclusion::Id(id),
            Err(_) => WafExclusion::Tag(word.to_owned()),
        };
        exclusion.check().map_err(InvalidInput::Feature)?;
        Ok(exclusion)
    }

    fn check(&self) -> Result<(), String> {
        match self {
            WafExclusion::Id(0) => Err("WAF exclusion: rule ids start at 1".into()),
            WafExclusion::Id(_) => Ok(()),
            WafExclusion::Tag(tag) => {
                let fit = !tag.is_empty()
                    && tag.len() <= 128
                    && tag
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_/.:".contains(&b));
                if fit {
                    Ok(())
                } else {
                    Err(format!(
                        "WAF exclusion {tag:?}: a rule id (942100) or a tag (attack-sqli, paranoia-level/2): letters, digits and -_/.: only"
                    ))
                }
            }
        }
    }
}

impl std::fmt::Display for WafExclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WafExclusion::Id(id) => write!(f, "{id}"),
            WafExclusion::Tag(tag) => f.write_str(tag),
        }
    }
}

/// A site's WAF settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WafSettings {
    pub mode: WafMode,
    /// The CRS paranoia level, 1 (few false positives) to 4 (every rule).
    #[serde(default = "default_paranoia")]
    pub paranoia: u8,
    /// The inbound anomaly score that blocks (critical 5, error 4, warning 3, notice 2 a rule).
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    /// Rules left out, by id or tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<WafExclusion>,
    /// How many bytes of a request body are inspected; the rest streams through unchecked.
    #[serde(default = "default_body_limit")]
    pub body_limit: u32,
}

fn default_paranoia() -> u8 {
    1
}

fn default_threshold() -> u32 {
    DEFAULT_WAF_THRESHOLD
}

fn default_body_limit() -> u32 {
    DEFAULT_WAF_BODY_LIMIT
}

impl WafSettings {
    /// The defaults in `mode`: paranoia 1, threshold 5, no exclusion, 128 KiB of body.
    pub fn new(mode: WafMode) -> Self {
        WafSettings {
            mode,
            paranoia: default_paranoia(),
            threshold: DEFAULT_WAF_THRESHOLD,
            exclude: Vec::new(),
            body_limit: DEFAULT_WAF_BODY_LIMIT,
        }
    }

    /// Whether `rule`, with `tags`, is left out.
    pub fn excludes(&self, rule: u32, tags: &[String]) -> bool {
        self.exclude.iter().any(|e| match e {
            WafExclusion::Id(id) => *id == rule,
            WafExclusion::Tag(tag) => tags.iter().any(|t| t.eq_ignore_ascii_case(tag)),
        })
    }

    /// Checks what the edge relies on.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let bad = InvalidInput::Feature;
        if !(1..=4).contains(&self.paranoia) {
            return Err(bad(format!(
                "the WAF paranoia level is 1 to 4, not {}",
                self.paranoia
            )));
        }
        if !(1..=10_000).contains(&self.threshold) {
            return Err(bad(format!(
                "the WAF anomaly threshold is 1 to 10000, not {}",
                self.threshold
            )));
        }
        if self.body_limit > MAX_WAF_BODY_LIMIT {
            return Err(bad(format!(
                "the WAF inspects at most {MAX_WAF_BODY_LIMIT} bytes of a body, not {}",
                self.body_limit
            )));
        }
        if self.exclude.len() > MAX_EXCLUSIONS {
            return Err(bad(format!(
                "at most {MAX_EXCLUSIONS} WAF exclusions a site"
            )));
        }
        for exclusion in &self.exclude {
            exclusion.check().map_err(bad)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusions_read_ids_and_tags_and_refuse_the_rest() {
        assert_eq!(
            WafExclusion::parse("942100").unwrap(),
            WafExclusion::Id(942100)
        );
        assert_eq!(
            WafExclusion::parse("paranoia-level/2").unwrap(),
            WafExclusion::Tag("paranoia-level/2".into())
        );
        for bad in ["", "0", "a b", "x\"y", "<script>"] {
            assert!(WafExclusion::parse(bad).is_err(), "{bad}");
        }
        let mut settings = WafSettings::new(WafMode::Block);
        settings.exclude = vec![WafExclusion::Id(1), WafExclusion::Tag("attack-xss".into())];
        assert!(settings.excludes(1, &[]));
        assert!(settings.excludes(2, &["ATTACK-XSS".into()]));
        assert!(!settings.excludes(2, &["attack-sqli".into()]));
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        let ok = WafSettings::new(WafMode::Detect);
        assert!(ok.validate().is_ok());
        for bad in [
            WafSettings {
                paranoia: 0,
                ..ok.clone()
            },
            WafSettings {
                paranoia: 5,
                ..ok.clone()
            },
            WafSettings {
                threshold: 0,
                ..ok.clone()
            },
            WafSettings {
                body_limit: MAX_WAF_BODY_LIMIT + 1,
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
