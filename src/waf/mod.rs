//! The web application firewall: the OWASP Core Rule Set on an engine behind a small trait,
//! run for the sites whose WAF is on (their own setting, else `serve --waf-default`).
//!
//! - `engine`: what Porter asks of an engine; `libmodsec`: libmodsecurity 3, the one chosen
//!   (see `bench/waf-engines`).
//! - `rules`: which files are loaded, and Porter's directives around them.
//! - `pool`: the threads the engine runs on, off the edge threads.
//! - `log`: the WAF log and its reader; `stats`: the counts metrics show.
//!
//! The engine only reports which rules matched. Porter judges: it leaves out the site's
//! exclusions and the CRS's own evaluation rules, adds up the anomaly score as the CRS does
//! (critical 5, error 4, warning 3, notice 2) and blocks at the site's threshold. So a site's
//! settings change no rule: one copy of the rules serves every site, loaded at start and on
//! `porter waf reload`.

mod engine;
mod libmodsec;
mod log;
mod pool;
mod rules;
mod stats;

pub(crate) use engine::Exchange;
pub(crate) use log::{follow as follow_log, Entry};
pub(crate) use stats::Stats;

use arc_swap::ArcSwapOption;
use engine::{Engine, EngineError, Match};
use porter_store::{WafMode, WafSettings};
use std::path::PathBuf;
use std::sync::Arc;

/// The WAF log's name in the data dir.
pub(crate) const LOG_FILE: &str = "waf.log";

/// Requests waiting for a WAF thread at most; beyond, they are not inspected (see
/// [`Verdict::Unavailable`]).
const QUEUED: usize = 1024;

/// What the WAF says of a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It goes on.
    Pass,
    /// 403, with this unique id.
    Block(String),
    /// A blocking site's request could not be inspected (no rules loaded, or every WAF
    /// thread busy and the queue full): 503.
    Unavailable,
}

/// A loaded rule set.
pub(crate) struct Loaded {
    engine: Box<dyn Engine>,
}

/// The WAF every edge thread shares.
pub(crate) struct Waf {
    loaded: ArcSwapOption<Loaded>,
    /// The first load, done once, and why it failed.
    first_load: tokio::sync::OnceCell<Result<(), String>>,
    source: rules::RuleSource,
    default: Option<WafSettings>,
    pool: pool::Pool,
    log: Arc<log::WafLog>,
    stats: Arc<Stats>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

/// What `porter waf reload` and status say.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct WafStatus {
    /// Where the rules come from.
    pub(crate) rules: String,
    /// The engine and its rule count, when loaded.
    pub(crate) engine: Option<String>,
    /// `serve --waf-default`.
    pub(crate) default_mode: String,
}

impl Waf {
    /// A WAF with the rules of `dir` (Debian's CRS when `None`), writing `log`. The rules load
    /// when first needed (see [`Waf::ready`]): a server whose sites never use the WAF does
    /// not hold them in memory.
    pub(crate) fn new(
        dir: Option<PathBuf>,
        default: WafMode,
        log: PathBuf,
        threads: usize,
    ) -> std::io::Result<Self> {
        Ok(Waf {
            loaded: ArcSwapOption::empty(),
            first_load: tokio::sync::OnceCell::new(),
            source: rules::RuleSource::new(dir),
            default: (default != WafMode::Off).then(|| WafSettings::new(default)),
            pool: pool::Pool::new(threads, QUEUED)?,
            log: Arc::new(log::WafLog::new(log)),
            stats: Arc::new(Stats::default()),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether the server's default has the WAF on (then the rules are loaded at start).
    pub(crate) fn on_by_default(&self) -> bool {
        self.default.is_some()
    }

    /// The rules, loaded the first time this is called (later calls wait for that load);
    /// `None` when they did not load, which the error logged then explains.
    pub(crate) async fn ready(&self) -> Option<Arc<Loaded>> {
        self.ready_or_why().await.ok()
    }

    /// The rules, or why they are not loaded.
    pub(crate) async fn ready_or_why(&self) -> Result<Arc<Loaded>, String> {
        let first = self
            .first_load
            .get_or_init(|| async {
                let source = self.source.clone();
                let loaded = tokio::task::spawn_blocking(move || load(&source))
                    .await
                    .unwrap_or_else(|e| Err(EngineError::Load(e.to_string())));
                match loaded {
                    Ok(loaded) => {
                        tracing::info!(engine = %loaded.engine.name(), rules = %self.source.describe(), "WAF rules loaded");
                        // A reload that finished meanwhile is newer.
                        let _ = self.loaded.compare_and_swap(&None::<Arc<Loaded>>, Some(Arc::new(loaded)));
                        Ok(())
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "WAF rules not loaded: sites that block get 503, sites that detect are not inspected; fix, then `porter waf reload`");
                        Err(e.to_string())
                    }
                }
            })
            .await;
        match (self.loaded.load_full(), first) {
            (Some(loaded), _) => Ok(loaded),
            (None, Err(why)) => Err(why.clone()),
            (None, Ok(())) => Err("the WAF rules are not loaded".into()),
        }
    }

    /// The settings a site's requests are inspected with: its own, else the server's
    /// default; `None` when its WAF is off.
    pub(crate) fn settings<'a>(&'a self, site: Option<&'a WafSettings>) -> Option<&'a WafSettings> {
        site.or(self.default.as_ref())
            .filter(|settings| settings.mode != WafMode::Off)
    }

    /// The counts, for metrics.
    pub(crate) fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Inspects `exchange` for `site`; `truncated`: its body was longer than inspected.
    pub(crate) async fn inspect(
        &self,
        site: &Arc<str>,
        settings: WafSettings,
        exchange: Exchange,
        truncated: bool,
    ) -> Verdict {
        let id = exchange.id.clone();
        let blocks = settings.mode == WafMode::Block;
        let unavailable = || {
            self.stats.count(site, "skipped");
            match blocks {
                true => Verdict::Unavailable,
                false => Verdict::Pass,
            }
        };
        let Some(loaded) = self.ready().await else {
            return unavailable();
        };
        let (log, stats, site_owned) = (
            Arc::clone(&self.log),
            Arc::clone(&self.stats),
            Arc::clone(site),
        );
        let job = move || -> Option<bool> {
            let matches = loaded
                .engine
                .inspect(&exchange, settings.paranoia)
                .map_err(|e| crate::runtime::log_limit::limited!(warn, site = &site_owned, "WAF: not inspected", id = %exchange.id, error = %e))
                .ok()?;
            let (score, kept) = judge(matches, &settings, truncated);
            let action = match (score >= settings.threshold, blocks) {
                (true, true) => "blocked",
                (true, false) => "detected",
                (false, _) => "passed",
            };
            stats.inspected(&site_owned, action, &kept);
            if !kept.is_empty() || truncated {
                log.write(entry(
                    &exchange,
                    &site_owned,
                    &settings,
                    (action, score),
                    &kept,
                    truncated,
                ));
            }
            Some(action == "blocked")
        };
        // Not inspected: the queue was full, the job panicked, or the engine refused it.
        match self.pool.run(job).await.ok().flatten().flatten() {
            Some(true) => Verdict::Block(id),
            Some(false) => Verdict::Pass,
            None => unavailable(),
        }
    }

    /// Loads the rules again; the old ones serve until the new ones have loaded, and stay
    /// when they do not.
    pub(crate) async fn reload(self: &Arc<Self>) -> Result<WafStatus, String> {
        let _one = self.reloading.lock().await;
        let waf = Arc::clone(self);
        let loaded = tokio::task::spawn_blocking(move || load(&waf.source))
            .await
            .map_err(|e| format!("the reload failed: {e}"))?
            .map_err(|e| e.to_string())?;
        tracing::info!(engine = %loaded.engine.name(), rules = %self.source.describe(), "WAF rules reloaded");
        self.loaded.store(Some(Arc::new(loaded)));
        Ok(self.status())
    }

    pub(crate) fn status(&self) -> WafStatus {
        WafStatus {
            rules: self.source.describe(),
            engine: self.loaded.load().as_ref().map(|l| l.engine.name()),
            default_mode: self
                .default
                .as_ref()
                .map_or(WafMode::Off, |d| d.mode)
                .as_str()
                .to_owned(),
        }
    }
}

fn load(source: &rules::RuleSource) -> Result<Loaded, EngineError> {
    let engine = libmodsec::LibModSecurity::load(&source.config()?)?;
    Ok(Loaded {
        engine: Box::new(engine),
    })
}

/// The anomaly score of `matches` for a site, and the matches that count: not the site's
/// exclusions, nor the CRS's evaluation rules (949, 959: the score against the CRS's own
/// threshold; 980: correlation), which Porter does itself; and for a body cut at the limit
/// (`truncated`), not that it failed to parse (200002, 200003), which cutting it made so.
fn judge(matches: Vec<Match>, settings: &WafSettings, truncated: bool) -> (u32, Vec<Match>) {
    let evaluation = |id: u32| matches!(id / 1000, 949 | 959 | 980);
    let cut = |id: u32| truncated && matches!(id, 200002 | 200003);
    let kept: Vec<Match> = matches
        .into_iter()
        .filter(|m| !evaluation(m.id) && !cut(m.id) && !settings.excludes(m.id, &m.tags))
        .collect();
    let score = kept
        .iter()
        .map(|m| match m.severity {
            Some(0..=2) => 5,
            Some(3) => 4,
            Some(4) => 3,
            Some(5) => 2,
            _ => 0,
        })
        .sum();
    (score, kept)
}

fn severity_name(severity: Option<u8>) -> &'static str {
    match severity {
        Some(0) => "emergency",
        Some(1) => "alert",
        Some(2) => "critical",
        Some(3) => "error",
        Some(4) => "warning",
        Some(5) => "notice",
        _ => "",
    }
}

fn entry(
    exchange: &Exchange,
    site: &str,
    settings: &WafSettings,
    (action, score): (&str, u32),
    kept: &[Match],
    truncated: bool,
) -> Entry {
    Entry {
        time: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        id: exchange.id.clone(),
        site: site.to_owned(),
        client: exchange.client.to_string(),
        method: exchange.method.clone(),
        uri: exchange.uri.clone(),
        action: action.to_owned(),
        score,
        threshold: settings.threshold,
        paranoia: settings.paranoia,
        rules: kept
            .iter()
            .map(|m| log::Rule {
                id: m.id,
                severity: severity_name(m.severity).to_owned(),
                msg: m.msg.clone(),
                var: m.var.clone(),
            })
            .collect(),
        body_truncated: truncated,
    }
}

/// A new unique request id: 96 random bits, in hex.
pub(crate) fn request_id() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use porter_store::WafExclusion;

    fn found(id: u32, severity: u8, tag: &str) -> Match {
        Match {
            id,
            severity: Some(severity),
            msg: String::new(),
            var: String::new(),
            tags: vec![tag.into()],
        }
    }

    #[test]
    fn the_score_leaves_out_exclusions_and_the_crs_evaluation() {
        let mut settings = WafSettings::new(WafMode::Block);
        let matches = vec![
            found(942100, 2, "attack-sqli"),
            found(920350, 4, "attack-protocol"),
            found(949110, 2, "attack-generic"),
            found(941100, 2, "attack-xss"),
        ];
        assert_eq!(judge(matches.clone(), &settings, false).0, 13);
        let unparsed = vec![found(200002, 2, "")];
        assert_eq!(judge(unparsed.clone(), &settings, false).0, 5);
        assert_eq!(judge(unparsed, &settings, true).0, 0);
        settings.exclude = vec![
            WafExclusion::Id(942100),
            WafExclusion::Tag("attack-xss".into()),
        ];
        let (score, kept) = judge(matches, &settings, false);
        assert_eq!(score, 3);
        assert_eq!(kept.iter().map(|m| m.id).collect::<Vec<_>>(), [920350]);
    }
}
