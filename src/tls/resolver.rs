//! The only place that implements rustls' certificate resolver: a lock-free read of the
//! current snapshot by SNI (or the configured default name when the client sends none).

use crate::served::reload::LiveSites;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

pub(super) struct SnapshotResolver {
    sites: Arc<LiveSites>,
    default_sni: Option<String>,
}

impl SnapshotResolver {
    pub(super) fn new(sites: Arc<LiveSites>, default_sni: Option<String>) -> Self {
        SnapshotResolver { sites, default_sni }
    }
}

impl std::fmt::Debug for SnapshotResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotResolver")
            .field("default_sni", &self.default_sni)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SnapshotResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = server_name(hello.server_name(), self.default_sni.as_deref())?;
        let now = porter_store::unix_now();
        self.sites
            .current()
            .cert(&name)
            .and_then(|c| c.at(now).cloned())
    }
}

/// The name to serve: the client's SNI, lowercased, or the default when it sent none.
pub(crate) fn server_name(sni: Option<&str>, default_sni: Option<&str>) -> Option<String> {
    match sni {
        Some(name) => Some(name.trim_end_matches('.').to_ascii_lowercase()),
        None => default_sni.map(str::to_owned),
    }
}
