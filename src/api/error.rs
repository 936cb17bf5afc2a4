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
use crate::domain::{FormatError, MetadataError, PanError};
use crate::service::{KeyError, TokenError};
use crate::store::StoreError;

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
    /// No such token in the caller's tenant.
    #[error("no such token")]
    NotFound,
    /// No such route.
    #[error("no such route")]
    RouteNotFound,
    /// The route exists, not with this method.
    #[error("this route does not accept this method")]
    MethodNotAllowed,
    /// The token has expired.
    #[error("the token has expired")]
    TokenExpired,
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
    /// The request took longer than the configured timeout.
    #[error("the request took too long")]
    Timeout,
    /// The database or keys are not ready.
    #[error("the service is not ready")]
    NotReady,
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
}

impl ApiError {
    /// The HTTP status and stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::MalformedJson => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::RouteNotFound => (StatusCode::NOT_FOUND, "route_not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::TokenExpired => (StatusCode::GONE, "token_expired"),
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
            ApiError::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            ApiError::NotReady => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
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
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.to_problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(problem)).into_response();
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
            ApiError::Timeout | ApiError::NotReady => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // RFC 6585 §4.
            ApiError::RateLimited(seconds) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            _ => {}
        }
        response
    }
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
            TokenError::Key(e) => internal("key operation failed", &e),
            TokenError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        internal("store operation failed", &e)
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        internal("key operation failed", &e)
    }
}
