//! Starting the edge: the threads that accept and serve connections on `--http` and
//! `--https`, what they share (TLS configuration, limits, admission), and the services that
//! keep what they serve current (sites, ACME challenge answers, ticket keys, memory ceiling).

use super::parts::Parts;
use crate::proxy::{
    quic_server_config, Admission, Bounds, Edge, EdgeShared, EdgeThreads, Forwarder, Http3, Limits,
    LoginRates, MemoryCeiling, PerIp, ProxyProtocol, Rates,
};
use crate::runtime::service::{Services, Start};
use crate::serve::config::ServeArgs;
use crate::served::challenges::{self, Challenges};
use crate::{served::reload, tls};
use anyhow::Context as _;
use http::HeaderValue;
use std::net::UdpSocket;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Starts the edge threads on the `http` and `https` listeners, and the services that keep
/// what they serve current.
pub(super) async fn start(
    parts: &Parts,
    args: &ServeArgs,
    (http, https, udp): (
        TcpListener,
        TcpListener,
        Option<(UdpSocket, watch::Receiver<bool>)>,
    ),
    services: &mut Services,
) -> anyhow::Result<EdgeThreads> {
    // Subscribe before the first build so that no change slips in between. The build runs in
    // the sites service; connections load what they need meanwhile.
    let (changes, challenge_changes) = (parts.store.subscribe(), parts.store.subscribe());
    let answers = Arc::new(Challenges::new());
    let default_sni = args.default_sni.as_ref().map(|d| d.to_string());
    let tickets = tls::Keyring::open(parts.store.as_ref(), args.tls_ticket_rotation).await?;
    let tls_config = tls::server_config(parts.sites.clone(), default_sni, tickets.clone())?;
    let http3 = match udp {
        Some((socket, free)) => Some(Http3 {
            socket,
            config: quic_server_config(&tls_config)?,
            free,
        }),
        None => None,
    };
    let https_port = https.local_addr()?.port();
    let alt_svc = http3.is_some().then(|| alt_svc(https_port));
    let edges = edges(parts, args, &answers, (https_port, alt_svc));
    let limits = limits(parts, args, &edges, services);
    let (rotation, store) = (args.tls_ticket_rotation, parts.store.clone());
    services.start("ticket keys", Start::Now, |stop| {
        tickets.run(store, rotation, stop)
    });
    let store = parts.store.clone();
    services.start("challenge answers", Start::Now, |stop| {
        challenges::run(store, answers, challenge_changes, stop)
    });
    let (readiness, live) = (services.readiness(), parts.sites.clone());
    services.start("sites", Start::Now, |stop| {
        reload::run(live, changes, readiness, stop)
    });
    let shared = EdgeShared {
        tls: tls_config,
        limits,
        shutdown: services.shutdown(),
        grace: args.shutdown_grace,
    };
    EdgeThreads::start(
        (&http.into_std()?, &https.into_std()?, http3),
        edges,
        &shared,
    )
    .context("cannot start the edge threads")
}

/// What HTTPS responses say to offer HTTP/3 on `port` (RFC 7838), for a day.
fn alt_svc(port: u16) -> HeaderValue {
    HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400"))
        .expect("a port makes a valid header value")
}

/// What each edge thread holds: the shared parts, and its own counters and upstream pool.
fn edges(
    parts: &Parts,
    args: &ServeArgs,
    answers: &Arc<Challenges>,
    (https_port, alt_svc): (u16, Option<HeaderValue>),
) -> Vec<Arc<Edge>> {
    let bounds = &args.limits;
    let queue = |limit| Bounds {
        limit,
        queue: bounds.request_queue,
        wait: bounds.queue_timeout,
    };
    let admission = Arc::new(Admission::new(
        queue(bounds.site_concurrency),
        queue(bounds.upstream_concurrency),
        (bounds.rate_per_client, bounds.rate_burst),
        parts.shed.clone(),
    ));
    let wp_logins = Arc::new(LoginRates::new(0, 0));
    let default_sni = args.default_sni.as_ref().map(|d| d.to_string());
    let edge = |stats: &Arc<_>| Edge {
        stats: Arc::clone(stats),
        apps: parts.apps.clone(),
        challenges: answers.clone(),
        sites: parts.sites.clone(),
        admission: admission.clone(),
        forwarder: Forwarder::new(
            args.upstream_connect_timeout,
            args.upstream_timeout,
            bounds.min_body_rate,
        ),
        https_port,
        alt_svc: alt_svc.clone(),
        default_sni: default_sni.clone(),
        crowded: tokio::sync::Notify::new(),
        access_log: parts.access_log.clone(),
        on_demand: parts.on_demand.clone(),
        wp_logins: wp_logins.clone(),
        waf: parts.waf.clone(),
        fleet: parts.fleet.clone(),
        cache: parts.cache.clone(),
    };
    parts.edge_stats.iter().map(|s| Arc::new(edge(s))).collect()
}

/// The connection limits every edge thread shares, with the memory ceiling's watch (and the
/// log summaries) started as services.
fn limits(
    parts: &Parts,
    args: &ServeArgs,
    edges: &[Arc<Edge>],
    services: &mut Services,
) -> Arc<Limits> {
    let bounds = &args.limits;
    let memory = Arc::new(MemoryCeiling::new(
        bounds
            .max_memory
            .or_else(crate::runtime::memory::cgroup_limit),
    ));
    let (watched, shed, ceiling) = (edges.to_vec(), parts.shed.clone(), memory.clone());
    services.start("log summaries", Start::Now, crate::runtime::log_limit::run);
    services.start("memory ceiling", Start::Now, |stop| {
        ceiling.watch(watched, shed, stop)
    });
    Arc::new(Limits {
        connections: Arc::new(tokio::sync::Semaphore::new(bounds.max_connections)),
        per_ip: PerIp::new(bounds.max_connections_per_ip),
        handshakes_per_ip: PerIp::new(bounds.max_handshakes_per_ip),
        handshake_rate: Rates::new(bounds.handshake_rate_per_ip, 0),
        handshake_timeout: bounds.handshake_timeout,
        header_timeout: bounds.header_timeout,
        max_header_size: bounds.max_header_size,
        max_headers: usize::from(bounds.max_headers),
        shed: parts.shed.clone(),
        memory,
        // 5 % of the limit (at least one): from there on, idle connections make room.
        crowded_below: (bounds.max_connections / 20).max(1),
        proxy_protocol: (!args.proxy_protocol.is_empty()).then(|| ProxyProtocol {
            trusted: args.proxy_protocol.clone(),
        }),
    })
}
