//! Fills a store with many sites and certificates, for the scale benchmark (`bench/bench.py
//! --scale N`): `cargo run --release -p porter-store --example seed -- DIR N UPSTREAM`.
//! Site `sI.scale.test` gets its own ECDSA P-256 certificate, signed by one throwaway CA.

use porter_store::{CertRecord, CertSource, DomainName, Site, SledStore, Store, Target, Upstream};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, count, upstream) = match args.as_slice() {
        [_, dir, count, upstream] => (
            dir,
            count.parse::<usize>().expect("N is a number"),
            upstream,
        ),
        _ => panic!("usage: seed DIR N UPSTREAM"),
    };
    let store = SledStore::open(std::path::Path::new(dir)).expect("open the store");
    let upstream = Upstream::parse(upstream).expect("a valid upstream");
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = Issuer::from_params(&ca, &ca_key);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let started = Instant::now();
    for i in store.sites().await.unwrap().len()..count {
        let name = format!("s{i}.scale.test");
        let domain = DomainName::parse(&name).unwrap();
        let site = Site {
            domain: domain.clone(),
            target: Target::Upstream(upstream.clone()),
            acme: false,
            hsts_max_age: 0,
            features: Default::default(),
            challenge: None,
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
    eprintln!("{count} sites in {:?}", started.elapsed());
}
