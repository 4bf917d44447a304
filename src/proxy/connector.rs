//! Connections to upstreams, TCP or unix socket, for hyper's pooled client. A unix socket
//! upstream travels through the client as a synthetic host name so that the pool keys on it.

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use porter_store::Upstream;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Prefix of the synthetic host that stands for a unix socket path (hex-encoded after it).
const UNIX_HOST_PREFIX: &str = "unix-";

/// The URI authority under which the client reaches `upstream`.
pub(crate) fn authority(upstream: &Upstream) -> String {
    match upstream {
        Upstream::Tcp { .. } => upstream.to_string(),
        Upstream::Unix(path) => format!(
            "{UNIX_HOST_PREFIX}{}",
            hex::encode(path.as_os_str().as_encoded_bytes())
        ),
    }
}

/// Connects to what [`authority`] encoded, within a deadline.
#[derive(Clone)]
pub(crate) struct UpstreamConnector {
    pub(crate) timeout: Duration,
}

/// A connection to an upstream.
pub(crate) enum UpstreamStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

async fn connect(uri: http::Uri) -> io::Result<UpstreamStream> {
    let host = uri
        .host()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "upstream URI without host"))?;
    if let Some(hex_path) = host.strip_prefix(UNIX_HOST_PREFIX) {
        let bytes =
            hex::decode(hex_path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let path = PathBuf::from(String::from_utf8_lossy(&bytes).into_owned());
        return Ok(UpstreamStream::Unix(UnixStream::connect(path).await?));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(UpstreamStream::Tcp(stream))
}

impl tower_service::Service<http::Uri> for UpstreamConnector {
    type Response = TokioIo<UpstreamStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connect(uri)).await {
                Ok(result) => result.map(TokioIo::new),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connecting to the upstream timed out",
                )),
            }
        })
    }
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamStream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
