//! Real ACME peers for tests: Debian's `pebble` and `pebble-challtestsrv` on free loopback
//! ports (challtestsrv as the DNS server answering 127.0.0.1 for every name), with pebble's
//! validation ports pointing at Porter's listeners.

use super::{require, wait_until, TestCa};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free TCP port on 127.0.0.1 (bound, then released for the process that needs it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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
        }
    }
}

/// pebble and its DNS; killed on drop.
pub struct Pebble {
    pebble: Option<Child>,
    dns: Child,
    config: PathBuf,
    dns_addr: String,
    slow: bool,
    /// The ACME directory URL.
    pub directory: String,
    /// pebble's management API (`https://127.0.0.1:PORT`).
    pub management: String,
    /// The root that pebble's own HTTPS chains to (for `--acme-ca-root` and curl).
    pub https_root: PathBuf,
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
        let dns_addr = format!("127.0.0.1:{}", free_udp_port());
        let dns = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01", &dns_addr])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pebble-challtestsrv");
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let management = format!("127.0.0.1:{}", free_port());
        let mut pebble = serde_json::json!({
            "listenAddress": listen.to_string(),
            "managementListenAddress": management,
            "certificate": cert,
            "privateKey": key,
            "httpPort": options.http_port,
            "tlsPort": options.tls_port,
            "ocspResponderURL": "",
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
            listen,
        };
        this.resume();
        this
    }

    /// Starts pebble (again, after [`Pebble::stop`]). A restarted pebble has a new CA.
    pub fn resume(&mut self) {
        let mut command = Command::new("pebble");
        command
            .args(["-config", self.config.to_str().unwrap(), "-dnsserver", &self.dns_addr])
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
        let (ok, pem) = super::curl(&["--cacert", self.https_root.to_str().unwrap(), &format!("{}/roots/0", self.management)]);
        assert!(ok && pem.contains("BEGIN CERTIFICATE"), "cannot fetch pebble's root: {pem}");
        std::fs::write(path, pem).unwrap();
        path.to_path_buf()
    }

    /// The `porter serve` flags that point Porter at this pebble.
    pub fn porter_flags(&self) -> Vec<String> {
        [
            "--acme-directory",
            &self.directory,
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
        let _ = self.dns.kill();
        let _ = self.dns.wait();
    }
}
