//! Accepting a TLS connection: read the ClientHello, answer a TLS-ALPN-01 validation (RFC 8737)
//! from the answers in memory, refuse a name Porter does not serve with a fatal `unrecognized_name` alert
//! (rustls itself would say `access_denied`), then handshake.

use super::first_flight::{FirstFlight, Unexpected};
use super::resolver::server_name;
use crate::served::acme_tls::ALPN_ACME_TLS;
use crate::served::challenges::{Challenges, Lookup};
use crate::served::on_demand::OnDemand;
use crate::served::reload::LiveSites;
use rustls::ServerConfig;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, StartHandshake};

/// Why a connection was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    /// The client asked for a name no site serves.
    #[error("no certificate for {0:?}")]
    UnknownName(String),
    /// The client sent no SNI and no default name is configured.
    #[error("client sent no SNI and no --default-sni is set")]
    NoServerName,
    /// The connection failed or was not TLS.
    #[error("TLS handshake: {0}")]
    Handshake(#[from] std::io::Error),
}

/// A fatal alert record: `unrecognized_name` (112), `handshake_failure` (40) or
/// `unexpected_message` (10), TLS 1.2 record version as RFC 8446 section 5.1 asks of every
/// record after the ClientHello.
fn alert(description: u8) -> [u8; 7] {
    [21, 3, 3, 0, 2, 2, description]
}

/// Completes the handshake for a name the snapshot serves. Returns the stream and the name the
/// certificate was chosen for (used for HTTP/1.0 requests without `Host`), or `None` when the
/// connection was an ACME validation that has been answered.
pub(crate) async fn accept<IO>(
    io: IO,
    config: &Arc<ServerConfig>,
    (sites, on_demand): (&LiveSites, Option<&OnDemand>),
    challenges: &Challenges,
    default_sni: Option<&str>,
) -> Result<Option<(TlsStream<IO>, String)>, Refused>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut acceptor =
        LazyConfigAcceptor::new(rustls::server::Acceptor::default(), FirstFlight::new(io));
    let start = match (&mut acceptor).await {
        Ok(start) => StartHandshake::from_parts(start.accepted, start.io.into_inner()),
        Err(e) => return Err(unexpected_first_message(acceptor, e).await),
    };
    let hello = start.client_hello();
    let sni = hello.server_name();
    let Some(name) = server_name(sni, default_sni) else {
        return Err(refuse(start.io, 40, Refused::NoServerName).await);
    };
    let validation = hello
        .alpn()
        .is_some_and(|mut protocols| protocols.any(|p| p == ALPN_ACME_TLS));
    if validation {
        // Boxed, being rare: every handshake's future would carry its size otherwise.
        let Lookup::Found(challenge_config) = Box::pin(challenges.tls_alpn(&name)).await else {
            return Err(refuse(start.io, 112, Refused::UnknownName(name)).await);
        };
        let mut stream = start.into_stream(challenge_config).await?;
        // RFC 8737 section 3: the handshake is the answer; nothing else is served.
        let _ = stream.shutdown().await;
        crate::runtime::log_limit::limited!(
            info,
            name = &name,
            "answered a TLS-ALPN-01 validation"
        );
        return Ok(None);
    }
    // A name the store did not answer for in time is refused like an unknown one.
    let mut known = sites
        .serving(&name)
        .await
        .is_ok_and(|snapshot| snapshot.cert(&name).is_some());
    if let (false, Some(on_demand)) = (known, on_demand) {
        known = on_demand.obtain(&name, sites).await;
    }
    if !known {
        return Err(refuse(start.io, 112, Refused::UnknownName(name)).await);
    }
    let stream = start.into_stream(config.clone()).await?;
    Ok(Some((stream, name)))
}

/// A connection that did not open with a ClientHello, or sent what TLS does not have with it
/// (see [`FirstFlight`]), gets the `unexpected_message` alert a rustls connection sends for a
/// message out of place (RFC 8446 section 6.2): rustls's `Acceptor`, which reads the
/// ClientHello apart, fails without one (found with tlsfuzzer). Other failures have had their
/// alert sent already, or have none.
async fn unexpected_first_message<IO>(
    mut acceptor: LazyConfigAcceptor<FirstFlight<IO>>,
    e: std::io::Error,
) -> Refused
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let out_of_place = e.get_ref().is_some_and(|inner| {
        inner.is::<Unexpected>()
            || inner.downcast_ref::<rustls::Error>().is_some_and(|error| {
                matches!(
                    error,
                    rustls::Error::InappropriateMessage { .. }
                        | rustls::Error::InappropriateHandshakeMessage { .. }
                )
            })
    });
    match acceptor.take_io() {
        Some(io) if out_of_place => refuse(io, 10, Refused::Handshake(e)).await,
        _ => Refused::Handshake(e),
    }
}

async fn refuse<IO: AsyncWrite + Unpin>(mut io: IO, description: u8, why: Refused) -> Refused {
    // Best effort: the client may already be gone.
    let _ = io.write_all(&alert(description)).await;
    let _ = io.shutdown().await;
    why
}
