//! The conformance suite every store backend must pass, run here on the sled backend and on a
//! real etcd, plus the sled backend's own durability and schema checks.

use porter_store::{
    AcmeAccount, AcmeRequest, AcmeState, App, AppId, CertRecord, CertSource, Change, DomainName,
    Http01Challenge, InvalidInput, OcspRecord, Recover as _, SecretText, Site, SledOptions,
    SledStore, Store, StoreError, Target, TlsAlpnChallenge, Upstream,
};
use rcgen::{CertificateParams, KeyPair};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn site(domain: &str, upstream: &str) -> Site {
    Site {
        domain: DomainName::parse(domain).unwrap(),
        target: Target::Upstream(Upstream::parse(upstream).unwrap()),
        acme: true,
        hsts_max_age: Some(porter_store::HSTS_ONE_YEAR),
        features: Default::default(),
        challenge: None,
        needs_cert_since: None,
        balancing: None,
    }
}

/// A self-signed certificate for `names` and its key, both PEM.
fn self_signed(names: &[&str], expired: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn cert_for(domain: &str) -> CertRecord {
    let (chain, key) = self_signed(&[domain], false);
    CertRecord::from_pem(
        &DomainName::parse(domain).unwrap(),
        chain.as_bytes(),
        key.as_bytes(),
        now(),
        CertSource::Imported,
    )
    .unwrap()
}

/// The backend-neutral suite: `fresh` gives an empty store each time it is called.
async fn suite<S: Store, F: std::future::Future<Output = S>>(fresh: impl Fn() -> F) {
    sites_add_list_remove(fresh().await).await;
    certs_need_their_site(fresh().await).await;
    removing_a_site_removes_its_cert(fresh().await).await;
    certs_come_in_pages(fresh().await).await;
    changes_are_announced(fresh().await).await;
    acme_records_follow_their_site(fresh().await).await;
    sites_update_in_place(fresh().await).await;
    ticket_keys_round_trip(fresh().await).await;
    apps_and_the_sites_that_use_them(fresh().await).await;
    ocsp_records_follow_their_site(fresh().await).await;
    concurrent_writers_all_land(fresh().await).await;
    acme_requests_swap_only_what_was_read(fresh().await).await;
    dns_zones_add_replace_remove(fresh().await).await;
    on_demand_rules_add_and_remove(fresh().await).await;
    locks_are_taken_and_given_back(fresh().await).await;
}

/// A lock is held until it is dropped; on a store one process opens it is always granted.
async fn locks_are_taken_and_given_back(store: impl Store) {
    let held = store.try_lock("acme/l.test").await.unwrap();
    let held = held.expect("a free lock is granted");
    assert!(!held.is_lost());
    drop(held);
    let again = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Some(lock) = store.try_lock("acme/l.test").await.unwrap() {
                return lock;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a dropped lock is given back");
    assert!(!again.is_lost());
}

async fn on_demand_rules_add_and_remove(store: impl Store) {
    let name = |n: &str| DomainName::parse(n).unwrap();
    let mut changes = store.subscribe();
    store.allow_on_demand(name("*.b.test")).await.unwrap();
    store.allow_on_demand(name("a.test")).await.unwrap();
    store.allow_on_demand(name("a.test")).await.unwrap();
    assert_eq!(changes.try_recv().unwrap(), Change::OnDemandRules);
    assert_eq!(
        store.on_demand_rules().await.unwrap(),
        vec![name("*.b.test"), name("a.test")]
    );
    assert!(matches!(
        store.allow_on_demand(name("test")).await,
        Err(StoreError::Invalid(_))
    ));
    store.disallow_on_demand(&name("a.test")).await.unwrap();
    assert!(matches!(
        store.disallow_on_demand(&name("a.test")).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.on_demand_rules().await.unwrap(),
        vec![name("*.b.test")]
    );
}

async fn dns_zones_add_replace_remove(store: impl Store) {
    let apex = DomainName::parse("example.test").unwrap();
    let zone = porter_store::DnsZone {
        zone: apex.clone(),
        server: "127.0.0.1:5353".parse().unwrap(),
        tsig_name: "porter".into(),
        tsig_algorithm: porter_store::TsigAlgorithm::HmacSha256,
        tsig_key: porter_store::SecretBytes::new(vec![9; 32]),
    };
    let mut changes = store.subscribe();
    store.put_dns_zone(zone.clone()).await.unwrap();
    assert_eq!(changes.try_recv().unwrap(), Change::DnsZone(apex.clone()));
    let mut moved = zone.clone();
    moved.server = "127.0.0.2:53".parse().unwrap();
    store.put_dns_zone(moved.clone()).await.unwrap();
    assert_eq!(store.dns_zones().await.unwrap(), vec![moved]);
    // A key too short to be real is refused, and changes nothing.
    let mut short = zone.clone();
    short.tsig_key = porter_store::SecretBytes::new(vec![1; 4]);
    assert!(matches!(
        store.put_dns_zone(short).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.dns_zones().await.unwrap().len(), 1);
    store.remove_dns_zone(&apex).await.unwrap();
    assert!(store.dns_zones().await.unwrap().is_empty());
    assert!(matches!(
        store.remove_dns_zone(&apex).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A request is replaced only when it is still what the writer read: a request made meanwhile
/// is never lost.
async fn acme_requests_swap_only_what_was_read(store: impl Store) {
    let domain = DomainName::parse("q.test").unwrap();
    let asked = AcmeRequest {
        renew: Some(10),
        revoke: vec![vec![1, 2, 3]],
        requested_at: 10,
    };
    let missing = store
        .swap_acme_request(&domain, None, Some(asked.clone()))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    store.add_site(site("q.test", "127.0.0.1:1")).await.unwrap();
    let mut changes = store.subscribe();
    assert!(store
        .swap_acme_request(&domain, None, Some(asked.clone()))
        .await
        .unwrap());
    assert_eq!(changes.try_recv().unwrap(), Change::Acme(domain.clone()));
    assert_eq!(
        store.acme_request(&domain).await.unwrap(),
        Some(asked.clone())
    );
    let again = AcmeRequest {
        requested_at: 11,
        renew: Some(11),
        ..asked.clone()
    };
    assert!(
        !store
            .swap_acme_request(&domain, None, Some(again.clone()))
            .await
            .unwrap(),
        "not what is there"
    );
    assert!(store
        .swap_acme_request(&domain, Some(&asked), Some(again.clone()))
        .await
        .unwrap());
    assert!(
        !store
            .swap_acme_request(&domain, Some(&asked), None)
            .await
            .unwrap(),
        "a stale read"
    );
    assert_eq!(
        store.acme_requests().await.unwrap(),
        vec![(domain.clone(), again.clone())]
    );
    assert!(store
        .swap_acme_request(&domain, Some(&again), None)
        .await
        .unwrap());
    assert_eq!(store.acme_request(&domain).await.unwrap(), None);
    store
        .swap_acme_request(&domain, None, Some(asked))
        .await
        .unwrap();
    store.remove_site(&domain).await.unwrap();
    assert_eq!(
        store.acme_requests().await.unwrap(),
        vec![],
        "removed with its site"
    );
}

/// 64 writers at once, as a panel importing a zone: every write lands, none hangs, and each
/// is announced.
async fn concurrent_writers_all_land(store: impl Store) {
    const WRITERS: usize = 64;
    const EACH: usize = 12;
    let store = std::sync::Arc::new(store);
    let mut changes = store.subscribe();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..EACH {
                let name = format!("w{w}-{i}.test");
                store.add_site(site(&name, "127.0.0.1:1")).await.unwrap();
                if i % 2 == 1 {
                    let domain = DomainName::parse(&name).unwrap();
                    store.remove_site(&domain).await.unwrap();
                }
            }
        });
    }
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(done) = tasks.join_next().await {
            done.expect("a writer failed");
        }
    })
    .await
    .expect("64 concurrent writers hung");
    assert_eq!(store.sites().await.unwrap().len(), WRITERS * EACH / 2);
    let mut announced = 0;
    while let Ok(change) = changes.try_recv() {
        assert!(matches!(change, Change::Site(_)), "{change:?}");
        announced += 1;
    }
    assert_eq!(announced, WRITERS * EACH * 3 / 2);
}

async fn ocsp_records_follow_their_site(store: impl Store) {
    let record = |serial: &str| OcspRecord {
        serial: serial.into(),
        url: None,
        response: None,
        next_refresh: 7,
        attempts: 1,
        last_error: Some("responder down".into()),
    };
    let (a, b) = (
        DomainName::parse("o1.test").unwrap(),
        DomainName::parse("o2.test").unwrap(),
    );
    let orphan = store.put_ocsp(&a, record("01")).await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");
    store
        .add_site(site("o2.test", "127.0.0.1:1"))
        .await
        .unwrap();
    store
        .add_site(site("o1.test", "127.0.0.1:1"))
        .await
        .unwrap();
    let mut changes = store.subscribe();
    store.put_ocsp(&b, record("02")).await.unwrap();
    store.put_ocsp(&a, record("01")).await.unwrap();
    assert_eq!(changes.try_recv().unwrap(), Change::Ocsp(b.clone()));
    assert_eq!(store.ocsp(&a).await.unwrap(), Some(record("01")));
    assert_eq!(
        store.ocsp_records().await.unwrap(),
        vec![(a.clone(), record("01")), (b.clone(), record("02"))],
        "every record, ordered by domain"
    );
    store.remove_site(&a).await.unwrap();
    assert_eq!(store.ocsp(&a).await.unwrap(), None);
    assert_eq!(store.ocsp_records().await.unwrap(), vec![(b, record("02"))]);
}

async fn apps_and_the_sites_that_use_them(store: impl Store) {
    let id = AppId::parse("shop").unwrap();
    let app = App {
        env: vec![("X".into(), "1".into())],
        ..App::new(
            id.clone(),
            ["python3", "-m", "http.server", "{port}"]
                .map(String::from)
                .to_vec(),
        )
    };
    let on_app = Site {
        target: Target::App(id.clone()),
        ..site("shop.test", "127.0.0.1:1")
    };
    let orphan = store.add_site(on_app.clone()).await;
    assert!(
        matches!(orphan, Err(StoreError::NotFound(_))),
        "a site needs its app: {orphan:?}"
    );
    assert!(
        store
            .add_app(App {
                command: vec![],
                ..app.clone()
            })
            .await
            .is_err(),
        "an empty command is refused"
    );
    store.add_app(app.clone()).await.unwrap();
    assert!(matches!(
        store.add_app(app.clone()).await,
        Err(StoreError::AlreadyExists(_))
    ));
    store.add_site(on_app.clone()).await.unwrap();
    let in_use = store.remove_app(&id).await;
    assert!(matches!(in_use, Err(StoreError::InUse(_))), "{in_use:?}");
    let changed = App {
        idle_timeout: 0,
        ..app.clone()
    };
    store.update_app(changed.clone()).await.unwrap();
    assert_eq!(store.app(&id).await.unwrap(), Some(changed));
    store.remove_site(&on_app.domain).await.unwrap();
    store.remove_app(&id).await.unwrap();
    assert!(store.apps().await.unwrap().is_empty());
    assert!(
        AppId::parse("Bad Id").is_err()
            && AppId::parse("-x").is_err()
            && AppId::parse("ok_1-2").is_ok()
    );
}

async fn sites_update_in_place(store: impl Store) {
    let mut changed = site("u.test", "127.0.0.1:2");
    let missing = store.update_site(changed.clone()).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    store.add_site(site("u.test", "127.0.0.1:1")).await.unwrap();
    changed.hsts_max_age = Some(0);
    changed.features = porter_store::Features {
        compress: true,
        canonical: Some(porter_store::Canonical::Apex),
        redirects: vec![porter_store::Redirect::parse("/old/* /new/ 308").unwrap()],
        basic_auth: vec![porter_store::Credential::parse("alice:$2y$10$x", "/admin").unwrap()],
        allow: vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ],
        deny: vec!["10.1.0.0/16".parse().unwrap()],
        error_pages: [(502, "<h1>down</h1>".to_owned())].into(),
        wp_login_limit: Some(10),
        waf: Some(porter_store::WafSettings {
            paranoia: 2,
            exclude: vec![
                porter_store::WafExclusion::Id(942100),
                porter_store::WafExclusion::Tag("attack-rce".into()),
            ],
            ..porter_store::WafSettings::new(porter_store::WafMode::Block)
        }),
        cache: Some(porter_store::CacheSettings {
            default_ttl: 300,
            stale_if_error: 86_400,
            bypass_paths: vec!["/admin/".into()],
            bypass_cookies: vec!["session".into()],
            max_object: Some(8 << 20),
            ..Default::default()
        }),
    };
    store.update_site(changed.clone()).await.unwrap();
    assert_eq!(
        store.site(&changed.domain).await.unwrap(),
        Some(changed.clone())
    );
    // Features the edge cannot serve are refused, and change nothing.
    let mut bad = changed.clone();
    bad.features.error_pages.insert(200, "ok".into());
    let mut unlimited = changed.clone();
    unlimited.features.wp_login_limit = Some(601);
    let mut paranoid = changed.clone();
    paranoid.features.waf.as_mut().unwrap().paranoia = 5;
    let mut uncacheable = changed.clone();
    uncacheable.features.cache.as_mut().unwrap().max_object = Some(2 << 30);
    for bad in [bad, unlimited, paranoid, uncacheable] {
        let refused = store.update_site(bad).await;
        assert!(
            matches!(refused, Err(StoreError::Invalid(_))),
            "{refused:?}"
        );
    }
    assert_eq!(store.site(&changed.domain).await.unwrap(), Some(changed));
}

async fn ticket_keys_round_trip(store: impl Store) {
    assert_eq!(store.ticket_keys().await.unwrap(), None);
    let mut changes = store.subscribe();
    let keys = porter_store::TicketKeys {
        keys: vec![porter_store::TicketKey {
            id: 7,
            secret: porter_store::SecretBytes::new(vec![42; 32]),
            created_at: 1,
        }],
    };
    store.put_ticket_keys(keys.clone()).await.unwrap();
    assert_eq!(store.ticket_keys().await.unwrap(), Some(keys.clone()));
    assert_eq!(changes.try_recv().unwrap(), Change::TicketKeys);
    assert!(
        !format!("{keys:?}").contains("42"),
        "Debug must not show key material"
    );
}

async fn acme_records_follow_their_site(store: impl Store) {
    let domain = DomainName::parse("h.test").unwrap();
    let state = AcmeState {
        attempts: 2,
        last_error: Some("boom".into()),
        ..AcmeState::default()
    };
    let orphan = store.put_acme_state(&domain, state.clone()).await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");
    store.add_site(site("h.test", "127.0.0.1:1")).await.unwrap();
    store.put_acme_state(&domain, state.clone()).await.unwrap();
    assert_eq!(store.acme_state(&domain).await.unwrap(), Some(state));

    let cert = CertRecord {
        source: CertSource::Acme,
        ..cert_for("h.test")
    };
    store
        .put_issued(cert.clone(), AcmeState::default())
        .await
        .unwrap();
    assert_eq!(store.cert(&domain).await.unwrap(), Some(cert));
    assert_eq!(
        store.acme_states().await.unwrap(),
        vec![(domain.clone(), AcmeState::default())]
    );

    let account = AcmeAccount {
        directory: "https://ca.test/dir".into(),
        credentials: SecretText::new("{\"secret\":1}".into()),
        contact: vec!["mailto:ops@h.test".into()],
    };
    assert!(store.accounts().await.unwrap().is_empty());
    store.put_account(account.clone()).await.unwrap();
    assert_eq!(
        store.account(&account.directory).await.unwrap(),
        Some(account.clone())
    );
    assert_eq!(store.accounts().await.unwrap(), vec![account.clone()]);
    assert!(
        !format!("{account:?}").contains("secret"),
        "Debug must not show credentials"
    );

    let http01 = Http01Challenge {
        token: "tok".into(),
        domain: domain.clone(),
        key_authorization: "tok.thumb".into(),
    };
    let mut changes = store.subscribe();
    store.put_http01(http01.clone()).await.unwrap();
    assert_eq!(
        changes.try_recv().unwrap(),
        Change::Challenges(domain.clone()),
        "the edge learns of challenges from the change feed"
    );
    let tls = TlsAlpnChallenge {
        domain: domain.clone(),
        cert: cert_for("h.test").chain[0].clone(),
        key: cert_for("h.test").key,
    };
    store.put_tls_alpn(tls.clone()).await.unwrap();
    assert_eq!(
        store.challenges().await.unwrap(),
        (vec![http01], vec![tls.clone()])
    );
    store.remove_challenges(&domain).await.unwrap();
    assert_eq!(store.challenges().await.unwrap(), (vec![], vec![]));

    // Removing the site takes everything of it along, in one transaction.
    store.put_tls_alpn(tls).await.unwrap();
    store.remove_site(&domain).await.unwrap();
    assert_eq!(store.acme_state(&domain).await.unwrap(), None);
    assert_eq!(store.challenges().await.unwrap(), (vec![], vec![]));
    assert_eq!(store.cert(&domain).await.unwrap(), None);
    assert_eq!(
        store.account(&account.directory).await.unwrap(),
        Some(account),
        "accounts outlive sites"
    );
}

async fn sites_add_list_remove(store: impl Store) {
    let a = site("a.test", "127.0.0.1:8080");
    store.add_site(a.clone()).await.unwrap();
    store.add_site(site("b.test", "/run/b.sock")).await.unwrap();
    assert_eq!(store.site(&a.domain).await.unwrap(), Some(a.clone()));
    let domains: Vec<String> = store
        .sites()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.domain.to_string())
        .collect();
    assert_eq!(domains, ["a.test", "b.test"]);

    let again = store.add_site(site("a.test", "127.0.0.1:9999")).await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists(_))),
        "{again:?}"
    );
    assert_eq!(
        store.site(&a.domain).await.unwrap(),
        Some(a.clone()),
        "a refused add changes nothing"
    );

    store.remove_site(&a.domain).await.unwrap();
    assert_eq!(store.site(&a.domain).await.unwrap(), None);
    assert!(matches!(
        store.remove_site(&a.domain).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn certs_need_their_site(store: impl Store) {
    let cert = cert_for("c.test");
    let orphan = store.put_cert(cert.clone()).await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");
    assert!(store.certs().await.unwrap().is_empty());

    store.add_site(site("c.test", "127.0.0.1:1")).await.unwrap();
    store.put_cert(cert.clone()).await.unwrap();
    assert_eq!(store.cert(&cert.domain).await.unwrap(), Some(cert.clone()));
    let replacement = cert_for("c.test");
    store.put_cert(replacement.clone()).await.unwrap();
    assert_eq!(store.certs().await.unwrap(), vec![replacement]);
}

async fn certs_come_in_pages(store: impl Store) {
    for name in ["p3.test", "p1.test", "p2.test"] {
        store.add_site(site(name, "127.0.0.1:1")).await.unwrap();
        store.put_cert(cert_for(name)).await.unwrap();
    }
    let domains = |page: Vec<CertRecord>| {
        page.into_iter()
            .map(|c| c.domain.to_string())
            .collect::<Vec<_>>()
    };
    let first = store.certs_after(None, 2).await.unwrap();
    assert_eq!(domains(first.clone()), ["p1.test", "p2.test"]);
    let next = store.certs_after(Some(&first[1].domain), 2).await.unwrap();
    assert_eq!(domains(next.clone()), ["p3.test"]);
    assert!(store
        .certs_after(Some(&next[0].domain), 2)
        .await
        .unwrap()
        .is_empty());
    let between = DomainName::parse("p10.test").unwrap();
    assert_eq!(
        domains(store.certs_after(Some(&between), 5).await.unwrap()),
        ["p2.test", "p3.test"],
        "after a domain that has no certificate"
    );
}

async fn removing_a_site_removes_its_cert(store: impl Store) {
    store.add_site(site("d.test", "127.0.0.1:1")).await.unwrap();
    let cert = cert_for("d.test");
    store.put_cert(cert.clone()).await.unwrap();
    store.remove_site(&cert.domain).await.unwrap();
    assert_eq!(store.cert(&cert.domain).await.unwrap(), None);
}

async fn changes_are_announced(store: impl Store) {
    let mut changes = store.subscribe();
    let domain = DomainName::parse("e.test").unwrap();
    store.add_site(site("e.test", "127.0.0.1:1")).await.unwrap();
    store.put_cert(cert_for("e.test")).await.unwrap();
    store.remove_site(&domain).await.unwrap();
    let mut seen = Vec::new();
    while let Ok(change) = changes.try_recv() {
        seen.push(change);
    }
    assert_eq!(
        seen,
        [
            Change::Site(domain.clone()),
            Change::Cert(domain.clone()),
            Change::Site(domain.clone()),
            Change::Cert(domain)
        ]
    );
}

#[path = "support/etcd.rs"]
mod etcd;

/// The same suite on a real etcd (Debian's `etcd-server`), each store under its own prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_backend_conforms() {
    let etcd = etcd::Etcd::start();
    let made = std::sync::atomic::AtomicUsize::new(0);
    suite(|| {
        let n = made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut options =
            porter_store::EtcdOptions::parse(&etcd.address(&format!("conformance/{n}"))).unwrap();
        options.lease_ttl = std::time::Duration::from_secs(2);
        async move {
            porter_store::EtcdStore::open(options, CancellationToken::new())
                .await
                .unwrap()
        }
    })
    .await;
}

#[tokio::test]
async fn sled_backend_conforms() {
    let dirs = std::sync::Mutex::new(Vec::new());
    suite(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        dirs.lock().recover().push(dir);
        std::future::ready(store)
    })
    .await;
}

/// `open()` once the file lock of a handle just dropped is gone: sled lets go of it from its
/// own threads shortly after the drop, not at it. Any other outcome is returned at once.
fn once_released<T, E>(
    open: impl Fn() -> Result<T, E>,
    locked: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match open() {
            Err(e) if locked(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            outcome => return outcome,
        }
    }
}

fn reopen(dir: &std::path::Path) -> Result<SledStore, StoreError> {
    once_released(
        || SledStore::open(dir),
        |e| matches!(e, StoreError::Locked(_)),
    )
}

#[tokio::test]
async fn sled_keeps_everything_across_reopen_and_locks_out_a_second_process() {
    let dir = tempfile::tempdir().unwrap();
    let cert = cert_for("f.test");
    {
        let store = SledStore::open(dir.path()).unwrap();
        store
            .add_site(site("f.test", "127.0.0.1:8080"))
            .await
            .unwrap();
        store.put_cert(cert.clone()).await.unwrap();
    }
    let store = reopen(dir.path()).unwrap();
    assert_eq!(store.cert(&cert.domain).await.unwrap(), Some(cert));
    assert_eq!(store.sites().await.unwrap().len(), 1);
    let second = SledStore::open(dir.path())
        .err()
        .expect("a second opener must be refused");
    assert!(matches!(second, StoreError::Locked(_)), "{second}");
}

#[tokio::test]
async fn sled_refuses_another_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    drop(SledStore::open(dir.path()).unwrap());
    {
        let db = once_released(
            || sled::open(dir.path()),
            |e| e.to_string().contains("could not acquire lock"),
        )
        .unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("schema_version", &99u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = reopen(dir.path())
        .err()
        .expect("a foreign schema must be refused");
    assert!(
        matches!(
            err,
            StoreError::SchemaMismatch {
                found: 99,
                expected: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn certificates_are_checked_before_they_are_stored() {
    let domain = DomainName::parse("g.test").unwrap();
    let check = |chain: &str, key: &str| {
        CertRecord::from_pem(
            &domain,
            chain.as_bytes(),
            key.as_bytes(),
            now(),
            CertSource::Imported,
        )
    };
    let (chain, key) = self_signed(&["g.test", "www.g.test"], false);
    let record = check(&chain, &key).unwrap();
    assert_eq!(record.names, ["g.test", "www.g.test"]);
    assert!(record.is_valid_at(now()));
    assert!(
        !format!("{record:?}").contains(&key[40..80]),
        "Debug must not show the key"
    );

    let (_, other_key) = self_signed(&["g.test"], false);
    let (other_name, other_name_key) = self_signed(&["h.test"], false);
    let (expired, expired_key) = self_signed(&["g.test"], true);
    let (wild, wild_key) = self_signed(&["*.test2.example"], false);
    for (chain, key, want) in [
        ("garbage", key.as_str(), "no certificate"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            key.as_str(),
            "does not parse",
        ),
        (chain.as_str(), "not a key", "no private key"),
        (chain.as_str(), other_key.as_str(), "does not match"),
        (
            other_name.as_str(),
            other_name_key.as_str(),
            "does not cover g.test",
        ),
        (expired.as_str(), expired_key.as_str(), "expired"),
        (wild.as_str(), wild_key.as_str(), "does not cover"),
    ] {
        let err = check(chain, key).expect_err(want);
        assert!(matches!(err, InvalidInput::Certificate(_)));
        assert!(err.to_string().contains(want), "{err} should say {want:?}");
    }
    let sub = DomainName::parse("x.test2.example").unwrap();
    assert!(CertRecord::from_pem(
        &sub,
        wild.as_bytes(),
        wild_key.as_bytes(),
        now(),
        CertSource::Imported
    )
    .is_ok());
}

#[tokio::test]
async fn a_stalled_sled_store_fails_in_time_and_drops_what_its_callers_gave_up() {
    let dir = tempfile::tempdir().unwrap();
    let stall = dir.path().join("stall");
    let store = SledStore::open_with(
        &dir.path().join("db"),
        SledOptions {
            deadline: std::time::Duration::from_millis(300),
            stall_while: Some(stall.clone()),
            ..SledOptions::default()
        },
    )
    .unwrap();
    store.add_site(site("a.test", "127.0.0.1:1")).await.unwrap();
    std::fs::write(&stall, b"").unwrap();
    let started = std::time::Instant::now();
    let (read, write) = tokio::join!(store.sites(), store.add_site(site("b.test", "127.0.0.1:1")));
    assert!(
        matches!(read, Err(StoreError::Stalled { op: "sites", .. })),
        "{read:?}"
    );
    assert!(
        matches!(write, Err(StoreError::Stalled { op: "add_site", .. })),
        "{write:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(store.health().stalled, 2);
    std::fs::remove_file(&stall).unwrap();
    // The write its caller was told had failed is not made once the store answers again.
    store
        .add_site(site("b.test", "127.0.0.1:1"))
        .await
        .expect("the abandoned write must not have been made");
    assert_eq!(store.sites().await.unwrap().len(), 2);
    assert_eq!(store.health().failure, None);
}

#[tokio::test]
async fn a_released_sled_store_is_taken_by_another_holder_and_reclaimed_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let first = SledStore::open(&path).unwrap();
    first.add_site(site("a.test", "127.0.0.1:1")).await.unwrap();
    // Held: another opener is refused at once, or after waiting in vain.
    assert!(SledStore::open(&path).is_err());
    first.release();
    let error = first.sites().await.unwrap_err().to_string();
    assert!(error.contains("handed over"), "{error}");
    let wait = SledOptions {
        lock_wait: std::time::Duration::from_secs(10),
        ..SledOptions::default()
    };
    let second = SledStore::open_with(&path, wait).unwrap();
    assert_eq!(second.sites().await.unwrap().len(), 1);
    second
        .add_site(site("b.test", "127.0.0.1:2"))
        .await
        .unwrap();
    drop(second);
    first
        .reclaim(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let names: Vec<_> = first
        .sites()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.domain.to_string())
        .collect();
    assert_eq!(names, ["a.test", "b.test"]);
    first.add_site(site("c.test", "127.0.0.1:3")).await.unwrap();
}
