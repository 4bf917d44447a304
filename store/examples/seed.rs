//! Fills a store with many sites and certificates, for the scale benchmark (`bench/bench.py
//! --scale N [--etcd]`): `cargo run --release -p porter-store --example seed -- STORE N
//! UPSTREAM`, STORE a sled directory or `etcd://HOST:PORT/prefix`. Site `sI.scale.test` gets its
//! own ECDSA P-256 certificate, signed by one throwaway CA; 64 writers at once.

use porter_store::{
    CertRecord, CertSource, DomainName, EtcdOptions, EtcdStore, Site, SledStore, Store, Target,
    Upstream,
};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const WRITERS: usize = 64;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (at, count, upstream) = match args.as_slice() {
        [_, at, count, upstream] => (at, count.parse::<usize>().expect("N is a number"), upstream),
        _ => panic!("usage: seed STORE N UPSTREAM"),
    };
    let store: Arc<dyn Store> = if at.starts_with("etcd://") {
        let options = EtcdOptions::parse(at).expect("an etcd address");
        // Its watch and lease live as long as the store: until the program ends.
        let stop = tokio_util::sync::CancellationToken::new();
        Arc::new(
            EtcdStore::open(options, stop)
                .await
                .expect("open the store"),
        )
    } else {
        Arc::new(SledStore::open(std::path::Path::new(at)).expect("open the store"))
    };
    let upstream = Upstream::parse(upstream).expect("a valid upstream");
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(store.sites().await.unwrap().len()));
    let ca = Arc::new((ca, ca_key));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let (store, next, ca, upstream) =
            (store.clone(), next.clone(), ca.clone(), upstream.clone());
        writers.spawn(async move {
            let issuer = Issuer::from_params(&ca.0, &ca.1);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let name = format!("s{i}.scale.test");
                let domain = DomainName::parse(&name).unwrap();
                let site = Site {
                    domain: domain.clone(),
                    target: Target::Upstream(upstream.clone()),
                    acme: false,
                    hsts_max_age: Some(0),
                    features: Default::default(),
                    challenge: None,
                    needs_cert_since: None,
                    balancing: None,
                };
                store.add_site(site).await.unwrap();
                let key = KeyPair::generate().unwrap();
                let cert = CertificateParams::new(vec![name])
                    .unwrap()
                    .signed_by(&key, &issuer)
                    .unwrap();
                let record = CertRecord::from_pem(
                    &domain,
                    cert.pem().as_bytes(),
                    key.serialize_pem().as_bytes(),
                    now,
                    CertSource::Imported,
                )
                .unwrap();
                store.put_cert(record).await.unwrap();
                if i % 10_000 == 0 {
                    eprintln!("{i} sites after {:?}", started.elapsed());
                }
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    eprintln!("{count} sites in {:?}", started.elapsed());
}
