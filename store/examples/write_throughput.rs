//! Write throughput of the sled store with 1, 16 and 64 concurrent writers, each adding then
//! removing its share of sites (every write durable before it returns), printed as a table:
//! `cargo run --release -p porter-store --example write_throughput -- [OPS]`.
//! A run that does not finish within a minute is reported as hung, not waited for.

use porter_store::{DomainName, Site, SledStore, Store, Target, Upstream};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WRITERS: [usize; 3] = [1, 16, 64];
const DEADLINE: Duration = Duration::from_secs(60);

async fn run(writers: usize, ops: usize) -> Option<Duration> {
    let dir = tempfile::tempdir().expect("a temporary dir");
    let store = Arc::new(SledStore::open(dir.path()).expect("open the store"));
    let upstream = Upstream::parse("127.0.0.1:9").unwrap();
    let per_writer = ops / writers / 2;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let (store, upstream) = (store.clone(), upstream.clone());
        tasks.spawn(async move {
            for i in 0..per_writer {
                let domain = DomainName::parse(&format!("w{w}-{i}.bench.test")).unwrap();
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
                store.add_site(site).await.expect("add");
                store.remove_site(&domain).await.expect("remove");
            }
        });
    }
    let finished = tokio::time::timeout(DEADLINE, async {
        while let Some(done) = tasks.join_next().await {
            done.expect("a writer panicked");
        }
    })
    .await;
    match finished {
        Ok(()) => Some(started.elapsed()),
        Err(_) => {
            // A hung sled keeps its threads: leave them to the process exit.
            std::mem::forget(tasks);
            std::mem::forget(store);
            None
        }
    }
}

#[tokio::main]
async fn main() {
    let ops: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("OPS is a number"))
        .unwrap_or(2_048);
    println!("| writers | writes | time | writes/s |");
    println!("|---:|---:|---:|---:|");
    for writers in WRITERS {
        let total = ops / writers / 2 * writers * 2;
        match run(writers, ops).await {
            Some(elapsed) => println!(
                "| {writers} | {total} | {:.2} s | {:.0} |",
                elapsed.as_secs_f64(),
                total as f64 / elapsed.as_secs_f64()
            ),
            None => println!(
                "| {writers} | {total} | hung (> {} s) | - |",
                DEADLINE.as_secs()
            ),
        }
    }
    // Exit without waiting on a hung store's threads.
    std::process::exit(0);
}
