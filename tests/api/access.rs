//! Access requests through the real API: policies, approvals, MFA, expiry, visibility.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// A request body for the support policy, for `tokens`, with the requester's code.
fn dispute(app: &TestApp, tokens: &[&str]) -> Value {
    json!({
        "tokens": tokens,
        "purpose": "dispute",
        "reason": "chargeback CB-77 for order 1001",
        "duration_seconds": 900,
        "totp": app.code(&app.keys.requester),
    })
}

async fn created(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_payment_service_gets_an_auto_approved_grant_inline_and_can_fetch_it_again() {
    let app = spawn_app().await;
    let pan = random_pan("4", 16);
    let token = app.token_for(&pan).await;
    let request = app.checkout_grant(5).await;
    assert_eq!(request["status"], "approved");
    assert_eq!(request["approvals_required"], 0);
    assert_eq!(request["policy"], "checkout");
    assert_eq!(request["max_uses"], 5);
    let grant = request["grant"].as_str().unwrap().to_owned();
    assert_eq!(grant.split('.').count(), 3);

    let again: Value = app
        .get_request(&app.keys.detokenizer, request["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["grant"], grant.as_str(), "the same JWT, signed again");

    let r = app
        .detokenize(&app.keys.detokenizer, Some(&grant), &[&token])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"data": [{"token": token, "value": pan}]}));
}

#[tokio::test]
async fn a_support_agents_request_is_approved_by_someone_else_and_only_they_get_the_grant() {
    let clock = manual_clock();
    let app = spawn_app_with(Options {
        clock: clock.clone(),
        ..Options::default()
    })
    .await;
    let pan = random_pan("5", 16);
    let token = app.token_for(&pan).await;
    let (alice, bob, carol) = (
        app.keys.requester.clone(),
        app.keys.approver.clone(),
        app.keys.approver2.clone(),
    );

    let request = created(
        app.create_request(&alice.key, &dispute(&app, &[&token]))
            .await,
    )
    .await;
    assert_eq!(request["status"], "pending");
    assert_eq!(request["approvals"], 0);
    assert_eq!(request["approvals_required"], 1);
    assert!(request.get("grant").is_none());
    let id = request["id"].as_str().unwrap().to_owned();

    // Approving takes the approver role.
    clock.advance(Duration::seconds(30));
    let r = app.approve(&alice, &id).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    // An approver needs their second factor.
    let r = app.decide(&bob.key, &id, "approve", None).await;
    assert_problem(r, StatusCode::FORBIDDEN, "mfa_required").await;
    let r = app
        .decide(&bob.key, &id, "approve", Some(&json!({"totp": "000000"})))
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "mfa_required").await;

    let r = app.approve(&bob, &id).await;
    assert_eq!(r.status(), StatusCode::OK);
    let approved: Value = r.json().await.unwrap();
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["approvals"], 1);
    assert_eq!(approved["decisions"][0]["decision"], "approve");
    assert!(approved.get("grant").is_none(), "never to the approver");
    let seen_by_bob: Value = app.get_request(&bob.key, &id).await.json().await.unwrap();
    assert!(seen_by_bob.get("grant").is_none());
    let list = app.list_requests(&bob.key, "").await.text().await.unwrap();
    assert!(!list.contains("\"grant\""), "never in lists");

    let mine: Value = app.get_request(&alice.key, &id).await.json().await.unwrap();
    let grant = mine["grant"].as_str().unwrap();
    let r = app.detokenize(&alice.key, Some(grant), &[&token]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"][0]["value"], pan);

    // Decided requests stay decided.
    let r = app.approve(&carol, &id).await;
    assert_problem(r, StatusCode::CONFLICT, "already_decided").await;
    let r = app.decide(&carol.key, &id, "deny", None).await;
    assert_problem(r, StatusCode::CONFLICT, "already_decided").await;
}

#[tokio::test]
async fn a_requester_who_is_also_an_approver_cannot_decide_their_own_request() {
    let app = spawn_app().await;
    let token = app.token_for(&random_pan("4", 16)).await;
    let dave = app.keys.requester_approver.clone();
    let mut body = dispute(&app, &[&token]);
    body["totp"] = json!(app.code(&dave));
    let request = created(app.create_request(&dave.key, &body).await).await;
    let id = request["id"].as_str().unwrap();
    let r = app
        .decide(&dave.key, id, "approve", Some(&json!({"totp": "123456"})))
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "self_approval").await;
    let r = app.decide(&dave.key, id, "deny", None).await;
    assert_problem(r, StatusCode::FORBIDDEN, "self_approval").await;
    let still: Value = app.get_request(&dave.key, id).await.json().await.unwrap();
    assert_eq!(still["status"], "pending");
    assert!(still["decisions"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_two_person_policy_counts_each_approver_once() {
    let clock = manual_clock();
    let app = spawn_app_with(Options {
        clock: clock.clone(),
        ..Options::default()
    })
    .await;
    let token = app.token_for(&random_pan("4", 16)).await;
    let mut body = dispute(&app, &[&token]);
    body["purpose"] = json!("fraud_investigation");
    body["duration_seconds"] = json!(600);
    let request = created(app.create_request(&app.keys.requester.key, &body).await).await;
    assert_eq!(request["approvals_required"], 2);
    let id = request["id"].as_str().unwrap();

    let r = app.approve(&app.keys.approver, id).await;
    let once: Value = r.json().await.unwrap();
    assert_eq!(
        (once["status"].as_str(), once["approvals"].as_u64()),
        (Some("pending"), Some(1))
    );
    clock.advance(Duration::seconds(30));
    let r = app.approve(&app.keys.approver, id).await;
    assert_problem(r, StatusCode::CONFLICT, "already_approved").await;
    let r = app.approve(&app.keys.approver2, id).await;
    let twice: Value = r.json().await.unwrap();
    assert_eq!(twice["status"], "approved");
    assert_eq!(twice["approvals"], 2);
    assert!(twice["grant_jti"].is_string());
}

#[tokio::test]
async fn a_denial_closes_the_request() {
    let app = spawn_app().await;
    let token = app.token_for(&random_pan("4", 16)).await;
    let request = created(
        app.create_request(&app.keys.requester.key, &dispute(&app, &[&token]))
            .await,
    )
    .await;
    let id = request["id"].as_str().unwrap();
    let r = app.decide(&app.keys.requester.key, id, "deny", None).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = app
        .decide(
            &app.keys.approver.key,
            id,
            "deny",
            Some(&json!({"comment": "not our customer"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let denied: Value = r.json().await.unwrap();
    assert_eq!(denied["status"], "denied");
    assert_eq!(denied["decisions"][0]["comment"], "not our customer");
    let r = app.approve(&app.keys.approver2, id).await;
    assert_problem(r, StatusCode::CONFLICT, "already_decided").await;
    let mine: Value = app
        .get_request(&app.keys.requester.key, id)
        .await
        .json()
        .await
        .unwrap();
    assert!(mine.get("grant").is_none());
}

#[tokio::test]
async fn pending_requests_expire_and_cannot_be_decided_then() {
    let clock = manual_clock();
    let app = spawn_app_with(Options {
        clock: clock.clone(),
        ..Options::default()
    })
    .await;
    let token = app.token_for(&random_pan("4", 16)).await;
    let request = created(
        app.create_request(&app.keys.requester.key, &dispute(&app, &[&token]))
            .await,
    )
    .await;
    let id = request["id"].as_str().unwrap();
    let pending: Value = app
        .list_requests(&app.keys.approver.key, "?status=pending")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending["requests"].as_array().unwrap().len(), 1);

    clock.advance(Duration::seconds(3601));
    let r: Value = app
        .get_request(&app.keys.approver.key, id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "expired");
    let r = app.approve(&app.keys.approver, id).await;
    assert_problem(r, StatusCode::CONFLICT, "request_expired").await;
    let pending: Value = app
        .list_requests(&app.keys.approver.key, "?status=pending")
        .await
        .json()
        .await
        .unwrap();
    assert!(pending["requests"].as_array().unwrap().is_empty());
    let expired: Value = app
        .list_requests(&app.keys.approver.key, "?status=expired")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(expired["requests"][0]["id"], id);
}

#[tokio::test]
async fn every_policy_limit_refuses_with_its_reason() {
    let app = spawn_app().await;
    let token = app.token_for(&random_pan("4", 16)).await;
    let alice = &app.keys.requester;
    let base = dispute(&app, &[&token]);
    let with = |field: &str, value: Value| {
        let mut b = base.clone();
        b[field] = value;
        b
    };
    let mut many = Vec::new();
    for _ in 0..6 {
        many.push(app.token_for(&random_pan("4", 16)).await);
    }
    let any = {
        let mut b = with("any_token", json!(true));
        b.as_object_mut().unwrap().remove("tokens");
        b
    };
    let cases = [
        (
            alice.key.as_str(),
            with("purpose", json!("payment_authorization")),
            "purpose",
        ),
        (
            alice.key.as_str(),
            with("duration_seconds", json!(3601)),
            "duration",
        ),
        (alice.key.as_str(), with("max_uses", json!(6)), "uses"),
        (alice.key.as_str(), with("tokens", json!(many)), "tokens"),
        (alice.key.as_str(), any, "any_token"),
        (
            app.keys.detokenizer.as_str(),
            with("purpose", json!("dispute")),
            "purpose",
        ),
    ];
    for (key, body, reason) in cases {
        let r = app.create_request(key, &body).await;
        let problem = assert_problem(r, StatusCode::FORBIDDEN, "policy_denied").await;
        assert_eq!(problem["reason"], reason, "{problem}");
    }
}

#[tokio::test]
async fn hours_and_networks_are_enforced_from_the_peer_address() {
    let policies = r#"
[[policy]]
name = "office-network"
roles = ["detokenizer"]
purposes = ["payment_authorization"]
approvals = 0
max_duration_seconds = 60
any_token = true
source_cidrs = ["10.0.0.0/8"]

[[policy]]
name = "night-shift"
roles = ["detokenizer"]
purposes = ["recurring_billing"]
approvals = 0
max_duration_seconds = 60
any_token = true
hours_utc = "01:00-02:00"
"#;
    let clock = manual_clock(); // 00:00 UTC
    let app = spawn_app_with(Options {
        clock: clock.clone(),
        policies: Some(policies.into()),
        ..Options::default()
    })
    .await;
    let ask = |purpose: &str| json!({"any_token": true, "purpose": purpose, "reason": "nightly run", "duration_seconds": 30});
    // A forged X-Forwarded-For from an untrusted peer changes nothing.
    let r = app
        .client
        .post(app.url("/v1/access-requests"))
        .bearer_auth(&app.keys.detokenizer)
        .header("x-forwarded-for", "10.1.2.3")
        .json(&ask("payment_authorization"))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(r, StatusCode::FORBIDDEN, "policy_denied").await;
    assert_eq!(problem["reason"], "network");

    let r = app
        .create_request(&app.keys.detokenizer, &ask("recurring_billing"))
        .await;
    let problem = assert_problem(r, StatusCode::FORBIDDEN, "policy_denied").await;
    assert_eq!(problem["reason"], "hours");
    clock.advance(Duration::minutes(90));
    let r = app
        .create_request(&app.keys.detokenizer, &ask("recurring_billing"))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_trusted_proxy_vouches_for_the_client_address() {
    let policies = r#"
[[policy]]
name = "office-network"
roles = ["detokenizer"]
purposes = ["payment_authorization"]
approvals = 0
max_duration_seconds = 60
any_token = true
source_cidrs = ["10.0.0.0/8"]
"#;
    let app = spawn_app_with(Options {
        policies: Some(policies.into()),
        configure: Box::new(|c| c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]),
        ..Options::default()
    })
    .await;
    let ask = json!({"any_token": true, "purpose": "payment_authorization", "reason": "r", "duration_seconds": 30});
    let send = |xff: &'static str| {
        app.client
            .post(app.url("/v1/access-requests"))
            .bearer_auth(&app.keys.detokenizer)
            .header("x-forwarded-for", xff)
            .json(&ask)
            .send()
    };
    assert_eq!(
        send("10.1.2.3").await.unwrap().status(),
        StatusCode::CREATED
    );
    // The client cannot smuggle an address in front of the one the proxy saw.
    let r = send("10.1.2.3, 192.0.2.1").await.unwrap();
    assert_problem(r, StatusCode::FORBIDDEN, "policy_denied").await;
    let r = send("garbage").await.unwrap();
    assert_problem(r, StatusCode::FORBIDDEN, "policy_denied").await;
}

#[tokio::test]
async fn without_a_policy_file_every_request_is_refused() {
    let app = spawn_app_with(Options {
        policies: None,
        ..Options::default()
    })
    .await;
    let r = app
        .create_request(
            &app.keys.detokenizer,
            &json!({"any_token": true, "purpose": "payment_authorization", "reason": "r", "duration_seconds": 30}),
        )
        .await;
    let problem = assert_problem(r, StatusCode::FORBIDDEN, "policy_denied").await;
    assert_eq!(problem["reason"], "purpose");
}

#[tokio::test]
async fn totp_codes_are_accepted_once_and_wrong_ones_lock_the_factor() {
    let clock = manual_clock();
    let app = spawn_app_with(Options {
        clock: clock.clone(),
        ..Options::default()
    })
    .await;
    let token = app.token_for(&random_pan("4", 16)).await;
    let alice = &app.keys.requester;
    let mut body = dispute(&app, &[&token]);
    body.as_object_mut().unwrap().remove("totp");
    let r = app.create_request(&alice.key, &body).await;
    let problem = assert_problem(r, StatusCode::FORBIDDEN, "mfa_required").await;
    assert!(!problem["detail"].as_str().unwrap().is_empty());

    let code = app.code(alice);
    body["totp"] = json!(code);
    assert_eq!(
        app.create_request(&alice.key, &body).await.status(),
        StatusCode::CREATED
    );
    // The same code again is a replay, even within its step.
    let r = app.create_request(&alice.key, &body).await;
    assert_problem(r, StatusCode::FORBIDDEN, "mfa_required").await;
    // The next step's code is fresh.
    clock.advance(Duration::seconds(30));
    body["totp"] = json!(app.code(alice));
    assert_eq!(
        app.create_request(&alice.key, &body).await.status(),
        StatusCode::CREATED
    );

    // Ten wrong codes lock the factor (PCI DSS 8.3.4): even the right code is then refused,
    // with the wrong code's answer word for word, for at least 30 minutes.
    clock.advance(Duration::seconds(30));
    let mut wrong_answer = None;
    let mut wrongs = 0;
    for n in 0..11 {
        let wrong = format!("{:06}", 100_000 + n * 7);
        if wrong == app.code(alice) || wrongs == 10 {
            continue;
        }
        body["totp"] = json!(wrong);
        let r = app.create_request(&alice.key, &body).await;
        let problem = assert_problem(r, StatusCode::FORBIDDEN, "mfa_required").await;
        wrong_answer = Some(without_request_id(problem));
        wrongs += 1;
    }
    body["totp"] = json!(app.code(alice));
    let r = app.create_request(&alice.key, &body).await;
    let locked = assert_problem(r, StatusCode::FORBIDDEN, "mfa_required").await;
    assert_eq!(Some(without_request_id(locked)), wrong_answer);
    clock.advance(Duration::minutes(29));
    body["totp"] = json!(app.code(alice));
    let r = app.create_request(&alice.key, &body).await;
    assert_problem(r, StatusCode::FORBIDDEN, "mfa_required").await;
    clock.advance(Duration::minutes(2));
    body["totp"] = json!(app.code(alice));
    assert_eq!(
        app.create_request(&alice.key, &body).await.status(),
        StatusCode::CREATED
    );
    // The trail knows what the caller was not told.
    let pool_events =
        crate::audit::events(&app, "?action=access_request.create&outcome=denied").await;
    let details: Vec<&str> = pool_events
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(
        details.contains(&"totp_locked") && details.contains(&"totp_wrong"),
        "{details:?}"
    );
    let (ok, out) = crate::audit::verify(&app, None);
    assert!(ok, "audit verify after a TOTP lockout: {out}");
}

#[tokio::test]
async fn bad_requests_are_refused_without_echoing_them() {
    let app = spawn_app().await;
    let token = app.token_for(&random_pan("4", 16)).await;
    let alice = &app.keys.requester.key;
    let base = dispute(&app, &[&token]);
    let pan = random_pan("4", 16);
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut b = base.clone();
    b["reason"] = json!(format!("the card is {pan}"));
    cases.push((b, "sensitive_data_refused"));
    let mut b = base.clone();
    b["reason"] = json!("");
    cases.push((b, "invalid_field"));
    let mut b = base.clone();
    b.as_object_mut().unwrap().remove("reason");
    cases.push((b, "invalid_field"));
    let mut b = base.clone();
    b["any_token"] = json!(true);
    cases.push((b, "invalid_field"));
    let mut b = base.clone();
    b["tokens"] = json!([pan]);
    cases.push((b, "invalid_field"));
    let mut b = base.clone();
    b["tokens"] = json!([]);
    cases.push((b, "invalid_field"));
    let mut b = base.clone();
    b["purpose"] = json!("Chargeback!");
    cases.push((b, "invalid_field"));
    let mut b = base.clone();
    b["duration_seconds"] = json!(0);
    cases.push((b, "invalid_field"));
    let mut b = base.clone();
    b["max_uses"] = json!(0);
    cases.push((b, "invalid_field"));
    let mut b = base.clone();
    b["approver"] = json!("me");
    cases.push((b, "unknown_field"));
    let mut b = base.clone();
    b["cvv"] = json!("123");
    cases.push((b, "sensitive_data_refused"));
    for (body, code) in cases {
        let r = app.create_request(alice, &body).await;
        let text = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, code)
            .await
            .to_string();
        assert!(!text.contains(&pan), "{text}");
    }
    let r = app.list_requests(alice, "?status=open").await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let r = app.list_requests(alice, "?colour=red").await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_field").await;
    // Roles: merchants and auditors cannot ask; only approvers decide.
    let r = app.create_request(&app.keys.tokenizer, &base).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = app.create_request(&app.keys.auditor, &base).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = app.list_requests(&app.keys.tokenizer, "").await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn requests_are_seen_only_by_their_requester_the_tenants_overseers_and_nobody_abroad() {
    let app = spawn_app().await;
    let token = app.token_for(&random_pan("4", 16)).await;
    let request = created(
        app.create_request(&app.keys.requester.key, &dispute(&app, &[&token]))
            .await,
    )
    .await;
    let id = request["id"].as_str().unwrap();
    for key in [&app.keys.approver.key, &app.keys.admin, &app.keys.auditor] {
        assert_eq!(app.get_request(key, id).await.status(), StatusCode::OK);
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    // Another principal of the tenant, and another tenant: the same 404 as an unknown id.
    for key in [&app.keys.detokenizer, &app.keys.other_tenant_detokenizer] {
        let theirs = app.get_request(key, id).await;
        let none = app.get_request(key, &unknown).await;
        assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
        let a: Value = theirs.json().await.unwrap();
        let b: Value = none.json().await.unwrap();
        assert_eq!((&a["code"], &a["detail"]), (&b["code"], &b["detail"]));
    }
    let listed: Value = app
        .list_requests(&app.keys.detokenizer, "")
        .await
        .json()
        .await
        .unwrap();
    assert!(listed["requests"].as_array().unwrap().is_empty());
    let r = app.get_request(&app.keys.approver.key, "not-a-uuid").await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
}
