//! A site's upstreams as operators give them (`--upstream ADDRESS[,weight=N]`, repeated, with
//! or beside `--app`, and the balancing flags) and as `site status` shows them, with the
//! running server's view of each.

use super::{on_off, OpError};
use crate::balance::Balancer;
use crate::runtime::duration::{duration, millis};
use porter_store::{ActiveCheck, AppId, Balancing, Site, StoreError, Target, Upstream, Weighted};
use serde::{Deserialize, Deserializer, Serialize};

/// What `site add` and `site update` change in how a site's requests are spread over its
/// upstreams; what is not given stays.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
pub(crate) struct BalanceChange {
    /// How a request's upstream is chosen: least-conn (the default), round-robin, ip-hash or
    /// cookie:NAME (the last two keep a client on one upstream). All follow the weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "POLICY")]
    pub(crate) balance: Option<String>,
    /// Check every upstream with GET PATH (the site's name as Host); a failing one gets no
    /// traffic. `off` removes the checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "PATH")]
    pub(crate) health_check: Option<String>,
    /// Time between two checks of an upstream (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "DURATION")]
    pub(crate) health_interval: Option<String>,
    /// Time a check may take (default 2s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "DURATION")]
    pub(crate) health_timeout: Option<String>,
    /// The answers that pass a check: a class like 2xx (the default), or one status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "2xx|NNN")]
    pub(crate) health_status: Option<String>,
    /// Send a request that failed before reaching an upstream to another one: on (the
    /// default) or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub(crate) retries: Option<bool>,
    /// How long an idempotent request without a body waits for a response head on one
    /// upstream before another is tried, like 500ms or 10s (default: the server's
    /// --upstream-timeout). Set it above the slowest such request the site answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "DURATION")]
    pub(crate) try_timeout: Option<String>,
}

/// Reads `upstream` as a list, or as the one string of clients written before several.
pub(crate) fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    })
}

fn refused(why: String) -> OpError {
    OpError::Refused(why)
}

/// A site's members as given: the target (the app, else the first upstream), its weight, and
/// the upstreams beside it.
pub(crate) struct Members {
    pub(crate) target: Target,
    weight: u32,
    more: Vec<Weighted>,
}

impl Members {
    /// From `--upstream` (each `ADDRESS[,weight=N]`) and `--app`; `None` when neither is given.
    pub(crate) fn parse(
        upstreams: &[String],
        app: Option<&str>,
    ) -> Result<Option<Members>, OpError> {
        let mut more = upstreams
            .iter()
            .map(|u| Weighted::parse(u))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::from)?;
        let (target, weight) = match app {
            Some(app) => (Target::App(AppId::parse(app).map_err(StoreError::from)?), 1),
            None if more.is_empty() => return Ok(None),
            None => {
                let first = more.remove(0);
                (Target::Upstream(first.upstream), first.weight)
            }
        };
        Ok(Some(Members {
            target,
            weight,
            more,
        }))
    }

    /// The plain upstreams, to check that they accept connections.
    pub(crate) fn upstreams(&self) -> impl Iterator<Item = &Upstream> {
        let first = match &self.target {
            Target::Upstream(upstream) => Some(upstream),
            Target::App(_) => None,
        };
        first
            .into_iter()
            .chain(self.more.iter().map(|m| &m.upstream))
    }
}

impl BalanceChange {
    /// Applies `members` (when given) and the change to `site`; the whole is checked by
    /// `Site::validate` after.
    pub(crate) fn apply(&self, site: &mut Site, members: Option<Members>) -> Result<(), OpError> {
        let mut next = site.balancing.clone().unwrap_or_default();
        if let Some(members) = members {
            site.target = members.target;
            (next.weight, next.more) = (members.weight, members.more);
        }
        if let Some(policy) = &self.balance {
            next.policy = policy
                .parse()
                .map_err(|e| refused(format!("--balance {e}")))?;
        }
        self.apply_check(&mut next)?;
        if let Some(retries) = self.retries {
            next.retries = retries;
        }
        if let Some(text) = &self.try_timeout {
            let ms = millis(text).map_err(|e| refused(format!("--try-timeout {e}")))?;
            next.try_timeout_ms = Some(ms);
        }
        site.balancing = (next != Balancing::default()).then_some(next);
        Ok(())
    }

    fn apply_check(&self, next: &mut Balancing) -> Result<(), OpError> {
        // Each value is read first, so that a bad one is named as such.
        let seconds = |flag: &str, text: &Option<String>| {
            text.as_deref()
                .map(|text| duration(text).map(|d| d.as_secs()))
                .transpose()
                .map_err(|e| refused(format!("--{flag} {e}")))
        };
        let interval = seconds("health-interval", &self.health_interval)?;
        let timeout = seconds("health-timeout", &self.health_timeout)?;
        let status = self
            .health_status
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| refused(format!("--health-status {e}")))?;
        let tunes = interval.is_some() || timeout.is_some() || status.is_some();
        let mut check = match (self.health_check.as_deref(), next.check.take()) {
            (Some("off"), _) if tunes => {
                return Err(refused(
                    "--health-check off removes the checks: it takes no other --health flag".into(),
                ))
            }
            (Some("off"), _) => return Ok(()),
            (Some(path), Some(check)) => ActiveCheck {
                path: path.to_owned(),
                ..check
            },
            (Some(path), None) => ActiveCheck {
                path: path.to_owned(),
                interval_s: 5,
                timeout_s: 2,
                status: porter_store::StatusMatch::Class(2),
            },
            (None, Some(check)) => check,
            (None, None) if tunes => {
                return Err(refused(
                    "--health-interval, --health-timeout and --health-status tune a check: give --health-check PATH too".into(),
                ))
            }
            (None, None) => return Ok(()),
        };
        check.interval_s = interval.unwrap_or(check.interval_s);
        check.timeout_s = timeout.unwrap_or(check.timeout_s);
        check.status = status.unwrap_or(check.status);
        next.check = Some(check);
        Ok(())
    }
}

/// How a site spreads its requests, as listed.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BalanceView {
    pub(crate) policy: String,
    #[serde(default)]
    pub(crate) health_check: Option<ActiveCheck>,
    pub(crate) retries: bool,
    #[serde(default)]
    pub(crate) try_timeout_ms: Option<u64>,
}

/// One upstream of a site, with the running server's view of it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct UpstreamView {
    pub(crate) address: String,
    pub(crate) weight: u32,
    /// `up`, `down` or `probation`; `None` when no server runs (or the edge has not loaded
    /// the site yet).
    #[serde(default)]
    pub(crate) state: Option<String>,
    /// Since when (RFC 3339).
    #[serde(default)]
    pub(crate) since: Option<String>,
    #[serde(default)]
    pub(crate) in_flight: Option<u32>,
    #[serde(default)]
    pub(crate) requests: Option<u64>,
    #[serde(default)]
    pub(crate) failures: Option<u64>,
    #[serde(default)]
    pub(crate) last_error: Option<String>,
}

/// Every member of `site` with its weight, and its balancing settings, when it has any.
pub(crate) fn views(site: &Site) -> (Option<BalanceView>, Vec<UpstreamView>) {
    let Some(balancing) = &site.balancing else {
        return (None, Vec::new());
    };
    let first = UpstreamView {
        address: site.target.to_string(),
        weight: balancing.weight,
        ..UpstreamView::default()
    };
    let more = balancing.more.iter().map(|m| UpstreamView {
        address: m.upstream.to_string(),
        weight: m.weight,
        ..UpstreamView::default()
    });
    let view = BalanceView {
        policy: balancing.policy.to_string(),
        health_check: balancing.check.clone(),
        retries: balancing.retries,
        try_timeout_ms: balancing.try_timeout_ms,
    };
    (Some(view), std::iter::once(first).chain(more).collect())
}

/// Fills in what `balancer` knows of each of `upstreams`.
pub(crate) fn add_state(upstreams: &mut [UpstreamView], balancer: &Balancer) {
    for status in balancer.status() {
        let Some(view) = upstreams.iter_mut().find(|v| v.address == status.name) else {
            continue;
        };
        view.state = Some(status.state.name().to_owned());
        view.since = Some(super::rfc3339(status.since));
        view.in_flight = Some(status.in_flight);
        view.requests = Some(status.requests);
        view.failures = Some(status.failures);
        view.last_error = status.last_error;
    }
}
