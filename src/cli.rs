//! The command line: `porter serve` and the management commands. A management command goes to
//! the running server's admin API when there is one, and otherwise opens the store itself and
//! runs the very same dispatcher in-process.

use crate::admin::{self, AdminClient, ClientError};
use crate::apps::AppStatus;
use crate::config::ServeArgs;
use crate::ops::apps::{AppSpec, AppView};
use crate::ops::{AddSite, CertView, ImportCert, SiteView, UpdateSite};
use crate::serve::{self, STORE_DIR};
use anyhow::{anyhow, bail, Context as _};
use clap::{Parser, Subcommand};
use http::Method;
use porter_store::{SledStore, StoreError};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Porter: a TLS edge for hosting platforms.
#[derive(Debug, Parser)]
#[command(name = "porter", version, about, args_override_self = true)]
pub(crate) struct Cli {
    /// Where the store, the admin token and the discovery file live.
    #[arg(
        long,
        global = true,
        env = "PORTER_DATA_DIR",
        default_value = "./porter-data"
    )]
    data_dir: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the edge: HTTPS and HTTP listeners, and the admin API.
    Serve(Box<ServeArgs>),
    /// Manage sites (domain names and where their requests go).
    #[command(subcommand)]
    Site(SiteCommand),
    /// Manage certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Manage account daemons (apps) that Porter starts, stops and heals.
    #[command(subcommand)]
    App(AppCommand),
    /// How the running server is doing: its store's failures and stalls.
    Status,
}

/// The settings of `app add` and `app update`.
#[derive(Debug, clap::Args)]
struct AppArgs {
    /// The command line, split like a shell would, run without one; `{port}` and `{socket}`
    /// are replaced (PORT is also in the environment).
    #[arg(long)]
    command: Option<String>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env")]
    env: Vec<String>,
    /// Working directory (absolute).
    #[arg(long)]
    dir: Option<String>,
    /// User to run as (required when Porter runs as root).
    #[arg(long)]
    user: Option<String>,
    /// Group to run as (default: the user's).
    #[arg(long)]
    group: Option<String>,
    /// Allow running as root.
    #[arg(long)]
    allow_root: bool,
    /// Reach the app on this unix socket instead of a port Porter picks.
    #[arg(long)]
    socket: Option<String>,
    /// Time to become ready, like 30s.
    #[arg(long)]
    start_timeout: Option<String>,
    /// Quiet time before it is stopped, like 15m; 0 keeps it always on.
    #[arg(long)]
    idle_timeout: Option<String>,
    /// Readiness and health check: tcp, or http:/PATH (200 expected), or http:/PATH=STATUS.
    #[arg(long)]
    health: Option<String>,
    /// Time between health checks, like 10s.
    #[arg(long)]
    health_interval: Option<String>,
    /// Signal that asks it to stop (TERM, INT, QUIT, ...).
    #[arg(long)]
    stop_signal: Option<String>,
    /// Time between the stop signal and KILL, like 10s.
    #[arg(long)]
    stop_grace: Option<String>,
    /// When it exits on its own: on-failure (restart; the default) or never (mark it failed).
    #[arg(long)]
    restart: Option<String>,
}

impl From<AppArgs> for AppSpec {
    fn from(a: AppArgs) -> Self {
        AppSpec {
            command: a.command,
            env: a.env,
            dir: a.dir,
            user: a.user,
            group: a.group,
            allow_root: a.allow_root.then_some(true),
            socket: a.socket,
            start_timeout: a.start_timeout,
            idle_timeout: a.idle_timeout,
            health: a.health,
            health_interval: a.health_interval,
            stop_signal: a.stop_signal,
            stop_grace: a.stop_grace,
            restart: a.restart,
        }
    }
}

#[derive(Debug, Subcommand)]
enum AppCommand {
    /// Define an app (started on the first request of a site that uses it).
    Add {
        id: String,
        #[command(flatten)]
        settings: Box<AppArgs>,
    },
    /// Change an app; a running one is replaced without failing requests.
    Update {
        id: String,
        #[command(flatten)]
        settings: Box<AppArgs>,
    },
    /// Remove an app no site uses.
    Remove { id: String },
    /// List apps.
    List,
    /// State, pid, uptime, restarts, last exit and memory of an app.
    Status { id: String },
    /// The last lines of an app's log.
    Logs { id: String },
    /// Start a fresh instance (and clear a failed state).
    Restart { id: String },
    /// Stop it now; the next request starts it again.
    Stop { id: String },
}

#[derive(Debug, Subcommand)]
enum SiteCommand {
    /// Serve DOMAIN (exact, or *.wildcard) by forwarding to an upstream or an app.
    Add {
        domain: String,
        /// host:port, [v6]:port, or an absolute unix socket path.
        #[arg(long, required_unless_present = "app", conflicts_with = "app")]
        upstream: Option<String>,
        /// An app Porter supervises (see `porter app add`).
        #[arg(long)]
        app: Option<String>,
        /// Add the site even when the upstream does not accept connections yet.
        #[arg(long)]
        allow_unreachable: bool,
        /// Do not obtain a certificate over ACME (import one instead).
        #[arg(long)]
        no_acme: bool,
        /// HSTS max-age in seconds once the site has a valid certificate; 0 turns HSTS off.
        #[arg(long)]
        hsts_max_age: Option<u64>,
    },
    /// Change a site: only the options given change.
    Update {
        domain: String,
        /// New upstream: host:port, [v6]:port, or an absolute unix socket path.
        #[arg(long)]
        upstream: Option<String>,
        /// Accept a new upstream that does not accept connections yet.
        #[arg(long)]
        allow_unreachable: bool,
        /// Whether Porter obtains its certificate over ACME.
        #[arg(long)]
        acme: Option<bool>,
        /// HSTS max-age in seconds once the site has a valid certificate; 0 turns HSTS off.
        #[arg(long)]
        hsts_max_age: Option<u64>,
    },
    /// Stop serving DOMAIN; its certificate and ACME work go with it.
    Remove { domain: String },
    /// List sites.
    List,
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Serve DOMAIN with a certificate chain (leaf first) and its private key, both PEM.
    Import {
        domain: String,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// List every site's certificate and ACME status.
    List,
    /// Renew DOMAIN's ACME certificate now.
    Renew { domain: String },
    /// Revoke DOMAIN's ACME certificate at the CA, then replace it.
    Revoke { domain: String },
}

impl Cli {
    /// Whether this invocation runs the server (which logs more than the CLI does).
    pub(crate) fn is_serve(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

/// An admin API request: method, path, JSON body.
type ApiRequest = (Method, String, Option<Value>);

fn api_request(command: Command) -> anyhow::Result<ApiRequest> {
    Ok(match command {
        Command::Serve(_) => unreachable!("serve is not an admin request"),
        Command::Site(SiteCommand::Add {
            domain,
            upstream,
            app,
            allow_unreachable,
            no_acme,
            hsts_max_age,
        }) => {
            let req = AddSite {
                domain,
                upstream,
                app,
                allow_unreachable,
                no_acme,
                hsts_max_age,
            };
            (
                Method::POST,
                "/v1/sites".into(),
                Some(serde_json::to_value(req)?),
            )
        }
        Command::Site(SiteCommand::Update {
            domain,
            upstream,
            allow_unreachable,
            acme,
            hsts_max_age,
        }) => {
            let req = UpdateSite {
                upstream,
                allow_unreachable,
                acme,
                hsts_max_age,
            };
            (
                Method::PATCH,
                format!("/v1/sites/{domain}"),
                Some(serde_json::to_value(req)?),
            )
        }
        Command::Site(SiteCommand::Remove { domain }) => {
            (Method::DELETE, format!("/v1/sites/{domain}"), None)
        }
        Command::Site(SiteCommand::List) => (Method::GET, "/v1/sites".into(), None),
        Command::Cert(CertCommand::Import { domain, cert, key }) => {
            let read = |p: &Path| {
                std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
            };
            let req = ImportCert {
                domain,
                chain_pem: read(&cert)?,
                key_pem: read(&key)?,
            };
            (
                Method::POST,
                "/v1/certs".into(),
                Some(serde_json::to_value(req)?),
            )
        }
        Command::App(AppCommand::Add { id, settings }) => (
            Method::POST,
            format!("/v1/apps/{id}"),
            Some(serde_json::to_value(AppSpec::from(*settings))?),
        ),
        Command::App(AppCommand::Update { id, settings }) => (
            Method::PATCH,
            format!("/v1/apps/{id}"),
            Some(serde_json::to_value(AppSpec::from(*settings))?),
        ),
        Command::App(AppCommand::Remove { id }) => (Method::DELETE, format!("/v1/apps/{id}"), None),
        Command::App(AppCommand::List) => (Method::GET, "/v1/apps".into(), None),
        Command::App(AppCommand::Status { id }) => (Method::GET, format!("/v1/apps/{id}"), None),
        Command::App(AppCommand::Logs { id }) => (Method::GET, format!("/v1/apps/{id}/logs"), None),
        Command::App(AppCommand::Restart { id }) => {
            (Method::POST, format!("/v1/apps/{id}/restart"), None)
        }
        Command::App(AppCommand::Stop { id }) => {
            (Method::POST, format!("/v1/apps/{id}/stop"), None)
        }
        Command::Cert(CertCommand::List) => (Method::GET, "/v1/certs".into(), None),
        Command::Status => (Method::GET, "/v1/status".into(), None),
        Command::Cert(CertCommand::Renew { domain }) => {
            (Method::POST, format!("/v1/certs/{domain}/renew"), None)
        }
        Command::Cert(CertCommand::Revoke { domain }) => {
            (Method::POST, format!("/v1/certs/{domain}/revoke"), None)
        }
    })
}

/// Runs the parsed command.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let data_dir = cli.data_dir;
    if let Command::Serve(args) = cli.command {
        return serve::run(&data_dir, *args).await;
    }
    let (method, path, body) = api_request(cli.command)?;
    let result = execute(&data_dir, method.clone(), &path, body).await?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", render(&method, &path, result)?);
    }
    Ok(())
}

/// Sends the request to the running server, or runs it on the store when none runs.
async fn execute(
    data_dir: &Path,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let client = AdminClient::discover(data_dir);
    if let Some(client) = &client {
        match client.call(method.clone(), path, body.clone()).await {
            // A discovery file left by a server that is gone: fall back to the store.
            Err(ClientError::Unreachable { .. }) => {}
            other => return Ok(other?),
        }
    }
    crate::data_dir::prepare(data_dir)?;
    let store = match SledStore::open(&data_dir.join(STORE_DIR)) {
        Err(StoreError::Locked(_)) => bail!(
            "a porter server holds the store in {}, but its admin API {} does not answer",
            data_dir.display(),
            client.map_or("(no discovery file)".to_owned(), |c| format!(
                "at {}",
                c.addr()
            ))
        ),
        other => other?,
    };
    let ctx = admin::Context {
        apps: None,
        apps_dir: data_dir.join(serve::APPS_DIR),
        store: Arc::new(store),
        acme: false,
    };
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let reply = admin::dispatch(&ctx, &method, path, body.as_bytes()).await;
    if reply.status.is_success() {
        Ok(reply.body)
    } else {
        Err(anyhow!(
            "{}",
            reply.body["error"].as_str().unwrap_or("unknown error")
        ))
    }
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".into())
}

/// Human-readable output for each endpoint.
fn render(method: &Method, path: &str, value: Value) -> anyhow::Result<String> {
    if let Some(rest) = path.strip_prefix("/v1/apps") {
        return render_app(method, rest, value);
    }
    Ok(match (method, path) {
        (&Method::GET, "/v1/sites") => {
            let sites: Vec<SiteView> = serde_json::from_value(value)?;
            table(
                &["DOMAIN", "UPSTREAM", "ACME"],
                sites
                    .into_iter()
                    .map(|s| {
                        vec![
                            s.domain,
                            s.upstream,
                            if s.acme { "yes" } else { "no" }.into(),
                        ]
                    })
                    .collect(),
            )
        }
        (&Method::PATCH, _) => {
            let site: SiteView = serde_json::from_value(value)?;
            format!(
                "updated site {} -> {} (hsts max-age {})\n",
                site.domain, site.upstream, site.hsts_max_age
            )
        }
        (&Method::GET, "/v1/status") => {
            let store = &value["store"];
            let state = match store["failure"].as_str() {
                None => "ok".to_owned(),
                Some(failure) => format!("writes failing: {failure}"),
            };
            format!(
                "store: {state}\nstore operations past their deadline: {}\n",
                store["stalled_operations"]
            )
        }
        (&Method::POST, "/v1/sites") => {
            let site: SiteView = serde_json::from_value(value)?;
            let note = site
                .note
                .map(|n| format!("note: {n}\n"))
                .unwrap_or_default();
            format!("added site {} -> {}\n{note}", site.domain, site.upstream)
        }
        (&Method::GET, "/v1/certs") => {
            let certs: Vec<CertView> = serde_json::from_value(value)?;
            table(
                &[
                    "DOMAIN",
                    "STATUS",
                    "NOT AFTER",
                    "SOURCE",
                    "RENEW AT",
                    "ATTEMPTS",
                    "NEXT ATTEMPT",
                    "OCSP",
                    "LAST ERROR / NOTE",
                ],
                certs
                    .into_iter()
                    .map(|c| {
                        vec![
                            c.domain,
                            c.status,
                            or_dash(c.not_after),
                            or_dash(c.source),
                            or_dash(c.renew_at),
                            c.attempts.to_string(),
                            or_dash(c.next_attempt),
                            or_dash(c.ocsp),
                            or_dash(c.last_error.or(c.note)),
                        ]
                    })
                    .collect(),
            )
        }
        (&Method::POST, "/v1/certs") => {
            let cert: CertView = serde_json::from_value(value)?;
            format!(
                "imported certificate for {} ({}), valid until {}\n",
                cert.domain,
                cert.names.join(", "),
                or_dash(cert.not_after)
            )
        }
        (&Method::POST, p) if p.ends_with("/renew") || p.ends_with("/revoke") => {
            let cert: CertView = serde_json::from_value(value)?;
            let what = if p.ends_with("/renew") {
                "renewal"
            } else {
                "revocation and replacement"
            };
            format!(
                "{what} of {} requested; `porter cert list` shows its progress\n",
                cert.domain
            )
        }
        _ => format!(
            "removed site {}\n",
            value["removed"].as_str().unwrap_or_default()
        ),
    })
}

/// Human-readable output of the app endpoints (`rest` is the path after `/v1/apps`).
fn render_app(method: &Method, rest: &str, value: Value) -> anyhow::Result<String> {
    Ok(match (method, rest) {
        (&Method::GET, "") => {
            let apps: Vec<AppView> = serde_json::from_value(value)?;
            table(
                &["ID", "LISTEN", "IDLE TIMEOUT", "HEALTH", "COMMAND"],
                apps.into_iter()
                    .map(|a| {
                        vec![
                            a.id,
                            a.listen,
                            format!("{}s", a.idle_timeout_s),
                            a.health,
                            a.command,
                        ]
                    })
                    .collect(),
            )
        }
        (&Method::GET, r) if r.ends_with("/logs") => {
            format!("{}\n", value["logs"].as_str().unwrap_or_default())
        }
        (&Method::POST | &Method::PATCH, r) if r.matches('/').count() == 1 => {
            let app: AppView = serde_json::from_value(value)?;
            let verb = if method == Method::POST {
                "added"
            } else {
                "updated"
            };
            format!("{verb} app {} ({})\n", app.id, app.command)
        }
        (&Method::DELETE, _) => format!(
            "removed app {}\n",
            value["removed"].as_str().unwrap_or_default()
        ),
        _ => {
            let s: AppStatus = serde_json::from_value(value)?;
            let mut out = format!("app {}: {}\n", s.id, s.state);
            let mut line = |k: &str, v: Option<String>| {
                if let Some(v) = v {
                    out.push_str(&format!("  {k:<10} {v}\n"));
                }
            };
            line("pid", s.pid.map(|p| p.to_string()));
            line("uptime", s.uptime_s.map(|u| format!("{u}s")));
            line("restarts", Some(s.restarts.to_string()));
            line("last exit", s.last_exit);
            line("memory", s.memory_kib.map(|m| format!("{m} KiB")));
            line("in flight", Some(s.in_flight.to_string()));
            line("error", s.error);
            out
        }
    })
}

/// Left-aligned columns separated by two spaces.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
