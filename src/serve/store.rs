//! The store `porter serve` runs on: the embedded one, handed from server to server and waited
//! for while a CLI command holds it; or etcd, open to every node of a fleet at once, which this
//! server joins as a node.

use crate::proxy::Fleet;
use crate::runtime::store_at::StoreAt;
use crate::serve::config::ServeArgs;
use anyhow::Context as _;
use porter_store::{SledOptions, SledStore, Store, StoreError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a successor waits for the store its predecessor is letting go of, and how long
/// a predecessor waits to take it back from a successor that gave up.
pub(super) const STORE_HANDOVER_WAIT: Duration = Duration::from_secs(30);
/// How long a server waits for a CLI command that has the store open to let go of it.
const STORE_CLI_WAIT: Duration = Duration::from_secs(30);

/// The open store, and the embedded one again by its type (handed over at a restart).
pub(super) struct Opened {
    pub(super) store: Arc<dyn Store>,
    pub(super) sled: Option<Arc<SledStore>>,
}

/// Opens the store `store_at` names (the predecessor's, when `taking_over`); its background
/// work stops with `shutdown`.
pub(super) async fn open(
    store_at: &StoreAt,
    args: &ServeArgs,
    taking_over: bool,
    shutdown: &CancellationToken,
) -> anyhow::Result<Opened> {
    Ok(match store_at {
        StoreAt::Sled(_) => {
            let sled = open_sled(store_at, args, taking_over).await?;
            Opened {
                store: sled.clone(),
                sled: Some(sled),
            }
        }
        StoreAt::Etcd(..) => Opened {
            store: store_at
                .open_until(args.store_deadline, shutdown.clone())
                .await?,
            sled: None,
        },
    })
}

/// Opens the embedded store; a successor waits while its predecessor lets go of it, and any
/// server while a CLI command run without a server finishes with it (CLI commands started
/// from now on step aside: see [`crate::serve::instance::Starting`]).
async fn open_sled(
    store_at: &StoreAt,
    args: &ServeArgs,
    taking_over: bool,
) -> anyhow::Result<Arc<SledStore>> {
    let options = |lock_wait| SledOptions {
        deadline: args.store_deadline,
        stall_while: args.test_store_stall_file.clone(),
        lock_wait,
    };
    if taking_over {
        return Ok(Arc::new(store_at.open_sled(options(STORE_HANDOVER_WAIT))?));
    }
    match store_at.open_sled(options(Duration::ZERO)) {
        Err(e)
            if e.chain()
                .any(|c| matches!(c.downcast_ref(), Some(StoreError::Locked(_)))) =>
        {
            tracing::info!(
                within = ?STORE_CLI_WAIT,
                "the store is held by another process (a CLI command run while no server was up?): waiting for it"
            );
            let (at, options) = (store_at.clone(), options(STORE_CLI_WAIT));
            let opened = tokio::task::spawn_blocking(move || at.open_sled(options))
                .await
                .context("opening the store")?;
            Ok(Arc::new(opened.context(
                "another process kept the store: is a `porter` command stuck, or another server running on a copy of this data dir?",
            )?))
        }
        other => Ok(Arc::new(other?)),
    }
}

/// On a fleet's store: records this server as its node (in its predecessor's place when
/// `taking_over`), reached by the others at `--node-addr` or its `--http` address, and reads
/// the secret the nodes share. `None` on the embedded store.
pub(super) async fn join_fleet(
    store: &dyn Store,
    store_at: &StoreAt,
    args: &ServeArgs,
    http_addr: SocketAddr,
    taking_over: bool,
) -> anyhow::Result<Option<Arc<Fleet>>> {
    let Some(name) = store_at.node() else {
        return Ok(None);
    };
    let addr = args.node_addr.unwrap_or(http_addr);
    anyhow::ensure!(
        !addr.ip().is_unspecified(),
        "--http listens on every address ({addr}): give --node-addr, the address the other nodes reach this one at"
    );
    let node = porter_store::Node {
        name: name.to_owned(),
        addr: addr.to_string(),
        pid: std::process::id(),
        started_at: porter_store::unix_now(),
    };
    store
        .join(node, taking_over)
        .await
        .context("cannot join the fleet")?;
    let mut proposed = vec![0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut proposed)
        .map_err(|_| anyhow::anyhow!("the system RNG failed"))?;
    let secret = store
        .fleet_secret(porter_store::SecretBytes::new(proposed))
        .await
        .context("cannot read the fleet's secret")?
        .context("the store has no fleet")?;
    tracing::info!(node = name, %addr, "joined the fleet");
    Ok(Some(Arc::new(Fleet::new(name.to_owned(), &secret))))
}
