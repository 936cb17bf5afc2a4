//! Cross-cutting middleware: access log and metrics, timeouts, response headers, panics.
//!
//! Logs name the route template, never the raw path or any header value, so a card number
//! sent in the wrong place still never reaches a log line.

use std::any::Any;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ProblemCode;
use super::{ApiError, AppState};
use crate::service::deadline::Deadline;

/// Middleware: one structured log line and the request metrics per request.
pub async fn access_log(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics()
        .observe_request(method.as_str(), &route, status, elapsed);
    if let Some(ProblemCode(code)) = response.extensions().get::<ProblemCode>() {
        state.metrics().observe_refusal(code);
    }
    tracing::info!(
        request_id = %super::request_id::current(),
        method = %method,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// Middleware: a body declared larger than the limit (`Content-Length`) is refused with 413
/// before any of it is read, so a client cannot hold a request open by promising a huge body
/// and sending it slowly. A body without a declared length is held to the limit as it is read
/// (`DefaultBodyLimit`, read by `JsonBody`).
pub async fn declared_size(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let limit = state.settings().max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return ApiError::PayloadTooLarge.into_response();
    }
    next.run(request).await
}

/// Middleware: past the configured number of API requests in flight, a new one is answered
/// `503 overloaded` at once (with `Retry-After`) instead of queueing without bound for the
/// pool; memory and latency stay bounded under a spike. Health and metrics are always served.
pub async fn shed_load(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    let Some(_permit) = state.admit() else {
        return ApiError::Overloaded.into_response();
    };
    next.run(request).await
}

/// Middleware: refuses a request that runs longer than the configured timeout, unless its
/// records have started committing: then it is answered with their outcome (the database
/// bounds that wait with its statement timeout). So a `503 timeout` has committed nothing;
/// dropping the handler rolls back any open transaction of its own.
pub async fn timeout(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit: Duration = state.settings().request_timeout;
    let deadline = Deadline::default();
    let run = deadline.clone().scope(next.run(request));
    tokio::pin!(run);
    match tokio::time::timeout(limit, &mut run).await {
        Ok(response) => response,
        Err(_) if deadline.expire() => ApiError::Timeout.into_response(),
        Err(_) => run.await,
    }
}

/// Middleware: headers on every answer. Nothing the API returns may be cached (it may carry
/// card data or its masked form), and nothing may be sniffed into another type.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A panic becomes a 500 problem; its message (which could hold anything) is not shown.
pub fn panic_response(_panic: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::Internal.into_response()
}
