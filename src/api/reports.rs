//! `GET /v1/reports/usage`: an auditor's usage report of their tenant for a period
//! (`service::reports::UsageReporter` checks the role and records the read).

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::Method;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::audit::time_param;
use super::extract::query_params;
use super::{ApiError, AppState, Route};
use crate::domain::reports::{StatusCounts, UsageReport};
use crate::service::{Period, RequestContext};

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![Route::new(Method::GET, "/v1/reports/usage", usage)]
}

/// The period when none is asked: the last 30 days.
const DEFAULT_DAYS: i64 = 30;
/// The longest period one report covers.
const MAX_DAYS: i64 = 366;

#[derive(Serialize)]
struct Counts {
    total: u64,
    pending: u64,
    approved: u64,
    automatic: u64,
    denied: u64,
    expired: u64,
}

impl From<StatusCounts> for Counts {
    fn from(c: StatusCounts) -> Self {
        Counts {
            total: c.total,
            pending: c.pending,
            approved: c.approved,
            automatic: c.automatic,
            denied: c.denied,
            expired: c.expired,
        }
    }
}

#[derive(Serialize)]
struct Grants {
    issued: u64,
    uses: u64,
    allowed: u64,
    unused: u64,
    revoked: u64,
}

#[derive(Serialize)]
struct ByRequester {
    principal: Uuid,
    name: String,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Serialize)]
struct ByPurpose {
    purpose: String,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Serialize)]
struct Refusal {
    code: String,
    count: u64,
}

#[derive(Serialize)]
struct Decisions {
    decided: u64,
    median_seconds: Option<f64>,
    p90_seconds: Option<f64>,
    max_seconds: Option<f64>,
}

#[derive(Serialize)]
struct ReportBody {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    grants: Grants,
    requests: Counts,
    by_requester: Vec<ByRequester>,
    by_purpose: Vec<ByPurpose>,
    refusals: Vec<Refusal>,
    decisions: Decisions,
}

impl From<UsageReport> for ReportBody {
    fn from(r: UsageReport) -> Self {
        ReportBody {
            since: r.since,
            until: r.until,
            grants: Grants {
                issued: r.grants.issued,
                uses: r.grants.uses,
                allowed: r.grants.allowed,
                unused: r.grants.unused,
                revoked: r.grants.revoked,
            },
            requests: r.requests.into(),
            by_requester: r
                .by_requester
                .into_iter()
                .map(|(id, name, counts)| ByRequester {
                    principal: id.0,
                    name,
                    counts: counts.into(),
                })
                .collect(),
            by_purpose: r
                .by_purpose
                .into_iter()
                .map(|(purpose, counts)| ByPurpose {
                    purpose,
                    counts: counts.into(),
                })
                .collect(),
            refusals: r
                .refusals
                .into_iter()
                .map(|(code, count)| Refusal { code, count })
                .collect(),
            decisions: Decisions {
                decided: r.decisions.decided,
                median_seconds: r.decisions.median_seconds,
                p90_seconds: r.decisions.p90_seconds,
                max_seconds: r.decisions.max_seconds,
            },
        }
    }
}

fn invalid(field: &str, expected: &'static str) -> ApiError {
    ApiError::InvalidField {
        field: field.into(),
        expected,
    }
}

/// The period asked: `until` defaults to now and `since` to 30 days before it.
fn parse_period(params: &HashMap<String, String>, now: DateTime<Utc>) -> Result<Period, ApiError> {
    let until = time_param(params, "until")?.unwrap_or(now);
    let since = time_param(params, "since")?.unwrap_or(until - TimeDelta::days(DEFAULT_DAYS));
    if since >= until {
        return Err(invalid("until", "a time after `since`"));
    }
    if until - since > TimeDelta::days(MAX_DAYS) {
        return Err(invalid("since", "at most 366 days before `until`"));
    }
    Ok(Period { since, until })
}

async fn usage(
    State(state): State<AppState>,
    ctx: RequestContext,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<ReportBody>, ApiError> {
    let now = state.clock().now();
    let asked =
        query_params(query, &["since", "until"]).and_then(|params| parse_period(&params, now));
    let report = state.reports().usage(&ctx, asked).await?;
    Ok(Json(report.into()))
}
