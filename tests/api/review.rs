//! What the console is built on, over the API: the policies a person may ask under, an
//! approver's review of a request (cards masked, with brand and reveal history; never a PAN or
//! a grant), and a reveal through the grant a request minted, which never leaves the vault.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn review(app: &TestApp, key: &str, id: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/v1/access-requests/{id}/review")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn reveal(app: &TestApp, key: &str, id: &str, tokens: &[&str]) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/access-requests/{id}/reveal")))
        .bearer_auth(key)
        .json(&json!({ "tokens": tokens }))
        .send()
        .await
        .unwrap()
}

fn ask(app: &TestApp, tokens: &[&str], max_uses: u32) -> Value {
    json!({
        "tokens": tokens,
        "purpose": "chargeback",
        "reason": "chargeback CB-1 on order 77",
        "duration_seconds": 600,
        "max_uses": max_uses,
        "totp": app.code(&app.keys.requester),
    })
}

async fn created(r: reqwest::Response) -> String {
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_approver_sees_each_card_s_brand_and_reveals_and_the_requester_s_history() {
    let clock = manual_clock();
    let app = spawn_app_at(clock.clone()).await;
    let visa_pan = random_pan("411111", 16);
    let amex_pan = random_pan("378282", 15);
    let visa = app.token_for(&visa_pan).await;
    let r = app
        .tokenize(
            &app.keys.tokenizer,
            &json!({"value": amex_pan, "format": "last_four"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let amex = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The payment service revealed the Visa twice.
    for _ in 0..2 {
        let grant = app.checkout_grant(1).await;
        let r = app
            .detokenize(
                &app.keys.detokenizer,
                grant["grant"].as_str(),
                &[visa.as_str()],
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    // An earlier request of alice's, denied.
    let earlier = created(
        app.create_request(&app.keys.requester.key, &ask(&app, &[&visa], 1))
            .await,
    )
    .await;
    let r = app
        .decide(&app.keys.approver2.key, &earlier, "deny", None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    clock.advance(chrono::Duration::seconds(31));
    let id = created(
        app.create_request(&app.keys.requester.key, &ask(&app, &[&visa, &amex], 2))
            .await,
    )
    .await;

    let r = review(&app, &app.keys.approver.key, &id).await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(!text.contains(&visa_pan) && !text.contains(&amex_pan));
    assert!(!text.contains("\"grant\""));
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["requester"]["name"], "alice");
    assert_eq!(body["policy"]["name"], "support-chargeback");
    assert_eq!(body["approvals_needed"], 1);
    let cards = body["cards"].as_array().unwrap();
    assert_eq!(cards[0]["token"], visa.as_str());
    assert_eq!(cards[0]["state"], "live");
    assert_eq!(cards[0]["brand"], "visa");
    assert_eq!(cards[0]["brand_name"], "Visa");
    assert_eq!(cards[0]["bin"], "411111");
    assert_eq!(cards[0]["last_four"], &visa_pan[12..]);
    assert_eq!(cards[0]["reveals_30d"], 2);
    assert_eq!(
        cards[0]["revealed_by"],
        json!([{"principal": app.keys.detokenizer_id, "name": "payments", "count": 2}])
    );
    // A 15-digit card shows only its last four: no BIN, so no brand.
    assert_eq!(cards[1]["brand"], "unknown");
    assert!(cards[1]["bin"].is_null());
    assert_eq!(cards[1]["last_four"], &amex_pan[11..]);
    assert_eq!(cards[1]["reveals_30d"], 0);
    let recent = body["recent_requests"].as_array().unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0]["id"], earlier.as_str());
    assert_eq!(recent[0]["status"], "denied");

    // Auditors may review; the requester, a service and other tenants may not.
    assert_eq!(
        review(&app, &app.keys.auditor, &id).await.status(),
        StatusCode::OK
    );
    assert_problem(
        review(&app, &app.keys.requester.key, &id).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        review(
            &app,
            &app.keys.approver.key,
            &uuid::Uuid::new_v4().to_string(),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_problem(
        review(&app, &app.keys.approver.key, "not-a-uuid").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Each review is a read of the trail, recorded.
    let r = app.audit(&app.keys.auditor, "?action=audit.read").await;
    let events: Value = r.json().await.unwrap();
    let reviews = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["detail"] == "access_request_review")
        .count();
    assert!(reviews >= 4, "{events}");
}

#[tokio::test]
async fn a_reveal_through_a_request_spends_its_grant_and_only_its_grantee_may() {
    let clock = manual_clock();
    let app = spawn_app_at(clock.clone()).await;
    let pan = random_pan("555555", 16);
    let token = app.token_for(&pan).await;
    let other = app.token_for(&random_pan("411111", 16)).await;
    let id = created(
        app.create_request(&app.keys.requester.key, &ask(&app, &[&token], 2))
            .await,
    )
    .await;
    let requester = app.keys.requester.key.clone();
    // Not yet approved: no grant to reveal with.
    assert_problem(
        reveal(&app, &requester, &id, &[&token]).await,
        StatusCode::FORBIDDEN,
        "grant_missing",
    )
    .await;
    clock.advance(chrono::Duration::seconds(31));
    assert_eq!(
        app.approve(&app.keys.approver, &id).await.status(),
        StatusCode::OK
    );

    // The approver, and one holding both roles, hold no grant of this request.
    assert_problem(
        reveal(&app, &app.keys.approver.key, &id, &[&token]).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        reveal(&app, &app.keys.requester_approver.key, &id, &[&token]).await,
        StatusCode::FORBIDDEN,
        "grant_missing",
    )
    .await;
    // Outside the grant's tokens.
    assert_problem(
        reveal(&app, &requester, &id, &[&other]).await,
        StatusCode::FORBIDDEN,
        "grant_scope",
    )
    .await;
    // Two uses, then no more.
    for _ in 0..2 {
        let r = reveal(&app, &requester, &id, &[&token]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["data"][0]["value"], pan.as_str());
    }
    assert_problem(
        reveal(&app, &requester, &id, &[&token]).await,
        StatusCode::FORBIDDEN,
        "grant_exhausted",
    )
    .await;
    // Another tenant's request is unknown; so is a request id that is not one.
    assert_problem(
        reveal(&app, &app.keys.other_tenant_detokenizer, &id, &[&token]).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Every attempt is a detokenize record: 2 successes, the refusals with their codes.
    let r = app.audit(&app.keys.auditor, "?action=detokenize").await;
    let events: Value = r.json().await.unwrap();
    let mut outcomes: Vec<String> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["outcome"].as_str().unwrap(),
                e["code"].as_str().unwrap_or("")
            )
        })
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            "denied:forbidden",
            "denied:grant_exhausted",
            "denied:grant_missing",
            "denied:grant_missing",
            "denied:grant_scope",
            "success:",
            "success:",
        ]
    );
    assert!(!events.to_string().contains(&pan));
}

#[tokio::test]
async fn a_caller_sees_the_policies_it_may_ask_under() {
    let app = spawn_app().await;
    let names = async |key: &str| -> Vec<String> {
        let r = app
            .client
            .get(app.url("/v1/policies"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        body["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&app.keys.requester.key).await,
        ["support-chargeback", "fraud-two-person"]
    );
    assert_eq!(names(&app.keys.detokenizer).await, ["checkout"]);
    assert_eq!(names(&app.keys.approver.key).await.len(), 3);
    let r = app
        .client
        .get(app.url("/v1/policies"))
        .bearer_auth(&app.keys.requester.key)
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    let support = &body["policies"][0];
    assert_eq!(support["approvals"], 1);
    assert_eq!(support["max_duration_seconds"], 3600);
    assert_eq!(support["max_uses"], 5);
    assert_eq!(support["max_tokens"], 5);
    assert_eq!(support["source_cidrs"], json!(["127.0.0.0/8", "::1/128"]));
    assert!(support["hours_utc"].is_null());
    let r = app
        .client
        .get(app.url("/v1/policies"))
        .bearer_auth(&app.keys.tokenizer)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
}
