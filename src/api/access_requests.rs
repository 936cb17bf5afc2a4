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
use zeroize::Zeroizing;

use super::audit::Audit;
use super::extract::{Caller, JsonBody, OptionalJsonBody, from_value, limit_param, query_params};
use super::{ApiError, AppState, Route};
use crate::domain::access::{TextError, check_text};
use crate::domain::audit::{Action, AuditEvent};
use crate::domain::policy::MAX_TOKENS;
use crate::domain::{PrincipalId, Purpose, RequestStatus, Role, Token};
use crate::service::{AccessAskInput, AccessRequestView};

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/v1/access-requests", create),
        Route::new(Method::GET, "/v1/access-requests", list),
        Route::new(Method::GET, "/v1/access-requests/{id}", get),
        Route::new(Method::POST, "/v1/access-requests/{id}/approve", approve),
        Route::new(Method::POST, "/v1/access-requests/{id}/deny", deny),
    ]
}

/// Who may see requests and grants: their own, or the tenant's for approvers, admins and
/// auditors.
pub const VIEWERS: &[Role] = &[
    Role::Requester,
    Role::Detokenizer,
    Role::Approver,
    Role::Admin,
    Role::Auditor,
];

/// A TOTP code. Wiped on drop, never printed.
struct Code(Zeroizing<String>);

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Code(Zeroizing::new(s)))
    }
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
    totp: Option<Code>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    totp: Option<Code>,
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
        check_text(&body.reason).map_err(|e| {
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
            reason: body.reason,
            duration_seconds: body.duration_seconds,
            max_uses: body.max_uses,
            totp: body.totp.map(|c| c.0),
        })
    }
}

fn check_comment(comment: Option<String>) -> Result<Option<String>, ApiError> {
    match comment {
        Some(c) if c.is_empty() => Ok(None),
        Some(c) => check_text(&c).map(|()| Some(c)).map_err(|e| {
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
    comment: Option<String>,
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
    purpose: String,
    reason: String,
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

#[derive(Serialize)]
struct ListBody {
    requests: Vec<RequestBody>,
}

/// The `{id}` of the path; anything that is not a UUID is an unknown request.
fn path_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, ApiError> {
    path.ok()
        .and_then(|Path(id)| Uuid::parse_str(&id).ok())
        .ok_or(ApiError::RequestNotFound)
}

/// What an access request's record says about the request, once it exists.
fn describe(event: &mut AuditEvent, view: &AccessRequestView) {
    let r = &view.record.request;
    event.subject = Some(r.id.to_string());
    event.purpose = Some(r.purpose.clone());
    event.grant_jti = view.record.grant;
    event.detail = Some(view.status.as_str().to_owned());
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    audit: Audit,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let mut event = audit.event(&state, Action::AccessRequestCreate, &caller);
    let result = async {
        let principal = caller.require_any(&[Role::Detokenizer, Role::Requester])?;
        let ask: AccessAskInput = from_value::<CreateBody>(body?.0)?.try_into()?;
        event.tokens = ask.tokens.iter().map(|t| t.as_str().to_owned()).collect();
        event.purpose = Some(ask.purpose.as_str().to_owned());
        event.reason = Some(ask.reason.clone());
        let view = state
            .access()
            .create(principal, ask, audit.source())
            .await?;
        describe(&mut event, &view);
        Ok(view)
    }
    .await;
    let view = audit.settle(&state, event, result).await?;
    Ok((StatusCode::CREATED, Json(RequestBody::from(view))).into_response())
}

async fn get(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RequestBody>, ApiError> {
    let principal = caller.require_any(VIEWERS)?;
    let id = path_id(path)?;
    Ok(Json(state.access().get(principal, id).await?.into()))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<ListBody>, ApiError> {
    let principal = caller.require_any(VIEWERS)?;
    let params = query_params(query, &["status", "limit"])?;
    let status = params
        .get("status")
        .map(|s| {
            s.parse::<RequestStatus>()
                .map_err(|()| invalid("status", "one of pending, approved, denied, expired"))
        })
        .transpose()?;
    let limit = limit_param(&params)?;
    let requests = state
        .access()
        .list(principal, status, limit)
        .await?
        .into_iter()
        .map(RequestBody::from)
        .collect();
    Ok(Json(ListBody { requests }))
}

async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    audit: Audit,
    path: Result<Path<String>, PathRejection>,
    body: Result<OptionalJsonBody, ApiError>,
) -> Result<Json<RequestBody>, ApiError> {
    let mut event = audit.event(&state, Action::AccessRequestApprove, &caller);
    let result = async {
        let principal = caller.require(Role::Approver)?;
        let id = path_id(path)?;
        event.subject = Some(id.to_string());
        let body: ApproveBody = from_value(body?.0)?;
        let comment = check_comment(body.comment)?;
        event.reason.clone_from(&comment);
        let view = state
            .access()
            .approve(principal, id, comment, body.totp.map(|c| c.0))
            .await?;
        describe(&mut event, &view);
        Ok(view)
    }
    .await;
    audit
        .settle(&state, event, result)
        .await
        .map(|v| Json(v.into()))
}

async fn deny(
    State(state): State<AppState>,
    caller: Caller,
    audit: Audit,
    path: Result<Path<String>, PathRejection>,
    body: Result<OptionalJsonBody, ApiError>,
) -> Result<Json<RequestBody>, ApiError> {
    let mut event = audit.event(&state, Action::AccessRequestDeny, &caller);
    let result = async {
        let principal = caller.require(Role::Approver)?;
        let id = path_id(path)?;
        event.subject = Some(id.to_string());
        let body: DenyBody = from_value(body?.0)?;
        let comment = check_comment(body.comment)?;
        event.reason.clone_from(&comment);
        let view = state.access().deny(principal, id, comment).await?;
        describe(&mut event, &view);
        Ok(view)
    }
    .await;
    audit
        .settle(&state, event, result)
        .await
        .map(|v| Json(v.into()))
}
