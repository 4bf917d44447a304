//! One check of an upstream, within a deadline: a connection accepted, or `GET path` answered
//! with a status. The apps' readiness checks and the sites' active checks both ask it.

use porter_store::Upstream;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What a check asks.
pub(crate) enum Ask<'a> {
    /// A connection accepted.
    Connect,
    /// `GET path` with this Host: the status of the answer.
    Get { host: &'a str, path: &'a str },
}

/// Checks `upstream` within `timeout`: the status of the answer (`None` for
/// [`Ask::Connect`]), or why there was none.
pub(crate) async fn check(
    upstream: &Upstream,
    ask: &Ask<'_>,
    timeout: Duration,
) -> Result<Option<u16>, String> {
    let checking = async {
        match upstream {
            Upstream::Tcp { host, port } => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await;
                answer(stream.map_err(|e| e.to_string())?, ask).await
            }
            Upstream::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await;
                answer(stream.map_err(|e| e.to_string())?, ask).await
            }
        }
    };
    tokio::time::timeout(timeout, checking)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", timeout.as_secs_f32())))
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    ask: &Ask<'_>,
) -> Result<Option<u16>, String> {
    let Ask::Get { host, path } = ask else {
        return Ok(None);
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: porter-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // "HTTP/1.x NNN"
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|_| "closed without an answer".to_owned())?;
    let status = head
        .strip_prefix(b"HTTP/1.")
        .and_then(|rest| std::str::from_utf8(&rest[2..]).ok())
        .and_then(|status| status.parse::<u16>().ok())
        .ok_or_else(|| "answered something that is not HTTP/1".to_owned())?;
    Ok(Some(status))
}
