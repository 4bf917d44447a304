//! The etcd backend against a real etcd (Debian's `etcd-server`, started here on loopback
//! ports): the conformance suite every backend passes, then what only a shared store has:
//! changes and locks across nodes, and etcd going away and coming back.

#[path = "support/etcd.rs"]
mod etcd;

use etcd::Etcd;
use porter_store::{
    Change, DomainName, EtcdOptions, EtcdStore, Site, Store, StoreError, Target, Upstream,
};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn site(domain: &str) -> Site {
    Site {
        domain: DomainName::parse(domain).unwrap(),
        target: Target::Upstream(Upstream::parse("127.0.0.1:1").unwrap()),
        acme: true,
        hsts_max_age: Some(porter_store::HSTS_ONE_YEAR),
        features: Default::default(),
        challenge: None,
        needs_cert_since: None,
        balancing: None,
    }
}

async fn open(etcd: &Etcd, prefix: &str, deadline: Duration) -> EtcdStore {
    let mut options = EtcdOptions::parse(&etcd.address(prefix)).unwrap();
    options.deadline = deadline;
    options.lease_ttl = Duration::from_secs(2);
    EtcdStore::open(options, CancellationToken::new())
        .await
        .unwrap()
}

/// Waits up to `within` for `check` to hold.
async fn until<F: std::future::Future<Output = bool>>(
    within: Duration,
    what: &str,
    check: impl Fn() -> F,
) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two nodes on one prefix: what one writes, the other announces; a lock one holds, the other
/// cannot take until it is given back; another prefix sees nothing of either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_changes_and_locks() {
    let etcd = Etcd::start();
    let (a, b) = (
        open(&etcd, "fleet", Duration::from_secs(5)).await,
        open(&etcd, "fleet", Duration::from_secs(5)).await,
    );
    let other = open(&etcd, "fleet-other", Duration::from_secs(5)).await;
    let (mut heard, mut elsewhere) = (b.subscribe(), other.subscribe());
    // 16 writers on each node at once.
    let mut writers = tokio::task::JoinSet::new();
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    for w in 0..32 {
        let node = if w % 2 == 0 { a.clone() } else { b.clone() };
        writers.spawn(async move { node.add_site(site(&format!("n{w}.test"))).await.unwrap() });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    assert_eq!(a.sites().await.unwrap().len(), 32);
    let mut announced = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while announced.len() < 32 {
        assert!(
            Instant::now() < deadline,
            "B heard {} of 32",
            announced.len()
        );
        match tokio::time::timeout(Duration::from_secs(5), heard.recv()).await {
            Ok(Ok(Change::Site(domain))) => {
                announced.insert(domain);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(matches!(
        elsewhere.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Empty)
    ));
    assert!(other.sites().await.unwrap().is_empty());
    // Adding a site both nodes race for: exactly one wins.
    let (x, y) = tokio::join!(a.add_site(site("race.test")), b.add_site(site("race.test")));
    assert!(x.is_ok() ^ y.is_ok(), "{x:?} {y:?}");

    let held = a.try_lock("acme/n1.test").await.unwrap().expect("free");
    assert!(
        b.try_lock("acme/n1.test").await.unwrap().is_none(),
        "taken twice"
    );
    assert!(
        b.try_lock("acme/n2.test").await.unwrap().is_some(),
        "another name is free"
    );
    drop(held);
    until(
        Duration::from_secs(5),
        "B takes the lock A gave back",
        || async { b.try_lock("acme/n1.test").await.unwrap().is_some() },
    )
    .await;
}

/// etcd stops: operations fail within their deadline and say so, the store reports since when
/// it is unreachable, a lock whose lease cannot be renewed counts as lost (and another node
/// can take it once etcd let the lease go). etcd returns: everything works again, and a change
/// made then is announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_away_and_back() {
    let mut etcd = Etcd::start();
    let a = open(&etcd, "outage", Duration::from_secs(2)).await;
    a.add_site(site("before.test")).await.unwrap();
    let mut lock = a.try_lock("acme/before.test").await.unwrap().unwrap();
    let mut changes = a.subscribe();
    etcd.stop();
    let started = Instant::now();
    let failed = a.sites().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            failed,
            Err(StoreError::EtcdUnreachable { .. } | StoreError::Stalled { .. })
        ),
        "{failed:?}"
    );
    let health = a.health();
    assert!(health.unreachable_since.is_some(), "{health:?}");
    assert!(health.failure.unwrap().contains("does not answer"));
    tokio::time::timeout(Duration::from_secs(10), lock.lost())
        .await
        .expect("a lock whose lease cannot be renewed is lost");
    etcd.resume();
    until(Duration::from_secs(15), "writes work again", || async {
        a.add_site(site("after.test")).await.is_ok()
    })
    .await;
    assert_eq!(a.sites().await.unwrap().len(), 2);
    assert_eq!(a.health().unreachable_since, None);
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Change::Site(d)) = changes.recv().await {
                return d;
            }
        }
    })
    .await
    .expect("the change made after the return is announced");
    assert_eq!(heard.as_str(), "after.test");
    // The lease was replaced: locks can be taken again.
    until(
        Duration::from_secs(10),
        "a lock can be taken again",
        || async { matches!(a.try_lock("acme/after.test").await, Ok(Some(_))) },
    )
    .await;
}

/// The store's work stops with the caller's token (a server shutting down): the lease is
/// revoked, so another node takes its locks at once (not a time to live later), and the watch
/// ends, so etcd has no watcher of it left and changes are no longer announced; reads and
/// writes still work, without waiting for an announcement. Dropping a store does the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_and_the_lease_stop_with_the_token_or_the_store() {
    let etcd = Etcd::start();
    let watchers = |count: f64| {
        let etcd = &etcd;
        move || async move { etcd.metric("etcd_debugging_mvcc_watcher_total") == Some(count) }
    };
    let stop = CancellationToken::new();
    let mut options = EtcdOptions::parse(&etcd.address("stopping")).unwrap();
    options.deadline = Duration::from_secs(5);
    // Far longer than the waits below: a lease left to expire would fail them.
    options.lease_ttl = Duration::from_secs(30);
    let a = EtcdStore::open(options, stop.clone()).await.unwrap();
    let b = open(&etcd, "stopping", Duration::from_secs(5)).await;
    until(
        Duration::from_secs(5),
        "both watches are on etcd",
        watchers(2.0),
    )
    .await;
    let mut lock = a.try_lock("acme/a.test").await.unwrap().expect("free");
    let mut heard = a.subscribe();
    b.add_site(site("before.test")).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), heard.recv()).await {
        Ok(Ok(Change::Site(d))) => assert_eq!(d.as_str(), "before.test"),
        other => panic!("A did not hear B's write: {other:?}"),
    }
    assert!(
        b.try_lock("acme/a.test").await.unwrap().is_none(),
        "A holds it"
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), lock.lost())
        .await
        .expect("A's locks are lost once its work stops");
    until(
        Duration::from_secs(5),
        "B takes the lock of A's revoked lease",
        || async { b.try_lock("acme/a.test").await.unwrap().is_some() },
    )
    .await;
    assert!(
        matches!(
            a.try_lock("acme/other.test").await,
            Err(StoreError::Stopped)
        ),
        "A takes no more locks"
    );
    until(
        Duration::from_secs(5),
        "A's watch is gone from etcd",
        watchers(1.0),
    )
    .await;
    b.add_site(site("after.test")).await.unwrap();
    let started = Instant::now();
    a.add_site(site("own.test")).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a write waits for no announcement once nothing announces: {:?}",
        started.elapsed()
    );
    assert_eq!(a.sites().await.unwrap().len(), 3, "A still reads");
    assert!(
        matches!(
            heard.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Empty)
        ),
        "no change announced after the stop"
    );

    drop(b);
    until(
        Duration::from_secs(5),
        "a dropped store's watch is gone",
        watchers(0.0),
    )
    .await;
}

/// A prefix written by another schema is refused, saying which.
#[tokio::test]
async fn another_schema_is_refused() {
    let etcd = Etcd::start();
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    client
        .put("/future/v1/meta/schema_version", "2", None)
        .await
        .unwrap();
    let options = EtcdOptions::parse(&etcd.address("future")).unwrap();
    match EtcdStore::open(options, CancellationToken::new()).await {
        Err(StoreError::SchemaMismatch {
            found: 2,
            expected: 1,
            ..
        }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Nothing listens: opening says so, in time.
    let mut options = EtcdOptions::parse("etcd://127.0.0.1:1/x").unwrap();
    options.deadline = Duration::from_secs(2);
    let started = Instant::now();
    let refused = EtcdStore::open(options, CancellationToken::new()).await;
    assert!(started.elapsed() < Duration::from_secs(4));
    match refused {
        Err(e @ (StoreError::EtcdConnect { .. } | StoreError::EtcdUnreachable { .. })) => {
            assert!(e.to_string().contains("127.0.0.1:1"), "{e}")
        }
        Err(StoreError::Stalled { .. }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// A node whose watch comes back to find the history it missed compacted away is told to
/// read everything again (never left with what it had): etcd stops, comes back where the node
/// cannot see it, takes writes and a compaction there, then returns to its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_watch_makes_subscribers_read_everything() {
    let mut etcd = Etcd::start();
    let port = etcd.client_port();
    let node = open(&etcd, "compacted", Duration::from_secs(2)).await;
    let mut changes = node.subscribe();
    node.add_site(site("seen.test")).await.unwrap();
    assert!(matches!(changes.recv().await, Ok(Change::Site(_))));
    etcd.stop();
    etcd.resume_elsewhere();
    let mut other = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    for n in 0..5 {
        let key = format!("/compacted/v1/sites/missed{n}.test");
        let record = serde_json::to_string(&site(&format!("missed{n}.test"))).unwrap();
        other.put(key, record, None).await.unwrap();
    }
    let revision = other
        .get("/compacted/v1/sites/missed4.test", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    other.compact(revision, None).await.unwrap();
    drop(other);
    etcd.move_to(port);
    let heard = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match changes.recv().await {
                Ok(Change::Everything) => return true,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "no Change::Everything after a compacted gap");
    assert_eq!(
        node.sites().await.unwrap().len(),
        6,
        "the full read sees what was missed"
    );
    // And the watch goes on from there.
    node.add_site(site("after.test")).await.unwrap();
    assert!(matches!(changes.try_recv(), Ok(Change::Site(d)) if d.as_str() == "after.test"));
}

/// Opens the store at `options` once etcd answers (a TLS member is up a little after it
/// listens).
async fn open_when_up(options: EtcdOptions) -> Result<EtcdStore, StoreError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match EtcdStore::open(options.clone(), CancellationToken::new()).await {
            Err(e) if Instant::now() < deadline && e.to_string().contains("does not answer") => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => return other,
        }
    }
}

/// TLS to etcd, with the client certificate it asks for: the store works (writes, watch,
/// locks); without the certificate, or trusting another CA, opening fails and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_tls_with_a_client_certificate() {
    let (etcd, files) = Etcd::start_tls();
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    let mut options = EtcdOptions::parse(&etcd.address("tls")).unwrap();
    options.deadline = Duration::from_secs(3);
    options.ca = Some(read(&files.ca));
    options.identity = Some((read(&files.client_cert), read(&files.client_key)));
    let store = open_when_up(options.clone()).await.unwrap();
    let mut changes = store.subscribe();
    store.add_site(site("tls.test")).await.unwrap();
    assert!(matches!(changes.try_recv(), Ok(Change::Site(_))));
    assert!(store.try_lock("acme/tls.test").await.unwrap().is_some());

    let mut anonymous = options.clone();
    anonymous.identity = None;
    let refused = EtcdStore::open(anonymous, CancellationToken::new()).await;
    assert!(refused.is_err(), "no client certificate");
    let mut stranger = options.clone();
    stranger.ca = Some(read(&files.client_cert));
    let refused = EtcdStore::open(stranger, CancellationToken::new()).await;
    assert!(refused.is_err(), "a server certificate of an untrusted CA");
}

/// etcd's authentication on: the right user and password work, a wrong password or none is
/// refused with etcd's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_with_a_user_and_password() {
    let etcd = Etcd::start();
    let mut admin = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    admin.user_add("root", "sesame", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();
    let mut options = EtcdOptions::parse(&etcd.address("auth")).unwrap();
    options.deadline = Duration::from_secs(3);
    options.user = Some(("root".into(), "sesame".into()));
    let store = EtcdStore::open(options.clone(), CancellationToken::new())
        .await
        .unwrap();
    let mut changes = store.subscribe();
    store.add_site(site("auth.test")).await.unwrap();
    assert!(matches!(changes.try_recv(), Ok(Change::Site(_))));
    assert!(
        !format!("{options:?}").contains("sesame"),
        "no password in debug output"
    );

    options.user = Some(("root".into(), "wrong".into()));
    let wrong = EtcdStore::open(options.clone(), CancellationToken::new()).await;
    assert!(
        matches!(&wrong, Err(e) if e.to_string().contains("authentication failed")),
        "{:?}",
        wrong.map(|_| ())
    );
    options.user = None;
    let anonymous = EtcdStore::open(options, CancellationToken::new()).await;
    assert!(anonymous.is_err(), "no credentials");
}
