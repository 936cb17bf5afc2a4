//! `/v1/sessions`: people sign in to the console with their API key and TOTP code, and the
//! session cookie then stands in for the key, with a CSRF token on every change, a 15-minute
//! idle limit and an 8-hour absolute one.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// A signed-in browser: its cookie header and CSRF token.
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
}

pub async fn sign_in(app: &TestApp, key: &str, totp: Option<String>) -> reqwest::Response {
    let mut body = json!({ "api_key": key });
    if let Some(code) = totp {
        body["totp"] = json!(code);
    }
    app.client
        .post(app.url("/v1/sessions"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn signed_in(app: &TestApp, person: &Person) -> Browser {
    let r = sign_in(app, &person.key, Some(app.code(person))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    Browser {
        cookie,
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
    }
}

impl Browser {
    pub async fn get(&self, app: &TestApp, path: &str) -> reqwest::Response {
        app.client
            .get(app.url(path))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
        app.client
            .post(app.url(path))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

fn dispute(app: &TestApp, token: &str) -> Value {
    json!({
        "tokens": [token],
        "purpose": "dispute",
        "reason": "chargeback CB-88 for order 2002",
        "duration_seconds": 900,
        "totp": app.code(&app.keys.requester),
    })
}

#[tokio::test]
async fn a_person_signs_in_and_the_cookie_stands_in_for_the_key_with_csrf_on_changes() {
    let clock = manual_clock();
    let app = spawn_app_at(clock.clone()).await;
    let token = app.token_for(&random_pan("4", 16)).await;
    let r = sign_in(
        &app,
        &app.keys.requester.key,
        Some(app.code(&app.keys.requester)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.starts_with("strongroom_session="),
        "{set_cookie}"
    );
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(
            set_cookie.contains(attribute),
            "{attribute} in {set_cookie}"
        );
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP on loopback");
    let body: Value = r.json().await.unwrap();
    let text = body.to_string();
    assert!(
        !text.contains(&app.keys.requester.key),
        "the key is not echoed"
    );
    assert!(!text.contains(set_cookie.split(['=', ';']).nth(1).unwrap()));
    assert_eq!(body["principal"]["roles"], json!(["requester"]));
    assert_eq!(body["idle_timeout_seconds"], 900);
    let browser = Browser {
        cookie: set_cookie.split(';').next().unwrap().to_owned(),
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
    };

    // A page reload learns who it is and its CSRF token again.
    clock.advance(Duration::seconds(31));
    let r = browser.get(&app, "/v1/sessions/current").await;
    assert_eq!(r.status(), StatusCode::OK);
    let current: Value = r.json().await.unwrap();
    assert_eq!(current["csrf_token"], body["csrf_token"]);
    assert_eq!(current["principal"]["id"], body["principal"]["id"]);

    // A change without the CSRF token, or with another's, is refused and recorded.
    for csrf in [None, Some("AAAA"), Some("")] {
        let mut request = app
            .client
            .post(app.url("/v1/access-requests"))
            .header("cookie", &browser.cookie)
            .json(&dispute(&app, &token));
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        let r = request.send().await.unwrap();
        assert_problem(r, StatusCode::FORBIDDEN, "csrf_failed").await;
    }
    let r = browser
        .post(&app, "/v1/access-requests", &dispute(&app, &token))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    clock.advance(Duration::seconds(31));
    let r = app.approve(&app.keys.approver, id).await;
    assert_eq!(r.status(), StatusCode::OK);
    // The API key's holder gets the grant; the console session never does.
    let r = app.get_request(&app.keys.requester.key, id).await;
    let by_key: Value = r.json().await.unwrap();
    assert!(by_key["grant"].is_string());
    let r = browser
        .get(&app, &format!("/v1/access-requests/{id}"))
        .await;
    let by_session: Value = r.json().await.unwrap();
    assert_eq!(by_session["status"], "approved");
    assert!(by_session.get("grant").is_none(), "{by_session}");

    // The trail has the sign-in and the CSRF refusals.
    let r = app.audit(&app.keys.auditor, "?action=session.start").await;
    let records: Value = r.json().await.unwrap();
    let records = records["events"].as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["outcome"], "success");
    assert_eq!(records[0]["detail"], "second_factor=totp");
    let r = app.audit(&app.keys.auditor, "?action=auth.failure").await;
    let failures: Value = r.json().await.unwrap();
    assert!(
        failures["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["detail"] == "csrf_mismatch"),
        "{failures}"
    );
}

#[tokio::test]
async fn sign_in_is_refused_for_a_wrong_code_an_unknown_key_and_a_service() {
    let clock = manual_clock();
    let app = spawn_app_at(clock.clone()).await;
    let requester = &app.keys.requester;
    let r = sign_in(&app, &requester.key, None).await;
    assert_problem(r, StatusCode::FORBIDDEN, "mfa_required").await;
    let r = sign_in(&app, &requester.key, Some("000000".into())).await;
    assert_problem(r, StatusCode::FORBIDDEN, "mfa_required").await;
    // A code is good once.
    let code = app.code(requester);
    let r = sign_in(&app, &requester.key, Some(code.clone())).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = sign_in(&app, &requester.key, Some(code)).await;
    assert_problem(r, StatusCode::FORBIDDEN, "mfa_required").await;
    let r = sign_in(&app, "sr_not-a-key-of-ours", Some("123456".into())).await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    // A service's key has no business in a browser.
    let r = sign_in(&app, &app.keys.tokenizer, None).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = sign_in(&app, &app.keys.detokenizer, None).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    // A person without a second factor signs in with the key alone.
    let r = sign_in(&app, &app.keys.auditor, None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Unknown fields and a missing key are the API's usual refusals.
    let r = app
        .client
        .post(app.url("/v1/sessions"))
        .json(&json!({"api_key": requester.key, "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_field").await;
    let r = app
        .client
        .post(app.url("/v1/sessions"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;

    let r = app.audit(&app.keys.auditor, "?action=session.start").await;
    let records: Value = r.json().await.unwrap();
    let mut seen: Vec<(String, String)> = records["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().to_owned(),
                r["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let mut expected: Vec<(String, String)> = [
        ("denied", "totp_missing"),
        ("denied", "totp_wrong"),
        ("denied", "totp_replayed"),
        ("denied", ""),
        ("denied", ""),
        ("success", "second_factor=totp"),
        ("success", "second_factor=none"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    expected.sort();
    assert_eq!(seen, expected);
    let text = records.to_string();
    assert!(!text.contains(&requester.key));
}

#[tokio::test]
async fn a_session_ends_after_15_idle_minutes_8_hours_or_sign_out_and_polling_keeps_none_alive() {
    let clock = manual_clock();
    let app = spawn_app_at(clock.clone()).await;
    let poll = |browser: &Browser| {
        app.client
            .get(app.url("/v1/access-requests"))
            .header("cookie", &browser.cookie)
            .header("x-strongroom-poll", "1")
            .send()
    };

    // Idle: the page's polling does not keep it alive; the person's requests do.
    let idle = signed_in(&app, &app.keys.requester).await;
    clock.advance(Duration::minutes(10));
    assert_eq!(poll(&idle).await.unwrap().status(), StatusCode::OK);
    clock.advance(Duration::minutes(6));
    let r = idle.get(&app, "/v1/access-requests").await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    clock.advance(Duration::seconds(31));
    let busy = signed_in(&app, &app.keys.requester).await;
    for _ in 0..47 {
        clock.advance(Duration::minutes(10));
        let r = busy.get(&app, "/v1/access-requests").await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    // 8 hours after sign-in, however busy.
    clock.advance(Duration::minutes(10));
    let r = busy.get(&app, "/v1/access-requests").await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    // Sign-out ends it at once, and clears the cookie.
    clock.advance(Duration::seconds(31));
    let leaving = signed_in(&app, &app.keys.requester).await;
    let r = app
        .client
        .delete(app.url("/v1/sessions/current"))
        .header("cookie", &leaving.cookie)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::FORBIDDEN, "csrf_failed").await;
    let r = app
        .client
        .delete(app.url("/v1/sessions/current"))
        .header("cookie", &leaving.cookie)
        .header("x-csrf-token", &leaving.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let cleared = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let r = leaving.get(&app, "/v1/sessions/current").await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    // A cookie that is not ours, and an API key, are no session.
    let r = app
        .client
        .get(app.url("/v1/sessions/current"))
        .header("cookie", "strongroom_session=forged")
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let r = app
        .client
        .get(app.url("/v1/sessions/current"))
        .bearer_auth(&app.keys.auditor)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;

    let r = app.audit(&app.keys.auditor, "?action=session.end").await;
    let records: Value = r.json().await.unwrap();
    let ended = records["events"].as_array().unwrap();
    assert_eq!(ended.len(), 1);
    let r = app.audit(&app.keys.auditor, "?action=session.start").await;
    let started: Value = r.json().await.unwrap();
    let subjects: Vec<&Value> = started["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["subject"])
        .collect();
    assert!(
        subjects.contains(&&ended[0]["subject"]),
        "start and end name one session"
    );
}

#[tokio::test]
async fn a_disabled_person_s_session_ends_with_their_key_on_postgres() {
    let app = spawn_pg_app().await;
    let browser = signed_in(&app, &app.keys.approver).await;
    let r = browser.get(&app, "/v1/access-requests").await;
    assert_eq!(r.status(), StatusCode::OK);
    let pool = app.db.pool().await;
    sqlx::query("update principals set disabled_at = now() where id = $1")
        .bind(app.keys.approver.id)
        .execute(&pool)
        .await
        .unwrap();
    let r = browser.get(&app, "/v1/access-requests").await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let stored: (Vec<u8>,) = sqlx::query_as("select token_hash from console_sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    let cookie_value = browser.cookie.split_once('=').unwrap().1;
    assert_eq!(stored.0.len(), 32);
    assert!(!String::from_utf8_lossy(&stored.0).contains(cookie_value));
}

#[tokio::test]
async fn of_sign_outs_racing_on_one_session_exactly_one_ends_it_and_is_recorded_so() {
    let app = spawn_pg_app().await;
    let browser = signed_in(&app, &app.keys.approver).await;
    let calls = (0..12).map(|_| {
        let request = app
            .client
            .delete(app.url("/v1/sessions/current"))
            .header("cookie", &browser.cookie)
            .header("x-csrf-token", &browser.csrf);
        async move { request.send().await.unwrap() }
    });
    let statuses = crate::grants::join_all(calls).await;
    let ended = statuses
        .iter()
        .filter(|s| **s == StatusCode::NO_CONTENT)
        .count();
    assert_eq!(ended, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::NO_CONTENT || *s == StatusCode::UNAUTHORIZED)
    );
    let r = app.audit(&app.keys.auditor, "?action=session.end").await;
    let events: Value = r.json().await.unwrap();
    let successes = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "success")
        .count();
    assert_eq!(successes, 1, "{events}");
}
