//! `GET /v1/policies`: the access policies a caller may ask under, with their limits, so that
//! a person sees before sending what a request may be and how many approvals it needs.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use serde::Serialize;

use super::{ApiError, AppState, Route};
use crate::domain::{Policy, Purpose, Role};
use crate::service::RequestContext;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![Route::new(Method::GET, "/v1/policies", list)]
}

/// A policy as the API shows it.
#[derive(Debug, Serialize)]
pub struct PolicyBody {
    name: String,
    roles: Vec<Role>,
    purposes: Vec<Purpose>,
    approvals: u32,
    max_duration_seconds: u32,
    max_uses: u32,
    max_tokens: u32,
    any_token: bool,
    mfa: bool,
    hours_utc: Option<String>,
    source_cidrs: Option<Vec<String>>,
}

impl From<Policy> for PolicyBody {
    fn from(p: Policy) -> Self {
        PolicyBody {
            name: p.name,
            roles: p.roles,
            purposes: p.purposes,
            approvals: p.approvals,
            max_duration_seconds: p.max_duration_seconds,
            max_uses: p.max_uses,
            max_tokens: p.max_tokens,
            any_token: p.any_token,
            mfa: p.mfa,
            hours_utc: p.hours_utc.map(|h| h.to_string()),
            source_cidrs: p
                .source_cidrs
                .map(|nets| nets.iter().map(ToString::to_string).collect()),
        }
    }
}

#[derive(Serialize)]
struct ListBody {
    policies: Vec<PolicyBody>,
}

async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
) -> Result<Json<ListBody>, ApiError> {
    let policies = state.access().policies_for::<ApiError>(&ctx).await?;
    Ok(Json(ListBody {
        policies: policies.into_iter().map(PolicyBody::from).collect(),
    }))
}
