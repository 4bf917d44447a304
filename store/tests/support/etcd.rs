//! A throwaway etcd for tests: Debian's `etcd` on free loopback ports with its data in a temp
//! dir, stopped (SIGTERM, then wait) when dropped. Shared by the store's tests and the
//! binary's (`#[path]`), so that both start it the same way.

// Each test binary uses a part of it.
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running etcd member (a cluster of one).
pub(crate) struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    /// Serves its clients over TLS and asks them for a certificate.
    tls: bool,
}

/// PEM files of the CA the TLS member trusts, and a client certificate it issued.
pub(crate) struct TlsFiles {
    pub(crate) ca: std::path::PathBuf,
    pub(crate) client_cert: std::path::PathBuf,
    pub(crate) client_key: std::path::PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    /// Starts a member and waits until it answers (fails the test, saying what to install,
    /// when there is no `etcd`).
    pub(crate) fn start() -> Etcd {
        let mut etcd = Etcd {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            client_port: free_port(),
            peer_port: free_port(),
            tls: false,
        };
        etcd.run();
        etcd
    }

    /// [`Etcd::start`] with TLS for clients, which must show a certificate of its CA (made
    /// here, with one client certificate).
    pub(crate) fn start_tls() -> (Etcd, TlsFiles) {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            SanType,
        };
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::from_params(&ca, &ca_key);
        let leaf = |purpose: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            params
                .subject_alt_names
                .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
            params.extended_key_usages = vec![purpose];
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = leaf(ExtendedKeyUsagePurpose::ClientAuth);
        write("server.pem", server_cert);
        write("server.key", server_key);
        let files = TlsFiles {
            ca: write("ca.pem", ca_pem),
            client_cert: write("client.pem", client_cert),
            client_key: write("client.key", client_key),
        };
        let mut etcd = Etcd {
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            tls: true,
        };
        etcd.run();
        (etcd, files)
    }

    /// `HOST:PORT` of its client listener.
    pub(crate) fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The `--store` address of a Porter installation under `prefix` in it.
    pub(crate) fn address(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.endpoint())
    }

    fn run(&mut self) {
        let scheme = if self.tls { "https" } else { "http" };
        let (client, peer) = (
            format!("{scheme}://127.0.0.1:{}", self.client_port),
            format!("http://127.0.0.1:{}", self.peer_port),
        );
        let file = |name: &str| self.dir.path().join(name);
        let tls_flags = if self.tls {
            vec![
                "--cert-file".into(),
                file("server.pem"),
                "--key-file".into(),
                file("server.key"),
                "--trusted-ca-file".into(),
                file("ca.pem"),
                "--client-cert-auth".into(),
            ]
        } else {
            Vec::new()
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .unwrap();
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .args(["--initial-cluster-state", "new"])
            // Fast elections: ready in ~0.1 s, leases down to 1 s.
            .args(["--heartbeat-interval=10", "--election-timeout=100"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(&tls_flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start etcd ({e}): install Debian's etcd-server (scripts/test.sh does)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.healthy() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("etcd exited at start ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "etcd not healthy within 20 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its log so far (for failure messages).
    pub(crate) fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        text.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    }

    fn healthy(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(self.endpoint()) else {
            return false;
        };
        if self.tls {
            // Listening is all that can be seen without a client of its own: tests open
            // their store until it answers.
            return true;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.contains("\"health\":\"true\"")
    }

    /// The value of `key`, read through etcd's JSON gateway (no client library needed).
    pub(crate) fn get(&self, key: &str) -> Option<String> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = serde_json::json!({ "key": b64.encode(key) }).to_string();
        let mut stream = TcpStream::connect(self.endpoint()).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let request = format!(
            "POST /v3/kv/range HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let (_, json) = answer.split_once("\r\n\r\n")?;
        let json: serde_json::Value = serde_json::from_str(json).ok()?;
        let value = json["kvs"][0]["value"].as_str()?;
        String::from_utf8(b64.decode(value).ok()?).ok()
    }

    /// The value of the gauge or counter `name` (without labels) on its metrics page.
    pub(crate) fn metric(&self, name: &str) -> Option<f64> {
        let mut stream = TcpStream::connect(self.endpoint()).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut page = String::new();
        stream.read_to_string(&mut page).ok()?;
        page.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// Stops it (SIGTERM, then wait); its data stays for [`Etcd::resume`].
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Starts it again on the same data and ports.
    pub(crate) fn resume(&mut self) {
        assert!(self.child.is_none(), "etcd is running");
        self.run();
    }

    /// Starts it again on the same data with its clients' listener on another port, where
    /// the clients of the old one do not find it.
    pub(crate) fn resume_elsewhere(&mut self) {
        assert!(self.child.is_none(), "etcd is running");
        self.client_port = free_port();
        self.run();
    }

    /// Moves its clients' listener back to `port` (stopping it first).
    pub(crate) fn move_to(&mut self, port: u16) {
        self.stop();
        self.client_port = port;
        self.run();
    }

    /// The port of its clients' listener.
    pub(crate) fn client_port(&self) -> u16 {
        self.client_port
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
