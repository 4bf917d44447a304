//! The command line as clap reads it: the top-level flags (the store's and the output's, global
//! to every command), the commands, and their arguments. Running them is `dispatch`'s job.

use crate::control::ops::apps::AppSpec;
use crate::control::ops::cache::PurgeRequest;
use crate::control::ops::{on_off, AddSite, UpdateSite};
use crate::runtime::store_at::StoreArgs;
use crate::serve::config::ServeArgs;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Porter: a TLS edge for hosting platforms.
#[derive(Debug, Parser)]
#[command(
    name = "porter",
    version,
    about,
    args_override_self = true,
    after_help = super::exit::EXIT_CODES
)]
pub(crate) struct Cli {
    /// Where the store, the admin token and the discovery file live.
    #[arg(
        long,
        global = true,
        env = "PORTER_DATA_DIR",
        default_value = "./porter-data",
        help_heading = STORE_HEADING
    )]
    pub(super) data_dir: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true, help_heading = OUTPUT_HEADING)]
    pub(super) json: bool,
    #[command(flatten, next_help_heading = STORE_HEADING)]
    pub(super) store: StoreArgs,
    /// Porter's own log lines (on stderr): `text`, or `json` (one object a line) for a log
    /// collector.
    #[arg(
        long,
        global = true,
        env = "PORTER_LOG_FORMAT",
        default_value = "text",
        help_heading = OUTPUT_HEADING
    )]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(super) command: Command,
}

/// The heading of the flags every command takes to find its store (shown once, apart from a
/// command's own flags).
const STORE_HEADING: &str = "Store (every command)";

/// The heading of the flags every command takes on how it prints.
const OUTPUT_HEADING: &str = "Output (every command)";

/// How Porter's own logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
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
    /// How the running server is doing: listeners, connections, sites, certificates, ACME,
    /// OCSP, apps and the store.
    Status,
    /// Create the data dir and an empty store (`serve` also creates them; no other command
    /// does).
    Init,
    /// DNS zones Porter may update (RFC 2136 with TSIG) to validate names over DNS-01:
    /// wildcards, and sites set to `--acme-challenge dns-01`.
    #[command(subcommand)]
    Dns(DnsCommand),
    /// Rules of names on-demand TLS (`serve --on-demand-upstream`) may obtain certificates for
    /// without asking: `example.com` allows itself and every name under it, `*.example.com`
    /// only the names under it.
    #[command(subcommand)]
    OnDemand(OnDemandCommand),
    /// The web application firewall (OWASP CRS): its rules and its log. A site's WAF is set
    /// with `site update --waf off|detect|block` and the other --waf-* flags.
    #[command(subcommand)]
    Waf(WafCommand),
    /// The HTTP cache: purges and statistics (a site's cache is set with `site update
    /// --cache on|off` and the other --cache-* flags).
    #[command(subcommand)]
    Cache(CacheCommand),
    /// The nodes of a fleet sharing an etcd store.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Back up the whole store, or restore a backup into a fresh one.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Hash a password (read from stdin) with argon2id for `site update --basic-auth`; prints
    /// USER:HASH, an htpasswd line, when USER is given.
    HashPassword { user: Option<String> },
}

#[derive(Debug, Subcommand)]
pub(super) enum NodeCommand {
    /// The nodes running, with where the others reach them and since when (a node that dies
    /// leaves the list when its lease runs out: --etcd-lease-ttl).
    #[command(visible_alias = "ls")]
    List,
}

#[derive(Debug, Subcommand)]
pub(super) enum OnDemandCommand {
    /// Allow the names RULE covers.
    Allow { rule: String },
    /// Remove a rule (sites it let in stay).
    Disallow { rule: String },
    /// List the rules.
    #[command(visible_alias = "ls")]
    Rules,
}

#[derive(Debug, Subcommand)]
pub(super) enum WafCommand {
    /// Which rules are loaded, and the server's default mode.
    Status,
    /// Load the rules again (after an upgrade or an edit of the CRS files); the rules loaded
    /// serve until the new ones have loaded, and stay when they do not.
    Reload,
    /// The requests rules matched: all, or DOMAIN's (from DATA_DIR/waf.log).
    Log {
        domain: Option<String>,
        /// Keep printing new ones as they come.
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum CacheCommand {
    /// Remove a URL, the URLs under a prefix, those of a tag, or all of a site's responses
    /// from the cache of every node.
    #[command(
        override_usage = "porter cache purge DOMAIN (URL_PATH | --prefix P | --tag T | --all)"
    )]
    Purge(PurgeRequest),
    /// What the running server's cache holds (memory, disk) and each site's counters.
    Stats {
        /// Only this site.
        domain: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum DnsCommand {
    /// Let Porter set DNS-01 records in ZONE (added, or replaced when it exists).
    Add {
        zone: String,
        #[command(flatten)]
        spec: crate::control::ops::dns::ZoneSpec,
    },
    /// List the zones (never their keys).
    #[command(visible_alias = "ls")]
    List,
    /// Remove a zone no ACME site needs.
    Remove { zone: String },
}

#[derive(Debug, Subcommand)]
pub(super) enum StoreCommand {
    /// Every record (private keys and ACME account keys included) as JSON, to stdout or
    /// --output; consistent while the server runs. The file is made readable by its owner only.
    Export {
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Restore a backup into a store with no site and no app.
    Import { file: PathBuf },
    /// Copy every record from one store to another, as when moving an installation to etcd
    /// (or back): `--from sled:PATH --to etcd://HOST:PORT/prefix`. No server may hold a sled
    /// store while it is copied. A target that holds sites or apps is refused unless --force.
    Copy {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// Write over a target that is not empty (records with the same names are replaced;
        /// the others stay).
        #[arg(long)]
        force: bool,
    },
}

/// The settings of `app add` and `app update`.
#[derive(Debug, clap::Args)]
pub(super) struct AppArgs {
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
    /// Allow running as root: on|off (`--allow-root` alone is on).
    #[arg(long, value_name = "on|off", value_parser = on_off, num_args = 0..=1, default_missing_value = "on")]
    allow_root: Option<bool>,
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
            allow_root: a.allow_root,
            socket: a.socket,
            start_timeout: a.start_timeout,
            idle_timeout: a.idle_timeout,
            health: a.health,
            health_interval: a.health_interval,
            stop_signal: a.stop_signal,
            stop_grace: a.stop_grace,
            restart: a.restart,
            node: None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum AppCommand {
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
    #[command(visible_alias = "ls")]
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
pub(super) enum SiteCommand {
    /// Serve DOMAIN (exact, or *.wildcard) by forwarding to an upstream or an app.
    Add(Box<AddSite>),
    /// Change a site: only the options given change.
    Update {
        domain: String,
        #[command(flatten)]
        change: Box<UpdateSite>,
    },
    /// Stop serving DOMAIN; its certificate and ACME work go with it.
    Remove { domain: String },
    /// List sites.
    #[command(visible_alias = "ls")]
    List,
    /// One site, and each of its upstreams as the running server sees it (up, down, on
    /// probation; requests, failures, the last error).
    Status { domain: String },
}

#[derive(Debug, Subcommand)]
pub(super) enum CertCommand {
    /// Serve DOMAIN with a certificate chain (leaf first) and its private key, both PEM.
    Import {
        domain: String,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Every site's certificate: source, key, expiry, when and why it renews, ACME failures,
    /// OCSP, and whether the edge serves it now.
    #[command(visible_aliases = ["list", "ls"])]
    Status(CertStatusArgs),
    /// Renew DOMAIN's ACME certificate now.
    Renew { domain: String },
    /// Revoke DOMAIN's ACME certificate at the CA, then replace it.
    Revoke { domain: String },
}

/// `cert status`.
#[derive(Debug, clap::Args)]
pub(super) struct CertStatusArgs {
    /// Only these domains.
    pub(super) domains: Vec<String>,
    /// Every column (source, key, validity, renewal, ACME attempts, OCSP, served, last error),
    /// wider than a terminal; the default fits 100 columns.
    #[arg(long)]
    pub(super) wide: bool,
    /// Only certificates that expire within this (like 30d), or have none.
    #[arg(long, value_parser = crate::runtime::duration::duration)]
    pub(super) expiring_within: Option<std::time::Duration>,
    /// Only sites whose renewal or OCSP fetch is failing.
    #[arg(long)]
    pub(super) failing: bool,
    /// Monitoring plugin mode (Nagios, Icinga): a summary line, one line per problem, exit 0
    /// OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; with --json, the same result as one JSON object.
    #[arg(long)]
    pub(super) check: bool,
    /// With --check: warn when a certificate expires within this.
    #[arg(long, default_value = "14d", value_parser = crate::runtime::duration::duration)]
    pub(super) warn: std::time::Duration,
    /// With --check: critical when a certificate expires within this.
    #[arg(long, default_value = "3d", value_parser = crate::runtime::duration::duration)]
    pub(super) crit: std::time::Duration,
    /// With --check: warn when a site has had no certificate for this long since it was added.
    #[arg(long, default_value = "10m", value_parser = crate::runtime::duration::duration)]
    pub(super) grace: std::time::Duration,
    /// With --check: critical when a site has had no certificate for this long.
    #[arg(long, default_value = "1h", value_parser = crate::runtime::duration::duration)]
    pub(super) critical_after: std::time::Duration,
}

impl Cli {
    /// Whether this invocation runs the server (which logs more than the CLI does).
    pub(crate) fn is_serve(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}
