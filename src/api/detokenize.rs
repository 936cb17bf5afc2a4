//! `POST /v1/detokenize`: card numbers back, under a grant; and
//! `POST /v1/access-requests/{id}/reveal`: the same under the grant a request minted for the
//! caller, which stays inside the vault (the console's Reveal).
//!
//! The use case (`service::detokenize`) checks the grant, takes one use, reveals and records;
//! the PANs reach this handler only once the record is durable. The answer is built straight
//! from the zeroizing `Pan`s into the response bytes; nothing here logs a PAN or the grant.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::extract::{JsonBody, from_value};
use super::{ApiError, AppState, Route};
use crate::domain::Token;
use crate::domain::policy::MAX_TOKENS;
use crate::service::{RequestContext, Revealed};

/// The header that carries the grant.
pub const GRANT_HEADER: &str = "x-access-grant";

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/v1/detokenize", detokenize),
        Route::new(Method::POST, "/v1/access-requests/{id}/reveal", reveal),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetokenizeBody {
    tokens: Vec<String>,
}

#[derive(Serialize)]
struct Item<'a> {
    token: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct Answer<'a> {
    data: Vec<Item<'a>>,
}

fn parse_tokens(body: DetokenizeBody) -> Result<Vec<Token>, ApiError> {
    let max = usize::try_from(MAX_TOKENS).unwrap_or(usize::MAX);
    if body.tokens.is_empty() || body.tokens.len() > max {
        return Err(ApiError::InvalidField {
            field: "tokens".into(),
            expected: "an array of 1-100 tokens",
        });
    }
    body.tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Token::parse(t).ok_or_else(|| ApiError::InvalidField {
                field: format!("tokens[{i}]"),
                expected: "a token",
            })
        })
        .collect()
}

async fn detokenize(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let asked = body.and_then(|b| parse_tokens(from_value(b.0)?));
    let grant = match headers.get(GRANT_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(v.trim()),
        // Not visible ASCII: cannot be one of our grants.
        Some(Err(_)) => Some(""),
    };
    let revealed = state.detokenizer().detokenize(&ctx, grant, asked).await?;
    answer(revealed)
}

async fn reveal(
    State(state): State<AppState>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let asked = body.and_then(|b| parse_tokens(from_value(b.0)?));
    let id = path
        .ok()
        .and_then(|Path(id)| uuid::Uuid::parse_str(&id).ok());
    let revealed = state
        .detokenizer()
        .reveal_for_request(&ctx, id, asked)
        .await?;
    answer(revealed)
}

/// The answer that carries revealed card numbers: built straight from the zeroizing `Pan`s,
/// never cached.
fn answer(Revealed { tokens, pans }: Revealed) -> Result<Response, ApiError> {
    let mut data = Vec::with_capacity(tokens.len());
    for (token, pan) in tokens.iter().zip(&pans) {
        let value = std::str::from_utf8(pan.expose_digits()).map_err(|_| ApiError::Internal)?;
        data.push(Item {
            token: token.as_str(),
            value,
        });
    }
    let bytes = serde_json::to_vec(&Answer { data }).map_err(|_| ApiError::Internal)?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Card data: never stored by a cache (the security headers layer says so on every answer;
    // this one must not depend on it).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
