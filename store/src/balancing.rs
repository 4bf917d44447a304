//! Several upstreams for one site: the ones beside its target (an upstream or an app), how
//! requests are spread over them, how they are checked, and whether a failed request is tried
//! on another. A site without it goes to its target alone, as records written before it do.

use crate::error::InvalidInput;
use crate::model::Target;
use crate::upstream::Upstream;
use std::fmt;

/// Upstreams a site may have in all, its target included.
pub const MAX_UPSTREAMS: usize = 32;
/// The largest weight.
pub const MAX_WEIGHT: u32 = 100;
/// Bounds of an active check's interval and deadline, in seconds.
const CHECK_SECONDS: std::ops::RangeInclusive<u64> = 1..=3600;
/// Bounds of the time an idempotent request waits for a head before another upstream is tried.
const TRY_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=3_600_000;

/// How a site with several upstreams spreads its requests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Balancing {
    /// The weight of the site's target (its first upstream, or its app).
    #[serde(default = "one")]
    pub weight: u32,
    /// The upstreams beside the target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<Weighted>,
    /// How one is chosen for a request.
    #[serde(default)]
    pub policy: Policy,
    /// The active health check, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<ActiveCheck>,
    /// Whether a request that failed before reaching an upstream is tried on another.
    #[serde(default = "yes")]
    pub retries: bool,
    /// How long an idempotent request without a body waits for a response head on one
    /// upstream before it is tried on another (milliseconds); `None`: the server's upstream
    /// timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub try_timeout_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

impl Default for Balancing {
    fn default() -> Self {
        Balancing {
            weight: 1,
            more: Vec::new(),
            policy: Policy::default(),
            check: None,
            retries: true,
            try_timeout_ms: None,
        }
    }
}

impl Balancing {
    /// Refuses what cannot be served as given, with `target` as its first member: weights out
    /// of range, too many upstreams, one named twice, a check or timeout out of bounds.
    pub fn validate(&self, target: &Target) -> Result<(), InvalidInput> {
        let bad = |why: String| Err(InvalidInput::Balancing(why));
        if self.more.len() + 1 > MAX_UPSTREAMS {
            return bad(format!("at most {MAX_UPSTREAMS} upstreams per site"));
        }
        for weight in std::iter::once(self.weight).chain(self.more.iter().map(|m| m.weight)) {
            if !(1..=MAX_WEIGHT).contains(&weight) {
                return bad(format!("a weight is from 1 to {MAX_WEIGHT}, not {weight}"));
            }
        }
        let mut seen: Vec<&Upstream> = Vec::with_capacity(self.more.len() + 1);
        if let Target::Upstream(first) = target {
            seen.push(first);
        }
        for member in &self.more {
            if seen.contains(&&member.upstream) {
                return bad(format!("upstream {} is given twice", member.upstream));
            }
            seen.push(&member.upstream);
        }
        if let Policy::Cookie(name) = &self.policy {
            Policy::check_cookie(name).map_err(InvalidInput::Balancing)?;
        }
        if let Some(check) = &self.check {
            check.validate().map_err(InvalidInput::Balancing)?;
        }
        if let Some(ms) = self.try_timeout_ms {
            if !TRY_TIMEOUT_MS.contains(&ms) {
                return bad("--try-timeout is from 100ms to 1h".into());
            }
        }
        Ok(())
    }

    /// Whether the site has more than one upstream, or asks for anything a single one does
    /// not do by itself (active checks): then the edge keeps the state of each.
    pub fn is_needed(&self) -> bool {
        !self.more.is_empty() || self.check.is_some()
    }
}

/// One more upstream and its share of the requests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Weighted {
    /// Where.
    pub upstream: Upstream,
    /// Its weight, 1 to [`MAX_WEIGHT`].
    #[serde(default = "one")]
    pub weight: u32,
}

impl Weighted {
    /// Parses `ADDRESS` or `ADDRESS,weight=N` (the address as [`Upstream::parse`] takes it).
    pub fn parse(input: &str) -> Result<Self, InvalidInput> {
        let (address, weight) = match input.rsplit_once(",weight=") {
            Some((address, weight)) => {
                let weight = weight
                    .trim()
                    .parse()
                    .ok()
                    .filter(|w| (1..=MAX_WEIGHT).contains(w));
                let weight = weight.ok_or_else(|| {
                    InvalidInput::Balancing(format!(
                        "{input:?}: the weight is a whole number from 1 to {MAX_WEIGHT}"
                    ))
                })?;
                (address, weight)
            }
            None if input.contains(',') => {
                return Err(InvalidInput::Balancing(format!(
                    "{input:?}: write ADDRESS or ADDRESS,weight=N"
                )))
            }
            None => (input, 1),
        };
        Ok(Weighted {
            upstream: Upstream::parse(address)?,
            weight,
        })
    }
}

impl fmt::Display for Weighted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.weight {
            1 => write!(f, "{}", self.upstream),
            weight => write!(f, "{},weight={weight}", self.upstream),
        }
    }
}

/// How an upstream is chosen for a request. All are weighted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Policy {
    /// In turn.
    RoundRobin,
    /// The one with the fewest requests under way for its weight, in turn among equals: it
    /// steers around an upstream that has stopped answering by itself.
    #[default]
    LeastConn,
    /// A consistent hash of the client's address: a client stays on one upstream.
    IpHash,
    /// A consistent hash of this cookie's value (the client's address without it).
    Cookie(String),
}

impl Policy {
    fn check_cookie(name: &str) -> Result<(), String> {
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || name.len() > 64 || !name.chars().all(token) {
            return Err(format!(
                "cookie:{name}: a cookie name is 1 to 64 letters, digits or -._"
            ));
        }
        Ok(())
    }
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "round-robin" => Policy::RoundRobin,
            "least-conn" => Policy::LeastConn,
            "ip-hash" => Policy::IpHash,
            _ => match text.strip_prefix("cookie:") {
                Some(name) => {
                    Policy::check_cookie(name)?;
                    Policy::Cookie(name.to_owned())
                }
                None => {
                    return Err(format!(
                        "{text:?}: give round-robin, least-conn, ip-hash or cookie:NAME"
                    ))
                }
            },
        })
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::RoundRobin => f.write_str("round-robin"),
            Policy::LeastConn => f.write_str("least-conn"),
            Policy::IpHash => f.write_str("ip-hash"),
            Policy::Cookie(name) => write!(f, "cookie:{name}"),
        }
    }
}

impl TryFrom<String> for Policy {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        value.parse()
    }
}

impl From<Policy> for String {
    fn from(value: Policy) -> Self {
        value.to_string()
    }
}

/// A site's active health check: `GET path` with the site's name as Host, every `interval_s`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActiveCheck {
    /// The path asked for, from `/`.
    pub path: String,
    /// Seconds between two checks of an upstream.
    pub interval_s: u64,
    /// Seconds a check may take.
    pub timeout_s: u64,
    /// The answers that mean healthy.
    pub status: StatusMatch,
}

impl ActiveCheck {
    fn validate(&self) -> Result<(), String> {
        let printable = self.path.bytes().all(|b| b.is_ascii_graphic());
        if !self.path.starts_with('/') || !printable || self.path.len() > 1024 {
            return Err(format!(
                "--health-check {:?}: a path from / of printable characters",
                self.path
            ));
        }
        if !CHECK_SECONDS.contains(&self.interval_s) || !CHECK_SECONDS.contains(&self.timeout_s) {
            return Err("--health-interval and --health-timeout are from 1s to 1h".into());
        }
        if self.timeout_s > self.interval_s {
            return Err("--health-timeout is at most --health-interval".into());
        }
        Ok(())
    }
}

/// The statuses a check accepts: a class (`2xx`) or one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StatusMatch {
    /// `2xx` is `Class(2)`.
    Class(u8),
    /// One status.
    Exact(u16),
}

impl StatusMatch {
    /// Whether `status` is accepted.
    pub fn accepts(self, status: u16) -> bool {
        match self {
            StatusMatch::Class(class) => status / 100 == u16::from(class),
            StatusMatch::Exact(exact) => status == exact,
        }
    }
}

impl std::str::FromStr for StatusMatch {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?}: give a class from 1xx to 5xx, or a status from 100 to 599");
        match text.strip_suffix("xx") {
            Some(class) => match class.parse::<u8>() {
                Ok(digit @ 1..=5) if class.len() == 1 => Ok(StatusMatch::Class(digit)),
                _ => Err(bad()),
            },
            None => match text.parse::<u16>() {
                Ok(status @ 100..=599) => Ok(StatusMatch::Exact(status)),
                _ => Err(bad()),
            },
        }
    }
}

impl fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusMatch::Class(class) => write!(f, "{class}xx"),
            StatusMatch::Exact(status) => write!(f, "{status}"),
        }
    }
}

impl TryFrom<String> for StatusMatch {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        value.parse()
    }
}

impl From<StatusMatch> for String {
    fn from(value: StatusMatch) -> Self {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::Upstream(Upstream::parse("127.0.0.1:1").unwrap())
    }

    #[test]
    fn weighted_upstreams_parse_and_print_back() {
        for (input, shown) in [
            ("127.0.0.1:2", "127.0.0.1:2"),
            ("127.0.0.1:2,weight=3", "127.0.0.1:2,weight=3"),
            ("127.0.0.1:2,weight=1", "127.0.0.1:2"),
            ("/run/a.sock,weight=100", "unix:/run/a.sock,weight=100"),
        ] {
            assert_eq!(Weighted::parse(input).unwrap().to_string(), shown);
        }
        for input in [
            "127.0.0.1:2,weight=0",
            "127.0.0.1:2,weight=101",
            "127.0.0.1:2,weight=abc",
            "127.0.0.1:2,w=3",
            "nope,weight=2",
        ] {
            assert!(Weighted::parse(input).is_err(), "{input}");
        }
    }

    #[test]
    fn policies_and_statuses_parse_and_print_back() {
        for text in ["round-robin", "least-conn", "ip-hash", "cookie:sid"] {
            assert_eq!(text.parse::<Policy>().unwrap().to_string(), text);
        }
        for text in ["", "random", "cookie:", "cookie:a b", "cookie:a;b"] {
            assert!(text.parse::<Policy>().is_err(), "{text}");
        }
        for text in ["2xx", "5xx", "200", "599"] {
            assert_eq!(text.parse::<StatusMatch>().unwrap().to_string(), text);
        }
        for text in ["7xx", "0xx", "02xx", "99", "600", "2XX", ""] {
            assert!(text.parse::<StatusMatch>().is_err(), "{text}");
        }
        assert!(StatusMatch::Class(2).accepts(204) && !StatusMatch::Class(2).accepts(301));
    }

    #[test]
    fn validation_refuses_what_cannot_be_served() {
        let more = |list: &[&str]| list.iter().map(|m| Weighted::parse(m).unwrap()).collect();
        let ok = Balancing {
            more: more(&["127.0.0.1:2", "127.0.0.1:3,weight=5"]),
            ..Balancing::default()
        };
        assert!(ok.validate(&target()).is_ok());
        let twice = Balancing {
            more: more(&["127.0.0.1:1"]),
            ..Balancing::default()
        };
        assert!(twice.validate(&target()).is_err(), "the target again");
        let many: Vec<String> = (2..=40).map(|p| format!("127.0.0.1:{p}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let too_many = Balancing {
            more: more(&many),
            ..Balancing::default()
        };
        assert!(too_many.validate(&target()).is_err());
        let check = |path: &str, interval_s, timeout_s| Balancing {
            check: Some(ActiveCheck {
                path: path.into(),
                interval_s,
                timeout_s,
                status: StatusMatch::Class(2),
            }),
            ..Balancing::default()
        };
        assert!(check("/health", 5, 2).validate(&target()).is_ok());
        assert!(check("health", 5, 2).validate(&target()).is_err());
        assert!(check("/a b", 5, 2).validate(&target()).is_err());
        assert!(check("/health", 2, 5).validate(&target()).is_err());
        let fast = Balancing {
            try_timeout_ms: Some(10),
            ..Balancing::default()
        };
        assert!(fast.validate(&target()).is_err());
    }
}
