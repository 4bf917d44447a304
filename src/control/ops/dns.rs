//! `porter dns`: the zones Porter may update for DNS-01 (RFC 2136 dynamic updates signed with
//! TSIG). The secret goes in and never comes out: listings show the key's name and algorithm.

use super::OpError;
use base64::Engine as _;
use porter_store::{
    ChallengeKind, DnsZone, DomainName, SecretBytes, Store, StoreError, TsigAlgorithm,
};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// `dns add`: the same type for the command line, the admin API and the operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub(crate) struct ZoneSpec {
    /// The zone's primary server, which takes the updates: IP or IP:PORT (port 53 when
    /// omitted).
    #[arg(long)]
    pub(crate) server: String,
    /// The TSIG key's name (taken from --tsig-key-file when it holds a BIND key clause).
    #[serde(default)]
    #[arg(long)]
    pub(crate) tsig_name: Option<String>,
    /// The TSIG secret in base64. Prefer --tsig-key-file: a command line is visible to every
    /// user of the machine.
    #[serde(default)]
    #[arg(long, conflicts_with = "tsig_key_file")]
    pub(crate) tsig_key: Option<String>,
    /// A file with the TSIG secret: the base64 alone, or the `key "NAME" { algorithm ...;
    /// secret "..."; };` clause `tsig-keygen` prints.
    #[serde(skip)]
    #[arg(long, value_name = "FILE")]
    pub(crate) tsig_key_file: Option<PathBuf>,
    /// hmac-sha256 (the default), hmac-sha384 or hmac-sha512.
    #[serde(default)]
    #[arg(long)]
    pub(crate) tsig_alg: Option<String>,
}

/// A zone as listed: never its secret.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ZoneView {
    pub(crate) zone: String,
    pub(crate) server: String,
    pub(crate) tsig_name: String,
    pub(crate) tsig_alg: String,
}

impl From<&DnsZone> for ZoneView {
    fn from(zone: &DnsZone) -> Self {
        ZoneView {
            zone: zone.zone.to_string(),
            server: zone.server.to_string(),
            tsig_name: zone.tsig_name.clone(),
            tsig_alg: zone.tsig_algorithm.to_string(),
        }
    }
}

impl ZoneSpec {
    /// Reads `--tsig-key-file` into the secret (and the key's name and algorithm, when the
    /// file names them and the flags do not).
    pub(crate) fn read_key_file(&mut self) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let Some(path) = self.tsig_key_file.take() else {
            return Ok(());
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let key = parse_key_file(&text)
            .with_context(|| format!("{} holds no TSIG secret", path.display()))?;
        self.tsig_key = Some(key.secret);
        if self.tsig_name.is_none() {
            self.tsig_name = key.name;
        }
        if self.tsig_alg.is_none() {
            self.tsig_alg = key.algorithm;
        }
        Ok(())
    }
}

/// What a key file gave.
#[derive(Debug, PartialEq)]
struct KeyFile {
    name: Option<String>,
    algorithm: Option<String>,
    secret: String,
}

/// A BIND key clause (`key "name" { algorithm hmac-sha256; secret "..."; };`), or a bare
/// base64 secret.
fn parse_key_file(text: &str) -> Option<KeyFile> {
    let text = text.trim();
    if !text.contains('{') {
        return (!text.is_empty()).then(|| KeyFile {
            name: None,
            algorithm: None,
            secret: text.to_owned(),
        });
    }
    let unquote = |s: &str| s.trim().trim_matches('"').to_owned();
    let name = text
        .strip_prefix("key")
        .and_then(|rest| rest.split('{').next())
        .map(unquote)
        .filter(|n| !n.is_empty());
    let body = text.split_once('{')?.1;
    let mut algorithm = None;
    let mut secret = None;
    for statement in body.split(';') {
        let mut words = statement.split_whitespace();
        match (words.next(), words.next()) {
            (Some("algorithm"), Some(value)) => algorithm = Some(unquote(value)),
            (Some("secret"), Some(value)) => secret = Some(unquote(value)),
            _ => {}
        }
    }
    Some(KeyFile {
        name,
        algorithm,
        secret: secret?,
    })
}

/// `dns add`: checks everything, then adds or replaces the zone.
pub(crate) async fn put_zone(
    store: &dyn Store,
    zone: &str,
    spec: ZoneSpec,
) -> Result<ZoneView, OpError> {
    let refused = |why: String| OpError::Refused(why);
    let zone = DomainName::parse(zone).map_err(StoreError::from)?;
    let server = parse_server(&spec.server).map_err(refused)?;
    let tsig_name = spec
        .tsig_name
        .ok_or_else(|| refused("give --tsig-name (or a key file that names the key)".into()))?;
    let secret = spec
        .tsig_key
        .ok_or_else(|| refused("give --tsig-key-file (or --tsig-key)".into()))?;
    let secret = base64::engine::general_purpose::STANDARD
        .decode(secret.trim())
        .map_err(|e| refused(format!("the TSIG secret is not base64: {e}")))?;
    let tsig_algorithm = match spec.tsig_alg {
        Some(alg) => alg.parse::<TsigAlgorithm>().map_err(StoreError::from)?,
        None => TsigAlgorithm::HmacSha256,
    };
    let record = DnsZone {
        zone,
        server,
        tsig_name: tsig_name.trim_end_matches('.').to_ascii_lowercase(),
        tsig_algorithm,
        tsig_key: SecretBytes::new(secret),
    };
    store.put_dns_zone(record.clone()).await?;
    Ok(ZoneView::from(&record))
}

/// `IP` or `IP:PORT`, `[v6]:PORT`; port 53 when omitted.
fn parse_server(input: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = input.parse::<SocketAddr>() {
        return Ok(addr);
    }
    input
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            format!("--server {input:?}: expected the server's IP address, with :PORT if not 53")
        })
}

pub(crate) async fn list_zones(store: &dyn Store) -> Result<Vec<ZoneView>, OpError> {
    Ok(store
        .dns_zones()
        .await?
        .iter()
        .map(ZoneView::from)
        .collect())
}

/// `dns remove`: refused while an ACME site can only be validated through this zone.
pub(crate) async fn remove_zone(store: &dyn Store, zone: &str) -> Result<(), OpError> {
    let apex = DomainName::parse(zone).map_err(StoreError::from)?;
    let zones = store.dns_zones().await?;
    let others: Vec<DnsZone> = zones.iter().filter(|z| z.zone != apex).cloned().collect();
    let users: Vec<String> = store
        .sites()
        .await?
        .into_iter()
        .filter(|site| {
            let needs_dns =
                site.domain.is_wildcard() || site.challenge == Some(ChallengeKind::Dns01);
            site.acme
                && needs_dns
                && DnsZone::for_name(&zones, &site.domain).is_some_and(|z| z.zone == apex)
                && DnsZone::for_name(&others, &site.domain).is_none()
        })
        .map(|site| site.domain.to_string())
        .collect();
    if !users.is_empty() {
        return Err(StoreError::InUse(format!(
            "DNS zone {apex} validates {}: remove those sites, or give them another challenge type, first",
            users.join(", ")
        ))
        .into());
    }
    Ok(store.remove_dns_zone(&apex).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_as_tsig_keygen_writes_them_or_bare() {
        let bind = "key \"porter\" {\n\talgorithm hmac-sha512;\n\tsecret \"c2VjcmV0\";\n};\n";
        assert_eq!(
            parse_key_file(bind),
            Some(KeyFile {
                name: Some("porter".into()),
                algorithm: Some("hmac-sha512".into()),
                secret: "c2VjcmV0".into()
            })
        );
        assert_eq!(parse_key_file("c2VjcmV0\n").unwrap().secret, "c2VjcmV0");
        assert_eq!(
            parse_key_file("key \"x\" { algorithm hmac-sha256; };"),
            None
        );
        assert_eq!(parse_key_file("  \n"), None);
    }

    #[test]
    fn servers_default_to_port_53() {
        assert_eq!(parse_server("127.0.0.1").unwrap().port(), 53);
        assert_eq!(parse_server("127.0.0.1:5353").unwrap().port(), 5353);
        assert_eq!(parse_server("[::1]:5353").unwrap().port(), 5353);
        assert_eq!(parse_server("::1").unwrap().port(), 53);
        assert!(parse_server("ns.example.com").is_err());
    }
}
