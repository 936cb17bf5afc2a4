//! Callers: API keys and roles.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::json;
use strongroom::clock::{Clock, SystemClock};
use strongroom::domain::Role;
use strongroom::random::SystemRandom;
use strongroom::service::principals::{self, NewPrincipalRequest, PrincipalError};
use strongroom::store::PgStore;

use crate::helpers::*;

async fn tokenize_with(app: &TestApp, authorization: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/v1/tokens"))
        .header("x-request-id", "fixed-id")
        .json(&json!({"value": random_pan("4", 16)}));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn every_kind_of_bad_key_gets_the_same_401() {
    let app = spawn_pg_app().await;
    let store = PgStore::connect(&app.db.url, 1).await.unwrap();
    let rng = SystemRandom::new();
    let created = principals::create(
        &store,
        &rng,
        &SystemClock,
        None,
        NewPrincipalRequest {
            tenant: "acme".into(),
            name: "old".into(),
            roles: vec![Role::Tokenizer],
            expires_at: None,
            totp: false,
        },
    )
    .await
    .unwrap();
    let disabled_key = created.key;
    strongroom::store::PrincipalStore::disable_principal(
        &store,
        created.record.principal.id,
        SystemClock.now(),
    )
    .await
    .unwrap();
    let expiring_key = principals::create(
        &store,
        &rng,
        &SystemClock,
        None,
        NewPrincipalRequest {
            tenant: "acme".into(),
            name: "temp".into(),
            roles: vec![Role::Tokenizer],
            expires_at: Some(SystemClock.now() + Duration::milliseconds(300)),
            totp: false,
        },
    )
    .await
    .unwrap()
    .key;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;

    let disabled_header = format!("Bearer {}", disabled_key.expose());
    let expired_header = format!("Bearer {}", expiring_key.expose());
    let cases: Vec<Option<&str>> = vec![
        None,
        Some("Bearer sr_not_a_key"),
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer "),
        Some(disabled_header.as_str()),
        Some(expired_header.as_str()),
    ];
    let mut bodies = Vec::new();
    for case in cases {
        let response = tokenize_with(&app, case).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        bodies.push(response.bytes().await.unwrap());
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "the cause must not show"
    );
    let body: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
    assert_eq!(body["code"], "unauthenticated");

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["missing", "malformed", "unknown_key", "disabled", "expired"] {
        assert!(
            metrics.contains(&format!(
                "strongroom_auth_failures_total{{reason=\"{reason}\"}}"
            )),
            "{reason}"
        );
    }
    assert!(
        !captured_logs().contains(disabled_key.expose()),
        "a presented key is never logged"
    );
}

#[tokio::test]
async fn a_role_without_the_right_gets_403() {
    let app = spawn_app().await;
    let token = app.token_for(&random_pan("4", 16)).await;
    for key in [&app.keys.detokenizer, &app.keys.auditor, &app.keys.admin] {
        assert_problem(
            app.tokenize(key, &json!({"value": random_pan("4", 16)}))
                .await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        assert_problem(
            app.get_token(key, &token).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        assert_problem(
            app.delete_token(key, &token).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        assert_problem(
            app.tokenize_batch(key, &json!({"items": [{"value": random_pan("4", 16)}]}))
                .await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
    }
}

#[tokio::test]
async fn admin_cannot_be_combined_with_a_card_data_role() {
    let db = TestDb::create(true).await;
    let store = PgStore::connect(&db.url, 1).await.unwrap();
    let refused = principals::create(
        &store,
        &SystemRandom::new(),
        &SystemClock,
        None,
        NewPrincipalRequest {
            tenant: "t".into(),
            name: "n".into(),
            roles: vec![Role::Admin, Role::Approver],
            expires_at: None,
            totp: false,
        },
    )
    .await;
    assert!(matches!(refused, Err(PrincipalError::Roles(_))));
    // The database refuses it too, whoever writes the row.
    let direct = sqlx::query(
        "insert into tenants (id, name, created_at) values (gen_random_uuid(), 'x', now()); \
         insert into principals (id, tenant_id, name, roles, key_hash, created_at) \
         select gen_random_uuid(), id, 'p', array['admin','detokenizer'], '\\x00', now() from tenants where name = 'x'",
    )
    .execute(store.pool())
    .await;
    assert!(direct.is_err());
}

#[tokio::test]
async fn a_principal_over_its_rate_limit_gets_429_with_retry_after_and_others_do_not() {
    let app = spawn_app_with(Options {
        configure: Box::new(|c| {
            c.api.rate_limit_per_second = 1;
            c.api.rate_limit_burst = 3;
        }),
        ..Options::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            app.tokenize(&app.keys.tokenizer, &json!({"value": random_pan("4", 16)}))
                .await
                .status(),
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| s.is_success()).count(),
        3,
        "{statuses:?}"
    );
    let limited = app
        .tokenize(&app.keys.tokenizer, &json!({"value": random_pan("4", 16)}))
        .await;
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after));
    assert_problem(limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let other = app
        .tokenize(
            &app.keys.other_tenant_tokenizer,
            &json!({"value": random_pan("4", 16)}),
        )
        .await;
    assert_eq!(
        other.status(),
        StatusCode::CREATED,
        "limits are per principal"
    );
}
