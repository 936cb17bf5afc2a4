//! Problem details for everything that is not a token rule: routes, media types, sizes,
//! malformed JSON, timeouts, request ids.

use std::sync::Arc;

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
async fn a_body_declared_over_the_limit_is_refused_before_any_of_it_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A long request timeout: an answer before the body is sent cannot be the timeout's.
    let app = spawn_app_with(Options {
        configure: Box::new(|c| c.api.request_timeout = std::time::Duration::from_secs(120)),
        ..Options::default()
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/tokens HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.keys.tokenizer,
        100u64 << 20
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    // Not one byte of the body: the answer must come anyway.
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("payload_too_large") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(60), socket.read(&mut buf))
            .await
            .expect("an answer without the body")
            .unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
    // The default limit holds the largest valid batch: 1,000 items with 2 KiB of metadata each.
    let app = spawn_app().await;
    let items: Vec<_> = (0..1000)
        .map(|i| {
            json!({"value": random_pan("4", 16), "format": "length_preserving",
                   "metadata": {"note": format!("{i:04}{}", "x".repeat(2030))},
                   "expires_at": "2099-12-31T23:59:59.999999999Z"})
        })
        .collect();
    let body = json!({ "items": items }).to_string();
    assert!(body.len() > 2_000_000 && body.len() < strongroom::api::DEFAULT_MAX_BODY_BYTES);
    let r = app
        .post_raw(
            "/v1/tokens/batch",
            &app.keys.tokenizer,
            "application/json",
            body,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_write_stalled_past_the_request_timeout_is_503_and_stores_nothing() {
    let app = spawn_app_with(Options {
        engine: Engine::Postgres,
        configure: Box::new(|c| c.api.request_timeout = std::time::Duration::from_millis(300)),
        ..Options::default()
    })
    .await;
    let pool = app.db.pool().await;
    // The tenant's first card number makes its key (which reads the tokens table too).
    app.token_for(&random_pan("4", 16)).await;
    // Hold the tokens table so the insert waits past the timeout.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("lock table tokens in access exclusive mode")
        .execute(&mut *tx)
        .await
        .unwrap();
    let response = app
        .tokenize(&app.keys.tokenizer, &json!({"value": random_pan("4", 16)}))
        .await;
    assert!(response.headers().contains_key("retry-after"));
    // Its write was already committing at its deadline, so it waits for the outcome: the
    // database drops the waiting insert itself (its statement timeout is just past the
    // request's) and the answer says so. Once the lock is gone there is nothing left to
    // commit, even later.
    let body = assert_problem(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
    assert!(body["detail"].is_string());
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    tx.rollback().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let count: i64 = sqlx::query_scalar("select count(*) from tokens")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let recorded: i64 = sqlx::query_scalar(
        "select count(*) from audit_events where action = 'token.tokenize' and outcome = 'success'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(recorded, 1, "no record of a token that was not stored");
    // The vault serves again at once, and the new token commits with its record.
    let r = app
        .tokenize(&app.keys.tokenizer, &json!({"value": random_pan("4", 16)}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (stored, recorded): (i64, i64) = sqlx::query_as(
        "select (select count(*) from tokens), (select count(*) from audit_events \
         where action = 'token.tokenize' and outcome = 'success')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((stored, recorded), (2, 2));
    let (ok, out) = crate::audit::verify(&app, None);
    assert!(ok, "audit verify after a stalled write: {out}");
}

#[tokio::test]
async fn a_request_is_answered_503_timeout_only_if_nothing_of_it_commits() {
    // The lock ends after the first calls' deadlines but before the database would cancel
    // their statements: a call whose write was already in the transaction then commits, and
    // must be answered with its token, not `503 timeout`; a call answered `503 timeout` must
    // have stored nothing and left no record.
    let app = Arc::new(
        spawn_app_with(Options {
            engine: Engine::Postgres,
            configure: Box::new(|c| c.api.request_timeout = std::time::Duration::from_millis(300)),
            ..Options::default()
        })
        .await,
    );
    let pool = app.db.pool().await;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("lock table tokens in access exclusive mode")
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut calls = Vec::new();
    for n in 0..6u64 {
        let app = Arc::clone(&app);
        calls.push(tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(40 * n)).await;
            let id = format!("race-{n}");
            let r = app
                .client
                .post(app.url("/v1/tokens"))
                .bearer_auth(&app.keys.tokenizer)
                .header("x-request-id", &id)
                .json(&json!({"value": random_pan("4", 16)}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: serde_json::Value = r.json().await.unwrap();
            (id, status, body)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    tx.rollback().await.unwrap();
    let mut answered = std::collections::HashMap::new();
    for call in calls {
        let (id, status, body) = call.await.unwrap();
        let recorded: Vec<String> = sqlx::query_scalar(
            "select unnest(tokens) from audit_events where request_id = $1 and outcome = 'success'",
        )
        .bind(&id)
        .fetch_all(&pool)
        .await
        .unwrap();
        if status == StatusCode::CREATED {
            let token = body["token"].as_str().unwrap().to_owned();
            assert_eq!(
                recorded,
                vec![token.clone()],
                "{id}: one record of its token"
            );
            let stored: i64 = sqlx::query_scalar("select count(*) from tokens where token = $1")
                .bind(&token)
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(stored, 1, "{id}: its token is stored");
        } else {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{id}: {body}");
            assert!(
                recorded.is_empty(),
                "{id} answered {body} but recorded {recorded:?}"
            );
        }
        *answered.entry(status).or_insert(0) += 1;
    }
    let stored: i64 = sqlx::query_scalar("select count(*) from tokens")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        stored,
        answered.get(&StatusCode::CREATED).copied().unwrap_or(0),
        "every stored token was answered: {answered:?}"
    );
    let (ok, out) = crate::audit::verify(&app, None);
    assert!(ok, "audit verify after timed-out requests: {out}");
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
