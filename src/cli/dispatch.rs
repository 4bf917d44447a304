//! Running a parsed command. `serve`, `init`, `store export|copy`, `waf log` and
//! `hash-password` run here; every other command is an admin command: it goes to the running
//! server's admin API when there is one, and otherwise opens the store itself and runs the very
//! same dispatcher in-process.

use super::args::{
    AppCommand, CacheCommand, CertCommand, CertStatusArgs, Cli, Command, DnsCommand, NodeCommand,
    OnDemandCommand, SiteCommand, StoreCommand, WafCommand,
};
use super::cert_check::{self, Filter, Thresholds};
use super::exit::{ErrorKind, NoStore, NotAnswering, NOT_RUNNING};
use super::render;
use crate::control::admin::{self, AdminClient, AdminCommand, Answer, ClientError};
use crate::control::ops::apps::AppSpec;
use crate::control::ops::certs::CertView;
use crate::control::ops::status::StatusView;
use crate::control::ops::ImportCert;
use crate::runtime::store_at::{StoreArgs, StoreAt};
use crate::serve;
use anyhow::{bail, Context as _};
use porter_acme::AcmeAction;
use porter_store::{SledStore, StoreError};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// Runs the parsed command and reports a failure on stderr (as JSON with `--json`); the exit
/// code is `--check`'s, else 0 or the failure's [`ErrorKind`]'s.
pub(crate) async fn run(cli: Cli) -> ExitCode {
    let json = cli.json;
    match run_command(cli).await {
        Ok(code) => code,
        Err(e) => {
            let kind = ErrorKind::of(&e);
            if json {
                let error = serde_json::json!({"error": format!("{e:#}"), "kind": kind.word()});
                eprintln!("{error}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(kind.exit_code())
        }
    }
}

async fn run_command(cli: Cli) -> anyhow::Result<ExitCode> {
    let Cli {
        data_dir,
        json,
        store,
        command,
        ..
    } = cli;
    let at = store.location(&data_dir)?;
    let here = (data_dir.as_path(), &at);
    match command {
        Command::Init => init(here.0, here.1).await?,
        Command::Cert(CertCommand::Status(args)) => return cert_status(here, args, json).await,
        Command::Cache(CacheCommand::Stats { domain }) => {
            cache_stats(here, domain.as_deref(), json).await?
        }
        Command::Store(StoreCommand::Export { output }) => export(here, output.as_deref()).await?,
        Command::Store(StoreCommand::Copy { from, to, force }) => {
            copy_command(&store, (&from, &to), force, json).await?
        }
        Command::Waf(WafCommand::Log { domain, follow }) => {
            waf_log(here.0, domain, follow, json).await?
        }
        Command::HashPassword { user } => hash_password(user)?,
        Command::Serve(args) => serve::run(&data_dir, at, *args).await?,
        command => return admin_command_run(here, command, json).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// An admin command: its answer printed (as JSON with `--json`).
async fn admin_command_run(
    at: (&Path, &StoreAt),
    command: Command,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let command = admin_command(command)?;
    let answer = execute(at, &command).await?;
    // `status` without a server exits 3, as `systemctl status` of a stopped unit does (LSB:
    // program is not running), after printing what the store holds.
    let code = match &answer {
        Answer::Status(StatusView { server: None, .. }) => ExitCode::from(NOT_RUNNING),
        _ => ExitCode::SUCCESS,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", render::render(&command, answer));
    }
    Ok(code)
}

/// The admin command a CLI command is.
fn admin_command(command: Command) -> anyhow::Result<AdminCommand> {
    Ok(match command {
        Command::Site(site) => site_command(site)?,
        Command::Cert(cert) => cert_command(cert)?,
        Command::App(app) => app_command(app),
        Command::Store(StoreCommand::Import { file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let backup = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a Porter backup", file.display()))?;
            AdminCommand::ImportStore(Box::new(backup))
        }
        Command::Dns(DnsCommand::Add { zone, mut spec }) => {
            spec.read_key_file()?;
            AdminCommand::PutDnsZone { zone, spec }
        }
        Command::Dns(DnsCommand::List) => AdminCommand::ListDnsZones,
        Command::Dns(DnsCommand::Remove { zone }) => AdminCommand::RemoveDnsZone { zone },
        Command::OnDemand(OnDemandCommand::Allow { rule }) => {
            AdminCommand::OnDemandRule { rule, allow: true }
        }
        Command::OnDemand(OnDemandCommand::Disallow { rule }) => {
            AdminCommand::OnDemandRule { rule, allow: false }
        }
        Command::OnDemand(OnDemandCommand::Rules) => AdminCommand::ListOnDemandRules,
        Command::Waf(WafCommand::Status) => AdminCommand::WafStatus,
        Command::Waf(WafCommand::Reload) => AdminCommand::WafReload,
        Command::Cache(CacheCommand::Purge(req)) => AdminCommand::PurgeCache(req),
        Command::Node(NodeCommand::List) => AdminCommand::ListNodes,
        Command::Status => AdminCommand::Status,
        Command::Serve(_)
        | Command::Init
        | Command::HashPassword { .. }
        | Command::Waf(WafCommand::Log { .. })
        | Command::Cache(CacheCommand::Stats { .. })
        | Command::Store(StoreCommand::Export { .. } | StoreCommand::Copy { .. }) => {
            unreachable!("not an admin command")
        }
    })
}

fn site_command(command: SiteCommand) -> anyhow::Result<AdminCommand> {
    Ok(match command {
        SiteCommand::Add(req) => AdminCommand::AddSite(*req),
        SiteCommand::Update { domain, mut change } => {
            change.features.read_files()?;
            AdminCommand::UpdateSite { domain, change }
        }
        SiteCommand::Remove { domain } => AdminCommand::RemoveSite { domain },
        SiteCommand::List => AdminCommand::ListSites,
        SiteCommand::Status { domain } => AdminCommand::SiteStatus { domain },
    })
}

fn cert_command(command: CertCommand) -> anyhow::Result<AdminCommand> {
    Ok(match command {
        CertCommand::Import { domain, cert, key } => {
            let read = |p: &Path| {
                std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
            };
            AdminCommand::ImportCert(ImportCert {
                domain,
                chain_pem: read(&cert)?,
                key_pem: read(&key)?,
            })
        }
        CertCommand::Status(_) => AdminCommand::ListCerts,
        CertCommand::Renew { domain } => AdminCommand::RequestAcme {
            domain,
            action: AcmeAction::Renew,
        },
        CertCommand::Revoke { domain } => AdminCommand::RequestAcme {
            domain,
            action: AcmeAction::Revoke,
        },
    })
}

fn app_command(command: AppCommand) -> AdminCommand {
    match command {
        AppCommand::Add { id, settings } => AdminCommand::AddApp {
            id,
            spec: AppSpec::from(*settings),
        },
        AppCommand::Update { id, settings } => AdminCommand::UpdateApp {
            id,
            spec: AppSpec::from(*settings),
        },
        AppCommand::Remove { id } => AdminCommand::RemoveApp { id },
        AppCommand::List => AdminCommand::ListApps,
        AppCommand::Status { id } => AdminCommand::AppStatus { id },
        AppCommand::Logs { id } => AdminCommand::AppLogs { id },
        AppCommand::Restart { id } => AdminCommand::ControlApp { id, restart: true },
        AppCommand::Stop { id } => AdminCommand::ControlApp { id, restart: false },
    }
}

/// `store copy`, said on stdout.
async fn copy_command(
    store: &StoreArgs,
    (from, to): (&str, &str),
    force: bool,
    json: bool,
) -> anyhow::Result<()> {
    let (from, to) = (store.parse(from)?, store.parse(to)?);
    let copied = copy_store(&from, &to, force).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&copied)?);
    } else {
        println!(
            "copied {from} to {to}: {} apps, {} sites, {} certificates, {} ACME accounts",
            copied.apps, copied.sites, copied.certs, copied.accounts
        );
    }
    Ok(())
}

/// `waf log`: the entries of the WAF log, DOMAIN's or all, as they come with `follow`.
async fn waf_log(
    data_dir: &Path,
    domain: Option<String>,
    follow: bool,
    json: bool,
) -> anyhow::Result<()> {
    let path = data_dir.join(crate::waf::LOG_FILE);
    tokio::task::spawn_blocking(move || {
        crate::waf::follow_log(&path, domain.as_deref(), follow, |entry| {
            if json {
                println!("{}", serde_json::to_string(entry).unwrap_or_default());
            } else {
                println!("{}", render::waf_line(entry));
            }
        })
        .with_context(|| format!("cannot read the WAF log {}", path.display()))
    })
    .await?
}

/// `hash-password`: the password read from stdin, hashed.
fn hash_password(user: Option<String>) -> anyhow::Result<()> {
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
    Ok(())
}

/// `store export`: the backup to `output` (created 0600) or stdout (made 0600 when it is a
/// file), with a warning on stderr of what it holds.
async fn export(at: (&Path, &StoreAt), output: Option<&Path>) -> anyhow::Result<()> {
    use std::io::Write as _;
    // Opened before the store is read, as the user who runs the command (root acts as the
    // data dir's owner from then on), and emptied only once the backup is read.
    let file = match output {
        Some(path) => {
            let existed = path.exists();
            Some((open_private(path)?, path, existed))
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
        None => write_stdout_private(&text)?,
    }
    eprintln!(
        "warning: the backup holds every site's private key and the ACME account keys: keep it as private as the data dir ({} sites, {} certificates)",
        backup.sites.len(),
        backup.certs.len()
    );
    Ok(())
}

/// `path` opened for writing, readable by its owner only (an existing file is not emptied).
fn open_private(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An existing file keeps its mode through open: tighten it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// `text` to stdout, which is made readable by its owner only when it is a file.
fn write_stdout_private(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let stdout = std::io::stdout();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stdout);
    if let Ok(stat) = nix::sys::stat::fstat(fd) {
        if nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode)
            .contains(nix::sys::stat::SFlag::S_IFREG)
        {
            let _ = nix::sys::stat::fchmod(fd, nix::sys::stat::Mode::from_bits_truncate(0o600));
        }
    }
    stdout.lock().write_all(text.as_bytes())
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

impl CertStatusArgs {
    fn filter(&self) -> Filter {
        Filter {
            domains: self.domains.clone(),
            expiring_within: self.expiring_within,
            failing: self.failing,
        }
    }

    fn thresholds(&self) -> Thresholds {
        Thresholds {
            warn: self.warn,
            crit: self.crit,
            grace: self.grace,
            critical_after: self.critical_after,
        }
    }
}

/// Every site's certificate row.
async fn read_certs(at: (&Path, &StoreAt)) -> anyhow::Result<Vec<CertView>> {
    match execute(at, &AdminCommand::ListCerts).await? {
        Answer::Certs(certs) => Ok(certs),
        _ => bail!("the server's answer is not a list of certificates"),
    }
}

/// Whether a server runs, and with ACME: it decides what a site without a certificate is.
async fn server_for_check(data_dir: &Path) -> anyhow::Result<cert_check::Server> {
    Ok(match ask_server(data_dir, &AdminCommand::Status).await {
        None => cert_check::Server::Down,
        Some(answer) => match answer? {
            Answer::Status(StatusView {
                server: Some(server),
                ..
            }) => cert_check::Server::Up { acme: server.acme },
            _ => bail!("the server's answer is not its status"),
        },
    })
}

/// `cert status`: the rows its filters keep, as a table, JSON, or a monitoring plugin's report
/// (as text, or JSON with `--json`).
async fn cert_status(
    at: (&Path, &StoreAt),
    args: CertStatusArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let filter = args.filter();
    if args.check {
        let read = async { anyhow::Ok((server_for_check(at.0).await?, read_certs(at).await?)) };
        let report = match read.await {
            Ok((server, certs)) => {
                let kept: Vec<CertView> = certs.into_iter().filter(|c| filter.keep(c)).collect();
                cert_check::check(&kept, args.thresholds(), server)
            }
            Err(e) => cert_check::unknown(&e),
        };
        print!("{}", render::check_report(&report, json)?);
        return Ok(report.state.exit_code());
    }
    let certs: Vec<CertView> = read_certs(at)
        .await?
        .into_iter()
        .filter(|c| filter.keep(c))
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&certs)?);
    } else {
        print!("{}", render::certs_table(certs, args.wide));
    }
    Ok(ExitCode::SUCCESS)
}

/// `cache stats`: the running server's cache, with the counters of `domain` only when given.
async fn cache_stats(
    at: (&Path, &StoreAt),
    domain: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let Answer::CacheStats(mut stats) = execute(at, &AdminCommand::CacheStats).await? else {
        bail!("the server's answer is not the cache's counters");
    };
    if let Some(domain) = domain {
        let domain = porter_store::DomainName::parse(domain).map_err(StoreError::from)?;
        stats.sites.retain(|s| s.domain == domain.as_str());
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{}", render::cache_stats(stats));
    }
    Ok(())
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
        cache: None,
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
