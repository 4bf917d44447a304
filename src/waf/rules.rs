//! Where the rules come from and the configuration Porter loads them in: Debian's
//! `modsecurity-crs` (the CRS 3.3.4 in `/usr/share/modsecurity-crs/rules`, its setup and the
//! operator's exclusion files in `/etc/modsecurity/crs`) or another copy (`--waf-rules DIR`:
//! `DIR/crs-setup.conf` when present, then `DIR/rules/*.conf`, or `DIR/*.conf` without a
//! `rules` folder).
//!
//! Around the operator's files, Porter's own directives: detection only (Porter judges the
//! score), request bodies inspected up to the largest limit a site may set and partially
//! beyond, JSON and XML bodies parsed, no audit log; and one rule that sets the CRS paranoia level from `SERVER_PORT`,
//! which Porter gives each transaction from its site's setting (the CRS reads neither
//! `SERVER_PORT` nor `SERVER_ADDR`), before the CRS's own default of 1 applies.

use super::engine::EngineError;
use porter_store::MAX_WAF_BODY_LIMIT;
use std::path::{Path, PathBuf};

/// Debian's CRS rules.
const DEBIAN_RULES: &str = "/usr/share/modsecurity-crs/rules";
/// Debian's CRS setup and the operator's exclusion files around the rules.
const DEBIAN_ETC: &str = "/etc/modsecurity/crs";

/// What ModSecurity's recommended configuration adds before the CRS: JSON and XML bodies
/// parsed as such (else the CRS sees only their raw text), and a body that does not parse
/// counted as critical (ids 200000-200003, as there; `pass`, since Porter judges).
const BODY_PROCESSORS: &str = "\
SecRule REQUEST_HEADERS:Content-Type \"@rx ^(?:application(?:/soap\\+|/)|text/)xml\" \"id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML\"
SecRule REQUEST_HEADERS:Content-Type \"@rx ^application/json\" \"id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON\"
SecRule REQBODY_ERROR \"!@eq 0\" \"id:200002,phase:2,t:none,log,pass,severity:2,msg:'Failed to parse request body'\"
SecRule MULTIPART_STRICT_ERROR \"!@eq 0\" \"id:200003,phase:2,t:none,log,pass,severity:2,msg:'Multipart request body failed strict validation'\"
";

/// The files of a rule set, in load order.
#[derive(Debug, Clone)]
pub(crate) struct RuleSource {
    /// `--waf-rules DIR`, or `None` for Debian's layout.
    dir: Option<PathBuf>,
}

impl RuleSource {
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        RuleSource { dir }
    }

    /// Where the rules are, for messages.
    pub(crate) fn describe(&self) -> String {
        match &self.dir {
            Some(dir) => dir.display().to_string(),
            None => format!("{DEBIAN_RULES} (Debian's modsecurity-crs)"),
        }
    }

    /// The files to load, in order.
    fn files(&self) -> Result<Vec<PathBuf>, EngineError> {
        let (setup, before, rules, after) = match &self.dir {
            Some(dir) => {
                let nested = dir.join("rules");
                let rules = if nested.is_dir() { nested } else { dir.clone() };
                let setup = dir.join("crs-setup.conf");
                (setup.is_file().then_some(setup), None, rules, None)
            }
            None => {
                let etc = Path::new(DEBIAN_ETC);
                let optional = |name: &str| Some(etc.join(name)).filter(|p| p.is_file());
                (
                    Some(etc.join("crs-setup.conf")),
                    optional("REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf"),
                    PathBuf::from(DEBIAN_RULES),
                    optional("RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf"),
                )
            }
        };
        let hint = "install Debian's modsecurity-crs, or give --waf-rules DIR";
        let listed = std::fs::read_dir(&rules)
            .map_err(|e| EngineError::Files(format!("{}: {e} ({hint})", rules.display())))?;
        let mut conf: Vec<PathBuf> = listed
            .flatten()
            .map(|entry| entry.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .filter(|p| Some(p) != setup.as_ref())
            .collect();
        conf.sort();
        if conf.is_empty() {
            return Err(EngineError::Files(format!(
                "no .conf file in {} ({hint})",
                rules.display()
            )));
        }
        let mut files: Vec<PathBuf> = setup.into_iter().chain(before).collect();
        files.push(PathBuf::new()); // where the paranoia rule goes
        files.extend(conf);
        files.extend(after);
        for file in files.iter().filter(|f| !f.as_os_str().is_empty()) {
            if !file.is_file() {
                return Err(EngineError::Files(format!(
                    "{} is missing ({hint})",
                    file.display()
                )));
            }
        }
        Ok(files)
    }

    /// The whole configuration to load.
    pub(crate) fn config(&self) -> Result<String, EngineError> {
        let mut config = format!(
            "SecRuleEngine DetectionOnly\n\
             SecRequestBodyAccess On\n\
             SecRequestBodyLimit {MAX_WAF_BODY_LIMIT}\n\
             SecRequestBodyNoFilesLimit {MAX_WAF_BODY_LIMIT}\n\
             SecRequestBodyLimitAction ProcessPartial\n\
             SecResponseBodyAccess Off\n\
             SecAuditEngine Off\n\
             {BODY_PROCESSORS}"
        );
        for file in self.files()? {
            if file.as_os_str().is_empty() {
                config.push_str(
                    "SecRule SERVER_PORT \"@rx ^[1-4]$\" \"id:99001,phase:1,pass,nolog,t:none,setvar:tx.paranoia_level=%{MATCHED_VAR}\"\n",
                );
                // CRS 3's default list of HTTP versions (rule 920430) predates HTTP/3: CRS 4's,
                // unless the setup gives its own.
                config.push_str(
                    "SecRule &TX:allowed_http_versions \"@eq 0\" \"id:99002,phase:1,pass,nolog,t:none,setvar:'tx.allowed_http_versions=HTTP/1.0 HTTP/1.1 HTTP/2 HTTP/2.0 HTTP/3 HTTP/3.0'\"\n",
                );
                continue;
            }
            let path = file
                .to_str()
                .filter(|p| !p.contains(char::is_whitespace) && !p.contains('"'))
                .ok_or_else(|| {
                    EngineError::Files(format!("{}: an unusable file name", file.display()))
                })?;
            config.push_str(&format!("Include {path}\n"));
        }
        // Whatever the setup says: Porter decides what is blocked.
        config.push_str("SecRuleEngine DetectionOnly\n");
        Ok(config)
    }
}
