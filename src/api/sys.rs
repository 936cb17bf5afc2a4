//! `/v1/sys`: sealing an instance and unsealing it with custodians' shares.
//!
//! An unsealed instance answers `POST /v1/sys/seal` (admin) and, to a custodian who comes
//! late, `POST /v1/sys/unseal` with `{"sealed": false}`. A sealed instance serves only
//! [`sealed_router`]: `/healthz`, `/readyz` (503, reason `sealed`) and `POST /v1/sys/unseal`;
//! every other path is 503 `sealed`. A share is read once and never logged or echoed.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Mutex, oneshot};
use zeroize::Zeroizing;

use super::extract::{Secret, from_value, is_json, parse_strict};
use super::{ApiError, AppState, Route, middleware, request_id};
use crate::crypto::keys::MasterKey;
use crate::service::RequestContext;
use crate::service::health::NotReady;
use crate::service::unseal::{Submitted, Unsealer};

/// The routes of an unsealed instance.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/v1/sys/seal", seal),
        Route::new(Method::POST, "/v1/sys/unseal", already_unsealed),
    ]
}

async fn seal(State(state): State<AppState>, ctx: RequestContext) -> Result<Response, ApiError> {
    state.sealer().seal::<ApiError>(&ctx).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"sealed": true}))).into_response())
}

async fn already_unsealed() -> Json<serde_json::Value> {
    Json(json!({"sealed": false, "progress": 0, "threshold": null}))
}

/// The largest unseal body read: a share is about 100 bytes.
const MAX_BODY: usize = 4096;

/// A sealed instance's state: the shares so far, and where the rebuilt key goes.
#[derive(Clone)]
struct Sealed {
    unsealer: Arc<Unsealer>,
    unsealed: Arc<Mutex<Option<oneshot::Sender<MasterKey>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnsealBody {
    share: Secret,
}

/// What a sealed instance serves; the master key its custodians rebuild is sent on `unsealed`.
pub fn sealed_router(unsealer: Arc<Unsealer>, unsealed: oneshot::Sender<MasterKey>) -> Router {
    let state = Sealed {
        unsealer,
        unsealed: Arc::new(Mutex::new(Some(unsealed))),
    };
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route(
            "/readyz",
            get(|| async { ApiError::NotReady(NotReady::Sealed) }),
        )
        .route("/v1/sys/unseal", post(unseal))
        .fallback(|| async { ApiError::Sealed })
        .method_not_allowed_fallback(|| async { ApiError::Sealed })
        .layer(axum::middleware::from_fn(middleware::security_headers))
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}

async fn unseal(State(sealed): State<Sealed>, request: Request) -> Result<Response, ApiError> {
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if !is_json(request.headers()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let bytes = Zeroizing::new(bytes.to_vec());
    let body: UnsealBody = from_value(parse_strict(&bytes)?)?;
    let (key, progress) = match sealed.unsealer.submit(&body.share.0, source).await? {
        Submitted::Progress(progress) => (None, progress),
        Submitted::Unsealed(key, progress) => (Some(*key), progress),
        Submitted::AlreadyUnsealed => return Ok(already_unsealed().await.into_response()),
    };
    let done = key.is_some();
    if let Some(key) = key
        && let Some(tx) = sealed.unsealed.lock().await.take()
    {
        let _ = tx.send(key);
    }
    Ok(Json(json!({
        "sealed": !done,
        "progress": progress.progress,
        "threshold": progress.threshold,
    }))
    .into_response())
}
