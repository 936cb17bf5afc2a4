//! Extractors: the request context (who is asking, from where), and JSON bodies parsed
//! strictly.
//!
//! Strict means: `application/json` only, no duplicate keys at any depth, unknown fields
//! refused, and no error that repeats what the caller sent (serde's messages can quote input,
//! so they are never passed on). Nothing here logs a header value or a body.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use zeroize::Zeroizing;

use super::error::{internal, unavailable};
use super::source::Source;
use super::{ApiError, AppState, request_id};
use crate::domain::card_data::names_sensitive_data;
use crate::service::{AuthFailure, RequestContext};

/// The one extractor of who is asking: authenticates the API key or, when there is none, the
/// console's session cookie (whose requests that change state must carry the session's CSRF
/// token). A failure is observed by the authenticator and answered 401 (403 `csrf_failed` for
/// a missing CSRF token), or 429 for a flood. Then the principal's rate limit, the request id
/// and the source address.
impl FromRequestParts<AppState> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let authorization = match parts.headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
            None => None,
            Some(Ok(value)) => Some(value),
            // Not visible ASCII: cannot be one of our keys.
            Some(Err(_)) => Some(""),
        };
        let cookie = authorization
            .is_none()
            .then(|| session_cookie(&parts.headers, state.settings().secure_cookies))
            .flatten();
        let authenticated = match cookie {
            Some(cookie) => {
                // Safe methods change nothing and need no CSRF token (RFC 9110 §9.2.1).
                let csrf = (!parts.method.is_safe())
                    .then(|| parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()));
                let activity = !parts.headers.contains_key(POLL_HEADER);
                state
                    .sessions()
                    .check(&cookie, csrf, activity)
                    .await
                    .map(|checked| checked.map(|(principal, view)| (principal, Some(view))))
            }
            None => state
                .authn()
                .authenticate(authorization)
                .await
                .map(|checked| checked.map(|principal| (principal, None))),
        };
        let authenticated = authenticated.map_err(|e| {
            if e.is_unavailable() {
                unavailable(&e)
            } else {
                internal("authentication failed", &e)
            }
        })?;
        let Source(source) = Source::from_request_parts(parts, state).await?;
        match authenticated {
            Ok((principal, session)) => match state.rate_limits().check(principal.id) {
                Ok(()) => Ok(RequestContext {
                    principal,
                    request_id: request_id::current(),
                    source,
                    session,
                }),
                // Whole seconds, rounded up, at least one (RFC 9110 §10.2.3).
                Err(wait) => Err(ApiError::RateLimited(wait.as_secs() + 1)),
            },
            Err(failure) => {
                let csrf = failure.reason == AuthFailure::CsrfMismatch;
                let observed = state
                    .authn()
                    .observe_failure(failure, source, request_id::current())
                    .await;
                match observed {
                    // A flood from this source: slowed down, whatever the key was.
                    Some(wait) => Err(ApiError::RateLimited(wait)),
                    None if csrf => Err(ApiError::CsrfFailed),
                    None => Err(ApiError::Unauthenticated),
                }
            }
        }
    }
}

/// The header a console page sends its session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The header a console page marks its own polling with: such requests do not keep an idle
/// session alive (PCI DSS 8.2.8 counts what the person does, not what the page does).
pub const POLL_HEADER: &str = "x-strongroom-poll";

/// The console's session cookie's name: `__Host-` prefixed under HTTPS, so that no other host
/// or path can set it (RFC 6265bis §4.1.3.2).
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-strongroom_session"
    } else {
        "strongroom_session"
    }
}

/// The value of the session cookie, if the request carries one (only the name this instance
/// sets counts). A bearer secret: wiped on drop.
pub fn session_cookie(
    headers: &axum::http::HeaderMap,
    secure: bool,
) -> Option<zeroize::Zeroizing<String>> {
    let name = session_cookie_name(secure);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| zeroize::Zeroizing::new(value.trim_matches('"').to_owned()))
}

/// A JSON body: checked for media type, size, syntax and duplicate keys, and refused outright
/// if any top-level field carries sensitive authentication data.
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::MalformedJson
                }
            })?;
        let value = parse_strict(&bytes)?;
        if let Value::Object(map) = &value
            && map.keys().any(|k| names_sensitive_data(k))
        {
            return Err(sensitive_top_level());
        }
        Ok(JsonBody(value))
    }
}

/// Whether the request says its body is `application/json` (parameters aside).
pub fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// A JSON body that may be left out: no body at all reads as `{}`. A body that is there is
/// held to everything [`JsonBody`] checks.
#[derive(Debug)]
pub struct OptionalJsonBody(pub Value);

impl FromRequest<AppState> for OptionalJsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let no_body = declared == Some(0)
            || (declared.is_none()
                && !request.headers().contains_key(header::TRANSFER_ENCODING)
                && !request.headers().contains_key(header::CONTENT_TYPE));
        if no_body {
            return Ok(OptionalJsonBody(Value::Object(Map::new())));
        }
        JsonBody::from_request(request, state)
            .await
            .map(|JsonBody(v)| OptionalJsonBody(v))
    }
}

/// A secret read from a body (an API key, a TOTP code, a key share): wiped on drop, never
/// printed.
pub struct Secret(pub Zeroizing<String>);

impl<'de> de::Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Secret(Zeroizing::new(s)))
    }
}

/// Parses `limit` and refuses query parameters we do not know.
pub fn query_params(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    known: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let Query(params) = query.map_err(|_| invalid_field("query", "a valid query string"))?;
    if let Some(unknown) = params.keys().find(|k| !known.contains(&k.as_str())) {
        let name = unknown
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'_')
            .then(|| unknown.clone());
        return Err(ApiError::UnknownField(name));
    }
    Ok(params)
}

/// The `limit` query parameter: 1–500, 100 when absent.
pub fn limit_param(params: &HashMap<String, String>) -> Result<u32, ApiError> {
    match params.get("limit") {
        None => Ok(100),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| invalid_field("limit", "a whole number from 1 to 500")),
    }
}

fn invalid_field(field: &str, expected: &'static str) -> ApiError {
    ApiError::InvalidField {
        field: field.into(),
        expected,
    }
}

/// The refusal for sensitive authentication data next to the card number.
pub fn sensitive_top_level() -> ApiError {
    ApiError::SensitiveData(
        "sensitive authentication data (CVV, PIN, track data) must never be sent",
    )
}

/// Parses JSON, refusing duplicate object keys at any depth (serde_json keeps the last).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice::<StrictValue>(bytes)
        .map(|v| v.0)
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::DuplicateField,
            _ => ApiError::MalformedJson,
        })
}

/// Converts a parsed body into a request struct (`deny_unknown_fields`), with errors that name
/// the field by its path in our schema and never quote the value.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    // serde's derived structs also accept an array of their fields in order; requests are
    // objects only.
    if !value.is_object() {
        return Err(ApiError::InvalidField {
            field: "body".into(),
            expected: "a JSON object",
        });
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let name = rest
                .split('`')
                .next()
                .filter(|n| is_plain_name(n))
                .map(str::to_owned);
            return ApiError::UnknownField(name);
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            let name = rest.split('`').next().unwrap_or_default();
            let field = if path == "." {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            return ApiError::InvalidField {
                field: plain_path(&field),
                expected: "a value (it is required)",
            };
        }
        let field = plain_path(&path);
        let expected = expected_for(field.rsplit('.').next().unwrap_or_default());
        ApiError::InvalidField { field, expected }
    })
}

/// What a field of ours must hold, for error details.
fn expected_for(field: &str) -> &'static str {
    match field {
        "value" => "a string of 12-19 digits (spaces and hyphens allowed)",
        "format" => "one of six_four, last_four, length_preserving, opaque",
        "metadata" => "a JSON object",
        "expires_at" => "an RFC 3339 time, e.g. 2030-01-01T00:00:00Z",
        "items" => "an array of 1-1000 tokenize requests",
        "tokens" => "an array of 1-100 tokens",
        "any_token" => "a boolean",
        "purpose" => "a purpose: 1-64 lowercase letters, digits or underscores",
        "reason" => "1-1000 characters of text, without a card number",
        "comment" => "at most 1000 characters of text, without a card number",
        "duration_seconds" => "a whole number of seconds, at least 1",
        "max_uses" => "a whole number, at least 1",
        "totp" => "a 6-digit TOTP code, as a string",
        "principal" => "a principal id (a UUID)",
        _ => "a value of the documented type",
    }
}

fn is_plain_name(name: &str) -> bool {
    (1..=40).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
}

/// A path built from our own field names and array indexes; anything else (and the root,
/// which serde calls `.`) is "body".
fn plain_path(path: &str) -> String {
    let ok = path != "."
        && path.len() <= 64
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'[' | b']'));
    if ok {
        path.to_owned()
    } else {
        "body".to_owned()
    }
}

struct StrictValue(Value);

impl<'de> de::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                // The key itself is not quoted: it could be anything.
                return Err(de::Error::custom("duplicate key"));
            }
            let StrictValue(v) = access.next_value()?;
            map.insert(key, v);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(matches!(
            parse_strict(br#"{"a":1,"a":2}"#),
            Err(ApiError::DuplicateField)
        ));
        assert!(matches!(
            parse_strict(br#"{"m":{"x":1,"x":1}}"#),
            Err(ApiError::DuplicateField)
        ));
        assert!(matches!(
            parse_strict(br#"[{"k":1,"k":1}]"#),
            Err(ApiError::DuplicateField)
        ));
        assert!(parse_strict(br#"{"a":1,"b":{"a":2}}"#).is_ok());
    }

    #[test]
    fn broken_json_is_malformed() {
        for body in [&b"{"[..], b"", b"{\"a\":}", b"{} trailing", b"\xff"] {
            assert!(
                matches!(parse_strict(body), Err(ApiError::MalformedJson)),
                "{body:?}"
            );
        }
    }

    #[test]
    fn unknown_field_names_are_only_shown_when_plain() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct R {
            value: String,
        }
        let e = from_value::<R>(serde_json::json!({"value": "x", "colour": 1})).unwrap_err();
        assert!(matches!(e, ApiError::UnknownField(Some(ref n)) if n == "colour"));
        let e =
            from_value::<R>(serde_json::json!({"value": "x", "4111111111111111": 1})).unwrap_err();
        assert!(matches!(e, ApiError::UnknownField(None)));
        let e = from_value::<R>(serde_json::json!({"value": 4111111111111111u64})).unwrap_err();
        assert!(!e.to_problem().detail.contains("4111"));
    }
}
