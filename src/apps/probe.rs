//! Readiness and health checks: a TCP (or unix socket) connection, or `GET path` answered with
//! the expected status. Each check has its own deadline.

use porter_store::{HealthCheck, Upstream};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Deadline of one check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `upstream` passes `check` now.
pub(super) async fn passes(upstream: &Upstream, check: &HealthCheck) -> bool {
    tokio::time::timeout(CHECK_TIMEOUT, run(upstream, check))
        .await
        .unwrap_or(false)
}

async fn run(upstream: &Upstream, check: &HealthCheck) -> bool {
    match upstream {
        Upstream::Tcp { host, port } => {
            match tokio::net::TcpStream::connect((host.as_str(), *port)).await {
                Ok(stream) => http_check(stream, check).await,
                Err(_) => false,
            }
        }
        Upstream::Unix(path) => match tokio::net::UnixStream::connect(path).await {
            Ok(stream) => http_check(stream, check).await,
            Err(_) => false,
        },
    }
}

async fn http_check<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, check: &HealthCheck) -> bool {
    let HealthCheck::Http { path, status } = check else {
        return true;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: porter-health\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        match stream.read(&mut head[len..]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => len += n,
        }
    }
    // "HTTP/1.x NNN"
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        == Some(*status)
}
