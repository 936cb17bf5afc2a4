//! The HTTP API: shared state, the route table and the middleware stack.
//!
//! HTTP only: handlers extract, parse into domain types, call a service and map the answer.
//! Every non-2xx answer is an RFC 9457 problem (see `error`).

pub mod access_requests;
pub mod audit;
pub mod detokenize;
pub mod error;
pub mod extract;
pub mod grants;
pub mod health;
pub mod middleware;
pub mod policies;
pub mod rate_limit;
mod reports;
pub mod request_id;
pub mod sessions;
pub mod source;
pub mod sys;
pub mod tokens;

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
use crate::metrics::Metrics;
use crate::service::unseal::Sealer;
use crate::service::{
    AccessService, AuditReader, AuditTrail, Authenticator, DetokenizeService, GrantService, Health,
    KeyService, ReviewService, SessionService, TokenService, UsageReporter,
};

/// The default largest request body: 3 MiB. The largest valid request is a batch of 1,000 items,
/// each at most ~2.3 KB written compactly (2,048 bytes of metadata, a 23-character value, a
/// format, an expiry, and the keys and punctuation around them): ~2.3 MB, with ~35 % to spare for
/// whitespace and escapes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 3 << 20;

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
    /// API requests (`/v1/…`) served at once; past it, `503 overloaded` at once instead of a
    /// queue without bound.
    pub max_in_flight: usize,
    /// Whether the browser reaches the vault over HTTPS (served with TLS, or behind a
    /// TLS-terminating proxy): the console's session cookie is then `Secure` and `__Host-`.
    pub secure_cookies: bool,
}

/// Everything a handler needs, behind one `Arc`: the use cases, and what the HTTP edge keeps
/// itself (rate limits, settings, metrics). No store: handlers reach data only through a
/// service.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    in_flight: Arc<tokio::sync::Semaphore>,
    services: Services,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    rate_limits: RateLimits,
    settings: ApiSettings,
    trusted_proxies: Vec<IpNet>,
}

/// The use cases behind the API.
pub struct Services {
    /// Keys: readiness and the grant-verifying JWKS.
    pub keys: Arc<KeyService>,
    /// Tokenize, look up, delete.
    pub tokens: Arc<TokenService>,
    /// Detokenize under a grant.
    pub detokenize: DetokenizeService,
    /// Access requests.
    pub access: Arc<AccessService>,
    /// Grants.
    pub grants: Arc<GrantService>,
    /// The audit trail's appender (checkpointed at shutdown).
    pub audit: AuditTrail,
    /// Auditors' reads.
    pub audit_reader: AuditReader,
    /// Auditors' usage reports.
    pub reports: UsageReporter,
    /// Approvers' reviews of access requests.
    pub review: ReviewService,
    /// Authentication.
    pub authn: Arc<Authenticator>,
    /// People's console sessions.
    pub sessions: Arc<SessionService>,
    /// Sealing this instance.
    pub sealer: Sealer,
    /// Readiness.
    pub health: Health,
}

impl AppState {
    /// Assembles the state.
    pub fn new(
        services: Services,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        settings: ApiSettings,
        trusted_proxies: Vec<IpNet>,
    ) -> AppState {
        let rate_limits =
            RateLimits::new(settings.rate_limit_per_second, settings.rate_limit_burst);
        AppState(Arc::new(Inner {
            in_flight: Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight.max(1))),
            services,
            clock,
            metrics,
            rate_limits,
            settings,
            trusted_proxies,
        }))
    }

    /// The key service.
    pub fn keys(&self) -> &KeyService {
        &self.0.services.keys
    }

    /// The token service.
    pub fn tokens(&self) -> &TokenService {
        &self.0.services.tokens
    }

    /// Detokenize.
    pub fn detokenizer(&self) -> &DetokenizeService {
        &self.0.services.detokenize
    }

    /// The access request service.
    pub fn access(&self) -> &AccessService {
        &self.0.services.access
    }

    /// The grant service.
    pub fn grants(&self) -> &GrantService {
        &self.0.services.grants
    }

    /// The audit trail.
    pub fn audit(&self) -> &AuditTrail {
        &self.0.services.audit
    }

    /// Auditors' reads.
    pub fn audit_reader(&self) -> &AuditReader {
        &self.0.services.audit_reader
    }

    /// Auditors' usage reports.
    pub fn reports(&self) -> &UsageReporter {
        &self.0.services.reports
    }

    /// Approvers' reviews of access requests.
    pub fn review(&self) -> &ReviewService {
        &self.0.services.review
    }

    /// Authentication.
    pub fn authn(&self) -> &Authenticator {
        &self.0.services.authn
    }

    /// People's console sessions.
    pub fn sessions(&self) -> &SessionService {
        &self.0.services.sessions
    }

    /// Sealing this instance.
    pub fn sealer(&self) -> &Sealer {
        &self.0.services.sealer
    }

    /// Readiness.
    pub fn health(&self) -> &Health {
        &self.0.services.health
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

    /// Room for one more API request in flight, if there is any.
    pub fn admit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.0.in_flight).try_acquire_owned().ok()
    }

    /// Limits and timeouts.
    pub fn settings(&self) -> &ApiSettings {
        &self.0.settings
    }
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
    routes.extend(policies::routes());
    routes.extend(reports::routes());
    routes.extend(sessions::routes());
    routes.extend(sys::routes());
    routes.extend(health::routes());
    routes
}

/// The application: routes and the middleware stack.
pub fn router(state: AppState) -> Router {
    let max_body = state.settings().max_body_bytes;
    let routes = routes()
        .into_iter()
        .fold(Router::new(), |router, r| router.route(r.path, r.handler))
        .merge(crate::console::router());
    routes
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // Layers run outside-in from the last added: request id first (so every answer, even
        // a panic or a timeout, carries one), then the access log and metrics, security
        // headers, panic capture, the timeout, the refusal of a declared oversize body, and the
        // body limit read by `JsonBody`.
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::declared_size,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::shed_load,
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
