//! Auditing at the HTTP edge, and `GET /v1/audit` for auditors.
//!
//! [`Audit`] captures who is asking, from where and under which request id; a handler fills in
//! what the event touched and [`Audit::settle`] records its outcome. A success is only answered
//! once its record is durable: if the trail cannot be written the caller gets `503
//! audit_unavailable` instead. A refusal is answered as it is whether or not its record lands
//! (the failure is logged and counted). Nothing here records a PAN, a key, a code or a JWT.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::Method;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::extract::{Caller, limit_param, query_params};
use super::source::Source;
use super::{ApiError, AppState, Route, request_id};
use crate::domain::audit::{Action, AuditEvent, Outcome, StoredRecord};
use crate::domain::{Principal, PrincipalId, Role, Token};
use crate::service::audit;
use crate::store::AuditQuery;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![Route::new(Method::GET, "/v1/audit", list)]
}

/// The request's context for its audit record.
#[derive(Debug, Clone)]
pub struct Audit {
    request_id: String,
    source: Option<IpAddr>,
}

impl FromRequestParts<AppState> for Audit {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Source(source) = Source::from_request_parts(parts, state).await?;
        Ok(Audit {
            request_id: request_id::current(),
            source,
        })
    }
}

impl Audit {
    /// Where the request comes from (see [`Source`]).
    pub fn source(&self) -> Option<IpAddr> {
        self.source
    }

    /// An event of `action` by `caller`, now.
    pub fn event(&self, state: &AppState, action: Action, caller: &Caller) -> AuditEvent {
        let mut event = AuditEvent::new(action, state.clock().now());
        event.tenant = Some(caller.0.tenant);
        event.actor = Some(caller.0.id);
        event.request_id = Some(self.request_id.clone());
        event.source = self.source.map(|ip| ip.to_string());
        event
    }

    /// Records how `result` ended and passes it on; a success whose record could not be
    /// written becomes `503 audit_unavailable`.
    pub async fn settle<T>(
        &self,
        state: &AppState,
        mut event: AuditEvent,
        result: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        match &result {
            Ok(_) => event.outcome = Outcome::Success,
            Err(e) => {
                let (status, code) = e.status_and_code();
                event.outcome = if status.is_server_error() {
                    Outcome::Error
                } else {
                    Outcome::Denied
                };
                event.code = Some(code.to_owned());
                if let ApiError::PolicyDenied(denial) = e {
                    event.detail = Some(denial.as_str().to_owned());
                }
            }
        }
        let recorded = state.audit().record(event).await;
        match (result, recorded) {
            (Ok(_), Err(_)) => Err(ApiError::AuditUnavailable),
            (result, _) => result,
        }
    }
}

#[derive(Serialize)]
struct EventBody {
    id: i64,
    at: DateTime<Utc>,
    chain: Uuid,
    seq: u64,
    hash: String,
    tenant: Option<Uuid>,
    actor: Option<Uuid>,
    action: &'static str,
    outcome: &'static str,
    code: Option<String>,
    purpose: Option<String>,
    reason: Option<String>,
    detail: Option<String>,
    request_id: Option<String>,
    source: Option<String>,
    tokens: Vec<String>,
    grant_jti: Option<Uuid>,
    subject: Option<String>,
}

impl From<StoredRecord> for EventBody {
    fn from(record: StoredRecord) -> Self {
        let c = record.chained;
        let e = c.event;
        EventBody {
            id: record.id,
            at: e.at,
            chain: c.chain,
            seq: c.seq,
            hash: hex::encode(c.hash),
            tenant: e.tenant.map(|t| t.0),
            actor: e.actor.map(|a| a.0),
            action: e.action.as_str(),
            outcome: e.outcome.as_str(),
            code: e.code,
            purpose: e.purpose,
            reason: e.reason,
            detail: e.detail,
            request_id: e.request_id,
            source: e.source,
            tokens: e.tokens,
            grant_jti: e.grant_jti,
            subject: e.subject,
        }
    }
}

#[derive(Serialize)]
struct EventsBody {
    events: Vec<EventBody>,
    next_cursor: Option<String>,
}

fn invalid(field: &str, expected: &'static str) -> ApiError {
    ApiError::InvalidField {
        field: field.into(),
        expected,
    }
}

fn time_param(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    params
        .get(name)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| invalid(name, "an RFC 3339 time, e.g. 2030-01-01T00:00:00Z"))
        })
        .transpose()
}

/// The auditor's filters, parsed; every bad value is a 422 naming its parameter.
fn parse_query(
    principal: &Principal,
    params: &HashMap<String, String>,
) -> Result<AuditQuery, ApiError> {
    let since = time_param(params, "since")?;
    let until = time_param(params, "until")?;
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        return Err(invalid("until", "a time after `since`"));
    }
    let actor = params
        .get("actor")
        .map(|v| {
            Uuid::parse_str(v)
                .map(PrincipalId)
                .map_err(|_| invalid("actor", "a principal id (a UUID)"))
        })
        .transpose()?;
    let action = params
        .get("action")
        .map(|v| {
            v.parse::<Action>()
                .map_err(|()| invalid("action", "an audit action, e.g. detokenize"))
        })
        .transpose()?;
    let token = params
        .get("token")
        .map(|v| {
            Token::parse(v)
                .map(|t| t.as_str().to_owned())
                .ok_or_else(|| invalid("token", "a token"))
        })
        .transpose()?;
    let outcome = params
        .get("outcome")
        .map(|v| {
            v.parse::<Outcome>()
                .map_err(|()| invalid("outcome", "one of success, denied, error"))
        })
        .transpose()?;
    let before_id = params
        .get("cursor")
        .map(|v| {
            v.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid("cursor", "a next_cursor from an earlier page"))
        })
        .transpose()?;
    Ok(AuditQuery {
        tenant: principal.tenant,
        since,
        until,
        actor,
        action,
        token,
        outcome,
        before_id,
        limit: limit_param(params)?,
    })
}

const PARAMS: &[&str] = &[
    "since", "until", "actor", "action", "token", "outcome", "limit", "cursor",
];

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    audit: Audit,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<EventsBody>, ApiError> {
    let mut event = audit.event(&state, Action::AuditRead, &caller);
    let result = async {
        let principal = caller.require(Role::Auditor)?;
        let params = query_params(query, PARAMS)?;
        let query = parse_query(principal, &params)?;
        // What was asked, never a value outside our own vocabulary: the filters' names, and
        // the token (checked to be a token, not a card number) in `tokens`.
        let mut names: Vec<&str> = params.keys().map(String::as_str).collect();
        names.sort_unstable();
        event.detail = Some(names.join(","));
        event.tokens.extend(query.token.clone());
        let found = audit::query(state.store().as_ref(), &query).await?;
        let next_cursor = (found.len() == query.limit as usize)
            .then(|| found.last().map(|r| r.id.to_string()))
            .flatten();
        Ok(EventsBody {
            events: found.into_iter().map(EventBody::from).collect(),
            next_cursor,
        })
    }
    .await;
    audit.settle(&state, event, result).await.map(Json)
}
