//! Fleets: three `porter serve` nodes on 127.0.0.1, 127.0.0.2 and 127.0.0.3 sharing one etcd
//! (Debian's etcd-server, started here), pebble as the CA behind the test's counting front.
//! pebble validates every name at 127.0.0.1 (the first node), whichever node ordered it: the
//! challenge answers are in etcd, and every node answers them. An app runs on the node it was
//! added through; the others forward its requests there.

mod common;
#[path = "../store/tests/support/etcd.rs"]
mod etcd;

use common::acme::{free_port, AcmeFront, Pebble, PebbleOptions};
use common::ocsp::OcspResponder;
use common::{https_get, run_with_input, wait_until, Backend, Porter};
use etcd::Etcd;
use rustls_pki_types::pem::PemObject as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Sites added at once through one node.
const SITES: usize = 20;

/// Dropped in this order: the nodes first, while etcd still answers them.
struct Fleet {
    nodes: Vec<Option<Porter>>,
    dir: tempfile::TempDir,
    etcd: Etcd,
    _pebble: Pebble,
    /// The responder pebble's certificates name: each fetch of a response counted.
    ocsp: OcspResponder,
    front: AcmeFront,
    backend: Backend,
    /// The same HTTP and HTTPS ports on each node's address.
    ports: (u16, u16),
    flags: Vec<String>,
    root: PathBuf,
    client: Arc<rustls::ClientConfig>,
    runtime: tokio::runtime::Runtime,
}

impl Fleet {
    fn start() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let etcd = Etcd::start();
        let ports = (free_port(), free_port());
        let ocsp = OcspResponder::start(&dir.path().join("ocsp"), 60);
        let pebble = Pebble::start(
            &dir.path().join("pebble"),
            PebbleOptions {
                ocsp_url: Some(ocsp.url.clone()),
                ..PebbleOptions::new(ports.0, ports.1)
            },
        );
        *ocsp.state.issuer.lock().unwrap() = Some(pebble.intermediate(dir.path()));
        let front = AcmeFront::start(&pebble, false);
        let mut flags = pebble.porter_flags(&front.directory);
        flags.extend(
            ["--store", &etcd.address("fleet"), "--etcd-lease-ttl", "2s"].map(String::from),
        );
        let root = pebble.issuing_root(&dir.path().join("root.pem"));
        let client = client_trusting(&root);
        let mut fleet = Fleet {
            nodes: (0..3).map(|_| None).collect(),
            dir,
            etcd,
            _pebble: pebble,
            ocsp,
            front,
            backend: Backend::start(),
            ports,
            flags,
            root,
            client,
            runtime: tokio::runtime::Runtime::new().unwrap(),
        };
        for i in 0..3 {
            fleet.start_node(i);
        }
        fleet
    }

    fn addr(&self, i: usize) -> String {
        format!("127.0.0.{}", i + 1)
    }

    fn start_node(&mut self, i: usize) {
        let (http, https) = (
            format!("{}:{}", self.addr(i), self.ports.0),
            format!("{}:{}", self.addr(i), self.ports.1),
        );
        let node = format!("n{i}");
        let mut flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        flags.extend(["--http", &http, "--https", &https, "--node", &node]);
        let data = self.dir.path().join(format!("node{i}"));
        self.nodes[i] = Some(Porter::start(&data, &flags));
    }

    fn node(&self, i: usize) -> &Porter {
        self.nodes[i].as_ref().expect("the node runs")
    }

    fn https(&self, i: usize) -> SocketAddr {
        format!("{}:{}", self.addr(i), self.ports.1)
            .parse()
            .unwrap()
    }

    /// GET https://DOMAIN/ on node `i`, verified against pebble's root: the status and body.
    fn get(&self, i: usize, domain: &str) -> Option<(u16, String)> {
        let fetched = self.runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                https_get(self.client.clone(), self.https(i), domain, "/"),
            )
            .await
        });
        match fetched {
            Ok(Ok((status, _, body))) => Some((status.as_u16(), body)),
            _ => None,
        }
    }

    fn serves(&self, i: usize, domain: &str) -> bool {
        self.get(i, domain)
            .is_some_and(|(status, body)| status == 200 && body == "hello from backend /")
    }

    /// Whether node `i` staples a good OCSP response for `domain`.
    fn staples(&self, i: usize, domain: &str) -> bool {
        let out = Command::new("openssl")
            .args(["s_client", "-status", "-connect"])
            .arg(self.https(i).to_string())
            .args(["-servername", domain])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.contains("OCSP Response Status: successful") && text.contains("Cert Status: good")
    }

    /// The pid that holds `name`'s lock in etcd, if any.
    fn lock_holder(&self, name: &str) -> Option<u32> {
        self.etcd.get(&format!("/fleet/locks/{name}"))?.parse().ok()
    }

    /// One `openssl s_client` exchange with node `i`, saving (`-sess_out`) or resuming
    /// (`-sess_in`) the TLS 1.3 session in `session`.
    fn s_client(&self, i: usize, domain: &str, mode: &str, session: &Path) -> String {
        let out = run_with_input(
            Command::new("openssl")
                .args(["s_client", "-tls1_3", "-ign_eof", "-connect"])
                .arg(self.https(i).to_string())
                .args(["-servername", domain, "-CAfile"])
                .arg(&self.root)
                .arg(mode)
                .arg(session),
            format!("GET / HTTP/1.0\r\nHost: {domain}\r\n\r\n").as_bytes(),
        );
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

fn client_trusting(root: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(root).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    common::client_with_roots(roots, &[b"http/1.1"])
}

/// Twenty sites added through one node are ordered once each and served by all three within a
/// second of issuance; the node holding an order's lock is killed in the middle of it and
/// another completes the same order; a TLS 1.3 session from one node resumes on the others;
/// etcd goes away for ten seconds under traffic to every node without a failed request, and
/// a change made after it returns reaches every node within a second.
#[test]
fn a_fleet_orders_once_serves_everywhere_and_rides_out_etcd() {
    let mut fleet = Fleet::start();
    let domains: Vec<String> = (0..SITES).map(|i| format!("s{i}.fleet.test")).collect();

    // 20 sites through node 0, each ordered once, each served everywhere.
    let added = Instant::now();
    for domain in &domains {
        fleet
            .node(0)
            .ok(&["site", "add", domain, "--upstream", &fleet.backend.addr]);
    }
    let mut first_served: Vec<Option<Instant>> = vec![None; SITES];
    let mut everywhere: Vec<Option<Instant>> = vec![None; SITES];
    let mut served = [[false; 3]; SITES];
    wait_until(
        Duration::from_secs(120),
        "every site is served by every node",
        || {
            for (d, domain) in domains.iter().enumerate() {
                if everywhere[d].is_some() {
                    continue;
                }
                for (i, done) in served[d].iter_mut().enumerate() {
                    if !*done && fleet.serves(i, domain) {
                        *done = true;
                        first_served[d].get_or_insert_with(Instant::now);
                    }
                }
                if served[d].iter().all(|s| *s) {
                    everywhere[d] = Some(Instant::now());
                }
            }
            everywhere.iter().all(Option::is_some)
        },
    );
    let spread = (0..SITES)
        .map(|d| everywhere[d].unwrap() - first_served[d].unwrap())
        .max()
        .unwrap();
    let last = everywhere.iter().flatten().max().unwrap();
    eprintln!(
        "fleet: {SITES} sites added through one node; the last served by all three {:?} after the first add; \
         largest gap between the first node and all three serving a certificate: {spread:?}",
        *last - added
    );
    assert!(
        spread < Duration::from_secs(1),
        "all three nodes serve within a second of the first: {spread:?}"
    );
    {
        let front = fleet.front.state.lock().unwrap();
        assert_eq!(front.new_orders, SITES, "one order per site, fleet-wide");
        assert_eq!(front.finalized, SITES, "one certificate per site");
    }
    // One OCSP fetch per certificate, fleet-wide; every node staples it.
    wait_until(
        Duration::from_secs(60),
        "every node staples every response",
        || {
            domains
                .iter()
                .all(|domain| (0..3).all(|i| fleet.staples(i, domain)))
        },
    );
    assert_eq!(
        fleet
            .ocsp
            .state
            .answered
            .load(std::sync::atomic::Ordering::SeqCst),
        SITES,
        "one OCSP fetch per certificate"
    );

    // The lock holder dies in the middle of an order: another node completes the same order.
    fleet.front.state.lock().unwrap().hold_finalize = true;
    fleet.node(1).ok(&[
        "site",
        "add",
        "takeover.fleet.test",
        "--upstream",
        &fleet.backend.addr,
    ]);
    wait_until(
        Duration::from_secs(30),
        "an order waits at finalize",
        || fleet.front.state.lock().unwrap().held == 1,
    );
    let holder = fleet
        .lock_holder("acme/takeover.fleet.test")
        .expect("the order's lock is in etcd");
    let victim = (0..3)
        .find(|i| fleet.node(*i).pid() == holder)
        .expect("a node of the fleet holds the lock");
    fleet.nodes[victim].take().unwrap().kill9();
    fleet.front.state.lock().unwrap().hold_finalize = false;
    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let killed = Instant::now();
    wait_until(
        Duration::from_secs(60),
        "another node completes the order",
        || {
            survivors
                .iter()
                .all(|i| fleet.serves(*i, "takeover.fleet.test"))
        },
    );
    eprintln!(
        "fleet: node {victim} killed holding the order's lock; another node served it {:?} later (lease TTL 2 s)",
        killed.elapsed()
    );
    {
        let front = fleet.front.state.lock().unwrap();
        assert_eq!(
            front.new_orders,
            SITES + 1,
            "the order was taken over, not placed again"
        );
        assert_eq!(front.finalized, SITES + 1, "one certificate");
    }
    fleet.start_node(victim);
    assert!(
        fleet.serves(victim, "takeover.fleet.test"),
        "a node that starts serves what the fleet has at once"
    );

    // A TLS 1.3 session made with node 0 resumes on nodes 1 and 2 (one set of ticket keys).
    let session = fleet.dir.path().join("session");
    let first = fleet.s_client(0, &domains[0], "-sess_out", &session);
    assert!(first.contains("New, TLSv1.3"), "{first}");
    for i in [1, 2] {
        let again = fleet.s_client(i, &domains[0], "-sess_in", &session);
        assert!(
            again.contains("Reused, TLSv1.3"),
            "node {i} resumes node 0's session: {again}"
        );
    }

    // An app defined through node 0 runs there; nodes 1 and 2 forward its requests to it.
    let site_dir = fleet.dir.path().join("app-site");
    std::fs::create_dir_all(&site_dir).unwrap();
    std::fs::write(site_dir.join("index.html"), "served by the app of n0").unwrap();
    let command = format!(
        "python3 -m http.server {{port}} --bind 127.0.0.1 --directory {}",
        site_dir.display()
    );
    fleet
        .node(0)
        .ok(&["app", "add", "web", "--command", &command, "--allow-root"]);
    fleet
        .node(1)
        .ok(&["site", "add", "app.fleet.test", "--app", "web"]);
    let apps = fleet.node(2).ok(&["--json", "app", "list"]);
    assert!(apps.contains("\"node\": \"n0\""), "{apps}");
    wait_until(
        Duration::from_secs(60),
        "every node serves the app's site",
        || {
            (0..3).all(|i| {
                fleet
                    .get(i, "app.fleet.test")
                    .is_some_and(|(status, body)| {
                        status == 200 && body.contains("served by the app of n0")
                    })
            })
        },
    );
    for i in [1, 2] {
        let status = fleet.node(i).ok(&["app", "status", "web"]);
        assert!(
            status.contains("stopped"),
            "node {i} runs no copy of n0's app: {status}"
        );
    }
    let nodes = fleet.node(2).ok(&["node", "list"]);
    for name in ["n0", "n1", "n2"] {
        assert!(nodes.contains(name), "{nodes}");
    }
    // A client cannot pass for a node: its forged header is dropped, its plain HTTP request
    // is sent to HTTPS as any other.
    let forged = common::status_code(&[
        "-H",
        "Host: app.fleet.test",
        "-H",
        "porter-fleet: 00 192.0.2.1",
        &format!("http://127.0.0.2:{}/", fleet.ports.0),
    ]);
    assert!(forged.starts_with('3'), "a forged fleet header: {forged}");

    // etcd away for ten seconds under traffic to every node: not one failed request.
    fleet.etcd.stop();
    let outage = Instant::now();
    let (mut requests, mut failed) = (0, Vec::new());
    while outage.elapsed() < Duration::from_secs(10) {
        let (i, domain) = (requests % 3, &domains[requests % SITES]);
        if !fleet.serves(i, domain) {
            failed.push(format!("node {i} {domain}"));
        }
        requests += 1;
    }
    let status = fleet.node(1).ok(&["status"]);
    assert!(status.contains("UNREACHABLE since"), "{status}");
    assert!(
        failed.is_empty(),
        "{} of {requests} failed: {failed:?}",
        failed.len()
    );
    fleet.etcd.resume();
    // A change through node 2 once etcd is back reaches nodes 0 and 1 within a second.
    let mut changed = None;
    wait_until(
        Duration::from_secs(30),
        "a change can be made again",
        || {
            let out = fleet.node(2).cli(&[
                "site",
                "update",
                &domains[1],
                "--upstream",
                "127.0.0.1:1",
                "--allow-unreachable",
            ]);
            changed = Some(Instant::now());
            if !out.status.success() {
                eprintln!(
                    "fleet: update refused: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            out.status.success()
        },
    );
    let changed = changed.unwrap();
    wait_until(Duration::from_secs(5), "nodes 0 and 1 follow", || {
        [0, 1].iter().all(|i| {
            fleet
                .get(*i, &domains[1])
                .is_some_and(|(status, _)| status == 502)
        })
    });
    let followed = changed.elapsed();
    eprintln!("fleet: {requests} requests during a 10 s etcd outage, none failed; a change after it reached the other nodes in {followed:?}");
    assert!(followed < Duration::from_secs(1), "{followed:?}");
    let status = fleet.node(1).ok(&["status"]);
    assert!(status.contains("store: ok"), "{status}");
}

/// `store copy` moves an installation from sled to etcd and back, keeping every record (the
/// whole export compared); the CLI works on the etcd store directly; a target that is not
/// empty is refused unless --force; no server may hold the sled store being copied.
#[test]
fn store_copy_moves_an_installation_to_etcd_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let ca = common::TestCa::new(dir.path());
    let backend = Backend::start();
    let first = dir.path().join("first");
    let porter = Porter::start(&first, &[]);
    ca.serve(&first, "kept.test", &backend.addr);
    porter.ok(&[
        "app",
        "add",
        "shop",
        "--command",
        "python3 -m http.server {port}",
        "--allow-root",
    ]);
    porter.ok(&["site", "add", "shop.test", "--app", "shop"]);
    for n in 0..10 {
        porter.ok(&[
            "site",
            "add",
            &format!("w{n}.test"),
            "--upstream",
            &backend.addr,
        ]);
    }
    porter.ok(&["on-demand", "allow", "example.test"]);
    let sled = format!("sled:{}", first.join("store").display());
    let on_etcd = etcd.address("copy");
    let copy = |from: &str, to: &str, force: bool| {
        let mut args = vec!["store", "copy", "--from", from, "--to", to];
        args.extend(force.then_some("--force"));
        common::cli(&first, &args)
    };
    let said = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let held = copy(&sled, &on_etcd, false);
    assert!(!held.status.success());
    assert!(said(&held).contains("holds the store"), "{held:?}");
    let before = porter.ok(&["--json", "store", "export"]);
    assert!(porter.stop().success());

    let to_etcd = copy(&sled, &on_etcd, false);
    assert!(to_etcd.status.success(), "{to_etcd:?}");
    assert!(said(&to_etcd).contains("12 sites"), "{to_etcd:?}");
    let sites = common::ok(&first, &["--store", &on_etcd, "site", "list"]);
    assert!(
        sites.contains("kept.test") && sites.contains("w9.test"),
        "{sites}"
    );
    let again = copy(&sled, &on_etcd, false);
    assert!(!again.status.success(), "a non-empty target is refused");
    assert!(said(&again).contains("--force"), "{again:?}");
    assert!(copy(&sled, &on_etcd, true).status.success());

    let second = dir.path().join("second");
    let back = format!("sled:{}", second.join("store").display());
    assert!(copy(&on_etcd, &back, false).status.success());
    let after = common::ok(&second, &["--json", "store", "export"]);
    let (before, after): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&before).unwrap(),
        serde_json::from_str(&after).unwrap(),
    );
    assert_eq!(before, after, "every record made the round trip");
    assert_eq!(after["sites"].as_array().unwrap().len(), 12);
}

/// A node restarted in place (a successor on its data dir takes its sockets) keeps its name in
/// the fleet: the successor replaces its predecessor's record, the predecessor exits cleanly;
/// a second process that claims a running node's name elsewhere is refused.
#[test]
fn a_node_restarted_in_place_keeps_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let backend = Backend::start();
    let address = etcd.address("restart");
    let flags = [
        "--store",
        &address,
        "--etcd-lease-ttl",
        "2s",
        "--node",
        "edge1",
    ];
    let data = dir.path().join("data");
    let mut first = Porter::start(&data, &flags);
    first.ok(&["site", "add", "kept.test", "--upstream", &backend.addr]);
    let second = Porter::start(&data, &[&flags[..], &["--take-over"]].concat());
    assert!(first.exits_within(Duration::from_secs(20)).success());
    let nodes = second.ok(&["--json", "node", "list"]);
    let nodes: serde_json::Value = serde_json::from_str(&nodes).unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    assert_eq!(nodes[0]["name"], "edge1");
    assert_eq!(nodes[0]["pid"], second.pid(), "the successor's record");
    assert_eq!(
        common::plain_status(second.http, "kept.test", "/"),
        "200",
        "and it serves"
    );
    let elsewhere = common::cli(
        &dir.path().join("other"),
        &[&flags[..], &common::SERVE_ON_LOOPBACK[..]].concat(),
    );
    assert!(!elsewhere.status.success(), "a second edge1 is refused");
    assert!(
        String::from_utf8_lossy(&elsewhere.stderr).contains("node edge1"),
        "{elsewhere:?}"
    );
}

/// What a node answers for `host` and `path` on the connection of `sender`: status and body.
async fn plain_get(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    host: &str,
    path: &str,
) -> (u16, String) {
    use http_body_util::BodyExt as _;
    sender.ready().await.unwrap();
    let request = http::Request::get(path)
        .header("host", host)
        .body(Default::default())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A plain HTTP/1.1 connection to `addr`, kept alive.
async fn plain_connection(
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// The certificate `addr` shows a TLS-ALPN-01 validator (RFC 8737: ALPN `acme-tls/1`, SNI
/// `name`), or `None` when the handshake fails. Like a CA, it trusts no chain: it compares.
async fn acme_tls_validation(addr: SocketAddr, name: &str) -> Option<Vec<u8>> {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    #[derive(Debug)]
    struct Validator(Arc<rustls::crypto::CryptoProvider>);
    impl ServerCertVerifier for Validator {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algorithms = &self.0.signature_verification_algorithms;
            rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algorithms = &self.0.signature_verification_algorithms;
            rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Validator(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await
        .ok()?;
    let (_, session) = stream.get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"acme-tls/1"[..]));
    Some(session.peer_certificates()?.first()?.to_vec())
}

/// A random ACME token (RFC 8555 section 8.3: 256 bits, base64url).
fn random_token() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// A node asked for an HTTP-01 token the moment another node wrote it into etcd (as the CA
/// asks once the other node says the challenge is ready), before the change has reached it,
/// answers the key authorization: it reads the store before saying no; the same for a
/// TLS-ALPN-01 challenge certificate. 1,000 asks at once for
/// tokens nobody wrote are answered 404 within seconds, and other requests are served
/// meanwhile.
#[test]
fn a_node_answers_a_challenge_token_it_has_not_heard_of_yet() {
    use porter_store::{
        DomainName, EtcdOptions, EtcdStore, Http01Challenge, PrivateKey, Store as _,
        TlsAlpnChallenge,
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let backend = Backend::start();
    let address = etcd.address("behind");
    let porter = Porter::start(&dir.path().join("data"), &["--store", &address]);
    porter.ok(&["site", "add", "behind.test", "--upstream", &backend.addr]);
    wait_until(Duration::from_secs(10), "the site is served", || {
        common::plain_status(porter.http, "behind.test", "/") == "200"
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // The other node: a store client of the same installation.
        let other = EtcdStore::open(EtcdOptions::parse(&address).unwrap(), CancellationToken::new())
            .await
            .unwrap();
        let mut validator = plain_connection(porter.http).await;
        let domain = DomainName::parse("behind.test").unwrap();
        for _ in 0..20 {
            let token = random_token();
            let key_authorization = format!("{token}.{}", random_token());
            other
                .put_http01(Http01Challenge {
                    token: token.clone(),
                    domain: domain.clone(),
                    key_authorization: key_authorization.clone(),
                })
                .await
                .unwrap();
            let path = format!("/.well-known/acme-challenge/{token}");
            assert_eq!(
                plain_get(&mut validator, "behind.test", &path).await,
                (200, key_authorization),
                "the token just written"
            );
        }

        // The same for TLS-ALPN-01: the challenge certificate written for a name is served at
        // once to a validator offering `acme-tls/1`.
        for n in 0..5 {
            let name = format!("alpn{n}.behind.test");
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![name.clone()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
            other
                .put_tls_alpn(TlsAlpnChallenge {
                    domain: DomainName::parse(&name).unwrap(),
                    cert: cert.der().to_vec(),
                    key: PrivateKey::from_der(&key_der).unwrap(),
                })
                .await
                .unwrap();
            let served = acme_tls_validation(porter.https, &name).await;
            assert_eq!(served.as_deref(), Some(&cert.der()[..]), "{name}");
        }

        // 1,000 asks at once for tokens nobody wrote, for a name no site serves: 404 each.
        let started = Instant::now();
        let mut asks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let http = porter.http;
            asks.spawn(async move {
                let mut sender = plain_connection(http).await;
                for _ in 0..20 {
                    let path = format!("/.well-known/acme-challenge/{}", random_token());
                    let (status, _) = plain_get(&mut sender, "nosuch.test", &path).await;
                    assert_eq!(status, 404);
                }
            });
        }
        // Meanwhile the site is served, at once.
        let mut client = plain_connection(porter.http).await;
        let mut slowest = Duration::ZERO;
        while !asks.is_empty() {
            let asked = Instant::now();
            assert_eq!(plain_get(&mut client, "behind.test", "/").await.0, 200);
            slowest = slowest.max(asked.elapsed());
            while let Some(done) = asks.try_join_next() {
                done.unwrap();
            }
        }
        let took = started.elapsed();
        eprintln!(
            "fleet: 1,000 asks for unknown tokens answered 404 in {took:?}; the slowest request of the site meanwhile took {slowest:?}"
        );
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert!(slowest < Duration::from_millis(500), "{slowest:?}");
    });
}
