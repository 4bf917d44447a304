//! The command line: `porter serve` and the management commands. A management command goes to
//! the running server's admin API when there is one, and otherwise opens the store itself and
//! runs the very same dispatcher in-process.

use crate::apps::AppStatus;
use crate::cert_check::{self, Filter, Level, Thresholds};
use crate::control::admin::{self, AdminClient, AdminCommand, Answer, ClientError};
use crate::control::ops::apps::{AppSpec, AppView};
use crate::control::ops::certs::CertView;
use crate::control::ops::status::StatusView;
use crate::control::ops::{AddSite, ImportCert, UpdateSite};
use crate::runtime::store_at::{StoreArgs, StoreAt};
use crate::serve;
use crate::serve::config::ServeArgs;
use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use porter_acme::AcmeAction;
use porter_store::{SledStore, StoreError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
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
    #[command(flatten)]
    store: StoreArgs,
    /// Porter's own log lines (on stderr): `text`, or `json` (one object a line) for a log
    /// collector.
    #[arg(long, global = true, env = "PORTER_LOG_FORMAT", default_value = "text")]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How Porter's own logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
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
enum NodeCommand {
    /// The nodes running, with where the others reach them and since when (a node that dies
    /// leaves the list when its lease runs out: --etcd-lease-ttl).
    List,
}

#[derive(Debug, Subcommand)]
enum OnDemandCommand {
    /// Allow the names RULE covers.
    Allow { rule: String },
    /// Remove a rule (sites it let in stay).
    Disallow { rule: String },
    /// List the rules.
    Rules,
}

#[derive(Debug, Subcommand)]
enum WafCommand {
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
enum DnsCommand {
    /// Let Porter set DNS-01 records in ZONE (added, or replaced when it exists).
    Add {
        zone: String,
        #[command(flatten)]
        spec: crate::control::ops::dns::ZoneSpec,
    },
    /// List the zones (never their keys).
    List,
    /// Remove a zone no ACME site needs.
    Remove { zone: String },
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
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
            node: None,
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
    Add(AddSite),
    /// Change a site: only the options given change.
    Update {
        domain: String,
        #[command(flatten)]
        change: Box<UpdateSite>,
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
    /// Every site's certificate: source, key, expiry, when and why it renews, ACME failures,
    /// OCSP, and whether the edge serves it now.
    #[command(alias = "list")]
    Status(CertStatusArgs),
    /// Renew DOMAIN's ACME certificate now.
    Renew { domain: String },
    /// Revoke DOMAIN's ACME certificate at the CA, then replace it.
    Revoke { domain: String },
}

/// `cert status`.
#[derive(Debug, clap::Args)]
struct CertStatusArgs {
    /// Only these domains.
    domains: Vec<String>,
    /// Only certificates that expire within this (like 30d), or have none.
    #[arg(long, value_parser = crate::runtime::duration::duration)]
    expiring_within: Option<std::time::Duration>,
    /// Only sites whose renewal or OCSP fetch is failing.
    #[arg(long)]
    failing: bool,
    /// Monitoring plugin mode (Nagios, Icinga): a summary line, one line per problem, exit 0
    /// OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    #[arg(long)]
    check: bool,
    /// With --check: warn when a certificate expires within this.
    #[arg(long, default_value = "14d", value_parser = crate::runtime::duration::duration)]
    warn: std::time::Duration,
    /// With --check: critical when a certificate expires within this.
    #[arg(long, default_value = "3d", value_parser = crate::runtime::duration::duration)]
    crit: std::time::Duration,
    /// With --check: warn when a site has had no certificate for this long since it was added.
    #[arg(long, default_value = "10m", value_parser = crate::runtime::duration::duration)]
    grace: std::time::Duration,
    /// With --check: critical when a site has had no certificate for this long.
    #[arg(long, default_value = "1h", value_parser = crate::runtime::duration::duration)]
    critical_after: std::time::Duration,
}

impl Cli {
    /// Whether this invocation runs the server (which logs more than the CLI does).
    pub(crate) fn is_serve(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

/// The admin command a CLI command is.
fn admin_command(command: Command) -> anyhow::Result<AdminCommand> {
    Ok(match command {
        Command::Serve(_)
        | Command::Init
        | Command::HashPassword { .. }
        | Command::Waf(WafCommand::Log { .. })
        | Command::Store(StoreCommand::Export { .. } | StoreCommand::Copy { .. }) => {
            unreachable!("not an admin command")
        }
        Command::Store(StoreCommand::Import { file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let backup = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a Porter backup", file.display()))?;
            AdminCommand::ImportStore(Box::new(backup))
        }
        Command::Site(SiteCommand::Add(req)) => AdminCommand::AddSite(req),
        Command::Site(SiteCommand::Update { domain, mut change }) => {
            change.features.read_files()?;
            AdminCommand::UpdateSite {
                domain,
                change: *change,
            }
        }
        Command::Site(SiteCommand::Remove { domain }) => AdminCommand::RemoveSite { domain },
        Command::Site(SiteCommand::List) => AdminCommand::ListSites,
        Command::Cert(CertCommand::Import { domain, cert, key }) => {
            let read = |p: &Path| {
                std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
            };
            AdminCommand::ImportCert(ImportCert {
                domain,
                chain_pem: read(&cert)?,
                key_pem: read(&key)?,
            })
        }
        Command::Cert(CertCommand::Status(_)) => AdminCommand::ListCerts,
        Command::Cert(CertCommand::Renew { domain }) => AdminCommand::RequestAcme {
            domain,
            action: AcmeAction::Renew,
        },
        Command::Cert(CertCommand::Revoke { domain }) => AdminCommand::RequestAcme {
            domain,
            action: AcmeAction::Revoke,
        },
        Command::App(AppCommand::Add { id, settings }) => AdminCommand::AddApp {
            id,
            spec: AppSpec::from(*settings),
        },
        Command::App(AppCommand::Update { id, settings }) => AdminCommand::UpdateApp {
            id,
            spec: AppSpec::from(*settings),
        },
        Command::App(AppCommand::Remove { id }) => AdminCommand::RemoveApp { id },
        Command::Node(NodeCommand::List) => AdminCommand::ListNodes,
        Command::App(AppCommand::List) => AdminCommand::ListApps,
        Command::App(AppCommand::Status { id }) => AdminCommand::AppStatus { id },
        Command::App(AppCommand::Logs { id }) => AdminCommand::AppLogs { id },
        Command::App(AppCommand::Restart { id }) => AdminCommand::ControlApp { id, restart: true },
        Command::App(AppCommand::Stop { id }) => AdminCommand::ControlApp { id, restart: false },
        Command::Status => AdminCommand::Status,
        Command::Dns(DnsCommand::Add { zone, mut spec }) => {
            spec.read_key_file()?;
            AdminCommand::PutDnsZone { zone, spec }
        }
        Command::Dns(DnsCommand::List) => AdminCommand::ListDnsZones,
        Command::OnDemand(OnDemandCommand::Allow { rule }) => {
            AdminCommand::OnDemandRule { rule, allow: true }
        }
        Command::OnDemand(OnDemandCommand::Disallow { rule }) => {
            AdminCommand::OnDemandRule { rule, allow: false }
        }
        Command::OnDemand(OnDemandCommand::Rules) => AdminCommand::ListOnDemandRules,
        Command::Dns(DnsCommand::Remove { zone }) => AdminCommand::RemoveDnsZone { zone },
        Command::Waf(WafCommand::Status) => AdminCommand::WafStatus,
        Command::Waf(WafCommand::Reload) => AdminCommand::WafReload,
    })
}

/// Why a command failed, as its exit code tells a script (clap exits 2 on a usage error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Anything else.
    Other = 1,
    /// The input was refused (invalid, exists already, in use): nothing changed.
    Refused = 3,
    /// What it names does not exist, or there is no store.
    NotFound = 4,
    /// The server (or its store) does not answer.
    Unavailable = 5,
}

impl Failure {
    fn of(e: &anyhow::Error) -> Self {
        use crate::control::ops::OpError;
        let store = |e: &StoreError| match e {
            StoreError::Invalid(_) | StoreError::AlreadyExists(_) | StoreError::InUse(_) => {
                Failure::Refused
            }
            StoreError::NotFound(_) => Failure::NotFound,
            StoreError::Locked(_) | StoreError::Stalled { .. } => Failure::Unavailable,
            _ => Failure::Other,
        };
        for cause in e.chain() {
            if let Some(NoStore { .. }) = cause.downcast_ref() {
                return Failure::NotFound;
            }
            if let Some(NotAnswering { .. }) = cause.downcast_ref() {
                return Failure::Unavailable;
            }
            if let Some(e) = cause.downcast_ref::<ClientError>() {
                return match e {
                    ClientError::Api { status, .. } => match status.as_u16() {
                        400 | 409 => Failure::Refused,
                        404 => Failure::NotFound,
                        503 => Failure::Unavailable,
                        _ => Failure::Other,
                    },
                    ClientError::Unreachable { .. } | ClientError::Cut { .. } => {
                        Failure::Unavailable
                    }
                    ClientError::Protocol(_) => Failure::Other,
                };
            }
            if let Some(e) = cause.downcast_ref::<OpError>() {
                return match e {
                    OpError::Store(e) => store(e),
                    OpError::Refused(_) | OpError::Unreachable { .. } => Failure::Refused,
                };
            }
            if let Some(e) = cause.downcast_ref::<StoreError>() {
                return store(e);
            }
        }
        Failure::Other
    }

    fn word(self) -> &'static str {
        match self {
            Failure::Other => "failed",
            Failure::Refused => "refused",
            Failure::NotFound => "not_found",
            Failure::Unavailable => "unavailable",
        }
    }
}

/// A command other than `serve` and `init` found no store: it never creates one (a command run
/// from the wrong directory would otherwise report success on a new, empty store).
#[derive(Debug, thiserror::Error)]
#[error("no Porter store in {looked}: point --data-dir (or PORTER_DATA_DIR) at the data dir `porter serve` uses, or create one with `porter init`", looked = .data_dir.display())]
struct NoStore {
    data_dir: PathBuf,
}

/// Runs the parsed command and reports a failure on stderr (as JSON with `--json`); the exit
/// code is `--check`'s, else 0 or the [`Failure`]'s.
pub(crate) async fn run(cli: Cli) -> ExitCode {
    let json = cli.json;
    match run_command(cli).await {
        Ok(code) => code,
        Err(e) => {
            let failure = Failure::of(&e);
            if json {
                let error = serde_json::json!({"error": format!("{e:#}"), "kind": failure.word()});
                eprintln!("{error}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(failure as u8)
        }
    }
}

async fn run_command(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = cli.data_dir;
    let at = cli.store.location(&data_dir)?;
    let (data_dir, store_at) = (data_dir.as_path(), &at);
    match cli.command {
        Command::Serve(args) => {
            serve::run(data_dir, at, *args).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Init => {
            init(data_dir, store_at).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Cert(CertCommand::Status(args)) => {
            return cert_status((data_dir, store_at), args, cli.json).await;
        }
        Command::Store(StoreCommand::Export { output }) => {
            export((data_dir, store_at), output.as_deref()).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Store(StoreCommand::Copy { from, to, force }) => {
            let (from, to) = (cli.store.parse(&from)?, cli.store.parse(&to)?);
            let copied = copy_store(&from, &to, force).await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&copied)?);
            } else {
                println!(
                    "copied {from} to {to}: {} apps, {} sites, {} certificates, {} ACME accounts",
                    copied.apps, copied.sites, copied.certs, copied.accounts
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Waf(WafCommand::Log { domain, follow }) => {
            let path = data_dir.join(crate::waf::LOG_FILE);
            let json = cli.json;
            tokio::task::spawn_blocking(move || {
                crate::waf::follow_log(&path, domain.as_deref(), follow, |entry| {
                    if json {
                        println!("{}", serde_json::to_string(entry).unwrap_or_default());
                    } else {
                        println!("{}", waf_line(entry));
                    }
                })
                .with_context(|| format!("cannot read the WAF log {}", path.display()))
            })
            .await??;
            return Ok(ExitCode::SUCCESS);
        }
        Command::HashPassword { user } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("cannot read the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                return Err(crate::control::ops::OpError::Refused(
                    "an empty password: give one on stdin".into(),
                )
                .into());
            }
            let hash = crate::proxy::hash_password(password).map_err(anyhow::Error::msg)?;
            match user {
                Some(user) => println!("{user}:{hash}"),
                None => println!("{hash}"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let command = admin_command(cli.command)?;
    let answer = execute((data_dir, store_at), &command).await?;
    // `status` without a server exits 3, as `systemctl status` of a stopped unit does (LSB:
    // program is not running), after printing what the store holds.
    let code = match &answer {
        Answer::Status(StatusView { server: None, .. }) => ExitCode::from(NOT_RUNNING),
        _ => ExitCode::SUCCESS,
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", render(&command, answer));
    }
    Ok(code)
}

/// The exit code of `porter status` when no server runs.
const NOT_RUNNING: u8 = 3;

/// `store export`: the backup to `output` (created 0600) or stdout (made 0600 when it is a
/// file), with a warning on stderr of what it holds.
async fn export(at: (&Path, &StoreAt), output: Option<&Path>) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    // Opened before the store is read, as the user who runs the command (root acts as the
    // data dir's owner from then on), and emptied only once the backup is read.
    let file = match output {
        Some(path) => {
            let existed = path.exists();
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            // An existing file keeps its mode through open: tighten it.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            Some((file, path, existed))
        }
        None => None,
    };
    let read = execute(at, &AdminCommand::ExportStore)
        .await
        .and_then(|answer| match answer {
            Answer::Backup(backup) => Ok(backup),
            _ => Err(anyhow::anyhow!("the server's answer is not a backup")),
        });
    let backup = match read {
        Ok(backup) => backup,
        Err(e) => {
            if let Some((_, path, false)) = &file {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
    };
    let text = serde_json::to_string_pretty(&backup)? + "\n";
    match file {
        Some((mut file, _, _)) => {
            file.set_len(0)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        None => {
            let stdout = std::io::stdout();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&stdout);
            if let Ok(stat) = nix::sys::stat::fstat(fd) {
                if nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode)
                    .contains(nix::sys::stat::SFlag::S_IFREG)
                {
                    let _ =
                        nix::sys::stat::fchmod(fd, nix::sys::stat::Mode::from_bits_truncate(0o600));
                }
            }
            stdout.lock().write_all(text.as_bytes())?;
        }
    }
    eprintln!(
        "warning: the backup holds every site's private key and the ACME account keys: keep it as private as the data dir ({} sites, {} certificates)",
        backup.sites.len(),
        backup.certs.len()
    );
    Ok(())
}

/// `porter init`: the data dir and an empty store in it (on etcd: the store's schema under
/// its prefix, checked or written).
async fn init(data_dir: &Path, store_at: &StoreAt) -> anyhow::Result<()> {
    crate::runtime::data_dir::act_as_owner(data_dir)?;
    crate::runtime::data_dir::prepare(data_dir)?;
    let Some(store_dir) = store_at.sled_dir() else {
        drop(store_at.open(OFFLINE_DEADLINE).await?);
        println!("the store at {store_at} is ready");
        return Ok(());
    };
    if store_dir.exists() {
        // Not opened: a running server holds it.
        println!("a store is already in {}", store_dir.display());
        return Ok(());
    }
    drop(SledStore::open(store_dir)?);
    println!("created an empty store in {}", store_dir.display());
    Ok(())
}

/// `store copy`: every lasting record of `from` written into `to`.
async fn copy_store(
    from: &StoreAt,
    to: &StoreAt,
    force: bool,
) -> anyhow::Result<crate::control::ops::backup::Imported> {
    if let (Some(a), Some(b)) = (from.sled_dir(), to.sled_dir()) {
        anyhow::ensure!(a != b, "--from and --to are the same store");
    }
    // Root copying a service user's sled store (to etcd, say) acts as its owner, so that the
    // files sled writes there stay the service user's.
    for dir in [from.sled_dir(), to.sled_dir()].into_iter().flatten() {
        crate::runtime::data_dir::act_as_owner(dir)?;
    }
    if let Some(dir) = from.sled_dir() {
        anyhow::ensure!(
            dir.join("db").exists() || dir.join("conf").exists(),
            "there is no store in {}",
            dir.display()
        );
    }
    let source = open_offline(from).await?;
    let backup = crate::control::ops::backup::export(source.as_ref()).await?;
    drop(source);
    let target = open_offline(to).await?;
    Ok(crate::control::ops::backup::import(target.as_ref(), backup, force).await?)
}

/// Opens a store no server of this data dir holds, saying so when one does.
async fn open_offline(at: &StoreAt) -> anyhow::Result<Arc<dyn porter_store::Store>> {
    at.open(OFFLINE_DEADLINE).await.map_err(|e| {
        if e.chain().any(|c| matches!(c.downcast_ref(), Some(StoreError::Locked(_)))) {
            anyhow::anyhow!("a porter server holds the store at {at}: stop it first, or copy from a backup (`store export`)")
        } else {
            e
        }
    })
}

/// `cert status`: the rows its filters keep, as a table, JSON, or a monitoring plugin's report.
async fn cert_status(
    at: (&Path, &StoreAt),
    args: CertStatusArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let read = async {
        match execute(at, &AdminCommand::ListCerts).await? {
            Answer::Certs(certs) => Ok(certs),
            _ => bail!("the server's answer is not a list of certificates"),
        }
    };
    let filter = Filter {
        domains: args.domains,
        expiring_within: args.expiring_within,
        failing: args.failing,
    };
    if args.check {
        let thresholds = Thresholds {
            warn: args.warn,
            crit: args.crit,
            grace: args.grace,
            critical_after: args.critical_after,
        };
        // Whether a server runs, and with ACME, decides what a site without a certificate is.
        let read_all = async {
            let server = match ask_server(at.0, &AdminCommand::Status).await {
                None => cert_check::Server::Down,
                Some(answer) => match answer? {
                    Answer::Status(StatusView {
                        server: Some(server),
                        ..
                    }) => cert_check::Server::Up { acme: server.acme },
                    _ => bail!("the server's answer is not its status"),
                },
            };
            anyhow::Ok((server, read.await?))
        };
        let (level, out) = match read_all.await {
            Ok((server, certs)) => {
                let kept: Vec<CertView> = certs.into_iter().filter(|c| filter.keep(c)).collect();
                cert_check::check(&kept, thresholds, server)
            }
            Err(e) => (Level::Unknown, cert_check::unknown(&e)),
        };
        print!("{out}");
        return Ok(level.exit_code());
    }
    let certs: Vec<CertView> = read.await?.into_iter().filter(|c| filter.keep(c)).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&certs)?);
    } else {
        print!("{}", certs_table(certs));
    }
    Ok(ExitCode::SUCCESS)
}

/// Deadline of the store operations of a command run without a server.
const OFFLINE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends `command` to the running server; `None` when no server answers (no discovery file,
/// or one left by a server that is gone).
async fn ask_server(data_dir: &Path, command: &AdminCommand) -> Option<anyhow::Result<Answer>> {
    // Root reads nothing of a service user's data dir (its discovery file names where the
    // token goes) before it acts as that user.
    if let Err(e) = crate::runtime::data_dir::act_as_owner(data_dir) {
        return Some(Err(e));
    }
    let client = AdminClient::discover(data_dir)?;
    let (method, path, body) = command.http();
    match client.call(method, &path, body).await {
        Err(ClientError::Unreachable { .. }) => None,
        other => Some(other.map_err(anyhow::Error::from).and_then(|value| {
            command
                .answer_from(value)
                .context("the server's answer does not fit the command")
        })),
    }
}

/// Sends `command` to the running server, or runs it on the store when none runs.
async fn execute(
    (data_dir, store_at): (&Path, &StoreAt),
    command: &AdminCommand,
) -> anyhow::Result<Answer> {
    if let Some(answer) = ask_server(data_dir, command).await {
        return answer;
    }
    if data_dir.exists() {
        crate::runtime::data_dir::act_as_owner(data_dir)?;
        // Says what is wrong with a data dir that is there (a file, another user's).
        crate::runtime::data_dir::prepare(data_dir)?;
    }
    let store: Arc<dyn porter_store::Store> = match store_at.sled_dir() {
        Some(dir) if !dir.exists() => {
            return Err(NoStore {
                data_dir: std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf()),
            }
            .into());
        }
        Some(dir) => match open_or_ask(data_dir, dir, command).await? {
            Ok(store) => Arc::new(store),
            Err(answer) => return Ok(answer),
        },
        None => store_at.open(OFFLINE_DEADLINE).await?,
    };
    let ctx = admin::Context {
        apps: None,
        apps_dir: data_dir.join(serve::APPS_DIR),
        store,
        acme_ca: None,
        sites: None,
        metrics: None,
        store_at: store_at.clone(),
        server: None,
        waf: None,
        node: store_at.node().map(str::to_owned),
    };
    Ok(admin::execute(&ctx, command.clone()).await?)
}

/// How long a command waits for the admin API of a server that is starting.
const START_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The embedded store in `dir`, opened for this command; or, while a server has it (starting
/// or stopping: it holds the store for a moment without an admin API that answers), that
/// server's answer once it answers. A starting server is never kept waiting for the store by
/// a command. Past [`START_WAIT`], [`NotAnswering`].
async fn open_or_ask(
    data_dir: &Path,
    dir: &Path,
    command: &AdminCommand,
) -> anyhow::Result<Result<SledStore, Answer>> {
    let deadline = tokio::time::Instant::now() + START_WAIT;
    loop {
        if !crate::serve::instance::server_starting(data_dir) {
            match SledStore::open(dir) {
                Ok(store) => return Ok(Ok(store)),
                Err(StoreError::Locked(_)) => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("cannot open the store in {}", dir.display())))
                }
            }
        }
        if let Some(answer) = ask_server(data_dir, command).await {
            return answer.map(Err);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(NotAnswering {
                data_dir: data_dir.to_path_buf(),
            }
            .into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A server has the data dir (it is starting, or holds the store) and its admin API does not
/// answer: a retry is worth it (exit code 5).
#[derive(Debug, thiserror::Error)]
#[error("a porter server is starting on {dir} (or holds its store) and its admin API does not answer yet: nothing was changed; retry in a few seconds (if this lasts, see `porter status` and the server's log)", dir = .data_dir.display())]
struct NotAnswering {
    data_dir: PathBuf,
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".into())
}

/// What `command` answered, for a person.
fn render(command: &AdminCommand, answer: Answer) -> String {
    match answer {
        Answer::Sites(sites) => table(
            &["DOMAIN", "UPSTREAM", "ACME", "FEATURES"],
            sites
                .into_iter()
                .map(|s| {
                    vec![
                        s.domain,
                        s.upstream,
                        if s.acme { "yes" } else { "no" }.into(),
                        s.features.summary(),
                    ]
                })
                .collect(),
        ),
        Answer::Site(site) if matches!(command, AdminCommand::UpdateSite { .. }) => format!(
            "updated site {} -> {} (hsts max-age {})\n",
            site.domain, site.upstream, site.hsts_max_age
        ),
        Answer::Site(site) => {
            let note = site
                .note
                .map(|n| format!("note: {n}\n"))
                .unwrap_or_default();
            format!("added site {} -> {}\n{note}", site.domain, site.upstream)
        }
        Answer::Certs(certs) => certs_table(certs),
        Answer::Cert(cert) => match command {
            AdminCommand::RequestAcme { action, .. } => {
                let what = match action {
                    AcmeAction::Renew => "renewal",
                    AcmeAction::Revoke => "revocation and replacement",
                };
                format!(
                    "{what} of {} requested; `porter cert status` shows its progress\n",
                    cert.domain
                )
            }
            _ => format!(
                "imported certificate for {} ({}), valid until {}\n",
                cert.domain,
                cert.names.join(", "),
                or_dash(cert.not_after)
            ),
        },
        Answer::Apps(apps) => apps_table(apps),
        Answer::App(app) => {
            let verb = if matches!(command, AdminCommand::AddApp { .. }) {
                "added"
            } else {
                "updated"
            };
            format!("{verb} app {} ({})\n", app.id, app.command)
        }
        Answer::AppStatus(s) => render_app_status(s),
        Answer::Logs { logs } => format!("{logs}\n"),
        Answer::Removed { removed } => {
            let what = match command {
                AdminCommand::RemoveApp { .. } => "app",
                AdminCommand::RemoveDnsZone { .. } => "DNS zone",
                _ => "site",
            };
            format!("removed {what} {removed}\n")
        }
        Answer::Status(status) => render_status(status),
        Answer::Backup(_) => unreachable!("export writes its own output"),
        Answer::DnsZones(zones) => table(
            &["ZONE", "SERVER", "TSIG KEY", "ALGORITHM"],
            zones
                .into_iter()
                .map(|z| vec![z.zone, z.server, z.tsig_name, z.tsig_alg])
                .collect(),
        ),
        Answer::DnsZone(z) => format!(
            "DNS zone {} updated at {} with key {} ({})\n",
            z.zone, z.server, z.tsig_name, z.tsig_alg
        ),
        Answer::OnDemandRules(rules) if rules.is_empty() => {
            "no on-demand rules: only the ask endpoint (if any) allows names\n".into()
        }
        Answer::OnDemandRules(rules) => rules.join("\n") + "\n",
        Answer::Nodes(nodes) if nodes.is_empty() => {
            "no nodes: the embedded store has no fleet (serve with --store etcd://...)\n".into()
        }
        Answer::Nodes(nodes) => table(
            &["NODE", "ADDRESS", "PID", "UP SINCE"],
            nodes
                .into_iter()
                .map(|n| {
                    vec![
                        n.name,
                        n.addr,
                        n.pid.to_string(),
                        crate::control::ops::rfc3339(n.started_at),
                    ]
                })
                .collect(),
        ),
        Answer::Waf(status) => format!(
            "rules: {}\nengine: {}\ndefault mode: {}\n",
            status.rules,
            status.engine.as_deref().unwrap_or(
                "not loaded (no site has needed it yet, or it failed: see `porter waf reload`)"
            ),
            status.default_mode
        ),
        Answer::Imported(n) => format!(
            "imported {} apps, {} sites, {} certificates, {} ACME accounts\n",
            n.apps, n.sites, n.certs, n.accounts
        ),
    }
}

/// A WAF log entry on one line, for a person.
fn waf_line(entry: &crate::waf::Entry) -> String {
    let rules: Vec<String> = entry
        .rules
        .iter()
        .map(|r| format!("{} {} ({})", r.id, r.msg, r.var))
        .collect();
    format!(
        "{} {} {} {} {} {} score {}/{} pl{} id {}{}: {}",
        entry.time,
        entry.action,
        entry.site,
        entry.client,
        entry.method,
        entry.uri,
        entry.score,
        entry.threshold,
        entry.paranoia,
        entry.id,
        if entry.body_truncated {
            " (body beyond the limit not inspected)"
        } else {
            ""
        },
        rules.join("; ")
    )
}

fn render_status(status: StatusView) -> String {
    let mut out = format!("porter {}\n", status.version);
    let counts = |map: &std::collections::BTreeMap<String, usize>| {
        if map.is_empty() {
            return "none".to_owned();
        }
        map.iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &status.server {
        Some(server) => {
            out.push_str(&format!(
                "server: running, pid {}, up {}s, {} edge threads\n",
                server.pid, server.uptime_s, server.edge_threads
            ));
            for (name, addr) in &server.listeners {
                out.push_str(&format!("  {name:<8} {addr}\n"));
            }
            let open = server
                .connections_open
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!("connections open: {open}\n"));
            out.push_str(&format!("apps: {}\n", counts(&server.apps)));
            match (server.acme, &server.acme_ca) {
                (Some(true), ca) => out.push_str(&format!("ACME: on ({})\n", or_dash(ca.clone()))),
                (Some(false), _) => out.push_str("ACME: off (no --acme-agree-tos)\n"),
                (None, _) => {}
            }
        }
        None => out.push_str("server: not running (read from the store)\n"),
    }
    match &status.content {
        Some(c) => out.push_str(&format!(
            "sites: {}\ncertificates: {}\nACME orders in flight: {}, failing: {}\nOCSP refreshes due: {}\napps defined: {}\n",
            c.sites,
            counts(&c.certificates),
            c.acme_orders_pending,
            c.acme_failing,
            c.ocsp_refresh_due,
            c.apps
        )),
        None => out.push_str("sites, certificates: the store did not answer in time\n"),
    }
    let state = match (&status.store.failure, status.store.unreachable_since) {
        (None, _) => "ok".to_owned(),
        (Some(failure), Some(since)) => format!(
            "UNREACHABLE since {} ({} s; serving from memory, ACME and OCSP work paused): {failure}",
            crate::control::ops::rfc3339(since),
            porter_store::unix_now() - since
        ),
        (Some(failure), None) => format!("writes failing: {failure}"),
    };
    out.push_str(&format!(
        "store: {state}\nstore path: {} ({} KiB)\nstore operations past their deadline: {}\n",
        status.store.path,
        status.store.size_bytes / 1024,
        status.store.stalled_operations
    ));
    out
}

fn certs_table(certs: Vec<CertView>) -> String {
    table(
        &[
            "DOMAIN",
            "STATUS",
            "SOURCE",
            "KEY",
            "NOT AFTER",
            "LEFT",
            "RENEW AT",
            "WHY",
            "ATTEMPTS",
            "NEXT ATTEMPT",
            "OCSP",
            "SERVED",
            "LAST ERROR / NOTE",
        ],
        certs
            .into_iter()
            .map(|c| {
                let source = match (c.source, c.ca) {
                    (Some(source), Some(ca)) => format!("{source}:{ca}"),
                    (source, _) => or_dash(source),
                };
                let ocsp = match (c.ocsp, c.ocsp_valid_until) {
                    (Some(ocsp), Some(until)) if ocsp.starts_with("good") => {
                        format!("{ocsp} until {until}")
                    }
                    (ocsp, _) => or_dash(ocsp),
                };
                vec![
                    c.domain,
                    c.status,
                    source,
                    or_dash(c.key_type),
                    or_dash(c.not_after),
                    c.expires_in_s.map_or("-".into(), time_left),
                    or_dash(c.renew_at),
                    or_dash(c.renew_why),
                    c.attempts.to_string(),
                    or_dash(c.next_attempt),
                    ocsp,
                    match c.served {
                        Some(true) => "yes".into(),
                        Some(false) => "NO".into(),
                        None => "-".into(),
                    },
                    or_dash(c.last_error.or(c.note)),
                ]
            })
            .collect(),
    )
}

/// Time left, as `41d 3h`, `5h 12m`, or `expired`.
fn time_left(seconds: i64) -> String {
    match seconds {
        s if s <= 0 => "expired".into(),
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}

fn apps_table(apps: Vec<AppView>) -> String {
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

fn render_app_status(s: AppStatus) -> String {
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
