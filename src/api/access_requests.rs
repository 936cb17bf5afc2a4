//! `/v1/access-requests`: ask for a timed grant, look requests up, approve and deny them.
//!
//! Requesters and payment services ask; approvers decide. The grant JWT appears only in the
//! answer to its grantee (see `service::access`). Reasons and comments pass the same
//! card-data detector as metadata (`domain::card_data`).

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::{JsonBody, OptionalJsonBody, Secret, from_value, limit_param, query_params};
use super::policies::PolicyBody;
use super::{ApiError, AppState, Route};
use crate::crypto::totp::TotpCode;
use crate::domain::MaskedPan;
use crate::domain::access::TextError;
use crate::domain::brand::CardBrand;
use crate::domain::policy::MAX_TOKENS;
use crate::domain::{PrincipalId, Purpose, Reason, RequestStatus, Token};
use crate::service::{
    AccessAskInput, AccessRequestView, DecisionInput, RequestContext, RequestReview,
};

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/v1/access-requests", create),
        Route::new(Method::GET, "/v1/access-requests", list),
        Route::new(Method::GET, "/v1/access-requests/{id}", get),
        Route::new(Method::POST, "/v1/access-requests/{id}/approve", approve),
        Route::new(Method::POST, "/v1/access-requests/{id}/deny", deny),
        Route::new(Method::GET, "/v1/access-requests/{id}/review", review),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    tokens: Option<Vec<String>>,
    #[serde(default)]
    any_token: Option<bool>,
    purpose: String,
    reason: String,
    duration_seconds: u32,
    #[serde(default)]
    max_uses: Option<u32>,
    #[serde(default)]
    totp: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    totp: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DenyBody {
    #[serde(default)]
    comment: Option<String>,
}

fn invalid(field: &str, expected: &'static str) -> ApiError {
    ApiError::InvalidField {
        field: field.into(),
        expected,
    }
}

/// The refusal of a reason or comment: a card number is sensitive data (422
/// `sensitive_data_refused`, naming the field); blank, too long or control characters are an
/// invalid field. Neither repeats the text.
fn text_refused(
    error: TextError,
    field: &str,
    expected: &'static str,
    card_detail: &'static str,
) -> ApiError {
    match error {
        TextError::CardNumber => ApiError::SensitiveData(card_detail),
        TextError::Empty | TextError::TooLong | TextError::Control => invalid(field, expected),
    }
}

impl TryFrom<CreateBody> for AccessAskInput {
    type Error = ApiError;

    fn try_from(body: CreateBody) -> Result<Self, Self::Error> {
        let any_token = body.any_token.unwrap_or(false);
        let named = body.tokens.unwrap_or_default();
        if any_token && !named.is_empty() {
            return Err(invalid("tokens", "absent when any_token is true"));
        }
        if !any_token && named.is_empty() {
            return Err(invalid("tokens", "1-100 tokens, or any_token: true"));
        }
        if named.len() > usize::try_from(MAX_TOKENS).unwrap_or(usize::MAX) {
            return Err(invalid("tokens", "an array of 1-100 tokens"));
        }
        let mut seen = HashSet::new();
        let mut tokens = Vec::with_capacity(named.len());
        for (i, t) in named.iter().enumerate() {
            // A value that is not shaped like a token (a card number, say) is not echoed.
            let token =
                Token::parse(t).ok_or_else(|| invalid(&format!("tokens[{i}]"), "a token"))?;
            if seen.insert(token.as_str().to_owned()) {
                tokens.push(token);
            }
        }
        let purpose = Purpose::parse(&body.purpose).ok_or_else(|| {
            invalid(
                "purpose",
                "a purpose: 1-64 lowercase letters, digits or underscores",
            )
        })?;
        let reason = Reason::parse(&body.reason).map_err(|e| {
            text_refused(
                e,
                "reason",
                "1-1000 characters of text, without a card number",
                "reason must not contain a card number",
            )
        })?;
        if body.duration_seconds == 0 {
            return Err(invalid(
                "duration_seconds",
                "a whole number of seconds, at least 1",
            ));
        }
        if body.max_uses == Some(0) {
            return Err(invalid("max_uses", "a whole number, at least 1"));
        }
        Ok(AccessAskInput {
            tokens,
            any_token,
            purpose,
            reason,
            duration_seconds: body.duration_seconds,
            max_uses: body.max_uses,
            totp: body.totp.map(|c| TotpCode::new(c.0)),
        })
    }
}

fn check_comment(comment: Option<String>) -> Result<Option<Reason>, ApiError> {
    match comment {
        Some(c) if c.is_empty() => Ok(None),
        Some(c) => Reason::parse(&c).map(Some).map_err(|e| {
            text_refused(
                e,
                "comment",
                "at most 1000 characters of text, without a card number",
                "comment must not contain a card number",
            )
        }),
        None => Ok(None),
    }
}

/// An approver's decision as shown.
#[derive(Debug, Serialize)]
struct DecisionBody {
    approver: PrincipalId,
    decision: &'static str,
    comment: Option<Reason>,
    at: DateTime<Utc>,
}

/// A request as the API shows it.
#[derive(Debug, Serialize)]
pub struct RequestBody {
    id: Uuid,
    status: RequestStatus,
    requester: PrincipalId,
    tokens: Vec<Token>,
    any_token: bool,
    purpose: Purpose,
    reason: Reason,
    duration_seconds: u32,
    max_uses: u32,
    approvals: usize,
    approvals_required: u32,
    policy: String,
    decisions: Vec<DecisionBody>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    decided_at: Option<DateTime<Utc>>,
    grant_jti: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grant: Option<String>,
}

impl From<AccessRequestView> for RequestBody {
    fn from(view: AccessRequestView) -> Self {
        let approvals = view.record.approvals();
        let r = view.record.request;
        RequestBody {
            id: r.id,
            status: view.status,
            requester: r.requester,
            tokens: r.tokens,
            any_token: r.any_token,
            purpose: r.purpose,
            reason: r.reason,
            duration_seconds: r.duration_seconds,
            max_uses: r.max_uses,
            approvals,
            approvals_required: r.approvals_required,
            policy: r.policy,
            decisions: view
                .record
                .decisions
                .into_iter()
                .map(|d| DecisionBody {
                    approver: d.approver,
                    decision: if d.approve { "approve" } else { "deny" },
                    comment: d.comment,
                    at: d.at,
                })
                .collect(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            decided_at: view.record.decided_at,
            grant_jti: view.record.grant,
            grant: view.grant.map(|g| g.as_str().to_owned()),
        }
    }
}

impl RequestBody {
    /// The request as `ctx` is shown it: a console session is never handed the grant (its
    /// page reveals through `reveal`, so the JWT never reaches a script).
    fn for_caller(ctx: &RequestContext, view: AccessRequestView) -> RequestBody {
        let mut body = RequestBody::from(view);
        if ctx.session.is_some() {
            body.grant = None;
        }
        body
    }
}

#[derive(Serialize)]
struct ListBody {
    requests: Vec<RequestBody>,
}

/// The `{id}` of the path; anything that is not a UUID is an unknown request.
fn path_id(path: Result<Path<String>, PathRejection>) -> Option<Uuid> {
    path.ok().and_then(|Path(id)| Uuid::parse_str(&id).ok())
}

async fn create(
    State(state): State<AppState>,
    ctx: RequestContext,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let asked = body.and_then(|b| from_value::<CreateBody>(b.0)?.try_into());
    let view = state.access().create(&ctx, asked).await?;
    Ok((
        StatusCode::CREATED,
        Json(RequestBody::for_caller(&ctx, view)),
    )
        .into_response())
}

async fn get(
    State(state): State<AppState>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RequestBody>, ApiError> {
    let view = state.access().get::<ApiError>(&ctx, path_id(path)).await?;
    Ok(Json(RequestBody::for_caller(&ctx, view)))
}

async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<ListBody>, ApiError> {
    let asked = query_params(query, &["status", "limit"]).and_then(|params| {
        let status = params
            .get("status")
            .map(|s| {
                s.parse::<RequestStatus>()
                    .map_err(|()| invalid("status", "one of pending, approved, denied, expired"))
            })
            .transpose()?;
        Ok((status, limit_param(&params)?))
    });
    let requests = state
        .access()
        .list(&ctx, asked)
        .await?
        .into_iter()
        .map(|view| RequestBody::for_caller(&ctx, view))
        .collect();
    Ok(Json(ListBody { requests }))
}

async fn approve(
    State(state): State<AppState>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    body: Result<OptionalJsonBody, ApiError>,
) -> Result<Json<RequestBody>, ApiError> {
    let asked = body.and_then(|b| {
        let body: ApproveBody = from_value(b.0)?;
        Ok(DecisionInput {
            comment: check_comment(body.comment)?,
            totp: body.totp.map(|c| TotpCode::new(c.0)),
        })
    });
    let view = state.access().approve(&ctx, path_id(path), asked).await?;
    Ok(Json(RequestBody::for_caller(&ctx, view)))
}

async fn deny(
    State(state): State<AppState>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    body: Result<OptionalJsonBody, ApiError>,
) -> Result<Json<RequestBody>, ApiError> {
    let asked = body.and_then(|b| {
        let body: DenyBody = from_value(b.0)?;
        Ok(DecisionInput {
            comment: check_comment(body.comment)?,
            totp: None,
        })
    });
    let view = state.access().deny(&ctx, path_id(path), asked).await?;
    Ok(Json(RequestBody::for_caller(&ctx, view)))
}

#[derive(Serialize)]
struct PersonBody {
    id: PrincipalId,
    name: Option<String>,
}

#[derive(Serialize)]
struct RevealerBody {
    principal: PrincipalId,
    name: Option<String>,
    count: u64,
}

#[derive(Serialize)]
struct CardBody {
    token: Token,
    state: &'static str,
    masked: Option<MaskedPan>,
    bin: Option<String>,
    last_four: Option<String>,
    brand: CardBrand,
    brand_name: &'static str,
    reveals_30d: u64,
    reveals_capped: bool,
    revealed_by: Vec<RevealerBody>,
}

#[derive(Serialize)]
struct RecentBody {
    id: Uuid,
    status: RequestStatus,
    purpose: Purpose,
    tokens: usize,
    any_token: bool,
    created_at: DateTime<Utc>,
    decided_at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct ReviewBody {
    request: RequestBody,
    requester: PersonBody,
    policy: Option<PolicyBody>,
    approvals_needed: u32,
    cards: Vec<CardBody>,
    recent_requests: Vec<RecentBody>,
}

impl From<RequestReview> for ReviewBody {
    fn from(review: RequestReview) -> Self {
        let request = RequestBody::from(review.view);
        let given = u32::try_from(request.approvals).unwrap_or(u32::MAX);
        ReviewBody {
            approvals_needed: request.approvals_required.saturating_sub(given),
            requester: PersonBody {
                id: request.requester,
                name: review.requester_name,
            },
            request,
            policy: review.policy.map(PolicyBody::from),
            cards: review
                .cards
                .into_iter()
                .map(|c| CardBody {
                    token: c.token,
                    state: c.state,
                    masked: c.masked,
                    bin: c.bin,
                    last_four: c.last_four,
                    brand: c.brand,
                    brand_name: c.brand.display_name(),
                    reveals_30d: c.reveals,
                    reveals_capped: c.reveals_capped,
                    revealed_by: c
                        .revealed_by
                        .into_iter()
                        .map(|r| RevealerBody {
                            principal: r.principal,
                            name: r.name,
                            count: r.count,
                        })
                        .collect(),
                })
                .collect(),
            recent_requests: review
                .recent
                .into_iter()
                .map(|(r, status)| RecentBody {
                    id: r.request.id,
                    status,
                    purpose: r.request.purpose,
                    tokens: r.request.tokens.len(),
                    any_token: r.request.any_token,
                    created_at: r.request.created_at,
                    decided_at: r.decided_at,
                })
                .collect(),
        }
    }
}

async fn review(
    State(state): State<AppState>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ReviewBody>, ApiError> {
    let review = state
        .review()
        .review::<ApiError>(&ctx, path_id(path))
        .await?;
    Ok(Json(review.into()))
}
