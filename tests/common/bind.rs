//! A real authoritative DNS server for DNS-01 tests: Debian's `bind9` (`named`) serving one zone
//! on a free loopback port, which takes RFC 2136 updates of TXT records signed with a TSIG key
//! made by `tsig-keygen`, and `dig` (bind9-dnsutils) to look at it.

use super::acme::free_port;
use super::wait_until;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Debian puts the server (sbin: not on every user's PATH).
const NAMED: &str = "/usr/sbin/named";

/// `named` serving `zone`; stopped on drop.
pub struct Bind {
    child: Child,
    /// UDP and TCP address of the server.
    pub addr: SocketAddr,
    /// The `key "porter" { ... };` clause `tsig-keygen` made, as a file Porter reads.
    pub key_file: PathBuf,
    pub zone: String,
}

/// Fails naming the package when a bind9 tool is missing.
fn require_file(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "`{path}` is missing: install it with `apt-get install -y {package}`"
    );
}

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_dns_port() -> u16 {
    for _ in 0..100 {
        let port = free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// A TSIG key clause from `tsig-keygen` for the key `name`.
pub fn tsig_keygen(name: &str) -> String {
    require_file("/usr/sbin/tsig-keygen", "bind9");
    let out = Command::new("/usr/sbin/tsig-keygen")
        .args(["-a", "hmac-sha256", name])
        .output()
        .expect("run tsig-keygen");
    assert!(out.status.success(), "tsig-keygen failed");
    String::from_utf8(out.stdout).unwrap()
}

impl Bind {
    /// Starts `named` in `work` as the primary of `zone` (every name in it, and the zone
    /// itself, at 127.0.0.1), letting the key `porter` change TXT records in it.
    pub fn start(work: &Path, zone: &str) -> Bind {
        require_file(NAMED, "bind9");
        require_file("/usr/bin/dig", "bind9-dnsutils");
        std::fs::create_dir_all(work).unwrap();
        let dir = work.display().to_string();
        let key = tsig_keygen("porter");
        let key_file = work.join("porter.key");
        std::fs::write(&key_file, &key).unwrap();
        let port = free_dns_port();
        let zone_file = work.join(format!("{zone}.zone"));
        std::fs::write(
            &zone_file,
            format!(
                "$TTL 60\n\
                 @ IN SOA ns.{zone}. admin.{zone}. 1 60 60 600 60\n\
                 @ IN NS ns.{zone}.\n\
                 ns IN A 127.0.0.1\n\
                 @ IN A 127.0.0.1\n\
                 * IN A 127.0.0.1\n"
            ),
        )
        .unwrap();
        let config = work.join("named.conf");
        std::fs::write(
            &config,
            format!(
                "options {{\n\
                   directory \"{dir}\";\n\
                   pid-file \"{dir}/named.pid\";\n\
                   session-keyfile \"{dir}/session.key\";\n\
                   managed-keys-directory \"{dir}\";\n\
                   listen-on port {port} {{ 127.0.0.1; }};\n\
                   listen-on-v6 {{ none; }};\n\
                   recursion no;\n\
                   dnssec-validation no;\n\
                   notify no;\n\
                 }};\n\
                 controls {{ }};\n\
                 {key}\n\
                 zone \"{zone}\" {{\n\
                   type primary;\n\
                   file \"{}\";\n\
                   update-policy {{ grant porter zonesub TXT; }};\n\
                 }};\n",
                zone_file.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(work.join("named.log")).unwrap();
        let child = Command::new(NAMED)
            .args(["-g", "-4", "-n", "1", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn named");
        let bind = Bind {
            child,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            key_file,
            zone: zone.to_owned(),
        };
        let log = work.join("named.log");
        wait_until(Duration::from_secs(20), "named serves its zone", || {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(!said.contains("exiting"), "named did not start:\n{said}");
            !bind.dig(zone, "SOA").is_empty()
        });
        bind
    }

    /// `dig` of `name`'s `rtype` records at this server, one value per line (TXT unquoted).
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = Command::new("dig")
            .args([
                &format!("@{}", self.addr.ip()),
                "-p",
                &self.addr.port().to_string(),
                "+short",
                "+time=1",
                "+tries=1",
                name,
                rtype,
            ])
            .output()
            .expect("run dig");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with(';') && !l.is_empty())
            .map(|l| l.trim_matches('"').to_owned())
            .collect()
    }

    /// The TXT values of `_acme-challenge.NAME`.
    pub fn challenge_txt(&self, name: &str) -> Vec<String> {
        self.dig(&format!("_acme-challenge.{name}"), "TXT")
    }

    /// Adds a TXT record with `nsupdate` and the zone's key, as another client of the zone would.
    pub fn nsupdate_add_txt(&self, name: &str, value: &str) {
        let script = format!(
            "server {} {}\nzone {}\nupdate add {name} 60 TXT \"{value}\"\nsend\n",
            self.addr.ip(),
            self.addr.port(),
            self.zone
        );
        let out = super::run_with_input(
            Command::new("nsupdate").arg("-k").arg(&self.key_file),
            script.as_bytes(),
        );
        assert!(
            out.status.success(),
            "nsupdate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}
