//! Every admin command as one typed value, shared by the CLI, the admin client and the router:
//! the CLI builds an [`AdminCommand`], the client sends it as [`AdminCommand::http`], the router
//! reads it back with [`AdminCommand::from_http`], and the answer comes back typed
//! ([`AdminCommand::answer_from`]). A new command is one variant here; the unit test below
//! checks that every command survives the trip through HTTP.

use crate::apps::AppStatus;
use crate::control::ops::apps::{AppSpec, AppView};
use crate::control::ops::backup::{Backup, Imported};
use crate::control::ops::cache::{CacheStats, PurgeRequest};
use crate::control::ops::certs::CertView;
use crate::control::ops::dns::{ZoneSpec, ZoneView};
use crate::control::ops::status::StatusView;
use crate::control::ops::{AddSite, ImportCert, SiteView, UpdateSite};
use crate::waf::WafStatus;
use http::{Method, StatusCode};
use porter_acme::AcmeAction;
use serde::Serialize;
use serde_json::Value;

/// One admin command.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AdminCommand {
    ListSites,
    SiteStatus {
        domain: String,
    },
    AddSite(AddSite),
    UpdateSite {
        domain: String,
        // Boxed: the largest command by far, which every other would otherwise take room for.
        change: Box<UpdateSite>,
    },
    RemoveSite {
        domain: String,
    },
    ListCerts,
    ImportCert(ImportCert),
    RequestAcme {
        domain: String,
        action: AcmeAction,
    },
    ListApps,
    AddApp {
        id: String,
        spec: AppSpec,
    },
    UpdateApp {
        id: String,
        spec: AppSpec,
    },
    RemoveApp {
        id: String,
    },
    AppStatus {
        id: String,
    },
    AppLogs {
        id: String,
    },
    /// `restart` true restarts the app, false stops it.
    ControlApp {
        id: String,
        restart: bool,
    },
    Status,
    ExportStore,
    ImportStore(Box<Backup>),
    ListDnsZones,
    PutDnsZone {
        zone: String,
        spec: ZoneSpec,
    },
    RemoveDnsZone {
        zone: String,
    },
    ListOnDemandRules,
    /// `allow` true adds the rule, false removes it.
    OnDemandRule {
        rule: String,
        allow: bool,
    },
    WafStatus,
    WafReload,
    ListNodes,
    PurgeCache(PurgeRequest),
    CacheStats,
}

/// What a command answers; on the wire, the inner value as JSON.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Answer {
    Sites(Vec<SiteView>),
    Site(Box<SiteView>),
    Certs(Vec<CertView>),
    Cert(Box<CertView>),
    Apps(Vec<AppView>),
    App(AppView),
    AppStatus(AppStatus),
    Logs { logs: String },
    Removed { removed: String },
    Status(StatusView),
    Backup(Box<Backup>),
    Imported(Imported),
    DnsZones(Vec<ZoneView>),
    DnsZone(ZoneView),
    OnDemandRules(Vec<String>),
    Waf(WafStatus),
    Nodes(Vec<porter_store::Node>),
    Purged(porter_store::Purge),
    CacheStats(CacheStats),
}

/// A request the admin API does not know, or whose body does not fit.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotACommand {
    #[error("no such admin endpoint: {method} {path}")]
    Unknown { method: Method, path: String },
    #[error("bad request body: {0}")]
    Body(#[from] serde_json::Error),
}

/// What a resource's routes make of a request: its command, `None` when they do not know the
/// request, or the error of a body that does not fit.
type Route = Result<Option<AdminCommand>, serde_json::Error>;

fn json<T: Serialize>(value: &T) -> Option<Value> {
    Some(serde_json::to_value(value).expect("commands serialise"))
}

impl AdminCommand {
    /// The admin API's method, path and JSON body for this command.
    pub(crate) fn http(&self) -> (Method, String, Option<Value>) {
        use AdminCommand::*;
        match self {
            ListSites => (Method::GET, "/v1/sites".into(), None),
            SiteStatus { domain } => (Method::GET, format!("/v1/sites/{domain}"), None),
            AddSite(req) => (Method::POST, "/v1/sites".into(), json(req)),
            UpdateSite { domain, change } => {
                (Method::PATCH, format!("/v1/sites/{domain}"), json(change))
            }
            RemoveSite { domain } => (Method::DELETE, format!("/v1/sites/{domain}"), None),
            ListCerts => (Method::GET, "/v1/certs".into(), None),
            ImportCert(req) => (Method::POST, "/v1/certs".into(), json(req)),
            RequestAcme { domain, action } => {
                let verb = match action {
                    AcmeAction::Renew => "renew",
                    AcmeAction::Revoke => "revoke",
                };
                (Method::POST, format!("/v1/certs/{domain}/{verb}"), None)
            }
            ListApps => (Method::GET, "/v1/apps".into(), None),
            ListNodes => (Method::GET, "/v1/nodes".into(), None),
            AddApp { id, spec } => (Method::POST, format!("/v1/apps/{id}"), json(spec)),
            UpdateApp { id, spec } => (Method::PATCH, format!("/v1/apps/{id}"), json(spec)),
            RemoveApp { id } => (Method::DELETE, format!("/v1/apps/{id}"), None),
            AppStatus { id } => (Method::GET, format!("/v1/apps/{id}"), None),
            AppLogs { id } => (Method::GET, format!("/v1/apps/{id}/logs"), None),
            ControlApp { id, restart } => {
                let verb = if *restart { "restart" } else { "stop" };
                (Method::POST, format!("/v1/apps/{id}/{verb}"), None)
            }
            Status => (Method::GET, "/v1/status".into(), None),
            ExportStore => (Method::GET, "/v1/store/export".into(), None),
            ImportStore(backup) => (Method::POST, "/v1/store/import".into(), json(backup)),
            ListDnsZones => (Method::GET, "/v1/dns-zones".into(), None),
            PutDnsZone { zone, spec } => (Method::PUT, format!("/v1/dns-zones/{zone}"), json(spec)),
            RemoveDnsZone { zone } => (Method::DELETE, format!("/v1/dns-zones/{zone}"), None),
            ListOnDemandRules => (Method::GET, "/v1/on-demand/rules".into(), None),
            OnDemandRule { rule, allow } => {
                let method = if *allow { Method::PUT } else { Method::DELETE };
                (method, format!("/v1/on-demand/rules/{rule}"), None)
            }
            WafStatus => (Method::GET, "/v1/waf".into(), None),
            WafReload => (Method::POST, "/v1/waf/reload".into(), None),
            PurgeCache(req) => (Method::POST, "/v1/cache/purge".into(), json(req)),
            CacheStats => (Method::GET, "/v1/cache/stats".into(), None),
        }
    }

    /// The command an admin API request names.
    pub(crate) fn from_http(method: &Method, path: &str, body: &[u8]) -> Result<Self, NotACommand> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let command = match segments.as_slice() {
            ["v1", "sites", rest @ ..] => Self::site_route(method, rest, body)?,
            ["v1", "certs", rest @ ..] => Self::cert_route(method, rest, body)?,
            ["v1", "apps", rest @ ..] => Self::app_route(method, rest, body)?,
            ["v1", "dns-zones", rest @ ..] => Self::dns_zone_route(method, rest, body)?,
            ["v1", rest @ ..] => Self::server_route(method, rest, body)?,
            _ => None,
        };
        command.ok_or_else(|| NotACommand::Unknown {
            method: method.clone(),
            path: path.to_owned(),
        })
    }

    /// The command of a request under `/v1/sites` (`rest`: the path's segments after it).
    fn site_route(method: &Method, rest: &[&str], body: &[u8]) -> Route {
        use AdminCommand::*;
        Ok(Some(match (method, rest) {
            (&Method::GET, []) => ListSites,
            (&Method::GET, [domain]) => SiteStatus {
                domain: (*domain).to_owned(),
            },
            (&Method::POST, []) => AddSite(serde_json::from_slice(body)?),
            (&Method::PATCH, [domain]) => UpdateSite {
                domain: (*domain).to_owned(),
                change: serde_json::from_slice(body)?,
            },
            (&Method::DELETE, [domain]) => RemoveSite {
                domain: (*domain).to_owned(),
            },
            _ => return Ok(None),
        }))
    }

    /// The command of a request under `/v1/certs`.
    fn cert_route(method: &Method, rest: &[&str], body: &[u8]) -> Route {
        use AdminCommand::*;
        Ok(Some(match (method, rest) {
            (&Method::GET, []) => ListCerts,
            (&Method::POST, []) => ImportCert(serde_json::from_slice(body)?),
            (&Method::POST, [domain, verb @ ("renew" | "revoke")]) => RequestAcme {
                domain: (*domain).to_owned(),
                action: if *verb == "renew" {
                    AcmeAction::Renew
                } else {
                    AcmeAction::Revoke
                },
            },
            _ => return Ok(None),
        }))
    }

    /// The command of a request under `/v1/apps`.
    fn app_route(method: &Method, rest: &[&str], body: &[u8]) -> Route {
        use AdminCommand::*;
        Ok(Some(match (method, rest) {
            (&Method::GET, []) => ListApps,
            (&Method::POST, [app]) => AddApp {
                id: (*app).to_owned(),
                spec: serde_json::from_slice(body)?,
            },
            (&Method::PATCH, [app]) => UpdateApp {
                id: (*app).to_owned(),
                spec: serde_json::from_slice(body)?,
            },
            (&Method::DELETE, [app]) => RemoveApp {
                id: (*app).to_owned(),
            },
            (&Method::GET, [app]) => AppStatus {
                id: (*app).to_owned(),
            },
            (&Method::GET, [app, "logs"]) => AppLogs {
                id: (*app).to_owned(),
            },
            (&Method::POST, [app, verb @ ("restart" | "stop")]) => ControlApp {
                id: (*app).to_owned(),
                restart: *verb == "restart",
            },
            _ => return Ok(None),
        }))
    }

    /// The command of a request under `/v1/dns-zones`.
    fn dns_zone_route(method: &Method, rest: &[&str], body: &[u8]) -> Route {
        use AdminCommand::*;
        Ok(Some(match (method, rest) {
            (&Method::GET, []) => ListDnsZones,
            (&Method::PUT, [zone]) => PutDnsZone {
                zone: (*zone).to_owned(),
                spec: serde_json::from_slice(body)?,
            },
            (&Method::DELETE, [zone]) => RemoveDnsZone {
                zone: (*zone).to_owned(),
            },
            _ => return Ok(None),
        }))
    }

    /// The command of any other request under `/v1`: the server's and the whole store's.
    fn server_route(method: &Method, rest: &[&str], body: &[u8]) -> Route {
        use AdminCommand::*;
        Ok(Some(match (method, rest) {
            (&Method::GET, ["nodes"]) => ListNodes,
            (&Method::GET, ["status"]) => Status,
            (&Method::GET, ["store", "export"]) => ExportStore,
            (&Method::POST, ["store", "import"]) => {
                ImportStore(Box::new(serde_json::from_slice(body)?))
            }
            (&Method::GET, ["on-demand", "rules"]) => ListOnDemandRules,
            (method @ (&Method::PUT | &Method::DELETE), ["on-demand", "rules", rule]) => {
                OnDemandRule {
                    rule: (*rule).to_owned(),
                    allow: method == Method::PUT,
                }
            }
            (&Method::GET, ["waf"]) => WafStatus,
            (&Method::POST, ["waf", "reload"]) => WafReload,
            (&Method::POST, ["cache", "purge"]) => PurgeCache(serde_json::from_slice(body)?),
            (&Method::GET, ["cache", "stats"]) => CacheStats,
            _ => return Ok(None),
        }))
    }

    /// The status of a successful answer.
    pub(crate) fn success(&self) -> StatusCode {
        match self {
            AdminCommand::AddSite(_)
            | AdminCommand::ImportCert(_)
            | AdminCommand::AddApp { .. }
            | AdminCommand::ImportStore(_) => StatusCode::CREATED,
            _ => StatusCode::OK,
        }
    }

    /// Reads the JSON answer of this command back into its type.
    pub(crate) fn answer_from(&self, value: Value) -> serde_json::Result<Answer> {
        use serde_json::from_value as from;
        use AdminCommand::*;
        Ok(match self {
            ListSites => Answer::Sites(from(value)?),
            AddSite(_) | UpdateSite { .. } | SiteStatus { .. } => {
                Answer::Site(Box::new(from(value)?))
            }
            ListCerts => Answer::Certs(from(value)?),
            ImportCert(_) | RequestAcme { .. } => Answer::Cert(Box::new(from(value)?)),
            ListApps => Answer::Apps(from(value)?),
            ListNodes => Answer::Nodes(from(value)?),
            AddApp { .. } | UpdateApp { .. } => Answer::App(from(value)?),
            AppStatus { .. } | ControlApp { .. } => Answer::AppStatus(from(value)?),
            AppLogs { .. } => Answer::Logs {
                logs: from(value["logs"].clone())?,
            },
            ListDnsZones => Answer::DnsZones(from(value)?),
            PutDnsZone { .. } => Answer::DnsZone(from(value)?),
            ListOnDemandRules | OnDemandRule { .. } => Answer::OnDemandRules(from(value)?),
            WafStatus | WafReload => Answer::Waf(from(value)?),
            PurgeCache(_) => Answer::Purged(from(value)?),
            CacheStats => Answer::CacheStats(from(value)?),
            RemoveSite { .. } | RemoveApp { .. } | RemoveDnsZone { .. } => Answer::Removed {
                removed: from(value["removed"].clone())?,
            },
            Status => Answer::Status(from(value)?),
            ExportStore => Answer::Backup(Box::new(from(value)?)),
            ImportStore(_) => Answer::Imported(from(value)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each command.
    fn examples() -> Vec<AdminCommand> {
        let spec = AppSpec {
            command: Some("python3 -m http.server {port}".into()),
            ..AppSpec::default()
        };
        vec![
            AdminCommand::ListSites,
            AdminCommand::SiteStatus {
                domain: "a.test".into(),
            },
            AdminCommand::ListNodes,
            AdminCommand::AddSite(AddSite {
                domain: "a.test".into(),
                upstream: vec!["127.0.0.1:1".into(), "127.0.0.1:2,weight=3".into()],
                app: None,
                allow_unreachable: true,
                no_acme: false,
                hsts_max_age: Some(60),
                acme_challenge: Some("dns-01".into()),
                cache: crate::control::ops::cache::CacheChange {
                    cache_ttl: Some("5m".into()),
                    cache_bypass_cookies: Some(vec!["session".into()]),
                    ..Default::default()
                },
                balance: crate::control::ops::upstreams::BalanceChange {
                    balance: Some("cookie:sid".into()),
                    health_check: Some("/health".into()),
                    try_timeout: Some("500ms".into()),
                    ..Default::default()
                },
            }),
            AdminCommand::UpdateSite {
                domain: "a.test".into(),
                change: Box::new(UpdateSite {
                    upstream: vec!["127.0.0.1:3".into()],
                    app: Some("shop".into()),
                    allow_unreachable: false,
                    acme: Some(false),
                    hsts_max_age: None,
                    acme_challenge: Some("server".into()),
                    features: crate::control::ops::features::FeatureChange {
                        compress: Some(true),
                        redirects: Some(vec!["/old/* /new/ 308".into()]),
                        allow: Some(vec!["10.0.0.0/8".into()]),
                        error_pages: Some([("502".into(), "<p>later</p>".into())].into()),
                        cache: crate::control::ops::cache::CacheChange {
                            cache: Some(true),
                            no_cache_bypass_paths: true,
                            cache_max_object: Some("8MiB".into()),
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                    balance: crate::control::ops::upstreams::BalanceChange {
                        retries: Some(false),
                        health_check: Some("off".into()),
                        ..Default::default()
                    },
                }),
            },
            AdminCommand::RemoveSite {
                domain: "a.test".into(),
            },
            AdminCommand::ListCerts,
            AdminCommand::ImportCert(ImportCert {
                domain: "a.test".into(),
                chain_pem: "chain".into(),
                key_pem: "key".into(),
            }),
            AdminCommand::RequestAcme {
                domain: "a.test".into(),
                action: AcmeAction::Renew,
            },
            AdminCommand::RequestAcme {
                domain: "a.test".into(),
                action: AcmeAction::Revoke,
            },
            AdminCommand::ListApps,
            AdminCommand::AddApp {
                id: "shop".into(),
                spec: spec.clone(),
            },
            AdminCommand::UpdateApp {
                id: "shop".into(),
                spec,
            },
            AdminCommand::RemoveApp { id: "shop".into() },
            AdminCommand::AppStatus { id: "shop".into() },
            AdminCommand::AppLogs { id: "shop".into() },
            AdminCommand::ControlApp {
                id: "shop".into(),
                restart: true,
            },
            AdminCommand::ControlApp {
                id: "shop".into(),
                restart: false,
            },
            AdminCommand::Status,
            AdminCommand::ExportStore,
            AdminCommand::ImportStore(Box::new(Backup {
                porter_backup: 1,
                apps: Vec::new(),
                sites: Vec::new(),
                certs: Vec::new(),
                accounts: Vec::new(),
                acme_states: Vec::new(),
                ocsp: Vec::new(),
                ticket_keys: None,
                dns_zones: Vec::new(),
                on_demand_rules: Vec::new(),
            })),
            AdminCommand::ListDnsZones,
            AdminCommand::PutDnsZone {
                zone: "a.test".into(),
                spec: ZoneSpec {
                    server: "127.0.0.1:53".into(),
                    tsig_name: Some("porter".into()),
                    tsig_key: Some("c2VjcmV0".into()),
                    tsig_key_file: None,
                    tsig_alg: None,
                },
            },
            AdminCommand::RemoveDnsZone {
                zone: "a.test".into(),
            },
            AdminCommand::ListOnDemandRules,
            AdminCommand::OnDemandRule {
                rule: "a.test".into(),
                allow: true,
            },
            AdminCommand::OnDemandRule {
                rule: "a.test".into(),
                allow: false,
            },
            AdminCommand::WafStatus,
            AdminCommand::WafReload,
            AdminCommand::PurgeCache(PurgeRequest {
                domain: "a.test".into(),
                url: None,
                prefix: Some("/assets/".into()),
                tag: None,
                all: false,
            }),
            AdminCommand::CacheStats,
        ]
    }

    #[test]
    fn every_command_survives_the_trip_through_http() {
        let commands = examples();
        for command in commands {
            let (method, path, body) = command.http();
            let body = body.map(|b| b.to_string()).unwrap_or_default();
            let back = AdminCommand::from_http(&method, &path, body.as_bytes()).unwrap();
            assert_eq!(back, command, "{method} {path}");
        }
        assert!(matches!(
            AdminCommand::from_http(&Method::GET, "/v1/nothing", b""),
            Err(NotACommand::Unknown { .. })
        ));
        assert!(matches!(
            AdminCommand::from_http(&Method::POST, "/v1/sites", b"{"),
            Err(NotACommand::Body(_))
        ));
    }

    /// The paths and methods of the OpenAPI document.
    fn documented() -> Vec<(Method, String)> {
        let doc: Value = serde_json::from_str(crate::control::admin::server::OPENAPI).unwrap();
        let mut routes = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                routes.push((method.to_uppercase().parse().unwrap(), path.clone()));
            }
        }
        routes
    }

    /// Whether `path` fits the `template` (`{name}` matches one segment).
    fn fits(template: &str, path: &str) -> bool {
        let (t, p): (Vec<&str>, Vec<&str>) =
            (template.split('/').collect(), path.split('/').collect());
        t.len() == p.len()
            && t.iter()
                .zip(&p)
                .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}')))
    }

    #[test]
    fn the_openapi_document_describes_the_router() {
        let routes = documented();
        // Every command the router knows is documented, with its method.
        for command in examples() {
            let (method, path, _) = command.http();
            assert!(
                routes.iter().any(|(m, t)| *m == method && fits(t, &path)),
                "{method} {path} is not in openapi.json"
            );
        }
        // Every documented route reaches the router (or the server's own: /metrics and the
        // document itself).
        for (method, template) in &routes {
            if ["/metrics", "/v1/openapi.json"].contains(&template.as_str()) {
                continue;
            }
            let path = template
                .replace("{domain}", "a.test")
                .replace("{id}", "shop");
            if let Err(NotACommand::Unknown { .. }) = AdminCommand::from_http(method, &path, b"{}")
            {
                panic!("{method} {template} is documented but the router does not know it")
            }
        }
        // And the router knows nothing more: each known command's route was checked above,
        // and an undocumented method on a documented path is unknown to it.
        for (template, _) in routes.iter().map(|(_, t)| (t, ())) {
            let path = template
                .replace("{domain}", "a.test")
                .replace("{id}", "shop");
            for method in [
                Method::GET,
                Method::POST,
                Method::PATCH,
                Method::DELETE,
                Method::PUT,
            ] {
                let known = !matches!(
                    AdminCommand::from_http(&method, &path, b"{}"),
                    Err(NotACommand::Unknown { .. })
                );
                let documented = routes.iter().any(|(m, t)| *m == method && t == template);
                if known && !["/metrics", "/v1/openapi.json"].contains(&template.as_str()) {
                    assert!(
                        documented,
                        "{method} {template} is routed but not documented"
                    );
                }
            }
        }
    }
}
