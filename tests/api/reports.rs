//! `GET /v1/reports/usage` on both engines: what the tenant's people and services did with
//! access in a period, added up.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use strongroom::clock::Clock;

use crate::helpers::*;

async fn report(app: &TestApp, key: &str, query: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/v1/reports/usage{query}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn usage_is_added_up(engine: Engine) {
    let clock = manual_clock();
    let app = spawn_app_with(Options {
        engine,
        clock: clock.clone(),
        ..Options::default()
    })
    .await;
    let start = clock.now();
    let token = app.token_for(&random_pan("4", 16)).await;
    // Two grants a policy approves by itself; one is used once.
    let first = app.checkout_grant(10).await;
    app.checkout_grant(10).await;
    let jwt = first["grant"].as_str().unwrap();
    let r = app
        .detokenize(&app.keys.detokenizer, Some(jwt), &[&token])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // A support agent's request approved after 31 s, another denied after 60 s.
    let dispute = |app: &TestApp| {
        json!({
            "tokens": [token],
            "purpose": "dispute",
            "reason": "chargeback CB-77 for order 1001",
            "duration_seconds": 900,
            "totp": app.code(&app.keys.requester),
        })
    };
    let r = app
        .create_request(&app.keys.requester.key, &dispute(&app))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let approved: Value = r.json().await.unwrap();
    clock.advance(Duration::seconds(31));
    let r = app
        .approve(&app.keys.approver, approved["id"].as_str().unwrap())
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .create_request(&app.keys.requester.key, &dispute(&app))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let denied: Value = r.json().await.unwrap();
    clock.advance(Duration::seconds(60));
    let r = app
        .decide(
            &app.keys.approver2.key,
            denied["id"].as_str().unwrap(),
            "deny",
            Some(&json!({"comment": "not this card"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // A refusal: detokenize without a grant.
    let r = app.detokenize(&app.keys.detokenizer, None, &[&token]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let period = format!(
        "?since={}&until={}",
        (start - Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (clock.now() + Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
    .replace('+', "%2B");
    let r = report(&app, &app.keys.auditor, &period).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["grants"],
        json!({"issued": 3, "uses": 1, "allowed": 25, "unused": 2, "revoked": 0}),
        "{body}"
    );
    assert_eq!(
        body["requests"],
        json!({"total": 4, "pending": 0, "approved": 3, "automatic": 2, "denied": 1, "expired": 0})
    );
    let requesters: Vec<(&str, u64)> = body["by_requester"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["total"].as_u64().unwrap()))
        .collect();
    assert_eq!(requesters, vec![("alice", 2), ("payments", 2)]);
    let purposes: Vec<(&str, u64)> = body["by_purpose"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["purpose"].as_str().unwrap(),
                r["approved"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(purposes, vec![("dispute", 1), ("payment_authorization", 2)]);
    assert!(
        body["refusals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "grant_missing" && r["count"] == 1),
        "{body}"
    );
    assert_eq!(
        body["decisions"],
        json!({"decided": 2, "median_seconds": 31.0, "p90_seconds": 60.0, "max_seconds": 60.0})
    );
    // A period before anything happened is empty.
    let before = format!(
        "?since={}&until={}",
        (start - Duration::days(3)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (start - Duration::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let body: Value = report(&app, &app.keys.auditor, &before)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["requests"]["total"], 0);
    assert_eq!(body["decisions"]["median_seconds"], Value::Null);
    // A non-auditor is refused, and a bad period is named.
    assert_problem(
        report(&app, &app.keys.admin, "").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    for (query, field) in [
        ("?since=yesterday", "since"),
        (
            "?since=2026-12-01T00:00:00Z&until=2026-11-01T00:00:00Z",
            "until",
        ),
        (
            "?since=2024-01-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            "since",
        ),
    ] {
        let body = assert_problem(
            report(&app, &app.keys.auditor, query).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        )
        .await;
        assert!(
            body["detail"].as_str().unwrap().contains(field),
            "{query}: {body}"
        );
    }
    assert_problem(
        report(&app, &app.keys.auditor, "?tenant=other").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_field",
    )
    .await;
    // Every read is recorded, refused ones too.
    let r = app.audit(&app.keys.auditor, "?action=audit.read").await;
    let events: Value = r.json().await.unwrap();
    let reports = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["detail"] == "usage_report")
        .count();
    assert!(reports >= 5, "{events}");
}

#[tokio::test]
async fn usage_is_added_up_on_the_embedded_store() {
    usage_is_added_up(Engine::Sqlite).await;
}

#[tokio::test]
async fn usage_is_added_up_on_postgres() {
    usage_is_added_up(Engine::Postgres).await;
}
