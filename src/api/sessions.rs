//! `/v1/sessions`: people sign in to the console with their API key and TOTP code, and out.
//!
//! The session token goes into an `HttpOnly`, `SameSite=Strict` cookie (`Secure` and
//! `__Host-` under HTTPS) and never into a body, so no script on the page can read it; the
//! API key is read once here and not kept. Answers carry the session's CSRF token, which the
//! page sends back in `X-CSRF-Token` on every change (see `extract`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::extract::{JsonBody, Secret, from_value, session_cookie, session_cookie_name};
use super::source::Source;
use super::{ApiError, AppState, Route, request_id};
use crate::domain::{Principal, PrincipalId, Role, TenantId};
use crate::service::sessions::{ABSOLUTE_LIMIT, IDLE_LIMIT};
use crate::service::{RequestContext, SessionService, SessionView, StartedSession};

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/v1/sessions", sign_in),
        Route::new(Method::GET, "/v1/sessions/current", current),
        Route::new(Method::DELETE, "/v1/sessions/current", sign_out),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInBody {
    api_key: Secret,
    #[serde(default)]
    totp: Option<Secret>,
}

#[derive(Serialize)]
struct PrincipalBody<'a> {
    id: PrincipalId,
    tenant: TenantId,
    name: &'a str,
    roles: &'a [Role],
}

/// A session as the API shows it: never its token.
#[derive(Serialize)]
struct SessionBody<'a> {
    principal: PrincipalBody<'a>,
    idle_expires_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    idle_timeout_seconds: i64,
    csrf_token: String,
}

fn session_body<'a>(
    principal: &'a Principal,
    view: &SessionView,
    csrf_token: String,
) -> SessionBody<'a> {
    SessionBody {
        principal: PrincipalBody {
            id: principal.id,
            tenant: principal.tenant,
            name: &principal.name,
            roles: &principal.roles,
        },
        idle_expires_at: view.idle_expires_at,
        expires_at: view.expires_at,
        idle_timeout_seconds: IDLE_LIMIT.num_seconds(),
        csrf_token,
    }
}

/// The `Set-Cookie` value that carries `value` for `max_age` seconds (0 deletes it).
fn cookie(secure: bool, value: &str, max_age: i64) -> Result<HeaderValue, ApiError> {
    let name = session_cookie_name(secure);
    let secure = if secure { "; Secure" } else { "" };
    let text = Zeroizing::new(format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ));
    HeaderValue::from_str(&text).map_err(|_| ApiError::Internal)
}

async fn sign_in(
    State(state): State<AppState>,
    Source(source): Source,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let body: SignInBody = from_value(body?.0)?;
    let StartedSession {
        token,
        principal,
        view,
    } = state
        .sessions()
        .sign_in::<ApiError>(
            &body.api_key.0,
            body.totp.as_ref().map(|c| c.0.as_str()),
            source,
            request_id::current(),
        )
        .await?;
    let secure = state.settings().secure_cookies;
    let set_cookie = cookie(secure, &token.expose(), ABSOLUTE_LIMIT.num_seconds())?;
    let answer = session_body(&principal, &view, token.csrf_token());
    let mut response = (StatusCode::CREATED, Json(answer)).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie);
    Ok(response)
}

async fn current(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let secure = state.settings().secure_cookies;
    let (Some(view), Some(csrf)) = (
        ctx.session.as_ref(),
        session_cookie(&headers, secure).and_then(|c| SessionService::csrf_token(&c)),
    ) else {
        // An API key is no session.
        return Err(ApiError::NoSession);
    };
    Ok(Json(session_body(&ctx.principal, view, csrf)).into_response())
}

async fn sign_out(
    State(state): State<AppState>,
    ctx: RequestContext,
) -> Result<Response, ApiError> {
    if ctx.session.is_none() {
        return Err(ApiError::NoSession);
    }
    state.sessions().sign_out::<ApiError>(&ctx).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let cleared = cookie(state.settings().secure_cookies, "", 0)?;
    response.headers_mut().insert(header::SET_COOKIE, cleared);
    Ok(response)
}
