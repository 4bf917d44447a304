//! Maps an admin request (method, path, JSON body) to an operation. The HTTP server uses it
//! behind authentication, and the CLI calls it in-process when no server is running, so both
//! paths run the same code.

use crate::apps::Supervisor;
use crate::ops::{self, OpError};
use http::{Method, StatusCode};
use porter_acme::AcmeAction;
use porter_store::{Store, StoreError};
use std::sync::Arc;

/// What the operations run against.
pub(crate) struct Context {
    /// The running server's app supervisor (`None` when the CLI works on the store alone).
    pub(crate) apps: Option<Arc<Supervisor>>,
    /// The store.
    pub(crate) store: Arc<dyn Store>,
    /// Where app logs are.
    pub(crate) apps_dir: std::path::PathBuf,
    /// Whether an ACME worker runs in this process (it does only in `porter serve` with
    /// `--acme-agree-tos`).
    pub(crate) acme: bool,
}
use serde::Serialize;
use serde_json::{json, Value};

/// A status and a JSON body: the result on success, `{"error": ...}` otherwise.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

fn ok<T: Serialize>(status: StatusCode, value: T) -> Reply {
    Reply {
        status,
        body: serde_json::to_value(value).expect("views serialise"),
    }
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Reply {
    Reply {
        status,
        body: json!({ "error": message.to_string() }),
    }
}

fn failed(e: OpError) -> Reply {
    let status = match &e {
        OpError::Store(StoreError::Invalid(_))
        | OpError::Unreachable { .. }
        | OpError::Refused(_) => StatusCode::BAD_REQUEST,
        OpError::Store(StoreError::AlreadyExists(_) | StoreError::InUse(_)) => StatusCode::CONFLICT,
        OpError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
        // Worth a retry: the disk may answer again.
        OpError::Store(StoreError::Stalled { .. }) => StatusCode::SERVICE_UNAVAILABLE,
        OpError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")))
}

/// Runs the operation `method path` names.
pub(crate) async fn dispatch(ctx: &Context, method: &Method, path: &str, body: &[u8]) -> Reply {
    let store = ctx.store.as_ref();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result = match (method, segments.as_slice()) {
        (&Method::GET, ["v1", "status"]) => {
            let health = store.health();
            Ok(ok(
                StatusCode::OK,
                json!({ "store": {
                    "ok": health.failure.is_none(),
                    "failure": health.failure,
                    "stalled_operations": health.stalled,
                }}),
            ))
        }
        (&Method::GET, ["v1", "sites"]) => {
            ops::list_sites(store).await.map(|v| ok(StatusCode::OK, v))
        }
        (&Method::POST, ["v1", "sites"]) => match parse(body) {
            Ok(req) => ops::add_site(store, req)
                .await
                .map(|v| ok(StatusCode::CREATED, v)),
            Err(reply) => return reply,
        },
        (&Method::PATCH, ["v1", "sites", domain]) => match parse(body) {
            Ok(req) => ops::update_site(store, domain, req)
                .await
                .map(|v| ok(StatusCode::OK, v)),
            Err(reply) => return reply,
        },
        (&Method::DELETE, ["v1", "sites", domain]) => ops::remove_site(store, domain)
            .await
            .map(|()| ok(StatusCode::OK, json!({ "removed": domain }))),
        (&Method::GET, ["v1", "certs"]) => ops::list_certs(store, ctx.acme)
            .await
            .map(|v| ok(StatusCode::OK, v)),
        (&Method::POST, ["v1", "certs", domain, action @ ("renew" | "revoke")]) => {
            let request = if *action == "renew" {
                AcmeAction::Renew
            } else {
                AcmeAction::Revoke
            };
            ops::request_acme(store, domain, request)
                .await
                .map(|v| ok(StatusCode::OK, v))
        }
        (&Method::POST, ["v1", "certs"]) => match parse(body) {
            Ok(req) => ops::import_cert(store, req)
                .await
                .map(|v| ok(StatusCode::CREATED, v)),
            Err(reply) => return reply,
        },
        (&Method::GET, ["v1", "apps"]) => ops::apps::list_apps(store)
            .await
            .map(|v| ok(StatusCode::OK, v)),
        (&Method::POST, ["v1", "apps", id]) => match parse(body) {
            Ok(spec) => ops::apps::add_app(store, id, spec)
                .await
                .map(|v| ok(StatusCode::CREATED, v)),
            Err(reply) => return reply,
        },
        (&Method::PATCH, ["v1", "apps", id]) => match parse(body) {
            Ok(spec) => ops::apps::update_app(store, id, spec)
                .await
                .map(|v| ok(StatusCode::OK, v)),
            Err(reply) => return reply,
        },
        (&Method::DELETE, ["v1", "apps", id]) => ops::apps::remove_app(store, id)
            .await
            .map(|()| ok(StatusCode::OK, json!({ "removed": id }))),
        (&Method::GET, ["v1", "apps", id]) => ops::apps::status(store, ctx.apps.as_deref(), id)
            .await
            .map(|v| ok(StatusCode::OK, v)),
        (&Method::GET, ["v1", "apps", id, "logs"]) => {
            ops::apps::logs(store, &ctx.apps_dir, id, 200)
                .await
                .map(|text| ok(StatusCode::OK, json!({ "logs": text })))
        }
        (&Method::POST, ["v1", "apps", id, action @ ("restart" | "stop")]) => {
            ops::apps::control(store, ctx.apps.as_deref(), id, *action == "restart")
                .await
                .map(|v| ok(StatusCode::OK, v))
        }
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no such admin endpoint: {method} {path}"),
            )
        }
    };
    result.unwrap_or_else(failed)
}
