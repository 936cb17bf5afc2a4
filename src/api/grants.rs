//! `/v1/grants`: list grants, revoke one, revoke many; and the JWKS that verifies them.
//!
//! Lists never carry a JWT. Revocation is a database write that every instance checks on the
//! next use of the grant.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::extract::{OptionalJsonBody, from_value, limit_param, query_params};
use super::{ApiError, AppState, Route};
use crate::domain::access::GrantRecord;
use crate::domain::{PrincipalId, Purpose, Token};
use crate::service::RequestContext;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/v1/grants", list),
        Route::new(Method::POST, "/v1/grants/{jti}/revoke", revoke),
        Route::new(Method::POST, "/v1/grants/revoke-all", revoke_all),
        Route::new(Method::GET, "/.well-known/jwks.json", jwks),
    ]
}

/// A grant as the API shows it: never the JWT.
#[derive(Debug, Serialize)]
struct GrantBody {
    jti: Uuid,
    grantee: PrincipalId,
    request_id: Uuid,
    purpose: Purpose,
    tokens: Vec<Token>,
    any_token: bool,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    uses: u32,
    max_uses: u32,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<GrantRecord> for GrantBody {
    fn from(g: GrantRecord) -> Self {
        GrantBody {
            jti: g.jti,
            grantee: g.grantee,
            request_id: g.request_id,
            purpose: g.purpose,
            tokens: g.tokens,
            any_token: g.any_token,
            issued_at: g.issued_at,
            expires_at: g.expires_at,
            uses: g.uses,
            max_uses: g.max_uses,
            revoked_at: g.revoked_at,
        }
    }
}

#[derive(Serialize)]
struct ListBody {
    grants: Vec<GrantBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeAllBody {
    #[serde(default)]
    principal: Option<Uuid>,
}

async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<ListBody>, ApiError> {
    let asked = query_params(query, &["active", "limit"]).and_then(|params| {
        let active = match params.get("active").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(ApiError::InvalidField {
                    field: "active".into(),
                    expected: "true or false",
                });
            }
        };
        Ok((active, limit_param(&params)?))
    });
    let grants = state
        .grants()
        .list(&ctx, asked)
        .await?
        .into_iter()
        .map(GrantBody::from)
        .collect();
    Ok(Json(ListBody { grants }))
}

async fn revoke(
    State(state): State<AppState>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let jti = path.ok().and_then(|Path(id)| Uuid::parse_str(&id).ok());
    state.grants().revoke::<ApiError>(&ctx, jti).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke_all(
    State(state): State<AppState>,
    ctx: RequestContext,
    body: Result<OptionalJsonBody, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let asked = body.and_then(|b| {
        let body: RevokeAllBody = from_value(b.0)?;
        Ok(body.principal.map(PrincipalId))
    });
    let revoked = state.grants().revoke_all(&ctx, asked).await?;
    Ok(Json(json!({ "revoked": revoked })))
}

/// The public keys that verify grants (RFC 7517). No authentication: they are public.
async fn jwks(State(state): State<AppState>) -> Json<Value> {
    Json(state.keys().grant_verifier().jwks())
}
