//! The command line: `porter serve` and the management commands. A management command goes to
//! the running server's admin API when there is one, and otherwise opens the store itself and
//! runs the very same dispatcher in-process.

use crate::admin::{self, AdminClient, ClientError};
use crate::config::ServeArgs;
use crate::ops::{AddSite, CertView, ImportCert, SiteView};
use crate::serve::{self, STORE_DIR};
use anyhow::{anyhow, bail, Context as _};
use clap::{Parser, Subcommand};
use http::Method;
use porter_store::{SledStore, StoreError};
use serde_json::Value;
use std::path::{Path, PathBuf};

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
    Serve(ServeArgs),
    /// Manage sites (domain names and where their requests go).
    #[command(subcommand)]
    Site(SiteCommand),
    /// Manage certificates.
    #[command(subcommand)]
    Cert(CertCommand),
}

#[derive(Debug, Subcommand)]
enum SiteCommand {
    /// Serve DOMAIN (exact, or *.wildcard) by forwarding to an upstream.
    Add {
        domain: String,
        /// host:port, [v6]:port, or an absolute unix socket path.
        #[arg(long)]
        upstream: String,
        /// Add the site even when the upstream does not accept connections yet.
        #[arg(long)]
        allow_unreachable: bool,
    },
    /// Stop serving DOMAIN; its certificate is removed with it.
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
    /// List certificates.
    List,
}

impl Cli {
    /// Whether this invocation runs the server (which logs more than the CLI does).
    pub(crate) fn is_serve(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

/// Runs the parsed command.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let data_dir = cli.data_dir;
    let (method, path, body) = match cli.command {
        Command::Serve(args) => return serve::run(&data_dir, args).await,
        Command::Site(SiteCommand::Add {
            domain,
            upstream,
            allow_unreachable,
        }) => {
            let req = AddSite {
                domain,
                upstream,
                allow_unreachable,
            };
            (
                Method::POST,
                "/v1/sites".to_owned(),
                Some(serde_json::to_value(req)?),
            )
        }
        Command::Site(SiteCommand::Remove { domain }) => {
            (Method::DELETE, format!("/v1/sites/{domain}"), None)
        }
        Command::Site(SiteCommand::List) => (Method::GET, "/v1/sites".to_owned(), None),
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
                "/v1/certs".to_owned(),
                Some(serde_json::to_value(req)?),
            )
        }
        Command::Cert(CertCommand::List) => (Method::GET, "/v1/certs".to_owned(), None),
    };
    let result = execute(&data_dir, method, &path, body).await?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", render(&path, result)?);
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
    serve::ensure_data_dir(data_dir)?;
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
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let reply = admin::dispatch(&store, &method, path, body.as_bytes()).await;
    if reply.status.is_success() {
        Ok(reply.body)
    } else {
        Err(anyhow!(
            "{}",
            reply.body["error"].as_str().unwrap_or("unknown error")
        ))
    }
}

/// Human-readable output for each endpoint.
fn render(path: &str, value: Value) -> anyhow::Result<String> {
    Ok(match path {
        "/v1/sites" if value.is_array() => {
            let sites: Vec<SiteView> = serde_json::from_value(value)?;
            table(
                &["DOMAIN", "UPSTREAM"],
                sites
                    .into_iter()
                    .map(|s| vec![s.domain, s.upstream])
                    .collect(),
            )
        }
        "/v1/sites" => {
            let site: SiteView = serde_json::from_value(value)?;
            format!("added site {} -> {}\n", site.domain, site.upstream)
        }
        "/v1/certs" if value.is_array() => {
            let certs: Vec<CertView> = serde_json::from_value(value)?;
            table(
                &["DOMAIN", "STATUS", "NOT AFTER", "SOURCE", "NAMES", "ISSUER"],
                certs
                    .into_iter()
                    .map(|c| {
                        vec![
                            c.domain,
                            c.status,
                            c.not_after,
                            c.source,
                            c.names.join(","),
                            c.issuer,
                        ]
                    })
                    .collect(),
            )
        }
        "/v1/certs" => {
            let cert: CertView = serde_json::from_value(value)?;
            format!(
                "imported certificate for {} ({}), valid until {}\n",
                cert.domain,
                cert.names.join(", "),
                cert.not_after
            )
        }
        _ => format!(
            "removed site {}\n",
            value["removed"].as_str().unwrap_or_default()
        ),
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
