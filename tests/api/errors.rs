//! Problem details for everything that is not a token rule: routes, media types, sizes,
//! malformed JSON, timeouts, request ids.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/v1/nothing")).send().await.unwrap();
    assert_problem(r, StatusCode::NOT_FOUND, "route_not_found").await;
    let r = app
        .client
        .put(app.url("/v1/tokens"))
        .bearer_auth(&app.keys.tokenizer)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test]
async fn malformed_json_is_400_and_a_wrong_content_type_is_415() {
    let app = spawn_app().await;
    let pan = random_pan("4", 16);
    let body = assert_problem(
        app.post_raw(
            "/v1/tokens",
            &app.keys.tokenizer,
            "application/json",
            format!("{{\"value\": \"{pan}\""),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;
    assert!(!body.to_string().contains(&pan));
    let not_an_object = format!("[\"{pan}\"]");
    let body = assert_problem(
        app.post_raw(
            "/v1/tokens",
            &app.keys.tokenizer,
            "application/json",
            not_an_object,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("`body`"),
        "{body}"
    );
    assert!(!body.to_string().contains(&pan));
    assert_problem(
        app.post_raw(
            "/v1/tokens",
            &app.keys.tokenizer,
            "text/plain",
            format!("{{\"value\": \"{pan}\"}}"),
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let ok = app
        .post_raw(
            "/v1/tokens",
            &app.keys.tokenizer,
            "application/json; charset=utf-8",
            format!("{{\"value\": \"{pan}\"}}"),
        )
        .await;
    assert_eq!(ok.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_app_with(Options {
        configure: Box::new(|c| c.api.max_body_bytes = 1024),
        ..Options::default()
    })
    .await;
    let big =
        json!({"value": random_pan("4", 16), "metadata": {"pad": "x".repeat(2000)}}).to_string();
    assert_problem(
        app.post_raw("/v1/tokens", &app.keys.tokenizer, "application/json", big)
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn a_request_that_runs_too_long_is_503_timeout_and_stores_nothing() {
    let app = spawn_app_with(Options {
        engine: Engine::Postgres,
        configure: Box::new(|c| c.api.request_timeout = std::time::Duration::from_millis(300)),
        ..Options::default()
    })
    .await;
    let pool = app.db.pool().await;
    // Hold the tokens table so the insert waits past the timeout.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("lock table tokens in access exclusive mode")
        .execute(&mut *tx)
        .await
        .unwrap();
    let response = app
        .tokenize(&app.keys.tokenizer, &json!({"value": random_pan("4", 16)}))
        .await;
    let body = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "timeout").await;
    assert!(body["detail"].is_string());
    tx.rollback().await.unwrap();
    let count: i64 = sqlx::query_scalar("select count(*) from tokens")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn a_plain_request_id_is_echoed_and_a_card_number_as_request_id_is_replaced() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-abc-123");
    let pan = random_pan("4", 16);
    let r = app
        .client
        .get(app.url("/v1/nope"))
        .header("x-request-id", &pan)
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, pan);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], id.as_str());
    assert!(!captured_logs().contains(&pan));
}
