//! `ApiError`: every refusal the HTTP API can give, as RFC 9457 problem details.
//!
//! One enum, one exhaustive match from variant to status and stable `code`, one
//! `IntoResponse`. Details are fixed text or names we chose, never caller input, so no answer
//! can echo a card number or a credential. Internal errors log their cause once.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::request_id;
use crate::domain::access::DecisionRefusal;
use crate::domain::{Denial, FormatError, MetadataError, PanError};
use crate::service::audit::ReadError;
use crate::service::health::NotReady;
use crate::service::mfa::MfaFailure;
use crate::service::unseal::UnsealError;
use crate::service::{
    AccessError, AuditError, Forbidden, GrantError, KeyError, Refusal, SessionError, Throttled,
    TokenError,
};

/// An API refusal.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON.
    #[error("the request body is not valid JSON")]
    MalformedJson,
    /// No, unknown, disabled or expired API key.
    #[error("a valid API key is required")]
    Unauthenticated,
    /// The caller's roles do not allow this route.
    #[error("the caller's roles do not allow this operation")]
    Forbidden,
    /// A console session's request that changes state came without its CSRF token.
    #[error("this change needs the session's CSRF token in X-CSRF-Token; reload the console")]
    CsrfFailed,
    /// No such token in the caller's tenant.
    #[error("no such token")]
    NotFound,
    /// No such access request visible to the caller.
    #[error("no such access request")]
    RequestNotFound,
    /// No such grant visible to the caller.
    #[error("no such grant")]
    GrantNotFound,
    /// A session route called without a console session.
    #[error("no console session: this route takes the session cookie, not an API key")]
    NoSession,
    /// No policy allows the access request.
    #[error("{}", .0.detail())]
    PolicyDenied(Denial),
    /// A TOTP code was needed and not accepted.
    #[error("{}", .0.detail())]
    MfaRequired(MfaFailure),
    /// The requester tried to decide their own request.
    #[error("a requester cannot approve or deny their own request")]
    SelfApproval,
    /// This approver already decided the request.
    #[error("this approver has already decided this request")]
    AlreadyApproved,
    /// The request is already approved or denied.
    #[error("the request has already been decided")]
    AlreadyDecided,
    /// The request expired before a decision.
    #[error("the request has expired")]
    RequestExpired,
    /// No `X-Access-Grant` header.
    #[error("an access grant (X-Access-Grant header) is required")]
    GrantMissing,
    /// The grant is not valid for this caller.
    #[error("the access grant is not valid")]
    GrantInvalid,
    /// The grant is outside its validity window.
    #[error("the access grant has expired or is not yet valid")]
    GrantExpired,
    /// The grant was revoked.
    #[error("the access grant has been revoked")]
    GrantRevoked,
    /// The grant has no uses left.
    #[error("the access grant has no uses left")]
    GrantExhausted,
    /// A token is outside the grant.
    #[error("a token asked for is not covered by the access grant")]
    GrantScope,
    /// No such route.
    #[error("no such route")]
    RouteNotFound,
    /// The route exists, not with this method.
    #[error("this route does not accept this method")]
    MethodNotAllowed,
    /// The token has expired.
    #[error("the token has expired")]
    TokenExpired,
    /// The token's card data was destroyed with its tenant's keys.
    #[error("the token's card data was destroyed")]
    TokenDestroyed,
    /// The token space for this PAN and format is used up.
    #[error("no unused token is left for this card number in this format")]
    TokenSpaceExhausted,
    /// The body is larger than the limit.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// The body is not `application/json`.
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    /// The value is not a card number.
    #[error("{0}")]
    InvalidPan(PanError),
    /// A field we do not know. The name is only shown when it is plainly a field name.
    #[error("unknown field")]
    UnknownField(Option<String>),
    /// A field given twice.
    #[error("a field appears more than once")]
    DuplicateField,
    /// A field with a bad value: the field's path and what it must be.
    #[error("invalid field `{field}`: {expected}")]
    InvalidField {
        /// The field's path in the body (our own names only).
        field: String,
        /// What the value must be.
        expected: &'static str,
    },
    /// The request carries sensitive authentication data or, in metadata, card data.
    #[error("{0}")]
    SensitiveData(&'static str),
    /// The format cannot tokenize this PAN.
    #[error("{0}")]
    FormatNotAllowed(FormatError),
    /// The principal sent more requests than its rate limit; retry after this many seconds.
    #[error("too many requests: slow down and retry later")]
    RateLimited(u64),
    /// The card's bucket is locked as an enumeration suspect; retry after this many seconds.
    /// The same answer for a known and a new card number, so it is no oracle itself.
    #[error(
        "too many new card numbers with these first six and last four digits: tokenizing them is paused for review"
    )]
    EnumerationSuspected(u64),
    /// The request took longer than the configured timeout.
    #[error("the request took too long")]
    Timeout,
    /// The database or keys are not ready.
    #[error("the service is not ready")]
    NotReady(NotReady),
    /// Too many requests in flight on this instance: try again shortly.
    #[error("the vault is at capacity right now; nothing was done")]
    Overloaded,
    /// The database is unreachable, out of connections or stalled: try again shortly.
    #[error("the database is unavailable right now; nothing was changed")]
    DatabaseUnavailable,
    /// The audit record could not be written, so nothing was released.
    #[error("the audit trail cannot be written right now; nothing was released")]
    AuditUnavailable,
    /// A sealed card number failed its integrity check (a moved, swapped or corrupted row);
    /// nothing was released.
    #[error("a stored card number failed its integrity check; nothing was released")]
    IntegrityError,
    /// The instance is sealed: custodians' shares must unseal it first.
    #[error(
        "the vault is sealed: custodians must unseal it with their shares (POST /v1/sys/unseal)"
    )]
    Sealed,
    /// A custodian's share is mistyped, malformed, of another threshold or given twice.
    #[error("{0}")]
    InvalidShare(String),
    /// The shares given do not make this vault's master key: progress was reset.
    #[error("{0}")]
    UnsealFailed(String),
    /// Something failed inside; the cause is logged, not shown.
    #[error("internal error")]
    Internal,
}

/// An RFC 9457 problem details object, with our `code` and `request_id` extensions.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// A URI naming the problem type (RFC 9457 §3.1.1).
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the type.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The stable machine code.
    pub code: &'static str,
    /// The request id (also in `X-Request-Id`).
    pub request_id: String,
    /// For `policy_denied`: which limit refused it (`purpose`, `duration`, `uses`, `tokens`,
    /// `any_token`, `hours`, `network`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// For `rate_limited` and `enumeration_suspected`: seconds until a retry may succeed (the
    /// `Retry-After` header's value, here too for the items of a batch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// Every stable `code` a problem can carry (`openapi.yaml` documents exactly these; a test
    /// holds the two equal, and another holds this list to [`ApiError::status_and_code`]).
    pub const CODES: &'static [&'static str] = &[
        "malformed_json",
        "unauthenticated",
        "forbidden",
        "csrf_failed",
        "not_found",
        "policy_denied",
        "mfa_required",
        "self_approval",
        "already_approved",
        "already_decided",
        "request_expired",
        "grant_missing",
        "grant_invalid",
        "grant_expired",
        "grant_revoked",
        "grant_exhausted",
        "grant_scope",
        "route_not_found",
        "method_not_allowed",
        "token_expired",
        "token_destroyed",
        "token_space_exhausted",
        "payload_too_large",
        "unsupported_media_type",
        "invalid_pan",
        "unknown_field",
        "duplicate_field",
        "invalid_field",
        "sensitive_data_refused",
        "format_not_allowed",
        "rate_limited",
        "enumeration_suspected",
        "timeout",
        "not_ready",
        "audit_unavailable",
        "database_unavailable",
        "overloaded",
        "integrity_error",
        "sealed",
        "invalid_share",
        "unseal_failed",
        "internal",
    ];

    /// The HTTP status and stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::MalformedJson => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::CsrfFailed => (StatusCode::FORBIDDEN, "csrf_failed"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::RequestNotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::GrantNotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::NoSession => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::PolicyDenied(_) => (StatusCode::FORBIDDEN, "policy_denied"),
            ApiError::MfaRequired(_) => (StatusCode::FORBIDDEN, "mfa_required"),
            ApiError::SelfApproval => (StatusCode::FORBIDDEN, "self_approval"),
            ApiError::AlreadyApproved => (StatusCode::CONFLICT, "already_approved"),
            ApiError::AlreadyDecided => (StatusCode::CONFLICT, "already_decided"),
            ApiError::RequestExpired => (StatusCode::CONFLICT, "request_expired"),
            ApiError::GrantMissing => (StatusCode::FORBIDDEN, "grant_missing"),
            ApiError::GrantInvalid => (StatusCode::FORBIDDEN, "grant_invalid"),
            ApiError::GrantExpired => (StatusCode::FORBIDDEN, "grant_expired"),
            ApiError::GrantRevoked => (StatusCode::FORBIDDEN, "grant_revoked"),
            ApiError::GrantExhausted => (StatusCode::FORBIDDEN, "grant_exhausted"),
            ApiError::GrantScope => (StatusCode::FORBIDDEN, "grant_scope"),
            ApiError::RouteNotFound => (StatusCode::NOT_FOUND, "route_not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::TokenExpired => (StatusCode::GONE, "token_expired"),
            ApiError::TokenDestroyed => (StatusCode::GONE, "token_destroyed"),
            ApiError::TokenSpaceExhausted => (StatusCode::CONFLICT, "token_space_exhausted"),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::InvalidPan(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_pan"),
            ApiError::UnknownField(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_field"),
            ApiError::DuplicateField => (StatusCode::UNPROCESSABLE_ENTITY, "duplicate_field"),
            ApiError::InvalidField { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
            ApiError::SensitiveData(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "sensitive_data_refused")
            }
            ApiError::FormatNotAllowed(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "format_not_allowed")
            }
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::EnumerationSuspected(_) => {
                (StatusCode::TOO_MANY_REQUESTS, "enumeration_suspected")
            }
            ApiError::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            ApiError::AuditUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
            ApiError::DatabaseUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
            ApiError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ApiError::IntegrityError => (StatusCode::INTERNAL_SERVER_ERROR, "integrity_error"),
            ApiError::Sealed => (StatusCode::SERVICE_UNAVAILABLE, "sealed"),
            ApiError::InvalidShare(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_share"),
            ApiError::UnsealFailed(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unseal_failed"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The problem object for this error in the current request.
    pub fn to_problem(&self) -> Problem {
        let (status, code) = self.status_and_code();
        let detail = match self {
            ApiError::UnknownField(Some(name)) => format!("unknown field `{name}`"),
            other => other.to_string(),
        };
        Problem {
            type_uri: format!("urn:strongroom:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            code,
            request_id: request_id::current(),
            reason: match self {
                ApiError::PolicyDenied(denial) => Some(denial.as_str()),
                ApiError::NotReady(what) => Some(what.as_str()),
                _ => None,
            },
            retry_after: match self {
                ApiError::RateLimited(s) | ApiError::EnumerationSuspected(s) => Some(*s),
                _ => None,
            },
        }
    }
}

/// The `code` of a problem answer, for the metrics layer to count refusals by.
#[derive(Debug, Clone, Copy)]
pub struct ProblemCode(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.to_problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = ProblemCode(problem.code);
        let mut response = (status, Json(problem)).into_response();
        response.extensions_mut().insert(code);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            // RFC 6750 §3.
            ApiError::Unauthenticated => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Timeout
            | ApiError::Sealed
            | ApiError::NotReady(_)
            | ApiError::AuditUnavailable
            | ApiError::DatabaseUnavailable
            | ApiError::Overloaded => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // RFC 6585 §4.
            ApiError::RateLimited(seconds) | ApiError::EnumerationSuspected(seconds) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            _ => {}
        }
        response
    }
}

/// Logs a database that is unreachable or stalled, and answers 503 with `Retry-After`.
pub fn unavailable(cause: &dyn std::error::Error) -> ApiError {
    tracing::warn!(error = %cause, "database unavailable");
    ApiError::DatabaseUnavailable
}

/// Logs an internal failure once, with its cause, and hides it from the caller.
pub fn internal(what: &'static str, cause: &dyn std::error::Error) -> ApiError {
    tracing::error!(error = %cause, "{what}");
    ApiError::Internal
}

impl From<PanError> for ApiError {
    fn from(e: PanError) -> Self {
        ApiError::InvalidPan(e)
    }
}

impl From<MetadataError> for ApiError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::SensitiveField => ApiError::SensitiveData(
                "metadata must not carry sensitive authentication data (CVV, PIN, track data)",
            ),
            MetadataError::CardNumber => {
                ApiError::SensitiveData("metadata must not contain a card number")
            }
            MetadataError::NotAnObject => ApiError::InvalidField {
                field: "metadata".into(),
                expected: "a JSON object",
            },
            MetadataError::TooLarge => ApiError::InvalidField {
                field: "metadata".into(),
                expected: "at most 2048 bytes",
            },
            MetadataError::TooDeep => ApiError::InvalidField {
                field: "metadata".into(),
                expected: "nested at most 4 levels deep",
            },
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Format(f) => ApiError::FormatNotAllowed(f),
            TokenError::ExpiryInPast => ApiError::InvalidField {
                field: "expires_at".into(),
                expected: "a time in the future",
            },
            TokenError::SpaceExhausted => ApiError::TokenSpaceExhausted,
            TokenError::NotFound => ApiError::NotFound,
            TokenError::Expired => ApiError::TokenExpired,
            TokenError::Destroyed => ApiError::TokenDestroyed,
            TokenError::EnumerationSuspected(s) => ApiError::EnumerationSuspected(s),
            TokenError::Key(KeyError::Integrity) => ApiError::IntegrityError,
            TokenError::Key(e) => e.into(),
            TokenError::Audit(e) => e.into(),
            TokenError::Store(e) if e.is_unavailable() => unavailable(&e),
            TokenError::Store(e) => internal("store operation failed", &e),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::PolicyDenied(denial) => ApiError::PolicyDenied(denial),
            AccessError::Mfa(failure) => ApiError::MfaRequired(failure),
            AccessError::NotFound => ApiError::RequestNotFound,
            AccessError::Refused(refusal) => refusal.into(),
            AccessError::Key(e) => e.into(),
            AccessError::Store(e) if e.is_unavailable() => unavailable(&e),
            AccessError::Store(e) => internal("store operation failed", &e),
        }
    }
}

impl From<DecisionRefusal> for ApiError {
    fn from(refusal: DecisionRefusal) -> Self {
        match refusal {
            DecisionRefusal::SelfApproval => ApiError::SelfApproval,
            DecisionRefusal::AlreadyDecided => ApiError::AlreadyApproved,
            DecisionRefusal::Closed(_) => ApiError::AlreadyDecided,
            DecisionRefusal::Expired => ApiError::RequestExpired,
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Unauthenticated => ApiError::Unauthenticated,
            SessionError::Throttled(seconds) => ApiError::RateLimited(seconds),
            SessionError::Mfa(failure) => ApiError::MfaRequired(failure),
            SessionError::Key(e) => e.into(),
            SessionError::Store(e) if e.is_unavailable() => unavailable(&e),
            SessionError::Store(e) => internal("store operation failed", &e),
            SessionError::Random => ApiError::Internal,
        }
    }
}

impl From<UnsealError> for ApiError {
    fn from(e: UnsealError) -> Self {
        match e {
            UnsealError::Share(_) | UnsealError::Threshold(..) => {
                ApiError::InvalidShare(e.to_string())
            }
            UnsealError::WrongSet(_) => ApiError::UnsealFailed(e.to_string()),
            UnsealError::Throttled(seconds) => ApiError::RateLimited(seconds),
            UnsealError::Audit(e) => e.into(),
            UnsealError::Store(e) if e.is_unavailable() => unavailable(&e),
            UnsealError::Store(e) => internal("store operation failed", &e),
        }
    }
}

impl From<GrantError> for ApiError {
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::Missing => ApiError::GrantMissing,
            GrantError::Invalid => ApiError::GrantInvalid,
            GrantError::Expired => ApiError::GrantExpired,
            GrantError::Revoked => ApiError::GrantRevoked,
            GrantError::Exhausted => ApiError::GrantExhausted,
            GrantError::Scope => ApiError::GrantScope,
            GrantError::NotFound => ApiError::GrantNotFound,
            GrantError::Key(e) => e.into(),
            GrantError::Store(e) if e.is_unavailable() => unavailable(&e),
            GrantError::Store(e) => internal("store operation failed", &e),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        if e.is_unavailable() {
            unavailable(&e)
        } else {
            internal("store operation failed", &e)
        }
    }
}

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Unavailable => ApiError::AuditUnavailable,
            AuditError::DatabaseUnavailable => ApiError::DatabaseUnavailable,
        }
    }
}

impl From<Forbidden> for ApiError {
    fn from(_: Forbidden) -> Self {
        ApiError::Forbidden
    }
}

impl From<Throttled> for ApiError {
    fn from(Throttled(seconds): Throttled) -> Self {
        ApiError::RateLimited(seconds)
    }
}

/// The trail records a refusal with the code its answer carries.
impl Refusal for ApiError {
    fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    fn is_fault(&self) -> bool {
        self.status_and_code().0.is_server_error()
    }

    fn detail(&self) -> Option<&'static str> {
        match self {
            ApiError::PolicyDenied(denial) => Some(denial.as_str()),
            // The trail learns what the caller may not: missing, wrong, replayed or locked.
            ApiError::MfaRequired(failure) => Some(failure.as_str()),
            _ => None,
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            // The caller's tenant was shredded (a credential that outlived it): it may store
            // nothing again.
            KeyError::TenantShredded => ApiError::Forbidden,
            // The stored keys were rewrapped under another master key while this instance
            // still runs on the old one: it cannot make keys until restarted with the new one.
            KeyError::MasterKeyMismatch => ApiError::NotReady(NotReady::Keys),
            e if e.is_unavailable() => unavailable(&e),
            e => internal("key operation failed", &e),
        }
    }
}

#[cfg(test)]
mod code_tests {
    use std::collections::BTreeSet;

    use super::*;

    /// One of each variant. The match below stops compiling when a variant is added, until it
    /// is listed here too.
    fn one_of_each() -> Vec<ApiError> {
        let all = vec![
            ApiError::MalformedJson,
            ApiError::Unauthenticated,
            ApiError::Forbidden,
            ApiError::CsrfFailed,
            ApiError::NotFound,
            ApiError::RequestNotFound,
            ApiError::GrantNotFound,
            ApiError::NoSession,
            ApiError::PolicyDenied(Denial::Purpose),
            ApiError::MfaRequired(MfaFailure::Missing),
            ApiError::SelfApproval,
            ApiError::AlreadyApproved,
            ApiError::AlreadyDecided,
            ApiError::RequestExpired,
            ApiError::GrantMissing,
            ApiError::GrantInvalid,
            ApiError::GrantExpired,
            ApiError::GrantRevoked,
            ApiError::GrantExhausted,
            ApiError::GrantScope,
            ApiError::RouteNotFound,
            ApiError::MethodNotAllowed,
            ApiError::TokenExpired,
            ApiError::TokenDestroyed,
            ApiError::TokenSpaceExhausted,
            ApiError::PayloadTooLarge,
            ApiError::UnsupportedMediaType,
            ApiError::InvalidPan(PanError::Empty),
            ApiError::UnknownField(None),
            ApiError::DuplicateField,
            ApiError::InvalidField {
                field: "x".into(),
                expected: "y",
            },
            ApiError::SensitiveData("z"),
            ApiError::FormatNotAllowed(FormatError::PanTooShortForSixFour),
            ApiError::RateLimited(1),
            ApiError::EnumerationSuspected(1),
            ApiError::Timeout,
            ApiError::NotReady(NotReady::Database),
            ApiError::AuditUnavailable,
            ApiError::DatabaseUnavailable,
            ApiError::Overloaded,
            ApiError::IntegrityError,
            ApiError::Sealed,
            ApiError::InvalidShare(String::new()),
            ApiError::UnsealFailed(String::new()),
            ApiError::Internal,
        ];
        for e in &all {
            match e {
                ApiError::MalformedJson
                | ApiError::Unauthenticated
                | ApiError::Forbidden
                | ApiError::CsrfFailed
                | ApiError::NotFound
                | ApiError::RequestNotFound
                | ApiError::GrantNotFound
                | ApiError::NoSession
                | ApiError::PolicyDenied(_)
                | ApiError::MfaRequired(_)
                | ApiError::SelfApproval
                | ApiError::AlreadyApproved
                | ApiError::AlreadyDecided
                | ApiError::RequestExpired
                | ApiError::GrantMissing
                | ApiError::GrantInvalid
                | ApiError::GrantExpired
                | ApiError::GrantRevoked
                | ApiError::GrantExhausted
                | ApiError::GrantScope
                | ApiError::RouteNotFound
                | ApiError::MethodNotAllowed
                | ApiError::TokenExpired
                | ApiError::TokenDestroyed
                | ApiError::TokenSpaceExhausted
                | ApiError::PayloadTooLarge
                | ApiError::UnsupportedMediaType
                | ApiError::InvalidPan(_)
                | ApiError::UnknownField(_)
                | ApiError::DuplicateField
                | ApiError::InvalidField { .. }
                | ApiError::SensitiveData(_)
                | ApiError::FormatNotAllowed(_)
                | ApiError::RateLimited(_)
                | ApiError::EnumerationSuspected(_)
                | ApiError::Timeout
                | ApiError::NotReady(_)
                | ApiError::AuditUnavailable
                | ApiError::DatabaseUnavailable
                | ApiError::Overloaded
                | ApiError::IntegrityError
                | ApiError::Sealed
                | ApiError::InvalidShare(_)
                | ApiError::UnsealFailed(_)
                | ApiError::Internal => {}
            }
        }
        all
    }

    #[test]
    fn the_code_list_is_exactly_the_codes_the_server_sends() {
        let sent: BTreeSet<&str> = one_of_each()
            .iter()
            .map(|e| e.status_and_code().1)
            .collect();
        let listed: BTreeSet<&str> = ApiError::CODES.iter().copied().collect();
        assert_eq!(sent, listed);
        assert_eq!(listed.len(), ApiError::CODES.len(), "no code listed twice");
    }
}
