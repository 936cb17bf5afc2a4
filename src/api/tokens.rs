//! `/v1/tokens`: tokenize (single and batch), look up, delete. Tokenizer role only.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use super::error::Problem;
use super::extract::{JsonBody, from_value, sensitive_top_level};
use super::{ApiError, AppState, Route};
use crate::domain::card_data::{holds_sensitive_key, names_sensitive_data};
use crate::domain::{MaskedPan, Metadata, MetadataError, Pan, Role, Token, TokenFormat};
use crate::service::{RequestContext, TokenView, TokenizeItem};

/// Most items in one batch call.
pub const MAX_BATCH: usize = 1000;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/v1/tokens", tokenize),
        Route::new(Method::POST, "/v1/tokens/batch", tokenize_batch),
        Route::new(Method::GET, "/v1/tokens/{token}", lookup),
        Route::new(Method::DELETE, "/v1/tokens/{token}", delete),
    ]
}

/// The submitted card number. Wiped on drop, never printed.
struct RawPan(Zeroizing<String>);

impl<'de> Deserialize<'de> for RawPan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| RawPan(Zeroizing::new(s)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenizeRequest {
    value: RawPan,
    #[serde(default)]
    format: Option<TokenFormat>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    items: Vec<Value>,
}

impl TryFrom<TokenizeRequest> for TokenizeItem {
    type Error = ApiError;

    fn try_from(request: TokenizeRequest) -> Result<Self, Self::Error> {
        Ok(TokenizeItem {
            pan: Pan::parse(&request.value.0)?,
            format: request.format.unwrap_or_default(),
            metadata: request.metadata.map(Metadata::parse).transpose()?,
            expires_at: request.expires_at,
        })
    }
}

/// One tokenize request from its JSON. Sensitive authentication data anywhere in it is refused
/// before anything else is looked at.
fn parse_item(value: Value) -> Result<TokenizeItem, ApiError> {
    if let Value::Object(map) = &value {
        if map.keys().any(|k| names_sensitive_data(k)) {
            return Err(sensitive_top_level());
        }
        if map.get("metadata").is_some_and(holds_sensitive_key) {
            return Err(MetadataError::SensitiveField.into());
        }
    }
    from_value::<TokenizeRequest>(value)?.try_into()
}

/// A token as the API shows it.
#[derive(Debug, Serialize)]
pub struct TokenBody {
    token: Token,
    format: TokenFormat,
    masked: MaskedPan,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<bool>,
    metadata: Option<Metadata>,
    /// In tokenize answers: the PAN already had a token whose stored metadata differs from
    /// the request's, and the stored metadata was kept (and is what `metadata` shows).
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata_ignored: Option<bool>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

impl TokenBody {
    fn new(view: TokenView, with_created: bool) -> TokenBody {
        TokenBody {
            created: with_created.then_some(view.created),
            metadata_ignored: with_created.then_some(view.metadata_ignored),
            token: view.token,
            format: view.format,
            masked: view.masked,
            metadata: view.metadata,
            created_at: view.created_at,
            expires_at: view.expires_at,
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum BatchResult {
    Token(TokenBody),
    Error { error: Problem },
}

#[derive(Serialize)]
struct BatchBody {
    results: Vec<BatchResult>,
}

async fn tokenize(
    State(state): State<AppState>,
    ctx: RequestContext,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let asked = body.and_then(|b| parse_item(b.0));
    let view = state.tokens().tokenize(&ctx, asked).await?;
    let status = if view.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(TokenBody::new(view, true))).into_response())
}

async fn tokenize_batch(
    State(state): State<AppState>,
    ctx: RequestContext,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<BatchBody>, ApiError> {
    let asked = parse_batch(&state, &ctx, body);
    let results = state
        .tokens()
        .tokenize_batch(&ctx, asked)
        .await?
        .into_iter()
        .map(|outcome| match outcome {
            Ok(view) => BatchResult::Token(TokenBody::new(view, true)),
            Err(e) => BatchResult::Error {
                error: e.to_problem(),
            },
        })
        .collect();
    Ok(Json(BatchBody { results }))
}

/// A batch's items, each parsed on its own. Rate limits count work: the request took one
/// unit, each further item takes one more — spent only by a caller who may tokenize at all.
fn parse_batch(
    state: &AppState,
    ctx: &RequestContext,
    body: Result<JsonBody, ApiError>,
) -> Result<Vec<Result<TokenizeItem, ApiError>>, ApiError> {
    let batch: BatchRequest = from_value(body?.0)?;
    if batch.items.is_empty() || batch.items.len() > MAX_BATCH {
        return Err(ApiError::InvalidField {
            field: "items".into(),
            expected: "an array of 1-1000 tokenize requests",
        });
    }
    if ctx.principal.has(Role::Tokenizer) {
        let more = u32::try_from(batch.items.len().saturating_sub(1)).unwrap_or(u32::MAX);
        state
            .rate_limits()
            .check_n(ctx.principal.id, more)
            .map_err(|wait| ApiError::RateLimited(wait.as_secs() + 1))?;
    }
    Ok(batch.items.into_iter().map(parse_item).collect())
}

/// The `{token}` of the path. Anything not shaped like a token — a card number, or bytes that
/// do not even decode — is answered as an unknown token.
fn path_token(path: Result<Path<String>, PathRejection>) -> Option<Token> {
    path.ok().and_then(|Path(t)| Token::parse(&t))
}

async fn lookup(
    State(state): State<AppState>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TokenBody>, ApiError> {
    let view = state
        .tokens()
        .lookup::<ApiError>(&ctx, path_token(path))
        .await?;
    Ok(Json(TokenBody::new(view, false)))
}

async fn delete(
    State(state): State<AppState>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    state
        .tokens()
        .delete::<ApiError>(&ctx, path_token(path))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
