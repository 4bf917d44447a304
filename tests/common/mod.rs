//! The shared test harness: `porter` itself, a real HTTP daemon as upstream, a test CA, and
//! TLS clients, all on loopback with ephemeral ports. Every child process is killed on drop.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own part of the harness

pub mod acme;
pub mod bind;
pub mod ocsp;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Polls `condition` until it holds, failing the test with `what` after `within`.
pub fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The async twin of [`wait_until`], for conditions that need the runtime.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fails with a message naming the Debian package when a tool the tests need is missing.
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{tool}` is missing: install it with `apt-get install -y {package}`"
    );
}

/// `serve` on ephemeral loopback ports: the start of every test server's arguments.
pub const SERVE_ON_LOOPBACK: [&str; 7] = [
    "serve",
    "--http",
    "127.0.0.1:0",
    "--https",
    "127.0.0.1:0",
    "--admin",
    "127.0.0.1:0",
];

/// A running `porter serve` on ephemeral loopback ports.
pub struct Porter {
    child: Child,
    pub data_dir: PathBuf,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: String,
    /// The `--metrics` listener, when it has one.
    pub metrics: Option<SocketAddr>,
}

pub fn porter_bin() -> &'static str {
    env!("CARGO_BIN_EXE_porter")
}

impl Porter {
    /// Starts a server on `data_dir` with extra `serve` flags, and waits until it has written
    /// its discovery file.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Porter {
        Porter::start_as(&[porter_bin()], data_dir, extra)
    }

    /// [`Porter::start`] with `command` (a program and its arguments, ending with the porter
    /// binary to run, such as `setpriv --reuid=... /path/to/porter`).
    pub fn start_as(command: &[&str], data_dir: &Path, extra: &[&str]) -> Porter {
        Porter::start_logging(command, data_dir, extra, Stdio::inherit())
    }

    /// [`Porter::start_as`] with its log (stderr) going to `log`.
    pub fn start_logging(
        command: &[&str],
        data_dir: &Path,
        extra: &[&str],
        log: impl Into<Stdio>,
    ) -> Porter {
        // A running server's file stays (a successor reads it): the new one is told by its pid.
        let discovery = data_dir.join("admin.json");
        let mut child = Command::new(command[0])
            .args(&command[1..])
            .arg("--data-dir")
            .arg(data_dir)
            .args(SERVE_ON_LOOPBACK)
            .args(extra)
            .env("PORTER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn porter");
        let pid = child.id();
        let mut found = None;
        wait_until(
            Duration::from_secs(15),
            "porter writes its discovery file",
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("porter serve exited with {status} before it was ready");
                }
                found = std::fs::read(&discovery)
                    .ok()
                    .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
                    .filter(|v| v["pid"] == pid);
                found.is_some()
            },
        );
        let d = found.unwrap();
        Porter {
            child,
            data_dir: data_dir.to_path_buf(),
            http: d["http"].as_str().unwrap().parse().unwrap(),
            https: d["https"].as_str().unwrap().parse().unwrap(),
            admin: d["admin"].as_str().unwrap().to_owned(),
            metrics: d["metrics"].as_str().map(|a| a.parse().unwrap()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs a CLI command against this server's data dir.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.data_dir, args)
    }

    /// Runs a CLI command and fails the test unless it succeeds; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        ok(&self.data_dir, args)
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid()).expect("porter runs")
    }

    /// `kill -9`, and reap.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }

    /// SIGTERM, and the exit status with how long the exit took; fails the test when the
    /// process is still running after `within`.
    pub fn stop_within(mut self, within: Duration) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let mut status = None;
        wait_until(within, "porter exits after SIGTERM", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        (status.unwrap(), started.elapsed())
    }

    /// Waits for the process to exit on its own (after handing over to a successor); fails
    /// the test when it still runs after `within`.
    pub fn exits_within(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut status = None;
        wait_until(within, "porter exits", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The admin API token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// `curl` on the admin API: `METHOD /path [JSON body]`; returns the HTTP status and body.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let url = format!("http://{}{path}", self.admin);
        let auth = format!("Authorization: Bearer {}", self.token());
        let mut args = vec!["-X", method, "-H", &auth, "-w", "\n%{http_code}", &url];
        if let Some(body) = body {
            args.extend(["-H", "Content-Type: application/json", "-d", body]);
        }
        let (_, out) = curl(&args);
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
        (code.parse().unwrap_or(0), body.to_owned())
    }
}

impl Drop for Porter {
    /// SIGTERM, so that Porter stops the daemons of its apps, then SIGKILL if it has not
    /// exited within 15 s.
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Resident set size of process `pid` in KiB, while it exists.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs `porter --data-dir DIR ARGS`.
pub fn cli(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(porter_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run porter")
}

/// Runs the CLI on `data` with a bound: a hung command fails the test instead of hanging it.
pub fn cli_within(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .args(["60", porter_bin(), "--data-dir"])
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

pub fn ok(data_dir: &Path, args: &[&str]) -> String {
    let out = cli(data_dir, args);
    assert!(
        out.status.success(),
        "porter {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A copy of the porter binary at `to` (mode 0755), once it can be run: a process another
/// test thread forks while the copy is written inherits its write handle until it execs, and
/// running the copy meanwhile fails with "Text file busy".
pub fn copy_of_porter(to: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::copy(porter_bin(), to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
    wait_until(
        Duration::from_secs(10),
        "the copy of porter can run",
        || {
            Command::new(to)
                .arg("--version")
                .output()
                .is_ok_and(|out| out.status.success())
        },
    );
}

/// The unprivileged user `nobody` (65534) in a test's `dir` (needs root): a home it owns, and
/// a copy of porter it can run wherever the checkout is.
pub struct Nobody {
    pub home: PathBuf,
    bin: PathBuf,
}

impl Nobody {
    pub fn in_dir(dir: &Path) -> Nobody {
        use std::os::unix::fs::PermissionsExt as _;
        require("setpriv", "util-linux");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.join("nobody");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
        let bin = dir.join("porter");
        copy_of_porter(&bin);
        Nobody { home, bin }
    }

    /// The command that runs porter as nobody (for [`Porter::start_as`]).
    pub fn command(&self) -> [&str; 5] {
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            self.bin.to_str().unwrap(),
        ]
    }
}

/// A process a test started (a client, a daemon, a CLI that follows): stopped when the test
/// ends, also when it fails half-way: SIGTERM, then SIGKILL if it has not exited within 10 s.
pub struct Running(Option<Child>);

impl Running {
    pub fn new(child: Child) -> Running {
        Running(Some(child))
    }

    /// The process itself, no longer stopped on drop (for `wait_with_output`).
    pub fn into_inner(mut self) -> Child {
        self.0.take().expect("a process")
    }
}

impl std::ops::Deref for Running {
    type Target = Child;

    fn deref(&self) -> &Child {
        self.0.as_ref().expect("a process")
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("a process")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(child) = self.0.as_mut() else { return };
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A real HTTP/1.1 daemon (tests/fixtures/backend.py) as an upstream.
pub struct Backend {
    child: Child,
    /// `127.0.0.1:PORT` or the unix socket path.
    pub addr: String,
}

impl Backend {
    pub fn start() -> Backend {
        Backend::spawn(&[])
    }

    pub fn start_unix(path: &Path) -> Backend {
        Backend::spawn(&["--unix", path.to_str().unwrap()])
    }

    /// A backend that answers at most `workers` GET requests at once; the others wait.
    pub fn start_with_workers(workers: u32) -> Backend {
        Backend::spawn(&["--workers", &workers.to_string()])
    }

    /// A backend that says `name` in an `X-Backend` header on every response and in its
    /// default answer ("hello from backend NAME PATH").
    pub fn start_named(name: &str) -> Backend {
        Backend::spawn(&["--name", name])
    }

    /// A backend on 127.0.0.1:`port` (to start one again on the address of one that was
    /// killed), with more of backend.py's flags (`--name`, `--health-status`).
    pub fn start_on(port: u16, args: &[&str]) -> Backend {
        let port = port.to_string();
        Backend::spawn(&[&["--port", port.as_str()][..], args].concat())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`, and reap: a backend that dies with its connections open.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn spawn(args: &[&str]) -> Backend {
        require("python3", "python3");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/backend.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3 backend");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let value = line
            .trim()
            .strip_prefix("ready ")
            .expect("backend says ready")
            .to_owned();
        let addr = if value.starts_with('/') {
            value
        } else {
            format!("127.0.0.1:{value}")
        };
        Backend { child, addr }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `python3 tests/fixtures/SCRIPT ARGS` and reads its first line, "ready VALUE": the
/// process and VALUE.
fn ready_fixture(script: &str, args: &[&str]) -> (Child, String) {
    require("python3", "python3");
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(script);
    let mut child = Command::new("python3")
        .arg(&script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn a python3 fixture");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let Some(value) = line.trim().strip_prefix("ready ").map(str::to_owned) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{} {args:?} did not say ready: {line:?}", script.display());
    };
    (child, value)
}

/// An upstream that accepts connections and never reads nor answers
/// (tests/fixtures/blackhole.py): a hung server.
pub struct Blackhole {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        let (child, port) = ready_fixture("blackhole.py", &[]);
        Blackhole {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test certificate authority that issues ECDSA P-256 leaves as PEM files.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pub cert_pem: String,
    dir: PathBuf,
    issued: std::cell::Cell<u32>,
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Porter Test CA");
        let cert_pem = params.self_signed(&key).unwrap().pem();
        std::fs::write(dir.join("ca.pem"), &cert_pem).unwrap();
        TestCa {
            params,
            key,
            cert_pem,
            dir: dir.to_path_buf(),
            issued: std::cell::Cell::new(0),
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a leaf for `names`; returns the paths of its chain and key PEM files.
    pub fn issue(&self, names: &[&str]) -> (PathBuf, PathBuf) {
        self.issue_until(
            names,
            time::OffsetDateTime::now_utc() + time::Duration::days(90),
        )
    }

    /// A leaf for `names` that expires at `not_after`.
    pub fn issue_until(
        &self,
        names: &[&str],
        not_after: time::OffsetDateTime,
    ) -> (PathBuf, PathBuf) {
        let n = self.issued.get() + 1;
        self.issued.set(n);
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        // Like a public CA's: 128-bit random serial.
        let mut serial: [u8; 16] = rand::random();
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = not_after;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let chain = self.dir.join(format!("leaf{n}.pem"));
        let key_path = self.dir.join(format!("leaf{n}.key"));
        std::fs::write(&chain, cert.pem() + &self.cert_pem).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (chain, key_path)
    }

    /// `site add DOMAIN --upstream UPSTREAM` and `cert import` of a fresh leaf for it, through
    /// the CLI on `data_dir`; returns the leaf's chain and key files.
    pub fn serve(&self, data_dir: &Path, domain: &str, upstream: &str) -> (PathBuf, PathBuf) {
        ok(data_dir, &["init"]);
        ok(data_dir, &["site", "add", domain, "--upstream", upstream]);
        let (chain, key) = self.issue(&[domain]);
        ok(
            data_dir,
            &[
                "cert",
                "import",
                domain,
                "--cert",
                chain.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
            ],
        );
        (chain, key)
    }

    /// A rustls client that trusts this CA and offers `alpn`.
    pub fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        let der =
            rustls_pki_types::CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap();
        roots.add(der).unwrap();
        client_with_roots(roots, alpn)
    }
}

/// A rustls client (ring) that trusts `roots` and offers `alpn`.
pub fn client_with_roots(
    roots: rustls::RootCertStore,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

use rustls_pki_types::pem::PemObject as _;

/// The result of a TLS connection attempt made by a rustls client.
pub type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Connects to `addr` and verifies the certificate for `name`, which is sent as SNI unless
/// `sni` is false.
pub async fn tls_connect_as(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    name: &str,
    sni: bool,
) -> std::io::Result<TlsStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut config = (*config).clone();
    config.enable_sni = sni;
    let server_name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
}

/// Connects to `addr` with SNI `name`.
pub async fn tls_connect(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    name: &str,
) -> std::io::Result<TlsStream> {
    tls_connect_as(config, addr, name, true).await
}

/// The rustls alert a failed connection reports, if any.
pub fn alert_of(e: &std::io::Error) -> Option<rustls::AlertDescription> {
    let inner = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    match inner {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

/// One HTTP request over an established TLS stream, with the protocol ALPN chose; returns
/// status, version and body.
pub async fn request(
    stream: TlsStream,
    req: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> (http::StatusCode, http::Version, String) {
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    let response = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    };
    let (status, version) = (response.status(), response.version());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, version, String::from_utf8_lossy(&body).into_owned())
}

/// GET `https://name/path` through Porter with a rustls client.
pub async fn https_get(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    name: &str,
    path: &str,
) -> std::io::Result<(http::StatusCode, http::Version, String)> {
    let stream = tls_connect(config, addr, name).await?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let mut builder = http::Request::get(format!("https://{name}{path}"));
    if !h2 {
        builder = http::Request::get(path).header("host", name);
    }
    Ok(request(stream, builder.body(Default::default()).unwrap()).await)
}

/// The HTTP status curl gets for `args` (its last one the URL); "000" when there was none.
pub fn status_code(args: &[&str]) -> String {
    let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
    all.extend(args);
    curl(&all).1
}

/// The HTTP status of `GET http://ADDR/PATH` with `Host: host`.
pub fn plain_status(addr: impl std::fmt::Display, host: &str, path: &str) -> String {
    status_code(&[
        "-H",
        &format!("Host: {host}"),
        &format!("http://{addr}{path}"),
    ])
}

/// `cert list --json` on `data` without what moves with the clock (time left) or with the
/// server that answers (whether the edge serves it): what must survive a restart or a backup.
pub fn lasting_certs(data: &Path) -> serde_json::Value {
    let mut certs: serde_json::Value =
        serde_json::from_str(&ok(data, &["--json", "cert", "list"])).unwrap();
    for row in certs.as_array_mut().unwrap() {
        let row = row.as_object_mut().unwrap();
        row.remove("expires_in_s");
        row.remove("waiting_s");
        row.remove("served");
    }
    certs
}

/// Runs `command` with `input` on its stdin; its output.
pub fn run_with_input(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs curl with `args`; returns (exit success, stdout).
pub fn curl(args: &[&str]) -> (bool, String) {
    require("curl", "curl");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
