//! The people's console at `/console`: requesters ask and reveal, approvers decide, auditors
//! review, admins revoke, in the browser.
//!
//! Static pages embedded in the binary at build time (no CDN, no external fonts), which talk
//! to the same `/v1` API as everyone else with the session cookie (see `api::sessions`). Every
//! page is the same shell; the script draws the page its path names. The pages are served
//! under a strict Content-Security-Policy: scripts and styles only from this origin, no inline
//! script or style, no framing, no form posted elsewhere.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::api::{ApiError, AppState};

/// The pages, by the last part of their path (`/console/{page}`); the sign-in page is
/// `/console` itself.
pub const PAGES: &[&str] = &["requests", "inbox", "audit", "report", "grants"];

const SHELL: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");

/// What the console's pages may load and do.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// The console's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(shell))
        .route(
            "/console/",
            get(|| async { Redirect::permanent("/console") }),
        )
        .route("/console/{page}", get(page))
        .route("/console/assets/console.js", get(script))
        .route("/console/assets/console.css", get(style))
}

async fn shell() -> Response {
    html(SHELL)
}

async fn page(Path(page): Path<String>) -> Response {
    if PAGES.contains(&page.as_str()) {
        html(SHELL)
    } else {
        ApiError::RouteNotFound.into_response()
    }
}

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

fn html(body: &'static str) -> Response {
    let mut response = asset(body, "text/html; charset=utf-8");
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    response
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
