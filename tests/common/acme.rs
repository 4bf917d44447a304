//! Real ACME peers for tests: Debian's `pebble` and `pebble-challtestsrv` on free loopback
//! ports (challtestsrv as the DNS server answering 127.0.0.1 for every name), with pebble's
//! validation ports pointing at Porter's listeners.

use super::{curl, require, wait_until, Backend, Porter, TestCa};
use rustls_pki_types::pem::PemObject;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free TCP port on 127.0.0.1 (bound, then released for the process that needs it), picked
/// at random below Linux's ephemeral range (32768-60999): a port from that range can be taken
/// as the source port of any outgoing connection before the process that needs it binds it.
/// Never the same one twice in a test binary: its tests run at once, and a port handed out is
/// free until its process binds it, which can be seconds later (pebble, named, Porter).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..1000 {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in 20000-31999 on 127.0.0.1");
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How to run pebble.
pub struct PebbleOptions {
    /// Where the validator connects for HTTP-01 (Porter's plain HTTP port).
    pub http_port: u16,
    /// Where the validator connects for TLS-ALPN-01 (Porter's HTTPS port).
    pub tls_port: u16,
    /// `certificateValidityPeriod` in seconds.
    pub validity: Option<u64>,
    /// External Account Binding keys (kid, base64url HMAC) that pebble requires.
    pub eab: Option<(String, String)>,
    /// Names pebble refuses (suffix match).
    pub blocklist: Vec<String>,
    /// Skip PEBBLE_VA_NOSLEEP: each validation then waits up to a few seconds.
    pub slow_validation: bool,
    /// `ocspResponderURL`: put into the AIA of issued certificates.
    pub ocsp_url: Option<String>,
    /// The DNS server pebble asks (for every lookup), instead of a challtestsrv of its own.
    pub dns_server: Option<std::net::SocketAddr>,
}

impl PebbleOptions {
    pub fn new(http_port: u16, tls_port: u16) -> Self {
        PebbleOptions {
            http_port,
            tls_port,
            validity: None,
            eab: None,
            blocklist: Vec::new(),
            slow_validation: false,
            ocsp_url: None,
            dns_server: None,
        }
    }
}

/// pebble and its DNS; killed on drop.
pub struct Pebble {
    pebble: Option<Child>,
    /// Its own challtestsrv, unless it was given a DNS server.
    dns: Option<Child>,
    config: PathBuf,
    dns_addr: String,
    slow: bool,
    /// The ACME directory URL.
    pub directory: String,
    /// pebble's management API (`https://127.0.0.1:PORT`).
    pub management: String,
    /// The root that pebble's own HTTPS chains to (for `--acme-ca-root` and curl).
    pub https_root: PathBuf,
    /// The CA behind `https_root`, to issue more loopback server certificates.
    pub https_ca: TestCa,
    /// pebble's HTTPS address.
    pub listen: SocketAddr,
}

impl Pebble {
    pub fn start(work: &Path, options: PebbleOptions) -> Pebble {
        require("pebble", "pebble");
        require("pebble-challtestsrv", "pebble");
        std::fs::create_dir_all(work).unwrap();
        // pebble's own HTTPS certificate, from a CA of the test.
        let ca = TestCa::new(work);
        let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
        let (dns_addr, dns) = match options.dns_server {
            Some(server) => (server.to_string(), None),
            None => {
                let dns_addr = format!("127.0.0.1:{}", free_udp_port());
                let dns = Command::new("pebble-challtestsrv")
                    .args([
                        "-defaultIPv4",
                        "127.0.0.1",
                        "-defaultIPv6",
                        "",
                        "-dns01",
                        &dns_addr,
                    ])
                    .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                    .args(["-management", &format!("127.0.0.1:{}", free_port())])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn pebble-challtestsrv");
                (dns_addr, Some(dns))
            }
        };
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let management = format!("127.0.0.1:{}", free_port());
        let mut pebble = serde_json::json!({
            "listenAddress": listen.to_string(),
            "managementListenAddress": management,
            "certificate": cert,
            "privateKey": key,
            "httpPort": options.http_port,
            "tlsPort": options.tls_port,
            "ocspResponderURL": options.ocsp_url.clone().unwrap_or_default(),
            "externalAccountBindingRequired": options.eab.is_some(),
            "domainBlocklist": options.blocklist,
        });
        if let Some(validity) = options.validity {
            pebble["certificateValidityPeriod"] = validity.into();
        }
        if let Some((kid, hmac)) = &options.eab {
            pebble["externalAccountMACKeys"] = serde_json::json!({ kid.as_str(): hmac });
        }
        let config = work.join("pebble.json");
        std::fs::write(&config, serde_json::json!({ "pebble": pebble }).to_string()).unwrap();
        let mut this = Pebble {
            pebble: None,
            dns,
            config,
            dns_addr,
            slow: options.slow_validation,
            directory: format!("https://{listen}/dir"),
            management: format!("https://{management}"),
            https_root: ca.ca_path(),
            https_ca: ca,
            listen,
        };
        this.resume();
        this
    }

    /// Starts pebble (again, after [`Pebble::stop`]). A restarted pebble has a new CA.
    pub fn resume(&mut self) {
        let mut command = Command::new("pebble");
        command
            .args([
                "-config",
                self.config.to_str().unwrap(),
                "-dnsserver",
                &self.dns_addr,
            ])
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if !self.slow {
            command.env("PEBBLE_VA_NOSLEEP", "1");
        }
        self.pebble = Some(command.spawn().expect("spawn pebble"));
        let listen = self.listen;
        wait_until(Duration::from_secs(10), "pebble listens", || {
            std::net::TcpStream::connect(listen).is_ok()
        });
    }

    /// Stops pebble (its DNS keeps running).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.pebble.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The root certificate that issued certificates chain to, written to `path`.
    pub fn issuing_root(&self, path: &Path) -> PathBuf {
        let (ok, pem) = super::curl(&[
            "--cacert",
            self.https_root.to_str().unwrap(),
            &format!("{}/roots/0", self.management),
        ]);
        assert!(
            ok && pem.contains("BEGIN CERTIFICATE"),
            "cannot fetch pebble's root: {pem}"
        );
        std::fs::write(path, pem).unwrap();
        path.to_path_buf()
    }

    /// pebble's intermediate certificate and key (PEM files in `dir`), the issuer of leaves.
    pub fn intermediate(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let fetch = |what: &str, file: &str| {
            let (ok, pem) = super::curl(&[
                "--cacert",
                self.https_root.to_str().unwrap(),
                &format!("{}/{what}/0", self.management),
            ]);
            assert!(
                ok && pem.contains("-----BEGIN"),
                "cannot fetch pebble's {what}: {pem}"
            );
            let path = dir.join(file);
            std::fs::write(&path, pem).unwrap();
            path
        };
        (
            fetch("intermediates", "int.pem"),
            fetch("intermediate-keys", "int.key"),
        )
    }

    /// The `porter serve` flags that point Porter at this pebble (or at a front of it).
    pub fn porter_flags(&self, directory: &str) -> Vec<String> {
        [
            "--acme-directory",
            directory,
            "--acme-ca-root",
            self.https_root.to_str().unwrap(),
            "--acme-agree-tos",
            "--acme-email",
            "ops@porter.test",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        if let Some(dns) = &mut self.dns {
            let _ = dns.kill();
            let _ = dns.wait();
        }
    }
}

/// What the front has seen and what it answers for ARI.
#[derive(Default)]
pub struct FrontState {
    /// newOrder requests forwarded to pebble.
    pub new_orders: usize,
    /// The `replaces` values of those orders.
    pub replaces: Vec<String>,
    /// Finalize requests (one per certificate issued).
    pub finalized: usize,
    /// Orders placed and not finalized yet, and the most there ever were at once.
    pub open_orders: usize,
    pub max_open_orders: usize,
    /// The renewal window `renewalInfo` answers with (Unix seconds), when ARI is on.
    pub window: Option<(i64, i64)>,
    /// While set, finalize requests wait here: an attempt stays in flight.
    pub hold_finalize: bool,
    /// Finalize requests waiting for `hold_finalize` to clear.
    pub held: usize,
}

/// A small HTTPS front of the test's own in front of pebble: it forwards every ACME request
/// (pebble builds its URLs from the `Host` it sees, so clients keep talking to the front),
/// counts new orders, and, with ARI on, adds `renewalInfo` to the directory, answers it, and
/// reflects `replaces` in new orders, as RFC 9773 asks of a CA (pebble 2.4 has no ARI).
pub struct AcmeFront {
    _runtime: tokio::runtime::Runtime,
    /// The directory URL to give Porter.
    pub directory: String,
    pub state: std::sync::Arc<std::sync::Mutex<FrontState>>,
}

impl AcmeFront {
    pub fn start(pebble: &Pebble, ari: bool) -> AcmeFront {
        use std::sync::{Arc, Mutex};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (cert, key) = pebble.https_ca.issue(&["localhost", "127.0.0.1"]);
        let server_config = {
            use rustls_pki_types::pem::PemObject;
            let chain = rustls_pki_types::CertificateDer::pem_file_iter(&cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap()
        };
        let client_config = pebble.https_ca.client(&[b"http/1.1"]);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(FrontState::default()));
        let shared = Arc::new(Front {
            pebble: pebble.listen,
            client: client_config,
            state: state.clone(),
            ari,
            base: format!("https://{addr}"),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, shared) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, std::convert::Infallible>(shared.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        AcmeFront {
            _runtime: runtime,
            directory: format!("https://{addr}/dir"),
            state,
        }
    }
}

struct Front {
    pebble: SocketAddr,
    client: std::sync::Arc<rustls::ClientConfig>,
    state: std::sync::Arc<std::sync::Mutex<FrontState>>,
    ari: bool,
    base: String,
}

type FrontBody = http_body_util::Full<bytes::Bytes>;

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

impl Front {
    async fn handle(&self, req: http::Request<hyper::body::Incoming>) -> http::Response<FrontBody> {
        use base64::Engine as _;
        use http_body_util::BodyExt;
        let path = req.uri().path().to_owned();
        if self.ari && path.starts_with("/renewal-info/") {
            let window = self.state.lock().unwrap().window;
            let Some((start, end)) = window else {
                return http::Response::builder()
                    .status(404)
                    .body(FrontBody::default())
                    .unwrap();
            };
            let body = serde_json::json!({"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}});
            return http::Response::builder()
                .header("content-type", "application/json")
                .header("retry-after", "60")
                .body(FrontBody::from(body.to_string()))
                .unwrap();
        }
        let (parts, body) = req.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let mut replaces = None;
        if path == "/order-plz" {
            let jws: Value = serde_json::from_slice(&body).unwrap_or_default();
            let payload = jws["payload"].as_str().unwrap_or_default();
            let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap_or_default();
            let payload: Value = serde_json::from_slice(&payload).unwrap_or_default();
            replaces = payload["replaces"].as_str().map(str::to_owned);
            let mut state = self.state.lock().unwrap();
            state.new_orders += 1;
            state.open_orders += 1;
            state.max_open_orders = state.max_open_orders.max(state.open_orders);
            state.replaces.extend(replaces.clone());
        }
        if path.starts_with("/finalize-order/") {
            self.state.lock().unwrap().held += 1;
            while self.state.lock().unwrap().hold_finalize {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let mut state = self.state.lock().unwrap();
            state.held -= 1;
            state.finalized += 1;
            state.open_orders = state.open_orders.saturating_sub(1);
        }
        let mut upstream = http::Request::builder().method(parts.method).uri(parts.uri);
        for (name, value) in &parts.headers {
            upstream = upstream.header(name, value);
        }
        let upstream = upstream.body(FrontBody::from(body)).unwrap();
        let tcp = tokio::net::TcpStream::connect(self.pebble).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(self.client.clone())
            .connect(name, tcp)
            .await
            .unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let response = sender.send_request(upstream).await.unwrap();
        let (mut parts, body) = response.into_parts();
        let mut body = body.collect().await.unwrap().to_bytes();
        let rewrite = (self.ari && path == "/dir") || replaces.is_some();
        if rewrite {
            let mut json: Value = serde_json::from_slice(&body).unwrap();
            if path == "/dir" {
                json["renewalInfo"] = format!("{}/renewal-info", self.base).into();
            } else if let Some(replaces) = replaces {
                json["replaces"] = replaces.into();
            }
            body = json.to_string().into();
            parts.headers.remove(http::header::CONTENT_LENGTH);
        }
        http::Response::from_parts(parts, FrontBody::from(body))
    }
}

use serde_json::Value;

/// The `cert list --json` row of `domain` on `porter`, or null.
pub fn cert_row(porter: &Porter, domain: &str) -> Value {
    let list: Value = serde_json::from_str(&porter.ok(&["--json", "cert", "list"])).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|row| row["domain"] == domain)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Porter on chosen loopback ports in front of a backend, pointed at a pebble (directly, or
/// through the test's front).
pub struct Edge {
    pub dir: tempfile::TempDir,
    pub front: Option<AcmeFront>,
    pub pebble: Pebble,
    pub backend: Backend,
    pub porter: Option<Porter>,
    pub flags: Vec<String>,
}

/// How Porter reaches pebble.
#[derive(Clone, Copy, PartialEq)]
pub enum Via {
    Direct,
    Front,
    FrontWithAri,
}

impl Edge {
    /// Starts pebble (configured by `options` from Porter's ports) and Porter with `extra` flags.
    pub fn start(options: impl FnOnce(u16, u16) -> PebbleOptions, extra: &[&str]) -> Edge {
        Edge::start_via(Via::Direct, options, extra)
    }

    pub fn start_via(
        via: Via,
        options: impl FnOnce(u16, u16) -> PebbleOptions,
        extra: &[&str],
    ) -> Edge {
        let dir = tempfile::tempdir().unwrap();
        let (http, https) = (free_port(), free_port());
        let pebble = Pebble::start(&dir.path().join("pebble"), options(http, https));
        let front =
            (via != Via::Direct).then(|| AcmeFront::start(&pebble, via == Via::FrontWithAri));
        let directory = front
            .as_ref()
            .map_or(pebble.directory.clone(), |f| f.directory.clone());
        let mut flags = pebble.porter_flags(&directory);
        flags.extend([
            "--http".into(),
            format!("127.0.0.1:{http}"),
            "--https".into(),
            format!("127.0.0.1:{https}"),
        ]);
        flags.extend(extra.iter().map(|s| s.to_string()));
        let mut edge = Edge {
            dir,
            front,
            pebble,
            backend: Backend::start(),
            porter: None,
            flags,
        };
        edge.restart();
        edge
    }

    /// The ACME directory URL Porter was given.
    pub fn directory(&self) -> &str {
        let at = self
            .flags
            .iter()
            .position(|f| f == "--acme-directory")
            .unwrap();
        &self.flags[at + 1]
    }

    pub fn restart(&mut self) {
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        self.porter = Some(Porter::start(&self.dir.path().join("data"), &flags));
    }

    pub fn front(&self) -> std::sync::MutexGuard<'_, FrontState> {
        self.front.as_ref().unwrap().state.lock().unwrap()
    }

    /// The serial of the certificate served for `domain`.
    pub fn served_serial(&self, domain: &str) -> String {
        let port = self.porter().https.port();
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-servername",
                domain,
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let pem_start = text
            .find("-----BEGIN CERTIFICATE-----")
            .expect("a certificate");
        let pem_end = text.find("-----END CERTIFICATE-----").unwrap() + 25;
        let der =
            rustls_pki_types::CertificateDer::from_pem_slice(&text.as_bytes()[pem_start..pem_end])
                .unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        cert.tbs_certificate
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn porter(&self) -> &Porter {
        self.porter.as_ref().unwrap()
    }

    pub fn add(&self, domain: &str) {
        self.porter()
            .ok(&["site", "add", domain, "--upstream", &self.backend.addr]);
    }

    /// `cert list --json` row of `domain`.
    pub fn status(&self, domain: &str) -> Value {
        cert_row(self.porter(), domain)
    }

    /// How many certificates `cert list` shows as valid.
    pub fn valid_certs(&self) -> usize {
        let list: Value =
            serde_json::from_str(&self.porter().ok(&["--json", "cert", "list"])).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "valid")
            .count()
    }

    pub fn root(&self) -> PathBuf {
        self.pebble
            .issuing_root(&self.dir.path().join("issuing-root.pem"))
    }

    /// GET https://DOMAIN/ through Porter, verified against `root`; the body on success.
    pub fn get(&self, domain: &str, root: &Path) -> Option<String> {
        let port = self.porter().https.port();
        let resolve = format!("{domain}:{port}:127.0.0.1");
        let (ok, body) = curl(&[
            "--cacert",
            root.to_str().unwrap(),
            "--resolve",
            &resolve,
            &format!("https://{domain}:{port}/"),
        ]);
        ok.then_some(body)
    }

    /// Waits until `domain` serves a certificate that verifies against pebble's root.
    pub fn wait_served(&self, domain: &str, within: Duration) {
        let root = self.root();
        wait_until(
            within,
            &format!("{domain} is served with a certificate from pebble"),
            || self.get(domain, &root).as_deref() == Some("hello from backend /"),
        );
    }
}
