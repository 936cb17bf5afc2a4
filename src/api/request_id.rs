//! Request ids: taken from `X-Request-Id` when it is a plain identifier, generated otherwise,
//! echoed on every answer and available to error bodies through a task-local.
//!
//! A caller-supplied id is only kept if it cannot carry a card number or a secret into logs.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use uuid::Uuid;

use crate::domain::card_data::contains_card_number;

/// The header that carries the id both ways.
pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served, or an empty string outside of one.
pub fn current() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// Longest caller id kept, in bytes (all ASCII).
const MAX_LEN: usize = 128;

/// Whether a caller's id is safe to keep: 1–128 characters of `[A-Za-z0-9._:-]` holding
/// nothing that reads as a card number. A refused id is replaced, never echoed.
fn acceptable(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        && !contains_card_number(id)
}

/// Middleware: settles the id, runs the request inside its scope and echoes it.
pub async fn layer(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
    if let Ok(value) = HeaderValue::from_str(&id) {
        request.headers_mut().insert(HEADER, value.clone());
        let mut response = REQUEST_ID.scope(id, next.run(request)).await;
        response.headers_mut().insert(HEADER, value);
        response
    } else {
        REQUEST_ID.scope(id, next.run(request)).await
    }
}

#[cfg(test)]
mod tests {
    use super::acceptable;

    #[test]
    fn plain_ids_are_kept_and_card_numbers_are_not() {
        assert!(acceptable("req-123_abc.def:9"));
        assert!(acceptable("0b6f3c52-9a7e-4f7d-b1a2-5c3e8d9f0a1b"));
        assert!(!acceptable("4111111111111111"));
        assert!(!acceptable("order-4111111111111111"));
        assert!(!acceptable("4111-1111-1111-1111"));
        assert!(!acceptable("4111.1111.1111.1111"));
        assert!(!acceptable("req:4111_1111_1111_1111:1225"));
        assert!(!acceptable(""));
        assert!(!acceptable("has space"));
        assert!(acceptable(&"a".repeat(128)));
        assert!(!acceptable(&"a".repeat(129)));
    }
}
