//! `porter serve` flags, each also read from a `PORTER_*` environment variable, parsed into
//! typed values so that a bad one is refused at start with a message naming it.

use crate::control::admin::AdminAddr;
use crate::runtime::duration::duration;
use crate::runtime::size::size;
use base64::Engine as _;
use porter_acme::{ChallengeKind, KeyType};
use porter_store::DomainName;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

fn domain(s: &str) -> Result<DomainName, String> {
    let name = DomainName::parse(s).map_err(|e| e.to_string())?;
    if name.is_wildcard() {
        return Err("the default name must be an exact name, not a wildcard".into());
    }
    Ok(name)
}

/// The headings `porter serve --help` groups its flags under.
mod heading {
    pub(super) const LISTENERS: &str = "Listeners";
    pub(super) const TLS: &str = "TLS";
    pub(super) const ACME: &str = "ACME";
    pub(super) const LIMITS: &str = "Limits";
    pub(super) const FLEET: &str = "Fleet";
    pub(super) const WAF: &str = "WAF";
    pub(super) const CACHE: &str = "HTTP cache";
    pub(super) const LOGS: &str = "Logs and metrics";
}

/// `porter serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Replace the server already running on this data dir without refusing a connection
    /// (a restart or an upgrade; SIGUSR2 passes it). Without it, a second server on the same
    /// data dir is refused.
    #[arg(long, help_heading = heading::LISTENERS)]
    pub(crate) take_over: bool,
    /// Plain HTTP listener (redirects to HTTPS, serves sites without a certificate).
    #[arg(long, env = "PORTER_HTTP", default_value = "[::]:80", help_heading = heading::LISTENERS)]
    pub(crate) http: SocketAddr,
    /// HTTPS listener.
    #[arg(long, env = "PORTER_HTTPS", default_value = "[::]:443", help_heading = heading::LISTENERS)]
    pub(crate) https: SocketAddr,
    /// HTTP/3 over QUIC on the HTTPS port (UDP), advertised to HTTPS clients with Alt-Svc:
    /// on or off. When the UDP port cannot be bound, Porter says so and serves without it.
    #[arg(long, env = "PORTER_HTTP3", default_value = "on", value_name = "on|off", value_parser = crate::control::ops::on_off, action = clap::ArgAction::Set, help_heading = heading::LISTENERS)]
    pub(crate) http3: bool,
    /// Admin API: a loopback IP:PORT or unix:/path.
    #[arg(long, env = "PORTER_ADMIN", default_value = "127.0.0.1:2019", help_heading = heading::LISTENERS)]
    pub(crate) admin: AdminAddr,
    /// Expect a PROXY protocol header (v1 or v2, HAProxy's) on every connection, from these
    /// sources only (CIDRs, comma-separated: the load balancers). Connections from elsewhere,
    /// or without a valid header, are closed; the address in the header is the client's.
    #[arg(long, env = "PORTER_PROXY_PROTOCOL", value_delimiter = ',', value_name = "CIDR,...", value_parser = crate::runtime::network::network, help_heading = heading::LISTENERS)]
    pub(crate) proxy_protocol: Vec<ipnet::IpNet>,
    /// Time open connections get to finish at shutdown.
    #[arg(long, env = "PORTER_SHUTDOWN_GRACE", default_value = "10s", value_parser = duration, help_heading = heading::LISTENERS)]
    pub(crate) shutdown_grace: Duration,
    /// Site whose certificate answers TLS clients that send no SNI (else they are refused).
    #[arg(long, env = "PORTER_DEFAULT_SNI", value_parser = domain, help_heading = heading::TLS)]
    pub(crate) default_sni: Option<DomainName>,
    /// How often TLS session ticket keys rotate; a ticket is honoured for one to two periods.
    #[arg(long, env = "PORTER_TLS_TICKET_ROTATION", default_value = "12h", value_parser = duration, help_heading = heading::TLS)]
    pub(crate) tls_ticket_rotation: Duration,
    /// HSTS on the sites that set none (`site add|update --hsts-max-age`): off, 1y, or a
    /// max-age such as 180d. Off by default, as Caddy and Traefik leave it: a browser that has
    /// seen HSTS refuses a site's plain HTTP, and any certificate error, for the whole max-age,
    /// so a customer site whose certificate lapses or that moves away is locked out for its
    /// visitors; the platform turns it on knowingly.
    #[arg(long, env = "PORTER_HSTS_DEFAULT", default_value = "off", value_name = "off|1y|DURATION", value_parser = hsts_max_age, help_heading = heading::TLS)]
    pub(crate) hsts_default: u64,
    /// On-demand TLS: a handshake for a name Porter does not serve, and no rule of `porter
    /// on-demand allow` covers, asks this endpoint (`http://HOST:PORT/PATH`; `GET
    /// PATH?domain=NAME`, 200 = allowed); an allowed name becomes a site whose certificate is
    /// obtained while the client waits (within --handshake-timeout).
    #[arg(long, env = "PORTER_ON_DEMAND_ASK", value_parser = crate::served::on_demand::ask_url, requires = "on_demand_upstream", help_heading = heading::TLS)]
    pub(crate) on_demand_ask: Option<http::Uri>,
    /// On-demand TLS is on with this: where the sites it adds send their requests. Without
    /// --on-demand-ask, only names the rules of `porter on-demand allow` cover are allowed.
    #[arg(long, env = "PORTER_ON_DEMAND_UPSTREAM", value_parser = upstream, help_heading = heading::TLS)]
    pub(crate) on_demand_upstream: Option<porter_store::Upstream>,
    /// Sites added on demand a minute, at most (names past it are refused until it refills).
    #[arg(long, env = "PORTER_ON_DEMAND_RATE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..), help_heading = heading::TLS)]
    pub(crate) on_demand_rate: u32,
    #[command(flatten, next_help_heading = heading::ACME)]
    pub(crate) acme: AcmeArgs,
    /// Threads serving client connections (each runs its connections to their end); one per
    /// CPU the process may use when not given.
    #[arg(long, env = "PORTER_EDGE_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024), help_heading = heading::LIMITS)]
    pub(crate) edge_threads: Option<u16>,
    /// Time to connect to an upstream before answering 504.
    #[arg(long, env = "PORTER_UPSTREAM_CONNECT_TIMEOUT", default_value = "5s", value_parser = duration, help_heading = heading::LIMITS)]
    pub(crate) upstream_connect_timeout: Duration,
    /// Time to wait for an upstream's response headers (then 504), and for body data in either
    /// direction (then the exchange is aborted).
    #[arg(long, env = "PORTER_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = duration, help_heading = heading::LIMITS)]
    pub(crate) upstream_timeout: Duration,
    /// Time a store operation may take before it fails (logged and counted): a disk that
    /// stops answering then fails requests instead of holding them for ever.
    #[arg(long, env = "PORTER_STORE_DEADLINE", default_value = "10s", value_parser = duration, help_heading = heading::LIMITS)]
    pub(crate) store_deadline: Duration,
    #[command(flatten, next_help_heading = heading::LIMITS)]
    pub(crate) limits: LimitArgs,
    /// In a fleet (an etcd store): where the other nodes send this node the requests of its
    /// apps, HOST:PORT of its --http listener as they reach it (by default the --http address,
    /// unless that is a wildcard such as 0.0.0.0).
    #[arg(long, env = "PORTER_NODE_ADDR", help_heading = heading::FLEET)]
    pub(crate) node_addr: Option<std::net::SocketAddr>,
    /// The WAF mode of sites that set none (`site update --waf`): off, detect or block, at
    /// paranoia 1 and anomaly threshold 5.
    #[arg(long, env = "PORTER_WAF_DEFAULT", default_value = "off", help_heading = heading::WAF)]
    pub(crate) waf_default: porter_store::WafMode,
    /// Another copy of the OWASP CRS than Debian's modsecurity-crs: DIR/crs-setup.conf when
    /// present, then DIR/rules/*.conf (or DIR/*.conf). Loaded at start and on `porter waf
    /// reload`.
    #[arg(long, env = "PORTER_WAF_RULES", value_name = "DIR", help_heading = heading::WAF)]
    pub(crate) waf_rules: Option<std::path::PathBuf>,
    /// Memory the HTTP cache may hold, node-wide, for the sites that turn it on (`site update
    /// --cache on`); 0: no cache in memory.
    #[arg(long, env = "PORTER_CACHE_MEMORY", default_value = "256MiB", value_parser = size, help_heading = heading::CACHE)]
    pub(crate) cache_memory: u64,
    /// A directory for the cache's disk tier: every stored response is written there too and
    /// found again after a restart. Off when not given.
    #[arg(long, env = "PORTER_CACHE_DIR", value_name = "DIR", help_heading = heading::CACHE)]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Disk the cache's disk tier may hold (with --cache-dir).
    #[arg(long, env = "PORTER_CACHE_DISK", default_value = "10GiB", value_parser = size, help_heading = heading::CACHE)]
    pub(crate) cache_disk: u64,
    /// Access log: a file (appended to; reopened on SIGHUP, so logrotate can move it) or `-`
    /// for stdout. Off when not given.
    #[arg(long, env = "PORTER_ACCESS_LOG", help_heading = heading::LOGS)]
    pub(crate) access_log: Option<crate::observe::access_log::Destination>,
    /// Access log lines: `combined` (Apache's and nginx's, with the site, duration and upstream
    /// time added) or `json`.
    #[arg(long, env = "PORTER_ACCESS_LOG_FORMAT", default_value = "combined", help_heading = heading::LOGS)]
    pub(crate) access_log_format: crate::observe::access_log::Format,
    /// A listener of its own for Prometheus metrics (`GET /metrics`, no token), like
    /// 127.0.0.1:9180. Without it, `/metrics` is on the admin API, behind its token.
    #[arg(long, env = "PORTER_METRICS", help_heading = heading::LOGS)]
    pub(crate) metrics: Option<SocketAddr>,
    /// Sites with a `site` label of their own in the request metrics (the busiest); the
    /// others are summed as `other`.
    #[arg(long, env = "PORTER_METRICS_SITES", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..), help_heading = heading::LOGS)]
    pub(crate) metrics_sites: u16,
    /// For tests: while this file exists, store operations wait, as on a stalled disk.
    #[arg(long, hide = true)]
    pub(crate) test_store_stall_file: Option<std::path::PathBuf>,
}

/// What one client, one site or all of them together may hold of the edge: the flags of
/// `porter serve` that bound clients. A count of 0 turns its limit off.
#[derive(Debug, clap::Args)]
pub(crate) struct LimitArgs {
    /// Most client connections open at once, both listeners together.
    #[arg(long, env = "PORTER_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub(crate) max_connections: usize,
    /// Most client connections one client address (IPv4, or IPv6 /64) may hold open.
    #[arg(long, env = "PORTER_MAX_CONNECTIONS_PER_IP", default_value_t = 512)]
    pub(crate) max_connections_per_ip: u32,
    /// Most TLS handshakes one client address may have under way at once; more connections
    /// are closed before their ClientHello is read.
    #[arg(long, env = "PORTER_MAX_HANDSHAKES_PER_IP", default_value_t = 64)]
    pub(crate) max_handshakes_per_ip: u32,
    /// New TLS handshakes a second one client address may start (twice as many at once);
    /// more connections are closed before their ClientHello is read.
    #[arg(long, env = "PORTER_HANDSHAKE_RATE_PER_IP", default_value_t = 200)]
    pub(crate) handshake_rate_per_ip: u32,
    /// Time a client has to complete its TLS handshake.
    #[arg(long, env = "PORTER_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub(crate) handshake_timeout: Duration,
    /// Time a client has to send a request's headers, counted from the connection (or the end
    /// of the previous request, so it is also the HTTP/1 keep-alive idle time): a client that
    /// sends no request (nothing, or only the HTTP/2 preface), or trickles, is closed.
    #[arg(long, env = "PORTER_HEADER_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub(crate) header_timeout: Duration,
    /// Bytes a second a request body must average over each 5 s Porter waits for it (as
    /// Apache's mod_reqtimeout does by default); slower is answered 408. 0 for no minimum.
    #[arg(long, env = "PORTER_MIN_BODY_RATE", default_value_t = 500)]
    pub(crate) min_body_rate: u32,
    /// Memory ceiling: past 90 % of it, idle keep-alive connections are closed and new ones
    /// refused until under 85 %. Defaults to the control group's limit (systemd's
    /// `MemoryMax=`, a container's), if any; 0 for none.
    #[arg(long, env = "PORTER_MAX_MEMORY", value_parser = size)]
    pub(crate) max_memory: Option<u64>,
    /// Largest request head (request line and headers) in bytes; larger is answered 431.
    #[arg(long, env = "PORTER_MAX_HEADER_SIZE", default_value = "64KiB", value_parser = header_size)]
    pub(crate) max_header_size: usize,
    /// Most header fields in one request; more is answered 431.
    #[arg(long, env = "PORTER_MAX_HEADERS", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub(crate) max_headers: u16,
    /// Requests one site may have in flight at once (until their responses are sent), all
    /// edge threads together; more wait in its queue.
    #[arg(long, env = "PORTER_SITE_CONCURRENCY", default_value_t = 256)]
    pub(crate) site_concurrency: u32,
    /// Requests one upstream (or app) may have in flight at once, whichever sites they are
    /// for; more wait in its queue.
    #[arg(long, env = "PORTER_UPSTREAM_CONCURRENCY", default_value_t = 0)]
    pub(crate) upstream_concurrency: u32,
    /// Requests that may wait for a site's (or an upstream's) slot; more are answered 503 at
    /// once.
    #[arg(long, env = "PORTER_REQUEST_QUEUE", default_value_t = 256)]
    pub(crate) request_queue: u32,
    /// Time a request may wait in a queue before it is answered 503.
    #[arg(long, env = "PORTER_QUEUE_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub(crate) queue_timeout: Duration,
    /// Requests a second one client address may send one site (a token bucket); more are
    /// answered 429 with `Retry-After`.
    #[arg(long, env = "PORTER_RATE_PER_CLIENT", default_value_t = 0)]
    pub(crate) rate_per_client: u32,
    /// Requests a client may send a site at once within its rate; twice the rate when 0.
    #[arg(long, env = "PORTER_RATE_BURST", default_value_t = 0)]
    pub(crate) rate_burst: u32,
}

/// An HSTS max-age in seconds: `off` (0), `1y`, or a duration.
fn hsts_max_age(text: &str) -> Result<u64, String> {
    match text {
        "off" => Ok(0),
        "1y" => Ok(porter_store::HSTS_ONE_YEAR),
        other => duration(other)
            .map(|d| d.as_secs())
            .map_err(|e| format!("{e} (or off, or 1y)")),
    }
}

/// A request head size: at least 8 KiB (the smallest read buffer of hyper), at most 1 MiB.
fn header_size(s: &str) -> Result<usize, String> {
    let bytes = size(s)?;
    if !(8 << 10..=1 << 20).contains(&bytes) {
        return Err(format!("{s:?}: between 8KiB and 1MiB"));
    }
    Ok(bytes as usize)
}

/// The ACME flags of `porter serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct AcmeArgs {
    /// The CA's ACME directory URL. Given again, the next CA to try when a site's orders keep
    /// failing at the one before (see --acme-fallback-after), with its own EAB as
    /// 'URL eab=KID:HMAC' where it needs one.
    #[arg(long, env = "PORTER_ACME_DIRECTORY", default_value = porter_acme::LETS_ENCRYPT, value_parser = directory)]
    pub(crate) acme_directory: Vec<CaArg>,
    /// Failed attempts at one CA before the next --acme-directory is tried (the next renewal
    /// starts again from the first).
    #[arg(long, env = "PORTER_ACME_FALLBACK_AFTER", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) acme_fallback_after: u32,
    /// Use Let's Encrypt's staging CA instead of --acme-directory.
    #[arg(long, env = "PORTER_ACME_STAGING")]
    pub(crate) acme_staging: bool,
    /// Contact email for the ACME account.
    #[arg(long, env = "PORTER_ACME_EMAIL", value_parser = email)]
    pub(crate) acme_email: Option<String>,
    /// Agree to the CA's terms of service. Without it, Porter obtains no certificate.
    #[arg(long, env = "PORTER_ACME_AGREE_TOS")]
    pub(crate) acme_agree_tos: bool,
    /// A PEM root to trust for the CA's own HTTPS (private and test CAs).
    #[arg(long, env = "PORTER_ACME_CA_ROOT")]
    pub(crate) acme_ca_root: Option<PathBuf>,
    /// External Account Binding key id, for CAs that require it.
    #[arg(long, env = "PORTER_ACME_EAB_KID", requires = "acme_eab_hmac")]
    pub(crate) acme_eab_kid: Option<String>,
    /// External Account Binding HMAC key, base64url as the CA gives it.
    #[arg(long, env = "PORTER_ACME_EAB_HMAC", requires = "acme_eab_kid", value_parser = hmac_key, hide_env_values = true)]
    pub(crate) acme_eab_hmac: Option<HmacKey>,
    /// The challenge type tried first (the other one is the fallback). DNS-01 is chosen per
    /// site (`site add --acme-challenge dns-01`), where a zone covers it.
    #[arg(long, env = "PORTER_ACME_CHALLENGE", default_value = "http-01", value_parser = server_challenge)]
    pub(crate) acme_challenge: ChallengeKind,
    /// Key type of new certificates: ecdsa-p256 or rsa-2048.
    #[arg(long, env = "PORTER_ACME_KEY_TYPE", default_value = "ecdsa-p256")]
    pub(crate) acme_key_type: KeyType,
    /// ACME profile to request in new orders (for example tlsserver or shortlived).
    #[arg(long, env = "PORTER_ACME_PROFILE")]
    pub(crate) acme_profile: Option<String>,
    /// Orders in flight at once.
    #[arg(long, env = "PORTER_ACME_CONCURRENCY", default_value_t = 4)]
    pub(crate) acme_concurrency: usize,
    /// Requests per second sent to the CA.
    #[arg(long, env = "PORTER_ACME_RATE", default_value_t = 10)]
    pub(crate) acme_rate: u32,
}

/// An EAB HMAC key; its `Debug` does not show it.
#[derive(Clone)]
pub(crate) struct HmacKey(Vec<u8>);

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(<redacted>)")
    }
}

/// The server-wide challenge: http-01 or tls-alpn-01 (DNS-01 needs a zone, so it is a site's
/// choice).
fn server_challenge(text: &str) -> Result<ChallengeKind, String> {
    match text.parse()? {
        ChallengeKind::Dns01 => Err("dns-01 is chosen per site (`site add|update --acme-challenge dns-01`, in a zone of `porter dns add`); the server's default is http-01 or tls-alpn-01".into()),
        kind => Ok(kind),
    }
}

fn hmac_key(s: &str) -> Result<HmacKey, String> {
    let trimmed = s.trim().trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map(HmacKey)
        .map_err(|_| "expected the base64url HMAC key the CA gave".to_owned())
}

/// A CA: its directory URL, and its EAB when given with it.
#[derive(Debug, Clone)]
pub(crate) struct CaArg {
    url: String,
    eab: Option<(String, HmacKey)>,
}

/// `URL` or `URL eab=KID:HMAC`.
fn directory(s: &str) -> Result<CaArg, String> {
    let mut words = s.split_whitespace();
    let url = words.next().unwrap_or_default();
    let uri: http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(format!("{url:?}: an ACME directory is an https:// URL"));
    }
    let eab = match words.next() {
        None => None,
        Some(word) => {
            let (kid, hmac) = word
                .strip_prefix("eab=")
                .and_then(|rest| rest.split_once(':'))
                .filter(|(kid, _)| !kid.is_empty())
                .ok_or_else(|| format!("{url}: after the URL, only eab=KID:HMAC"))?;
            Some((kid.to_owned(), hmac_key(hmac)?))
        }
    };
    if words.next().is_some() {
        return Err(format!("{url}: after the URL, only eab=KID:HMAC"));
    }
    Ok(CaArg {
        url: url.to_owned(),
        eab,
    })
}

fn email(s: &str) -> Result<String, String> {
    let (user, host) = s
        .split_once('@')
        .ok_or_else(|| format!("{s:?} is not an email address"))?;
    if user.is_empty() || DomainName::parse(host).is_err() || s.contains(char::is_whitespace) {
        return Err(format!("{s:?} is not an email address"));
    }
    Ok(s.to_owned())
}

impl AcmeArgs {
    /// The worker's configuration, or `None` when the terms were not agreed (no ACME at all).
    pub(crate) fn config(&self) -> Result<Option<porter_acme::Config>, String> {
        if !self.acme_agree_tos {
            return Ok(None);
        }
        if let Some(root) = &self.acme_ca_root {
            if !root.is_file() {
                return Err(format!("--acme-ca-root {}: no such file", root.display()));
            }
        }
        if self.acme_concurrency == 0 || self.acme_rate == 0 {
            return Err("--acme-concurrency and --acme-rate must be at least 1".into());
        }
        let eab = |given: &Option<(String, HmacKey)>| {
            given.as_ref().map(|(kid, hmac)| porter_acme::Eab {
                kid: kid.clone(),
                hmac: hmac.0.clone(),
            })
        };
        let (first, fallbacks) = self
            .acme_directory
            .split_first()
            .ok_or("--acme-directory: at least one CA")?;
        Ok(Some(porter_acme::Config {
            directory: if self.acme_staging {
                porter_acme::LETS_ENCRYPT_STAGING.to_owned()
            } else {
                first.url.clone()
            },
            contact: self
                .acme_email
                .iter()
                .map(|e| format!("mailto:{e}"))
                .collect(),
            ca_root: self.acme_ca_root.clone(),
            eab: match (&self.acme_eab_kid, &self.acme_eab_hmac) {
                (Some(kid), Some(hmac)) => Some(porter_acme::Eab {
                    kid: kid.clone(),
                    hmac: hmac.0.clone(),
                }),
                _ => eab(&first.eab),
            },
            challenge: self.acme_challenge,
            key_type: self.acme_key_type,
            profile: self.acme_profile.clone(),
            max_concurrent_orders: self.acme_concurrency,
            requests_per_second: self.acme_rate,
            fallbacks: fallbacks
                .iter()
                .map(|ca| porter_acme::Fallback {
                    directory: ca.url.clone(),
                    eab: eab(&ca.eab),
                })
                .collect(),
            fallback_after: self.acme_fallback_after,
        }))
    }
}

/// An upstream address, checked as `site add` checks it.
fn upstream(text: &str) -> Result<porter_store::Upstream, String> {
    porter_store::Upstream::parse(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::{directory, header_size, size};

    #[test]
    fn a_ca_is_a_directory_url_with_its_eab_when_it_needs_one() {
        let plain = directory("https://acme.example/dir").unwrap();
        assert_eq!(
            (plain.url.as_str(), plain.eab.is_none()),
            ("https://acme.example/dir", true)
        );
        let with = directory("https://zerossl.example/v2 eab=kid-1:aGVsbG8").unwrap();
        let (kid, hmac) = with.eab.unwrap();
        assert_eq!((kid.as_str(), hmac.0.as_slice()), ("kid-1", &b"hello"[..]));
        for bad in [
            "http://acme.example/dir",
            "https://acme.example/dir extra",
            "https://acme.example/dir eab=kid",
            "https://acme.example/dir eab=:aGVsbG8",
            "https://acme.example/dir eab=kid:!!!",
            "https://acme.example/dir eab=k:aGVsbG8 more",
        ] {
            assert!(directory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_sizes_read_as_bytes_within_bounds() {
        assert_eq!(header_size("64KiB"), Ok(64 * 1024));
        assert_eq!(header_size("16k"), Ok(16 * 1024));
        assert_eq!(header_size("1MiB"), Ok(1024 * 1024));
        assert_eq!(header_size("10000"), Ok(10_000));
        for bad in ["", "4KiB", "2MiB", "64 GB", "x", "99999999999999999999999"] {
            assert!(header_size(bad).is_err(), "{bad:?}");
        }
        assert_eq!(size("2GiB"), Ok(2 << 30));
        assert_eq!(size("0"), Ok(0));
        assert!(size("99999999999GiB").is_err());
    }
}
