//! The admin API's HTTP server: bearer-token check in constant time, bounded bodies and
//! deadlines, then [`dispatch`].

use super::router::{dispatch, Context, Reply};
use super::AdminAddr;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The admin API described (OpenAPI 3.1); a test holds it to the router.
pub(crate) const OPENAPI: &str = include_str!("openapi.json");
/// Where it is served.
const OPENAPI_PATH: &str = "/v1/openapi.json";

/// Largest request body accepted (a certificate chain and key fit many times over).
const MAX_BODY: usize = 1 << 20;
/// Where a backup is restored, and how big and slow its body may be.
const IMPORT_PATH: &str = "/v1/store/import";
const MAX_IMPORT: usize = 1 << 30;
const IMPORT_TIMEOUT: Duration = Duration::from_secs(300);
/// Deadline for a request's headers and for its body.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound admin listener.
pub(crate) enum AdminListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl AdminListener {
    /// The address actually bound (`asked` names a unix socket's path).
    pub(crate) fn bound(&self, asked: &AdminAddr) -> std::io::Result<AdminAddr> {
        match self {
            AdminListener::Tcp(listener) => Ok(AdminAddr::Tcp(listener.local_addr()?)),
            AdminListener::Unix(_) => Ok(asked.clone()),
        }
    }
}

impl std::os::fd::AsFd for AdminListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            AdminListener::Tcp(listener) => listener.as_fd(),
            AdminListener::Unix(listener) => listener.as_fd(),
        }
    }
}

/// Binds `addr`; returns the listener and the address actually bound.
pub(crate) async fn bind(addr: &AdminAddr) -> std::io::Result<(AdminListener, AdminAddr)> {
    match addr {
        AdminAddr::Tcp(addr) => {
            let listener = AdminListener::Tcp(TcpListener::bind(addr).await?);
            let bound = listener.bound(&AdminAddr::Tcp(*addr))?;
            Ok((listener, bound))
        }
        AdminAddr::Unix(path) => {
            // A socket file left by a crashed server blocks the bind; remove it only when
            // nothing answers on it.
            if path.exists() && tokio::net::UnixStream::connect(path).await.is_err() {
                std::fs::remove_file(path)?;
            }
            let listener = UnixListener::bind(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            Ok((AdminListener::Unix(listener), addr.clone()))
        }
    }
}

/// What a listener serves.
#[derive(Clone)]
pub(crate) enum Serves {
    /// The admin API and `/metrics`, to requests with this bearer token.
    Admin(Arc<str>),
    /// `/metrics` alone, to anyone who reaches the listener (`--metrics`).
    Metrics,
}

/// Serves the admin API (or the metrics alone) until `shutdown`.
pub(crate) async fn serve(
    listener: AdminListener,
    ctx: Arc<Context>,
    serves: Serves,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = accept(&listener) => accepted,
        };
        let io = match accepted {
            Ok(io) => io,
            Err(e) => {
                // Out of file descriptors under a flood of the edge's clients, say.
                crate::runtime::log_limit::limited!(warn, "admin accept failed", error = %e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (ctx, serves) = (ctx.clone(), serves.clone());
        tracker.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (ctx, serves) = (ctx.clone(), serves.clone());
                async move { Ok::<_, Infallible>(answer(&ctx, &serves, req).await) }
            });
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .serve_connection(io, service)
                .await;
            if let Err(e) = result {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

type Io = TokioIo<Box<dyn crate::control::admin::client::Stream>>;

async fn accept(listener: &AdminListener) -> std::io::Result<Io> {
    Ok(match listener {
        AdminListener::Tcp(l) => TokioIo::new(Box::new(l.accept().await?.0)),
        AdminListener::Unix(l) => TokioIo::new(Box::new(l.accept().await?.0)),
    })
}

fn authorised(req: &Request<Incoming>, token: &str) -> bool {
    let Some(given) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

async fn answer(ctx: &Context, serves: &Serves, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if let Serves::Admin(token) = serves {
        if !authorised(&req, token) {
            return json_response(Reply {
                status: StatusCode::UNAUTHORIZED,
                body: serde_json::json!({"error": "missing or wrong bearer token (see admin.token in the data dir)"}),
            });
        }
    }
    match (req.method(), req.uri().path(), &ctx.metrics) {
        (&http::Method::GET, "/metrics", Some(metrics)) => {
            // Prometheus asks for OpenMetrics first; other readers get the classic format.
            let openmetrics = req
                .headers()
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|accept| accept.contains("application/openmetrics-text"));
            let (text, content_type) = metrics.scrape(openmetrics).await;
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            return response;
        }
        (&http::Method::GET, OPENAPI_PATH, _) if matches!(serves, Serves::Admin(_)) => {
            let mut response = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return response;
        }
        (_, path, _) if matches!(serves, Serves::Metrics) => {
            return json_response(Reply {
                status: StatusCode::NOT_FOUND,
                body: serde_json::json!({"error": format!("only GET /metrics is served here, not {path}")}),
            });
        }
        _ => {}
    }
    let (parts, body) = req.into_parts();
    // A backup holds every certificate: it may take long and be large.
    let (limit, deadline) = if parts.uri.path() == IMPORT_PATH {
        (MAX_IMPORT, IMPORT_TIMEOUT)
    } else {
        (MAX_BODY, READ_TIMEOUT)
    };
    let reply = match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
        Ok(Ok(body)) => dispatch(ctx, &parts.method, parts.uri.path(), &body.to_bytes()).await,
        Ok(Err(_)) | Err(_) => Reply {
            status: StatusCode::BAD_REQUEST,
            body: serde_json::json!({"error": "request body too large, or too slow"}),
        },
    };
    json_response(reply)
}

fn json_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body.to_string())));
    *response.status_mut() = reply.status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
