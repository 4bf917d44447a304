//! Changing a site's HTTP features (`site update` flags and the same fields in the API), and
//! how they are shown. Password hashes are checked with the verifiers the edge uses, so a hash
//! that would never match is refused here rather than locking everyone out.

use super::OpError;
use porter_store::{
    CacheSettings, Canonical, Credential, Features, Redirect, StoreError, WafExclusion, WafMode,
    WafSettings,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What `site update` changes in a site's features; what is not given stays.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
pub(crate) struct FeatureChange {
    /// Compress compressible responses (br, zstd or gzip, as the client accepts): on|off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "on|off", value_parser = super::on_off)]
    pub(crate) compress: Option<bool>,
    /// Redirect this name to the name without `www.` (for a www. site; 301).
    #[serde(default, skip_serializing_if = "is_false")]
    #[arg(long, conflicts_with_all = ["redirect_to_www", "no_canonical_redirect"])]
    pub(crate) redirect_to_apex: bool,
    /// Redirect this name to www.THIS-NAME (301).
    #[serde(default, skip_serializing_if = "is_false")]
    #[arg(long, conflicts_with = "no_canonical_redirect")]
    pub(crate) redirect_to_www: bool,
    /// Stop redirecting to the other form of the name.
    #[serde(default, skip_serializing_if = "is_false")]
    #[arg(long)]
    pub(crate) no_canonical_redirect: bool,
    /// A path redirect 'FROM TO [STATUS]': FROM ending in * redirects every path under it
    /// (its rest appended to TO); TO a path or an http(s):// URL; STATUS 301 (default), 302,
    /// 307 or 308. Repeat for more, first match wins; replaces the site's list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long = "redirect", value_name = "RULE")]
    pub(crate) redirects: Option<Vec<String>>,
    /// Remove every path redirect.
    #[serde(default, skip_serializing_if = "is_false")]
    #[arg(long, conflicts_with = "redirects")]
    pub(crate) no_redirects: bool,
    /// A user of basic auth as an htpasswd line USER:HASH (bcrypt or argon2 only; see
    /// `porter hash-password`). Repeat for more; replaces the users of --basic-auth-path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long = "basic-auth", value_name = "USER:HASH")]
    pub(crate) basic_auth: Option<Vec<String>>,
    /// Read the users of basic auth from an htpasswd file (with --basic-auth-path).
    #[serde(skip)]
    #[arg(long, value_name = "FILE")]
    pub(crate) basic_auth_file: Option<PathBuf>,
    /// The paths basic auth guards: a prefix; `/` (the default) is the whole site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "PREFIX")]
    pub(crate) basic_auth_path: Option<String>,
    /// Remove basic auth from --basic-auth-path, or everywhere without it.
    #[serde(default, skip_serializing_if = "is_false")]
    #[arg(long, conflicts_with_all = ["basic_auth", "basic_auth_file"])]
    pub(crate) no_basic_auth: bool,
    /// Serve only clients in these networks (CIDR, v4 or v6; others get 403). Repeat for
    /// more; replaces the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long = "allow", value_name = "CIDR")]
    pub(crate) allow: Option<Vec<String>>,
    /// Refuse clients in these networks with 403 (looked at before --allow). Repeat for more;
    /// replaces the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long = "deny", value_name = "CIDR")]
    pub(crate) deny: Option<Vec<String>>,
    /// Remove both the allow and the deny list (before --allow and --deny apply).
    #[serde(default, skip_serializing_if = "is_false")]
    #[arg(long)]
    pub(crate) no_access_rules: bool,
    /// A page (HTML) for Porter's own answer with STATUS (401, 403, 429, 502, 503, 504):
    /// STATUS=FILE. Repeat for more.
    #[serde(skip)]
    #[arg(long = "error-page", value_name = "STATUS=FILE")]
    pub(crate) error_page_files: Vec<String>,
    /// The pages themselves, by status (the API's form of --error-page; the keys are JSON
    /// strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(skip)]
    pub(crate) error_pages: Option<BTreeMap<String, String>>,
    /// Remove every custom error page.
    #[serde(default, skip_serializing_if = "is_false")]
    #[arg(long, conflicts_with = "error_page_files")]
    pub(crate) no_error_pages: bool,
    /// At most N `POST /wp-login.php` and `/xmlrpc.php` a minute per client (429 with
    /// Retry-After beyond), against password guessing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "N")]
    pub(crate) wp_login_limit: Option<u32>,
    /// No WordPress login limit, not even the default of a site whose WAF blocks.
    #[serde(default, skip_serializing_if = "is_false")]
    #[arg(long, conflicts_with = "wp_login_limit")]
    pub(crate) no_wp_login_limit: bool,
    /// The web application firewall (OWASP CRS): off, detect (log only) or block; `default`
    /// follows the server's `--waf-default` again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "MODE")]
    pub(crate) waf: Option<String>,
    /// The CRS paranoia level, 1 (the default; few false positives) to 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "1-4")]
    pub(crate) waf_paranoia: Option<u8>,
    /// The anomaly score that blocks (default 5: one critical match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "SCORE")]
    pub(crate) waf_threshold: Option<u32>,
    /// Rules left out, by id or tag, comma-separated (942100,920350,attack-rce); replaces the
    /// list (an empty value clears it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "ID|TAG,...")]
    pub(crate) waf_exclude: Option<String>,
    /// Bytes of a request body inspected (default 131072, at most 1048576); the rest streams
    /// through unchecked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "BYTES")]
    pub(crate) waf_body_limit: Option<u32>,
    /// The HTTP cache.
    #[serde(flatten)]
    #[command(flatten, next_help_heading = "HTTP cache")]
    pub(crate) cache: super::cache::CacheChange,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn refused(message: String) -> OpError {
    OpError::Refused(message)
}

impl FeatureChange {
    /// Reads the files the command line names (on the CLI's side: the server may not see
    /// them), into the fields the API takes.
    pub(crate) fn read_files(&mut self) -> Result<(), OpError> {
        if let Some(path) = self.basic_auth_file.take() {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| refused(format!("cannot read {}: {e}", path.display())))?;
            let lines = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned);
            self.basic_auth.get_or_insert_with(Vec::new).extend(lines);
        }
        for given in std::mem::take(&mut self.error_page_files) {
            let (status, path) = given
                .split_once('=')
                .ok_or_else(|| refused(format!("--error-page {given:?}: write STATUS=FILE")))?;
            let page = std::fs::read_to_string(path)
                .map_err(|e| refused(format!("cannot read the error page {path}: {e}")))?;
            self.error_pages
                .get_or_insert_with(BTreeMap::new)
                .insert(status.to_owned(), page);
        }
        Ok(())
    }

    /// Applies the change to `features`, checking every value; on error nothing is applied.
    pub(crate) fn apply(self, features: &mut Features) -> Result<(), OpError> {
        let mut next = features.clone();
        for step in Self::STEPS {
            step(&self, &mut next)?;
        }
        next.validate().map_err(StoreError::from)?;
        *features = next;
        Ok(())
    }
}

/// One step of [`FeatureChange::apply`]: the change to one feature.
type Step = fn(&FeatureChange, &mut Features) -> Result<(), OpError>;

impl FeatureChange {
    /// The steps of [`FeatureChange::apply`], in the order their errors are reported.
    const STEPS: [Step; 9] = [
        Self::apply_waf,
        Self::apply_compress,
        Self::apply_canonical,
        Self::apply_redirects,
        Self::apply_basic_auth,
        Self::apply_access_rules,
        Self::apply_error_pages,
        Self::apply_wp_login_limit,
        Self::apply_cache,
    ];

    /// The `--cache*` flags.
    fn apply_cache(&self, next: &mut Features) -> Result<(), OpError> {
        self.cache.apply(next)
    }

    /// `--compress on|off`.
    fn apply_compress(&self, next: &mut Features) -> Result<(), OpError> {
        if let Some(compress) = self.compress {
            next.compress = compress;
        }
        Ok(())
    }

    /// `--redirect-to-apex`, `--redirect-to-www` and `--no-canonical-redirect`.
    fn apply_canonical(&self, next: &mut Features) -> Result<(), OpError> {
        if self.redirect_to_apex {
            next.canonical = Some(Canonical::Apex);
        } else if self.redirect_to_www {
            next.canonical = Some(Canonical::Www);
        } else if self.no_canonical_redirect {
            next.canonical = None;
        }
        Ok(())
    }

    /// `--redirect` (replaces the list) and `--no-redirects`.
    fn apply_redirects(&self, next: &mut Features) -> Result<(), OpError> {
        if let Some(rules) = &self.redirects {
            next.redirects = rules
                .iter()
                .map(|r| Redirect::parse(r))
                .collect::<Result<_, _>>()
                .map_err(StoreError::from)?;
        } else if self.no_redirects {
            next.redirects.clear();
        }
        Ok(())
    }

    /// `--basic-auth` (replaces the users of `--basic-auth-path`, whose hashes must be ones the
    /// edge verifies) and `--no-basic-auth`.
    fn apply_basic_auth(&self, next: &mut Features) -> Result<(), OpError> {
        let prefix = self.basic_auth_path.as_deref();
        if let Some(lines) = &self.basic_auth {
            let prefix = prefix.unwrap_or("/");
            let added = lines
                .iter()
                .map(|line| Credential::parse(line, prefix))
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::from)?;
            for credential in &added {
                crate::proxy::check_hash(&credential.hash)
                    .map_err(|e| refused(format!("basic auth for {}: {e}", credential.user)))?;
            }
            if added.is_empty() {
                return Err(refused("--basic-auth: no users given".into()));
            }
            next.basic_auth.retain(|c| c.prefix != prefix);
            next.basic_auth.extend(added);
        } else if self.no_basic_auth {
            match prefix {
                Some(prefix) => next.basic_auth.retain(|c| c.prefix != prefix),
                None => next.basic_auth.clear(),
            }
        }
        Ok(())
    }

    /// `--no-access-rules` first, then `--allow` and `--deny` (each replaces its list).
    fn apply_access_rules(&self, next: &mut Features) -> Result<(), OpError> {
        let networks = |list: &[String]| {
            list.iter()
                .map(|n| crate::runtime::network::network(n).map_err(refused))
                .collect::<Result<Vec<_>, _>>()
        };
        if self.no_access_rules {
            next.allow.clear();
            next.deny.clear();
        }
        if let Some(allow) = &self.allow {
            next.allow = networks(allow)?;
        }
        if let Some(deny) = &self.deny {
            next.deny = networks(deny)?;
        }
        Ok(())
    }

    /// `--no-error-pages` first, then the pages given, by status.
    fn apply_error_pages(&self, next: &mut Features) -> Result<(), OpError> {
        if self.no_error_pages {
            next.error_pages.clear();
        }
        for (status, page) in self.error_pages.iter().flatten() {
            let status = status
                .parse()
                .map_err(|_| refused(format!("error page for {status:?}: not a status")))?;
            next.error_pages.insert(status, page.clone());
        }
        Ok(())
    }

    /// `--wp-login-limit N` (at least 1) and `--no-wp-login-limit` (stored as 0).
    fn apply_wp_login_limit(&self, next: &mut Features) -> Result<(), OpError> {
        if let Some(limit) = self.wp_login_limit {
            if limit == 0 {
                return Err(refused(
                    "--wp-login-limit: 1 or more a minute (--no-wp-login-limit for none)".into(),
                ));
            }
            next.wp_login_limit = Some(limit);
        } else if self.no_wp_login_limit {
            next.wp_login_limit = Some(0);
        }
        Ok(())
    }

    /// The WAF flags: `--waf MODE` sets the site's own settings (the others keep their
    /// values, or the defaults), `--waf default` removes them; the other flags change the
    /// site's own settings, so a site without any needs `--waf MODE` with them.
    fn apply_waf(&self, next: &mut Features) -> Result<(), OpError> {
        let tuned = self.waf_paranoia.is_some()
            || self.waf_threshold.is_some()
            || self.waf_exclude.is_some()
            || self.waf_body_limit.is_some();
        match self.waf.as_deref() {
            Some("default") if tuned => {
                return Err(refused(
                    "--waf default follows the server's defaults: it takes no other --waf-* flag"
                        .into(),
                ))
            }
            Some("default") => {
                next.waf = None;
                return Ok(());
            }
            Some(mode) => {
                let mode: WafMode = mode.parse().map_err(StoreError::from)?;
                next.waf
                    .get_or_insert_with(|| WafSettings::new(mode))
                    .mode = mode;
            }
            None if tuned && next.waf.is_none() => {
                return Err(refused(
                    "this site follows the server's WAF default: give --waf off|detect|block with the other --waf-* flags".into(),
                ))
            }
            None => {}
        }
        let Some(waf) = next.waf.as_mut() else {
            return Ok(());
        };
        if let Some(paranoia) = self.waf_paranoia {
            waf.paranoia = paranoia;
        }
        if let Some(threshold) = self.waf_threshold {
            waf.threshold = threshold;
        }
        if let Some(limit) = self.waf_body_limit {
            waf.body_limit = limit;
        }
        if let Some(list) = &self.waf_exclude {
            waf.exclude = list
                .split(',')
                .filter(|w| !w.trim().is_empty())
                .map(WafExclusion::parse)
                .collect::<Result<_, _>>()
                .map_err(StoreError::from)?;
        }
        Ok(())
    }
}

/// A site's features as listed: basic auth shows its users, not their hashes.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct FeaturesView {
    #[serde(default, skip_serializing_if = "is_false")]
    pub(crate) compress: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) canonical: Option<Canonical>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) redirects: Vec<Redirect>,
    /// `user` on `prefix`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) basic_auth: Vec<UserView>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) allow: Vec<ipnet::IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) deny: Vec<ipnet::IpNet>,
    /// The statuses that have a page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) error_pages: Vec<u16>,
    /// 0: none, not even the default of a site whose WAF blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) wp_login_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) waf: Option<WafSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cache: Option<CacheSettings>,
}

/// A basic auth user, without the hash.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct UserView {
    pub(crate) prefix: String,
    pub(crate) user: String,
}

impl FeaturesView {
    pub(crate) fn is_empty(&self) -> bool {
        !self.compress
            && self.canonical.is_none()
            && self.redirects.is_empty()
            && self.basic_auth.is_empty()
            && self.allow.is_empty()
            && self.deny.is_empty()
            && self.error_pages.is_empty()
            && self.wp_login_limit.is_none()
            && self.waf.is_none()
            && self.cache.is_none()
    }

    /// A short line for tables: `compress, www->apex, 2 redirects, auth /admin, ...`.
    pub(crate) fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.compress {
            parts.push("compress".to_owned());
        }
        match self.canonical {
            Some(Canonical::Apex) => parts.push("to apex".into()),
            Some(Canonical::Www) => parts.push("to www".into()),
            None => {}
        }
        if !self.redirects.is_empty() {
            parts.push(format!("{} redirects", self.redirects.len()));
        }
        let mut guarded: Vec<&str> = self.basic_auth.iter().map(|u| u.prefix.as_str()).collect();
        guarded.dedup();
        if !guarded.is_empty() {
            parts.push(format!("auth {}", guarded.join(" ")));
        }
        if !self.allow.is_empty() {
            parts.push(format!("allow {}", self.allow.len()));
        }
        if !self.deny.is_empty() {
            parts.push(format!("deny {}", self.deny.len()));
        }
        if !self.error_pages.is_empty() {
            let statuses: Vec<String> = self.error_pages.iter().map(u16::to_string).collect();
            parts.push(format!("pages {}", statuses.join(",")));
        }
        match self.wp_login_limit {
            Some(0) => parts.push("no wp-login limit".into()),
            Some(limit) => parts.push(format!("wp-login {limit}/min")),
            None => {}
        }
        if let Some(waf) = &self.waf {
            let mut waf_part = format!("waf {}", waf.mode.as_str());
            if waf.mode != WafMode::Off {
                waf_part.push_str(&format!(" pl{} >={}", waf.paranoia, waf.threshold));
                if !waf.exclude.is_empty() {
                    waf_part.push_str(&format!(" -{}", waf.exclude.len()));
                }
            }
            parts.push(waf_part);
        }
        if let Some(cache) = &self.cache {
            parts.push(super::cache::summary(cache));
        }
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(", ")
        }
    }
}

impl From<&Features> for FeaturesView {
    fn from(f: &Features) -> Self {
        FeaturesView {
            compress: f.compress,
            canonical: f.canonical,
            redirects: f.redirects.clone(),
            basic_auth: f
                .basic_auth
                .iter()
                .map(|c| UserView {
                    prefix: c.prefix.clone(),
                    user: c.user.clone(),
                })
                .collect(),
            allow: f.allow.clone(),
            deny: f.deny.clone(),
            error_pages: f.error_pages.keys().copied().collect(),
            wp_login_limit: f.wp_login_limit,
            waf: f.waf.clone(),
            cache: f.cache.clone(),
        }
    }
}
