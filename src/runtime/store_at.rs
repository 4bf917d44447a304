//! Which store Porter uses: the embedded one in the data dir (the default), another sled
//! directory, or an etcd cluster a fleet of edges shares (`--store etcd://...`), with etcd's
//! TLS and credentials. Every command takes the same flags.

use anyhow::Context as _;
use porter_store::{EtcdOptions, EtcdStore, SledOptions, SledStore, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Directory of the embedded database inside the data dir.
pub(crate) const STORE_DIR: &str = "store";

/// The store flags, global to every command.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StoreArgs {
    /// The store: `etcd://HOST:PORT[,HOST:PORT...][/prefix]` for a fleet of edges sharing one
    /// etcd, or `sled:PATH`; the embedded store in DATA_DIR/store when not given.
    #[arg(long, global = true, env = "PORTER_STORE")]
    store: Option<String>,
    /// CA certificate (PEM) that signed the etcd members' certificates: talk TLS to etcd.
    #[arg(long, global = true, env = "PORTER_ETCD_CA")]
    etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd, with --etcd-key.
    #[arg(long, global = true, env = "PORTER_ETCD_CERT", requires = "etcd_key")]
    etcd_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "PORTER_ETCD_KEY", requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// etcd user, when etcd's authentication is on; the password is read from the environment
    /// variable PORTER_ETCD_PASSWORD (never from the command line, where `ps` shows it).
    #[arg(long, global = true, env = "PORTER_ETCD_USER")]
    etcd_user: Option<String>,
    /// How long a node's locks (the ACME orders, OCSP fetches and key rotations it is doing)
    /// outlive the node, or its link to etcd, before another node takes the work over.
    #[arg(long, global = true, env = "PORTER_ETCD_LEASE_TTL", default_value = "10s", value_parser = crate::runtime::duration::duration)]
    etcd_lease_ttl: Duration,
    /// This node's name in a fleet (an etcd store; the host name when not given): apps added
    /// through it run on it, and the other nodes forward their requests to it.
    #[arg(long, global = true, env = "PORTER_NODE")]
    node: Option<String>,
}

/// A store's location.
#[derive(Debug, Clone)]
pub(crate) enum StoreAt {
    Sled(PathBuf),
    /// With this process's node name (set by [`StoreArgs::location`]).
    Etcd(EtcdOptions, Option<String>),
}

impl StoreArgs {
    /// This node's name when the store is shared by a fleet (`None` on the embedded store).
    fn node_name(&self, at: &StoreAt) -> anyhow::Result<Option<String>> {
        if at.sled_dir().is_some() {
            anyhow::ensure!(
                self.node.is_none(),
                "--node is for a fleet on etcd: give --store etcd://..."
            );
            return Ok(None);
        }
        let name = match &self.node {
            Some(name) => name.clone(),
            None => nix::unistd::gethostname()
                .context("cannot read the host name: give --node NAME")?
                .to_string_lossy()
                .to_lowercase(),
        };
        porter_store::Node::check_name(&name)
            .with_context(|| "the node name (--node, by default the host name)")?;
        Ok(Some(name))
    }

    /// The store the flags name (the embedded one in `data_dir` when none).
    pub(crate) fn location(&self, data_dir: &Path) -> anyhow::Result<StoreAt> {
        let mut at = match &self.store {
            None => StoreAt::Sled(data_dir.join(STORE_DIR)),
            Some(text) => self.parse(text)?,
        };
        let name = self.node_name(&at)?;
        if let StoreAt::Etcd(_, node) = &mut at {
            *node = name;
        }
        if !matches!(at, StoreAt::Etcd(..))
            && (self.etcd_ca.is_some() || self.etcd_cert.is_some() || self.etcd_user.is_some())
        {
            anyhow::bail!("--etcd-ca, --etcd-cert and --etcd-user are for an etcd store: give --store etcd://...");
        }
        Ok(at)
    }

    /// `sled:PATH` or `etcd://...` (with the etcd flags applied).
    pub(crate) fn parse(&self, text: &str) -> anyhow::Result<StoreAt> {
        if let Some(path) = text.strip_prefix("sled:") {
            anyhow::ensure!(
                !path.is_empty(),
                "sled: needs a directory, as sled:/var/lib/porter/store"
            );
            return Ok(StoreAt::Sled(PathBuf::from(path)));
        }
        let mut options = EtcdOptions::parse(text)?;
        let read = |path: &Path| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        if let Some(ca) = &self.etcd_ca {
            options.ca = Some(read(ca)?);
        }
        if let (Some(cert), Some(key)) = (&self.etcd_cert, &self.etcd_key) {
            options.identity = Some((read(cert)?, read(key)?));
        }
        if let Some(user) = &self.etcd_user {
            let password = std::env::var("PORTER_ETCD_PASSWORD")
                .context("--etcd-user needs the password in PORTER_ETCD_PASSWORD")?;
            options.user = Some((user.clone(), password));
        }
        options.lease_ttl = self.etcd_lease_ttl;
        Ok(StoreAt::Etcd(options, None))
    }
}

impl StoreAt {
    /// This process's node name in a fleet (`None` on the embedded store).
    pub(crate) fn node(&self) -> Option<&str> {
        match self {
            StoreAt::Etcd(_, node) => node.as_deref(),
            StoreAt::Sled(_) => None,
        }
    }

    /// The embedded store's directory, if it is one.
    pub(crate) fn sled_dir(&self) -> Option<&Path> {
        match self {
            StoreAt::Sled(dir) => Some(dir),
            StoreAt::Etcd(..) => None,
        }
    }

    /// Opens it for as long as the store is held; operations failing after `deadline`.
    pub(crate) async fn open(&self, deadline: Duration) -> anyhow::Result<Arc<dyn Store>> {
        self.open_until(deadline, CancellationToken::new()).await
    }

    /// [`StoreAt::open`], with the store's background work (etcd's watch and lease; the
    /// embedded store has none) stopping when `stop` is cancelled.
    pub(crate) async fn open_until(
        &self,
        deadline: Duration,
        stop: CancellationToken,
    ) -> anyhow::Result<Arc<dyn Store>> {
        Ok(match self {
            StoreAt::Sled(_) => Arc::new(self.open_sled(SledOptions {
                deadline,
                ..SledOptions::default()
            })?),
            StoreAt::Etcd(options, _) => Arc::new(self.open_etcd(options, deadline, stop).await?),
        })
    }

    /// Opens the embedded store with `options`.
    pub(crate) fn open_sled(&self, options: SledOptions) -> anyhow::Result<SledStore> {
        let dir = self.sled_dir().expect("a sled store");
        SledStore::open_with(dir, options)
            .with_context(|| format!("cannot open the store in {}", dir.display()))
    }

    async fn open_etcd(
        &self,
        options: &EtcdOptions,
        deadline: Duration,
        stop: CancellationToken,
    ) -> anyhow::Result<EtcdStore> {
        let mut options = options.clone();
        options.deadline = deadline;
        EtcdStore::open(options, stop)
            .await
            .with_context(|| format!("cannot open the store at {self}"))
    }
}

/// `sled:PATH` or the etcd address (never a credential).
impl std::fmt::Display for StoreAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreAt::Sled(dir) => write!(f, "sled:{}", dir.display()),
            StoreAt::Etcd(options, _) => write!(f, "{options}"),
        }
    }
}
