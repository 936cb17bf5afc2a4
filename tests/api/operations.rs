//! Health, readiness and metrics.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn health_and_readiness_answer_when_the_database_and_keys_are_there() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = spawn_pg_app().await;
    let admin = sqlx::PgPool::connect(&admin_url()).await.unwrap();
    let name = app.db.name.clone();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter database {name} with allow_connections false"
    )))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1")
        .bind(&name)
        .execute(&admin)
        .await
        .unwrap();
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_problem(r, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter database {name} with allow_connections true"
    )))
    .execute(&admin)
    .await
    .unwrap();
    // Each pooled connection that died with the database fails once and is replaced, so
    // readiness comes back within a bounded number of probes, not necessarily the first.
    let mut ready = false;
    for _ in 0..50 {
        if app
            .client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::OK
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "ready again once the database is back");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let app = spawn_app().await;
    let token = app.token_for(&random_pan("4", 16)).await;
    app.get_token(&app.keys.tokenizer, &token).await;
    app.tokenize(&app.keys.tokenizer, &json!({"value": "nope"}))
        .await;
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains(
            r#"strongroom_http_requests_total{method="POST",route="/v1/tokens",status="201"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(
        r#"strongroom_http_requests_total{method="POST",route="/v1/tokens",status="422"} 1"#
    ));
    assert!(text.contains(r#"route="/v1/tokens/{token}""#));
    assert!(text.contains("strongroom_http_request_duration_seconds_bucket"));
    assert!(
        !text.contains(&token),
        "labels are route templates, not values"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(Options {
        configure: Box::new(|c| c.header_read_timeout = std::time::Duration::from_millis(300)),
        ..Options::default()
    })
    .await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // The server closes the connection (possibly after a 408); it does not wait for ever.
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        slow.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "the connection is still open");
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    // A well-behaved client is still served.
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_database_that_is_gone_answers_503_database_unavailable_never_500() {
    let app = spawn_pg_app().await;
    let token = app.token_for(&random_pan("4", 16)).await;
    let admin = sqlx::PgPool::connect(&admin_url()).await.unwrap();
    let name = app.db.name.clone();
    for sql in [
        format!("alter database {name} with allow_connections false"),
        format!("select pg_terminate_backend(pid) from pg_stat_activity where datname = '{name}'"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&admin)
            .await
            .unwrap();
    }
    // Every pooled connection is cut: each call fails on one, or on connecting again.
    for _ in 0..6 {
        let r = app.get_token(&app.keys.tokenizer, &token).await;
        assert!(r.headers().contains_key("retry-after"));
        assert_problem(r, StatusCode::SERVICE_UNAVAILABLE, "database_unavailable").await;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter database {name} with allow_connections true"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let mut back = false;
    for _ in 0..50 {
        if app.get_token(&app.keys.tokenizer, &token).await.status() == StatusCode::OK {
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(back, "served again once the database is back");
    let (ok, out) = crate::audit::verify(&app, None);
    assert!(ok, "audit verify after the database went away: {out}");
}

#[tokio::test]
async fn past_the_requests_in_flight_the_vault_sheds_load_with_503_overloaded() {
    let app = spawn_app_with(Options {
        engine: Engine::Postgres,
        configure: Box::new(|c| {
            c.api.max_in_flight = 1;
            c.api.request_timeout = std::time::Duration::from_secs(30);
        }),
        ..Options::default()
    })
    .await;
    let token = app.token_for(&random_pan("4", 16)).await;
    // One lookup held in flight behind a table lock...
    let pool = app.db.pool().await;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("lock table tokens in access exclusive mode")
        .execute(&mut *tx)
        .await
        .unwrap();
    let held = {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/tokens/{token}"));
        let key = app.keys.tokenizer.clone();
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    // (in flight once PostgreSQL shows it waiting for the lock)...
    let mut waiting = 0i64;
    for _ in 0..200 {
        waiting = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where datname = current_database() \
             and wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(waiting, 1, "the first lookup is waiting on the lock");
    // ...so the next is shed at once; health is still served.
    let r = app.get_token(&app.keys.tokenizer, &token).await;
    assert!(r.headers().contains_key("retry-after"));
    assert_problem(r, StatusCode::SERVICE_UNAVAILABLE, "overloaded").await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    tx.rollback().await.unwrap();
    assert_eq!(held.await.unwrap(), StatusCode::OK);
    let r = app.get_token(&app.keys.tokenizer, &token).await;
    assert_eq!(r.status(), StatusCode::OK);
}
