//! `/v1/tokens`: tokenize (single and batch), look up, delete. Tokenizer role only.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::audit::Audit;
use super::error::Problem;
use super::extract::{Caller, JsonBody, from_value, sensitive_top_level};
use super::guard::{check_lookups, observe_miss, record_locks};
use super::{ApiError, AppState, Route};
use crate::domain::audit::Action;
use crate::domain::card_data::{holds_sensitive_key, names_sensitive_data};
use crate::domain::guard::BucketLocked;
use crate::domain::{Metadata, MetadataError, Pan, Principal, Role, Token, TokenFormat};
use crate::service::{TokenView, TokenizeItem};

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
    masked: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<bool>,
    metadata: Option<Map<String, Value>>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

impl TokenBody {
    fn new(view: TokenView, with_created: bool) -> TokenBody {
        TokenBody {
            created: with_created.then_some(view.created),
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
    caller: Caller,
    audit: Audit,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let mut event = audit.event(&state, Action::Tokenize, &caller);
    let mut locked: Vec<BucketLocked> = Vec::new();
    let result = async {
        let principal = caller.require(Role::Tokenizer)?;
        let item = parse_item(body?.0)?;
        let mut tokenized = state
            .tokens()
            .tokenize(principal, std::slice::from_ref(&item))
            .await?;
        locked = tokenized.locked;
        let view = tokenized.results.pop().ok_or(ApiError::Internal)??;
        event.tokens.push(view.token.as_str().to_owned());
        event.detail = Some(if view.created { "created" } else { "existing" }.to_owned());
        Ok(view)
    }
    .await;
    record_locks(&state, &audit, &caller, &locked).await;
    let view = audit.settle(&state, event, result).await?;
    let status = if view.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(TokenBody::new(view, true))).into_response())
}

async fn tokenize_batch(
    State(state): State<AppState>,
    caller: Caller,
    audit: Audit,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<BatchBody>, ApiError> {
    let mut event = audit.event(&state, Action::TokenizeBatch, &caller);
    let mut locked: Vec<BucketLocked> = Vec::new();
    let result = async {
        let principal = caller.require(Role::Tokenizer)?;
        let batch: BatchRequest = from_value(body?.0)?;
        tokenize_items(&state, principal, batch, &mut locked)
            .await
            .map(|results| {
                let mut refused = 0;
                for r in &results {
                    match r {
                        BatchResult::Token(t) => event.tokens.push(t.token.as_str().to_owned()),
                        BatchResult::Error { .. } => refused += 1,
                    }
                }
                event.detail = Some(format!("items={} refused={refused}", results.len()));
                BatchBody { results }
            })
    }
    .await;
    record_locks(&state, &audit, &caller, &locked).await;
    audit.settle(&state, event, result).await.map(Json)
}

async fn tokenize_items(
    state: &AppState,
    principal: &Principal,
    batch: BatchRequest,
    locked: &mut Vec<BucketLocked>,
) -> Result<Vec<BatchResult>, ApiError> {
    if batch.items.is_empty() || batch.items.len() > MAX_BATCH {
        return Err(ApiError::InvalidField {
            field: "items".into(),
            expected: "an array of 1-1000 tokenize requests",
        });
    }
    // Rate limits count work: the request took one, each further item takes one more.
    let more = u32::try_from(batch.items.len().saturating_sub(1)).unwrap_or(u32::MAX);
    state
        .rate_limits()
        .check_n(principal.id, more)
        .map_err(|wait| ApiError::RateLimited(wait.as_secs() + 1))?;
    // Parse every item; only the valid ones go to the service, answers keep input order.
    let parsed: Vec<Result<TokenizeItem, ApiError>> =
        batch.items.into_iter().map(parse_item).collect();
    let mut valid: Vec<TokenizeItem> = Vec::with_capacity(parsed.len());
    let mut slots = Vec::with_capacity(parsed.len());
    for p in parsed {
        match p {
            Ok(item) => {
                slots.push(Ok(valid.len()));
                valid.push(item);
            }
            Err(e) => slots.push(Err(e)),
        }
    }
    let outcome = state.tokens().tokenize(principal, &valid).await?;
    *locked = outcome.locked;
    let mut tokenized: Vec<Option<Result<TokenView, ApiError>>> = outcome
        .results
        .into_iter()
        .map(|r| Some(r.map_err(ApiError::from)))
        .collect();
    Ok(slots
        .into_iter()
        .map(|slot| {
            let outcome = match slot {
                Ok(i) => tokenized
                    .get_mut(i)
                    .and_then(Option::take)
                    .unwrap_or(Err(ApiError::Internal)),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(view) => BatchResult::Token(TokenBody::new(view, true)),
                Err(e) => BatchResult::Error {
                    error: e.to_problem(),
                },
            }
        })
        .collect())
}

/// The `{token}` of the path. Anything not shaped like a token — a card number, or bytes that
/// do not even decode — is answered as an unknown token.
fn path_token(path: Result<Path<String>, PathRejection>) -> Result<Token, ApiError> {
    path.ok()
        .and_then(|Path(t)| Token::parse(&t))
        .ok_or(ApiError::NotFound)
}

async fn lookup(
    State(state): State<AppState>,
    caller: Caller,
    audit: Audit,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TokenBody>, ApiError> {
    let mut event = audit.event(&state, Action::Lookup, &caller);
    let result = async {
        let principal = caller.require(Role::Tokenizer)?;
        check_lookups(&state, principal)?;
        let token = path_token(path)?;
        event.tokens.push(token.as_str().to_owned());
        Ok(state.tokens().lookup(principal.tenant, &token).await?)
    }
    .await;
    observe_miss(&state, &audit, &caller, &result).await;
    let view = audit.settle(&state, event, result).await?;
    Ok(Json(TokenBody::new(view, false)))
}

async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    audit: Audit,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let mut event = audit.event(&state, Action::Delete, &caller);
    let result = async {
        let principal = caller.require(Role::Tokenizer)?;
        check_lookups(&state, principal)?;
        let token = path_token(path)?;
        event.tokens.push(token.as_str().to_owned());
        Ok(state.tokens().delete(principal.tenant, &token).await?)
    }
    .await;
    observe_miss(&state, &audit, &caller, &result).await;
    audit.settle(&state, event, result).await?;
    Ok(StatusCode::NO_CONTENT)
}
