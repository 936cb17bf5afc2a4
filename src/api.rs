//! The HTTP API: shared state, the route table and the middleware stack.
//!
//! HTTP only: handlers extract, parse into domain types, call a service and map the answer.
//! Every non-2xx answer is an RFC 9457 problem (see `error`).

pub mod access_requests;
pub mod audit;
pub mod auth_flood;
pub mod detokenize;
pub mod error;
pub mod extract;
pub mod grants;
pub mod guard;
pub mod health;
pub mod middleware;
pub mod rate_limit;
pub mod request_id;
pub mod source;
pub mod tokens;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};
use ipnet::IpNet;
use tower_http::catch_panic::CatchPanicLayer;

pub use error::ApiError;
use rate_limit::RateLimits;

use crate::clock::Clock;
use crate::domain::audit::{Action, AuditEvent, Outcome};
use crate::metrics::Metrics;
use crate::service::principals::FailedAuth;
use crate::service::{AccessService, AuditTrail, GrantService, Guard, KeyService, TokenService};
use crate::store::Store;
use auth_flood::{AuthFloods, FailureKey, FailureWindow};

/// Limits and timeouts of the HTTP layer.
#[derive(Debug, Clone, Copy)]
pub struct ApiSettings {
    /// Longest a request may run.
    pub request_timeout: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Sustained requests per second per principal (0: no limit).
    pub rate_limit_per_second: u32,
    /// Burst size per principal.
    pub rate_limit_burst: u32,
}

/// Everything a handler needs, behind one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    store: Arc<dyn Store>,
    keys: Arc<KeyService>,
    tokens: TokenService,
    access: AccessService,
    grants: GrantService,
    audit: AuditTrail,
    guard: Arc<Guard>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    rate_limits: RateLimits,
    auth_floods: AuthFloods,
    settings: ApiSettings,
    trusted_proxies: Vec<IpNet>,
}

/// The services behind the API.
pub struct Services {
    /// Tokenize, look up, delete, reveal.
    pub tokens: TokenService,
    /// Access requests.
    pub access: AccessService,
    /// Grants.
    pub grants: GrantService,
    /// The audit trail's appender.
    pub audit: AuditTrail,
    /// The oracle guards.
    pub guard: Arc<Guard>,
}

impl AppState {
    /// Assembles the state.
    pub fn new(
        store: Arc<dyn Store>,
        keys: Arc<KeyService>,
        services: Services,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        settings: ApiSettings,
        trusted_proxies: Vec<IpNet>,
    ) -> AppState {
        let rate_limits =
            RateLimits::new(settings.rate_limit_per_second, settings.rate_limit_burst);
        AppState(Arc::new(Inner {
            store,
            keys,
            tokens: services.tokens,
            access: services.access,
            grants: services.grants,
            audit: services.audit,
            guard: services.guard,
            clock,
            metrics,
            rate_limits,
            auth_floods: AuthFloods::default(),
            settings,
            trusted_proxies,
        }))
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    /// The key service.
    pub fn keys(&self) -> &KeyService {
        &self.0.keys
    }

    /// The token service.
    pub fn tokens(&self) -> &TokenService {
        &self.0.tokens
    }

    /// The access request service.
    pub fn access(&self) -> &AccessService {
        &self.0.access
    }

    /// The grant service.
    pub fn grants(&self) -> &GrantService {
        &self.0.grants
    }

    /// The audit trail.
    pub fn audit(&self) -> &AuditTrail {
        &self.0.audit
    }

    /// The oracle guards.
    pub fn guard(&self) -> &Guard {
        &self.0.guard
    }

    /// Proxies whose `X-Forwarded-For` is believed.
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.0.trusted_proxies
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        self.0.clock.as_ref()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Per-principal rate limits.
    pub fn rate_limits(&self) -> &RateLimits {
        &self.0.rate_limits
    }

    /// Limits and timeouts.
    pub fn settings(&self) -> &ApiSettings {
        &self.0.settings
    }

    /// The one place where authentication failures are observed: counted, logged and audited
    /// (by reason and source address, never the presented key; under the principal and its
    /// tenant when the key is one the vault knows). A flood from one source is aggregated in
    /// the trail (see [`auth_flood`]); the answer is the number of seconds to make the source
    /// wait when it is past its limit. The caller gets its answer whether or not the record
    /// could be written.
    pub async fn observe_auth_failure(
        &self,
        failure: FailedAuth,
        source: Option<IpAddr>,
    ) -> Option<u64> {
        let reason = failure.reason.as_str();
        self.0.metrics.observe_auth_failure(reason);
        let request_id = request_id::current();
        tracing::warn!(
            request_id = %request_id,
            reason,
            source = %source.map(|ip| ip.to_string()).unwrap_or_default(),
            "authentication failed"
        );
        let key = FailureKey {
            source,
            principal: failure.principal.as_ref().map(|p| (p.id, p.tenant)),
        };
        let now = self.clock().now();
        let verdict = self.0.auth_floods.observe(key, reason, now);
        // Ended windows first, so the trail reads in the order things happened.
        self.record_auth_floods(verdict.ended).await;
        if verdict.record {
            let mut event = auth_failure_event(key, now);
            event.detail = Some(reason.to_owned());
            event.request_id = Some(request_id);
            let _ = self.audit().record(event).await;
        }
        verdict.throttled
    }

    /// Writes the aggregated records of failure windows that have ended (also called on a
    /// timer, so a flood that stops is still recorded).
    pub async fn sweep_auth_floods(&self) {
        let ended = self.0.auth_floods.sweep(self.clock().now());
        self.record_auth_floods(ended).await;
    }

    async fn record_auth_floods(&self, ended: Vec<(FailureKey, FailureWindow)>) {
        for (key, window) in ended {
            let mut event = auth_failure_event(key, self.clock().now());
            event.detail = Some(format!(
                "{} failures from this source between {} and the end of a {}s window \
                 (the first recorded on its own; last reason {})",
                window.count,
                window.started.to_rfc3339(),
                auth_flood::WINDOW.num_seconds(),
                window.reason,
            ));
            let _ = self.audit().record(event).await;
        }
    }
}

/// An `auth.failure` record for `key`, without its detail.
fn auth_failure_event(key: FailureKey, now: chrono::DateTime<chrono::Utc>) -> AuditEvent {
    let mut event = AuditEvent::new(Action::AuthFailure, now);
    event.outcome = Outcome::Denied;
    event.code = Some(ApiError::Unauthenticated.status_and_code().1.to_owned());
    event.source = key.source.map(|ip| ip.to_string());
    if let Some((principal, tenant)) = key.principal {
        event.actor = Some(principal);
        event.tenant = Some(tenant);
    }
    event
}

/// One route: method, path template and handler. The route table is data so that a test can
/// hold it against `openapi.yaml`.
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path template, in axum's and OpenAPI's shared `{param}` syntax.
    pub path: &'static str,
    handler: MethodRouter<AppState>,
}

impl Route {
    /// A route for `handler`.
    pub fn new<H, T>(method: Method, path: &'static str, handler: H) -> Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
        Route {
            method,
            path,
            handler: on(filter, handler),
        }
    }
}

/// Every route the server answers.
pub fn routes() -> Vec<Route> {
    let mut routes = tokens::routes();
    routes.extend(access_requests::routes());
    routes.extend(detokenize::routes());
    routes.extend(grants::routes());
    routes.extend(audit::routes());
    routes.extend(health::routes());
    routes
}

/// The application: routes and the middleware stack.
pub fn router(state: AppState) -> Router {
    let max_body = state.settings().max_body_bytes;
    let routes = routes()
        .into_iter()
        .fold(Router::new(), |router, r| router.route(r.path, r.handler));
    routes
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // Layers run outside-in from the last added: request id first (so every answer, even
        // a panic or a timeout, carries one), then the access log and metrics, security
        // headers, panic capture, the timeout, and the body limit read by `JsonBody`.
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::timeout,
        ))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn(middleware::security_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::access_log,
        ))
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}
