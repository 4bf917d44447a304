//! The CLI's side of the admin API: one request per connection to the running server.

use super::discovery::Discovery;
use super::token;
use super::AdminAddr;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Deadline for one admin call, generous for an upstream reachability check.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A byte stream to the admin API, TCP or unix socket.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// How a call to the admin API failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// Nothing answers at the address the discovery file names.
    #[error("cannot reach the admin API at {addr}: {source}")]
    Unreachable {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The server answered with an error.
    #[error("{message}")]
    Api { status: StatusCode, message: String },
    /// The connection ended before the answer (the server stopping or restarting): whether a
    /// change was made is not known.
    #[error("the admin API at {addr} closed the connection before answering ({reason}): the server may be restarting; a change may or may not have been made: check, then retry")]
    Cut { addr: String, reason: String },
    /// The exchange itself failed.
    #[error("admin API: {0}")]
    Protocol(String),
}

/// A client for the server whose discovery file is in the data dir.
pub(crate) struct AdminClient {
    addr: AdminAddr,
    token: String,
}

impl AdminClient {
    /// The running server's client, when the data dir has a discovery file and a token.
    pub(crate) fn discover(data_dir: &Path) -> Option<Self> {
        let discovery = Discovery::read(data_dir)?;
        Some(AdminClient {
            addr: discovery.admin.parse().ok()?,
            token: token::read(data_dir).ok()?,
        })
    }

    async fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
        Ok(match &self.addr {
            AdminAddr::Tcp(addr) => Box::new(tokio::net::TcpStream::connect(addr).await?),
            AdminAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        })
    }

    /// Sends one request; a JSON body on success.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let stream = self
            .connect()
            .await
            .map_err(|source| ClientError::Unreachable {
                addr: self.addr.to_string(),
                source,
            })?;
        tokio::time::timeout(CALL_TIMEOUT, self.exchange(stream, method, path, body))
            .await
            .map_err(|_| {
                ClientError::Protocol(format!("no answer within {}s", CALL_TIMEOUT.as_secs()))
            })?
    }

    async fn exchange(
        &self,
        stream: Box<dyn Stream>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let protocol = |e: hyper::Error| ClientError::Protocol(e.to_string());
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(protocol)?;
        tokio::spawn(connection);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "porter-admin")
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let cut = |e: hyper::Error| ClientError::Cut {
            addr: self.addr.to_string(),
            reason: e.to_string(),
        };
        let response = sender.send_request(request).await.map_err(cut)?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(cut)?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("unreadable answer ({status}): {e}")))?;
        if status.is_success() {
            Ok(value)
        } else {
            let message = value["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned();
            Err(ClientError::Api { status, message })
        }
    }
}
