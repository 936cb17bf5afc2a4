//! Liveness, readiness and Prometheus metrics. No authentication: these reveal no tenant data.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, AppState, Route};

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/healthz", healthz),
        Route::new(Method::GET, "/readyz", readyz),
        Route::new(Method::GET, "/metrics", metrics),
    ]
}

/// The process is up and serving.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers (within a second), the audit trail can be written, and the keys are
/// loaded; otherwise 503 `not_ready` naming which in `reason`.
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.health().ready().await.map_err(ApiError::NotReady)?;
    Ok(Json(json!({"status": "ready"})))
}

/// Prometheus text exposition (OpenMetrics).
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.metrics().render().map_err(|_| ApiError::Internal)?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}
