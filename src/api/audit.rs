//! `GET /v1/audit`: auditors read their tenant's trail (`service::audit::AuditReader`
//! checks the role and records the read).

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::Method;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::extract::{limit_param, query_params};
use super::{ApiError, AppState, Route};
use crate::domain::audit::{Action, AuditQuery, Outcome, StoredRecord};
use crate::domain::{PrincipalId, TenantId, Token};
use crate::service::{AuditRead, RequestContext};

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![Route::new(Method::GET, "/v1/audit", list)]
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

pub(super) fn time_param(
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
fn parse_query(tenant: TenantId, params: &HashMap<String, String>) -> Result<AuditQuery, ApiError> {
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
    let system = match params.get("scope").map(String::as_str) {
        None | Some("tenant") => false,
        Some("system") => true,
        Some(_) => return Err(invalid("scope", "tenant (the default) or system")),
    };
    Ok(AuditQuery {
        tenant,
        system,
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
    "since", "until", "actor", "action", "token", "outcome", "limit", "cursor", "scope",
];

async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<EventsBody>, ApiError> {
    let asked = query_params(query, PARAMS).and_then(|params| {
        let query = parse_query(ctx.principal.tenant, &params)?;
        let mut names: Vec<&str> = params.keys().map(String::as_str).collect();
        names.sort_unstable();
        Ok(AuditRead {
            query,
            filters: names.join(","),
        })
    });
    let limit = asked.as_ref().map_or(0, |a| a.query.limit as usize);
    let found = state.audit_reader().read(&ctx, asked).await?;
    let next_cursor = (found.len() == limit)
        .then(|| found.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(EventsBody {
        events: found.into_iter().map(EventBody::from).collect(),
        next_cursor,
    }))
}
